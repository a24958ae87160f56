"""CudaEventTimer's call order on the fake CuPy's streams, events and graphs (tests/gpu/fakecuda),
each call logged: where the ranks are lined up relative to the start event, and how validation
runs in graph mode."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pytest
from fakecuda import fake_cupy  # the one fake CuPy (tests/gpu/fakecuda)


class Log(list):
    def add(self, *entry: Any) -> None:
        self.append(entry[0] if len(entry) == 1 else entry)


def logging_cupy(log: Log) -> Any:
    """A fresh fake CuPy whose events, streams and graphs log their calls; elapsed time is 2 ms."""
    cp = fake_cupy()

    class Event(cp.cuda.Event):
        count = 0

        def __init__(self) -> None:
            super().__init__()
            Event.count += 1
            self.name = "start" if Event.count % 2 else "end"  # the timer makes start, then end

        def record(self, stream: Any = None) -> None:
            log.add(f"record {self.name}")
            super().record(stream)

        def synchronize(self) -> None:
            log.add(f"sync {self.name}")
            super().synchronize()

    class Graph(cp.Graph):
        def upload(self, stream: Any) -> None:
            log.add("upload")
            super().upload(stream)

        def launch(self, stream: Any = None) -> None:
            log.add(f"launch graph of {len(self.work)}")
            super().launch(stream)

    class Stream(cp.cuda.Stream):
        def synchronize(self) -> None:
            log.add("stream sync")
            super().synchronize()

        def begin_capture(self, mode: Any = None) -> None:
            log.add("begin capture")
            super().begin_capture(mode)

        def end_capture(self) -> Graph:
            log.add("end capture")
            return Graph(super().end_capture().work)

    cp.cuda.Event, cp.cuda.Stream = Event, Stream
    cp.cuda.get_elapsed_time = lambda a, b: 2.0
    return cp


@pytest.fixture
def timer_parts(monkeypatch):
    log = Log()
    cp = logging_cupy(log)
    monkeypatch.setitem(sys.modules, "cupy", cp)
    from collbench.gpu.timer import CudaEventTimer

    stream = cp.cuda.Stream(non_blocking=True)
    src, dst = cp.ones(4, np.float32), cp.zeros(4, np.float32)

    def run() -> None:
        """One operation: a copy on the stream (recorded while capturing, replayed by the graph)."""
        cp.cuda.runtime.memcpyAsync(dst.data.ptr, src.data.ptr, dst.nbytes, 3, stream.ptr)
        log.add("run")

    return log, stream, run, CudaEventTimer


def test_graph_mode_lines_the_ranks_up_before_the_start_event(timer_parts) -> None:
    log, stream, run, CudaEventTimer = timer_parts
    timer = CudaEventTimer(stream, graph_replays=3, barrier=lambda: log.add("barrier"),
                           after=lambda: log.add("after"))
    assert timer.batch(run, 2) == pytest.approx(2e-3 / 6)
    # capture and the untimed first launch take different times on different ranks: the device
    # is drained and the ranks meet before the start event, or the replays time the skew
    assert log == ["begin capture", "run", "run", "end capture", "upload", "launch graph of 2",
                   "stream sync", "barrier", "record start",
                   "launch graph of 2", "launch graph of 2", "launch graph of 2",
                   "record end", "sync end", "after"]


def test_eager_timing_has_nothing_between_the_events_but_the_operations(timer_parts) -> None:
    log, stream, run, CudaEventTimer = timer_parts
    timer = CudaEventTimer(stream, barrier=lambda: log.add("barrier"), after=lambda: log.add("after"))
    timer.batch(run, 2)
    assert log == ["record start", "run", "run", "record end", "sync end", "after"]


def test_graph_mode_validates_a_graph_replay(timer_parts) -> None:
    """Validation (once) runs the operation as the timed loop does: captured and replayed (a
    graph of one, so an in-place reduction is applied once), never as an eager call."""
    log, stream, run, CudaEventTimer = timer_parts
    timer = CudaEventTimer(stream, graph_replays=5, after=lambda: log.add("after"))
    timer.once(run)
    assert log == ["begin capture", "run", "end capture", "upload", "launch graph of 1", "stream sync", "after"]


def test_eager_mode_validates_one_call(timer_parts) -> None:
    log, stream, run, CudaEventTimer = timer_parts
    CudaEventTimer(stream).once(run)
    assert log == ["run", "stream sync"]


def test_per_iteration_calls_the_after_hook_once(timer_parts) -> None:
    log, stream, run, CudaEventTimer = timer_parts
    samples = CudaEventTimer(stream, after=lambda: log.add("after")).per_iteration(run, 3)
    assert len(samples) == 3 and log.count("after") == 1 and log[-1] == "after"
