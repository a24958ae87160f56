"""Reduction operators shared by the simulator and the real executors.

One table maps each operator name to the numpy ufunc that combines two buffers. Executors call
:func:`reduce_into` for every :class:`~collbench.algorithms.schedule.Reduce` op of a schedule and
:func:`finalize_avg` once on the final output when the operator is ``avg``.

Arithmetic of the 16-bit floating types: numpy computes each ``float16`` operation in float32 and
rounds the result back to float16 (round to nearest even); ml_dtypes does the same for
``bfloat16``. So every binary step of a reduction is correctly rounded to the 16-bit type, as a GPU
kernel that accumulates in the 16-bit type (``__hadd``) would be; nothing accumulates in wider
precision across steps, so the result of a long reduction depends on the order in which an
algorithm combines contributions. Integer arithmetic wraps around on overflow (two's complement),
as it does in C, MPI and NCCL.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

# avg reduces with add; the division by the rank count happens once, at the end (NCCL's
# "sum then divide"), so partial results stay exact for integers.
_UFUNCS: Mapping[str, np.ufunc] = {
    "sum": np.add,
    "prod": np.multiply,
    "max": np.maximum,
    "min": np.minimum,
    "avg": np.add,
}

OPS: tuple[str, ...] = tuple(_UFUNCS)

# Every built-in operator is commutative (and, up to rounding, associative): algorithms are free
# to combine contributions in any order. A future non-commutative operator would be listed here
# as False and the order-changing algorithms would refuse it in their preconditions.
_COMMUTATIVE: Mapping[str, bool] = {name: True for name in _UFUNCS}


def _check(op: str) -> str:
    if op not in _UFUNCS:
        raise ValueError(f"unknown reduction op {op!r} (known: {', '.join(OPS)})")
    return op


def ufunc(op: str) -> np.ufunc:
    """The numpy ufunc that combines two buffers for ``op`` (``avg`` combines with ``add``).

    Raises:
        ValueError: ``op`` is not one of :data:`OPS`.
    """
    return _UFUNCS[_check(op)]


def is_commutative(op: str) -> bool:
    """Whether ``a op b == b op a`` for ``op``; every built-in operator is.

    Raises:
        ValueError: ``op`` is not one of :data:`OPS`.
    """
    return _COMMUTATIVE[_check(op)]


def reduce_into(op: str, dst: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """``dst[:] = a (op) b`` without allocating; ``dst`` may be ``a`` or ``b`` itself.

    Works for int8, uint8, int32, uint32, int64, uint64, float16, bfloat16 (ml_dtypes), float32
    and float64; all three arrays must have the same dtype and shape.

    Raises:
        ValueError: ``op`` is not one of :data:`OPS`.
    """
    _UFUNCS[_check(op)](a, b, out=dst)


def finalize_avg(out: np.ndarray, nranks: int) -> None:
    """Divide a summed buffer by ``nranks`` in place, finishing an ``avg`` reduction.

    Floating types use true division in their own dtype (for 16-bit types: computed in float32,
    rounded once). Integer types truncate toward zero like C (and NCCL's integer average), so
    ``-7 / 2 == -3``. Signed integers need one temporary array of ``out``'s size; unsigned and
    floating types allocate nothing.

    Raises:
        ValueError: ``nranks`` is not positive.
    """
    if nranks < 1:
        raise ValueError("nranks must be at least 1")
    if nranks == 1 or out.size == 0:
        return
    kind = out.dtype.kind
    if kind in "iu" and nranks > np.iinfo(out.dtype).max:
        # every representable value is smaller than the divisor: truncation gives zero
        out[...] = 0
    elif kind == "u":
        np.floor_divide(out, out.dtype.type(nranks), out=out)
    elif kind == "i":
        divisor = out.dtype.type(nranks)
        # fmod keeps the dividend's sign, so subtracting it leaves an exact multiple and
        # floor division of an exact multiple is the truncated quotient.
        remainder = np.fmod(out, divisor)
        np.subtract(out, remainder, out=out)
        np.floor_divide(out, divisor, out=out)
    else:
        np.true_divide(out, np.asarray(nranks, dtype=out.dtype), out=out)
