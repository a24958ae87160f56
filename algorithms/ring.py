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

**Channels** (``-O channels=K``, allreduce, allgather and reduce-scatter), as NCCL runs them:
the data is cut into ``K`` parts and part ``k`` goes around its own ring, all ``K`` rings in the
same steps (an executor posts every message of a step together, so they run concurrently).
The rings visit the ranks in different orders so that their messages use different links
(:func:`ring_orders`): on one node ring ``k`` steps by a stride coprime with ``g`` (1, g-1, then
the other strides: forward, backward, then across), so a GPU with a link to every peer keeps
several busy; on several nodes ring ``k`` keeps the nodes in order but starts every node's
segment at its local rank ``k``, so each ring leaves and enters a node through a different GPU
and its NIC (NCCL's rings over several NICs, one rail each). More channels than distinct orders
reuse orders: their messages then share links, and the cost model charges them so.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Protocol, Sequence

from ._build import (
    INPUT,
    OUTPUT,
    Builder,
    Group,
    Partition,
    Region,
    Units,
    default_chunks,
    make_slice,
    unit_runs,
    world,
)
from ._flat import flat_allgather, flat_reduce_scatter, flat_units
from .schedule import Buf, Problem, Program, Slice

UnitsOf = Callable[[int, int], Units]


class Blocks(Protocol):
    """What the ring cores need of a partition: each member's block in ``region``, and the
    longest block (a :class:`~._build.Partition`, or one channel's sub-blocks)."""

    def slices(self, region: Region) -> list[Slice]: ...

    def max_len(self) -> int: ...


# -- channels --------------------------------------------------------------------------------------

def channels_of(options: Mapping[str, Any]) -> int:
    k = options.get("channels")
    return 1 if k is None else int(k)


MAX_CHANNELS = 64
"""The most channels a schedule takes. NCCL itself launches at most MAXCHANNELS (32 in NCCL
2.x's src/include/device.h, 2020); a bound also keeps a mistyped ``channels=100000`` from
building a hundred thousand rings before anything runs."""


def check_channels(problem: Problem, options: Mapping[str, Any]) -> str | None:
    """Precondition: ``channels`` is a whole number in 1..:data:`MAX_CHANNELS`."""
    k = options.get("channels")
    if k is None:
        return None
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_CHANNELS:
        return f"channels must be a whole number from 1 to {MAX_CHANNELS}, not {k!r}"
    return None


def _strides(g: int) -> list[int]:
    """Ring strides for one node: 1, g-1, then the other units modulo g in pairs (s, g-s)."""
    out: list[int] = []
    for s in range(1, g):
        if math.gcd(s, g) == 1 and s not in out:
            out += [s] if g - s == s or g - s in out else [s, g - s]
    return out or [1]


def ring_orders(g: int, channels: int, nodes: Sequence[Sequence[int]] | None = None
                ) -> list[list[int]]:
    """The member order of each channel's ring over group indices ``0..g-1``.

    Without ``nodes`` (or with one node), ring ``k`` steps by the ``k``-th stride of
    :func:`_strides`; with ``nodes`` (each a list of group indices, all the same size), ring
    ``k`` visits the nodes in order and each node's members from its ``k``-th one on."""
    if nodes is not None and len(nodes) > 1 and len({len(n) for n in nodes}) == 1:
        per = len(nodes[0])
        return [[members[(k + j) % per] for members in nodes for j in range(per)]
                for k in range(channels)]
    strides = _strides(g)
    return [[(j * strides[k % len(strides)]) % g for j in range(g)] for k in range(channels)]


class _ChannelBlocks:
    """Sub-block ``k`` of ``K`` of every block of ``part``, listed in ring position order: what
    channel ``k`` moves when block ``order[j]`` belongs to the ring's ``j``-th member. It offers
    the two :class:`~._build.Partition` methods the ring cores use."""

    def __init__(self, part: Partition, order: Sequence[int], k: int, channels: int) -> None:
        self._blocks = []
        for member in order:
            sub = Partition(part.len(member), channels)
            self._blocks.append((part.off(member) + sub.off(k), sub.len(k)))

    def slices(self, region: Region) -> list[Slice]:
        return [region.at(off, n) for off, n in self._blocks]

    def max_len(self) -> int:
        return max((n for _, n in self._blocks), default=0)


def _channel_group(grp: Group, order: Sequence[int]) -> Group:
    return Group([grp.members[o] for o in order], list(order).index(grp.me))


def _node_groups(problem: Problem) -> list[list[int]] | None:
    layout = problem.layout
    return None if layout is None else [list(n) for n in layout.nodes]


def reduce_scatter_span(g: int) -> int:
    return max(1, g - 1)


def reduce_scatter_core(b: Builder, grp: Group, part: Blocks, src: Region, dst: Region,
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


def allgather_core(b: Builder, grp: Group, part: Blocks, region: Region, units: UnitsOf,
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
    else:   # units over a plain partition (the hierarchical algorithms' packed vectors)
        assert isinstance(part, Partition)
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
                   scratch: int, options: Mapping[str, Any],
                   nodes: Sequence[Sequence[int]] | None = None) -> None:
    """Ring allreduce of ``n`` elements: reduce-scatter into ``dst``, then allgather in ``dst``;
    with ``channels`` K, part ``k`` of the vector on ring ``k`` (``nodes``: the group's members
    by node, for the multi-node ring orders)."""
    channels = channels_of(options)
    g = grp.size
    if channels == 1:
        part = Partition(n, g)
        reduce_scatter_core(b, grp, part, src, dst, True, t0, scratch)
        allgather_core(b, grp, part, dst, flat_units, None, t0 + reduce_scatter_span(g))
        return
    chunks = Partition(n, channels)
    slot = Partition(chunks.max_len(), g).max_len()
    for k, order in enumerate(ring_orders(g, channels, nodes)):
        sub = _channel_group(grp, order)
        part = Partition(chunks.len(k), g)
        off = chunks.off(k)
        s_src, s_dst = Region(src.buf, src.offset + off), Region(dst.buf, dst.offset + off)
        # each ring has its own receive slot (partial sums accumulate in dst)
        reduce_scatter_core(b, sub, part, s_src, s_dst, True, t0, scratch + k * slot)
        allgather_core(b, sub, part, s_dst, flat_units, None, t0 + reduce_scatter_span(g))


# -- public generators -------------------------------------------------------------------------

def allreduce(problem: Problem, rank: int, options: Mapping[str, Any]) -> Program:
    """Ring allreduce over every rank (``channels`` rings, see the module docstring)."""
    b = Builder(rank)
    allreduce_core(b, world(problem.nranks, rank), INPUT, OUTPUT, problem.count, 0, 0, options,
                   _node_groups(problem))
    return b.build()


_allgather_one = flat_allgather(allgather_core)
_reduce_scatter_one = flat_reduce_scatter(reduce_scatter_core)


def allgather(problem: Problem, rank: int, options: Mapping[str, Any]) -> Program:
    """Ring allgather; with ``channels`` K, sub-block ``k`` of every rank's block on ring ``k``."""
    channels = channels_of(options)
    if channels == 1:
        return _allgather_one(problem, rank, options)
    p, count = problem.nranks, problem.count
    b = Builder(rank)
    grp, part = world(p, rank), Partition(count * p, p)
    own = Partition(count, channels)
    for k, order in enumerate(ring_orders(p, channels, _node_groups(problem))):
        allgather_core(b, _channel_group(grp, order), _ChannelBlocks(part, order, k, channels),
                       OUTPUT, flat_units, INPUT.at(own.off(k), own.len(k)), 0)
    return b.build()


def reduce_scatter(problem: Problem, rank: int, options: Mapping[str, Any]) -> Program:
    """Ring reduce-scatter; with ``channels`` K, sub-block ``k`` of every result on ring ``k``."""
    channels = channels_of(options)
    if channels == 1:
        return _reduce_scatter_one(problem, rank, options)
    p, count = problem.nranks, problem.count
    b = Builder(rank)
    grp, part = world(p, rank), Partition(count * p, p)
    out = Partition(count, channels)
    scratch = 0
    for k, order in enumerate(ring_orders(p, channels, _node_groups(problem))):
        blocks = _ChannelBlocks(part, order, k, channels)
        reduce_scatter_core(b, _channel_group(grp, order), blocks, INPUT,
                            Region(OUTPUT.buf, OUTPUT.offset + out.off(k)), False, 0, scratch)
        scratch += 2 * blocks.max_len()       # its receive slot and its partial-sum slot
    return b.build()


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

