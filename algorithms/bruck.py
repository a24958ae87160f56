"""Bruck's allgather: ``ceil(log2 p)`` steps and as many messages per rank, for any ``p``.

The textbook algorithm (Bruck, Ho, Kipnis, Upfal & Weathersby 1997) works on a *rotated* copy
of the data in scratch: position ``m`` of member ``i``'s rotated buffer holds the data of member
``i + m`` (mod ``p``), so its own data starts at position 0. In step ``k`` (distance
``d = 2**k``) member ``i`` sends positions ``0 .. n-1`` (``n = min(d, p - d)``), everything it
has gathered so far, to member ``i - d`` and receives positions ``d .. d+n-1`` from member
``i + d``: one contiguous range each way, even where the members' blocks wrap around the end
of the group. A final local copy (the inverse rotation) puts every block in its place in the
output; it costs one pass over the output, which is what buys one message per step instead of
two for every wrapped range.
"""

from __future__ import annotations

from itertools import accumulate
from typing import Sequence

from ._build import Builder, Group, Partition, Region, log2_ceil, make_slice, unit_runs
from ._flat import flat_allgather, flat_units
from .ring import UnitsOf, _place_own
from .schedule import Buf, Slice


def allgather_span(g: int) -> int:
    return max(1, log2_ceil(g))


def _member_runs(grp: Group, part: Partition, region: Region, units: UnitsOf) -> list[list[Slice]]:
    """Where each member's data lives in ``region`` (one slice each for flat units)."""
    if units is flat_units:
        return [[slc] for slc in part.slices(region)]
    return [unit_runs(units(u, u + 1), part, region) for u in range(grp.size)]


def _copy_runs(b: Builder, t: int, pairs: Sequence[tuple[Slice, Slice]]) -> None:
    """Copy each (src, dst) pair, merging neighbours that are contiguous on both sides, so
    the inverse rotation of a flat allgather is two copies rather than one per block."""
    merged: list[tuple[Slice, Slice]] = []
    for src, dst in pairs:
        if merged:
            last_src, last_dst = merged[-1]
            if (src.buf is last_src.buf and src.offset == last_src.end
                    and dst.buf is last_dst.buf and dst.offset == last_dst.end):
                merged[-1] = (make_slice(src.buf, last_src.offset, last_src.length + src.length),
                              make_slice(dst.buf, last_dst.offset, last_dst.length + dst.length))
                continue
        merged.append((src, dst))
    for src, dst in merged:
        b.copy(t, src, dst)


def allgather_core(b: Builder, grp: Group, part: Partition, region: Region, units: UnitsOf,
                   own: Slice | None, t0: int, scratch: int = 0) -> None:
    """Bruck allgather; arguments as in :func:`.ring.allgather_core`, plus ``scratch``: the
    first scratch element the rotated buffer may use (callers keep live data below it)."""
    g, i = grp.size, grp.me
    flat = units is flat_units
    if flat:  # member u's data is block u: everything below is O(1) per member asked for
        def runs_of(u: int) -> list[Slice]:
            return [region.at(part.off(u), part.len(u))]

        base, total = part.off(i), part.off(g)

        def off_at(m: int) -> int:  # where rotated position m starts: members i, i+1, ... wrap
            u = i + m
            return part.off(u) - base if u <= g else total - base + part.off(u - g)
    else:
        runs = _member_runs(grp, part, region, units)
        runs_of = runs.__getitem__
        # rotated position m holds member (i + m) % g: offsets of the positions in scratch
        offs = [0, *accumulate(sum(s.length for s in runs[(i + m) % g]) for m in range(g))]
        off_at = offs.__getitem__
    if own is not None:
        _place_own(b, t0, own, runs_of(i))
    if g == 1:
        return
    rot = Region(Buf.SCRATCH, scratch)

    def positions(lo: int, hi: int) -> Slice:
        start = off_at(lo)
        return rot.at(start, off_at(hi) - start)

    steps = allgather_span(g)
    k, d = 0, 1
    while d < g:
        n = min(d, g - d)
        if k == 0:
            # position 0 is filled only after this step's messages (local work comes last in a
            # step): the first send reads my data where it already is
            b.send_all(t0, grp.peer(i - d), [own] if own is not None else runs_of(i))
        else:
            b.send(t0 + k, grp.peer(i - d), positions(0, n))
        b.recv(t0 + k, grp.peer(i + d), positions(d, d + n))
        k, d = k + 1, d * 2
    if steps > 1:  # later steps send position 0 along with what they gathered
        mine = [own] if own is not None else runs_of(i)
        _copy_runs(b, t0, list(zip(mine, _split(positions(0, 1), mine))))
    # inverse rotation: positions 1 .. g-1 to their members' places (my own is there already)
    if flat:  # two ranges: members i+1 .. g-1, then 0 .. i-1, each contiguous on both sides
        upper = region.at(part.off(i + 1), total - part.off(i + 1))
        lower = region.at(part.off(0), base - part.off(0))
        _copy_runs(b, t0 + steps - 1, [(positions(1, g - i), upper), (positions(g - i, g), lower)])
        return
    pairs = []
    for m in range(1, g):
        dsts = runs[(i + m) % g]
        pairs.extend(zip(_split(positions(m, m + 1), dsts), dsts))
    _copy_runs(b, t0 + steps - 1, pairs)


def _split(whole: Slice, like: Sequence[Slice]) -> list[Slice]:
    """``whole`` cut into consecutive pieces as long as the slices of ``like``."""
    out, off = [], whole.offset
    for slc in like:
        out.append(make_slice(whole.buf, off, slc.length))
        off += slc.length
    return out


allgather = flat_allgather(allgather_core)
