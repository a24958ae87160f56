"""Single-process numpy references: what each compressed algorithm must return, from every
rank's input at once. They share the primitives (selection order, quantization) with the
runners but none of their control flow, so a runner that loses, repeats or misroutes a message
differs from them. Used by the tests (deterministic small cases, bit for bit) and by the
validation of ``gtopk`` (:mod:`.check`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .quantize import roundtrip
from .runners.gtopk import binomial_children
from .runners.powersgd import initial_q
from .runners.shards import shard_bounds
from .sparse import compute_dtype


def exact_sum(inputs: Sequence[np.ndarray]) -> np.ndarray:
    """The dense allreduce in float64."""
    return np.sum([np.asarray(x, dtype=np.float64) for x in inputs], axis=0)


def selected(x: np.ndarray, k: int) -> np.ndarray:
    """Indices of the top k by (|value| descending, index ascending), via a full sort."""
    order = np.lexsort((np.arange(x.size), -np.abs(x.astype(np.float64))))
    return np.sort(order[:k])


def topk_sum(inputs: Sequence[np.ndarray], k: int) -> np.ndarray:
    """``topk_allgather`` and ``topk_rd``: the sum of every rank's top k, in the input dtype."""
    dense = np.zeros(inputs[0].size, dtype=np.float64)
    for x in inputs:
        idx = selected(x, k)
        dense[idx] += x[idx].astype(np.float64)
    return dense.astype(inputs[0].dtype)


def gtopk(selections: Sequence[tuple[np.ndarray, np.ndarray]], n: int, k: int,
          dtype: np.dtype) -> np.ndarray:
    """``gtopk`` from every rank's top k (indices, values): the binomial tree replayed with
    dense arrays and a support mask (a merged entry that sums to zero stays a candidate)."""
    compute = compute_dtype(dtype)

    def subtree(rank: int) -> tuple[np.ndarray, np.ndarray]:
        values = np.zeros(n, dtype=compute)
        support = np.zeros(n, dtype=bool)
        idx, val = selections[rank]
        values[idx] = np.asarray(val).astype(compute)
        support[idx] = True
        for child in binomial_children(rank, len(selections)):
            cvals, csupport = subtree(child)
            values[csupport] += cvals[csupport].astype(dtype).astype(compute)  # travels as dtype
            support |= csupport
            candidates = np.flatnonzero(support)
            if candidates.size > k:
                mags = np.abs(values[candidates].astype(np.float64))
                keep = candidates[np.lexsort((candidates, -mags))[:k]]
                support[:] = False
                support[keep] = True
                values[~support] = 0
        return values, support

    values, _ = subtree(0)
    return values.astype(dtype)


def quant_ring(inputs: Sequence[np.ndarray], fmt: str, block: int) -> np.ndarray:
    """``quant_ring``: shard s starts at rank s, travels right through every rank (quantized
    before each hop) and is quantized once more by its owner, rank s - 1."""
    p, n = len(inputs), inputs[0].size
    if p == 1:
        return np.array(inputs[0], copy=True)
    out = np.empty(n, dtype=np.float32)
    for s, (a, b) in enumerate(shard_bounds(n, block, p)):
        v = inputs[s][a:b].astype(np.float32)
        for hop in range(1, p):
            v = roundtrip(v, block, fmt) + inputs[(s + hop) % p][a:b].astype(np.float32)
        out[a:b] = roundtrip(v, block, fmt)
    return out.astype(inputs[0].dtype)


def quant_oneshot(inputs: Sequence[np.ndarray], fmt: str, block: int) -> np.ndarray:
    """``quant_oneshot``: the owner adds every other rank's quantized shard (rank order) to its
    own, and quantizes the sum once."""
    p, n = len(inputs), inputs[0].size
    if p == 1:
        return np.array(inputs[0], copy=True)
    out = np.empty(n, dtype=np.float32)
    for owner, (a, b) in enumerate(shard_bounds(n, block, p)):
        acc = inputs[owner][a:b].astype(np.float32)
        for j in range(p):
            if j != owner:
                acc = acc + roundtrip(inputs[j][a:b].astype(np.float32), block, fmt)
        out[a:b] = roundtrip(acc, block, fmt)
    return out.astype(inputs[0].dtype)


def powersgd(total: np.ndarray, shape: tuple[int, int], rank: int) -> np.ndarray:
    """``powersgd`` in float64 from the exact sum (the algorithm is linear in the inputs up to
    the orthogonalization, which only sees the summed P)."""
    m, n = shape
    matrix = np.zeros(m * n, dtype=np.float64)
    matrix[:total.size] = total
    matrix = matrix.reshape(m, n)
    basis = np.linalg.qr(matrix @ initial_q(n, rank, np.dtype(np.float64)), mode="reduced")[0]
    return (basis @ (matrix.T @ basis).T).reshape(-1)[:total.size]
