"""The Python MPI executor: a bound schedule over mpi4py point-to-point (rows say ``python``).

Everything is prepared once per size, outside the timed loop: scratch is allocated, every
message gets a persistent request (MPI_Send_init/MPI_Recv_init) bound to a fixed view, and
every local copy/reduction becomes a pre-bound numpy call with ``out=``. A run is then, per
step, one Startall + one Waitall and the bound local calls: no allocation, no slicing, no
lookups. The per-step cost that remains is Python's (measured in docs/performance.md).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

import numpy as np

from ..algorithms import Buf, Copy, Slice
from ..algorithms.reduction import finalize_avg, ufunc
from .bind import LoweredProgram
from .tags import step_tag


class MpiScheduleRun:
    """A lowered program bound to buffers and persistent requests; call :meth:`run`
    (a :class:`collbench.execute.runner.ScheduleRunner`, timed by the harness's timer).

    Args:
        comm: the measurement communicator.
        lowered: this rank's lowered program.
        buffers: numpy arrays (of the run's dtype) for INPUT and OUTPUT (``BoundProgram.buffers``);
            scratch is allocated here.
        move_type: an MPI datatype of the element size (messages move bytes, MPI never reduces).
        op: the reduction op (None for data movement).
        nranks: for avg's final division.
    """

    def __init__(self, comm: Any, lowered: LoweredProgram, buffers: Mapping[Buf, np.ndarray],
                 move_type: Any, op: str | None, nranks: int) -> None:
        from mpi4py import MPI

        dtype = next(iter(buffers.values())).dtype
        self._buffers = dict(buffers)
        self._buffers[Buf.SCRATCH] = np.empty(lowered.scratch_len, dtype=dtype)
        self.lowered = lowered  # what collbench.trace labels each traced step with
        self._requests: list[Any] = []
        steps: list[tuple[list[Any], list[Callable[[], Any]]]] = []
        combine = ufunc(op) if op else None
        for step in lowered.steps:
            tag = step_tag(step.index)
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

    def trace(self, iterations: int) -> np.ndarray:
        """``iterations`` runs with per-step perf_counter_ns stamps (CLOCK_MONOTONIC on Linux,
        as the C executor's), int64 (iterations, steps, 4): post, posted, completed, local done.
        A separate loop, so :meth:`run` carries no tracing cost."""
        import time

        clock = time.perf_counter_ns
        startall, waitall = self._startall, self._waitall
        stamps = np.zeros((iterations, len(self._steps), 4), dtype=np.int64)
        for i in range(iterations):
            for s, (requests, calls) in enumerate(self._steps):
                t0 = clock()
                if requests:
                    startall(requests)
                t1 = clock()
                if requests:
                    waitall(requests)
                t2 = clock()
                for call in calls:
                    call()
                stamps[i, s] = (t0, t1, t2, clock())
        return stamps

    def free(self) -> None:
        for request in self._requests:
            request.Free()
        self._requests.clear()

