"""Byte sizes: parsing with nccl-tests' binary suffixes, sweeps, and human formatting."""

from __future__ import annotations

import re

from .errors import UsageError

# nccl-tests' parsesize() treats K, M, G as binary multiples; we accept the IEC spellings too.
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20,
          "mib": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tb": 1 << 40,
          "tib": 1 << 40}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str, what: str = "size") -> int:
    """Parse ``8``, ``64K``, ``16M``, ``1G``, ``2GiB`` into bytes (suffixes are powers of 1024).

    Raises:
        UsageError: the text is not a non-negative integer with a known suffix.
    """
    match = _SIZE_RE.match(str(text))
    if not match or match.group(2).lower() not in _UNITS:
        raise UsageError(f"cannot parse {what} {text!r}: expected a number with an optional "
                         "K, M, G or T suffix (binary, like nccl-tests), e.g. 8, 64K, 16M")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def size_sweep(minbytes: int, maxbytes: int, stepfactor: int | None, stepbytes: int | None) -> list[int]:
    """Sizes from ``minbytes`` to ``maxbytes`` inclusive, multiplying by ``stepfactor`` when it
    is above 1, otherwise adding ``stepbytes`` (nccl-tests' rule)."""
    if minbytes < 0 or maxbytes < 0:
        raise UsageError("sizes must be non-negative")
    if minbytes > maxbytes:
        raise UsageError(f"minbytes ({minbytes}) is larger than maxbytes ({maxbytes})")
    sizes: list[int] = []
    size = minbytes
    if stepfactor is not None and stepfactor > 1:
        if minbytes == 0:
            sizes.append(0)
            size = 1
        while size <= maxbytes:
            sizes.append(size)
            size *= stepfactor
    else:
        if not stepbytes or stepbytes <= 0:
            if minbytes != maxbytes:
                raise UsageError("stepbytes must be positive when stepfactor is 1")
            return [minbytes]
        while size <= maxbytes:
            sizes.append(size)
            size += stepbytes
    return sizes


def format_bytes(nbytes: int) -> str:
    """Short binary form: 8 B, 64 KiB, 16 MiB (exact multiples only, else bytes)."""
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= factor and nbytes % factor == 0:
            return f"{nbytes // factor} {unit}"
    return f"{nbytes} B"
