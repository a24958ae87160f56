"""CudaEventTimer's call order on a logging stand-in for CuPy's streams, events and graphs: where
the ranks are lined up relative to the start event, and how validation runs in graph mode."""

from __future__ import annotations

import sys
from types import SimpleNamespace
from typing import Any

import pytest


class Log(list):
    def add(self, *entry: Any) -> None:
        self.append(entry[0] if len(entry) == 1 else entry)


def logging_cupy(log: Log) -> SimpleNamespace:
    class Event:
        count = 0

        def __init__(self) -> None:
            Event.count += 1
            self.name = "start" if Event.count % 2 else "end"

        def record(self, stream: Any = None) -> None:
            log.add(f"record {self.name}")

        def synchronize(self) -> None:
            log.add(f"sync {self.name}")

    return SimpleNamespace(cuda=SimpleNamespace(Event=Event, get_elapsed_time=lambda a, b: 2.0))


class Graph:
    def __init__(self, log: Log, work: list) -> None:
        self.log, self.work = log, work

    def upload(self, stream: Any) -> None:
        self.log.add("upload")

    def launch(self, stream: Any) -> None:
        self.log.add(f"launch graph of {len(self.work)}")


class Stream:
    def __init__(self, log: Log) -> None:
        self.log, self.captured = log, None

    def synchronize(self) -> None:
        self.log.add("stream sync")

    def begin_capture(self) -> None:
        self.captured = []
        self.log.add("begin capture")

    def end_capture(self) -> Graph:
        work, self.captured = self.captured, None
        self.log.add("end capture")
        return Graph(self.log, work)


@pytest.fixture
def timer_parts(monkeypatch):
    log = Log()
    monkeypatch.setitem(sys.modules, "cupy", logging_cupy(log))
    from collbench.gpu.timer import CudaEventTimer

    stream = Stream(log)

    def run() -> None:
        if stream.captured is not None:
            stream.captured.append("op")
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
