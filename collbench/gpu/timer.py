"""CUDA timing: events around the loop on the backend's stream, optionally as a CUDA graph.

Graph mode (``-G N``) captures the timed loop once and replays it N times, so Python's launch
overhead disappears from small-message numbers (nccl-tests' -G). Before the start event the
ranks meet at a host barrier: capture and instantiation take different times on different ranks,
and without it the first replays would time the wait for the slowest rank (rank skew).

Validation in graph mode (:meth:`CudaEventTimer.once`) also runs through a graph: one
operation, captured and replayed. An operation that is wrong only when captured (a host-side
step that capture skips, a pointer baked in at capture time) is then caught; an eager call
would hide it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..backends.base import Timer


class CudaEventTimer(Timer):
    """Args:
        stream: the backend's CuPy stream; every operation is enqueued on it.
        graph_replays: ``-G``: capture the loop, replay it this many times (0: eager).
        barrier: a host barrier over the ranks (``comm.Barrier``); graph mode calls it before
            recording the start event.
        after: called once a call's work is complete, outside the timed region, on every rank
            (collective-safe: every rank times the same sequence), e.g. a collective check of
            device-side error records.
    """

    def __init__(self, stream: Any, graph_replays: int = 0, barrier: Callable[[], None] | None = None,
                 after: Callable[[], None] | None = None) -> None:
        import cupy

        self._cupy = cupy
        self.stream = stream
        self.graph_replays = graph_replays
        self._barrier = barrier
        self._after = after
        self._start = cupy.cuda.Event()
        self._end = cupy.cuda.Event()

    def _elapsed(self) -> float:
        self._end.synchronize()
        return self._cupy.cuda.get_elapsed_time(self._start, self._end) / 1e3

    def _capture(self, run: Callable[[], None], operations: int) -> Any:
        """``operations`` calls of ``run`` as one CUDA graph, uploaded to the device."""
        stream = self.stream
        stream.begin_capture()
        try:
            for _ in range(operations):
                run()
        finally:
            graph = stream.end_capture()
        graph.upload(stream)
        return graph

    def _line_up(self) -> None:
        """Device idle, then every rank at the barrier: the start event is recorded at once."""
        self.stream.synchronize()
        if self._barrier is not None:
            self._barrier()

    def _done(self) -> None:
        if self._after is not None:
            self._after()

    def batch(self, run: Callable[[], None], iterations: int) -> float:
        stream = self.stream
        if self.graph_replays:
            graph = self._capture(run, iterations)
            graph.launch(stream)  # first launch pays instantiation costs; keep it out of timing
            self._line_up()
            self._start.record(stream)
            for _ in range(self.graph_replays):
                graph.launch(stream)
            self._end.record(stream)
            seconds = self._elapsed() / (iterations * self.graph_replays)
        else:
            self._start.record(stream)
            for _ in range(iterations):
                run()
            self._end.record(stream)
            seconds = self._elapsed() / iterations
        self._done()
        return seconds

    def once(self, run: Callable[[], None]) -> None:
        """One operation, completed. In graph mode it is captured and replayed, exactly as the
        timed loop runs it (a graph of one: replaying the timed graph of N would apply an
        in-place reduction N times)."""
        if self.graph_replays:
            self._capture(run, 1).launch(self.stream)
        else:
            run()
        self.stream.synchronize()
        self._done()

    def per_iteration(self, run: Callable[[], None], iterations: int) -> np.ndarray:
        if self.graph_replays:
            raise ValueError("per-iteration timing cannot be combined with graph mode")
        cupy, stream = self._cupy, self.stream
        events = [cupy.cuda.Event() for _ in range(iterations + 1)]
        events[0].record(stream)
        for i in range(iterations):
            run()
            events[i + 1].record(stream)
        events[-1].synchronize()
        samples = np.array([cupy.cuda.get_elapsed_time(events[i], events[i + 1]) / 1e3
                            for i in range(iterations)], dtype=np.float64)
        self._done()
        return samples
