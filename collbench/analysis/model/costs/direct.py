"""Direct: every member sends to every other in one step (allreduce: its whole vector, which
each reduces; allgather: its block), and reduce-scatter as pairwise exchange (step s sends
block i+s to member i+s, p-1 steps) (``algorithms/direct.py``). Notation in
:mod:`collbench.analysis.model.costs`.

==================================  ==============  ========================  ================
collective, algorithm               α ×             β × n                     γ × n
==================================  ==============  ========================  ================
allreduce direct                    p-1             max(1, (p-1)/ports)       p-1
allgather direct                    p-1             max(1, (p-1)/ports)/p     0
reduce_scatter direct               p-1             (p-1)/p                   (p-1)/p
==================================  ==============  ========================  ================

Pairwise exchange needs a contiguous layout (else None: the model walks the schedule).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ....algorithms import Collective, Problem
from ..cost import PhaseList, Side, Sig
from ..topo import Topo, vstep
from . import register
from .common import alone


def _direct(topo: Topo, nb: int, reduce_per_msg: int, copy: int) -> PhaseList:
    """One step: every member sends ``nb`` bytes to every other member and receives ``nb``
    from each."""
    g = topo.size
    if g == 1:
        return alone(copy)
    out = PhaseList()
    sizes = np.bincount(topo.node)
    cands = []
    for size in sorted(set(sizes.tolist()) - {0}):
        intra, inter = size - 1, g - size

        side = Side(intra, nb if intra else 0, intra * nb, inter, nb if inter else 0,
                    inter * nb, size * topo.mult if inter else 0)
        cands.append(Sig(side, side, reduce_per_msg * (g - 1), copy))
    out.add(1, *cands)
    return out


def _pairwise(topo: Topo, nbytes: int, reduce: int) -> PhaseList:
    """Pairwise exchange: step s sends to i+s and receives from i-s, s = 1..g-1."""
    g = topo.size
    out = PhaseList()
    idx = np.arange(g)
    if topo.single:
        out.add(g - 1, *vstep(topo, [((idx + 1) % g, nbytes)], [((idx - 1) % g, nbytes)], reduce))
        return out
    # for a contiguous uniform layout the shifts g..p-g all cross nodes for every member
    sizes = np.bincount(topo.node)
    uniform = topo.contiguous and len(set(sizes.tolist())) == 1
    lo_hi = (int(sizes[0]), g - int(sizes[0])) if uniform else (g, 0)
    for s in range(1, g):
        if uniform and lo_hi[0] <= s <= lo_hi[1]:
            if s == lo_hi[0]:
                out.add(lo_hi[1] - lo_hi[0] + 1,
                        *vstep(topo, [((idx + s) % g, nbytes)], [((idx - s) % g, nbytes)], reduce))
            continue
        out.add(1, *vstep(topo, [((idx + s) % g, nbytes)], [((idx - s) % g, nbytes)], reduce))
    return out


@register("direct", Collective.ALLREDUCE)
def allreduce(topo: Topo, problem: Problem, s: int, in_place: bool,
              options: Mapping[str, Any]) -> PhaseList | None:
    n, g = problem.count * s, topo.size
    return _direct(topo, n, n, n if (g == 1 and not in_place) else 0)


@register("direct", Collective.ALLGATHER)
def allgather(topo: Topo, problem: Problem, s: int, in_place: bool,
              options: Mapping[str, Any]) -> PhaseList | None:
    mb = problem.count * s
    return _direct(topo, mb, 0, 0 if in_place else mb)


@register("direct", Collective.REDUCE_SCATTER)
def reduce_scatter(topo: Topo, problem: Problem, s: int, in_place: bool,
                   options: Mapping[str, Any]) -> PhaseList | None:
    nb = problem.count * s
    if topo.size == 1:
        out = PhaseList()
        if not in_place and nb:
            out.add(1, Sig(copy=nb))
        return out
    return _pairwise(topo, nb, nb) if topo.contiguous else None
