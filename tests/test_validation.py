"""The validation patterns: exact for every dtype/op/rank count, and they catch real errors."""

import numpy as np
import pytest

from collbench.algorithms import Collective
from collbench.dtypes import DTYPES, OPS
from collbench.validation import count_wrong, expected_output, make_input

_REDUCE = {"sum": np.add, "prod": np.multiply, "max": np.maximum, "min": np.minimum, "avg": np.add}


def _reduce_in_dtype(inputs, op, dtype, order):
    """Reduce in the dtype's own arithmetic, in a given rank order (what an algorithm may do)."""
    acc = inputs[order[0]].copy()
    for r in order[1:]:
        acc = _REDUCE[op](acc, inputs[r]).astype(dtype.numpy)
    if op == "avg":
        acc = (acc.astype(np.float64) / len(inputs)).astype(dtype.numpy) if dtype.is_float \
            else (acc.astype(np.int64) // len(inputs)).astype(dtype.numpy)
    return acc


@pytest.mark.parametrize("dtype", list(DTYPES.values()), ids=lambda d: d.name)
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("nranks", [1, 2, 3, 7, 64, 1000])
def test_reductions_are_exact_in_any_order(dtype, op, nranks):
    count = 2048
    inputs = [make_input(Collective.ALLREDUCE, dtype, op, nranks, r, count, seed=3) for r in range(nranks)]
    expected = expected_output(Collective.ALLREDUCE, dtype, op, nranks, 0, count, seed=3)
    rng = np.random.default_rng(nranks)
    for order in (list(range(nranks)), list(rng.permutation(nranks))):
        got = _reduce_in_dtype(inputs, op, dtype, order)
        assert count_wrong(got, expected, dtype, op) == 0


@pytest.mark.parametrize("dtype", [DTYPES["float32"], DTYPES["int8"], DTYPES["bfloat16"]], ids=lambda d: d.name)
def test_patterns_are_not_trivial(dtype):
    """Inputs vary by rank and element, so misplaced data is detected."""
    a = make_input(Collective.ALLGATHER, dtype, None, 4, 0, 500, seed=1)
    b = make_input(Collective.ALLGATHER, dtype, None, 4, 1, 500, seed=1)
    assert len(np.unique(a.astype(np.float64))) > 50
    assert np.count_nonzero(a != b) > 400
    c = make_input(Collective.ALLGATHER, dtype, None, 4, 0, 500, seed=2)
    assert np.count_nonzero(a != c) > 400


def test_reduce_scatter_and_allgather_expectations():
    dtype, p, count = DTYPES["int32"], 3, 10
    inputs = [make_input(Collective.REDUCE_SCATTER, dtype, "sum", p, r, count * p, seed=5) for r in range(p)]
    total = np.sum(inputs, axis=0)
    for r in range(p):
        want = expected_output(Collective.REDUCE_SCATTER, dtype, "sum", p, r, count, seed=5)
        assert np.array_equal(want, total[r * count:(r + 1) * count])
    blocks = [make_input(Collective.ALLGATHER, dtype, None, p, r, count, seed=5) for r in range(p)]
    assert np.array_equal(expected_output(Collective.ALLGATHER, dtype, None, p, 2, count, seed=5),
                          np.concatenate(blocks))
    assert expected_output(Collective.REDUCE, dtype, "sum", p, 1, count, seed=5, root=0) is None


def test_count_wrong_detects_each_kind_of_error():
    dtype = DTYPES["float32"]
    expected = expected_output(Collective.ALLREDUCE, dtype, "sum", 4, 0, 100, seed=1)
    got = expected.copy()
    assert count_wrong(got, expected, dtype, "sum") == 0
    got[3] += 1
    got[50] = np.nan
    assert count_wrong(got, expected, dtype, "sum") == 2
    # avg on floats tolerates 2 ulp (pre-multiplied implementations) but not more
    avg = expected_output(Collective.ALLREDUCE, dtype, "avg", 3, 0, 100, seed=1)
    nudged = np.nextafter(avg, np.float32(np.inf))
    assert count_wrong(nudged, avg, dtype, "avg") == 0
    assert count_wrong(avg + 1, avg, dtype, "avg") == np.count_nonzero(avg + 1 != avg)


# -- every rank is visible ---------------------------------------------------------------------
#
# A black-box check over the values every rank puts in: at every rank count, dropping any one
# rank's contribution (and, for sum/avg/prod, adding it twice) changes the expected result.
# max and min share one pattern (a winner above and a loser below everyone per element), so
# one pass checks both; its period is at least the rank count, so at the largest counts the
# pass costs rank count squared and runs for one dtype per value range (int32, int64 and
# float64 have float32's range and pattern, uint64 has uint32's).

_SUM_OPS = ["sum", "avg", "prod"]
_SMALL_RANKS = [1, 2, 3, 7, 64, 1000, 1022, 2048]
_LARGE_RANKS = [3001, 4096, 8192, 12289, 16384]
_EXTREME_DTYPES = ["int8", "uint8", "float16", "bfloat16", "float32", "uint32"]


def _all_values(dtype, op, p, seed):
    """Every rank's residue values in chunks of ranks: (first rank, values[rank, residue])."""
    from collbench import validation

    period = validation._plan(dtype, op, p).period
    t = np.arange(period, dtype=np.int64)
    step = max(1, (1 << 21) // period)
    for first in range(0, p, step):
        ranks = np.arange(first, min(p, first + step), dtype=np.int64)
        yield first, validation._values(dtype, op, p, ranks[:, None], t[None, :], seed)


def _finish(acc, dtype, op, p):
    """An exact int64 reduction as the collective's result (avg divides)."""
    if op == "avg":
        return (acc.astype(np.float64) / p).astype(dtype.numpy) if dtype.is_float \
            else (acc // p).astype(dtype.numpy)
    return acc.astype(dtype.numpy)


def _int_avg_blind(dtype, op, p):
    """The documented exception: an integer avg whose exact sums stay below the rank count."""
    from collbench.validation import _EXACT_LIMIT

    return op == "avg" and not dtype.is_float and 2 * p > _EXACT_LIMIT[dtype.name]


def _period_and_inputs_agree(dtype, op, p, seed):
    """The pattern checked is what make_input gives the ranks; returns the period."""
    from collbench.validation import _plan

    period = _plan(dtype, op, p).period
    _, v = next(_all_values(dtype, op, p, seed))
    for r in {0, v.shape[0] - 1}:
        assert np.array_equal(make_input(Collective.ALLREDUCE, dtype, op, p, r, period, seed),
                              v[r].astype(dtype.numpy))
    return period


def _check_sum_like(dtype, op, p, seed=7):
    from collbench.validation import wrong_elements

    period = _period_and_inputs_agree(dtype, op, p, seed)
    full = expected_output(Collective.ALLREDUCE, dtype, op, p, 0, period, seed)
    acc = None
    for _, v in _all_values(dtype, op, p, seed):
        part = v.prod(axis=0) if op == "prod" else v.sum(axis=0)
        acc = part if acc is None else (acc * part if op == "prod" else acc + part)
    assert np.array_equal(_finish(acc, dtype, op, p).view(np.uint8), full.view(np.uint8))
    identity = 1 if op == "prod" else 0
    for first, v in _all_values(dtype, op, p, seed):
        assert (v != identity).any(axis=1).all(), "a rank contributes nothing anywhere"
        if p == 1 or _int_avg_blind(dtype, op, p):
            continue
        if op == "prod":
            dropped, doubled = acc // v, acc * v  # the factors are ±1 and ±2: exact
        else:
            dropped, doubled = acc - v, acc + v
        for faulty in (dropped, doubled):
            changed = wrong_elements(_finish(faulty, dtype, op, p), full, dtype, op).any(axis=1)
            assert changed.all(), first + np.flatnonzero(~changed)[:10]


def _check_extremes(dtype, p, seed=7):
    period = _period_and_inputs_agree(dtype, "max", p, seed)
    assert period == _period_and_inputs_agree(dtype, "min", p, seed)
    lowest, highest = np.iinfo(np.int64).min, np.iinfo(np.int64).max
    top, bottom = np.full(period, lowest), np.full(period, highest)
    tops, bottoms = np.zeros(period, np.int64), np.zeros(period, np.int64)  # how many hold it
    # the rank holding each extreme (meaningful where it alone holds it): one pass over the
    # values, which at 16384 ranks are what the check spends its time generating
    top_rank, bottom_rank = np.zeros(period, np.int64), np.zeros(period, np.int64)
    for first, v in _all_values(dtype, "max", p, seed):
        high, low = v.max(axis=0), v.min(axis=0)
        higher, lower = high > top, low < bottom
        tops, bottoms = np.where(higher, 0, tops), np.where(lower, 0, bottoms)
        # a new extreme's holder; later chunks rarely beat the earlier ones
        top_rank[higher] = first + v[:, higher].argmax(axis=0)
        bottom_rank[lower] = first + v[:, lower].argmin(axis=0)
        top, bottom = np.maximum(top, high), np.minimum(bottom, low)
        tops += (v == top).sum(axis=0)
        bottoms += (v == bottom).sum(axis=0)
    for op, want in (("max", top), ("min", bottom)):
        assert np.array_equal(expected_output(Collective.ALLREDUCE, dtype, op, p, 0, period, seed),
                              want.astype(dtype.numpy)), op
    if p == 1:
        return
    # dropping a rank changes an element where it alone holds the extreme
    for holders, count in ((top_rank, tops), (bottom_rank, bottoms)):
        unseen = np.setdiff1d(np.arange(p), holders[count == 1])
        assert not unseen.size, unseen[:10]


@pytest.mark.parametrize("dtype", list(DTYPES.values()), ids=lambda d: d.name)
@pytest.mark.parametrize("op", _SUM_OPS)
@pytest.mark.parametrize("nranks", _SMALL_RANKS)
def test_every_rank_is_visible_in_sums_and_products(dtype, op, nranks):
    _check_sum_like(dtype, op, nranks)


@pytest.mark.parametrize("dtype", list(DTYPES.values()), ids=lambda d: d.name)
@pytest.mark.parametrize("nranks", [p for p in _SMALL_RANKS if p < 2048])
def test_every_rank_is_visible_in_max_and_min(dtype, nranks):
    _check_extremes(dtype, nranks)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", list(DTYPES.values()), ids=lambda d: d.name)
@pytest.mark.parametrize("op", _SUM_OPS)
@pytest.mark.parametrize("nranks", _LARGE_RANKS)
def test_every_rank_is_visible_in_sums_and_products_at_scale(dtype, op, nranks):
    _check_sum_like(dtype, op, nranks)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", _EXTREME_DTYPES)
@pytest.mark.parametrize("nranks", [2048, 3001, 4096, 16384])
def test_every_rank_is_visible_in_max_and_min_at_scale(dtype, nranks):
    _check_extremes(DTYPES[dtype], nranks)


def test_the_pattern_follows_the_seed():
    """``-c N`` rounds use seeds 1..N: the bands and extremes move with the seed."""
    from collbench import validation

    dtype, p = DTYPES["bfloat16"], 2048
    for op, identity in (("sum", 0), ("max", None), ("prod", 1)):
        a = validation._residue_values(dtype, op, p, 1500, 1)
        b = validation._residue_values(dtype, op, p, 1500, 2)
        if identity is not None:  # the rank's band sits at other elements
            assert not np.array_equal(a != identity, b != identity), op
        assert np.count_nonzero(a != b) > 0, op
        one, two = (expected_output(Collective.ALLREDUCE, dtype, op, p, 0, a.size, seed)
                    for seed in (1, 2))
        assert np.count_nonzero(one != two) > a.size // 4, op


# -- a dropped rank on the simulator -----------------------------------------------------------

def _gather_reduce_broadcast(p: int, count: int, skip: int | None):
    """Allreduce through rank 0 (one message per step), leaving out rank ``skip``'s data."""
    from collbench.algorithms import Buf, Copy, Problem, Program, Recv, Reduce, Schedule, Send, Slice, Step

    data = Slice(Buf.INPUT, 0, count)
    out = Slice(Buf.OUTPUT, 0, count)
    slot = Slice(Buf.SCRATCH, 0, count)
    root = [Step(0, local=(Copy(data, out),))]
    for k in range(1, p):
        add = () if k == skip else (Reduce(out, out, slot),)
        root.append(Step(k, recvs=(Recv(k, slot),), local=add))
    root.append(Step(p, sends=tuple(Send(k, out) for k in range(1, p))))
    programs = [Program(0, tuple(root), count)]
    for k in range(1, p):
        programs.append(Program(k, (Step(k, sends=(Send(0, data),)),
                                    Step(p, recvs=(Recv(0, out),)))))
    return Schedule("through_root", Problem(Collective.ALLREDUCE, p, count), tuple(programs))


@pytest.mark.parametrize("nranks", [2048, 4096])
@pytest.mark.parametrize("dtype,op", [("bfloat16", "sum"), ("float16", "sum"), ("int8", "sum"),
                                      ("float32", "max")])
def test_the_simulator_shows_a_dropped_rank(nranks, dtype, op):
    """The defect of issue 13: above ~1021 ranks whole bands of ranks were invisible, so an
    allreduce that dropped one of them validated clean. Every rank now shows."""
    from collbench.algorithms.simulate import simulate
    from collbench.validation import _plan

    dt = DTYPES[dtype]
    count = _plan(dt, op, nranks).period
    inputs = [make_input(Collective.ALLREDUCE, dt, op, nranks, r, count, seed=1)
              for r in range(nranks)]
    expected = expected_output(Collective.ALLREDUCE, dt, op, nranks, 0, count, seed=1)
    for skip in (None, nranks - 1, 1500):  # the top rank, and one in the middle
        outputs = simulate(_gather_reduce_broadcast(nranks, count, skip), inputs, op)
        wrong = [count_wrong(outputs[r], expected, dt, op) for r in (0, 1, nranks - 1)]
        if skip is None:
            assert wrong == [0, 0, 0]
        else:
            assert min(wrong) > 0, (skip, wrong)
