"""The closed-form cost of an algorithm: looked up by (algorithm, collective), never by an
if-chain on names.

Two registries answer, in this order:

1. the algorithm registry (``algorithms/registry.py``): an algorithm that registered a
   model-neutral cost beside its generator (``cost=``, e.g. every alltoall) is priced by
   :mod:`.traffic`;
2. the model's own table (:mod:`.costs`): closed forms by family in :mod:`.costs.ring`,
   :mod:`.costs.recursive_doubling`, :mod:`.costs.halving_doubling`, :mod:`.costs.tree`,
   :mod:`.costs.double_binary_tree`, :mod:`.costs.direct`, :mod:`.costs.bruck` and
   :mod:`.costs.hierarchical` (compositions of the others), each registered with
   :func:`.costs.register`.

Neither answering (a user-registered algorithm with no cost, or a form that does not apply to
the layout) gives None: callers then walk the schedule (:mod:`.walk`). tests/analysis hold the
two registries to each other: every (algorithm, collective) the algorithm registry implements
has exactly one cost, and the model's table costs nothing the registry lacks.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from ...algorithms import Layout, Problem
from ...algorithms.registry import get_algorithm
from .cost import Phase
from .costs import (
    bruck,
    direct,
    double_binary_tree,
    halving_doubling,
    hierarchical,
    lookup,
    recursive_doubling,
    ring,
    tree,
)
from .topo import Topo, topo_of
from .traffic import has_registered_cost, registered_phases

#: the family modules, imported for their registrations (adding a family: one more here)
FAMILIES = (ring, recursive_doubling, halving_doubling, tree, double_binary_tree, direct, bruck,
            hierarchical)


def phases(algorithm: str, problem: Problem, itemsize: int, in_place: bool = False,
           options: Mapping[str, Any] | None = None, topo: Topo | None = None) -> list[Phase] | None:
    """The closed-form phases of ``algorithm`` on ``problem``, or None where none applies (the
    model then walks the schedule). ``topo``: the problem's :func:`~.topo.topo_of`, when the
    caller has it cached."""
    name = get_algorithm(algorithm).name
    if has_registered_cost(name, problem):  # costs registered beside the generator
        return registered_phases(name, problem, itemsize, in_place, options, topo)
    form = lookup(name, problem.collective)
    if form is None:
        return None
    topo = topo if topo is not None else topo_of(problem.layout, problem.nranks)
    result = form(topo, problem, itemsize, in_place, dict(options or {}))
    return None if result is None else result.phases


def regular_count(nranks: int, layout: Layout | None = None, chunks: int = 1) -> int:
    """The smallest element count that splits evenly at every level of every algorithm for
    ``nranks`` ranks (and the hierarchical algorithm's ``layout``), with ``chunks`` pipeline
    chunks; multiply it by anything to get more."""
    pof2 = 1 << (nranks.bit_length() - 1)
    base = math.lcm(nranks, pof2, 2 * chunks)
    if layout is not None:
        g = len(layout.nodes[0])
        P = len(layout.nodes)
        base = math.lcm(base, g * (1 << (P.bit_length() - 1)) * P, g * 2 * chunks,
                        g * (1 << (g.bit_length() - 1)))
    return base
