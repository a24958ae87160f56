"""The mpi backend's side of the compressed algorithms: whether one applies, and its runner.

Called from two small branches of :class:`collbench.backends.mpi.MpiBackend`
(``unsupported_reason`` and ``prepare``); only the mpi backend on host buffers runs them (the
other backends answer with :func:`elsewhere_reason`).
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
    return (f"{name} is a compressed allreduce run by Python over mpi4py: it runs on the mpi "
            "backend with host buffers only (docs/compression.md)")


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
