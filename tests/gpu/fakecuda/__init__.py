"""The test suite's one fake CuPy (and its NCCL, NVTX and CUDA IPC bindings) lives in ./cupy.

Two ways to use it:

* Another process (a CLI run, MPI ranks): put ``FAKECUDA`` first on its PYTHONPATH, so that its
  ``import cupy`` is the fake (knobs: see cupy/__init__.py).
* This process: ``fake_cupy()`` is a fresh instance of the package, with its own device heap,
  streams and call logs. It is not ``cupy``: ``import cupy`` stays what it was, unless a test
  puts the instance in sys.modules itself (with monkeypatch). A test changes what it needs on its
  instance (``cp.cuda.runtime.memGetInfo = ...``); nothing leaks into the next test.

Tests in tests/gpu import this as ``fakecuda``; tests elsewhere as ``gpu.fakecuda`` (tests/ is on
sys.path).
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path
from types import ModuleType

FAKECUDA = str(Path(__file__).resolve().parent)  # the directory for PYTHONPATH
_instances = itertools.count()


def fake_cupy() -> ModuleType:
    """A fresh, private instance of the fake CuPy package (``cp.HEAP`` is its device memory)."""
    name = f"_fakecupy_{next(_instances)}"
    package = Path(FAKECUDA) / "cupy"
    spec = importlib.util.spec_from_file_location(name, package / "__init__.py",
                                                  submodule_search_locations=[str(package)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # while it runs: its submodules import from it
    try:
        spec.loader.exec_module(module)
    finally:  # the package imports its submodules at once, so it needs no entry afterwards
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]
    return module
