"""The compressed runners of the nccl backend: the same algorithms as :mod:`.runners` on CuPy
buffers, with NCCL moving the bytes and csrc/compress.cu doing the local work
(:mod:`.device`).

Each one is its host twin step for step -- the same messages in the same wire format (indices
then values; scales then codes), the same bytes counted in ``sent_bytes``, the same
quantization stages -- and gives the same bits (tests/compress/test_gpu_path.py). What differs:

* NCCL has no probe, so ``topk_rd`` sends each message's size and kind first (16 bytes,
  counted in ``compress.header_bytes``, not in ``sent_bytes``), and the host reads it back;
* MPI's Alltoallv/Allgatherv become one group of ncclSend/ncclRecv, the allgather of
  ``topk_allgather`` is ncclAllGather and the broadcast of ``gtopk`` ncclBroadcast;
* sparse merges use a dense float32 vector with a support mask instead of sorted pair lists
  (same sums: a merge of two sparse vectors adds where both have an entry and keeps the value
  itself elsewhere);
* packed shards start on 16-byte boundaries in the receive buffers (float32 scales must be
  aligned); the bytes on the wire are unpadded.

Selections read counters back (:mod:`.device`) and ``topk_rd`` reads message headers, so the
top-k runners synchronize the stream inside a run; none of them is graph-capturable, and the
nccl backend refuses ``-G`` for compressed algorithms. ``powersgd`` computes with float32
kernels in another order than the host's BLAS, so it matches the mpi path within its
tolerance, not bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..dtypes import DType
from . import sparse
from .device import INDEX, CompressKernels, storage
from .options import Options
from .runners.base import CompressedRunner
from .runners.gtopk import binomial_children, binomial_parent
from .runners.powersgd import initial_q
from .runners.shards import packed_sizes, shard_bounds
from .runners.topk_rd import FoldPlan

UINT8 = 1  # ncclUint8: every message travels as bytes
FLOAT32, SUM = 7, 0  # ncclFloat32, ncclSum: powersgd's two allreduces
ALIGN = 16
TAG_SPARSE, TAG_DENSE = 1, 2


def aligned_offsets(sizes: list[int]) -> list[int]:
    """Offsets of packed pieces placed one after another on 16-byte boundaries."""
    out, total = [], 0
    for s in sizes:
        out.append(total)
        total += -(-s // ALIGN) * ALIGN
    return out


@dataclass
class NcclContext:
    """What a runner needs of the nccl backend."""

    comm: Any      # cupy.cuda.nccl.NcclCommunicator
    nccl: Any      # the cupy.cuda.nccl module (groupStart/groupEnd)
    cupy: Any
    stream: Any
    rank: int
    size: int


class GpuRunner(CompressedRunner):
    """Base of the nccl runners (``run``/``free``, ``sent_bytes``, ``stages``, ``facts`` as the
    host runners). ``input``/``output`` are device views in the run's storage dtype.
    :class:`CompressedRunner`'s constructor is not called: it reads an mpi4py communicator."""

    def __init__(self, ctx: NcclContext, input: Any, output: Any, dtype: DType, options: Options) -> None:
        self.ctx = ctx
        self.comm = ctx.comm
        self.cp = ctx.cupy
        self.stream = ctx.stream
        self.rank, self.size = ctx.rank, ctx.size
        self.input, self.output = input, output
        self.dtype = dtype
        self.count = output.size
        self.options = options
        self.sent_bytes = 0
        self.details: dict[str, Any] = {}
        self.kern = CompressKernels(dtype.name, ctx.stream)
        self.item = dtype.itemsize
        self.store = storage(dtype.name)

    def _bytes(self, n: int) -> Any:
        return self.cp.empty(max(n, 1), dtype=np.uint8)

    def _send(self, buf: Any, nbytes: int, peer: int) -> None:
        if nbytes:
            self.comm.send(buf.data.ptr, nbytes, UINT8, peer, self.stream.ptr)

    def _recv(self, buf: Any, nbytes: int, peer: int) -> None:
        if nbytes:
            self.comm.recv(buf.data.ptr, nbytes, UINT8, peer, self.stream.ptr)

    def _group(self, sends: list[tuple[Any, int, int]], recvs: list[tuple[Any, int, int]],
               counted: bool = True) -> None:
        """One NCCL group of (buffer, bytes, peer) sends and receives; adds the bytes sent to
        ``sent_bytes`` unless ``counted`` is False."""
        nccl = self.ctx.nccl
        nccl.groupStart()
        try:
            for buf, nbytes, peer in sends:
                self._send(buf, nbytes, peer)
                self.sent_bytes += nbytes if counted else 0
            for buf, nbytes, peer in recvs:
                self._recv(buf, nbytes, peer)
        finally:
            nccl.groupEnd()

    def _copy(self, dst: Any, src: Any) -> None:
        if src.nbytes and dst.data.ptr != src.data.ptr:
            rt = self.cp.cuda.runtime
            rt.memcpyAsync(dst.data.ptr, src.data.ptr, src.nbytes, rt.memcpyDeviceToDevice, self.stream.ptr)

    def _pairs(self, buf: Any, m: int, dtype: np.dtype | None = None) -> tuple[Any, Any]:
        """Views (idx, val) of ``m`` packed pairs at the start of the byte buffer ``buf``."""
        dt = self.store if dtype is None else dtype
        return buf[:m * 4].view(INDEX), buf[m * 4:m * (4 + dt.itemsize)].view(dt)


class TopkAllgatherGpu(GpuRunner):
    name = "topk_allgather"

    def __init__(self, ctx: NcclContext, input: Any, output: Any, dtype: DType, options: Options) -> None:
        super().__init__(ctx, input, output, dtype, options)
        self.k = options.k(self.count)
        self.message = self.k * sparse.entry_bytes(self.item)
        self.send = self._bytes(self.message)
        self.recv = self._bytes(self.message * self.size)
        self.staging = self._bytes(self.message)     # a rank's pairs when they land unaligned
        self.acc = self.cp.empty(max(self.count, 1), dtype=np.float32)

    def run(self) -> None:
        if self.count == 0:
            return
        k, n = self.k, self.count
        self.kern.select(self.input, n, k, *self._pairs(self.send, k))
        self.comm.allGather(self.send.data.ptr, self.recv.data.ptr, self.message, UINT8, self.stream.ptr)
        self.kern.zero(self.acc, None, n)
        for r in range(self.size):                   # rank order, as the host runner adds
            part = self.recv[r * self.message:(r + 1) * self.message]
            if (r * self.message) % 4:
                self._copy(self.staging[:self.message], part)
                part = self.staging
            self.kern.scatter(*self._pairs(part, k), k, self.acc, None)
        self.kern.store(self.acc, self.output, n)
        self.sent_bytes = (self.size - 1) * self.message


class TopkRecursiveDoublingGpu(GpuRunner):
    """``topk_rd`` (see :mod:`.runners.topk_rd`): the vector is a dense float32 ``acc`` with a
    support mask while sparse (zero outside the support), and ``acc`` alone once dense."""

    name = "topk_rd"

    def __init__(self, ctx: NcclContext, input: Any, output: Any, dtype: DType, options: Options) -> None:
        super().__init__(ctx, input, output, dtype, options)
        n, item = self.count, self.item
        self.k = options.k(n)
        self.switch = options.switch_fill(item)
        self.max_sparse = int(self.switch * n)
        capacity = max(n * item, self.max_sparse * sparse.entry_bytes(item), 1)
        self.send = self._bytes(capacity)
        self.recv = self._bytes(capacity)
        self.picked = self._bytes(self.k * sparse.entry_bytes(item))   # this rank's own top k
        self.acc = self.cp.empty(max(n, 1), dtype=np.float32)
        self.support = self.cp.empty(max(n, 1), dtype=np.uint8)
        self.header_out = self.cp.empty(2, dtype=np.int64)
        self.header_in = self.cp.empty(2, dtype=np.int64)
        self.plan = FoldPlan.of(self.rank, self.size)
        self.dense = False
        self.nnz = 0
        self.header_bytes = 0

    def _encode(self) -> tuple[int, int]:
        n = self.count
        if self.dense:
            self.kern.store(self.acc, self.send[:n * self.item].view(self.store), n)
            return n * self.item, TAG_DENSE
        m = self.nnz
        written = self.kern.compact(self.acc, self.support, n, *self._pairs(self.send, m))
        assert written == m, (written, m)
        return m * sparse.entry_bytes(self.item), TAG_SPARSE

    def _exchange(self, peer: int, receive: bool = True, send: bool = True) -> tuple[int, int]:
        """Send the current vector to ``peer`` and/or receive its: a 16-byte header (size, kind)
        first, read back on the host, then the payload. Returns (bytes, kind) received."""
        nbytes = tag = 0
        if send:
            nbytes, tag = self._encode()
            self.header_out.set(np.array([nbytes, tag], dtype=np.int64), stream=self.stream)
        self._group([(self.header_out.view(np.uint8), 16, peer)] if send else [],
                    [(self.header_in.view(np.uint8), 16, peer)] if receive else [], counted=False)
        self.header_bytes += 16 if send else 0
        got = (0, 0)
        if receive:
            self.kern.syncs += 1
            header = self.header_in.get(stream=self.stream)
            self.stream.synchronize()
            got = (int(header[0]), int(header[1]))
        self._group([(self.send, nbytes, peer)] if send else [],
                    [(self.recv, got[0], peer)] if receive else [])
        return got

    def _add_received(self, nbytes: int, tag: int) -> None:
        n = self.count
        if tag == TAG_DENSE:
            self.kern.add_dense(self.recv[:n * self.item].view(self.store), self.acc, n)
            self.dense = True
            return
        m = nbytes // sparse.entry_bytes(self.item)
        if self.dense:
            self.kern.scatter(*self._pairs(self.recv, m), m, self.acc, None)
            return
        self.kern.scatter(*self._pairs(self.recv, m), m, self.acc, self.support)
        self.nnz = self.kern.count(self.acc, self.support, n)
        self._maybe_dense()

    def _maybe_dense(self) -> None:
        if not self.dense and self.nnz > self.max_sparse:
            self.dense = True

    def run(self) -> None:
        self.sent_bytes = self.header_bytes = 0
        self.kern.syncs = 0
        if self.count == 0:
            return
        n, plan = self.count, self.plan
        self.dense = False
        self.kern.select(self.input, n, self.k, *self._pairs(self.picked, self.k))
        self.kern.zero(self.acc, self.support, n)
        self.kern.scatter(*self._pairs(self.picked, self.k), self.k, self.acc, self.support)
        self.nnz = self.k
        self._maybe_dense()
        dense_from = 0 if self.dense else None
        if plan.sits_out:  # as the host runner (runners/topk_rd.py): hand over, get the result back
            self._exchange(self.rank + 1, receive=False)
            self.kern.zero(self.acc, self.support, n)   # the host runner starts from an empty vector
            self.nnz, self.dense = 0, False
            self._add_received(*self._exchange(self.rank + 1, send=False))
            if self.dense and dense_from is None:
                dense_from = plan.last_step
        else:
            if plan.folded_in is not None:
                self._add_received(*self._exchange(plan.folded_in, send=False))
                if self.dense and dense_from is None:
                    dense_from = 0
            for step, peer in enumerate(plan.partners, 1):
                self._add_received(*self._exchange(peer))
                if self.dense and dense_from is None:
                    dense_from = step
            if plan.folded_in is not None:
                self._exchange(plan.folded_in, receive=False)
        self.kern.store(self.acc, self.output, n)
        self.details = {"dense_from_step": dense_from}

    def facts(self) -> dict[str, Any]:
        """The row's record; ``fill`` is counted here (after the timed loop), not in every run."""
        record = super().facts()
        if self.count:
            nonzero = self.kern.count(self.acc, None, self.count) if self.dense else self.nnz
            record["fill"] = round(nonzero / self.count, 6)
        record["header_bytes"] = self.header_bytes
        return record


class GlobalTopkGpu(GpuRunner):
    """``gtopk`` (see :mod:`.runners.gtopk`): the running top k is a dense float32 ``acc`` with a
    support mask; a child's k pairs are merged into it and, when more than k entries are
    supported, the top k (float32 magnitudes, ties to the lower index) are kept."""

    name = "gtopk"

    def __init__(self, ctx: NcclContext, input: Any, output: Any, dtype: DType, options: Options) -> None:
        super().__init__(ctx, input, output, dtype, options)
        self.k = options.k(self.count)
        self.message = self.k * sparse.entry_bytes(self.item)
        self.buf = self._bytes(self.message)
        self.recv = self._bytes(self.message)
        self.kept = self._bytes(self.k * 8)               # the kept pairs, float32 values
        self.acc = self.cp.empty(max(self.count, 1), dtype=np.float32)
        self.support = self.cp.empty(max(self.count, 1), dtype=np.uint8)
        self.children = binomial_children(self.rank, self.size)
        self.parent = binomial_parent(self.rank)

    def run(self) -> None:
        if self.count == 0:
            return
        n, k, kern = self.count, self.k, self.kern
        f32 = np.dtype(np.float32)
        kern.select(self.input, n, k, *self._pairs(self.buf, k))
        kern.zero(self.acc, self.support, n)
        kern.scatter(*self._pairs(self.buf, k), k, self.acc, self.support)
        self.sent_bytes = 0
        for child in self.children:
            self._group([], [(self.recv, self.message, child)])
            kern.scatter(*self._pairs(self.recv, k), k, self.acc, self.support)
            if kern.count(self.acc, self.support, n) > k:
                idx, val = self._pairs(self.kept, k, f32)
                kern.select_masked(self.acc, self.support, n, k, idx, val, "float32")
                kern.zero(self.acc, self.support, n)
                kern.scatter(idx, val, k, self.acc, self.support, "float32")
        kern.compact(self.acc, self.support, n, *self._pairs(self.buf, k))
        if self.parent is not None:
            self._group([(self.buf, self.message, self.parent)], [])
        self.comm.broadcast(self.buf.data.ptr, self.buf.data.ptr, self.message, UINT8, 0, self.stream.ptr)
        kern.zero(self.acc, self.support, n)              # output = 0, output[idx] = val
        kern.scatter(*self._pairs(self.buf, k), k, self.acc, self.support)
        kern.store(self.acc, self.output, n)
        self.sent_bytes = (self.message if self.parent is not None else 0) + len(self.children) * self.message


class _Quantized(GpuRunner):
    def __init__(self, ctx: NcclContext, input: Any, output: Any, dtype: DType, options: Options) -> None:
        super().__init__(ctx, input, output, dtype, options)
        self.block = options.block_for(self.count)
        self.fmt = options.format
        self.bounds = shard_bounds(self.count, self.block, self.size)
        self.sizes = packed_sizes(self.bounds, self.block)
        self.offsets = aligned_offsets(self.sizes)

    def _passthrough(self) -> bool:
        if self.size == 1 or self.count == 0:
            self._copy(self.output, self.input)
            self.sent_bytes = 0
            return True
        return False

    def _piece(self, buf: Any, i: int) -> Any:
        return buf[self.offsets[i]:self.offsets[i] + self.sizes[i]]

    def _dequantize_all(self, gathered: Any) -> None:
        for i, (a, b) in enumerate(self.bounds):
            self.kern.dequantize(self._piece(gathered, i), b - a, self.block, self.fmt, self.output[a:b])


class QuantRingGpu(_Quantized):
    name = "quant_ring"

    def __init__(self, ctx: NcclContext, input: Any, output: Any, dtype: DType, options: Options) -> None:
        super().__init__(ctx, input, output, dtype, options)
        largest = max(self.sizes, default=0)
        self.acc = self.cp.empty(max(self.count, 1), dtype=np.float32)
        self.send = self._bytes(largest)
        self.recv = self._bytes(largest)
        self.gathered = self._bytes(self.offsets[-1] + self.sizes[-1] if self.sizes else 0)
        self.right = (self.rank + 1) % self.size
        self.left = (self.rank - 1) % self.size

    def stages(self) -> tuple[str, ...]:
        return ("partial",) * self.size if self.size > 1 else ()

    def run(self) -> None:
        self.sent_bytes = 0
        if self._passthrough():
            return
        p, r, kern, blk, fmt = self.size, self.rank, self.kern, self.block, self.fmt
        kern.load(self.input, self.acc, self.count)
        for t in range(p - 1):
            sa, sb = self.bounds[(r - t) % p]
            ra, rb = self.bounds[(r - t - 1) % p]
            nsend, nrecv = self.sizes[(r - t) % p], self.sizes[(r - t - 1) % p]
            kern.quantize(self.acc[sa:sb], sb - sa, blk, fmt, self.send, "float32")
            self._group([(self.send, nsend, self.right)], [(self.recv, nrecv, self.left)])
            kern.dequantize_add(self.recv, rb - ra, blk, fmt, self.acc[ra:rb])
        own = (r + 1) % p
        oa, ob = self.bounds[own]
        kern.quantize(self.acc[oa:ob], ob - oa, blk, fmt, self._piece(self.gathered, own), "float32")
        for t in range(p - 1):
            s, q = (r + 1 - t) % p, (r - t) % p
            self._group([(self._piece(self.gathered, s), self.sizes[s], self.right)],
                        [(self._piece(self.gathered, q), self.sizes[q], self.left)])
        self._dequantize_all(self.gathered)


class QuantOneshotGpu(_Quantized):
    name = "quant_oneshot"

    def __init__(self, ctx: NcclContext, input: Any, output: Any, dtype: DType, options: Options) -> None:
        super().__init__(ctx, input, output, dtype, options)
        p, r = self.size, self.rank
        mine = self.sizes[r]
        self.outgoing = self._bytes(self.offsets[-1] + self.sizes[-1])          # shard j for rank j
        self.incoming = self._bytes(p * (-(-mine // ALIGN) * ALIGN))            # my shard from rank j
        self.in_stride = -(-mine // ALIGN) * ALIGN
        self.gathered = self._bytes(self.offsets[-1] + self.sizes[-1])
        a, b = self.bounds[r]
        self.acc = self.cp.empty(max(b - a, 1), dtype=np.float32)

    def stages(self) -> tuple[str, ...]:
        return ("inputs", "partial") if self.size > 1 else ()

    def run(self) -> None:
        self.sent_bytes = 0
        if self._passthrough():
            return
        p, r, kern, blk, fmt = self.size, self.rank, self.kern, self.block, self.fmt
        for j, (a, b) in enumerate(self.bounds):
            if j != r:
                kern.quantize(self.input[a:b], b - a, blk, fmt, self._piece(self.outgoing, j))
        a, b = self.bounds[r]
        mine = self.sizes[r]
        kern.load(self.input[a:b], self.acc, b - a)   # before the allgather overwrites an in-place input
        incoming = [self.incoming[j * self.in_stride:j * self.in_stride + mine] for j in range(p)]
        others = [j for j in range(p) if j != r]
        self._group([(self._piece(self.outgoing, j), self.sizes[j], j) for j in others],
                    [(incoming[j], mine, j) for j in others])
        for j in others:                              # rank order, as the host runner adds
            kern.dequantize_add(incoming[j], b - a, blk, fmt, self.acc)
        own = self._piece(self.gathered, r)
        kern.quantize(self.acc, b - a, blk, fmt, own, "float32")
        self._group([(own, mine, j) for j in others],
                    [(self._piece(self.gathered, j), self.sizes[j], j) for j in others])
        self._dequantize_all(self.gathered)


class PowerSGDGpu(GpuRunner):
    """``powersgd`` (see :mod:`.runners.powersgd`): the same Q (seeded), the same two
    allreduces (ncclAllReduce of float32), with compress.cu's low-rank kernels for the products
    and a Gram-Schmidt orthonormalization in place of Householder QR."""

    name = "powersgd"

    def __init__(self, ctx: NcclContext, input: Any, output: Any, dtype: DType, options: Options) -> None:
        super().__init__(ctx, input, output, dtype, options)
        self.m, self.n = options.matrix(self.count)
        self.r = options.rank_for(self.count)
        cp = self.cp
        self.matrix = cp.empty(self.m * self.n, dtype=np.float32)
        self.kern.zero(self.matrix, None, self.m * self.n)        # the padding stays zero
        self.q0 = cp.empty(self.n * self.r, dtype=np.float32)
        self.q0.set(initial_q(self.n, self.r, np.dtype(np.float32)).reshape(-1), stream=self.stream)
        self.p_buf = cp.empty(self.m * self.r, dtype=np.float32)
        self.q_buf = cp.empty(self.n * self.r, dtype=np.float32)
        p = self.size
        message = (self.m + self.n) * self.r * 4
        self._sent = 2 * (p - 1) * message // p if p > 1 else 0

    def _allreduce(self, buf: Any) -> None:
        self.comm.allReduce(buf.data.ptr, buf.data.ptr, buf.size, FLOAT32, SUM, self.stream.ptr)

    def run(self) -> None:
        if self.count == 0:
            return
        kern, m, n, r = self.kern, self.m, self.n, self.r
        kern.load(self.input, self.matrix, self.count)
        kern.project(self.matrix, self.q0, self.p_buf, m, n, r)
        self._allreduce(self.p_buf)
        kern.orthonormalize(self.p_buf, m, r)
        kern.back(self.matrix, self.p_buf, self.q_buf, m, n, r)
        self._allreduce(self.q_buf)
        kern.expand(self.p_buf, self.q_buf, self.output, m, n, r, self.count)
        self.sent_bytes = self._sent


GPU_RUNNERS: dict[str, type[GpuRunner]] = {
    cls.name: cls for cls in (TopkAllgatherGpu, TopkRecursiveDoublingGpu, GlobalTopkGpu, QuantRingGpu,
                              QuantOneshotGpu, PowerSGDGpu)
}
