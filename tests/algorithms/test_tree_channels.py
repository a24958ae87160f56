"""Issue 11: ``channels`` for the binomial tree and the double binary tree allreduce (NCCL runs
2 trees x channels): K trees over differently ordered ranks, one part of the vector each, all in
the same steps; proven by the verifier, executed by the numpy simulator, checked for spread."""

from __future__ import annotations

import numpy as np
import pytest

from cbtest import read_jsonl, run_cli
from collbench.algorithms import Collective, Layout, Problem, reference_result
from collbench.algorithms.registry import get_algorithm
from collbench.algorithms.simulate import simulate
from collbench.algorithms.tree import channel_orders
from collbench.algorithms.verify import verify_algorithm

A = Collective.ALLREDUCE
TREES = ("tree", "double_binary_tree")


def _check_simulated(name: str, problem: Problem, options: dict, seed: int) -> None:
    rng = np.random.default_rng(seed)
    inputs = [rng.integers(-3, 4, problem.count).astype(np.int32) for _ in range(problem.nranks)]
    want = reference_result(A, inputs, "sum")
    schedule = get_algorithm(name).schedule(problem, options)
    for in_place in (False, True):
        got = simulate(schedule, inputs, "sum", in_place=in_place)
        for r in range(problem.nranks):
            np.testing.assert_array_equal(got[r], want[r], err_msg=f"{name} {problem} {options} "
                                          f"in_place={in_place} rank {r}")


@pytest.mark.parametrize("name", TREES)
def test_channels_simulate_exactly(name):
    """p = 1..12, channels 1..4, odd counts (fewer elements than channels too), in and out of
    place; the double binary tree also with explicit chunks."""
    for p in range(1, 13):
        for channels in (1, 2, 3, 4):
            for count in (3, 2 * p + 1, 37):
                options = {"channels": channels}
                if name == "double_binary_tree" and count == 37:
                    options["chunks"] = 3
                _check_simulated(name, Problem(A, p, count), options, seed=p * 100 + count)


@pytest.mark.parametrize("name", TREES)
def test_channels_verify_on_multi_node_layouts(name):
    for p, g in ((4, 2), (6, 3), (8, 4), (12, 4), (9, 3)):
        for layout in (Layout.blocked(p, g), Layout.round_robin(p, p // g)):
            for channels in (2, 3, 4):
                for count in (5, 8 * channels * p + 3):
                    problem = Problem(A, p, count, layout=layout)
                    errors = verify_algorithm(name, problem, {"channels": channels})
                    assert not errors, (name, p, layout, channels, count, errors[:2])
                _check_simulated(name, Problem(A, p, 2 * p + 1, layout=layout),
                                 {"channels": channels}, seed=p + channels)


def test_channel_orders_are_permutations_with_spread_roots():
    assert channel_orders(5, 1) == [[0, 1, 2, 3, 4]]
    for g in range(1, 17):
        for k in (2, 3, 4, 8):
            orders = channel_orders(g, k)
            assert len(orders) == k and all(sorted(o) == list(range(g)) for o in orders)
            roots = [o[0] for o in orders]
            assert len(set(roots)) == min(k, g), (g, k, roots)
    # one node of 8: forward tree rooted at 0, backward tree rooted at 1
    assert channel_orders(8, 2) == [[0, 1, 2, 3, 4, 5, 6, 7], [1, 0, 7, 6, 5, 4, 3, 2]]
    # two nodes of 4: each channel's order keeps the nodes together, roots on both nodes
    orders = channel_orders(8, 2, [[0, 1, 2, 3], [4, 5, 6, 7]])
    assert [o[0] for o in orders] == [0, 5]
    assert all(set(o[:4]) in ({0, 1, 2, 3}, {4, 5, 6, 7}) for o in orders)
    for nnodes, per in ((2, 4), (3, 2), (4, 3)):
        nodes = [list(range(n * per, (n + 1) * per)) for n in range(nnodes)]
        for k in range(2, per + 1):
            orders = channel_orders(nnodes * per, k, nodes)
            assert len({o[0] for o in orders}) == k, (nnodes, per, k)
            for o in orders:   # node by node
                assert all(set(o[i * per:(i + 1) * per]) in map(set, nodes) for i in range(nnodes))


def _traffic(name: str, problem: Problem, options: dict) -> tuple[int, int, list]:
    """(last step index, sum over steps of the most elements one rank receives in the step,
    (step, src, dst) of every message)."""
    schedule = get_algorithm(name).schedule(problem, options)
    per_step: dict[int, dict[int, int]] = {}
    pairs = []
    for prog in schedule.programs:
        for step in prog.steps:
            got = per_step.setdefault(step.index, {})
            for recv in step.recvs:
                got[prog.rank] = got.get(prog.rank, 0) + recv.dst.length
                pairs.append((step.index, recv.peer, prog.rank))
    busiest = sum(max(got.values(), default=0) for got in per_step.values())
    return max(per_step), busiest, pairs


@pytest.mark.parametrize("name", TREES)
def test_channels_run_in_the_same_steps_and_spread_the_load(name):
    p, count = 8, 8 * 3 * 4 * 16
    problem = Problem(A, p, count)
    base = {"chunks": 4} if name == "double_binary_tree" else {}
    last1, busiest1, pairs1 = _traffic(name, problem, base)
    for channels in (2, 4):
        last, busiest, pairs = _traffic(name, problem, {**base, "channels": channels})
        assert last == last1                            # concurrent, not one after the other
        assert len(pairs) == channels * len(pairs1)     # every channel moves its own messages
        assert busiest < busiest1                       # the busiest rank of a step gets less
        # and the channels talk over more distinct (directed) links than one tree does
        assert len({(s, d) for _, s, d in pairs}) > len({(s, d) for _, s, d in pairs1})
    if name == "tree":   # two trees rooted at 0 and 1: at most half the vector per rank and step
        _, busiest2, _ = _traffic(name, problem, {"channels": 2})
        assert busiest2 * 2 == busiest1


def test_one_channel_is_the_plain_schedule():
    for name in TREES:
        for p in (1, 5, 8):
            problem = Problem(A, p, 3 * p + 1)
            algo = get_algorithm(name)
            assert algo.schedule(problem, {"channels": 1}) == algo.schedule(problem)


def test_channels_are_declared_and_checked():
    ar = Problem(A, 4, 8)
    tree, dbt = get_algorithm("tree"), get_algorithm("double_binary_tree")
    assert tree.options(A) == {"channels": 1}
    assert dbt.options(A) == {"chunks": None, "channels": 1}
    for algo in (tree, dbt):
        for bad in (0, -1, "two", True, 1.5):
            assert algo.precondition(ar, options={"channels": bad}) == \
                f"channels must be a whole number from 1 to 64, not {bad!r}"
        assert {"channels": 2} in algo.implementations[A].verify_options
        assert {"channels": 4} in algo.implementations[A].verify_options
    assert dbt.precondition(ar, options={"chunks": 0, "channels": 2}) == \
        "chunks must be a whole number from 1 to 1024 (got 0)"
    # rooted collectives of the tree take no channels
    assert "unknown option 'channels'" in tree.precondition(Problem(Collective.BROADCAST, 4, 8),
                                                            options={"channels": 2})


@pytest.mark.mpi
@pytest.mark.parametrize("nranks,executor", [(3, "python"), (4, "auto")])
def test_channels_run_over_real_mpi(nranks, executor, tmp_path):
    """Both trees with two channels under a real mpiexec, odd element counts (25, 225), in
    and out of place, the Python and the default (C where it builds) executor."""
    out = tmp_path / "trees.jsonl"
    result = run_cli(["run", "allreduce", "--algo", "tree,double_binary_tree", "-O", "channels=2",
                      "-d", "int32", "-o", "sum", "-b", "100", "-e", "900", "-i", "800",
                      "-n", "1", "-w", "1", "-c", "1", "-np", str(nranks), "--executor", executor,
                      "--out", str(out)], timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [r for r in read_jsonl(out) if r["type"] == "row"]
    seen = {(r["algorithm"], r["placement"], r["bytes"]) for r in rows}
    assert seen == {(a, pl, b) for a in TREES for pl in ("out_of_place", "in_place")
                    for b in (100, 900)}
    assert all(r["wrong"] == 0 and r["options"] == {"channels": 2} for r in rows), rows[:2]

