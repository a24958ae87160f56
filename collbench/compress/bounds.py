"""The error bound of the quantized allreduces, element by element.

Stated in docs/compression.md §Bounds. Along its path through an algorithm an element goes
through ``Q`` quantization stages, each of one of two kinds:

* ``partial``: one value is quantized, a partial sum of some ranks' inputs (every hop of
  ``quant_ring``; the owner's requantization in ``quant_oneshot``). ``|v| <= U_j + E`` where
  ``U_j = Σ_ranks |x_ij|`` and ``E`` is the error so far, and its block's absmax is at most
  ``U_b + max_b E`` (``U_b`` the largest ``U_j`` of the block);
* ``inputs``: every rank's own input is quantized separately and the results are added
  (``quant_oneshot``'s first step), so their errors add: the scales sum to at most
  ``A_b/qmax`` with ``A_b = Σ_ranks absmax_b(x_i)``.

``quant_ring`` has ``Q = p`` partial stages (the first sender, ``p - 2`` forwarding ranks, the
owner before the allgather); ``quant_oneshot`` an inputs stage and a partial one; on one rank
nothing is quantized. With the per-quantization error of :mod:`.quantize`
(``relative·|v| + step·s``, ``s <= absmax/qmax``):

    E_0 = 0
    E_h = E_{h-1} + relative·(U_j + E_{h-1}) + step·S_h + 2⁻²²·(U_j + E_{h-1} + S_h)
    S_h = (U_b + max_b E_{h-1})·(1 + 2⁻²³)/qmax + 2⁻¹⁴⁹   (partial)
    S_h = A_b·(1 + 2⁻²³)/qmax + p·2⁻¹⁴⁹                    (inputs)
    bound_j = E_Q + p·2⁻²³·(U_j + E_Q) + ε_out·(U_j + E_Q) + floor_out

where the ``2⁻²²`` and ``p·2⁻²³`` terms cover float32 rounding (division, product, additions)
and ``ε_out``/``floor_out`` the final rounding to the output dtype (half an ulp: 2⁻²⁴ float32,
2⁻¹¹ float16, 2⁻⁸ bfloat16; plus half the smallest subnormal). For int8 (relative 0, step ½)
a partial stage adds about ``U_b/254``; for e4m3 about ``U_j/16``. It is worst case: real
errors are a random walk well inside it.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

from .options import FORMATS
from .quantize import ERRORS

_ROUND32 = 2.0 ** -22
_TINY32 = 2.0 ** -149


def output_rounding(dtype_name: str) -> tuple[float, float]:
    """(relative, absolute) error of rounding a float32 result to ``dtype_name``."""
    info = ml_dtypes.finfo(np.dtype(ml_dtypes.bfloat16) if dtype_name == "bfloat16" else dtype_name)
    return float(info.eps) / 2, float(info.smallest_subnormal) / 2


def block_max(values: np.ndarray, block: int) -> np.ndarray:
    """Each element's block maximum (blocks of ``block`` from element 0), elementwise."""
    n = values.size
    nb = -(-n // block)
    padded = np.zeros(nb * block, dtype=values.dtype)
    padded[:n] = values
    return np.repeat(padded.reshape(nb, block).max(axis=1), block)[:n]


def block_absmax(x: np.ndarray, block: int) -> np.ndarray:
    """One rank's absmax per block (float64), to be summed over ranks into ``A_b``."""
    n = x.size
    padded = np.zeros(-(-n // block) * block, dtype=np.float64)
    padded[:n] = np.abs(x.astype(np.float64))
    return padded.reshape(-1, block).max(axis=1)


def quantized_bound(abs_sum: np.ndarray, absmax_sum: np.ndarray, fmt: str, block: int,
                    stages: tuple[str, ...], nranks: int, dtype_name: str) -> np.ndarray:
    """The bound above for every element (float64).

    Args:
        abs_sum: ``U`` = Σ_ranks |x| per element.
        absmax_sum: ``A_b`` = Σ_ranks of each rank's block absmax (:func:`block_absmax`), per block.
        stages: the algorithm's quantization stages, ``partial`` or ``inputs`` each.

    Blocks must be those of the algorithm: both algorithms cut the vector into blocks from
    element 0 (shards are whole blocks).
    """
    model = ERRORS[fmt]
    qmax = FORMATS[fmt][1]
    u = abs_sum.astype(np.float64, copy=False)
    ub = block_max(u, block)
    ab = np.repeat(absmax_sum, block)[:u.size]
    e = np.zeros_like(u)
    for stage in stages:
        if stage == "inputs":
            s = ab * (1 + 2.0 ** -23) / qmax + nranks * _TINY32
        else:
            s = (ub + block_max(e, block)) * (1 + 2.0 ** -23) / qmax + _TINY32
        e = e + model.relative * (u + e) + model.step * s + _ROUND32 * (u + e + s)
    rel_out, abs_out = output_rounding(dtype_name)
    return e + nranks * 2.0 ** -23 * (u + e) + rel_out * (u + e) + abs_out
