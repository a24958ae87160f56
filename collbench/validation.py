"""Input patterns whose collective results are exact, and the checks that count wrong elements.

Every rank fills its input from a hash of (rank, element index mod M, seed), so the expected
result of any reduction depends only on the index modulo M: it is computed once over M
residues (O(ranks × M), cheap even at thousands of ranks) and tiled.

Exactness. Values are small integers chosen so that every partial result is representable
whatever the reduction order, which makes sum, prod, max and min exact for every dtype and
every order an algorithm may use:
  * sum/avg: |value| × contributors ≤ the largest exactly representable integer of the type
    (bfloat16 256, float16 2048, int8 127, ...). When there are more ranks than that budget,
    only a band of ranks per element contributes non-zero values.
  * prod: factors in {1, 2} (and −1 for signed types) with at most log2(limit) factors of 2.
  * max/min and data movement: integers spread over the type's exact range.
The one inexact case is floating-point avg: implementations may pre-multiply by 1/n (NCCL) or
divide the sum (MPI-style post-division), so we accept |got − expected| ≤ 2 ulp, as nccl-tests
does; integer avg is the truncated quotient and exact. Comparison is bitwise everywhere else.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

from .algorithms import Collective
from .dtypes import DType

# Period of the pattern in element index; prime so blocks of power-of-two sizes do not repeat.
PERIOD = 1021

# Largest integer magnitude each type holds exactly (and never overflows in a partial result).
_EXACT_LIMIT = {"int8": 127, "uint8": 255, "int32": 2**31 - 1, "uint32": 2**32 - 1,
                "int64": 2**62, "uint64": 2**63, "float16": 2048, "bfloat16": 256,
                "float32": 2**24, "float64": 2**53}
_VALUE_CAP = 100  # keep sums of small types readable and far from overflow


def _hash(rank: int, residues: np.ndarray, seed: int) -> np.ndarray:
    """A well-mixed non-negative 31-bit integer per residue (splitmix64 finalizer)."""
    x = (residues.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
         + np.uint64((rank * 0x632BE59BD9B4E019 + seed * 0x85EBCA77C2B2AE63 + 1) % 2**64))
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return (x >> np.uint64(33)).astype(np.int64)


def _residue_values(dtype: DType, op: str | None, nranks: int, rank: int, seed: int) -> np.ndarray:
    """The M pattern values of ``rank`` (as int64), one per index residue."""
    t = np.arange(PERIOD, dtype=np.int64)
    h = _hash(rank, t, seed)
    limit = _EXACT_LIMIT[dtype.name]
    signed = dtype.is_signed
    if op in ("sum", "avg"):
        amplitude = max(1, min(_VALUE_CAP, limit // nranks))
        contributors = min(nranks, limit // amplitude)
        if op == "avg":
            signed = False  # truncation and floor agree on non-negative sums
        values = h % (2 * amplitude + 1) - amplitude if signed else h % (amplitude + 1)
        in_band = (rank - t) % nranks < contributors
        return np.where(in_band, values, 0)
    if op == "prod":
        doublings = min(nranks, int(np.log2(limit)) if limit < 2**24 else 8)
        factor = np.where(h % 3 == 0, 2, 1)
        factor = np.where((rank - t) % nranks < doublings, factor, 1)
        if signed:
            factor = np.where((h >> 8) % 5 == 0, -factor, factor)
        return factor
    # max, min and pure data movement: distinct-looking values across the exact range.
    spread = min(limit, 1 << 20)
    return h % (2 * spread + 1) - spread if signed else h % (spread + 1)


def _reduce_residues(dtype: DType, op: str, nranks: int, seed: int,
                     ranks: range | None = None) -> np.ndarray:
    """The exact reduction of every rank's residue values, as an array of ``dtype``."""
    ranks = ranks if ranks is not None else range(nranks)
    if op in ("sum", "avg", "prod"):
        acc = np.zeros(PERIOD, dtype=np.int64) if op != "prod" else np.ones(PERIOD, dtype=np.int64)
        combine = np.multiply if op == "prod" else np.add
    else:
        acc = None
        combine = np.maximum if op == "max" else np.minimum
    for r in ranks:
        values = _residue_values(dtype, op, nranks, r, seed)
        acc = values if acc is None else combine(acc, values)
    if op == "avg":
        if dtype.is_float:
            return (acc.astype(np.float64) / nranks).astype(dtype.numpy)
        acc = acc // nranks  # non-negative, so truncation == floor
    return acc.astype(dtype.numpy)


def _tile(residues: np.ndarray, start: int, length: int) -> np.ndarray:
    return residues[(start + np.arange(length, dtype=np.int64)) % PERIOD]


def make_input(collective: Collective, dtype: DType, op: str | None, nranks: int, rank: int,
               length: int, seed: int) -> np.ndarray:
    """Rank ``rank``'s input of ``length`` elements for a check with ``seed``."""
    op = op if collective.reduces else None
    return _tile(_residue_values(dtype, op, nranks, rank, seed).astype(dtype.numpy), 0, length)


def expected_output(collective: Collective, dtype: DType, op: str | None, nranks: int, rank: int,
                    count: int, seed: int, root: int = 0) -> np.ndarray | None:
    """What ``rank``'s output must hold, or None when the collective defines none there."""
    if collective is Collective.ALLREDUCE:
        return _tile(_reduce_residues(dtype, op, nranks, seed), 0, count)
    if collective is Collective.REDUCE_SCATTER:
        return _tile(_reduce_residues(dtype, op, nranks, seed), rank * count, count)
    if collective is Collective.REDUCE:
        return _tile(_reduce_residues(dtype, op, nranks, seed), 0, count) if rank == root else None
    if collective is Collective.ALLGATHER:
        return np.concatenate([make_input(collective, dtype, None, nranks, q, count, seed)
                               for q in range(nranks)]) if count else np.empty(0, dtype.numpy)
    if collective is Collective.BROADCAST:
        return make_input(collective, dtype, None, nranks, root, count, seed)
    raise ValueError(f"no expected output for {collective}")


def count_wrong(actual: np.ndarray, expected: np.ndarray, dtype: DType, op: str | None) -> int:
    """Number of elements of ``actual`` that differ from ``expected`` (bitwise; 2 ulp for float avg)."""
    if actual.shape != expected.shape:
        raise ValueError(f"output has {actual.size} elements, expected {expected.size}")
    if op == "avg" and dtype.is_float:
        got = actual.astype(np.float64)
        want = expected.astype(np.float64)
        info = ml_dtypes.finfo(dtype.numpy)  # numpy's finfo does not know bfloat16
        tolerance = 2 * float(info.eps) * np.abs(want) + float(info.tiny)
        return int(np.count_nonzero(~(np.abs(got - want) <= tolerance)))
    bits = np.dtype(f"u{dtype.itemsize}")
    return int(np.count_nonzero(actual.view(bits) != expected.view(bits)))
