"""Recursive halving: Rabenseifner's allreduce (recursive-halving reduce-scatter, then
recursive-doubling allgather of the reduced blocks) and the recursive-halving reduce-scatter,
MPICH's fold for non-powers of two (``algorithms/halving_doubling.py``). Notation in
:mod:`collbench.analysis.model.costs`.

==================================  ==============  ========================  ================
collective, algorithm               α ×             β × n                     γ × n
==================================  ==============  ========================  ================
allreduce rabenseifner              2 lg p' [+2]    2(p'-1)/p' [+2]           (p'-1)/p' [+1]
reduce_scatter recursive_halving    lg p' [+2]      (p'-1+s)/p [+(p+1)/p]     (p'-1+s)/p [+1]
==================================  ==============  ========================  ================
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ....algorithms import Collective, Problem
from ....algorithms._build import Fold
from ..cost import PhaseList, Sig
from ..topo import NONE, Topo, vstep
from . import register
from .common import alone, fold_arrays, fold_in, fold_out, partition_offsets


def _halving(topo: Topo, f: Fold, offs: np.ndarray, s: int) -> PhaseList:
    """The power-of-two part of recursive halving over new ranks: level k exchanges ranges of
    ``pof2 >> (k+1)`` new blocks (boundaries ``offs`` in elements)."""
    g = topo.size
    out = PhaseList()
    levels = f.pof2.bit_length() - 1
    survivors, nr, _ = fold_arrays(f, g)
    alive = nr >= 0
    nra = np.where(alive, nr, 0)
    for k in range(levels):
        size = f.pof2 >> (k + 1)
        keep_lo = nra & ~(size - 1)
        give_lo = (nra ^ size) & ~(size - 1)
        keep = (offs[keep_lo + size] - offs[keep_lo]) * s
        give = (offs[give_lo + size] - offs[give_lo]) * s
        partner = np.where(alive, survivors[nra ^ (1 << (levels - 1 - k))], NONE)
        out.add(1, *vstep(topo, [(partner, np.where(alive, give, 0))],
                          [(partner, np.where(alive, keep, 0))], np.where(alive, keep, 0)))
    return out


def _doubling_ag(topo: Topo, f: Fold, offs: np.ndarray, s: int) -> PhaseList:
    """The power-of-two part of recursive-doubling allgather: level k exchanges 2^k new blocks."""
    g = topo.size
    out = PhaseList()
    survivors, nr, _ = fold_arrays(f, g)
    alive = nr >= 0
    nra = np.where(alive, nr, 0)
    for k in range(f.pof2.bit_length() - 1):
        m = 1 << k
        mine_lo = nra & ~(m - 1)
        theirs_lo = mine_lo ^ m
        mine = (offs[mine_lo + m] - offs[mine_lo]) * s
        theirs = (offs[theirs_lo + m] - offs[theirs_lo]) * s
        partner = np.where(alive, survivors[nra ^ m], NONE)
        out.add(1, *vstep(topo, [(partner, np.where(alive, mine, 0))],
                          [(partner, np.where(alive, theirs, 0))]))
    return out


def _rabenseifner(topo: Topo, n: int, s: int, copy_single: bool) -> PhaseList:
    g = topo.size
    if g == 1:
        return alone(n * s if copy_single else 0)
    out = PhaseList()
    f = Fold.of(g)
    nb = n * s
    if f.rem:
        out.add(1, *fold_in(topo, f, nb))
    offs = partition_offsets(n, f.pof2)
    out.extend(_halving(topo, f, offs, s).phases)
    out.extend(_doubling_ag(topo, f, offs, s).phases)
    if f.rem:
        out.add(1, *fold_out(topo, f, nb))
    return out


def _recursive_halving_rs(topo: Topo, c: int, s: int) -> PhaseList:
    """Recursive-halving reduce_scatter of p blocks of c elements (fold, results sent back)."""
    g = topo.size
    out = PhaseList()
    if g == 1:
        return out
    f = Fold.of(g)
    n = c * g
    nb = n * s
    if f.rem:
        out.add(1, *fold_in(topo, f, nb))
    offs = fold_arrays(f, g)[2] * c
    out.extend(_halving(topo, f, offs, s).phases)
    if f.rem:
        out.add(1, *fold_out(topo, f, c * s))
    return out


@register("rabenseifner", Collective.ALLREDUCE)
def allreduce(topo: Topo, problem: Problem, s: int, in_place: bool,
              options: Mapping[str, Any]) -> PhaseList | None:
    return _rabenseifner(topo, problem.count, s, not in_place)


@register("recursive_halving", Collective.REDUCE_SCATTER)
def reduce_scatter(topo: Topo, problem: Problem, s: int, in_place: bool,
                   options: Mapping[str, Any]) -> PhaseList | None:
    if topo.size == 1:
        out = PhaseList()
        if not in_place and problem.count * s:
            out.add(1, Sig(copy=problem.count * s))
        return out
    return _recursive_halving_rs(topo, problem.count, s)
