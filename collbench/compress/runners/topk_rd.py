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

from typing import Any

import numpy as np

from ...dtypes import DType
from .. import sparse
from ..options import Options
from .base import CompressedRunner

TAG_SPARSE, TAG_DENSE = 0x5A01, 0x5A02


def fold(p: int) -> tuple[int, int]:
    """(p', rem): the largest power of two <= p, and how many ranks fold into a partner."""
    pof2 = 1 << (p.bit_length() - 1)
    return pof2, p - pof2


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
        self.pof2, self.rem = fold(self.size)
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
        r, rem = self.rank, self.rem
        idx, val = sparse.select(self.input, self.k)
        val = val.astype(self.compute)
        idx, val = self._maybe_dense(idx, val)
        dense_from = 0 if idx is None else None
        folded_out = r < 2 * rem and r % 2 == 0
        if r < 2 * rem:  # fold: the even rank of each pair hands its vector to the odd one
            if folded_out:
                self._exchange(r + 1, idx, val, receive=False)
            else:
                idx, val = self._add_received(*self._exchange(r - 1, idx, val, send=False), idx, val)
                if idx is None and dense_from is None:
                    dense_from = 0
        if not folded_out:
            me = r // 2 if r < 2 * rem else r - rem
            mask, step = 1, 0
            while mask < self.pof2:
                step += 1
                partner = me ^ mask
                peer = partner * 2 + 1 if partner < rem else partner + rem
                idx, val = self._add_received(*self._exchange(peer, idx, val), idx, val)
                if idx is None and dense_from is None:
                    dense_from = step
                mask <<= 1
            if r < 2 * rem:  # unfold: the result goes back to the even partner
                self._exchange(r - 1, idx, val, receive=False)
        else:
            nbytes, tag = self._exchange(r + 1, None, None, send=False)
            idx, val = self._add_received(nbytes, tag, np.empty(0, sparse.INDEX),
                                          np.empty(0, self.compute))
            if idx is None and dense_from is None:
                dense_from = max(1, self.pof2.bit_length() - 1)
        if idx is None:
            self.output[...] = self.dense
            fill = float(np.count_nonzero(self.dense)) / self.count
        else:
            self.output[...] = 0
            self.output[idx] = val
            fill = idx.size / self.count
        self.details = {"dense_from_step": dense_from, "fill": round(fill, 6)}
