"""Arithmetic the families share: ceiling division, MPICH's non-power-of-two fold and the
block boundaries of a partition (both vectorized), the pipeline chunk option, and the cost of a
group of one.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ....algorithms._build import Fold, default_chunks
from ..cost import PhaseList, Sig
from ..topo import Topo, masked, vstep


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


def fold_in(topo: Topo, f: Fold, nbytes: int, reduce: bool = True, copy: Any = 0) -> tuple[Sig, ...]:
    """The fold's first step: the even member of each of the first ``rem`` pairs sends
    ``nbytes`` to the odd one, which adds them in (``reduce``) or copies ``copy`` bytes."""
    idx = np.arange(topo.size)
    even, odd = _pairs(f, idx)
    return vstep(topo, [(masked(even, idx + 1), nbytes)], [(masked(odd, idx - 1), nbytes)],
                 np.where(odd, nbytes, 0) if reduce else 0, np.where(odd, copy, 0) if copy else 0)


def fold_out(topo: Topo, f: Fold, nbytes: int) -> tuple[Sig, ...]:
    """The fold's last step: the odd member of each pair sends ``nbytes`` of result back."""
    idx = np.arange(topo.size)
    even, odd = _pairs(f, idx)
    return vstep(topo, [(masked(odd, idx - 1), nbytes)], [(masked(even, idx + 1), nbytes)])


def _pairs(f: Fold, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(even, odd) members of the folded pairs."""
    pair = idx < 2 * f.rem
    return pair & (idx % 2 == 0), pair & (idx % 2 == 1)


def partition_offsets(n: int, k: int) -> np.ndarray:
    """Block boundaries of :class:`~collbench.algorithms._build.Partition` (k + 1 offsets)."""
    q, r = divmod(n, k)
    i = np.arange(k + 1, dtype=np.int64)
    return i * q + np.minimum(i, r)


def chunks_option(options: Mapping[str, Any] | None, count: int) -> int:
    k = options.get("chunks") if options else None
    return int(k) if k is not None else default_chunks(count)


def alone(copy: int) -> PhaseList:
    """The phases of a group of one member: at most one local copy of ``copy`` bytes."""
    out = PhaseList()
    if copy:
        out.add(1, Sig(copy=copy))
    return out
