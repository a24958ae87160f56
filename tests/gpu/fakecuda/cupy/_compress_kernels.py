"""csrc/compress.cu's kernels transliterated to numpy, for the fake RawModule (see __init__).

Each function takes what the CUDA kernel takes -- the grid, the block and the argument tuple
(fake arrays or numpy scalars; 0 is a null pointer) -- and does what the kernel does, written
from the .cu source and not from collbench/compress (quantize.py, sparse.py), so the nccl path
run on this fake checks the kernels' arithmetic against the host path: integer e4m3 coding
instead of ml_dtypes, a rounded-up division checked by exact products, per-CUDA-block chunks in
the top-k count/write kernels, the hist kernel adding to its counters. A launch runs at once
(no stream capture: the compressed runners refuse graph mode).
"""

from __future__ import annotations

import re
from typing import Any, Callable

import numpy as np

from . import _bytes_at

_QMAX = {"int8": 127.0, "fp8": 448.0}


def _dtype(name: str) -> np.dtype:
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def _ptr(arg: Any) -> int:
    if isinstance(arg, (int, np.integer)):
        return int(arg)
    return int(arg.data.ptr)


def _at(arg: Any, count: int, dtype: Any) -> np.ndarray | None:
    """The ``count`` elements at pointer ``arg`` (None for a null pointer)."""
    ptr = _ptr(arg)
    if ptr == 0:
        return None
    dtype = np.dtype(dtype)
    return _bytes_at(ptr, max(count, 0) * dtype.itemsize).view(dtype)


def _f32(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32)


def _key(f: np.ndarray) -> np.ndarray:
    """The magnitude key: the bits of |f| as float32 (f32_as_u32(f32_abs(...)))."""
    return f.astype(np.float32).view(np.uint32) & np.uint32(0x7FFFFFFF)


def _div_up(a: np.ndarray, q: float) -> np.ndarray:
    """div.rp.f32: the smallest float32 >= a / q (products by q are exact in float64)."""
    r = (a.astype(np.float64) / q).astype(np.float32)
    low = r.astype(np.float64) * q < a
    r[low] = np.nextafter(r[low], np.float32(np.inf))
    down = np.nextafter(r, np.float32(-np.inf))
    high = (down.astype(np.float64) * q >= a) & (r > 0)
    r[high] = down[high]
    return r


def _encode(fmt: str, v: np.ndarray) -> np.ndarray:
    if fmt == "int8":
        return np.rint(v).astype(np.int8).view(np.uint8)          # cvt.rni: half to even
    bits = v.view(np.uint32).astype(np.int64)
    sign = (bits >> 24) & 0x80
    mag = bits & 0x7FFFFFFF
    sub = np.rint(mag.astype(np.uint32).view(np.float32) * np.float32(512.0)).astype(np.int64)
    e = (mag >> 23) - 127
    m = (mag & 0x7FFFFF) >> 20
    rest = mag & 0xFFFFF
    m = m + ((rest > 0x80000) | ((rest == 0x80000) & ((m & 1) == 1)))
    e = np.where(m == 8, e + 1, e)
    m = np.where(m == 8, 0, m)
    normal = ((e + 7) << 3) | m
    code = np.where(mag < 0x3C800000, sub, normal)
    code = np.where(mag > 0x7F800000, 0x7F, code)
    return (sign | code).astype(np.uint8)


def _decode(fmt: str, c: np.ndarray) -> np.ndarray:
    if fmt == "int8":
        return c.view(np.int8).astype(np.float32)
    c = c.astype(np.uint32)
    e, m = (c >> 3) & 0xF, c & 7
    sub = m.astype(np.float32) * np.float32(0.001953125)
    normal = (((e + 120) << 23) | (m << 20)).astype(np.uint32).view(np.float32)
    mag = np.where(e == 0, sub, normal).astype(np.float32)
    return np.where(c & 0x80, -mag, mag).astype(np.float32)


def _scales(fmt: str, t: np.dtype, grid: int, args: tuple) -> None:
    x_arg, s_arg, n, block = args
    n, block = int(n), int(block)
    x, s = _at(x_arg, n, t), _at(s_arg, grid, np.float32)
    starts = np.arange(grid, dtype=np.int64) * block   # one CUDA block per quantization block
    starts = starts[starts < n]
    if starts.size == 0:
        return
    best = np.maximum.reduceat(_key(_f32(x)), starts)  # the absmax as the largest key
    scale = _div_up(best.view(np.float32), _QMAX[fmt])
    s[:starts.size] = np.where(best == 0, np.float32(1.0), scale)


def _quantize(fmt: str, t: np.dtype, args: tuple) -> None:
    x_arg, s_arg, c_arg, n, block = args
    n, block = int(n), int(block)
    x, s, codes = _at(x_arg, n, t), _at(s_arg, -(-n // block), np.float32), _at(c_arg, n, np.uint8)
    v = _f32(x) / np.repeat(s, block)[:n]
    q = np.float32(_QMAX[fmt])
    v = np.where(v >= q, q, np.where(v <= -q, -q, v)).astype(np.float32)   # f32_clamp (NaN passes)
    codes[...] = _encode(fmt, v)


def _dequantize(fmt: str, t: np.dtype | None, args: tuple) -> None:
    c_arg, s_arg, o_arg, n, block = args
    n, block = int(n), int(block)
    codes, s = _at(c_arg, n, np.uint8), _at(s_arg, -(-n // block), np.float32)
    value = _decode(fmt, codes) * np.repeat(s, block)[:n]
    if t is None:                                       # dequantize_add: float32 acc
        acc = _at(o_arg, n, np.float32)
        acc[...] = acc + value
    else:
        _at(o_arg, n, t)[...] = value.astype(t)


def _source(masked: bool, t: np.dtype, args: tuple) -> tuple[Callable[[int, int], np.ndarray], tuple]:
    """Keys of the top-k kernels' source (Plain<T> or Masked) and the remaining arguments."""
    if not masked:
        x_arg, n = args[0], int(args[1])
        x = _at(x_arg, n, t)
        return (lambda a, b: _key(_f32(x[a:b]))), args[1:]
    acc_arg, sup_arg, n = args[0], args[1], int(args[2])
    acc, sup = _at(acc_arg, n, np.float32), _at(sup_arg, n, np.uint8)

    def keys(a: int, b: int) -> np.ndarray:
        k = _key(acc[a:b])
        if sup is None:
            return k
        return np.where(sup[a:b] != 0, k | np.uint32(0x80000000), np.uint32(0)).astype(np.uint32)
    return keys, args[2:]


def _chunks(n: int, grid: int) -> list[tuple[int, int]]:
    per = -(-n // grid)
    out = []
    for b in range(grid):
        start = min(b * per, n)
        out.append((start, min(start + per, n)))
    return out


def _hist(masked: bool, t: np.dtype, args: tuple) -> None:
    keys, rest = _source(masked, t, args)
    n, prefix, known, shift, h_arg = (int(rest[0]), int(rest[1]), int(rest[2]), int(rest[3]), rest[4])
    k = keys(0, n)
    chosen = k[(k & np.uint32(known)) == np.uint32(prefix)]
    hist = _at(h_arg, 256, np.uint32)
    hist += np.bincount((chosen >> np.uint32(shift)) & np.uint32(255), minlength=256).astype(np.uint32)


def _count(masked: bool, t: np.dtype, grid: int, args: tuple) -> None:
    keys, rest = _source(masked, t, args)
    n, thr = int(rest[0]), np.uint32(int(rest[1]))
    above, ties = _at(rest[2], grid, np.uint32), _at(rest[3], grid, np.uint32)
    for b, (a0, b0) in enumerate(_chunks(n, grid)):
        k = keys(a0, b0)
        above[b], ties[b] = np.count_nonzero(k > thr), np.count_nonzero(k == thr)


def _write(masked: bool, t: np.dtype, v: np.dtype, grid: int, args: tuple) -> None:
    keys, rest = _source(masked, t, args)
    n, thr = int(rest[0]), np.uint32(int(rest[1]))
    ab_arg, tb_arg, allowed, i_arg, v_arg = rest[2], rest[3], int(rest[4]), rest[5], rest[6]
    above_before, ties_before = _at(ab_arg, grid, np.uint64), _at(tb_arg, grid, np.uint64)
    values = _f32(_at(args[0], n, np.float32)) if masked else _at(args[0], n, t)
    picks = []
    for b, (a0, b0) in enumerate(_chunks(n, grid)):   # tiles in index order within each chunk
        k = keys(a0, b0)
        is_a, is_e = k > thr, k == thr
        a_before = int(above_before[b]) + np.cumsum(is_a) - is_a
        e_before = int(ties_before[b]) + np.cumsum(is_e) - is_e
        take = np.flatnonzero(is_a | (is_e & (e_before < allowed)))
        picks.append((a0 + take, (a_before + np.minimum(e_before, allowed))[take]))
    where = np.concatenate([w for w, _ in picks]).astype(np.int64)
    pos = np.concatenate([q for _, q in picks]).astype(np.int64)
    if where.size == 0:
        return
    size = int(pos.max()) + 1
    idx, val = _at(i_arg, size, np.int32), _at(v_arg, size, v)
    idx[pos] = where.astype(np.int32)
    val[pos] = values[where].astype(v) if masked else values[where]


def _scatter(t: np.dtype, args: tuple) -> None:
    i_arg, v_arg, m, acc_arg, sup_arg = args
    m = int(m)
    idx, val = _at(i_arg, m, np.int32).astype(np.int64), _f32(_at(v_arg, m, t))
    n = max(int(idx.max()) + 1, 1) if m else 1
    acc, sup = _at(acc_arg, n, np.float32), _at(sup_arg, n, np.uint8)
    assert np.unique(idx).size == idx.size, "scatter: repeated indices (the kernel would race)"
    if sup is None:
        acc[idx] = acc[idx] + val
    else:
        acc[idx] = np.where(sup[idx] != 0, acc[idx] + val, val)
        sup[idx] = 1


def _elementwise(kind: str, t: np.dtype, args: tuple) -> None:
    a_arg, b_arg, n = args
    n = int(n)
    if kind == "load":
        _at(b_arg, n, np.float32)[...] = _f32(_at(a_arg, n, t))
    elif kind == "store":
        _at(b_arg, n, t)[...] = _at(a_arg, n, np.float32).astype(t)
    else:  # add_dense
        acc = _at(b_arg, n, np.float32)
        acc[...] = acc + _f32(_at(a_arg, n, t))


def _zero(args: tuple) -> None:
    acc_arg, sup_arg, n = args
    _at(acc_arg, int(n), np.float32)[...] = 0
    sup = _at(sup_arg, int(n), np.uint8)
    if sup is not None:
        sup[...] = 0


def _lowrank(kind: str, t: np.dtype | None, args: tuple) -> None:
    """powersgd's kernels in float32 (the summation order is the kernels' business: their
    results are checked within a tolerance, not bit for bit)."""
    if kind == "orthonormalize":                         # modified Gram-Schmidt, column by column
        p_arg, m, r = args
        m, r = int(m), int(r)
        P = _at(p_arg, m * r, np.float32).reshape(m, r)
        for j in range(r):
            for ell in range(j):
                dot = np.float32(P[:, ell] @ P[:, j])
                P[:, j] = P[:, j] - dot * P[:, ell]
            norm = np.float32(np.sqrt(np.float32(P[:, j] @ P[:, j])))
            P[:, j] = P[:, j] / norm if norm > 0 else np.float32(0)
        return
    if kind == "expand":
        p_arg, q_arg, o_arg, m, n, r, count = args
        m, n, r, count = int(m), int(n), int(r), int(count)
        P, Q = _at(p_arg, m * r, np.float32).reshape(m, r), _at(q_arg, n * r, np.float32).reshape(n, r)
        _at(o_arg, count, t)[...] = (P @ Q.T).reshape(-1)[:count].astype(t)
        return
    a_arg, b_arg, c_arg, m, n, r = args
    m, n, r = int(m), int(n), int(r)
    M = _at(a_arg, m * n, np.float32).reshape(m, n)
    if kind == "project":                                # P = M Q
        Q = _at(b_arg, n * r, np.float32).reshape(n, r)
        _at(c_arg, m * r, np.float32)[...] = (M @ Q).reshape(-1)
    else:                                                # back: Q = Mᵀ P
        P = _at(b_arg, m * r, np.float32).reshape(m, r)
        _at(c_arg, n * r, np.float32)[...] = (M.T @ P).reshape(-1)


_DT = r"(float16|bfloat16|float32)"


def launch(name: str, grid: int, args: tuple) -> None:
    """Run kernel ``name`` of compress.cu over ``grid`` CUDA blocks."""
    f32 = np.dtype(np.float32)
    if m := re.fullmatch(r"compress_scales_(int8|fp8)_" + _DT, name):
        return _scales(m[1], _dtype(m[2]), grid, args)
    if m := re.fullmatch(r"compress_quantize_(int8|fp8)_" + _DT, name):
        return _quantize(m[1], _dtype(m[2]), args)
    if m := re.fullmatch(r"compress_dequantize_(int8|fp8)_" + _DT, name):
        return _dequantize(m[1], _dtype(m[2]), args)
    if m := re.fullmatch(r"compress_dequantize_add_(int8|fp8)", name):
        return _dequantize(m[1], None, args)
    if m := re.fullmatch(r"compress_topk_hist_(masked|" + _DT[1:-1] + ")", name):
        return _hist(m[1] == "masked", f32 if m[1] == "masked" else _dtype(m[1]), args)
    if m := re.fullmatch(r"compress_topk_count_(masked|" + _DT[1:-1] + ")", name):
        return _count(m[1] == "masked", f32 if m[1] == "masked" else _dtype(m[1]), grid, args)
    if m := re.fullmatch(r"compress_topk_write_masked_" + _DT, name):
        return _write(True, f32, _dtype(m[1]), grid, args)
    if m := re.fullmatch(r"compress_topk_write_" + _DT, name):
        return _write(False, _dtype(m[1]), _dtype(m[1]), grid, args)
    if m := re.fullmatch(r"compress_(load|store|add_dense)_" + _DT, name):
        return _elementwise(m[1], _dtype(m[2]), args)
    if m := re.fullmatch(r"compress_scatter_" + _DT, name):
        return _scatter(_dtype(m[1]), args)
    if name == "compress_zero":
        return _zero(args)
    if m := re.fullmatch(r"compress_lowrank_(project|orthonormalize|back)", name):
        return _lowrank(m[1], None, args)
    if m := re.fullmatch(r"compress_lowrank_expand_" + _DT, name):
        return _lowrank("expand", _dtype(m[1]), args)
    raise AssertionError(f"fake cupy: no numpy transliteration of kernel {name}")
