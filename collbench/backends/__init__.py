"""Backend registry. GPU backends are imported lazily: the CPU path must not need CuPy."""

from __future__ import annotations

from typing import Any

from ..errors import UsageError
from .base import Backend, OpRequest, Placement, PreparedOp, Timer

BACKENDS = ("mpi",)


def make_backend(name: str, comm: Any, **options: Any) -> Backend:
    """Create backend ``name`` on ``comm`` (collective over ``comm``)."""
    if name == "mpi":
        from .mpi import MpiBackend

        return MpiBackend(comm, **options)
    raise UsageError(f"unknown backend {name!r} (known: {', '.join(BACKENDS)})")


__all__ = ["BACKENDS", "Backend", "OpRequest", "Placement", "PreparedOp", "Timer", "make_backend"]
