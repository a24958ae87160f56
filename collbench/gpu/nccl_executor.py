"""Executes a lowered schedule with grouped NCCL send/recv and our reduction kernels.

Every call goes to one stream, in order, so a step's local reductions see its received data and
the next step's sends see the reductions; there is no host synchronization inside a run, which
is also what makes a run capturable into a CUDA graph.

With ``--nvtx``, :func:`schedule_calls` brackets every step's calls with NVTX range calls
(collbench/trace/nvtx.py); without it the call list is exactly ``nccl_calls(lowered)``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

from ..algorithms import Buf, Slice
from ..dtypes import DType
from ..execute.bind import LoweredProgram, nccl_calls
from ..trace import nvtx
from .nccl_lib import NCCL_DTYPES


def schedule_calls(lowered: LoweredProgram, collective: str | None = None) -> list[tuple]:
    """The NCCL call list of ``lowered``; with ``collective`` (its NVTX name, while ``--nvtx``
    is on) each step's calls sit between ``("range_push", name)`` and ``("range_pop",)``.

    Each step's calls are :func:`nccl_calls` of that step alone, so the bracketed list is the
    plain one with range calls inserted, never a second rendering of it.
    """
    if collective is None:
        return nccl_calls(lowered)
    calls: list[tuple] = []
    for step in lowered.steps:
        calls.append(("range_push", nvtx.step_name(collective, step.index)))
        calls += nccl_calls(replace(lowered, steps=(step,), finalize=None))
        calls.append(("range_pop",))
    if lowered.finalize is not None:
        calls.append(("range_push", nvtx.step_name(collective, "finalize avg")))
        calls += nccl_calls(replace(lowered, steps=(), finalize=lowered.finalize))
        calls.append(("range_pop",))
    return calls


class NcclScheduleRun:
    def __init__(self, comm: Any, stream: Any, calls: list[tuple], buffers: dict[Buf, Any],
                 scratch_len: int, dtype: DType, op: str | None, nranks: int) -> None:
        import cupy
        from cupy.cuda import nccl

        from . import kernels

        device_dtype = next(iter(buffers.values())).dtype
        self._buffers = dict(buffers)
        self._buffers[Buf.SCRATCH] = cupy.empty(scratch_len, dtype=device_dtype)
        nccl_dtype = NCCL_DTYPES[dtype.name]
        sptr = stream.ptr
        bound: list[Callable[[], Any]] = []
        for call in calls:
            kind = call[0]
            if kind == "group_start":
                bound.append(nccl.groupStart)
            elif kind == "group_end":
                bound.append(nccl.groupEnd)
            elif kind == "send":
                view = self._view(call[2])
                bound.append(_bind(comm.send, view.data.ptr, view.size, nccl_dtype, call[1], sptr))
            elif kind == "recv":
                view = self._view(call[2])
                bound.append(_bind(comm.recv, view.data.ptr, view.size, nccl_dtype, call[1], sptr))
            elif kind == "copy":
                src, dst = self._view(call[1]), self._view(call[2])
                bound.append(_bind(cupy.cuda.runtime.memcpyAsync, dst.data.ptr, src.data.ptr, src.nbytes,
                                   cupy.cuda.runtime.memcpyDeviceToDevice, sptr))
            elif kind == "reduce":
                dst, a, b = (self._view(s) for s in call[1:])
                bound.append(_bind_kw(kernels.reduce, op, dst, a, b, dtype=dtype.name, stream=stream))
            elif kind == "finalize_avg":
                bound.append(_bind_kw(kernels.finalize_avg, self._view(call[1]), nranks,
                                      dtype=dtype.name, stream=stream))
            elif kind == "range_push":  # only in lists from schedule_calls with --nvtx
                bound.append(_bind(nvtx.push_pop()[0], call[1]))
            elif kind == "range_pop":
                bound.append(nvtx.push_pop()[1])
            else:
                raise ValueError(f"unknown lowered call {kind!r}")
        self._bound = bound

    def _view(self, s: Slice) -> Any:
        return self._buffers[s.buf][s.offset:s.offset + s.length]

    def run(self) -> None:
        for call in self._bound:
            call()

    def free(self) -> None:
        self._bound = []
        self._buffers.pop(Buf.SCRATCH, None)


def _bind(function: Callable[..., Any], *args: Any) -> Callable[[], Any]:
    return lambda: function(*args)


def _bind_kw(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[[], Any]:
    return lambda: function(*args, **kwargs)
