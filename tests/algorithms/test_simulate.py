"""The numpy simulator agrees with numpy's own reduction for every algorithm, op and dtype."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from algo_cases import IMPLEMENTATIONS, build, impl_id

from collbench.algorithms import (
    OPS,
    Buf,
    Collective,
    Layout,
    Problem,
    Program,
    Recv,
    Schedule,
    Send,
    Slice,
    Step,
    reference_result,
)
from collbench.algorithms.simulate import simulate

DTYPES = [np.int8, np.uint8, np.int32, np.uint32, np.int64, np.uint64, np.float16,
          ml_dtypes.bfloat16, np.float32, np.float64]


def _inputs(problem: Problem, dtype, seed: int) -> list[np.ndarray]:
    # small integers: every partial sum/product is exact in every dtype (integer products wrap
    # identically in any order), so results must be bit-identical to the reference
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 4, problem.input_len(r)).astype(dtype) for r in range(problem.nranks)]


def _check(schedule: Schedule, op: str, dtype, seed: int = 0) -> None:
    problem = schedule.problem
    inputs = _inputs(problem, dtype, seed)
    want = reference_result(problem.collective, inputs, op, problem.root)
    for in_place in (False, True):
        got = simulate(schedule, inputs, op, in_place=in_place)
        for r in range(problem.nranks):
            if want[r] is None:
                continue
            assert got[r].dtype == np.dtype(dtype)
            np.testing.assert_array_equal(got[r].astype(np.float64), want[r].astype(np.float64),
                                          err_msg=f"rank {r} in_place={in_place}")


def _problem_for(impl, nranks: int, count: int) -> Problem:
    layout = impl.verify_layouts(nranks)[0] if impl.verify_layouts else None
    root = nranks - 1 if impl.collective.rooted else 0
    return Problem(impl.collective, nranks, count, root, layout)


@pytest.mark.parametrize("pair", IMPLEMENTATIONS, ids=impl_id)
def test_every_op_and_dtype(pair) -> None:
    algo, impl = pair
    schedule = algo.schedule(_problem_for(impl, 4, 7))
    ops = OPS if impl.collective.reduces else ("sum",)
    for op in ops:
        for dtype in DTYPES:
            _check(schedule, op, dtype)


@pytest.mark.parametrize("pair", IMPLEMENTATIONS, ids=impl_id)
def test_rank_counts_counts_and_options(pair) -> None:
    algo, impl = pair
    for nranks in (1, 2, 3, 5, 6, 8):
        for count in (0, 1, nranks - 1, 2 * nranks + 1):
            for options in impl.verify_options:
                problem = _problem_for(impl, nranks, count)
                _check(algo.schedule(problem, options), "sum", np.int32, seed=nranks * count)


def test_large_values_agree_in_float64() -> None:
    schedule = build("rabenseifner", "allreduce", 6, 50)
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal(50) for _ in range(6)]
    want = reference_result("allreduce", inputs, "sum")
    for got in simulate(schedule, inputs, "sum"):
        np.testing.assert_allclose(got, want[0], rtol=1e-12)


def test_reference_results() -> None:
    ins = [np.array([1, 2, 3, 4], dtype=np.int32), np.array([5, 6, 7, 8], dtype=np.int32)]
    assert [x.tolist() for x in reference_result("allreduce", ins, "sum")] == [[6, 8, 10, 12]] * 2
    assert [x.tolist() for x in reference_result("reduce_scatter", ins, "max")] == [[5, 6], [7, 8]]
    assert reference_result("allgather", ins, "sum")[1].tolist() == [1, 2, 3, 4, 5, 6, 7, 8]
    assert reference_result("broadcast", ins, "sum", root=1)[0].tolist() == [5, 6, 7, 8]
    reduced = reference_result(Collective.REDUCE, ins, "avg", root=1)
    assert reduced[0] is None and reduced[1].tolist() == [3, 4, 5, 6]


def test_simulator_rejects_unmatched_messages() -> None:
    schedule = build("ring", "allreduce", 3, 6)
    programs = list(schedule.programs)
    programs[0] = Program(0, programs[0].steps[:-1], programs[0].scratch_len)  # drop last step
    broken = Schedule("broken", schedule.problem, tuple(programs))
    with pytest.raises(ValueError, match="no matching send|does not receive"):
        simulate(broken, [np.ones(6, dtype=np.float32)] * 3, "sum")


def test_poisoned_output_exposes_a_missing_write() -> None:
    schedule = build("ring", "allreduce", 3, 6)
    programs = list(schedule.programs)
    steps = list(programs[0].steps)
    steps[-3] = Step(steps[-3].index, steps[-3].sends, steps[-3].recvs, ())  # last reduction
    programs[0] = Program(0, tuple(steps), programs[0].scratch_len)
    out = simulate(Schedule("broken", schedule.problem, tuple(programs)),
                   [np.ones(6, dtype=np.float32)] * 3, "sum")
    assert all(np.isnan(o).any() for o in out)


def test_out_of_place_input_is_read_only() -> None:
    problem = Problem(Collective.ALLREDUCE, 2, 2)
    programs = tuple(Program(r, (Step(0, sends=(Send(1 - r, Slice(Buf.INPUT, 0, 2)),),
                                      recvs=(Recv(1 - r, Slice(Buf.INPUT, 0, 2)),)),))
                     for r in range(2))
    with pytest.raises(ValueError, match="read-only"):
        simulate(Schedule("bad", problem, programs), [np.zeros(2, np.int32)] * 2, "sum")


def test_simulator_rejects_bad_inputs() -> None:
    schedule = build("ring", "allgather", 2, 3)
    with pytest.raises(ValueError, match="2 ranks"):
        simulate(schedule, [np.zeros(3)], "sum")
    with pytest.raises(ValueError, match="shape"):
        simulate(schedule, [np.zeros(3), np.zeros(4)], "sum")
    with pytest.raises(ValueError, match="different dtypes"):
        simulate(schedule, [np.zeros(3, np.float32), np.zeros(3)], "sum")
    with pytest.raises(ValueError, match="unknown reduction op"):
        simulate(build("ring", "allreduce", 2, 3), [np.zeros(3)] * 2, "xor")


def test_hierarchical_round_robin_layout_simulates() -> None:
    layout = Layout.round_robin(6, 2)
    for coll in ("allreduce", "allgather", "reduce_scatter"):
        schedule = build("hierarchical", coll, 6, 5, layout=layout)
        _check(schedule, "sum", np.int64)
