"""Binomial tree: broadcast from and reduce to the root in ⌈lg p⌉ steps, and allreduce as a
reduce to rank 0 followed by a broadcast (``algorithms/tree.py``). Notation in
:mod:`collbench.analysis.model.costs`.

==================================  ==============  ========================  ================
collective, algorithm               α ×             β × n                     γ × n
==================================  ==============  ========================  ================
allreduce tree                      2⌈lg p⌉         2⌈lg p⌉                   ⌈lg p⌉
broadcast tree                      ⌈lg p⌉          ⌈lg p⌉                    0
reduce tree                         ⌈lg p⌉          ⌈lg p⌉                    ⌈lg p⌉
==================================  ==============  ========================  ================

Channels (allreduce, ``-O channels=K``): K binomial trees in the same steps, tree ``k`` over
the member order :func:`~collbench.algorithms.tree.channel_orders` gives (position 0 its root)
on part ``k`` of the vector (``Partition(n, K)``); every rank's messages of all K trees in a
step are priced together (:func:`channel_trees`), so trees that share a link share its
bandwidth. Exact for any count (each part's own length).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ....algorithms import Collective, Problem
from ....algorithms._build import Partition, log2_ceil
from ....algorithms.tree import channel_orders, node_groups
from ..cost import PhaseList, Sig
from ..topo import Topo, masked, vstep
from . import register
from .ring import channels_option


def binomial_reduce(topo: Topo, root: int, nb: int) -> list[tuple[Sig, ...]]:
    g = topo.size
    idx = np.arange(g)
    v = (idx - root) % g
    steps = []
    m = 1
    while m < g:
        active = v % m == 0
        sender = active & ((v & m) != 0)
        receiver = active & ((v & m) == 0) & (v + m < g)
        steps.append(vstep(topo, [(masked(sender, (v - m + root) % g), nb)],
                           [(masked(receiver, (v + m + root) % g), nb)],
                           np.where(receiver, nb, 0)))
        m *= 2
    return steps


def binomial_bcast(topo: Topo, root: int, nb: int, root_copy: int) -> list[tuple[Sig, ...]]:
    g = topo.size
    levels = log2_ceil(g)
    idx = np.arange(g)
    v = (idx - root) % g
    steps = []
    for t in range(levels):
        m = 1 << (levels - 1 - t)   # distance used in step t
        # v receives in step levels - bitlen(lowbit(v)); sends to v+m when m < lowbit(v) (root: any)
        low = np.where(v == 0, 1 << levels, v & -v)
        sender = (m < low) & (v + m < g)
        receiver = (v != 0) & (low == m)
        copy = np.where(v == 0, root_copy, 0) if t == 0 else 0
        steps.append(vstep(topo, [(masked(sender, (v + m + root) % g), nb)],
                           [(masked(receiver, (v - m + root) % g), nb)], 0, copy))
    if not levels and root_copy:
        steps.append((Sig(copy=root_copy),))
    return steps


def channel_positions(orders: list[list[int]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(member at each position, position of each member) of every channel's order."""
    out = []
    for order in orders:
        at = np.asarray(order, dtype=np.int64)
        pos = np.empty_like(at)
        pos[at] = np.arange(len(at), dtype=np.int64)
        out.append((at, pos))
    return out


def channel_trees(topo: Topo, orders: list[list[int]], nbytes: list[int]
                  ) -> list[tuple[Sig, ...]]:
    """Binomial reduce to position 0 then broadcast from it, on every channel at once: tree
    ``k`` over ``orders[k]`` moves ``nbytes[k]`` per message, every channel in the same steps
    (``algorithms/tree.py`` ``allreduce_core`` with channels)."""
    g = topo.size
    levels = log2_ceil(g)
    maps = channel_positions(orders)
    steps = []
    m = 1
    while m < g:     # reduce: position v sends to v - m when bit m is its lowest set bit
        sends, recvs = [], []
        reduce = np.zeros(g, dtype=np.int64)
        for (at, pos), nb in zip(maps, nbytes):
            v = pos
            active = v % m == 0
            sender = active & ((v & m) != 0)
            receiver = active & ((v & m) == 0) & (v + m < g)
            sends.append((masked(sender, at[np.where(sender, v - m, 0)]), nb))
            recvs.append((masked(receiver, at[np.where(receiver, v + m, 0)]), nb))
            reduce += np.where(receiver, nb, 0)
        steps.append(vstep(topo, sends, recvs, reduce))
        m *= 2
    for t in range(levels):   # broadcast: binomial_bcast's pattern on every channel
        m = 1 << (levels - 1 - t)
        sends, recvs = [], []
        for (at, pos), nb in zip(maps, nbytes):
            v = pos
            low = np.where(v == 0, 1 << levels, v & -v)
            sender = (m < low) & (v + m < g)
            receiver = (v != 0) & (low == m)
            sends.append((masked(sender, at[np.where(sender, v + m, 0)]), nb))
            recvs.append((masked(receiver, at[np.where(receiver, v - m, 0)]), nb))
        steps.append(vstep(topo, sends, recvs))
    return steps


@register("tree", Collective.ALLREDUCE)
def allreduce(topo: Topo, problem: Problem, s: int, in_place: bool,
              options: Mapping[str, Any]) -> PhaseList | None:
    nb = problem.count * s
    out = PhaseList()
    if topo.size == 1:
        if not in_place and nb:
            out.add(1, Sig(copy=nb))
        return out
    channels = channels_option(options)
    if channels > 1:
        parts = Partition(problem.count, channels)
        orders = channel_orders(problem.nranks, channels, node_groups(problem))
        steps = channel_trees(topo, orders, [parts.len(k) * s for k in range(channels)])
    else:
        steps = binomial_reduce(topo, 0, nb) + binomial_bcast(topo, 0, nb, 0)
    for sigs in steps:
        out.add(1, *sigs)
    return out


@register("tree", Collective.BROADCAST, Collective.REDUCE)
def rooted(topo: Topo, problem: Problem, s: int, in_place: bool,
           options: Mapping[str, Any]) -> PhaseList | None:
    """Binomial broadcast or reduce from the root."""
    copy = 0 if in_place else problem.count * s
    out = PhaseList()
    if problem.nranks == 1:
        out.add(1, Sig(copy=copy))
        return out
    nb = problem.count * s
    steps = (binomial_bcast(topo, problem.root, nb, copy)
             if problem.collective is Collective.BROADCAST
             else binomial_reduce(topo, problem.root, nb))
    for sigs in steps:
        out.add(1, *sigs)
    return out
