"""Ring algorithms: reduce-scatter, allgather and allreduce around a ring; chain broadcast/reduce.

Member ``i`` of a group of ``g`` always sends to ``i + 1`` and receives from ``i - 1``. The vector
is cut into ``g`` nearly equal blocks. Reduce-scatter takes ``g - 1`` steps: in step ``t`` member
``i`` forwards its partial sum of block ``i - t - 1`` and adds its own contribution to block
``i - t - 2``, which it has just received, so after the last step it holds block ``i`` complete.
Allgather circulates the finished blocks the same way. Allreduce is the two back to back
(``2(g - 1)`` steps, each rank sends ``2 (g - 1) / g`` of the vector: bandwidth-optimal).

Broadcast and reduce are pipelined chains along the ring starting (ending) at the root: the
vector is cut into ``chunks`` segments that follow each other down the chain, ``p - 2 + chunks``
steps in all.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from ._build import (INPUT, OUTPUT, Builder, Group, Partition, Region, Units, default_chunks,
                     make_slice,
                     unit_runs)
from ._flat import flat_allgather, flat_allreduce, flat_reduce_scatter, flat_units
from .schedule import Buf, Problem, Program, Slice

UnitsOf = Callable[[int, int], Units]


def reduce_scatter_span(g: int) -> int:
    return max(1, g - 1)


def reduce_scatter_core(b: Builder, grp: Group, part: Partition, src: Region, dst: Region,
                        mirror: bool, t0: int, scratch: int) -> None:
    """Ring reduce-scatter of the vector at ``src``: member ``i`` ends with block ``i`` reduced.

    With ``mirror`` the result block goes to its own offset in ``dst`` and partial sums
    accumulate there (``dst`` is a full-length vector, e.g. allreduce's output); otherwise
    ``dst`` receives just the result block and partials live in two scratch slots.
    """
    g, i = grp.size, grp.me
    mine = part.slices(src)  # my contribution to every block
    lens = [slc.length for slc in mine]
    if mirror:
        partial = part.slices(dst)  # partial sums accumulate in place
        final = partial[i]
    else:
        final = dst.at(0, lens[i])
        acc_slot = Region(Buf.SCRATCH, scratch + part.max_len())
        partial = [acc_slot.at(0, n) for n in lens]
    if g == 1:
        b.copy(t0, mine[0], final)
        return
    nxt, prv = grp.peer(i + 1), grp.peer(i - 1)
    recv_slot = Region(Buf.SCRATCH, scratch)
    for t in range(g - 1):
        sent, got = (i - t - 1) % g, (i - t - 2) % g
        b.send(t0 + t, nxt, mine[sent] if t == 0 else partial[sent])
        incoming = recv_slot.at(0, lens[got])
        b.recv(t0 + t, prv, incoming)
        b.reduce(t0 + t, final if t == g - 2 else partial[got], mine[got], incoming)


def allgather_span(g: int) -> int:
    return max(1, g - 1)


def allgather_core(b: Builder, grp: Group, part: Partition, region: Region, units: UnitsOf,
                   own: Slice | None, t0: int, scratch: int = 0) -> None:
    """Ring allgather: every member ends with every member's units in ``region``.

    ``units(lo, hi)`` is the set of units (blocks of ``part``) members ``lo .. hi-1`` own; the
    data of unit ``u`` lives at block ``u`` of ``region``. If ``own`` is given, this member's
    data is there (e.g. the input) instead of in ``region``: it is sent from ``own`` and copied
    into place in the first step. ``scratch`` is the first scratch element the core may use
    (every allgather core takes it; the ring needs none).
    """
    g, i = grp.size, grp.me
    if units is flat_units:  # member u owns block u: one slice each, computed once
        blocks = part.slices(region)
        runs = [[slc] for slc in blocks]
    else:
        runs = [unit_runs(units(u, u + 1), part, region) for u in range(g)]
    if own is not None:
        _place_own(b, t0, own, runs[i])
    nxt, prv = grp.peer(i + 1), grp.peer(i - 1)
    for t in range(g - 1):
        sent, got = (i - t) % g, (i - t - 1) % g
        if t == 0 and own is not None:
            b.send(t0, nxt, own)
        else:
            b.send_all(t0 + t, nxt, runs[sent])
        b.recv_all(t0 + t, prv, runs[got])


def _place_own(b: Builder, t: int, own: Slice, runs: list[Slice]) -> None:
    """Copy a member's own data into its place; its units must form one run of equal length."""
    runs = [slc for slc in runs if slc.length]
    if own.length == 0 and not runs:
        return
    if len(runs) != 1 or runs[0].length != own.length:
        raise ValueError("a member's own data must map to one run of the same length")
    b.copy(t, own, runs[0])


def allreduce_span(g: int, n: int, options: Mapping[str, Any]) -> int:
    return reduce_scatter_span(g) + allgather_span(g)


def allreduce_core(b: Builder, grp: Group, src: Region, dst: Region, n: int, t0: int,
                   scratch: int, options: Mapping[str, Any]) -> None:
    """Ring allreduce of ``n`` elements: reduce-scatter into ``dst``, then allgather in ``dst``."""
    part = Partition(n, grp.size)
    reduce_scatter_core(b, grp, part, src, dst, True, t0, scratch)
    allgather_core(b, grp, part, dst, flat_units, None, t0 + reduce_scatter_span(grp.size))


# -- public generators -------------------------------------------------------------------------

allreduce = flat_allreduce(allreduce_core)


allgather = flat_allgather(allgather_core)


reduce_scatter = flat_reduce_scatter(reduce_scatter_core)


def _chunks(problem: Problem, options: Mapping[str, Any]) -> Partition:
    k = options.get("chunks")
    return Partition(problem.count, k if k is not None else default_chunks(problem.count))


def broadcast(problem: Problem, rank: int, options: Mapping[str, Any]) -> Program:
    """Pipelined chain root -> root+1 -> ...: position ``i`` gets segment ``j`` in step ``j+i-1``."""
    p, root = problem.nranks, problem.root
    segs = _chunks(problem, options)
    b = Builder(rank)
    pos = (rank - root) % p
    if pos == 0:
        b.copy(0, INPUT.at(0, problem.count), OUTPUT.at(0, problem.count))
    for j in range(segs.k):
        seg_off, seg_len = segs.off(j), segs.len(j)
        if pos > 0:
            b.recv(j + pos - 1, (rank - 1) % p, OUTPUT.at(seg_off, seg_len))
        if pos < p - 1:
            src = INPUT if pos == 0 else OUTPUT
            b.send(j + pos, (rank + 1) % p, src.at(seg_off, seg_len))
    return b.build()


def reduce(problem: Problem, rank: int, options: Mapping[str, Any]) -> Program:
    """Pipelined chain ending at the root: the rank ``e`` hops from the far end reduces segment
    ``j`` in step ``j+e-1``. Non-root ranks accumulate in their own output."""
    p, root = problem.nranks, problem.root
    segs = _chunks(problem, options)
    b = Builder(rank)
    e = (root - rank - 1) % p  # hops from the far end of the chain (root is p-1 hops away)
    if p == 1:
        b.copy(0, INPUT.at(0, problem.count), OUTPUT.at(0, problem.count))
        return b.build()
    for j in range(segs.k):
        seg_off, seg_len = segs.off(j), segs.len(j)
        if e > 0:
            incoming = make_slice(Buf.SCRATCH, 0, seg_len)
            b.recv(j + e - 1, (rank + 1) % p, incoming)
            b.reduce(j + e - 1, OUTPUT.at(seg_off, seg_len), INPUT.at(seg_off, seg_len), incoming)
        if e < p - 1:
            src = INPUT if e == 0 else OUTPUT
            b.send(j + e, (rank - 1) % p, src.at(seg_off, seg_len))
    return b.build()


def chain_span(problem: Problem, options: Mapping[str, Any]) -> int:
    return max(1, _chunks(problem, options).k + problem.nranks - 2)
