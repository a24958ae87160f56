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
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ....algorithms import Collective, Problem
from ....algorithms._build import log2_ceil
from ..cost import PhaseList, Sig
from ..topo import Topo, masked, vstep
from . import register


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


@register("tree", Collective.ALLREDUCE)
def allreduce(topo: Topo, problem: Problem, s: int, in_place: bool,
              options: Mapping[str, Any]) -> PhaseList | None:
    nb = problem.count * s
    out = PhaseList()
    if topo.size == 1:
        if not in_place and nb:
            out.add(1, Sig(copy=nb))
        return out
    for sigs in binomial_reduce(topo, 0, nb) + binomial_bcast(topo, 0, nb, 0):
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
