"""Arithmetic the families share: ceiling division, MPICH's non-power-of-two fold and the
block boundaries of a partition (both vectorized), and the pipeline chunk option.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ....algorithms._build import Fold, default_chunks


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def fold_arrays(f: Fold, g: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(member acting as each new rank, new rank of each member or -1, bound of each new rank
    0..pof2) of MPICH's fold, vectorized (:class:`~collbench.algorithms._build.Fold`)."""
    n = np.arange(f.pof2, dtype=np.int64)
    survivors = np.where(n < f.rem, 2 * n + 1, n + f.rem)
    nr = np.full(g, -1, dtype=np.int64)
    nr[survivors] = n
    j = np.arange(f.pof2 + 1, dtype=np.int64)
    bound = np.where(j <= f.rem, 2 * j, j + f.rem)
    return survivors, nr, bound


def partition_offsets(n: int, k: int) -> np.ndarray:
    """Block boundaries of :class:`~collbench.algorithms._build.Partition` (k + 1 offsets)."""
    q, r = divmod(n, k)
    i = np.arange(k + 1, dtype=np.int64)
    return i * q + np.minimum(i, r)


def chunks_option(options: Mapping[str, Any] | None, count: int) -> int:
    k = options.get("chunks") if options else None
    return int(k) if k is not None else default_chunks(count)
