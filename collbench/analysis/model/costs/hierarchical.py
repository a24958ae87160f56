"""Closed form of the two-level (hierarchical) algorithms: the registered forms of the inner
(intra-node) and outer (inter-node) algorithms, looked up by name and composed.

For P nodes of g ranks numbered node by node (a *blocked* layout):

* allreduce  = inner reduce-scatter over g (blocks of n/g) + outer allreduce of the n/g shard
  over P nodes + inner allgather over g;
* allgather  = outer allgather of one block per node + inner allgather of P blocks per rank,
  both on the local-index-major packed vector in scratch (every range one message), + a step
  that unpacks it into the output (a copy of the whole output; none when g = 1 or P = 1,
  where the packed order is the rank order);
* reduce_scatter = a packing copy of the input (local-index-major) + inner reduce-scatter over
  g (blocks of P·n/p) + outer reduce-scatter over P (blocks of n/p).

In the outer phase the g ranks of a node play the same role in g parallel groups at the same
time, so their inter-node messages share the node's NICs (``Topo.mult = g``): with k NICs each
rank gets ``B_nic · min(1, k/g)`` -- Perlmutter's 4 NICs for 4 GPUs give every GPU its own, Delta's
one NIC is shared four ways. Other layouts (round robin) fall back to walking the schedule.

With default options the rows are sums of the flat rows (each family module's table), each
evaluated at (ranks, bytes) -- the outer algorithm's g groups share each node's NICs, which the
formulas leave out; on a blocked layout allgather also unpacks its packed vector with one copy
of the output, and reduce_scatter packs its input with one copy (tests/analysis check them):

==================================  ==========================================================
hierarchical allreduce              reduce_scatter ring (g, n) + allreduce recursive_doubling
                                    (P, n/g) + allgather ring (g, n)
hierarchical allgather              allgather recursive_doubling (P, n/g) + allgather ring (g, n)
hierarchical reduce_scatter         reduce_scatter ring (g, n) + reduce_scatter
                                    recursive_halving (P, n/g)
==================================  ==========================================================

The alltoall hierarchical algorithm registers its own cost beside its generator
(``algorithms/alltoall.py``) and is priced by :mod:`collbench.analysis.model.traffic`.
"""

from __future__ import annotations

from typing import Any, Mapping

from ....algorithms import Collective, Problem
from ....algorithms.hierarchical import resolve_levels
from ..cost import PhaseList, Sig
from ..topo import Topo, own_nodes, single_node
from . import (
    bruck,
    direct,
    double_binary_tree,
    halving_doubling,
    lookup,
    recursive_doubling,
    register,
    ring,
    tree,
)

# the level algorithms: importing them registers the forms this module looks up
LEVELS = (bruck, direct, double_binary_tree, halving_doubling, recursive_doubling, ring, tree)

A, G, RS = Collective.ALLREDUCE, Collective.ALLGATHER, Collective.REDUCE_SCATTER


def blocked_shape(problem: Problem) -> tuple[int, int] | None:
    """(nodes, ranks per node) when the layout is uniform and numbered node by node."""
    nodes = problem.nodes.nodes
    g = len(nodes[0])
    for k, members in enumerate(nodes):
        if tuple(members) != tuple(range(k * g, (k + 1) * g)):
            return None
    return len(nodes), g


def _level(algorithm: str, collective: Collective, topo: Topo, count: int, s: int,
           in_place: bool, options: Mapping[str, Any]) -> PhaseList | None:
    """One level: ``algorithm``'s registered form over the members of ``topo``."""
    form = lookup(algorithm, collective)
    if form is None:
        return None
    return form(topo, Problem(collective, topo.size, count), s, in_place, options)


@register("hierarchical", A, G, RS)
def hierarchical(topo: Topo, problem: Problem, s: int, in_place: bool,
                 options: Mapping[str, Any]) -> PhaseList | None:
    """The two levels composed (``topo`` is not used: each level has its own)."""
    shape = blocked_shape(problem)
    if shape is None:
        return None
    P, g = shape
    try:
        inner_rs, inner_ag, outer = resolve_levels(problem, options)
    except ValueError:
        return None
    outer_opts = options.get("outer_options") or {}
    c = problem.count
    out = PhaseList()
    parts: list[PhaseList | None] = []
    coll = problem.collective
    if coll is A:
        shard = -(-c // g)
        if g > 1:
            parts.append(_level(inner_rs, RS, single_node(g), shard, s, True, {}))
        parts.append(_level(outer, A, own_nodes(P, g), shard, s, not (g == 1 and not in_place),
                            outer_opts))
        if g > 1:
            parts.append(_level(inner_ag, G, single_node(g), shard, s, True, {}))
    elif coll is G:
        packed = g > 1 and P > 1     # a blocked layout is in packed order only then
        # own block: into the packed scratch (always a copy), or into the output (none in place)
        parts.append(_level(outer, G, own_nodes(P, g), c, s, not (packed or not in_place),
                            outer_opts))
        if g > 1:
            parts.append(_level(inner_ag, G, single_node(g), P * c, s, True, {}))
        if packed:
            unpack = PhaseList()
            unpack.add(1, Sig(copy=problem.nranks * c * s))
            parts.append(unpack)
    else:
        p = problem.nranks
        if g > 1 and P > 1:
            out.add(1, Sig(copy=p * c * s))         # pack the input by local index
        if P == 1:
            parts.append(_level(inner_rs, RS, single_node(g), c, s, in_place, {}))
        else:
            if g > 1:
                parts.append(_level(inner_rs, RS, single_node(g), P * c, s, True, {}))
            parts.append(_level(outer, RS, own_nodes(P, g), c, s, in_place, outer_opts))
    for part in parts:
        if part is None:
            return None
        # phases of consecutive parts are separate steps even when their signatures match
        out.phases.extend(part.phases)
    return out
