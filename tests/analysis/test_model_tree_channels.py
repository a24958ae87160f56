"""Tree and double-binary-tree allreduce channels in the model (issue 11 follow-up).

``-O channels=K`` runs K trees (K pairs of trees) at once, channel ``k`` on ring ``k``'s member
order rotated to member ``k`` (``algorithms/tree.py`` ``channel_orders``) and on part ``k`` of
the vector. The closed forms in ``costs/tree.py`` and ``costs/double_binary_tree.py`` price
that; they must equal the schedule walk (``walk.py``) exactly at regular counts, for p = 1..24,
K = 1..4, one node and blocked multi-node layouts (a smaller last node included), under
hand-made machines and the shipped A100 profiles.
"""

from __future__ import annotations

import json

import pytest

from collbench.algorithms import Collective, Layout, Problem
from collbench.analysis.model.cost import Link, Machine, Phase, total
from collbench.analysis.model.forms import phases, regular_count
from collbench.analysis.model.predict import WALK_RANKS, Model, variants
from collbench.analysis.model.profile import load_profile
from collbench.analysis.model.walk import step_signatures

A = Collective.ALLREDUCE
MACHINES = [
    Machine(Link(1e-6, 1e-9, 1), Link(5e-6, 4e-9), nics=1, gamma=3e-10, delta=2e-10),
    Machine(Link(2e-6, 1e-10, 3), Link(3e-6, 5e-9), nics=2, gamma=1e-9, delta=7e-11),
    Machine(Link(1e-9, 1e-8, 2), Link(1e-9, 1e-8), nics=4, gamma=1e-12, delta=0.0),
] + [load_profile(name).machine("float32") for name in ("perlmutter", "dgx-a100", "delta")]


def _layouts(p, every=True):
    """One node, and blocked layouts of 2, 3 and 4 ranks per node (the last node smaller where
    they do not divide p); ``every=False``: one blocked layout per p, 3 or 4 per node in turn."""
    sizes = (2, 3, 4) if every else (3 + p % 2,)
    return [None] + [Layout.blocked(p, g) for g in sizes if g < p]


def _options(name, k):
    opts = {"channels": k} if k > 1 else {}
    return {**opts, "chunks": 3} if name == "double_binary_tree" else opts


def _compare(name, problem, in_place, options, exact=True):
    closed = phases(name, problem, 4, in_place, options)
    assert closed is not None, (name, problem.nranks, options)
    walked = [Phase(1, s) for _, s in step_signatures(name, problem, 4, in_place, options)]
    nodes = None if problem.layout is None else [len(n) for n in problem.layout.nodes]
    for m in MACHINES:
        a, b = total(closed, m).total, total(walked, m).total
        what = (f"{name} p={problem.nranks} nodes={nodes} count={problem.count} "
                f"in_place={in_place} {options}: closed {a!r} walk {b!r}")
        if exact:
            assert a == pytest.approx(b, rel=1e-12, abs=1e-18), what
        else:
            yield a, b, what


@pytest.mark.parametrize("name", ["tree", "double_binary_tree"])
def test_channel_forms_equal_the_walk(name):
    for p in range(1, 25):
        for k in range(1, 5):
            for layout in _layouts(p, every=name == "tree"):
                count = regular_count(p, layout, 3 * k) * 2
                list(_compare(name, Problem(A, p, count, layout=layout), (p + k) % 2 == 0,
                              _options(name, k)))


def test_tree_channel_form_is_exact_at_any_count():
    """Each tree moves its own part's length, so uneven parts (and empty ones, count < K) are
    priced exactly."""
    for p in (3, 5, 8, 13, 24):
        for k in (2, 3, 4):
            for layout in _layouts(p)[::2]:
                for count in (1, 3, p * 50 + 7, 1001):
                    list(_compare("tree", Problem(A, p, count, layout=layout), False,
                                  {"channels": k}))


def test_double_binary_tree_channel_form_is_an_upper_bound_at_uneven_counts():
    """As with one channel, every chunk is charged the largest chunk's length: never below the
    walk, and at most one element per message above it."""
    for p in (3, 5, 8, 13):
        for k in (2, 3, 4):
            for count in (p * 50 + 7, 1001):
                smallest = count // (2 * k * 3)       # elements of the smallest chunk
                for a, b, what in _compare("double_binary_tree", Problem(A, p, count), False,
                                           _options("double_binary_tree", k), exact=False):
                    assert b * (1 - 1e-12) <= a <= b * (1 + 1 / smallest) + 1e-15, what


def test_channels_change_the_cost():
    """Before, the forms ignored ``channels`` and returned the one-channel cost."""
    m = MACHINES[1]
    for name in ("tree", "double_binary_tree"):
        for layout in (None, Layout.blocked(16, 4)):
            p = 16 if layout else 8
            problem = Problem(A, p, regular_count(p, layout, 12) * 64, layout=layout)
            one = total(phases(name, problem, 4, False, _options(name, 1)), m).total
            four = total(phases(name, problem, 4, False, _options(name, 4)), m).total
            assert four != one, (name, p, one, four)
            if name == "tree":      # the K roots split the whole vector's traffic
                assert four < one, (p, one, four)


def test_predict_prices_channels_in_closed_form_beyond_the_walk_limit():
    """Above WALK_RANKS a schedule without a closed form gets no prediction at all; the channel
    forms need no walk, so 2048 ranks on 512 nodes still get an exact answer."""
    model = Model(load_profile("perlmutter"))
    p = 2 * WALK_RANKS
    lay = Layout.blocked(p, 4)
    for name in ("tree", "double_binary_tree"):
        one = model.predict(A, name, p, 1 << 30, layout=lay)
        four = model.predict(A, name, p, 1 << 30, layout=lay, options={"channels": 4})
        assert four is not None and four.method == "closed"
        assert four.options == {"channels": 4} and four.time_us != one.time_us


def test_variants_offer_channels():
    assert {"channels": 2} in variants(A, "tree", 8) and {"channels": 4} in variants(A, "tree", 8)
    dbt = variants(A, "double_binary_tree", 8)
    assert {"channels": 2} in dbt and {"channels": 4} in dbt and {"chunks": 16} in dbt
    assert variants(Collective.BROADCAST, "tree", 8) == [{}]     # rooted trees take no channels


def test_predict_reports_a_winning_tree_channel_variant(capsys):
    from collbench.cli import main

    assert main(["model", "predict", "--profile", "perlmutter", "--nodes", "1",
                 "--gpus-per-node", "4", "--sizes", "1G", "--algo", "tree,double_binary_tree",
                 "--format", "json"]) == 0
    records = {r["algorithm"]: r for r in json.loads(capsys.readouterr().out)}
    assert records["tree"]["options"] == {"channels": 4}
    assert records["double_binary_tree"]["options"].get("channels") == 2
    assert main(["model", "predict", "--profile", "perlmutter", "--nodes", "1",
                 "--gpus-per-node", "4", "--sizes", "1G", "--algo", "tree,double_binary_tree",
                 "--defaults-only", "--format", "json"]) == 0
    defaults = {r["algorithm"]: r for r in json.loads(capsys.readouterr().out)}
    for name in ("tree", "double_binary_tree"):
        assert defaults[name]["busbw_gbps"] < records[name]["busbw_gbps"]
