"""Sparse vectors for the top-k algorithms: deterministic selection, merging, packing.

A sparse vector is ``(idx, val)``: int32 indices in increasing order and their values. On the
wire it is one byte buffer, the indices then the values in the run's dtype, ``4 + itemsize``
bytes per entry (:func:`pack`/:func:`unpack`).

Selection is deterministic so every implementation (and the reference) keeps the same entries:
the ``k`` largest magnitudes, ties broken by the lower index.
"""

from __future__ import annotations

import numpy as np

from .options import INDEX_BYTES

INDEX = np.dtype(np.int32)


def compute_dtype(dtype: np.dtype) -> np.dtype:
    """Sums are formed in float32 (float64 for float64 data): what a GPU implementation does."""
    return np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)


def top_k(x: np.ndarray, k: int) -> np.ndarray:
    """Indices (int32, increasing) of the ``k`` largest ``|x|``; among equal magnitudes the
    lower indices win."""
    n = x.size
    if k >= n:
        return np.arange(n, dtype=INDEX)
    if k <= 0:
        return np.empty(0, dtype=INDEX)
    mag = np.abs(x.astype(compute_dtype(x.dtype), copy=False))
    threshold = mag[np.argpartition(mag, n - k)[n - k]]   # the k-th largest magnitude
    above = np.flatnonzero(mag > threshold)
    ties = np.flatnonzero(mag == threshold)[:k - above.size]
    return np.sort(np.concatenate([above, ties])).astype(INDEX, copy=False)


def select(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(idx, val)``: the top-k entries of ``x`` (values in x's dtype)."""
    idx = top_k(x, k)
    return idx, x[idx]


def merge(ia: np.ndarray, va: np.ndarray, ib: np.ndarray, vb: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray]:
    """The sum of two sparse vectors (indices the union, increasing; values added in
    ``va``'s dtype, ``a`` first)."""
    idx = np.concatenate([ia, ib])
    val = np.concatenate([va, vb.astype(va.dtype, copy=False)])
    order = np.argsort(idx, kind="stable")
    idx, val = idx[order], val[order]
    if idx.size == 0:
        return idx, val
    starts = np.flatnonzero(np.concatenate([[True], idx[1:] != idx[:-1]]))
    return idx[starts], np.add.reduceat(val, starts)


def entry_bytes(itemsize: int) -> int:
    return INDEX_BYTES + itemsize


def pack(idx: np.ndarray, val: np.ndarray, dtype: np.dtype, out: np.ndarray) -> int:
    """Write ``(idx, val)`` into the byte buffer ``out``; returns the bytes used."""
    m = idx.size
    out[:m * INDEX_BYTES].view(INDEX)[...] = idx
    vals = out[m * INDEX_BYTES:m * (INDEX_BYTES + dtype.itemsize)].view(dtype)
    vals[...] = val
    return m * (INDEX_BYTES + dtype.itemsize)


def unpack(buf: np.ndarray, nbytes: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Views ``(idx, val)`` of a packed buffer of ``nbytes`` bytes."""
    m = nbytes // (INDEX_BYTES + dtype.itemsize)
    return buf[:m * INDEX_BYTES].view(INDEX), buf[m * INDEX_BYTES:m * (INDEX_BYTES + dtype.itemsize)].view(dtype)


def scatter_add(dense: np.ndarray, idx: np.ndarray, val: np.ndarray) -> None:
    """``dense[idx] += val`` for indices without repeats (one sparse vector)."""
    dense[idx] += val.astype(dense.dtype, copy=False)
