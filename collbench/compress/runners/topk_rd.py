"""``topk_rd``: SparCML's recursive doubling on sparse vectors (Renggli et al., SC'19).

Every rank starts from its top k. In each of the log₂ p' steps partners exchange their current
vector and both add the two: sparse while the merged fill (nonzeros / count) stays at most the
``switch`` option, dense from the step it passes it (the default switch is the fill where
pairs cost as many bytes as the dense vector, itemsize / (4 + itemsize)). A message's size
depends on how much the partners' indices overlap, so each one is probed for its size; its tag
says sparse or dense.

Rank counts that are not powers of two use the standard fold: the first ``2·(p - p')`` ranks
pair up, the even one hands its vector to the odd one before the doubling and gets the result
back after it. The result is exactly the sum over ranks of each rank's selected entries.

Recorded per run: ``dense_from_step`` (the first doubling step after which this rank held a
dense vector; 0 when it was dense before the doubling -- its own top k or the fold's merge
passed the switch --, None when it stayed sparse) and
``fill`` (the result's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ...algorithms._build import Fold
from ...dtypes import DType
from .. import sparse
from ..options import Options
from .base import CompressedRunner

TAG_SPARSE, TAG_DENSE = 0x5A01, 0x5A02


@dataclass(frozen=True)
class FoldPlan:
    """Whom one rank exchanges with in recursive doubling over any rank count (MPICH's fold,
    :class:`~collbench.algorithms._build.Fold`); the host and the nccl runners both follow it.

    Attributes:
        sits_out: An even rank of a folded pair: it hands its vector to ``rank + 1`` and gets
            the result back from it.
        folded_in: The even partner whose vector this rank adds first and to which it returns
            the result (``rank - 1``), or None.
        partners: The peer of each doubling step, in order (empty when it sits out).
        pof2: The power of two the doubling runs over.
    """

    sits_out: bool
    folded_in: int | None
    partners: tuple[int, ...]
    pof2: int

    @classmethod
    def of(cls, rank: int, size: int) -> "FoldPlan":
        f = Fold.of(size)
        me = f.newrank(rank)
        if me < 0:
            return cls(True, None, (), f.pof2)
        partners = tuple(f.member(me ^ (1 << k)) for k in range(f.pof2.bit_length() - 1))
        return cls(False, rank - 1 if rank < 2 * f.rem else None, partners, f.pof2)

    @property
    def last_step(self) -> int:
        """The doubling step after which a rank that sat out holds the result (at least 1)."""
        return max(1, self.pof2.bit_length() - 1)


class TopkRecursiveDoubling(CompressedRunner):
    name = "topk_rd"

    def __init__(self, comm: Any, input: np.ndarray, output: np.ndarray, dtype: DType,
                 options: Options) -> None:
        super().__init__(comm, input, output, dtype, options)
        n, item = self.count, dtype.itemsize
        self.k = options.k(n)
        self.switch = options.switch_fill(item)
        self.max_sparse = int(self.switch * n)          # entries a sparse message may carry
        capacity = max(n * item, self.max_sparse * sparse.entry_bytes(item), 1)
        self.send = np.empty(capacity, dtype=np.uint8)
        self.recv = np.empty(capacity, dtype=np.uint8)
        self.compute = sparse.compute_dtype(dtype.numpy)
        self.dense = np.empty(n, dtype=self.compute)
        self.plan = FoldPlan.of(self.rank, self.size)
        self.status = self.MPI.Status()

    # -- one vector, sparse or dense ------------------------------------------------------------

    def _encode(self, idx: np.ndarray | None, val: np.ndarray | None) -> tuple[int, int]:
        """Pack the current vector into ``send``; returns (bytes, tag)."""
        if idx is None:  # dense
            view = self.send[:self.count * self.dtype.itemsize].view(self.dtype.numpy)
            view[...] = self.dense
            return view.nbytes, TAG_DENSE
        return sparse.pack(idx, val, self.dtype.numpy, self.send), TAG_SPARSE

    def _exchange(self, peer: int, idx: np.ndarray | None, val: np.ndarray | None,
                  receive: bool = True, send: bool = True) -> tuple[int, int]:
        """Send the current vector to ``peer`` and/or receive its; returns (bytes, tag) received."""
        MPI, byte = self.MPI, self.MPI.BYTE
        request = None
        if send:
            nbytes, tag = self._encode(idx, val)
            request = self.comm.Isend([self.send[:nbytes], byte], dest=peer, tag=tag)
            self.sent_bytes += nbytes
        got = (0, 0)
        if receive:
            self.comm.Probe(source=peer, tag=MPI.ANY_TAG, status=self.status)
            nbytes, tag = self.status.Get_count(byte), self.status.Get_tag()
            self.comm.Recv([self.recv[:nbytes], byte], source=peer, tag=tag)
            got = (nbytes, tag)
        if request is not None:
            request.Wait()
        return got

    def _add_received(self, nbytes: int, tag: int, idx: np.ndarray | None, val: np.ndarray | None
                      ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The current vector plus the received one; None indices mean dense (in ``self.dense``)."""
        if tag == TAG_DENSE:
            other = self.recv[:nbytes].view(self.dtype.numpy)
            if idx is not None:
                self._densify(idx, val)
            self.dense += other
            return None, None
        ridx, rval = sparse.unpack(self.recv, nbytes, self.dtype.numpy)
        if idx is None:
            sparse.scatter_add(self.dense, ridx, rval)
            return None, None
        idx, val = sparse.merge(idx, val, ridx, rval)
        return self._maybe_dense(idx, val)

    def _densify(self, idx: np.ndarray, val: np.ndarray) -> None:
        self.dense.fill(0)
        self.dense[idx] = val

    def _maybe_dense(self, idx: np.ndarray, val: np.ndarray
                     ) -> tuple[np.ndarray | None, np.ndarray | None]:
        if idx.size > self.max_sparse:
            self._densify(idx, val)
            return None, None
        return idx, val

    # -- the algorithm ---------------------------------------------------------------------------

    def run(self) -> None:
        self.sent_bytes = 0
        if self.count == 0:
            return
        plan = self.plan
        idx, val = sparse.select(self.input, self.k)
        val = val.astype(self.compute)
        idx, val = self._maybe_dense(idx, val)
        dense_from = 0 if idx is None else None
        if plan.sits_out:  # fold: the even rank of each pair hands its vector to the odd one
            self._exchange(self.rank + 1, idx, val, receive=False)
            nbytes, tag = self._exchange(self.rank + 1, None, None, send=False)
            idx, val = self._add_received(nbytes, tag, np.empty(0, sparse.INDEX),
                                          np.empty(0, self.compute))
            if idx is None and dense_from is None:
                dense_from = plan.last_step
        else:
            if plan.folded_in is not None:
                idx, val = self._add_received(*self._exchange(plan.folded_in, idx, val, send=False), idx, val)
                if idx is None and dense_from is None:
                    dense_from = 0
            for step, peer in enumerate(plan.partners, 1):
                idx, val = self._add_received(*self._exchange(peer, idx, val), idx, val)
                if idx is None and dense_from is None:
                    dense_from = step
            if plan.folded_in is not None:  # unfold: the result goes back to the even partner
                self._exchange(plan.folded_in, idx, val, receive=False)
        if idx is None:
            self.output[...] = self.dense
            fill = float(np.count_nonzero(self.dense)) / self.count
        else:
            self.output[...] = 0
            self.output[idx] = val
            fill = idx.size / self.count
        self.details = {"dense_from_step": dense_from, "fill": round(fill, 6)}
