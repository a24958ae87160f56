"""Bruck allgather through a rotated scratch copy: ⌈lg p⌉ steps and messages for any p
(``algorithms/bruck.py``). Notation in :mod:`collbench.analysis.model.costs`.

==================================  ==============  ========================  ================
collective, algorithm               α ×             β × n                     γ × n
==================================  ==============  ========================  ================
allgather bruck                     ⌈lg p⌉          (p-1)/p                   0
==================================  ==============  ========================  ================
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ....algorithms import Collective, Problem
from ....algorithms._build import log2_ceil
from ..cost import PhaseList
from ..topo import Topo, vstep
from . import register
from .common import alone


def _bruck(topo: Topo, mb: int, own_copy: int) -> PhaseList:
    """Bruck allgather of one block of ``mb`` bytes per member through a rotated buffer: step
    k sends one range of min(2^k, g - 2^k) blocks to member i - 2^k. Local copies: the own
    block into its place (``own_copy``) and, when a later step sends it, into the rotated
    buffer, in the first step; the inverse rotation of the g - 1 other blocks in the last."""
    g = topo.size
    if g == 1:
        return alone(own_copy)
    out = PhaseList()
    idx = np.arange(g)
    steps = log2_ceil(g)
    for k in range(steps):
        d = 1 << k
        nb = min(d, g - d) * mb
        copy = (own_copy + (mb if steps > 1 else 0)) if k == 0 else 0
        if k == steps - 1:
            copy += (g - 1) * mb
        out.add(1, *vstep(topo, [((idx - d) % g, nb)], [((idx + d) % g, nb)], 0, copy))
    return out


@register("bruck", Collective.ALLGATHER)
def allgather(topo: Topo, problem: Problem, s: int, in_place: bool,
              options: Mapping[str, Any]) -> PhaseList | None:
    mb = problem.count * s
    return _bruck(topo, mb, 0 if in_place else mb)
