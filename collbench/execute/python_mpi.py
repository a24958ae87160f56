"""Executes a custom algorithm's schedule over MPI point-to-point (the ``python`` executor).

Everything is prepared once per size, outside the timed loop: scratch is allocated, every
message gets a persistent request (MPI_Send_init/MPI_Recv_init) bound to a fixed view, and
every local copy/reduction becomes a pre-bound numpy call with ``out=``. A run is then, per
step, one Startall + one Waitall and the bound local calls: no allocation, no slicing, no
lookups. The per-step cost that remains is Python's (measured in docs/performance.md).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np

from ..algorithms import Buf, Copy, Problem, Slice
from ..algorithms.reduction import finalize_avg, ufunc
from .bind import LoweredProgram

# Tags of schedule messages live far from collbench's control tags; the step index keeps
# messages of different steps apart even when a pair talks in several steps.
_TAG_BASE = 1000
_TAG_SPAN = 30000


class MpiScheduleRun:
    """A lowered program bound to buffers and persistent requests; call :meth:`run`.

    Args:
        comm: the measurement communicator.
        lowered: this rank's lowered program.
        buffers: numpy arrays (of the run's dtype) for INPUT and OUTPUT; scratch is allocated here.
        move_type: an MPI datatype of the element size (messages move bytes, MPI never reduces).
        op: the reduction op (None for data movement).
        nranks: for avg's final division.
    """

    def __init__(self, comm: Any, lowered: LoweredProgram, buffers: dict[Buf, np.ndarray],
                 move_type: Any, op: str | None, nranks: int) -> None:
        from mpi4py import MPI

        dtype = next(iter(buffers.values())).dtype
        self._buffers = dict(buffers)
        self._buffers[Buf.SCRATCH] = np.empty(lowered.scratch_len, dtype=dtype)
        self._requests: list[Any] = []
        steps: list[tuple[list[Any], list[Callable[[], Any]]]] = []
        combine = ufunc(op) if op else None
        for step in lowered.steps:
            tag = _TAG_BASE + step.index % _TAG_SPAN
            requests = [comm.Recv_init([self._view(s), move_type], source=peer, tag=tag)
                        for peer, s in step.recvs]
            requests += [comm.Send_init([self._view(s), move_type], dest=peer, tag=tag)
                         for peer, s in step.sends]
            self._requests += requests
            calls: list[Callable[[], Any]] = []
            for item in step.local:
                if isinstance(item, Copy):
                    calls.append(functools.partial(np.copyto, self._view(item.dst), self._view(item.src)))
                else:
                    assert combine is not None, "a reduction in a schedule for a non-reducing collective"
                    calls.append(functools.partial(combine, self._view(item.a), self._view(item.b),
                                                   out=self._view(item.dst)))
            steps.append((requests, calls))
        if lowered.finalize is not None:
            steps.append(([], [functools.partial(finalize_avg, self._view(lowered.finalize), nranks)]))
        self._steps = steps
        self._startall = MPI.Prequest.Startall
        self._waitall = MPI.Request.Waitall

    def _view(self, s: Slice) -> np.ndarray:
        return self._buffers[s.buf][s.offset:s.offset + s.length]

    def run(self) -> None:
        startall, waitall = self._startall, self._waitall
        for requests, calls in self._steps:
            if requests:
                startall(requests)
                waitall(requests)
            for call in calls:
                call()

    def free(self) -> None:
        for request in self._requests:
            request.Free()
        self._requests.clear()


def host_buffers(problem: Problem, rank: int, in_place: bool, send: np.ndarray,
                 recv: np.ndarray) -> tuple[dict[Buf, np.ndarray], np.ndarray, np.ndarray]:
    """The INPUT/OUTPUT arrays of a schedule run and the harness's input/output views.

    Out of place, input and output are separate buffers. In place they share one buffer with
    the nccl-tests/NCCL layout: allgather's input is the rank's block of the output,
    reduce_scatter's output is the rank's block of the input.
    """
    n_in, n_out = problem.input_len(rank), problem.output_len(rank)
    if not in_place:
        inp, out = send[:n_in], recv[:n_out]
        return {Buf.INPUT: inp, Buf.OUTPUT: out}, inp, out
    from ..algorithms import inplace_input_offset

    host, offset = inplace_input_offset(problem, rank)
    if host is Buf.OUTPUT:
        out = recv[:n_out]
        return {Buf.OUTPUT: out, Buf.INPUT: out[offset:offset + n_in]}, out[offset:offset + n_in], out
    inp = recv[:n_in]
    return {Buf.INPUT: inp, Buf.OUTPUT: inp[offset:offset + n_out]}, inp, inp[offset:offset + n_out]
