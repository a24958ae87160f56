"""PyTorch DDP's gradient buckets.

DDP assigns parameters to buckets in the order their gradients become ready in backward --
the reverse of the layer order once the reducer has rebuilt its buckets after the first
iteration -- closing a bucket as soon as its size reaches the current limit. The first limit
is ``first_bucket`` (``torch.distributed._DEFAULT_FIRST_BUCKET_BYTES`` = 1 MiB, so reduction
starts early), every later one ``bucket_cap_mb`` (25 MiB by default). A bucket can exceed its
limit by the last tensor added; a tensor is never split
(torch/csrc/distributed/c10d/reducer.cpp, ``compute_bucket_assignment_by_size``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

MiB = 1 << 20
DEFAULT_CAP = 25 * MiB
DEFAULT_FIRST = 1 * MiB


@dataclass(frozen=True)
class Bucket:
    """Consecutive tensors (indices into the ordered list) and their bytes."""

    first: int
    last: int            # inclusive
    nbytes: int


def assign_buckets(sizes: Sequence[int], cap: int = DEFAULT_CAP, first: int = DEFAULT_FIRST) -> list[Bucket]:
    """Buckets over tensors of ``sizes`` bytes, taken in the given order (already reversed)."""
    limits = [first, cap] if first else [cap]
    out: list[Bucket] = []
    start, size, limit = 0, 0, 0
    for i, nbytes in enumerate(sizes):
        size += nbytes
        if size >= limits[limit]:
            out.append(Bucket(start, i, size))
            start, size = i + 1, 0
            limit = min(limit + 1, len(limits) - 1)
    if start < len(sizes):
        out.append(Bucket(start, len(sizes) - 1, size))
    return out


__all__ = ["Bucket", "assign_buckets", "DEFAULT_CAP", "DEFAULT_FIRST", "MiB"]
