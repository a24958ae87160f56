"""Inputs for compressed algorithms: gradient-like floats, seeded per (rank, round).

The harness's exact integer patterns (collbench/validation.py) make every compressed
algorithm look wrong or trivial (top-k of small integers is mostly ties; quantizing them is
exact). These are what the algorithms are for: Gaussian values with a few seeded outliers
(0.1 % of the elements, 20 times larger), different on every rank and every validation round.

* :func:`dense_input` -- quantized and low-rank algorithms: continuous values, σ = 0.01.
* :func:`grid_input` -- top-k algorithms: the same distribution rounded to a grid
  ``k·2⁻¹²`` with ``|k| <= limit / nranks``, where ``limit`` is the largest integer the dtype
  holds exactly (2048 float16, 256 bfloat16; 4096 is used for float32/float64 to keep the grid
  fine). Every partial sum of any subset of ranks is then exact in the dtype whatever the order,
  so the top-k algorithms are validated bit for bit (and magnitude ties, which selection must
  break by the lower index, really occur).
"""

from __future__ import annotations

import numpy as np

from ..dtypes import DType

SIGMA = 0.01
OUTLIER_FRACTION = 1e-3
OUTLIER_SCALE = 20.0
_GRID = 2.0 ** -12
_GRID_LIMIT = {"float16": 2048, "bfloat16": 256, "float32": 4096, "float64": 4096}
_STREAM = 0xC0FFEE  # keeps these draws apart from any other seeded stream


def _gaussian(nranks: int, rank: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([_STREAM, seed, rank, nranks])
    x = rng.standard_normal(n, dtype=np.float32)
    outliers = rng.integers(0, max(n, 1), size=int(n * OUTLIER_FRACTION))
    x[outliers] *= OUTLIER_SCALE
    return x


def dense_input(dtype: DType, nranks: int, rank: int, n: int, seed: int) -> np.ndarray:
    """Gaussian (σ = 0.01) with outliers, in ``dtype``."""
    x = _gaussian(nranks, rank, n, seed)
    x *= np.float32(SIGMA)
    return x.astype(dtype.numpy)


def grid_limit(dtype: DType, nranks: int) -> int:
    """The largest |k| of one rank's grid values (partial sums stay exact)."""
    return max(1, _GRID_LIMIT[dtype.name] // max(1, nranks))


def grid_input(dtype: DType, nranks: int, rank: int, n: int, seed: int) -> np.ndarray:
    """Gaussian with outliers on the grid ``k·2⁻¹²``, ``|k| <= grid_limit``, in ``dtype``."""
    limit = grid_limit(dtype, nranks)
    k = np.rint(_gaussian(nranks, rank, n, seed) * np.float32(limit / 6.0))
    np.clip(k, -limit, limit, out=k)
    k += np.float32(0.0)  # no -0.0: a dense result's zeros are +0.0 and are compared bit for bit
    return (k * np.float32(_GRID)).astype(dtype.numpy)


def make_input(family: str, dtype: DType, nranks: int, rank: int, n: int, seed: int) -> np.ndarray:
    """This rank's input for an algorithm of ``family`` (``sparse``, ``quantized``, ``lowrank``)."""
    if family == "sparse":
        return grid_input(dtype, nranks, rank, n, seed)
    return dense_input(dtype, nranks, rank, n, seed)
