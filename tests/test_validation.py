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
