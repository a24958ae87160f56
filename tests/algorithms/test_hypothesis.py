"""Property tests: random rank counts, counts, roots, options and node layouts all verify."""

from __future__ import annotations

import pytest
from algo_cases import IMPLEMENTATIONS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collbench.algorithms import Collective, Layout, Problem, get_algorithm, verify_both
from collbench.algorithms.hierarchical import ALLGATHER_CORES, ALLREDUCE_CORES, REDUCE_SCATTER_CORES

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _assert_verifies(algo, problem: Problem, options) -> None:
    assert algo.precondition(problem, options=options) is None
    oop, inp = verify_both(algo.schedule(problem, options))
    assert oop == [] and inp == [], (problem, options, oop[:3], inp[:3])


@SETTINGS
@given(data=st.data(), nranks=st.integers(1, 20), count=st.integers(0, 45))
def test_random_problems(data, nranks: int, count: int) -> None:
    algo, impl = data.draw(st.sampled_from(IMPLEMENTATIONS), label="algorithm")
    root = data.draw(st.integers(0, nranks - 1), label="root") if impl.collective.rooted else 0
    options = dict(data.draw(st.sampled_from(impl.verify_options), label="options"))
    if "chunks" in impl.defaults:
        options["chunks"] = data.draw(st.none() | st.integers(1, 7), label="chunks")
    layouts = impl.verify_layouts(nranks) if impl.verify_layouts else [None]
    layout = data.draw(st.sampled_from(list(layouts)), label="layout")
    _assert_verifies(algo, Problem(impl.collective, nranks, count, root, layout), options)


@st.composite
def uniform_layouts(draw, max_ranks: int = 24) -> Layout:
    """A random uniform layout: any assignment of ranks to equally full nodes."""
    nodes = draw(st.integers(1, 6))
    per_node = draw(st.integers(1, max_ranks // nodes))
    ranks = draw(st.permutations(range(nodes * per_node)))
    return Layout(tuple(tuple(ranks[k * per_node:(k + 1) * per_node]) for k in range(nodes)))


INNER = ["ring", "direct", "halving_doubling", "rabenseifner", "recursive_halving",
         "recursive_doubling"]


@SETTINGS
@given(layout=uniform_layouts(), count=st.integers(0, 30), data=st.data())
def test_hierarchical_with_random_uniform_layouts(layout: Layout, count: int, data) -> None:
    coll = data.draw(st.sampled_from([Collective.ALLREDUCE, Collective.ALLGATHER,
                                      Collective.REDUCE_SCATTER]), label="collective")
    outer_names = {Collective.ALLREDUCE: ALLREDUCE_CORES, Collective.ALLGATHER: ALLGATHER_CORES,
                   Collective.REDUCE_SCATTER: REDUCE_SCATTER_CORES}[coll]
    options = {"inner": data.draw(st.sampled_from(INNER), label="inner"),
               "outer": data.draw(st.sampled_from(sorted(outer_names)), label="outer"),
               "inner_allgather": data.draw(st.none() | st.sampled_from(sorted(ALLGATHER_CORES)),
                                            label="inner_allgather")}
    if options["outer"] == "double_binary_tree":
        options["outer_options"] = {"chunks": data.draw(st.integers(1, 4), label="chunks")}
    problem = Problem(coll, layout.nranks, count, 0, layout)
    _assert_verifies(get_algorithm("hierarchical"), problem, options)


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(1, 5), min_size=2, max_size=5).filter(
    lambda s: len(set(s)) > 1))
def test_non_uniform_layouts_are_refused_precisely(sizes: list[int]) -> None:
    ranks = iter(range(sum(sizes)))
    layout = Layout(tuple(tuple(next(ranks) for _ in range(n)) for n in sizes))
    problem = Problem(Collective.ALLREDUCE, sum(sizes), 8, 0, layout)
    reason = get_algorithm("hierarchical").precondition(problem)
    assert reason == (f"hierarchical needs the same number of ranks on every node; the layout "
                      f"has {len(sizes)} nodes holding {', '.join(map(str, sizes))} ranks")
    with pytest.raises(ValueError, match="same number of ranks on every node"):
        get_algorithm("hierarchical").program(problem, 0)
