"""The text table, produced by the real harness with a fake timer, against a golden file.

Run with UPDATE_GOLDEN=1 to rewrite the golden file after an intended format change.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from collbench.algorithms import Collective
from collbench.backends.base import Timer
from collbench.backends.mpi import MpiBackend
from collbench.dtypes import DTYPES
from collbench.results import table
from collbench.results.files import Row
from collbench.run.harness import Harness, make_plan
from collbench.run.spec import RunSpec
from collbench.run.watchdog import Activity, Watchdog

GOLDEN = Path(__file__).parent / "golden" / "table_fake_timer.txt"


class FakeTimer(Timer):
    """Deterministic 'time': 2 µs plus 1 ns per byte of the output buffer, ±iteration jitter."""

    def __init__(self) -> None:
        self.nbytes = 0

    def _seconds(self) -> float:
        return 2e-6 + self.nbytes * 1e-9

    def batch(self, run, iterations):
        for _ in range(iterations):
            run()
        return self._seconds()

    def per_iteration(self, run, iterations):
        for _ in range(iterations):
            run()
        return self._seconds() * (1 + 0.01 * np.arange(iterations) / iterations)


class FakeTimedBackend(MpiBackend):
    """The real MPI backend on one rank, with the fake timer (real calls, fake clock)."""

    def __init__(self, comm):
        super().__init__(comm)
        self.timer = FakeTimer()

    def prepare(self, request):
        prepared = super().prepare(request)
        self.timer.nbytes = prepared.output.nbytes
        return prepared


def _rows(per_iteration: bool) -> list[Row]:
    from mpi4py import MPI

    spec = RunSpec(collectives=(Collective.ALLREDUCE, Collective.BROADCAST), sizes=(8, 1024, 1 << 20),
                   dtypes=(DTYPES["float32"], DTYPES["int32"]), ops=("sum", "max"), iterations=4,
                   warmup=1, per_iteration=per_iteration, timeout=0)
    comm = MPI.COMM_SELF.Dup()
    backend = FakeTimedBackend(comm)
    backend.reserve(spec.max_bytes, list(spec.dtypes))
    activity = Activity()
    harness = Harness(spec, backend, comm, Watchdog(comm, 0, activity, False), activity)
    plan = make_plan(spec, backend)
    rows = [row for group in plan.groups for _, by_placement in harness.run_group(group, plan.measurements)
            for row in by_placement.values()]
    backend.close()
    return rows


def test_table_matches_golden():
    text = table.render(_rows(False), nnodes=1) + "\n" + table.render(_rows(True), nnodes=1) + "\n"
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()


def test_rows_carry_exact_fake_times():
    rows = _rows(False)
    big = [r for r in rows if r.bytes == 1 << 20 and r.collective == "allreduce"]
    assert big and all(r.time_us == pytest.approx(2 + (1 << 20) * 1e-3) for r in big)
    assert all(r.wrong == 0 for r in rows)
    # MPI_Bcast is in place only: the out-of-place half is absent, not faked
    assert {r.placement for r in rows if r.collective == "broadcast"} == {"in_place"}


class UnevenRefusingBackend(FakeTimedBackend):
    """Refuses counts that are not multiples of 3 (like a kernel that splits evenly)."""

    def unsupported_reason(self, request):
        if request.count % 3:
            return f"count {request.count} is not a multiple of 3"
        return super().unsupported_reason(request)


def test_size_dependent_limits_skip_only_those_sizes():
    from mpi4py import MPI

    spec = RunSpec(collectives=(Collective.ALLREDUCE,), sizes=(12, 16, 24), dtypes=(DTYPES["float32"],),
                   ops=("sum",), iterations=2, warmup=1, timeout=0)
    comm = MPI.COMM_SELF.Dup()
    backend = UnevenRefusingBackend(comm)
    backend.reserve(spec.max_bytes, list(spec.dtypes))
    activity = Activity()
    harness = Harness(spec, backend, comm, Watchdog(comm, 0, activity, False), activity)
    plan = make_plan(spec, backend)   # planned: the limit depends on the size only
    measured = {size: set(rows) for group in plan.groups for size, rows in harness.run_group(group, plan.measurements)}
    backend.close()
    assert {size for size, rows in measured.items() if rows} == {12, 24}   # counts 3 and 6
    assert measured[16] == set()
    assert list(harness.size_skips) == ["count 4 is not a multiple of 3"]
    assert len(harness.size_skips["count 4 is not a multiple of 3"]) == 2   # both placements
