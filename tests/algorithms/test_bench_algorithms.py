"""Micro-benchmarks (pytest-benchmark). The normal run has --benchmark-disable: each body runs
once, as a smoke test; `pytest --benchmark-only tests/algorithms` measures."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from collbench.algorithms import OPS, Collective, Problem, get_algorithm, reduce_into, verify_both
from collbench.algorithms.reduction import ufunc

DTYPES = [np.int8, np.uint8, np.int32, np.uint32, np.int64, np.uint64, np.float16,
          ml_dtypes.bfloat16, np.float32, np.float64]
N = 1 << 18


def _operands(dtype):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 3, N).astype(dtype)
    b = rng.integers(0, 3, N).astype(dtype)
    return a, b, np.empty(N, dtype=dtype)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_bench_reduce_into(benchmark, dtype, op: str) -> None:
    a, b, out = _operands(dtype)
    benchmark.group = f"reduce {np.dtype(dtype).name}"
    benchmark(reduce_into, op, out, a, b)
    np.testing.assert_array_equal(out.astype(np.float64),
                                  ufunc(op)(a, b).astype(np.float64))


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_bench_numpy_baseline(benchmark, dtype, op: str) -> None:
    """Plain numpy, allocating its result (what ``a + b`` costs): the same values as
    ``reduce_into``, or it would not be a baseline for it."""
    a, b, out = _operands(dtype)
    benchmark.group = f"reduce {np.dtype(dtype).name}"
    fn = ufunc(op)
    result = benchmark(fn, a, b)
    reduce_into(op, out, a, b)
    assert result.shape == out.shape
    np.testing.assert_array_equal(result.astype(np.float64), out.astype(np.float64))


@pytest.mark.parametrize("name,coll", [("recursive_doubling", "allreduce"),
                                       ("rabenseifner", "allreduce"),
                                       ("double_binary_tree", "allreduce"),
                                       ("bruck", "allgather"),
                                       ("recursive_halving", "reduce_scatter")])
def test_bench_schedule_at_1024_ranks(benchmark, name: str, coll: str) -> None:
    algo = get_algorithm(name)
    problem = Problem(Collective.parse(coll), 1024, 1 << 20 if coll == "allreduce" else 1024)
    benchmark.group = "generate 1024 ranks"
    schedule = benchmark.pedantic(algo.schedule, args=(problem,), rounds=1, iterations=1)
    assert len(schedule.programs) == 1024


@pytest.mark.parametrize("name", ["ring", "direct", "hierarchical"])
def test_bench_one_rank_program_at_1024_ranks(benchmark, name: str) -> None:
    """What an executor pays: one rank's program of a linear-step algorithm."""
    from collbench.algorithms import Layout

    layout = Layout.blocked(1024, 8) if name == "hierarchical" else None
    problem = Problem(Collective.ALLREDUCE, 1024, 1 << 20, layout=layout)
    benchmark.group = "one program, 1024 ranks"
    program = benchmark(get_algorithm(name).program, problem, 1023)
    assert program.steps


@pytest.mark.parametrize("name", ["recursive_doubling", "rabenseifner", "double_binary_tree"])
def test_bench_verify_at_1024_ranks(benchmark, name: str) -> None:
    schedule = get_algorithm(name).schedule(Problem(Collective.ALLREDUCE, 1024, 10007))
    benchmark.group = "verify 1024 ranks"
    result = benchmark.pedantic(verify_both, args=(schedule,), rounds=1, iterations=1)
    assert result == ([], [])
