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
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Mapping, NamedTuple

from ._build import Builder, Group, Partition, Region, default_chunks, make_slice
from ._flat import flat_allreduce
from .schedule import Buf


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


def allreduce_span(g: int, n: int, options: Mapping[str, Any]) -> int:
    if g == 1:
        return 1
    k = _chunks(n, options)
    return max(k + 2 * t.height[t.root] - 1 for t in trees(g))


def allreduce_core(b: Builder, grp: Group, src: Region, dst: Region, n: int, t0: int,
                   scratch: int, options: Mapping[str, Any]) -> None:
    """Pipelined double-binary-tree allreduce of ``n`` elements from ``src`` into ``dst``."""
    g, i = grp.size, grp.me
    if g == 1:
        b.copy(t0, src.at(0, n), dst.at(0, n))
        return
    k = _chunks(n, options)
    halves = Partition(n, 2)
    slot_len = Partition(halves.max_len(), k).max_len()
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


allreduce = flat_allreduce(allreduce_core)
