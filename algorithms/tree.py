"""Binomial trees: reduce, broadcast, and allreduce as reduce-to-0 followed by broadcast.

Ranks are numbered relative to the root (``v = (rank - root) mod p``). Reduce: in step ``k`` a
rank whose bit ``k`` is set sends its partial result to ``v - 2**k`` and is done; the others add
what ``v + 2**k`` sends. Broadcast runs the same tree backwards. Each takes ``ceil(log2 p)``
steps moving the whole vector per step: ``2 ceil(lg p) (alpha + n beta)`` for the allreduce,
good for short vectors only. Non-root ranks of a reduce accumulate in their own output buffer.
"""

from __future__ import annotations

from typing import Any, Mapping

from ._build import INPUT, OUTPUT, Builder, Group, Region, log2_ceil, make_slice, world
from ._flat import flat_allreduce
from .schedule import Buf, Problem, Program


def reduce_core(b: Builder, grp: Group, root: int, src: Region, dst: Region, n: int, t0: int,
                scratch: int) -> None:
    """Binomial reduce to member ``root``; every member accumulates in ``dst``."""
    g, i = grp.size, grp.me
    v = (i - root) % g
    mine, acc = src.at(0, n), dst.at(0, n)
    tmp = make_slice(Buf.SCRATCH, scratch, n)
    have = False
    k, m = 0, 1
    while m < g:
        if v & m:
            b.send(t0 + k, grp.peer(v - m + root), acc if have else mine)
            return
        if v + m < g:
            b.recv(t0 + k, grp.peer(v + m + root), tmp)
            b.reduce(t0 + k, acc, acc if have else mine, tmp)
            have = True
        k, m = k + 1, m * 2
    if not have:  # a lone root
        b.copy(t0, mine, acc)


def bcast_core(b: Builder, grp: Group, root: int, src: Region, dst: Region, n: int,
               t0: int) -> None:
    """Binomial broadcast of the root member's ``src`` into everyone's ``dst``."""
    g, i = grp.size, grp.me
    levels = log2_ceil(g)
    v = (i - root) % g
    if v == 0:
        b.copy(t0, src.at(0, n), dst.at(0, n))
        data = src.at(0, n)
        m = 1 << levels
    else:
        m = v & -v
        b.recv(t0 + levels - m.bit_length(), grp.peer(v - m + root), dst.at(0, n))
        data = dst.at(0, n)
    m >>= 1
    while m:
        if v + m < g:
            b.send(t0 + levels - m.bit_length(), grp.peer(v + m + root), data)
        m >>= 1


def allreduce_span(g: int, n: int, options: Mapping[str, Any]) -> int:
    return max(1, 2 * log2_ceil(g))


def allreduce_core(b: Builder, grp: Group, src: Region, dst: Region, n: int, t0: int,
                   scratch: int, options: Mapping[str, Any]) -> None:
    """Binomial reduce to member 0 into ``dst``, then binomial broadcast of ``dst``."""
    reduce_core(b, grp, 0, src, dst, n, t0, scratch)
    bcast_core(b, grp, 0, dst, dst, n, t0 + log2_ceil(grp.size))


# -- public generators -------------------------------------------------------------------------

allreduce = flat_allreduce(allreduce_core)


def broadcast(problem: Problem, rank: int, options: Mapping[str, Any]) -> Program:
    b = Builder(rank)
    bcast_core(b, world(problem.nranks, rank), problem.root, INPUT, OUTPUT, problem.count, 0)
    return b.build()


def reduce(problem: Problem, rank: int, options: Mapping[str, Any]) -> Program:
    b = Builder(rank)
    reduce_core(b, world(problem.nranks, rank), problem.root, INPUT, OUTPUT, problem.count, 0, 0)
    return b.build()
