"""The backends' side of the compressed algorithms: whether one applies, and its runner.

Called from two small branches of :class:`collbench.backends.mpi.MpiBackend` and of
:class:`collbench.backends.nccl.NcclBackend` (``unsupported_reason`` and ``prepare``): the mpi
backend runs them on host buffers (:mod:`.runners`), the nccl backend on device buffers with
csrc/compress.cu's kernels (:mod:`.gpu_runners`); the other backends answer with
:func:`elsewhere_reason`.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..backends.base import OpRequest, Placement, PreparedOp
from ..errors import UsageError
from ..execute.runner import prepared_op
from .names import COLLECTIVE, ROW_EXECUTOR
from .options import dtype_problem, parse, size_problem
from .runners import RUNNERS, CompressedRunner


def unsupported_reason(request: OpRequest, options: Mapping[str, object]) -> str | None:
    """Why the mpi backend cannot run this compressed request (count 0: at any size)."""
    if request.collective is not COLLECTIVE:
        return f"{request.algorithm} is an allreduce; there is no compressed {request.collective.value}"
    try:
        parsed = parse(options)
    except UsageError as exc:
        return str(exc)
    reason = dtype_problem(request.algorithm, parsed, request.dtype, request.op)
    if reason is None and request.count:
        reason = size_problem(request.algorithm, parsed, request.count)
    return reason


def elsewhere_reason(name: str) -> str:
    return (f"{name} is a compressed allreduce: it runs on the mpi backend (host buffers) and the "
            "nccl backend only (docs/compression.md)")


def nccl_unsupported_reason(request: OpRequest, options: Mapping[str, object],
                            graph_replays: int = 0) -> str | None:
    """Why the nccl backend cannot run this compressed request, or None."""
    reason = unsupported_reason(request, options)
    if reason is not None:
        return reason
    from .device import GPU_DTYPES

    if request.dtype.name not in GPU_DTYPES:
        return (f"{request.algorithm} on the nccl backend takes {', '.join(GPU_DTYPES)} (csrc/compress.cu "
                f"selects on 32-bit keys and sums in float32); {request.dtype.name} runs on the mpi backend")
    if graph_replays:
        return (f"{request.algorithm} reads counters and message sizes back to the host inside a run: "
                "it cannot be captured in a CUDA graph (-G)")
    return None


def prepare_nccl(request: OpRequest, backend: Any) -> PreparedOp:
    """The nccl runner for ``request`` over the backend's device buffers."""
    from .gpu_runners import GPU_RUNNERS, NcclContext

    buffers, dtype, count = backend.buffers, request.dtype, request.count
    output = buffers.typed(buffers.recv, dtype, count)
    source = output if request.placement is Placement.IN_PLACE else buffers.typed(buffers.send, dtype, count)
    ctx = NcclContext(backend.nccl_comm, backend._nccl, backend._cupy, backend.stream, backend.rank, backend.size)
    runner = GPU_RUNNERS[request.algorithm](ctx, source, output, dtype, parse(backend.options_for(request)))
    return prepared_op(runner, source, output, ROW_EXECUTOR)


def prepare(request: OpRequest, comm: Any, send: np.ndarray, recv: np.ndarray,
            options: Mapping[str, object]) -> PreparedOp:
    """The runner for ``request`` over the backend's byte buffers ``send``/``recv``."""
    from ..backends.mpi import typed

    output = typed(recv, request.dtype, request.count)
    source = output if request.placement is Placement.IN_PLACE else typed(send, request.dtype, request.count)
    runner = RUNNERS[request.algorithm](comm, source, output, request.dtype, parse(options))
    return prepared_op(runner, source, output, ROW_EXECUTOR)


def runner_of(prepared: PreparedOp) -> CompressedRunner | None:
    """The runner behind a prepared op (its ``teardown`` is the runner's bound ``free``; a
    fault-injection wrapper replaces ``run`` but keeps ``teardown``)."""
    owner = getattr(prepared.teardown, "__self__", None)
    return owner if isinstance(owner, CompressedRunner) else None
