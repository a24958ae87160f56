"""The schedule walk on rows equals the walk on the programs built from them.

``step_signatures`` walks an algorithm written as rows on its rows (lowering's rules applied to
the arrays), and every other algorithm on its lowered programs. The closed forms are checked
against the rows walk, so it must charge exactly what the programs, lowered the way executors
run them, would: every rows implementation, both placements, the sweep's layouts, roots and
option sets, and counts that leave blocks empty.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "algorithms"))
from algo_cases import IMPLEMENTATIONS, impl_id  # noqa: E402  (tests/algorithms helpers)

from collbench.algorithms import Collective, Layout, Problem  # noqa: E402
from collbench.algorithms.verify import _cases  # noqa: E402
from collbench.analysis.model import walk  # noqa: E402

ROWS = [pair for pair in IMPLEMENTATIONS if pair[1].rows is not None]


def _both(algo, problem, options, in_place, itemsize=4):
    node = walk.node_index(problem.layout, problem.nranks)
    rows = algo.rows(problem, options)
    programs = algo.schedule(problem, options).programs
    by_rows = walk.signatures_of_rows(problem, rows, itemsize, in_place, node)
    by_programs = walk.signatures_of_programs(problem, programs, itemsize, in_place, node)
    return by_rows, by_programs


def test_rows_algorithms_are_here() -> None:
    names = {(a.name, i.collective) for a, i in ROWS}
    assert ("ring", Collective.ALLREDUCE) in names and ("pairwise", Collective.ALLTOALLV) in names


@pytest.mark.parametrize("pair", ROWS, ids=impl_id)
def test_the_rows_walk_is_the_program_walk(pair) -> None:
    algo, impl = pair
    checked = 0
    for p in (1, 2, 3, 5, 8, 12):
        for options, layout, root in _cases(impl, p, False):
            for count in (0, 1, p - 1, 3 * p + 1):
                problem = Problem(impl.collective, p, count, root, layout)
                if algo.precondition(problem, op=None, options=options):
                    continue
                for in_place in (False, True):
                    by_rows, by_programs = _both(algo, problem, options, in_place)
                    assert by_rows == by_programs, (problem, options, in_place)
                    checked += 1
    assert checked > 20


@pytest.mark.parametrize("name, collective", [("ring", Collective.ALLREDUCE),
                                              ("ring", Collective.REDUCE_SCATTER),
                                              ("direct", Collective.ALLGATHER),
                                              ("hierarchical", Collective.ALLTOALL)])
def test_the_walks_agree_across_nodes_and_on_nic_sharing(name, collective) -> None:
    """Inter-node messages, per-peer maxima and NIC shares: blocked and round-robin nodes."""
    from collbench.algorithms import get_algorithm

    algo = get_algorithm(name)
    for p, per_node in ((6, 2), (7, 3), (12, 4)):
        for layout in (Layout.blocked(p, per_node), Layout.round_robin(p, p // per_node)):
            problem = Problem(collective, p, 5 * p + 3, 0, layout)
            if algo.precondition(problem, op=None, options=None):
                continue
            for in_place in (False, True):
                by_rows, by_programs = _both(algo, problem, None, in_place, itemsize=2)
                assert by_rows == by_programs, (problem, in_place)
                assert any(sig.send.inter_msgs for _, sigs in by_rows for sig in sigs)


def test_in_place_copies_onto_themselves_cost_nothing() -> None:
    """Ring allgather copies the rank's input into its block of the output: a real copy out of
    place, none in place (the input already lives there)."""
    from collbench.algorithms import get_algorithm

    problem = Problem(Collective.ALLGATHER, 4, 6)
    oop, _ = _both(get_algorithm("ring"), problem, None, False)
    inp, _ = _both(get_algorithm("ring"), problem, None, True)
    assert sum(s.copy for _, sigs in oop for s in sigs) > 0
    assert sum(s.copy for _, sigs in inp for s in sigs) == 0
