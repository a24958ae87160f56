"""``quant_ring``: a ring allreduce on quantized shards.

Reduce-scatter over the ring: in step t rank r quantizes shard (r - t) of its running sum and
sends it right; it receives shard (r - t - 1), dequantizes it and adds its own input. After
p - 1 steps rank r holds the full sum of shard (r + 1), quantizes it once more, and a ring
allgather forwards the quantized shards unchanged; every rank dequantizes every shard (its own
too, so all ranks hold the same result). Arithmetic is float32; formats and scales in
:mod:`..quantize`.

An element is quantized p times on its way (its first sender, p - 2 forwarding ranks, its
owner), the ``Q`` of the error bound (:mod:`..bounds`). Bytes sent per rank, counted exactly:
about ``2·(p - 1)/p·count·(1 + 4/block)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...dtypes import DType
from ..options import Options
from ..quantize import dequantize_into, quantize_into
from .base import CompressedRunner
from .shards import offsets, packed_sizes, shard_bounds

TAG_RS, TAG_AG = 0x5A20, 0x5A21


class QuantRing(CompressedRunner):
    name = "quant_ring"

    def __init__(self, comm: Any, input: np.ndarray, output: np.ndarray, dtype: DType,
                 options: Options) -> None:
        super().__init__(comm, input, output, dtype, options)
        self.block = options.block_for(self.count)
        self.fmt = options.format
        self.bounds = shard_bounds(self.count, self.block, self.size)
        self.sizes = packed_sizes(self.bounds, self.block)
        self.offsets = offsets(self.sizes)
        largest = max(self.sizes, default=0)
        self.acc = np.empty(self.count, dtype=np.float32)
        self.tmp = np.empty(max(b - a for a, b in self.bounds) if self.bounds else 0, np.float32)
        self.send = np.empty(largest, dtype=np.uint8)
        self.recv = np.empty(largest, dtype=np.uint8)
        self.gathered = np.empty(sum(self.sizes), dtype=np.uint8)
        self.right = (self.rank + 1) % self.size
        self.left = (self.rank - 1) % self.size

    def stages(self) -> tuple[str, ...]:
        return ("partial",) * self.size if self.size > 1 else ()

    def _shard(self, i: int) -> tuple[int, int]:
        return self.bounds[i % self.size]

    def _sendrecv(self, sbuf: np.ndarray, rbuf: np.ndarray, tag: int) -> None:
        byte = self.MPI.BYTE
        self.comm.Sendrecv([sbuf, byte], dest=self.right, sendtag=tag,
                           recvbuf=[rbuf, byte], source=self.left, recvtag=tag)
        self.sent_bytes += sbuf.nbytes

    def run(self) -> None:
        self.sent_bytes = 0
        p, r = self.size, self.rank
        if p == 1 or self.count == 0:
            if self.output is not self.input:
                self.output[...] = self.input
            return
        self.acc[...] = self.input
        for t in range(p - 1):                       # reduce-scatter, requantizing every hop
            sa, sb = self._shard(r - t)
            ra, rb = self._shard(r - t - 1)
            nsend, nrecv = self.sizes[(r - t) % p], self.sizes[(r - t - 1) % p]
            quantize_into(self.acc[sa:sb], self.block, self.fmt, self.send[:nsend])
            self._sendrecv(self.send[:nsend], self.recv[:nrecv], TAG_RS)
            tmp = self.tmp[:rb - ra]
            dequantize_into(self.recv[:nrecv], rb - ra, self.block, self.fmt, tmp)
            self.acc[ra:rb] += tmp
        own = (r + 1) % p                            # allgather of quantized shards
        oa, ob = self.bounds[own]
        g = self.gathered
        quantize_into(self.acc[oa:ob], self.block, self.fmt, g[self.offsets[own]:][:self.sizes[own]])
        for t in range(p - 1):
            s, q = (r + 1 - t) % p, (r - t) % p
            self._sendrecv(g[self.offsets[s]:][:self.sizes[s]], g[self.offsets[q]:][:self.sizes[q]], TAG_AG)
        for i, (a, b) in enumerate(self.bounds):
            dequantize_into(g[self.offsets[i]:][:self.sizes[i]], b - a, self.block, self.fmt, self.acc[a:b])
        self.output[...] = self.acc
