"""CUDA timing: events around the loop on the backend's stream, optionally as a CUDA graph.

Graph mode (``-G N``) captures the timed loop once and replays it N times, so Python's launch
overhead disappears from small-message numbers (nccl-tests' -G).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..backends.base import Timer


class CudaEventTimer(Timer):
    def __init__(self, stream: Any, graph_replays: int = 0) -> None:
        import cupy

        self._cupy = cupy
        self.stream = stream
        self.graph_replays = graph_replays
        self._start = cupy.cuda.Event()
        self._end = cupy.cuda.Event()

    def _elapsed(self) -> float:
        self._end.synchronize()
        return self._cupy.cuda.get_elapsed_time(self._start, self._end) / 1e3

    def batch(self, run: Callable[[], None], iterations: int) -> float:
        stream = self.stream
        if self.graph_replays:
            stream.begin_capture()
            try:
                for _ in range(iterations):
                    run()
            finally:
                graph = stream.end_capture()
            graph.upload(stream)
            graph.launch(stream)  # first launch pays instantiation costs; keep it out of timing
            stream.synchronize()
            self._start.record(stream)
            for _ in range(self.graph_replays):
                graph.launch(stream)
            self._end.record(stream)
            return self._elapsed() / (iterations * self.graph_replays)
        self._start.record(stream)
        for _ in range(iterations):
            run()
        self._end.record(stream)
        return self._elapsed() / iterations

    def once(self, run: Callable[[], None]) -> None:
        run()
        self.stream.synchronize()

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
        return np.array([cupy.cuda.get_elapsed_time(events[i], events[i + 1]) / 1e3
                         for i in range(iterations)], dtype=np.float64)
