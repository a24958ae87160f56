"""NVTX ranges for Nsight Systems: every measurement, every collective, every schedule step.

``collbench run --backend nccl|cuda --nvtx`` names what the GPU backends do, so a capture
(``nsys profile -t cuda,nvtx,mpi collbench run ... --nvtx``) reads without a legend:

* a **measurement** range per row: ``measure allreduce ring 1 MiB float32 sum out-of-place``,
  holding its phases (``warm-up``, ``timed loop (N iterations)``, ``validation``);
* a **collective** range around every operation: ``allreduce ring 1 MiB``;
* a **step** range around every step of a schedule run over NCCL send/recv
  (``allreduce ring 1 MiB · step 3``, and ``· finalize avg`` for avg's division). NCCL's own
  collectives and the cuda backend's kernels are one library call or kernel launch each: their
  collective range holds the kernels Nsight shows (ipc_hierarchical: the IPC reduce-scatter,
  NCCL's allreduce and the IPC allgather).

NVTX comes through CuPy (``cupy.cuda.nvtx.RangePush``/``RangePop``, CuPy's Cython wrapper of
``nvtxRangePushA``/``nvtxRangePop``). Ranges are per host thread and mark *host* time: a CUDA
graph (``-G``) records the collective and step ranges once, at capture, and its replays run
under the ``timed loop`` range.

**Off by default** (``--nvtx`` turns it on), and chosen once per process by :func:`configure`.
In C, NVTX costs nearly nothing without a tool: the first call runs NVTX's initialisation,
which finds no injection library (no ``NVTX_INJECTION64_PATH`` and no tool already loaded) and
points every entry at a no-op (NVIDIA/NVTX ``c/include/nvtx3/nvtxDetail/nvtxInit.h``,
``nvtxInitOnce``/``nvtxSetInitFunctionsToNoops``). From Python it is not free: each
``RangePush`` is a call into CuPy that encodes the name to bytes before the C call (CuPy
``cupy_backends/cuda/libs/nvtx.pyx``), a fraction of a microsecond per range, paid on every
operation and every step of the timed loop, against NCCL operations of a few microseconds.
So with ``--nvtx`` off nothing is added at all: :func:`collective` returns the operation
itself, the NCCL schedule's call list has no range calls (:mod:`collbench.gpu.nccl_executor`),
and :func:`span` is a shared ``nullcontext`` used only outside the timed loop. Rows measured
with ``--nvtx`` say so in the metadata (``spec.nvtx``); compare them with care at small sizes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import UsageError
from ..metrics import bytes_for_count
from ..sizes import format_bytes

#: NVTX needs CuPy, so only the GPU backends have it
BACKENDS = ("nccl", "cuda")
STEP_SEPARATOR = " · "

_push: Callable[[str], Any] | None = None
_pop: Callable[[], Any] | None = None
_NULL = contextlib.nullcontext()


def configure(enabled: bool) -> None:
    """Turn the ranges on or off for this process (the harness calls it once per sweep).

    Raises:
        UsageError: ``enabled`` but CuPy or its NVTX binding is missing.
    """
    global _push, _pop
    if not enabled:
        _push = _pop = None
        return
    try:
        from cupy.cuda import nvtx
    except ImportError as exc:
        raise UsageError(f"--nvtx needs CuPy's NVTX binding (cupy.cuda.nvtx): {exc}") from None
    if not getattr(nvtx, "available", True):
        raise UsageError("--nvtx: this CuPy was built without NVTX (cupy.cuda.nvtx.available is False)")
    _push, _pop = nvtx.RangePush, nvtx.RangePop


def enabled() -> bool:
    return _push is not None


def push_pop() -> tuple[Callable[[str], Any], Callable[[], Any]]:
    """CuPy's ``RangePush`` and ``RangePop`` (only while enabled), for callers that bind them
    into a call list themselves (the NCCL schedule executor)."""
    if _push is None or _pop is None:
        raise RuntimeError("NVTX ranges are off (collbench.trace.nvtx.configure(True) first)")
    return _push, _pop


def collective_name(request: Any, nranks: int) -> str:
    """``allreduce ring 1 MiB``: what one operation of ``request`` is called on the timeline."""
    nbytes = bytes_for_count(request.collective, request.count, request.dtype.itemsize, nranks)
    return f"{request.collective.value} {request.algorithm} {format_bytes(nbytes)}"


def measurement_name(request: Any, nranks: int) -> str:
    """``measure allreduce ring 1 MiB float32 sum out-of-place``: one row of the results."""
    op = f" {request.op}" if request.op else ""
    return f"measure {collective_name(request, nranks)} {request.dtype.name}{op} {request.placement.label}"


def step_name(collective: str, step: int | str) -> str:
    """``allreduce ring 1 MiB · step 3`` (a schedule step's index), or a named stage."""
    return f"{collective}{STEP_SEPARATOR}{'step ' if isinstance(step, int) else ''}{step}"


def span(name: str) -> contextlib.AbstractContextManager[Any]:
    """A range around a ``with`` block; the shared no-op context when ranges are off (use it
    outside timed loops only: the name is still formatted by the caller)."""
    if _push is None:
        return _NULL
    return _range(name)


@contextlib.contextmanager
def _range(name: str) -> Iterator[None]:
    assert _push is not None and _pop is not None
    _push(name)
    try:
        yield
    finally:
        _pop()


def collective(run: Callable[[], None], request: Any, nranks: int) -> Callable[[], None]:
    """``run`` inside a collective range; ``run`` itself (the same object) when ranges are off,
    so the timed loop calls exactly what it would without NVTX."""
    if _push is None or _pop is None:
        return run
    push, pop, name = _push, _pop, collective_name(request, nranks)

    def ranged() -> None:
        push(name)
        try:
            run()
        finally:
            pop()

    return ranged

