"""Block quantization: int8 with a per-block absmax scale, and fp8 e4m3 (ml_dtypes) likewise.

A block of ``B`` float32 values ``v`` travels as one float32 scale ``s`` and ``B`` one-byte
codes ``q``; ``dequantize`` returns ``q * s``. The scale is ``absmax / qmax`` (127 for int8,
448 for e4m3) rounded *up* to float32, so ``|v / s| <= qmax`` and no code overflows; an
all-zero block gets scale 1 and codes 0. Everything is float32 arithmetic, as a GPU kernel
does it (``csrc/compress.cu`` implements the same functions).

Error of one quantization of a value ``v`` in a block with absmax ``a`` (``s <= a/qmax·(1+2⁻²³)
+ 2⁻¹⁴⁹``, the last term the float32 denormal floor):

* int8: ``|v - q·s| <= s/2 + 2⁻²²·(|v| + s)`` (rounding to the nearest code, plus float32
  rounding of the division and of the product);
* fp8 e4m3: ``|v - q·s| <= 2⁻⁴·|v| + 2⁻¹⁰·s + 2⁻²²·(|v| + s)`` (three mantissa bits: half an
  ulp is 2⁻⁴ of the value for normals; below 2⁻⁶ the subnormal step 2⁻⁹ gives the 2⁻¹⁰·s term).

:mod:`.bounds` adds these up along a value's path through an algorithm.
"""

from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np

from .options import FORMATS

SCALE_BYTES = 4  # one float32 scale per block
_FP8 = np.dtype(ml_dtypes.float8_e4m3fn)


@dataclass(frozen=True)
class ErrorModel:
    """One quantization's error: ``relative·|v| + step·s`` (plus float32 rounding, see above)."""

    relative: float
    step: float


ERRORS = {"int8": ErrorModel(0.0, 0.5), "fp8": ErrorModel(2.0 ** -4, 2.0 ** -10)}


def blocks(n: int, block: int) -> int:
    return -(-n // block)


def packed_bytes(n: int, block: int) -> int:
    """Bytes of ``n`` quantized values: scales first, then one code per value."""
    return blocks(n, block) * SCALE_BYTES + n


def _absmax(x: np.ndarray, block: int) -> np.ndarray:
    n = x.size
    full = n // block
    out = np.empty(blocks(n, block), dtype=np.float32)
    if full:
        np.abs(x[:full * block].reshape(full, block)).max(axis=1, out=out[:full])
    if n > full * block:
        out[full] = np.abs(x[full * block:]).max()
    return out


def scales(x: np.ndarray, block: int, fmt: str) -> np.ndarray:
    """Per-block float32 scales, rounded up so that ``|x / s| <= qmax``."""
    qmax = np.float32(FORMATS[fmt][1])
    a = _absmax(x, block)
    s = a / qmax
    # division rounded up (PTX div.rp.f32 in csrc/compress.cu): s·qmax is exact in float64, so
    # this finds every quotient that round-to-nearest put below a/qmax (underflow to 0 included)
    low = s.astype(np.float64) * float(qmax) < a.astype(np.float64)
    s[low] = np.nextafter(s[low], np.float32(np.inf))
    s[a == 0] = 1.0                    # an all-zero block: any scale, codes 0
    return s


def _expand(s: np.ndarray, n: int, block: int) -> np.ndarray:
    return np.repeat(s, block)[:n]


def quantize_into(x: np.ndarray, block: int, fmt: str, out: np.ndarray) -> None:
    """Quantize float32 ``x`` into ``out`` (uint8, :func:`packed_bytes` long): scales, codes."""
    n = x.size
    nb = blocks(n, block)
    s = scales(x, block, fmt)
    out[:nb * SCALE_BYTES].view(np.float32)[...] = s
    codes = out[nb * SCALE_BYTES:nb * SCALE_BYTES + n]
    qmax = np.float32(FORMATS[fmt][1])
    v = x / _expand(s, n, block)
    np.clip(v, -qmax, qmax, out=v)     # float32 rounding of the division may pass qmax by an ulp
    if fmt == "int8":
        codes.view(np.int8)[...] = np.rint(v)
    else:
        codes.view(_FP8)[...] = v.astype(_FP8)


def dequantize_into(packed: np.ndarray, n: int, block: int, fmt: str, out: np.ndarray) -> None:
    """``out[:] = codes * scales`` (float32 ``out`` of ``n`` values) from a packed buffer."""
    nb = blocks(n, block)
    s = packed[:nb * SCALE_BYTES].view(np.float32)
    codes = packed[nb * SCALE_BYTES:nb * SCALE_BYTES + n]
    values = codes.view(np.int8 if fmt == "int8" else _FP8).astype(np.float32)
    np.multiply(values, _expand(s, n, block), out=out)


def roundtrip(x: np.ndarray, block: int, fmt: str) -> np.ndarray:
    """``dequantize(quantize(x))`` as a new float32 array (tests and the references)."""
    x = np.asarray(x, dtype=np.float32)
    packed = np.empty(packed_bytes(x.size, block), dtype=np.uint8)
    quantize_into(x, block, fmt, packed)
    out = np.empty(x.size, dtype=np.float32)
    dequantize_into(packed, x.size, block, fmt, out)
    return out
