"""Closed-form costs, one module per algorithm family, registered by (algorithm, collective).

Every family module (:mod:`.ring`, :mod:`.recursive_doubling`, :mod:`.halving_doubling`,
:mod:`.tree`, :mod:`.double_binary_tree`, :mod:`.direct`, :mod:`.bruck`, :mod:`.hierarchical`)
registers its forms with :func:`register`; :func:`collbench.analysis.model.forms.phases` looks
them up by the algorithm's canonical name and the collective, never by comparing names. A form
returns the algorithm's *phases* (a step, or a run of identical steps, with the signatures of
the ranks that can be slowest in it), built from formulas for the step count and the bytes
each rank sends, receives, reduces and copies -- never from the schedule. Evaluating the phases
under a :class:`~..cost.Machine` gives the time. Algorithms that register a model-neutral cost
beside their generator (``cost=`` in ``algorithms/registry.py``, e.g. every alltoall) are priced
by :mod:`..traffic` instead and have no entry here.

Each family module's docstring holds its rows of the cost table: the textbook formulas that
the phases sum to for p >= 2 ranks on one node (one link class, a rank drives ``ports`` links
at once, no NIC sharing; local copies, the δ term, left out). The time is the α column times α
plus the β column times nβ plus the γ column times nγ, where n is the bytes of the largest
buffer (allgather's output, reduce_scatter's input, the vector otherwise).
tests/analysis/test_cost_tables.py parses every row and checks it against the code, and checks
that every registered form of a flat algorithm has a row.

Notation: p' = 2^⌊lg p⌋ and r = p - p'; ``[+x]`` is added only when p ≠ p' (MPICH's fold, an
extra step before and after); s = Σ_{j < lg p'} min(2^j, r) counts the blocks by which the
fold's doubled new ranks make each level's largest range longer; k is the pipeline chunks;
H the height of the taller tree of the double binary tree, whose m is the messages of the
busiest side summed over its steps (each one chunk of n/(2k); k + 2H - 1 <= m <= 4(k + 2H - 1))
and m_r <= m the chunks the busiest rank reduces, both set by the trees' shape.

Thakur, Rabenseifner & Gropp 2005 (MPICH's algorithms and their costs), Chan et al. 2007
(lower bounds, bucket/MST building blocks), Sanders, Speck & Träff 2009 (two-tree pipelining),
Bruck et al. 1997 (the rotated allgather); the non-power-of-two fold is MPICH's.

Link classes: which messages cross nodes (and how many ranks of a node use the NICs at once)
follows from the layout (:mod:`..topo`). For the logarithmic algorithms it is computed with a
vectorized pass over the ranks of each step's pattern (O(p) per step, any layout); for the
linear ones (ring, pairwise, chain, direct) from the pattern's invariance, which needs a
*contiguous* layout (each node a block of consecutive ranks, as Slurm's block distribution and
``--ranks-per-node`` give). A form returns None where it does not apply (other layouts for
those algorithms, hierarchical on a layout that is not blocked); with no form at all
(user-registered algorithms) callers walk the schedule (:mod:`..walk`).

Exactness: with a *regular* count -- one that splits evenly at every level (see
:func:`~..forms.regular_count`) -- the phases give exactly the schedule walk's cost
(tests/analysis check every algorithm for p = 1..64). Otherwise the linear algorithms charge
every message the largest block (an upper bound, at most one element per message too high) and
the logarithmic ones stay exact; counts smaller than the number of blocks (empty messages,
which schedules drop) are the one case where a closed form can be far off, and only at a few
bytes.

This package imports no family module: :mod:`..forms` imports them all (so the table is full
whenever :func:`~..forms.phases` runs), and :mod:`.hierarchical` imports the ones it composes.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from ....algorithms import Collective, Problem
from ..cost import PhaseList
from ..topo import Topo

#: form(topo, problem, itemsize, in_place, options) -> phases, or None where it does not apply
Form = Callable[[Topo, Problem, int, bool, Mapping[str, Any]], "PhaseList | None"]

#: (algorithm, collective) -> form, filled by the family modules
_FORMS: dict[tuple[str, Collective], Form] = {}

#: (algorithm, collective) pairs costed here that the algorithm registry intentionally does not
#: implement (none today); tests/analysis hold the two registries to each other otherwise
MODEL_ONLY: frozenset[tuple[str, Collective]] = frozenset()


def register(algorithm: str, *collectives: Collective) -> Callable[[Form], Form]:
    """Decorator: ``form`` is the closed form of ``algorithm`` (its canonical registry name)
    for each of ``collectives``.

    Raises:
        ValueError: A form is already registered for one of the pairs.
    """
    def add(form: Form) -> Form:
        for coll in collectives:
            key = (algorithm, coll)
            if key in _FORMS:
                raise ValueError(f"a closed form of {algorithm} {coll.value} is already "
                                 f"registered ({_FORMS[key].__module__})")
            _FORMS[key] = form
        return form
    return add


def lookup(algorithm: str, collective: Collective) -> Form | None:
    """The form registered for (canonical ``algorithm``, ``collective``), or None."""
    return _FORMS.get((algorithm, collective))


def registered() -> dict[tuple[str, Collective], Form]:
    """Every registered (algorithm, collective) -> form (a copy)."""
    return dict(_FORMS)
