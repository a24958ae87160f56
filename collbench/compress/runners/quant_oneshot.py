"""``quant_oneshot``: the two-shot allreduce on quantized shards, for small sizes.

Each rank quantizes every other rank's shard of its input once and sends it straight to that
rank (MPI_Alltoallv); the owner dequantizes the p - 1 shards it got, adds them to its own
(unquantized) shard in float32, quantizes the sum once, and an MPI_Allgatherv gives everyone
every quantized shard, which every rank dequantizes. Two steps whatever p (hence "one shot":
no ring of p - 1 hops), and two quantizations on any element's path (``Q = 2`` in
:mod:`..bounds`) instead of the ring's p.

Bytes sent per rank (direct exchanges, which is what MPI does for these at large sizes):
the other ranks' packed shards, then its own packed shard p - 1 times.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...dtypes import DType
from ..options import Options
from ..quantize import dequantize_into, quantize_into
from .base import CompressedRunner
from .shards import offsets, packed_sizes, shard_bounds


class QuantOneshot(CompressedRunner):
    name = "quant_oneshot"

    def __init__(self, comm: Any, input: np.ndarray, output: np.ndarray, dtype: DType,
                 options: Options) -> None:
        super().__init__(comm, input, output, dtype, options)
        p, r = self.size, self.rank
        self.block = options.block_for(self.count)
        self.fmt = options.format
        self.bounds = shard_bounds(self.count, self.block, p)
        self.sizes = packed_sizes(self.bounds, self.block)
        self.offsets = offsets(self.sizes)
        mine = self.sizes[r]
        # Alltoallv: to rank j its shard (nothing to myself); from every j my shard
        scounts = [0 if j == r else self.sizes[j] for j in range(p)]
        rcounts = [0 if j == r else mine for j in range(p)]
        self.sendbuf = np.empty(sum(scounts), dtype=np.uint8)
        self.recvbuf = np.empty(sum(rcounts), dtype=np.uint8)
        self.soff, self.roff = offsets(scounts), offsets(rcounts)
        byte = self.MPI.BYTE
        self._a2a = ([self.sendbuf, (scounts, self.soff), byte], [self.recvbuf, (rcounts, self.roff), byte])
        self.mine = np.empty(mine, dtype=np.uint8)
        self.gathered = np.empty(sum(self.sizes), dtype=np.uint8)
        self._ag = ([self.mine, byte], [self.gathered, (self.sizes, self.offsets), byte])
        a, b = self.bounds[r]
        self.acc = np.empty(b - a, dtype=np.float32)
        self.tmp = np.empty(b - a, dtype=np.float32)
        self.full = np.empty(self.count, dtype=np.float32)
        self.scounts = scounts

    def stages(self) -> tuple[str, ...]:
        return ("inputs", "partial") if self.size > 1 else ()

    def run(self) -> None:
        p, r = self.size, self.rank
        if p == 1 or self.count == 0:
            if self.output is not self.input:
                self.output[...] = self.input
            self.sent_bytes = 0
            return
        x = self.input
        for j, (a, b) in enumerate(self.bounds):
            if j != r and b > a:
                dst = self.sendbuf[self.soff[j]:self.soff[j] + self.scounts[j]]
                quantize_into(x[a:b].astype(np.float32), self.block, self.fmt, dst)
        a, b = self.bounds[r]
        self.acc[...] = x[a:b]                       # read before the allgather overwrites it
        self.comm.Alltoallv(*self._a2a)
        for j in range(p):
            if j != r and b > a:
                dequantize_into(self.recvbuf[self.roff[j]:self.roff[j] + self.sizes[r]], b - a,
                                self.block, self.fmt, self.tmp)
                self.acc += self.tmp
        if b > a:
            quantize_into(self.acc, self.block, self.fmt, self.mine)
        self.comm.Allgatherv(*self._ag)
        for i, (lo, hi) in enumerate(self.bounds):
            dequantize_into(self.gathered[self.offsets[i]:][:self.sizes[i]], hi - lo, self.block,
                            self.fmt, self.full[lo:hi])
        self.output[...] = self.full
        self.sent_bytes = sum(self.scounts) + (p - 1) * self.sizes[r]
