"""User algorithm modules ("plugins"): Python files or importable modules that call
:func:`collbench.algorithms.registry.register`, loaded into every command and every rank.

Two ways to name them:

* ``--plugin PATH_OR_MODULE`` (repeatable) on ``run``, ``verify``, ``list`` and ``model
  predict|check``: a spec that ends in ``.py`` or contains a path separator is a file, anything
  else a module name imported from ``sys.path``;
* ``COLLBENCH_PLUGINS``: the same specs joined with ``os.pathsep``, loaded by every command
  (before its ``--plugin`` ones).

``collbench run`` hands the loaded plugins to the ranks it starts under mpiexec through
``COLLBENCH_PLUGINS`` (files as absolute paths, :func:`environment`), so a rank loads exactly the
files the launcher did; a job started by the user's own ``mpiexec``/``srun`` gets them from the
exported variable. Loading is idempotent (the same file or module twice is loaded once), and a
plugin may only add new algorithm names. Every problem -- no such file, no such module, a syntax
error, an exception while importing, a name that already exists, a module (or a bare directory,
a namespace package) that registers no algorithm -- is a :class:`PluginError` naming the plugin:
one line, exit status 2. The results metadata records each plugin's path and
the SHA-256 of its file (:func:`records`).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import re
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable

from .errors import UsageError

ENV_VAR = "COLLBENCH_PLUGINS"


class PluginError(UsageError):
    """A plugin could not be loaded; the message names it (one line, exit status 2)."""


@dataclass(frozen=True)
class Plugin:
    """One loaded user module.

    Attributes:
        spec: The name or path it was loaded by (``my_algo.py``, ``mypkg.algos``; a rank started
            by ``collbench run`` gets files by absolute path).
        module: Its name in ``sys.modules``.
        path: The file that was executed (absolute).
        sha256: Hex digest of that file's bytes at load time.
        algorithms: The algorithm names it registered, in order.
    """

    spec: str
    module: str
    path: str | None
    sha256: str | None
    algorithms: tuple[str, ...]

    @property
    def is_file(self) -> bool:
        return is_path(self.spec)

    @property
    def env_spec(self) -> str:
        """How a child process finds it again: the absolute path for a file, else the name."""
        return self.path if self.is_file and self.path else self.spec

    def record(self) -> dict[str, Any]:
        return {"plugin": self.spec, "module": self.module, "path": self.path,
                "sha256": self.sha256, "algorithms": list(self.algorithms)}


_LOADED: dict[str, Plugin] = {}   # key (resolved path or module name) -> plugin, load order


def is_path(spec: str) -> bool:
    """Whether ``spec`` names a file (``*.py`` or containing a separator) rather than a module."""
    return spec.endswith(".py") or "/" in spec or os.sep in spec or bool(os.altsep and os.altsep in spec)


def _key(spec: str) -> str:
    return "file:" + str(Path(spec).expanduser().resolve()) if is_path(spec) else "module:" + spec


def from_environment(environ: dict[str, str] | None = None) -> list[str]:
    """The specs in ``COLLBENCH_PLUGINS`` (empty entries ignored)."""
    value = (os.environ if environ is None else environ).get(ENV_VAR, "")
    return [part.strip() for part in value.split(os.pathsep) if part.strip()]


def load_all(specs: Iterable[str] = (), *, environ: bool = True) -> list[Plugin]:
    """Load ``COLLBENCH_PLUGINS`` (when ``environ``) and then ``specs``, each once, in order.

    Returns:
        The plugins of this call (already-loaded ones included), in order.

    Raises:
        PluginError: The first plugin that fails; nothing it registered stays registered.
    """
    wanted = [*(from_environment() if environ else []), *specs]
    return [load(spec) for spec in dict.fromkeys(wanted)]


def load(spec: str) -> Plugin:
    """Load one plugin (a no-op returning the earlier load for a file or module seen before)."""
    spec = spec.strip()
    if not spec:
        raise PluginError("--plugin needs a file or module name")
    key = _key(spec)
    if key in _LOADED:
        return _LOADED[key]
    from .algorithms import registry

    before = list(registry.known_names())
    # a module something imported before (a plugin's own helper, a package's submodule) ran its
    # registrations then: importing it again runs nothing, and that is not a mistake
    ran_before = not is_path(spec) and spec in sys.modules
    try:
        with registry.sealed():
            module = _import_file(spec) if is_path(spec) else _import_module(spec)
    except PluginError:
        raise
    except registry.NameTaken as exc:
        raise PluginError(f"plugin {spec!r} registers {exc.name!r}, a name that already exists "
                          f"(built in or from another plugin); give its algorithm a new name") from None
    except SyntaxError as exc:
        where = f"{exc.filename or spec}, line {exc.lineno}" if exc.lineno else (exc.filename or spec)
        raise PluginError(f"plugin {spec!r}: syntax error ({where}): {exc.msg}") from None
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - anything the user's import raises
        raise PluginError(f"plugin {spec!r}: importing it raised {_describe(exc, spec)}") from None
    path = getattr(module, "__file__", None)
    path = str(Path(path).resolve()) if path else None
    added = tuple(n for n in registry.known_names() if n not in before)
    if path is None or not (added or ran_before):
        if not ran_before:
            sys.modules.pop(module.__name__, None)  # a corrected file loads afresh
        raise PluginError(_registers_nothing(spec, module))
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    plugin = Plugin(spec, module.__name__, path, digest, added)
    _LOADED[key] = plugin
    return plugin


def _registers_nothing(spec: str, module: ModuleType) -> str:
    """Why a plugin that loaded is refused: it registered no algorithm."""
    if getattr(module, "__file__", None) is None:  # a namespace package: a bare directory
        where = ", ".join(str(p) for p in getattr(module, "__path__", ())) or spec
        return (f"plugin {spec!r}: {where} is a directory without __init__.py, not a plugin module: it "
                f"registers no algorithm (give the plugin's file, e.g. {spec}/my_algo.py)")
    return (f"plugin {spec!r}: registers no algorithm ({module.__file__} ran without calling "
            "collbench.algorithms.registry.register)")


def _import_file(spec: str) -> ModuleType:
    path = Path(spec).expanduser().resolve()
    if not path.is_file():
        what = "is a directory, not a Python file" if path.is_dir() else "no such file"
        raise PluginError(f"plugin {spec!r}: {what} ({path})")
    name = _module_name(path)
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise PluginError(f"plugin {spec!r}: Python cannot load {path} as a module")
    module = importlib.util.module_from_spec(module_spec)
    # in sys.modules while it runs (dataclasses and pickling look the module up there), and
    # its directory on sys.path (after everything else), as for a script, so it can import
    # modules beside it
    sys.modules[name] = module
    if str(path.parent) not in sys.path:
        sys.path.append(str(path.parent))
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _module_name(path: Path) -> str:
    """A private module name for a plugin file (never the bare stem: a file called queue.py
    must not shadow the standard library's queue)."""
    base = "_collbench_plugin_" + re.sub(r"\W", "_", path.stem)
    name, n = base, 1
    while name in sys.modules:
        n += 1
        name = f"{base}_{n}"
    return name


def _import_module(spec: str) -> ModuleType:
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (spec == exc.name or spec.startswith(exc.name + ".")):
            raise PluginError(f"plugin {spec!r}: no module named {exc.name!r} on the Python path "
                              f"(for a file, give its path: ./{spec.replace('.', '/')}.py)") from None
        raise


def _describe(exc: BaseException, spec: str) -> str:
    """``ValueError: message (file.py, line 12)`` on one line, at the deepest frame in the
    plugin's own file (else the deepest frame outside collbench and importlib)."""
    from .algorithms import registry

    if isinstance(exc, SystemExit):
        text = f"SystemExit({exc.code!r})"
    else:
        message = " ".join(str(exc).split())
        text = type(exc).__name__ + (f": {message}" if message else "")
    frames = traceback.extract_tb(exc.__traceback__)
    ours = (str(Path(__file__).resolve().parent), str(Path(registry.__file__).resolve().parent), "<frozen")
    own_file = str(Path(spec).expanduser().resolve()) if is_path(spec) else None
    candidates = ([f for f in frames if f.filename == own_file]
                  or [f for f in frames if not f.filename.startswith(ours)])
    if candidates:
        text += f" ({candidates[-1].filename}, line {candidates[-1].lineno})"
    return text


def unload(plugin: Plugin) -> None:
    """Forget a plugin: unregister its algorithms and drop its module (tests, notebooks). A
    later :func:`load` of the same spec runs the file again."""
    from .algorithms import registry

    for name in plugin.algorithms:
        registry.unregister(name)
    sys.modules.pop(plugin.module, None)
    for key, value in list(_LOADED.items()):
        if value is plugin:
            del _LOADED[key]


def loaded() -> list[Plugin]:
    """Every plugin loaded in this process, in load order."""
    return list(_LOADED.values())


def records() -> list[dict[str, Any]]:
    """The loaded plugins for the results metadata: spec, module, path, sha256, algorithms."""
    return [p.record() for p in _LOADED.values()]


def environment() -> dict[str, str]:
    """``{COLLBENCH_PLUGINS: ...}`` naming every loaded plugin (files by absolute path), for
    processes this one starts; empty when none is loaded (an inherited variable then passes as
    it is)."""
    if not _LOADED:
        return {}
    return {ENV_VAR: os.pathsep.join(p.env_spec for p in _LOADED.values())}


def initialize_worker(specs: list[str]) -> None:
    """ProcessPoolExecutor initializer: load ``specs`` in a worker (no-op where they were
    inherited through fork)."""
    load_all(specs, environ=False)
