"""Shards of whole quantization blocks, one per rank (both quantized runners and the reference).

Shards are cut on block boundaries so that every block's scale belongs to one shard and the
blocks are the same ones (from element 0) in every algorithm, which :mod:`..bounds` relies on.
"""

from __future__ import annotations

from ..quantize import blocks, packed_bytes


def shard_bounds(count: int, block: int, p: int) -> list[tuple[int, int]]:
    """(start, stop) element range of each rank's shard: block ranges split as evenly as
    possible (a shard may be empty when there are fewer blocks than ranks)."""
    nb = blocks(count, block)
    out = []
    for i in range(p):
        lo, hi = i * nb // p, (i + 1) * nb // p
        out.append((min(lo * block, count), min(hi * block, count)))
    return out


def packed_sizes(bounds: list[tuple[int, int]], block: int) -> list[int]:
    return [packed_bytes(b - a, block) for a, b in bounds]


def offsets(sizes: list[int]) -> list[int]:
    out, total = [], 0
    for s in sizes:
        out.append(total)
        total += s
    return out
