"""Micro-benchmark: per-step cost of the MPI schedule executor, with zero-byte steps.

Runs in this process on MPI_COMM_SELF (the rank exchanges with itself, so no other process is
involved and no rank can calibrate differently and deadlock); pedantic mode fixes the rounds.
`python -m pytest tests/test_bench_executor.py --benchmark-enable --benchmark-only` measures it;
the normal test run executes it once. The two-rank comparison with C is
benchmarks/executor_overhead.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from collbench.algorithms import Buf, Slice
from collbench.execute.bind import LoweredProgram, LoweredStep

STEPS = 100


@pytest.fixture(scope="module")
def self_exchange():
    from mpi4py import MPI

    from collbench.execute.python_mpi import MpiScheduleRun

    comm = MPI.COMM_SELF.Dup()
    steps = tuple(LoweredStep(s, ((0, Slice(Buf.INPUT, 0, 0)),), ((0, Slice(Buf.OUTPUT, 0, 0)),), ())
                  for s in range(STEPS))
    run = MpiScheduleRun(comm, LoweredProgram(steps, 0, None),
                         {Buf.INPUT: np.zeros(1, np.uint8), Buf.OUTPUT: np.zeros(1, np.uint8)},
                         MPI.UINT8_T, None, 1)
    yield run
    run.free()
    comm.Free()


def test_bench_executor_zero_byte_steps(benchmark, self_exchange):
    benchmark.extra_info["steps_per_round"] = STEPS
    benchmark.pedantic(self_exchange.run, rounds=50, iterations=10, warmup_rounds=2)
    if benchmark.stats is not None and benchmark.enabled:
        per_step_us = benchmark.stats.stats.median / STEPS * 1e6
        benchmark.extra_info["median_us_per_step"] = per_step_us
        assert 0 < per_step_us < 1e4  # a step costs microseconds, not tens of milliseconds
    # what was timed is what it claims to be: every one of the STEPS steps posted, completed
    # and finished its (empty) local work, in order
    stamps = self_exchange.trace(1)
    assert stamps.shape == (1, STEPS, 4)
    assert (np.diff(stamps.reshape(-1)) >= 0).all() and stamps.min() > 0
