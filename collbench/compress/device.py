"""The nccl path's local work: launches of csrc/compress.cu's kernels on CuPy arrays, and the
host side of their radix select.

Every launch goes to one stream, in order. The contract with the host (mpi) path, which the
tests check bit for bit (tests/compress/test_gpu_path.py):

* **selection** -- the k largest magnitudes, ties to the lower index (:func:`..sparse.top_k`);
  magnitudes are compared as the bit patterns of ``|x|`` in float32, so for float16/bfloat16
  (exact in float32) and float32 the order is numpy's. The k-th largest key ``t`` comes from
  four histogram passes of one key byte each (the host picks the digit where the count from the
  top reaches k); then every key above ``t`` and the first ``k - above`` keys equal to ``t`` are
  written in index order. Each pass reads 256 counters back, so a selection synchronizes the
  stream five times (one run is not graph-capturable).
* **quantization** -- :mod:`..quantize`: scale = absmax / qmax rounded up (``div.rp``), 1 for
  an all-zero block; code = rint(x / scale) for int8 (half to even), e4m3 round-to-nearest-even
  by integer arithmetic for fp8 (subnormals included); dequantized = code · scale in float32,
  rounded once to the output dtype; a dequantize-and-add is that product added to a float32
  sum (two roundings, no FMA: the kernels use ``mul.rn``/``add.rn``).
* **sums** -- float32, in the order the mpi runners add (rank order, own value first), which
  gives the same bits since every sum is of two float32 values.

powersgd's kernels (P = MQ, Gram-Schmidt, Q = MᵀP, PQᵀ) are float32 too, but sum in another
order than the host's BLAS and orthogonalize differently: they agree within powersgd's
tolerance, not bit for bit.

float64 is not handled (32-bit keys and float32 arithmetic): the nccl backend refuses it.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

#: threads per block of every launch (the kernels' shared arrays allow up to 1024)
THREADS = 256
#: grid-stride kernels: at most this many blocks
MAX_BLOCKS = 1024
#: count/write kernels: at most this many contiguous chunks (one per CUDA block)
MAX_CHUNKS = 256
#: elements per chunk below which fewer chunks are used
CHUNK_MIN = 4 * THREADS

GPU_DTYPES = ("float16", "bfloat16", "float32")
INDEX = np.dtype(np.int32)


def kernel_names(dtype_name: str | None = None) -> set[str]:
    """Every compress.cu entry point this module launches (all dtypes, or one dtype's module:
    its own kernels and the dtype-free ones). The naming contract tests/compress checks against
    the preprocessed source."""
    names = {"compress_zero", "compress_topk_hist_masked", "compress_topk_count_masked",
             "compress_lowrank_project", "compress_lowrank_orthonormalize", "compress_lowrank_back"}
    for fmt in ("int8", "fp8"):
        names.add(f"compress_dequantize_add_{fmt}")
    for dt in GPU_DTYPES if dtype_name is None else (dtype_name,):
        for fmt in ("int8", "fp8"):
            names |= {f"compress_scales_{fmt}_{dt}", f"compress_quantize_{fmt}_{dt}",
                      f"compress_dequantize_{fmt}_{dt}"}
        names |= {f"compress_{kind}_{dt}" for kind in ("topk_hist", "topk_count", "topk_write",
                                                         "topk_write_masked", "load", "store",
                                                         "add_dense", "scatter", "lowrank_expand")}
    return names


def storage(dtype_name: str) -> np.dtype:
    """The device storage dtype (CuPy has no bfloat16: its bits live in uint16)."""
    return np.dtype(np.uint16) if dtype_name == "bfloat16" else np.dtype(dtype_name)


def grid(n: int) -> int:
    return max(1, min(MAX_BLOCKS, -(-n // THREADS)))


def chunks(n: int) -> int:
    return max(1, min(MAX_CHUNKS, -(-n // CHUNK_MIN)))


def kth_largest_key(hist: Callable[[int, int, int], np.ndarray], k: int) -> int:
    """The k-th largest 32-bit key (1 <= k <= number of keys) from ``hist(prefix, known, shift)``,
    the 256 counts of byte ``shift`` among the keys whose ``known`` bits equal ``prefix``."""
    prefix = known = 0
    remaining = k
    for shift in (24, 16, 8, 0):
        counts = hist(prefix, known, shift)
        above = 0
        digit = 0
        for digit in range(255, -1, -1):
            if above + int(counts[digit]) >= remaining:
                break
            above += int(counts[digit])
        remaining -= above
        prefix |= digit << shift
        known |= 0xFF << shift
    return prefix


def exclusive(counts: np.ndarray) -> np.ndarray:
    """Exclusive prefix sums as uint64 (the write kernel's ``above_before``/``ties_before``)."""
    out = np.zeros(counts.size, dtype=np.uint64)
    np.cumsum(counts[:-1], out=out[1:])
    return out


class CompressKernels:
    """The kernels of one run's dtype on one stream, with the selection's small scratch buffers.

    Args:
        dtype_name: float16, bfloat16 or float32 (the run's dtype; its module is compiled on
            first use, the float32 one too since sums and requantization are float32).
        stream: the CuPy stream every launch and copy goes to.
    """

    def __init__(self, dtype_name: str, stream: Any) -> None:
        from ..gpu.kernels import cupy_module

        if dtype_name not in GPU_DTYPES:
            raise ValueError(f"compress.cu handles {', '.join(GPU_DTYPES)}, not {dtype_name}")
        self.cp = cupy_module()
        self.dtype = dtype_name
        self.stream = stream
        cp = self.cp
        self.hist_buf = cp.empty(256, dtype=np.uint32)
        self.above = cp.empty(MAX_CHUNKS, dtype=np.uint32)
        self.ties = cp.empty(MAX_CHUNKS, dtype=np.uint32)
        self.above_before = cp.empty(MAX_CHUNKS, dtype=np.uint64)
        self.ties_before = cp.empty(MAX_CHUNKS, dtype=np.uint64)
        self.syncs = 0   # host round trips of the last selections (reset by the caller)

    # -- launching ---------------------------------------------------------------------------

    def _launch(self, name: str, blocks: int, args: tuple, module: str | None = None) -> None:
        from ..gpu.kernels import get_kernel

        kernel = get_kernel("compress.cu", name, module or self.dtype)
        with self.stream:
            kernel((blocks,), (THREADS,), args)

    @staticmethod
    def _null() -> np.uint64:
        return np.uint64(0)

    def _opt(self, array: Any | None) -> Any:
        return self._null() if array is None else array

    def _read(self, array: Any) -> np.ndarray:
        self.syncs += 1
        host = array.get(stream=self.stream)
        self.stream.synchronize()
        return np.asarray(host)

    # -- dense float32 vectors ----------------------------------------------------------------

    def zero(self, acc: Any, support: Any | None, n: int) -> None:
        if n:
            self._launch("compress_zero", grid(n), (acc, self._opt(support), np.uint64(n)))

    def load(self, x: Any, acc: Any, n: int, dtype: str | None = None) -> None:
        """``acc = float32(x)``."""
        dt = dtype or self.dtype
        if n:
            self._launch(f"compress_load_{dt}", grid(n), (x, acc, np.uint64(n)), dt)

    def store(self, acc: Any, out: Any, n: int, dtype: str | None = None) -> None:
        """``out = acc`` rounded once to the dtype."""
        dt = dtype or self.dtype
        if n:
            self._launch(f"compress_store_{dt}", grid(n), (acc, out, np.uint64(n)), dt)

    def add_dense(self, x: Any, acc: Any, n: int) -> None:
        if n:
            self._launch(f"compress_add_dense_{self.dtype}", grid(n), (x, acc, np.uint64(n)))

    def scatter(self, idx: Any, val: Any, m: int, acc: Any, support: Any | None,
                dtype: str | None = None) -> None:
        """One sparse vector into ``acc``: added (``support`` None) or merged (see compress.cu)."""
        dt = dtype or self.dtype
        if m:
            self._launch(f"compress_scatter_{dt}", grid(m), (idx, val, np.uint64(m), acc, self._opt(support)), dt)

    # -- quantization -------------------------------------------------------------------------

    @staticmethod
    def _packed(packed: Any, n: int, block: int) -> tuple[Any, Any]:
        nb = -(-n // block)
        return packed[:nb * 4].view(np.float32), packed[nb * 4:nb * 4 + n]

    def quantize(self, x: Any, n: int, block: int, fmt: str, packed: Any, dtype: str | None = None) -> None:
        """``packed`` (uint8, 4-byte aligned): the float32 scales, then one code per value."""
        dt = dtype or self.dtype
        if not n:
            return
        scales, codes = self._packed(packed, n, block)
        self._launch(f"compress_scales_{fmt}_{dt}", -(-n // block), (x, scales, np.uint64(n), np.uint32(block)), dt)
        self._launch(f"compress_quantize_{fmt}_{dt}", grid(n),
                     (x, scales, codes, np.uint64(n), np.uint32(block)), dt)

    def dequantize(self, packed: Any, n: int, block: int, fmt: str, out: Any, dtype: str | None = None) -> None:
        dt = dtype or self.dtype
        if not n:
            return
        scales, codes = self._packed(packed, n, block)
        self._launch(f"compress_dequantize_{fmt}_{dt}", grid(n),
                     (codes, scales, out, np.uint64(n), np.uint32(block)), dt)

    def dequantize_add(self, packed: Any, n: int, block: int, fmt: str, acc: Any) -> None:
        if not n:
            return
        scales, codes = self._packed(packed, n, block)
        self._launch(f"compress_dequantize_add_{fmt}", grid(n), (codes, scales, acc, np.uint64(n), np.uint32(block)))

    # -- selection ----------------------------------------------------------------------------

    def _select(self, hist_name: str, count_name: str, write_name: str, module: str, source: tuple,
                n: int, k: int, idx: Any, val: Any) -> None:
        """Top k of ``source``'s keys into ``idx``/``val`` (index order); ``k`` must not exceed
        the number of keys that can be selected (for masked sources: the supported ones)."""
        g = grid(n)

        def hist(prefix: int, known: int, shift: int) -> np.ndarray:
            self.hist_buf.set(np.zeros(256, dtype=np.uint32), stream=self.stream)
            self._launch(hist_name, g, (*source, np.uint64(n), np.uint32(prefix), np.uint32(known),
                                        np.uint32(shift), self.hist_buf), module)
            return self._read(self.hist_buf)

        t = kth_largest_key(hist, k)
        self._write(count_name, write_name, module, source, n, t, k, idx, val)

    def _write(self, count_name: str, write_name: str, module: str, source: tuple, n: int, t: int,
               k: int | None, idx: Any, val: Any) -> int:
        """Count keys above/equal to ``t`` per chunk, then write every key above ``t`` and the
        first ``k - above`` equal to it (``k`` None: none equal). Returns the entries written."""
        c = chunks(n)
        self._launch(count_name, c, (*source, np.uint64(n), np.uint32(t), self.above, self.ties), module)
        above = self._read(self.above[:c]).astype(np.uint64)
        ties = self._read(self.ties[:c]).astype(np.uint64)
        total = int(above.sum())
        allowed = 0 if k is None else k - total
        if allowed < 0 or (k is not None and allowed > int(ties.sum())):
            raise AssertionError(f"selection of {k}: {total} keys above the threshold, {int(ties.sum())} equal")
        if total + allowed:
            self.above_before[:c].set(exclusive(above), stream=self.stream)
            self.ties_before[:c].set(exclusive(ties), stream=self.stream)
            self._launch(write_name, c, (*source, np.uint64(n), np.uint32(t), self.above_before, self.ties_before,
                                         np.uint64(allowed), idx, val), module)
        return total + allowed

    def select(self, x: Any, n: int, k: int, idx: Any, val: Any) -> None:
        """The top k of ``x`` (the run's dtype): int32 indices, increasing, and their values."""
        if n and k:
            dt = self.dtype
            self._select(f"compress_topk_hist_{dt}", f"compress_topk_count_{dt}", f"compress_topk_write_{dt}",
                         dt, (x,), n, k, idx, val)

    def select_masked(self, acc: Any, support: Any, n: int, k: int, idx: Any, val: Any,
                      dtype: str = "float32") -> None:
        """The top k supported entries of ``acc`` (values rounded to ``dtype``)."""
        if n and k:
            self._select("compress_topk_hist_masked", "compress_topk_count_masked",
                         f"compress_topk_write_masked_{dtype}", dtype, (acc, self._opt(support)), n, k, idx, val)

    def count(self, acc: Any, support: Any | None, n: int) -> int:
        """Supported entries of ``acc`` (``support`` None: its nonzero entries)."""
        if not n:
            return 0
        c = chunks(n)
        self._launch("compress_topk_count_masked", c,
                     (acc, self._opt(support), np.uint64(n), np.uint32(0), self.above, self.ties))
        return int(self._read(self.above[:c]).astype(np.uint64).sum())

    def compact(self, acc: Any, support: Any, n: int, idx: Any, val: Any, dtype: str | None = None) -> int:
        """The supported entries of ``acc`` in index order (values rounded to ``dtype``, by
        default the run's); returns how many."""
        dt = dtype or self.dtype
        if not n:
            return 0
        return self._write("compress_topk_count_masked", f"compress_topk_write_masked_{dt}", dt,
                           (acc, self._opt(support)), n, 0, None, idx, val)

    # -- low rank (powersgd) -----------------------------------------------------------------

    def project(self, matrix: Any, q: Any, p: Any, m: int, n: int, r: int) -> None:
        """``P = M Q`` (row-major float32: M m×n, Q n×r, P m×r)."""
        self._launch("compress_lowrank_project", max(1, min(m, MAX_BLOCKS)),
                     (matrix, q, p, np.uint32(m), np.uint32(n), np.uint32(r)))

    def orthonormalize(self, p: Any, m: int, r: int) -> None:
        """P's columns orthonormal in place (modified Gram-Schmidt, one CUDA block)."""
        self._launch("compress_lowrank_orthonormalize", 1, (p, np.uint32(m), np.uint32(r)))

    def back(self, matrix: Any, p: Any, q: Any, m: int, n: int, r: int) -> None:
        """``Q = Mᵀ P`` (n×r)."""
        self._launch("compress_lowrank_back", grid(n * r), (matrix, p, q, np.uint32(m), np.uint32(n), np.uint32(r)))

    def expand(self, p: Any, q: Any, out: Any, m: int, n: int, r: int, count: int) -> None:
        """``out = (P Qᵀ)`` flattened, its first ``count`` elements, rounded to the run's dtype."""
        if count:
            self._launch(f"compress_lowrank_expand_{self.dtype}", grid(count),
                         (p, q, out, np.uint32(m), np.uint32(n), np.uint32(r), np.uint64(count)))
