"""Binomial trees: reduce, broadcast, and allreduce as reduce-to-0 followed by broadcast.

Ranks are numbered relative to the root (``v = (rank - root) mod p``). Reduce: in step ``k`` a
rank whose bit ``k`` is set sends its partial result to ``v - 2**k`` and is done; the others add
what ``v + 2**k`` sends. Broadcast runs the same tree backwards. Each takes ``ceil(log2 p)``
steps moving the whole vector per step: ``2 ceil(lg p) (alpha + n beta)`` for the allreduce,
good for short vectors only. Non-root ranks of a reduce accumulate in their own output buffer.

**Channels** (``-O channels=K``, allreduce): the vector is cut into ``K`` parts and part ``k``
is reduced and broadcast by its own binomial tree, every tree in the same steps (an executor
posts every message of a step together, so the trees run concurrently), each with its own
scratch slot. NCCL builds each channel's tree from that channel's ring order; so does
:func:`channel_orders`: tree ``k`` is the binomial tree over ring ``k``'s member order
(:func:`~.ring.ring_orders`: strides 1, g-1, ... on one node, each node entered at local rank
``k`` on several), rotated to start at member ``k`` (on several nodes: at node
``floor(k P / K)``, each node's members kept together). So the roots -- the ranks busy in
every step -- differ, and since the roots are consecutive members, the ranks that receive in
step ``t`` of one tree (positions that are multiples of ``2^(t+1)``) are mostly others in the
other trees: on 8 ranks with 2 channels no rank receives more than half the vector in any
step (one tree: the root receives all of it in every step), and the pairs that talk in a step
differ between trees, so a GPU with links to several peers keeps several busy. One channel is
the plain tree rooted at rank 0. Broadcast and reduce take no channels: their trees all start
(end) at the one root, which injects (absorbs) the whole vector in every step whatever the
orders -- on a power of two every stride order even gives the root the same first peer --
and NCCL runs them on rings.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from ._build import INPUT, OUTPUT, Builder, Group, Partition, Region, log2_ceil, make_slice, world
from .ring import channels_of, ring_orders
from .schedule import Buf, Problem, Program

# -- channels --------------------------------------------------------------------------------------

def channel_orders(g: int, channels: int, nodes: Sequence[Sequence[int]] | None = None
                   ) -> list[list[int]]:
    """The member order of each channel's tree over group indices ``0..g-1`` (position 0 is
    the root of a binomial tree): ring ``k``'s order (:func:`~.ring.ring_orders`) rotated to
    start at member ``k mod g`` -- on several nodes (``nodes``, all the same size) at the start
    of node ``floor(k P / K)``'s segment, which keeps every node's members together. Channels
    have distinct roots (up to ``g`` of them on one node, up to a node's size on several).
    One channel keeps the group's own order."""
    if channels == 1:
        return [list(range(g))]
    multi = nodes is not None and len(nodes) > 1 and len({len(n) for n in nodes}) == 1
    out = []
    for k, order in enumerate(ring_orders(g, channels, nodes)):
        if multi:
            assert nodes is not None
            start = (k * len(nodes) // channels) * len(nodes[0])
        else:
            start = order.index(k % g)
        out.append(order[start:] + order[:start])
    return out


def channel_group(grp: Group, order: Sequence[int]) -> Group:
    """``grp`` with its members in ``order`` (indices into ``grp``)."""
    return Group([grp.members[o] for o in order], list(order).index(grp.me))


def node_groups(problem: Problem) -> list[list[int]] | None:
    """The ranks of every node of the problem's layout (None without a layout)."""
    layout = problem.layout
    return None if layout is None else [list(n) for n in layout.nodes]


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
                   scratch: int, options: Mapping[str, Any],
                   nodes: Sequence[Sequence[int]] | None = None) -> None:
    """Binomial reduce to member 0 into ``dst``, then binomial broadcast of ``dst``; with
    ``channels`` K, part ``k`` of the vector on tree ``k`` (:func:`channel_orders`; ``nodes``:
    the group's members by node, for the multi-node orders)."""
    channels = channels_of(options)
    if channels == 1:
        reduce_core(b, grp, 0, src, dst, n, t0, scratch)
        bcast_core(b, grp, 0, dst, dst, n, t0 + log2_ceil(grp.size))
        return
    parts = Partition(n, channels)
    slot = parts.max_len()
    for k, order in enumerate(channel_orders(grp.size, channels, nodes)):
        sub = channel_group(grp, order)
        off, length = parts.off(k), parts.len(k)
        s_src, s_dst = Region(src.buf, src.offset + off), Region(dst.buf, dst.offset + off)
        reduce_core(b, sub, 0, s_src, s_dst, length, t0, scratch + k * slot)
        bcast_core(b, sub, 0, s_dst, s_dst, length, t0 + log2_ceil(grp.size))


# -- public generators -------------------------------------------------------------------------

def allreduce(problem: Problem, rank: int, options: Mapping[str, Any]) -> Program:
    """Binomial-tree allreduce over every rank (``channels`` trees, see the module docstring)."""
    b = Builder(rank)
    allreduce_core(b, world(problem.nranks, rank), INPUT, OUTPUT, problem.count, 0, 0, options,
                   node_groups(problem))
    return b.build()


def broadcast(problem: Problem, rank: int, options: Mapping[str, Any]) -> Program:
    b = Builder(rank)
    bcast_core(b, world(problem.nranks, rank), problem.root, INPUT, OUTPUT, problem.count, 0)
    return b.build()


def reduce(problem: Problem, rank: int, options: Mapping[str, Any]) -> Program:
    b = Builder(rank)
    reduce_core(b, world(problem.nranks, rank), problem.root, INPUT, OUTPUT, problem.count, 0, 0)
    return b.build()
