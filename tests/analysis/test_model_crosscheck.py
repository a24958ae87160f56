"""The closed forms equal the schedule walk, exactly, for every algorithm of the suite.

Every registered algorithm × collective, p = 1..64, in and out of place, on one node; the flat
algorithms also on blocked multi-node layouts (including a smaller last node) and round robin
(where the linear algorithms have no closed form and must say so); the hierarchical algorithm
on every blocked shape of p ranks with its verified option sets. Costs are compared under
three machines chosen so that no term hides another (α-, β- and γ-heavy, 1 and several ports,
NIC sharing). Counts are *regular* (they split evenly at every level); uneven counts are an
upper bound for the linear algorithms and are checked separately.
"""

from __future__ import annotations

import pytest

from collbench.algorithms import Collective, Layout, Problem
from collbench.algorithms.registry import algorithms_for, get_algorithm
from collbench.analysis.model.cost import Link, Machine, Phase, total
from collbench.analysis.model.forms import phases, regular_count
from collbench.analysis.model.walk import step_signatures

MACHINES = [
    Machine(Link(1e-6, 1e-9, 1), Link(5e-6, 4e-9), nics=1, gamma=3e-10, delta=2e-10),
    Machine(Link(2e-6, 1e-10, 3), Link(3e-6, 5e-9), nics=2, gamma=1e-9, delta=7e-11),
    Machine(Link(1e-9, 1e-8, 2), Link(1e-9, 1e-8), nics=4, gamma=1e-12, delta=0.0),
]
CHUNKED = {("double_binary_tree", Collective.ALLREDUCE), ("ring", Collective.BROADCAST),
           ("ring", Collective.REDUCE)}


def _costs(name, problem, in_place, options):
    closed = phases(name, problem, 4, in_place, options)
    walked = [Phase(1, sigs) for _, sigs in step_signatures(name, problem, 4, in_place, options)]
    return closed, walked


def _assert_equal(name, problem, in_place=False, options=None, exact=True):
    closed, walked = _costs(name, problem, in_place, options)
    assert closed is not None, f"{name} {problem.collective.value} p={problem.nranks}: no closed form"
    for m in MACHINES:
        a, b = total(closed, m).total, total(walked, m).total
        what = (f"{name} {problem.collective.value} p={problem.nranks} count={problem.count} "
                f"in_place={in_place} options={options}: closed {a!r} walk {b!r}")
        if exact:
            assert a == pytest.approx(b, rel=1e-12, abs=1e-18), what
        else:   # an upper bound within one element per message
            assert b * (1 - 1e-12) <= a <= b * 1.05 + 1e-15, what


def _flat(collective):
    return [a.name for a in algorithms_for(collective, include_native=False) if a.name != "hierarchical"]


@pytest.mark.parametrize("collective", list(Collective), ids=lambda c: c.value)
def test_every_flat_algorithm_every_rank_count_one_node(collective):
    for name in _flat(collective):
        option_sets = [{}, {"chunks": 3}] if (name, collective) in CHUNKED else [{}]
        for p in range(1, 65):
            count = regular_count(p, None, 3) * 2
            for options in option_sets:
                for in_place in (False, True):
                    problem = Problem(collective, p, count)
                    if get_algorithm(name).precondition(problem, options=options):
                        continue
                    _assert_equal(name, problem, in_place, options)


@pytest.mark.parametrize("collective", list(Collective), ids=lambda c: c.value)
def test_flat_algorithms_on_multi_node_layouts(collective):
    for name in _flat(collective):
        for p in range(2, 25):
            count = regular_count(p, None, 1) * 2
            for g in (2, 3, 4):
                if g >= p:
                    continue
                _assert_equal(name, Problem(collective, p, count, layout=Layout.blocked(p, g)))
                problem = Problem(collective, p, count, layout=Layout.round_robin(p, p // g))
                closed, _ = _costs(name, problem, False, None)
                if closed is None:   # the linear algorithms need contiguous nodes
                    assert name in ("ring", "direct") and collective is not Collective.ALLGATHER \
                        or name == "ring"
                else:
                    _assert_equal(name, problem)


def _hier_options(collective):
    impl = get_algorithm("hierarchical").implementations[collective]
    extra = {Collective.ALLREDUCE: [{"inner": "direct", "outer": "tree", "inner_allgather": "bruck"},
                                    {"inner": "halving_doubling", "outer": "ring",
                                     "inner_allgather": "direct"}],
             Collective.ALLGATHER: [{"outer": "ring", "inner_allgather": "recursive_doubling"},
                                    {"outer": "direct", "inner_allgather": "ring"}],
             Collective.REDUCE_SCATTER: [{"inner": "halving_doubling", "outer": "ring"},
                                         {"inner": "direct", "outer": "recursive_halving"}]}
    return list(impl.verify_options) + extra[collective]


@pytest.mark.parametrize("collective", [Collective.ALLREDUCE, Collective.ALLGATHER,
                                        Collective.REDUCE_SCATTER], ids=lambda c: c.value)
def test_hierarchical_every_blocked_shape(collective):
    options = _hier_options(collective)
    for p in range(1, 65):
        shapes = [(P, p // P) for P in range(1, p + 1) if p % P == 0]
        squarest = min(shapes, key=lambda s: abs(s[0] - s[1]))
        if p <= 12:     # every shape, option set and placement
            cases = [(s, o, ip) for s in shapes for o in options for ip in (False, True)]
        else:           # every p: the squarest shape; the other shapes and options in rotation
            other = shapes[p % len(shapes)]
            cases = [(squarest, options[0], False), (other, options[p % len(options)], p % 2 == 0)]
        for (_nodes, per_node), opts, in_place in cases:
            layout = Layout.blocked(p, per_node)
            count = regular_count(p, layout, 3) * 2
            _assert_equal("hierarchical", Problem(collective, p, count, layout=layout), in_place, opts)


def test_round_robin_hierarchical_has_no_closed_form():
    problem = Problem(Collective.ALLREDUCE, 8, 64, layout=Layout.round_robin(8, 2))
    assert phases("hierarchical", problem, 4) is None


@pytest.mark.parametrize("collective", list(Collective), ids=lambda c: c.value)
def test_uneven_counts_are_an_upper_bound(collective):
    for name in [a.name for a in algorithms_for(collective, include_native=False)]:
        for p in (3, 5, 6, 7, 12, 13, 31):
            layout = Layout.blocked(p, 3) if name == "hierarchical" and p % 3 == 0 else None
            if name == "hierarchical" and layout is None:
                continue
            for count in (p * 50 + 7, 1001):
                _assert_equal(name, Problem(collective, p, count, layout=layout), exact=False)


@pytest.mark.parametrize("collective", [Collective.BROADCAST, Collective.REDUCE], ids=lambda c: c.value)
def test_rooted_collectives_any_root_any_layout(collective):
    for name in ("ring", "tree"):
        options = {"chunks": 3} if name == "ring" else {}
        for p in range(2, 20):
            count = regular_count(p, None, 3) * 2
            for root in sorted({1, p // 2, p - 1}):
                for layout in (None, Layout.blocked(p, 3) if p > 3 else None):
                    _assert_equal(name, Problem(collective, p, count, root=root, layout=layout),
                                  root % 2 == 0, options)
