"""The cost model's modules import on their own and form no import cycle (issue 12, item 6).

Two checks: every module of ``collbench.analysis.model`` imports first in a fresh interpreter
(a cycle between two modules fails there when the wrong one comes first), and the graph of
module-level imports between them, read from the source, is acyclic.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import collbench.analysis.model as model_pkg

PACKAGE = model_pkg.__name__
ROOT = Path(model_pkg.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    """Dotted name -> source file of every module of the model package."""
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join([PACKAGE, *parts])] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The model modules ``name`` imports at module level (not inside functions or
    ``if TYPE_CHECKING:``)."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # ``from pkg import sub`` imports the submodule; ``from mod import name`` the module
            targets = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in MODULES else module
                       for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in MODULES and t != name)
    return found


def test_the_model_has_the_expected_modules() -> None:
    assert f"{PACKAGE}.forms" in MODULES and f"{PACKAGE}.costs.ring" in MODULES
    assert f"{PACKAGE}.closed" not in MODULES      # split by family into costs/


def test_no_import_cycle() -> None:
    graph = {name: _imports(name, path) for name, path in MODULES.items()}
    done: set[str] = set()

    def visit(name: str, stack: list[str]) -> None:
        if name in stack:
            cycle = stack[stack.index(name):] + [name]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if name in done:
            return
        for dep in sorted(graph[name]):
            visit(dep, [*stack, name])
        done.add(name)

    for name in graph:
        visit(name, [])
    # the graph is real: the lookup imports the families, a family the table and the topology
    assert f"{PACKAGE}.costs.ring" in graph[f"{PACKAGE}.forms"]
    assert {f"{PACKAGE}.costs", f"{PACKAGE}.topo"} <= graph[f"{PACKAGE}.costs.ring"]


def test_every_model_module_imports_first_in_a_fresh_interpreter() -> None:
    code = ("import importlib, sys\n"
            "importlib.import_module(sys.argv[1])\n")
    failed = []
    for name in MODULES:
        proc = subprocess.run([sys.executable, "-c", code, name], capture_output=True, text=True,
                              timeout=120)
        if proc.returncode:
            failed.append(f"{name}:\n{proc.stderr[-2000:]}")
    assert not failed, "\n".join(failed)
