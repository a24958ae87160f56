"""Issue 11 part 5: channels in the ring schedules (NCCL-style rings in distinct orders) and in
the hierarchical algorithm's inter-node ring, proven by the verifier and costed exactly."""

from __future__ import annotations

import pytest

from collbench.algorithms import Collective, Layout, Problem
from collbench.algorithms.registry import get_algorithm
from collbench.algorithms.ring import ring_orders
from collbench.algorithms.verify import verify_algorithm
from collbench.analysis.model.cost import Link, Machine, Phase, total
from collbench.analysis.model.forms import phases, regular_count
from collbench.analysis.model.walk import step_signatures

FLAT = (Collective.ALLREDUCE, Collective.ALLGATHER, Collective.REDUCE_SCATTER)
MACHINES = [
    Machine(Link(1e-6, 1e-9, 1), Link(5e-6, 4e-9), nics=1, gamma=3e-10, delta=2e-10),
    Machine(Link(2e-6, 1e-10, 3), Link(3e-6, 5e-9), nics=2, gamma=1e-9, delta=7e-11,
            link_overlap=True),
    Machine(Link(1e-9, 1e-8, 2), Link(1e-9, 1e-8), nics=4, rank_nics=2, link_overlap=True),
]


def _layouts(p: int) -> list[Layout | None]:
    out: list[Layout | None] = [None]
    for g in (2, 3, 4):
        if p % g == 0 and p > g:
            out += [Layout.blocked(p, g), Layout.round_robin(p, p // g)]
    return out


def test_orders_are_permutations_and_use_distinct_links():
    for g in range(1, 17):
        for k in (1, 2, 3, 5):
            for order in ring_orders(g, k):
                assert sorted(order) == list(range(g))
    # one node of 4: forward and backward rings (each rank sends to both neighbours)
    fwd, bwd = ring_orders(4, 2)
    assert fwd == [0, 1, 2, 3] and bwd == [0, 3, 2, 1]
    # several nodes: ring k enters every node at its local rank k (one NIC rail per ring)
    nodes = [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert [order[0] for order in ring_orders(8, 4, nodes)] == [0, 1, 2, 3]
    assert ring_orders(8, 2, nodes)[1] == [1, 2, 3, 0, 5, 6, 7, 4]


@pytest.mark.parametrize("collective", FLAT, ids=lambda c: c.value)
def test_channel_rings_verify_on_every_layout(collective):
    for p in (1, 2, 3, 4, 5, 6, 8, 9, 12):
        for layout in _layouts(p):
            for channels in (2, 3, 4):
                for count in (1, 7, regular_count(p, None, 1) * channels * 2):
                    problem = Problem(collective, p, count, layout=layout)
                    errors = verify_algorithm("ring", problem, {"channels": channels})
                    assert not errors, (p, layout, channels, count, errors[:2])


@pytest.mark.parametrize("collective", FLAT, ids=lambda c: c.value)
def test_channel_closed_forms_equal_the_walk(collective):
    for p in (2, 3, 4, 6, 8, 12):
        for layout in _layouts(p):
            for channels in (2, 3, 4):
                problem = Problem(collective, p, regular_count(p, None, 1) * channels * 4,
                                  layout=layout)
                for in_place in (False, True):
                    closed = phases("ring", problem, 4, in_place, {"channels": channels})
                    walked = [Phase(1, s) for _, s in step_signatures(
                        "ring", problem, 4, in_place, {"channels": channels})]
                    for m in MACHINES:
                        assert total(closed, m).total == pytest.approx(total(walked, m).total,
                                                                       rel=1e-12)


def test_hierarchical_outer_ring_channels_verify_and_cost_exactly():
    for p, g in ((4, 2), (8, 2), (12, 3), (16, 4)):
        layout = Layout.blocked(p, g)
        for channels in (2, 3):
            options = {"outer": "ring", "outer_options": {"channels": channels}}
            for count in (5, regular_count(p, layout, 1) * channels * 2):
                problem = Problem(Collective.ALLREDUCE, p, count, layout=layout)
                assert not verify_algorithm("hierarchical", problem, options)
            closed = phases("hierarchical", problem, 4, False, options)
            walked = [Phase(1, s) for _, s in step_signatures("hierarchical", problem, 4, False,
                                                              options)]
            for m in MACHINES:
                assert total(closed, m).total == pytest.approx(total(walked, m).total, rel=1e-12)


def test_channels_are_declared_and_checked():
    ring = get_algorithm("ring")
    assert ring.options(Collective.ALLREDUCE) == {"channels": 1}
    assert "channels" in ring.precondition(Problem(Collective.ALLREDUCE, 4, 8),
                                           options={"channels": 0})
    assert {"channels": 2} in ring.implementations[Collective.ALLGATHER].verify_options
    hier = get_algorithm("hierarchical")
    bad = {"outer": "rabenseifner", "outer_options": {"channels": 2}}
    assert "does not take" in hier.precondition(
        Problem(Collective.ALLREDUCE, 8, 8, layout=Layout.blocked(8, 4)), options=bad)


def test_channel_counts_are_bounded():
    """A mistyped channels=100000 is refused at once (it used to build 100000 rings first)."""
    from collbench.algorithms.ring import MAX_CHANNELS

    problem = Problem(Collective.ALLREDUCE, 4, 8)
    for name in ("ring", "tree", "double_binary_tree"):
        algo = get_algorithm(name)
        assert algo.precondition(problem, options={"channels": MAX_CHANNELS}) is None
        for bad in (MAX_CHANNELS + 1, 100000):
            assert "1 to 64" in algo.precondition(problem, options={"channels": bad}), name
    hier = get_algorithm("hierarchical")
    layered = Problem(Collective.ALLREDUCE, 8, 8, layout=Layout.blocked(8, 4))
    assert hier.precondition(layered, options={"outer": "ring",
                                               "outer_options": {"channels": 64}}) is None
    assert "1 to 64" in hier.precondition(layered, options={"outer": "ring",
                                                            "outer_options": {"channels": 65}})
