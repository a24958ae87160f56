"""Which closed form costs which algorithm: one table keyed by (algorithm, collective).

The formulas themselves live by family in :mod:`.closed` (ring, recursive doubling/halving,
trees, direct, Bruck, chains), :mod:`.hierarchical` (compositions of those) and
:mod:`.traffic` (costs an algorithm registered beside its generator, e.g. alltoall). This module
only looks them up, so adding a closed form is one table entry, and no formula module needs to
import another's dispatcher (``closed`` no longer imports ``hierarchical``: no cycle).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from ...algorithms import Collective, Problem
from ...algorithms.registry import get_algorithm
from .closed import (
    PhaseList,
    Sig,
    Topo,
    ag_core,
    ar_core,
    binomial_bcast,
    binomial_reduce,
    ceil_div,
    chain,
    channels_option,
    chunks_option,
    ring_channel_phases,
    rs_core,
    topo_of,
)
from .cost import Phase
from .hierarchical import hierarchical_phases
from .traffic import has_registered_cost, registered_phases

#: form(topo, problem, itemsize, in_place, options) -> phases, or None where it does not apply
Form = Callable[[Topo, Problem, int, bool, Mapping[str, Any]], "PhaseList | None"]

A, G, RS = Collective.ALLREDUCE, Collective.ALLGATHER, Collective.REDUCE_SCATTER
B, R = Collective.BROADCAST, Collective.REDUCE


def _allreduce(name: str) -> Form:
    return lambda topo, pr, s, in_place, opts: ar_core(name, topo, pr.count, s, not in_place, opts)


def _allgather(name: str) -> Form:
    return lambda topo, pr, s, in_place, opts: ag_core(name, topo, pr.count * s,
                                                      0 if in_place else pr.count * s)


def _reduce_scatter(name: str) -> Form:
    return lambda topo, pr, s, in_place, opts: rs_core(name, topo, pr.count, s,
                                                      0 if in_place else pr.count * s)


def _single_rank(copy: int) -> PhaseList:
    out = PhaseList()
    out.add(1, Sig(copy=copy))
    return out


def _binomial_tree(topo: Topo, pr: Problem, s: int, in_place: bool, opts: Mapping[str, Any]) -> PhaseList:
    """Binomial broadcast or reduce from the root."""
    copy = 0 if in_place else pr.count * s
    if pr.nranks == 1:
        return _single_rank(copy)
    out = PhaseList()
    steps = (binomial_bcast(topo, pr.root, pr.count * s, copy) if pr.collective is B
             else binomial_reduce(topo, pr.root, pr.count * s))
    for sigs in steps:
        out.add(1, *sigs)
    return out


def _pipelined_chain(topo: Topo, pr: Problem, s: int, in_place: bool,
                     opts: Mapping[str, Any]) -> PhaseList | None:
    """Ring broadcast/reduce: a chain from the root, pipelined in chunks."""
    copy = 0 if in_place else pr.count * s
    if pr.nranks == 1:
        return _single_rank(copy)
    if not (topo.single or topo.contiguous):
        return None  # no closed form: the model walks the schedule
    k = chunks_option(opts, pr.count)
    return chain(topo, pr.root, k, ceil_div(pr.count, k) * s, pr.collective is R,
                 copy if pr.collective is B else 0)


FORMS: dict[tuple[str, Collective], Form] = {
    **{(name, A): _allreduce(name) for name in ("ring", "recursive_doubling", "rabenseifner", "tree",
                                                "double_binary_tree", "direct")},
    **{(name, G): _allgather(name) for name in ("ring", "direct", "recursive_doubling", "bruck")},
    **{(name, RS): _reduce_scatter(name) for name in ("ring", "direct", "recursive_halving")},
    ("tree", B): _binomial_tree, ("tree", R): _binomial_tree,
    ("ring", B): _pipelined_chain, ("ring", R): _pipelined_chain,
}


def phases(algorithm: str, problem: Problem, itemsize: int, in_place: bool = False,
           options: Mapping[str, Any] | None = None, topo: Topo | None = None) -> list[Phase] | None:
    """The closed-form phases of ``algorithm`` on ``problem``, or None where none applies (the
    model then walks the schedule)."""
    name = get_algorithm(algorithm).name
    if has_registered_cost(name, problem):  # costs registered beside the generator
        return registered_phases(name, problem, itemsize, in_place, options, topo)
    opts = dict(options or {})
    if name == "hierarchical":  # a composition of the flat forms, per level
        return hierarchical_phases(problem, itemsize, in_place, opts)
    topo = topo if topo is not None else topo_of(problem.layout, problem.nranks)
    if name == "ring" and problem.collective in (A, G, RS) and channels_option(opts) > 1:
        result = ring_channel_phases(problem, itemsize, in_place, channels_option(opts), topo)
    else:
        form = FORMS.get((name, problem.collective))
        result = form(topo, problem, itemsize, in_place, opts) if form else None
    return None if result is None else result.phases
