"""Double binary tree: two complementary binary trees over the ranks, one half of the vector
each, reduced up and broadcast down pipelined in k chunks (``algorithms/double_binary_tree.py``).
H is the height of the taller tree; m and m_r are set by the trees' shape (see
:mod:`collbench.analysis.model.costs`), so tests/analysis check this row's bounds and its
m/m_r relations rather than one number.

==================================  ==============  ========================  ================
collective, algorithm               α ×             β × n                     γ × n
==================================  ==============  ========================  ================
allreduce double_binary_tree        m               m/(2k)                    m_r/(2k)
==================================  ==============  ========================  ================

Per step the cost is vectorized over ranks; for many ranks on uniform contiguous nodes only
one node of every kind is evaluated (:func:`_dbt_representatives`).

Channels (``-O channels=K``): channel ``k`` builds the same two trees over *positions* and
places member ``orders[k][i]`` at position ``i`` (:func:`~collbench.algorithms.tree.channel_orders`),
on part ``k`` of the vector (``Partition(n, K)``), ``chunks`` chunks per half as with one
channel; the form remaps each tree's parent, children, heights and depths to members
(:func:`_channel_arrays`) and prices the 2K (channel, tree) pairs' messages of a step together.
With several channels the representatives shortcut is not used (the nodes' roles differ from
channel to channel): every rank is evaluated, O(K p) per distinct step.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Mapping

import numpy as np

from ....algorithms import Collective, Problem
from ....algorithms._build import Partition
from ....algorithms.double_binary_tree import trees
from ....algorithms.tree import channel_orders, node_groups
from ..cost import PhaseList
from ..topo import NONE, Topo, group_rows, masked, vstep
from . import register
from .common import alone, ceil_div, chunks_option, partition_offsets
from .ring import channels_option
from .tree import channel_positions


@lru_cache(maxsize=64)
def _dbt_arrays(g: int) -> tuple:
    out = []
    for tree in trees(g):
        parent = np.array(tree.parent, dtype=np.int64)
        height = np.array(tree.height, dtype=np.int64)
        depth = np.array(tree.depth, dtype=np.int64)
        kids = np.full((g, 2), NONE, dtype=np.int64)
        for r, ch in enumerate(tree.children):
            for j, c in enumerate(sorted(ch, key=lambda c: tree.height[c])):
                kids[r, j] = c
        out.append((parent, height, depth, kids, int(tree.height[tree.root])))
    return tuple(out)


_DBT_ROWS: dict[tuple, np.ndarray | None] = {}


def _dbt_representatives(topo: Topo, arrays: tuple) -> np.ndarray | None:
    """For many ranks on uniform contiguous nodes: the members of one node of every kind.

    A node's kind is what each of its ranks does in both trees (heights, depths, whether its
    parent and children are on other nodes): nodes of one kind have identical signatures in
    every step, NIC sharing included, so the slowest rank of a step is among these rows.
    """
    g = topo.size
    sizes = np.bincount(topo.node)
    if g < 256 or not topo.contiguous or len(set(sizes.tolist())) != 1:
        return None
    cols = []
    for parent, height, depth, kids, _top in arrays:
        up = parent >= 0
        cols += [height, depth, up, up & (topo.node[np.where(up, parent, 0)] != topo.node)]
        for j in range(2):
            kid = kids[:, j]
            has = kid >= 0
            cols += [np.where(has, height[np.where(has, kid, 0)], -1),
                     has & (topo.node[np.where(has, kid, 0)] != topo.node)]
    per_node = int(sizes[0])
    node_cols = [np.asarray(c, dtype=np.int64).reshape(-1, per_node)[:, i]
                 for c in cols for i in range(per_node)]
    groups = group_rows(node_cols)
    if groups is None:
        return None
    first = groups[0]
    return (first[:, None] * per_node + np.arange(per_node)).reshape(-1)


def _channel_arrays(arrays: tuple, orders: list[list[int]]) -> tuple:
    """The trees of :func:`_dbt_arrays` (over positions) with member ``orders[k][i]`` at
    position ``i``, for every channel ``k``: (parent, height, depth, kids, top) per member, the
    2K (channel, tree) pairs in channel order."""
    out = []
    for at, pos in channel_positions(orders):
        for parent, height, depth, kids, top in arrays:
            p_pos, k_pos = parent[pos], kids[pos]
            out.append((np.where(p_pos >= 0, at[np.where(p_pos >= 0, p_pos, 0)], NONE),
                        height[pos], depth[pos],
                        np.where(k_pos >= 0, at[np.where(k_pos >= 0, k_pos, 0)], NONE), top))
    return tuple(out)


def _dbt(topo: Topo, n: int, s: int, k: int, copy_single: bool,
         orders: list[list[int]] | None = None) -> PhaseList:
    """The pipelined double binary tree of ``n`` elements, ``k`` chunks per half; with
    ``orders`` (several channels), channel ``c`` on part ``c`` of ``Partition(n, len(orders))``
    with its trees placed in ``orders[c]``."""
    g = topo.size
    if g == 1:
        return alone(n * s if copy_single else 0)
    out = PhaseList()
    arrays = _dbt_arrays(g)
    if orders is not None and len(orders) > 1:
        parts = Partition(n, len(orders))
        chunk = []
        for c in range(len(orders)):
            halves = partition_offsets(parts.len(c), 2)
            chunk += [ceil_div(int(halves[w + 1] - halves[w]), k) * s for w in (0, 1)]
        arrays = _channel_arrays(arrays, orders)
        rows = None
    else:
        halves = partition_offsets(n, 2)
        chunk = [ceil_div(int(halves[w + 1] - halves[w]), k) * s for w in (0, 1)]
        key = (g, topo.mult, hash(topo.node.tobytes()))
        if key not in _DBT_ROWS:
            if len(_DBT_ROWS) > 32:
                _DBT_ROWS.clear()
            _DBT_ROWS[key] = _dbt_representatives(topo, arrays)
        rows = _DBT_ROWS[key]
    if rows is not None:
        topo = Topo(topo.node, topo.mult, rows)
        arrays = tuple((parent[rows], height, depth[rows], kids[rows], top, height[rows])
                       for parent, height, depth, kids, top in arrays)
    else:
        arrays = tuple((*a, a[1]) for a in arrays)
    g = len(topo.me)
    steps = max(k + 2 * a[4] - 1 for a in arrays)
    # every event runs for k consecutive steps from a fixed offset (a child's height, the
    # node's height, top + depth, ...): steps between two offsets or offset + k are identical
    offsets = set()
    for _parent, _height, depth, _kids, top, own_h in arrays:
        offsets.update(own_h.tolist())
        offsets.update((top + depth - 1).tolist())
        offsets.update((top + depth).tolist())
    marks = sorted({0, steps} | {a for a in offsets if 0 <= a < steps}
                   | {a + k for a in offsets if 0 <= a + k < steps})
    for t, t_next in zip(marks[:-1], marks[1:]):
        sends: list = []
        recvs: list = []
        reduce = np.zeros(g, dtype=np.int64)
        for w, (parent, height, depth, kids, top, own_h) in enumerate(arrays):
            cb = chunk[w]
            for j in range(2):
                kid = kids[:, j]
                has = kid >= 0
                c = t - np.where(has, height[np.where(has, kid, 0)], 0)
                on = has & (c >= 0) & (c < k)
                recvs.append((masked(on, kid), cb))
                reduce += np.where(on, cb, 0)
            up = parent >= 0
            c_up = t - own_h
            sends.append((masked(up & (c_up >= 0) & (c_up < k), parent), cb))
            c_down = t - top - depth + 1
            recvs.append((masked(up & (c_down >= 0) & (c_down < k), parent), cb))
            c_kid = t - top - depth
            for j in range(2):
                kid = kids[:, j]
                sends.append((masked((kid >= 0) & (c_kid >= 0) & (c_kid < k), kid), cb))
        out.add(t_next - t, *vstep(topo, sends, recvs, reduce))
    return out


@register("double_binary_tree", Collective.ALLREDUCE)
def allreduce(topo: Topo, problem: Problem, s: int, in_place: bool,
              options: Mapping[str, Any]) -> PhaseList | None:
    channels = channels_option(options)
    orders = (channel_orders(problem.nranks, channels, node_groups(problem)) if channels > 1
              else None)
    return _dbt(topo, problem.count, s, chunks_option(options, problem.count), not in_place,
                orders)
