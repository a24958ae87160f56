"""Closed form of the two-level (hierarchical) algorithms: phases of the inner (intra-node)
and outer (inter-node) algorithms, composed.

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
"""

from __future__ import annotations

from typing import Any, Mapping

from ...algorithms import Collective, Problem
from ...algorithms.hierarchical import resolve_levels
from .closed import PhaseList, Sig, ag_core, ar_core, own_nodes, rs_core, single_node
from .cost import Phase


def blocked_shape(problem: Problem) -> tuple[int, int] | None:
    """(nodes, ranks per node) when the layout is uniform and numbered node by node."""
    nodes = problem.nodes.nodes
    g = len(nodes[0])
    for k, members in enumerate(nodes):
        if tuple(members) != tuple(range(k * g, (k + 1) * g)):
            return None
    return len(nodes), g


def hierarchical_phases(problem: Problem, s: int, in_place: bool,
                        options: Mapping[str, Any]) -> list[Phase] | None:
    # closed forms exist for these three; any other collective (e.g. a newly registered
    # alltoall) is walked, not looked up in tables that do not know it
    if problem.collective not in (Collective.ALLREDUCE, Collective.ALLGATHER,
                                  Collective.REDUCE_SCATTER):
        return None
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
    if coll is Collective.ALLREDUCE:
        shard = -(-c // g)
        if g > 1:
            parts.append(rs_core(inner_rs, single_node(g), shard, s, 0))
        parts.append(ar_core(outer, own_nodes(P, g), shard, s, g == 1 and not in_place, outer_opts))
        if g > 1:
            parts.append(ag_core(inner_ag, single_node(g), shard * s, 0))
    elif coll is Collective.ALLGATHER:
        mb = c * s
        packed = g > 1 and P > 1     # a blocked layout is in packed order only then
        # own block: into the packed scratch (always a copy), or into the output (none in place)
        parts.append(ag_core(outer, own_nodes(P, g), mb, mb if packed or not in_place else 0))
        if g > 1:
            parts.append(ag_core(inner_ag, single_node(g), P * mb, 0))
        if packed:
            unpack = PhaseList()
            unpack.add(1, Sig(copy=problem.nranks * mb))
            parts.append(unpack)
    elif coll is Collective.REDUCE_SCATTER:
        p = problem.nranks
        if g > 1 and P > 1:
            out.add(1, Sig(copy=p * c * s))         # pack the input by local index
        if P == 1:
            parts.append(rs_core(inner_rs, single_node(g), c, s, 0 if in_place else c * s))
        else:
            if g > 1:
                parts.append(rs_core(inner_rs, single_node(g), P * c, s, 0))
            parts.append(rs_core(outer, own_nodes(P, g), c, s, 0 if in_place else c * s))
    else:
        return None
    for part in parts:
        if part is None:
            return None
        # phases of consecutive parts are separate steps even when their signatures match
        for phase in part.phases:
            out.phases.append(phase)
    return out.phases
