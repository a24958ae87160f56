"""Run with the fake CuPy first on PYTHONPATH (tests/gpu/fakecuda) by test_gpu_path.py: the
launch wrappers of collbench/compress/device.py, executing compress.cu's kernels as the fake's
numpy transliterations, against the host path's primitives (collbench/compress/quantize.py,
sparse.py) -- bit for bit, on adversarial inputs, with the top-k chunks forced small so the
count/write kernels' per-chunk offsets are exercised.

``--break=KIND[,KIND]`` first replaces transliterated kernel details by plausible mistakes (the
test expects failures then): ``int8-round`` (half away from zero), ``fp8-tie`` (ties up), ``scale``
(scale rounded to nearest, not up), ``ties`` (equal keys to the higher index). ``--sizes=``
chooses the vector lengths (default 1,7,1000,4099).
Prints one JSON object: check name -> list of failures (empty: passed), plus "cases".

With a real CuPy on a GPU (no fake on the path) the same checks run the compiled kernels:
``python tests/compress/gpu_kernel_checks.py`` (``--break`` needs the fake).
"""

import json
import sys

import cupy
import ml_dtypes
import numpy as np

try:
    from cupy import _compress_kernels as fake  # the CPU fake's transliterations
except ImportError:                              # a real CuPy: the compiled kernels run
    fake = None

from collbench.compress import device, quantize, sparse
from collbench.compress.device import CompressKernels, storage


def _arg(name: str, default: str) -> str:
    return next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith(f"--{name}=")), default)


BREAK = set(_arg("break", "").split(",")) - {""}
SIZES = [int(n) for n in _arg("sizes", "1,7,1000,4099").split(",")]
if BREAK and fake is None:
    sys.exit("--break changes the fake's transliterations: put tests/gpu/fakecuda first on PYTHONPATH")
if "int8-round" in BREAK:
    real_encode = fake._encode

    def _encode(fmt, v):
        if fmt == "int8":
            return (np.sign(v) * np.floor(np.abs(v) + 0.5)).astype(np.int8).view(np.uint8)
        return real_encode(fmt, v)
    fake._encode = _encode
if "fp8-tie" in BREAK:
    real_encode = fake._encode

    def _encode(fmt, v):
        if fmt == "fp8":
            bits = v.view(np.uint32)
            half = (bits & 0xFFFFF) == 0x80000
            v = np.where(half, (bits + 1).view(np.float32), v)
        return real_encode(fmt, v)
    fake._encode = _encode
if "scale" in BREAK:
    fake._div_up = lambda a, q: (a.astype(np.float64) / q).astype(np.float32)
if "ties" in BREAK:
    real_write = fake._write

    def _write(masked, t, v, grid, args):   # ties counted from the end of the vector
        real_write(masked, t, v, grid, args)
        keys, rest = fake._source(masked, t, args)
        n, thr, allowed = int(rest[0]), np.uint32(int(rest[1])), int(rest[4])
        k = keys(0, n)
        ties = np.flatnonzero(k == thr)
        if allowed and allowed < ties.size:
            above = np.count_nonzero(k > thr)
            chosen = np.sort(np.concatenate([np.flatnonzero(k > thr), ties[-allowed:]]))
            fake._at(rest[5], above + allowed, np.int32)[...] = chosen
    fake._write = _write

stream = cupy.cuda.Stream()
failures: dict[str, list] = {"select": [], "select_masked": [], "quantize": [], "dequantize_add": [],
                             "scatter": [], "lowrank": []}
cases = 0


ARENA = cupy.empty(1 << 20, dtype=np.uint8)   # one allocation: the fake looks pointers up linearly
_used = [0]


def empty(n: int, dtype) -> "cupy.ndarray":
    """A device array carved from the arena (released all at once by ``release``)."""
    dtype = np.dtype(dtype)
    start = _used[0]
    _used[0] = start + (max(n, 1) * dtype.itemsize + 255) // 256 * 256
    assert _used[0] <= ARENA.size, "arena too small"
    return ARENA[start:start + n * dtype.itemsize].view(dtype)


def release() -> None:
    _used[0] = 0


def dev(host: np.ndarray, dtype: np.dtype | None = None):
    host = np.ascontiguousarray(host)
    arr = empty(host.size, dtype or host.dtype)
    arr.set(host.view(arr.dtype))
    return arr


def as_dtype(values: np.ndarray, name: str) -> np.ndarray:
    return values.astype(ml_dtypes.bfloat16 if name == "bfloat16" else name)


def inputs(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    out = {
        "gaussian": rng.standard_normal(n).astype(np.float32) * np.float32(0.01),
        "ties": (rng.integers(-6, 7, n) / 4).astype(np.float32),       # many equal magnitudes
        "zeros": np.zeros(n, np.float32),
        "subnormal": (rng.standard_normal(n) * 1e-39).astype(np.float32),
        "outlier": np.where(np.arange(n) % 97 == 3, 1000.0, rng.uniform(-1, 1, n)).astype(np.float32),
        "equal": np.full(n, -0.375, np.float32),
    }
    halves = np.arange(n) % 255 - 127 + 0.5                              # x/s hits .5 (s = 1)
    halves[::17] = 127.0
    out["halves"] = halves.astype(np.float32)
    return out


rng = np.random.default_rng(7)
for chunk_min in (device.CHUNK_MIN, 7):     # the default, and many small chunks
    device.CHUNK_MIN = chunk_min
    for name in device.GPU_DTYPES:
        kern = CompressKernels(name, stream)
        for n in SIZES if chunk_min != 7 else [n for n in SIZES if n >= 100][:1]:
            for label, values in inputs(n, rng).items():
                if chunk_min == 7 and label not in ("ties", "equal", "gaussian"):
                    continue
                release()
                x = as_dtype(values, name)
                xd = dev(x, storage(name))
                # plain selection
                for k in sorted({1, max(1, n // 3), n}):
                    cases += 1
                    idx, val = empty(k, np.int32), empty(k, storage(name))
                    kern.select(xd, n, k, idx, val)
                    want = sparse.top_k(x, k)
                    got = idx.get()
                    if not np.array_equal(got, want) or not np.array_equal(val.get(), x[want].view(storage(name))):
                        failures["select"].append([name, n, label, k, chunk_min])
                # masked selection, count and compaction over a float32 vector with a support
                acc = np.asarray(x).astype(np.float32)
                support = (rng.random(n) < 0.6).astype(np.uint8)
                acc[support == 0] = 0
                accd, supd = dev(acc), dev(support)
                m = int(support.sum())
                order = np.lexsort((np.arange(n), -np.abs(acc.astype(np.float64))))
                order = order[support[order] == 1]
                for k in sorted({1, max(1, m // 2), m} - {0}) if m else []:
                    cases += 1
                    idx, val = empty(k, np.int32), empty(k, np.float32)
                    kern.select_masked(accd, supd, n, k, idx, val)
                    want = np.sort(order[:k])
                    if not np.array_equal(idx.get(), want) or not np.array_equal(val.get(), acc[want]):
                        failures["select_masked"].append([name, n, label, k, chunk_min])
                cases += 1
                idx, val = empty(max(m, 1), np.int32), empty(max(m, 1), storage(name))
                if kern.count(accd, supd, n) != m or kern.count(accd, None, n) != np.count_nonzero(acc):
                    failures["select_masked"].append([name, n, label, "count", chunk_min])
                if kern.compact(accd, supd, n, idx, val) != m or not np.array_equal(
                        idx.get()[:m], np.flatnonzero(support)) or not np.array_equal(
                        val.get()[:m], as_dtype(acc[support == 1], name).view(storage(name))):
                    failures["select_masked"].append([name, n, label, "compact", chunk_min])
                if chunk_min != 7:
                    # quantization: packed bytes, dequantized values, and the dequantize-add
                    for fmt in ("int8", "fp8"):
                        for block in sorted({1, 7, min(256, n), n} & set(range(1, n + 1))):
                            cases += 1
                            packed_size = quantize.packed_bytes(n, block)
                            want = np.empty(packed_size, np.uint8)
                            quantize.quantize_into(np.asarray(x).astype(np.float32), block, fmt, want)
                            packed = empty(packed_size, np.uint8)
                            kern.quantize(xd, n, block, fmt, packed)
                            if not np.array_equal(packed.get(), want):
                                failures["quantize"].append([name, n, label, fmt, block, "codes/scales"])
                                continue
                            back = np.empty(n, np.float32)
                            quantize.dequantize_into(want, n, block, fmt, back)
                            out = empty(n, storage(name))
                            kern.dequantize(packed, n, block, fmt, out)
                            if not np.array_equal(out.get(), as_dtype(back, name).view(storage(name))):
                                failures["quantize"].append([name, n, label, fmt, block, "dequantize"])
                            if name == "float32":
                                base = rng.standard_normal(n).astype(np.float32)
                                accd = dev(base)
                                kern.dequantize_add(packed, n, block, fmt, accd)
                                if not np.array_equal(accd.get(), base + back):
                                    failures["dequantize_add"].append([n, label, fmt, block])
        # scatter: added (dense[idx] += val) and merged (the value itself where unsupported)
        for n in (5, 1000):
            release()
            cases += 1
            ia = np.sort(rng.choice(n, n // 2 + 1, replace=False)).astype(np.int32)
            va = as_dtype(rng.standard_normal(ia.size).astype(np.float32), name)
            va[0] = -0.0
            ib = np.sort(rng.choice(n, n // 2 + 1, replace=False)).astype(np.int32)
            vb = as_dtype(rng.standard_normal(ib.size).astype(np.float32), name)
            vb[-1] = -0.0
            acc, sup = empty(n, np.float32), empty(n, np.uint8)
            kern.zero(acc, sup, n)
            kern.scatter(dev(ia), dev(va, storage(name)), ia.size, acc, sup)
            kern.scatter(dev(ib), dev(vb, storage(name)), ib.size, acc, sup)
            midx, mval = sparse.merge(ia, va.astype(np.float32), ib, vb)
            want = np.zeros(n, np.float32)
            want[midx] = mval
            if not np.array_equal(acc.get().view(np.uint32), want.view(np.uint32)) or not np.array_equal(
                    np.flatnonzero(sup.get()), midx):
                failures["scatter"].append([name, n, "merge"])
            kern.zero(acc, None, n)
            kern.scatter(dev(ia), dev(va, storage(name)), ia.size, acc, None)
            dense = np.zeros(n, np.float32)
            sparse.scatter_add(dense, ia, va)
            if not np.array_equal(acc.get().view(np.uint32), dense.view(np.uint32)):
                failures["scatter"].append([name, n, "add"])

# powersgd's kernels: float32 products and Gram-Schmidt, against float64 numpy within float32 rounding
for m, n, r in ((1, 1, 1), (3, 5, 2), (40, 33, 4), (300, 7, 7)):
    release()
    cases += 1
    M = rng.standard_normal((m, n)).astype(np.float32)
    Q = rng.standard_normal((n, r)).astype(np.float32)
    kern = CompressKernels("float32", stream)
    Md, Qd, Pd, Qn = dev(M.reshape(-1)), dev(Q.reshape(-1)), empty(m * r, np.float32), empty(n * r, np.float32)
    kern.project(Md, Qd, Pd, m, n, r)
    P = M.astype(np.float64) @ Q
    close = lambda got, want: np.allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max(initial=1))  # noqa: E731
    if not close(Pd.get().reshape(m, r), P):
        failures["lowrank"].append([m, n, r, "project"])
    kern.orthonormalize(Pd, m, r)
    B = Pd.get().reshape(m, r).astype(np.float64)
    if not close(B.T @ B, np.eye(r)) or not close(B @ (B.T @ P), P):   # orthonormal, same span
        failures["lowrank"].append([m, n, r, "orthonormalize"])
    kern.back(Md, Pd, Qn, m, n, r)
    if not close(Qn.get().reshape(n, r), M.astype(np.float64).T @ B):
        failures["lowrank"].append([m, n, r, "back"])
    for name in device.GPU_DTYPES:
        out = empty(m * n, storage(name))
        kern_t = CompressKernels(name, stream)
        kern_t.expand(Pd, Qn, out, m, n, r, m * n - (1 if m * n > 1 else 0))
        count = m * n - (1 if m * n > 1 else 0)
        want = (B @ Qn.get().reshape(n, r).astype(np.float64).T).reshape(-1)[:count]
        got = out.get()[:count].view(as_dtype(np.zeros(1, np.float32), name).dtype).astype(np.float64)
        if not np.allclose(got, want, rtol=2 ** -7, atol=1e-3 * np.abs(want).max(initial=1)):
            failures["lowrank"].append([m, n, r, f"expand {name}"])

print(json.dumps({**failures, "cases": cases}))
