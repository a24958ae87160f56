"""``topk_allgather``: every rank keeps its top k, the (index, value) pairs are allgathered
(MPI_Allgather, fixed k per rank), and every rank adds them into a dense result.

Bytes sent per rank: ``(p - 1)·k·(4 + itemsize)`` (a ring allgather). The result is exactly
the sum over ranks of each rank's selected entries, identical on every rank.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...dtypes import DType
from .. import sparse
from ..options import Options
from .base import CompressedRunner


class TopkAllgather(CompressedRunner):
    name = "topk_allgather"

    def __init__(self, comm: Any, input: np.ndarray, output: np.ndarray, dtype: DType,
                 options: Options) -> None:
        super().__init__(comm, input, output, dtype, options)
        self.k = options.k(self.count)
        self.message = self.k * sparse.entry_bytes(dtype.itemsize)
        self.send = np.empty(self.message, dtype=np.uint8)
        self.recv = np.empty(self.message * self.size, dtype=np.uint8)
        self.acc = np.empty(self.count, dtype=sparse.compute_dtype(dtype.numpy))
        byte = self.MPI.BYTE
        self._spec = ([self.send, byte], [self.recv, byte])

    def run(self) -> None:
        if self.count == 0:
            return
        idx, val = sparse.select(self.input, self.k)   # copies: safe in place
        sparse.pack(idx, val, self.dtype.numpy, self.send)
        self.comm.Allgather(*self._spec)
        self.acc.fill(0)
        for r in range(self.size):
            part = self.recv[r * self.message:(r + 1) * self.message]
            sparse.scatter_add(self.acc, *sparse.unpack(part, self.message, self.dtype.numpy))
        self.output[...] = self.acc
        self.sent_bytes = (self.size - 1) * self.message
