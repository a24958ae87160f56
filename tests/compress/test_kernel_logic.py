"""csrc/compress.cu is compiled (sm_80, sm_90) by tests/gpu/test_compile.py, which picks up every
.cu; no GPU runs it here. What can be checked without one: its integer fp8 e4m3 encoder and
decoder, transliterated line by line, agree with ml_dtypes (which collbench/compress/quantize.py
uses) on every float32 class, and its top-k output positions reproduce the numpy selection."""

from __future__ import annotations

import ml_dtypes
import numpy as np

from collbench.compress import sparse
from collbench.compress.quantize import scales


def _encode(v: float) -> int:
    """Fp8::encode of csrc/compress.cu (|v| <= 448)."""
    bits = int(np.float32(v).view(np.uint32))
    sign, mag = (bits >> 24) & 0x80, bits & 0x7FFFFFFF
    if mag < 0x3C800000:
        code = int(np.rint(np.float32(np.uint32(mag).view(np.float32)) * np.float32(512.0)))
    else:
        e = (mag >> 23) - 127
        m = (mag & 0x7FFFFF) >> 20
        rest = mag & 0xFFFFF
        if rest > 0x80000 or (rest == 0x80000 and m & 1):
            m += 1
        if m == 8:
            m, e = 0, e + 1
        code = ((e + 7) << 3) | m
    return sign | code


def _decode(c: int) -> float:
    e, m = (c >> 3) & 0xF, c & 7
    mag = m * 2.0 ** -9 if e == 0 else float(np.uint32(((e + 120) << 23) | (m << 20)).view(np.float32))
    return -mag if c & 0x80 else mag


def test_fp8_encoder_matches_ml_dtypes() -> None:
    rng = np.random.default_rng(0)
    values = np.concatenate([
        rng.uniform(-448, 448, 20000), rng.standard_normal(20000) * 2.0 ** -7,   # normals, subnormals
        [0.0, -0.0, 448.0, -448.0, 2.0 ** -6, 2.0 ** -9, 2.0 ** -10, 3 * 2.0 ** -10, 1.0625, 1.1875,
         15.5, 240.0, 232.0, 2.0 ** -6 - 2.0 ** -11]]).astype(np.float32)       # ties, boundaries
    want = values.astype(ml_dtypes.float8_e4m3fn).view(np.uint8)
    got = np.array([_encode(float(v)) for v in values], dtype=np.uint8)
    assert np.array_equal(got[values != 0], want[values != 0])
    codes = np.arange(256, dtype=np.uint8)
    finite = codes[(codes & 0x7F) != 0x7F]
    assert [_decode(int(c)) for c in finite] == finite.view(ml_dtypes.float8_e4m3fn).astype(np.float64).tolist()


def test_scales_round_up_like_div_rp() -> None:
    """quantize.scales is the correctly rounded-up quotient (the kernel's div.rp.f32)."""
    a = np.concatenate([np.random.default_rng(1).uniform(0, 1e3, 5000),
                        np.float32(1e-42) * np.arange(1, 50)]).astype(np.float32)
    for fmt, qmax in (("int8", 127), ("fp8", 448)):
        s = scales(a, 1, fmt).astype(np.float64)
        assert np.all(s * qmax >= a) and np.all(np.nextafter(s.astype(np.float32), 0).astype(np.float64) * qmax < a)


def test_topk_write_positions() -> None:
    """count/write kernels: contiguous chunks per CUDA block, ties to the lower index."""
    x = (np.random.default_rng(2).integers(-9, 10, 3001) / 4).astype(np.float32)
    k, blocks = 500, 7
    key = np.abs(x).view(np.uint32)
    t = np.sort(key)[::-1][k - 1]                      # what the four histogram passes find
    per = -(-x.size // blocks)
    chunks = [(min(b * per, x.size), min(b * per + per, x.size)) for b in range(blocks)]
    above = [int(np.count_nonzero(key[a:b] > t)) for a, b in chunks]
    ties = [int(np.count_nonzero(key[a:b] == t)) for a, b in chunks]
    above_before, ties_before = np.cumsum([0] + above[:-1]), np.cumsum([0] + ties[:-1])
    allowed = k - sum(above)
    out = np.full(k, -1)
    for b, (a0, b0) in enumerate(chunks):
        ab, eb = above_before[b], ties_before[b]
        for i in range(a0, b0):
            if key[i] > t or (key[i] == t and eb < allowed):
                out[ab + min(eb, allowed)] = i
            ab += key[i] > t
            eb += key[i] == t
    assert out.tolist() == sparse.top_k(x, k).tolist()
