"""The reduction table: every op on every dtype, without allocation; avg's final division."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from collbench.algorithms.reduction import OPS, finalize_avg, is_commutative, reduce_into, ufunc

DTYPES = [np.int8, np.uint8, np.int32, np.uint32, np.int64, np.uint64, np.float16,
          ml_dtypes.bfloat16, np.float32, np.float64]
EXPECTED = {"sum": lambda a, b: a + b, "prod": lambda a, b: a * b, "max": max, "min": min,
            "avg": lambda a, b: a + b}


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("op", OPS)
def test_reduce_into_every_op_and_dtype(op: str, dtype) -> None:
    a_vals, b_vals = [0, 1, 2, 3, 5, 7], [3, 2, 1, 0, 4, 9]
    a = np.array(a_vals, dtype=dtype)
    b = np.array(b_vals, dtype=dtype)
    dst = np.zeros(6, dtype=dtype)
    reduce_into(op, dst, a, b)
    want = [EXPECTED[op](x, y) for x, y in zip(a_vals, b_vals)]
    assert dst.dtype == np.dtype(dtype)
    assert dst.astype(np.float64).tolist() == [float(w) for w in want]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_reduce_into_accumulates_in_place_without_a_new_array(dtype) -> None:
    buf = np.arange(8, dtype=dtype)
    acc = buf[2:6]  # a view: the result must land in the caller's memory
    reduce_into("sum", acc, acc, np.ones(4, dtype=dtype))
    assert buf.astype(np.float64).tolist() == [0, 1, 3, 4, 5, 6, 6, 7]


def test_integer_overflow_wraps_like_c() -> None:
    dst = np.zeros(1, dtype=np.int8)
    reduce_into("sum", dst, np.array([127], dtype=np.int8), np.array([1], dtype=np.int8))
    assert dst[0] == -128


def test_float16_steps_round_to_float16() -> None:
    # 2048 + 1 is not representable in float16: each step rounds (to even) in the 16-bit type
    dst = np.zeros(1, dtype=np.float16)
    reduce_into("sum", dst, np.array([2048], dtype=np.float16), np.array([1], dtype=np.float16))
    assert dst[0] == 2048


def test_finalize_avg_truncates_integers_toward_zero() -> None:
    out = np.array([-7, 7, -8, 9, 0], dtype=np.int32)
    finalize_avg(out, 2)
    assert out.tolist() == [-3, 3, -4, 4, 0]
    u = np.array([7, 9], dtype=np.uint8)
    finalize_avg(u, 2)
    assert u.tolist() == [3, 4]


def test_finalize_avg_with_more_ranks_than_the_type_can_count() -> None:
    out = np.array([127, -128, 5], dtype=np.int8)
    finalize_avg(out, 200)
    assert out.tolist() == [0, 0, 0]


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16, np.float32, np.float64],
                         ids=lambda d: np.dtype(d).name)
def test_finalize_avg_divides_floats_in_their_dtype(dtype) -> None:
    out = np.array([3, 1, 6], dtype=dtype)
    finalize_avg(out, 4)
    assert out.dtype == np.dtype(dtype)
    assert out.astype(np.float64).tolist() == [0.75, 0.25, 1.5]


def test_finalize_avg_one_rank_and_empty_are_no_ops() -> None:
    out = np.array([5], dtype=np.int32)
    finalize_avg(out, 1)
    finalize_avg(np.zeros(0, dtype=np.int32), 3)
    assert out.tolist() == [5]
    with pytest.raises(ValueError):
        finalize_avg(out, 0)


def test_op_table() -> None:
    assert set(OPS) == {"sum", "prod", "max", "min", "avg"}
    assert all(is_commutative(op) for op in OPS)
    assert ufunc("avg") is np.add
    with pytest.raises(ValueError, match="unknown reduction op 'xor'"):
        ufunc("xor")
    with pytest.raises(ValueError):
        is_commutative("xor")
