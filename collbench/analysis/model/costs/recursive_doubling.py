"""Recursive doubling: allreduce exchanging whole vectors with rank xor 2^k, and allgather
exchanging the blocks gathered so far, lg p' steps; MPICH's fold for non-powers of two (an
extra step before and after) (``algorithms/recursive_doubling.py``). Notation in
:mod:`collbench.analysis.model.costs`.

==================================  ==============  ========================  ================
collective, algorithm               α ×             β × n                     γ × n
==================================  ==============  ========================  ================
allreduce recursive_doubling        lg p' [+2]      lg p' [+2]                lg p' [+1]
allgather recursive_doubling        lg p' [+2]      (p'-1+s)/p [+(p+1)/p]     0
==================================  ==============  ========================  ================
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ....algorithms import Collective, Problem
from ....algorithms._build import Fold
from ..cost import PhaseList
from ..topo import NONE, Topo, vstep
from . import register
from .common import alone, fold_arrays, fold_in, fold_out


def _rd_allreduce(topo: Topo, n: int, s: int, copy_single: bool) -> PhaseList:
    """Recursive doubling allreduce of n elements (MPICH fold for non-powers of two)."""
    g = topo.size
    nb = n * s
    if g == 1:
        return alone(nb if copy_single else 0)
    out = PhaseList()
    f = Fold.of(g)
    if f.rem:
        out.add(1, *fold_in(topo, f, nb))
    survivors, newrank, _ = fold_arrays(f, g)
    alive = newrank >= 0
    for k in range(f.pof2.bit_length() - 1):
        partner = np.where(alive, survivors[np.where(alive, newrank ^ (1 << k), 0)], NONE)
        out.add(1, *vstep(topo, [(partner, nb)], [(partner, nb)], np.where(alive, nb, 0)))
    if f.rem:
        out.add(1, *fold_out(topo, f, nb))
    return out


def _rd_allgather(topo: Topo, mb: int, own_copy: int) -> PhaseList:
    """Recursive-doubling allgather of one block of ``mb`` bytes per member (fold for
    non-powers of two). A member whose data is still at its own input sends it from there and
    copies it into place (``own_copy`` bytes) the first time it sends."""
    g = topo.size
    if g == 1:
        return alone(own_copy)
    out = PhaseList()
    f = Fold.of(g)
    idx = np.arange(g)
    if f.rem:
        out.add(1, *fold_in(topo, f, mb, reduce=False, copy=own_copy))
    survivors, nr, bound = fold_arrays(f, g)
    alive = nr >= 0
    nra = np.where(alive, nr, 0)
    pending = alive & (idx >= 2 * f.rem)    # survivors that did not fold: own data unplaced
    for k in range(f.pof2.bit_length() - 1):
        m = 1 << k
        mine_lo = nra & ~(m - 1)
        theirs_lo = mine_lo ^ m
        mine = bound[mine_lo + m] - bound[mine_lo]
        theirs = bound[theirs_lo + m] - bound[theirs_lo]
        partner = np.where(alive, survivors[nra ^ m], NONE)
        copy = np.where(pending, own_copy, 0) if k == 0 else 0
        out.add(1, *vstep(topo, [(partner, np.where(alive, mine * mb, 0))],
                          [(partner, np.where(alive, theirs * mb, 0))], 0, copy))
    if f.rem:
        total = g * mb
        out.add(1, *fold_out(topo, f, total))
    return out


@register("recursive_doubling", Collective.ALLREDUCE)
def allreduce(topo: Topo, problem: Problem, s: int, in_place: bool,
              options: Mapping[str, Any]) -> PhaseList | None:
    return _rd_allreduce(topo, problem.count, s, not in_place)


@register("recursive_doubling", Collective.ALLGATHER)
def allgather(topo: Topo, problem: Problem, s: int, in_place: bool,
              options: Mapping[str, Any]) -> PhaseList | None:
    mb = problem.count * s
    return _rd_allgather(topo, mb, 0 if in_place else mb)
