"""The model's cost table and the algorithm registry agree (issue 12, item 6).

Every (algorithm, collective) the algorithm registry implements has exactly one cost: a
model-neutral cost registered beside its generator (``cost=``, priced by
:mod:`collbench.analysis.model.traffic`) or a closed form registered by a family module of
:mod:`collbench.analysis.model.costs` -- never both, so which one prices it is never a matter of
lookup order. And the model's table holds nothing the registry lacks, except the pairs listed
in ``MODEL_ONLY``.
"""

from __future__ import annotations

import pytest

from collbench.algorithms import Collective, Problem
from collbench.algorithms.registry import algorithms, get_algorithm, register, unregister
from collbench.analysis.model import costs
from collbench.analysis.model.costs import MODEL_ONLY, lookup, registered
from collbench.analysis.model.forms import phases


def _implemented() -> dict[tuple[str, Collective], bool]:
    """(algorithm, collective) -> whether it registered a cost beside its generator."""
    return {(algo.name, coll): impl.cost is not None
            for algo in algorithms() if not algo.native
            for coll, impl in algo.implementations.items()}


def test_every_registered_algorithm_has_exactly_one_cost() -> None:
    missing, both = [], []
    for (name, coll), beside in _implemented().items():
        form = lookup(name, coll)
        if form is None and not beside:
            missing.append(f"{name} {coll.value}")
        if form is not None and beside:
            both.append(f"{name} {coll.value}")
    assert not missing, f"no cost registered for: {', '.join(missing)}"
    assert not both, f"a closed form and a cost beside the generator for: {', '.join(both)}"


def test_the_cost_table_has_nothing_the_registry_lacks() -> None:
    implemented = _implemented()
    extra = [f"{name} {coll.value}" for name, coll in registered()
             if (name, coll) not in implemented and (name, coll) not in MODEL_ONLY]
    assert not extra, f"closed forms of algorithms the registry does not implement: {extra}"
    # the exception list stays honest: nothing on it is implemented after all
    assert not [key for key in MODEL_ONLY if key in implemented]


def test_forms_are_registered_under_canonical_names() -> None:
    for name, _coll in registered():
        assert get_algorithm(name).name == name


def test_a_form_is_registered_once() -> None:
    with pytest.raises(ValueError, match="already registered"):
        costs.register("ring", Collective.ALLREDUCE)(lambda *args: None)
    assert lookup("ring", Collective.ALLREDUCE).__module__.endswith(".costs.ring")


def test_lookup_is_by_canonical_name_and_aliases_resolve() -> None:
    problem = Problem(Collective.ALLREDUCE, 8, 64)
    assert lookup("binomial", Collective.ALLREDUCE) is None      # an alias is not a key ...
    assert phases("binomial", problem, 4) == phases("tree", problem, 4)   # ... phases resolves it


def test_an_algorithm_without_a_cost_is_walked() -> None:
    """A user-registered algorithm with no cost gets no closed form (callers walk it)."""
    ring = get_algorithm("ring").implementations[Collective.ALLREDUCE]
    register("cost_registry_test_ring", Collective.ALLREDUCE, ring.generator,
             description="a copy of the ring, registered without a cost",
             defaults=dict(ring.defaults))
    try:
        assert phases("cost_registry_test_ring", Problem(Collective.ALLREDUCE, 4, 16), 4) is None
    finally:
        unregister("cost_registry_test_ring")
