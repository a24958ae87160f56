"""collbench: benchmark and compare collective-communication algorithms.

The library entry points (imported on first use, so ``import collbench`` stays cheap):

* :func:`measure` ``(comm, spec)`` - run a sweep on a communicator, yielding rows on rank 0;
* :func:`make_spec` - a RunSpec from the CLI's spellings;
* :func:`load` ``(paths)`` - rows of results files (a pandas DataFrame when pandas is installed).
"""

from typing import Any

__version__ = "0.1.0"

_LAZY = {"measure": "collbench.run.session", "make_spec": "collbench.run.session",
         "Session": "collbench.run.session", "RunSpec": "collbench.run.spec",
         "load": "collbench.results.load"}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'collbench' has no attribute {name!r}")
