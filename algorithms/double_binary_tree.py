"""Double binary tree allreduce: two complementary binary trees over ranks.

This is the idea behind NCCL's double binary tree (Sanders, Speck and Traeff's two-tree
pipelining), but not NCCL's Tree algorithm itself: NCCL builds its two trees over *nodes* and
links the GPUs inside a node by a chain, while here both trees span all ranks, whatever the
layout, so ranks of one node can sit far apart in the trees.

Each tree reduces and broadcasts one half of the vector. The first tree has the shape of NCCL's
"btree" (``ncclGetBtree``, here applied to ranks: rank 0 is the root with one child, interior
nodes have even ranks, leaves odd ones); the second is its mirror image (``r -> p-1-r``) when
``p`` is even and the same tree shifted by one rank when ``p`` is odd, so most ranks that are
interior in one tree are leaves in the other and the two halves keep different links busy.

Each half is cut into ``chunks`` pipeline chunks. A node of height ``h`` (leaves have 0) sends
chunk ``c`` up in step ``c + h``, as soon as its children's chunks are in; the root of height
``H`` starts chunk ``c`` down in step ``c + H`` and a node at depth ``d`` forwards it in step
``c + H + d``. So reduction and broadcast flow through the tree at the same time, chunk after
chunk: ``chunks + 2H - 1`` steps in all. Scratch holds one chunk per child per tree.

**Channels** (``-O channels=K``): NCCL runs its two trees on every channel (2 trees x
channels). Here the vector is cut into ``K`` parts and part ``k`` is reduced and broadcast by
channel ``k``'s pair of trees, all channels in the same steps (an executor posts every message
of a step together, so they run concurrently), each with its own scratch slots. Channel ``k``
builds the same two trees over positions, placing the members in the order
:func:`~.tree.channel_orders` gives (ring ``k``'s order, :func:`~.ring.ring_orders`, rotated
to start at member ``k``, as NCCL derives each channel's trees from its ring),
so the trees' roots and interior ranks move from channel to channel and the load spreads over
ranks and links. ``chunks`` counts the pipeline chunks of each half of each channel's part
(default: :func:`~._build.default_chunks` of the whole vector, as with one channel), so the
step count does not depend on ``K``. One channel is the plain pair of trees.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Mapping, NamedTuple, Sequence

from ._build import INPUT, OUTPUT, Builder, Group, Partition, Region, chunks_problem, default_chunks, make_slice, world
from .ring import channels_of, check_channels
from .schedule import Buf, Problem, Program
from .tree import channel_group, channel_orders, node_groups


class Tree(NamedTuple):
    """A rooted tree over ``0..n-1``: parent (-1 at the root), children, height and depth."""

    parent: tuple[int, ...]
    children: tuple[tuple[int, ...], ...]
    height: tuple[int, ...]
    depth: tuple[int, ...]
    root: int


def btree_parent(n: int, rank: int) -> int:
    """Parent of ``rank`` in NCCL's binary tree over ``n`` ranks (-1 for the root, rank 0)."""
    if rank == 0:
        return -1
    bit = rank & -rank
    up = (rank ^ bit) | (bit << 1)
    return up if up < n else rank ^ bit


def _tree(parent: list[int]) -> Tree:
    n = len(parent)
    children: list[list[int]] = [[] for _ in range(n)]
    root = -1
    for r, up in enumerate(parent):
        if up < 0:
            root = r
        else:
            children[up].append(r)
    depth = [0] * n
    order = [root]
    for v in order:  # breadth-first: parents before children
        for c in children[v]:
            depth[c] = depth[v] + 1
            order.append(c)
    height = [0] * n
    for v in reversed(order):
        for c in children[v]:
            height[v] = max(height[v], height[c] + 1)
    return Tree(tuple(parent), tuple(tuple(c) for c in children), tuple(height), tuple(depth),
                root)


@lru_cache(maxsize=256)
def trees(n: int) -> tuple[Tree, Tree]:
    """NCCL's two trees over ``n`` ranks: the btree and its mirror (even n) or shift (odd n)."""
    first = [btree_parent(n, r) for r in range(n)]
    if n % 2 == 0:
        second = [-1 if first[n - 1 - r] < 0 else n - 1 - first[n - 1 - r] for r in range(n)]
    else:
        second = [-1 if first[(r - 1) % n] < 0 else (first[(r - 1) % n] + 1) % n
                  for r in range(n)]
    return _tree(first), _tree(second)


def _chunks(n: int, options: Mapping[str, Any]) -> int:
    k = options.get("chunks")
    return k if k is not None else default_chunks(n)


def check_options(problem: Problem, options: Mapping[str, Any]) -> str | None:
    """Precondition: ``chunks`` (None or a positive integer) and ``channels`` (>= 1)."""
    return chunks_problem(options) or check_channels(problem, options)


def allreduce_span(g: int, n: int, options: Mapping[str, Any]) -> int:
    if g == 1:
        return 1
    k = _chunks(n, options)
    return max(k + 2 * t.height[t.root] - 1 for t in trees(g))


def _two_trees(b: Builder, grp: Group, src: Region, dst: Region, n: int, k: int, t0: int,
               scratch: int, slot_len: int) -> None:
    """Channel work: both trees over ``grp`` on ``n`` elements, ``k`` chunks per half, four
    scratch slots of ``slot_len`` from ``scratch`` (two children per tree at most)."""
    g, i = grp.size, grp.me
    halves = Partition(n, 2)
    for which, tree in enumerate(trees(g)):
        half_off = halves.off(which)
        chunks = Partition(halves.len(which), k)
        up = tree.parent[i]
        kids = sorted(tree.children[i], key=lambda c: tree.height[c])
        h, d, top = tree.height[i], tree.depth[i], tree.height[tree.root]
        for c in range(k):
            off, length = half_off + chunks.off(c), chunks.len(c)
            mine, acc = src.at(off, length), dst.at(off, length)
            have = False
            for slot_no, kid in enumerate(kids):
                t = t0 + c + tree.height[kid]
                slot = make_slice(Buf.SCRATCH, scratch + (2 * which + slot_no) * slot_len, length)
                b.recv(t, grp.peer(kid), slot)
                b.reduce(t, acc, acc if have else mine, slot)
                have = True
            if up >= 0:
                b.send(t0 + c + h, grp.peer(up), acc if have else mine)
                b.recv(t0 + c + top + d - 1, grp.peer(up), acc)
            for kid in kids:
                b.send(t0 + c + top + d, grp.peer(kid), acc)


def allreduce_core(b: Builder, grp: Group, src: Region, dst: Region, n: int, t0: int,
                   scratch: int, options: Mapping[str, Any],
                   nodes: Sequence[Sequence[int]] | None = None) -> None:
    """Pipelined double-binary-tree allreduce of ``n`` elements from ``src`` into ``dst``; with
    ``channels`` K, part ``k`` of the vector on channel ``k``'s two trees (``nodes``: the
    group's members by node, for the multi-node orders)."""
    g = grp.size
    if g == 1:
        b.copy(t0, src.at(0, n), dst.at(0, n))
        return
    k = _chunks(n, options)
    channels = channels_of(options)
    parts = Partition(n, channels)
    slot_len = Partition(Partition(parts.max_len(), 2).max_len(), k).max_len()
    if channels == 1:
        _two_trees(b, grp, src, dst, n, k, t0, scratch, slot_len)
        return
    for ch, order in enumerate(channel_orders(g, channels, nodes)):
        off = parts.off(ch)
        _two_trees(b, channel_group(grp, order), Region(src.buf, src.offset + off),
                   Region(dst.buf, dst.offset + off), parts.len(ch), k, t0,
                   scratch + 4 * ch * slot_len, slot_len)


def allreduce(problem: Problem, rank: int, options: Mapping[str, Any]) -> Program:
    """Double-binary-tree allreduce over every rank (``channels`` pairs of trees, see the
    module docstring)."""
    b = Builder(rank)
    allreduce_core(b, world(problem.nranks, rank), INPUT, OUTPUT, problem.count, 0, 0, options,
                   node_groups(problem))
    return b.build()
