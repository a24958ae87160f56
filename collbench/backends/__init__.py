"""Backend registry. GPU backends are imported lazily: the CPU path must not need CuPy."""

from __future__ import annotations

from typing import Any

from ..errors import UsageError
from .base import Backend, OpRequest, Placement, PreparedOp, Timer

BACKENDS = ("mpi", "nccl", "cuda")


def make_backend(name: str, comm: Any, **options: Any) -> Backend:
    """Create backend ``name`` on ``comm`` (collective over ``comm``).

    Options not meant for a backend (e.g. GPU options for mpi on the host) are dropped here so
    callers can pass the run's options wholesale.
    """
    if name == "mpi":
        from .mpi import MpiBackend

        if options.get("device", "host") == "cuda":
            from .mpi_cuda import MpiCudaBackend

            return MpiCudaBackend(comm, layout=options.get("layout"),
                                  algorithm_options=options.get("algorithm_options"),
                                  stage_host=options.get("stage_host", False),
                                  gpu_map=options.get("gpu_map"))
        return MpiBackend(comm, layout=options.get("layout"),
                          algorithm_options=options.get("algorithm_options"),
                          executor=options.get("executor", "python"))
    if name == "nccl":
        from .nccl import NcclBackend

        return NcclBackend(comm, layout=options.get("layout"),
                           algorithm_options=options.get("algorithm_options"),
                           graph_replays=options.get("graph_replays", 0), gpu_map=options.get("gpu_map"))
    if name == "cuda":
        from .cuda import CudaIpcBackend

        return CudaIpcBackend(comm, layout=options.get("layout"),
                              algorithm_options=options.get("algorithm_options"),
                              graph_replays=options.get("graph_replays", 0), gpu_map=options.get("gpu_map"))
    raise UsageError(f"unknown backend {name!r} (known: {', '.join(BACKENDS)})")


__all__ = ["BACKENDS", "Backend", "OpRequest", "Placement", "PreparedOp", "Timer", "make_backend"]
