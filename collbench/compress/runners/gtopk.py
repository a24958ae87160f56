"""``gtopk``: global top-k (Shi et al., ICDCS 2019): a tree reduction of top-k vectors that
keeps only the top k of every merge, then a broadcast of the final k pairs.

Every rank selects its top k. In a binomial tree towards rank 0 (any rank count), a parent
adds its child's k pairs to its own and keeps the top k of the sum (magnitude, ties to the
lower index); after ⌈log₂ p⌉ rounds rank 0 holds k pairs, which MPI_Bcast sends to everyone,
and every rank writes them into a dense result. Messages are always k pairs.

Lossy by design: an entry dropped at some merge never comes back, so a surviving entry may
lack contributions. It is validated against its own definition (a numpy replay of the same
tree, :func:`collbench.compress.reference.gtopk`), bit for bit, and its error against the exact
dense sum is reported like every other algorithm's.

Bytes sent per rank: k·(4 + itemsize) to its parent, plus the same per child in a binomial
broadcast (rank 0: ⌈log₂ p⌉ children).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...dtypes import DType
from .. import sparse
from ..options import Options
from .base import CompressedRunner

TAG_TREE = 0x5A10


def binomial_children(rank: int, p: int) -> list[int]:
    """Children of ``rank`` in the binomial tree rooted at 0 (the order rounds visit them)."""
    children, mask = [], 1
    while mask < p:
        if rank & mask:
            break
        if rank + mask < p:
            children.append(rank + mask)
        mask <<= 1
    return children


def binomial_parent(rank: int) -> int | None:
    return None if rank == 0 else rank & (rank - 1)


def keep_top(idx: np.ndarray, val: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The top k of a merged sparse vector (indices increasing, so ties go to the lower index)."""
    if idx.size <= k:
        return idx, val
    keep = sparse.top_k(val, k)
    return idx[keep], val[keep]


class GlobalTopk(CompressedRunner):
    name = "gtopk"

    def __init__(self, comm: Any, input: np.ndarray, output: np.ndarray, dtype: DType,
                 options: Options) -> None:
        super().__init__(comm, input, output, dtype, options)
        self.k = options.k(self.count)
        self.message = self.k * sparse.entry_bytes(dtype.itemsize)
        self.buf = np.empty(self.message, dtype=np.uint8)
        self.recv = np.empty(self.message, dtype=np.uint8)
        self.compute = sparse.compute_dtype(dtype.numpy)
        self.children = binomial_children(self.rank, self.size)
        self.parent = binomial_parent(self.rank)

    def run(self) -> None:
        if self.count == 0:
            return
        byte, item = self.MPI.BYTE, self.dtype.numpy
        idx, val = sparse.select(self.input, self.k)
        val = val.astype(self.compute)
        for child in self.children:   # children in increasing distance: the reduction rounds
            self.comm.Recv([self.recv, byte], source=child, tag=TAG_TREE)
            cidx, cval = sparse.unpack(self.recv, self.message, item)
            idx, val = keep_top(*sparse.merge(idx, val, cidx, cval), self.k)
        if self.parent is not None:
            sparse.pack(idx, val, item, self.buf)
            self.comm.Send([self.buf, byte], dest=self.parent, tag=TAG_TREE)
        else:
            sparse.pack(idx, val, item, self.buf)
        self.comm.Bcast([self.buf, byte], root=0)
        fidx, fval = sparse.unpack(self.buf, self.message, item)
        self.output[...] = 0
        self.output[fidx] = fval
        sent = self.message if self.parent is not None else 0
        self.sent_bytes = sent + len(self.children) * self.message
