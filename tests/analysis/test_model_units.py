"""The cost model's semantics, its agreement with the textbook formulas, profiles and scale."""

from __future__ import annotations

import json

import pytest

from collbench.algorithms import Collective, Layout, Problem
from collbench.analysis.model.cost import Link, Machine, Side, Sig, total
from collbench.analysis.model.forms import phases
from collbench.analysis.model.predict import Model, parse_counts, predict_tables
from collbench.analysis.model.profile import load_profile, profile_from_record, shipped_names
from collbench.errors import UsageError

A, BETA, G = 2e-6, 1e-9, 3e-10
FLAT = Machine(Link(A, BETA), Link(A, BETA), 1, G, 0.0)


def cost(name, coll, p, count, layout=None, machine=FLAT, in_place=True, options=None):
    return total(phases(name, Problem(coll, p, count, layout=layout), 1, in_place, options), machine)


# -- one step ------------------------------------------------------------------------------------

def test_one_exchange_is_alpha_plus_n_beta_and_reduction_after():
    sig = Sig(Side(1, 1000, 1000), Side(1, 1000, 1000), reduce=1000)
    assert sig.time(FLAT) == pytest.approx(A + 1000 * BETA + 1000 * G)


def test_ports_let_several_messages_share_a_step():
    m = Machine(Link(A, BETA, ports=3), Link(A, BETA), 1, 0, 0)
    three = Sig(Side(3, 1000, 3000))
    assert three.time(m) == pytest.approx(3 * A + 1000 * BETA)        # one per link
    assert three.time(FLAT) == pytest.approx(3 * A + 3000 * BETA)     # one port: serialised


def test_nic_sharing():
    m = Machine(Link(0, 0), Link(A, BETA), nics=1, gamma=0, delta=0)
    alone, four = Sig(Side(0, 0, 0, 1, 1000, 1000, 1)), Sig(Side(0, 0, 0, 1, 1000, 1000, 4))
    assert four.time(m) == pytest.approx(A + 4 * 1000 * BETA)
    assert alone.time(m) == pytest.approx(A + 1000 * BETA)
    m4 = Machine(Link(0, 0), Link(A, BETA), nics=4, gamma=0, delta=0)
    assert four.time(m4) == pytest.approx(A + 1000 * BETA)


def test_protocol_switch_regime():
    link = Link(A, BETA, 1, 4096, 5 * A, BETA / 2)
    m = Machine(link, link, 1, 0, 0)
    assert Sig(Side(1, 1000, 1000)).time(m) == pytest.approx(A + 1000 * BETA)
    assert Sig(Side(1, 8192, 8192)).time(m) == pytest.approx(5 * A + 8192 * BETA / 2)


# -- the textbook formulas (Thakur, Rabenseifner & Gropp 2005; Chan et al. 2007) ------------------

@pytest.mark.parametrize("p", [2, 4, 8, 16, 64])
def test_power_of_two_formulas(p):
    n = 4096 * p                       # bytes (itemsize 1)
    lg = p.bit_length() - 1
    frac = (p - 1) / p
    expect = {
        "ring": 2 * (p - 1) * A + 2 * frac * n * BETA + frac * n * G,
        "recursive_doubling": lg * (A + n * BETA + n * G),
        "rabenseifner": 2 * lg * A + 2 * frac * n * BETA + frac * n * G,
        "tree": 2 * lg * (A + n * BETA) + lg * n * G,
        "direct": (p - 1) * (A + n * BETA) + (p - 1) * n * G,
    }
    for name, value in expect.items():
        assert cost(name, Collective.ALLREDUCE, p, n).total == pytest.approx(value), name
    c = n // p
    assert cost("ring", Collective.ALLGATHER, p, c).total == pytest.approx((p - 1) * A + frac * n * BETA)
    # rotated through scratch: one message per step, wrapped ranges included (copies cost δ = 0)
    assert cost("bruck", Collective.ALLGATHER, p, c).total == pytest.approx(
        lg * A + frac * n * BETA)
    assert cost("recursive_doubling", Collective.ALLGATHER, p, c).total == pytest.approx(
        lg * A + frac * n * BETA)
    rs = (p - 1) * A + frac * n * (BETA + G)
    assert cost("ring", Collective.REDUCE_SCATTER, p, c).total == pytest.approx(rs)
    assert cost("direct", Collective.REDUCE_SCATTER, p, c).total == pytest.approx(rs)
    assert cost("recursive_halving", Collective.REDUCE_SCATTER, p, c).total == pytest.approx(
        lg * A + frac * n * (BETA + G))
    assert cost("tree", Collective.BROADCAST, p, n).total == pytest.approx(lg * (A + n * BETA))
    k = 4
    assert cost("ring", Collective.BROADCAST, p, n, options={"chunks": k}).total == pytest.approx(
        (p - 2 + k) * (A + n / k * BETA))


def test_non_power_of_two_fold_costs_two_steps_and_a_vector():
    p, n = 6, 6 * 4096
    lg = 2
    rd = cost("recursive_doubling", Collective.ALLREDUCE, p, n).total
    assert rd == pytest.approx((lg + 2) * A + (lg + 2) * n * BETA + (lg + 1) * n * G)
    rab = cost("rabenseifner", Collective.ALLREDUCE, p, n).total
    frac = 3 / 4
    assert rab == pytest.approx((2 * lg + 2) * A + (2 * frac + 2) * n * BETA + (frac + 1) * n * G)


def test_hierarchical_composition_and_nic_sharing():
    P, g, n = 4, 4, 4 * 4 * 1024
    intra, nic = Link(1e-6, 1e-10, 1), Link(1e-5, 1e-9)
    lay = Layout.blocked(P * g, g)
    shard = n // g
    inner = 2 * (g - 1) * 1e-6 + 2 * (g - 1) / g * n * 1e-10 + (g - 1) / g * n * G
    for nics, share in ((4, 1), (1, 4)):
        m = Machine(intra, nic, nics, G, 0)
        outer = 2 * 1e-5 + 2 * shard * 1e-9 * share + 2 * shard * G   # recursive doubling over 4 nodes
        got = cost("hierarchical", Collective.ALLREDUCE, P * g, n, lay, m).total
        assert got == pytest.approx(inner + outer), nics


# -- profiles ------------------------------------------------------------------------------------

def test_shipped_profiles_cite_a_source_for_every_constant():
    from importlib import resources

    assert {"perlmutter", "delta", "generic"} <= set(shipped_names())
    for name in shipped_names():
        record = json.loads((resources.files("collbench.analysis") / "profiles" / f"{name}.json").read_text())
        sources = record["sources"]
        if record.get("metadata", {}).get("host"):     # a calibrated profile: fits are its sources
            assert record["fit"]["intra"]["points"] >= 3
            continue
        for level in ("intra", "inter"):
            for key in record[level]:
                assert f"{level}.{key}" in sources, (name, level, key)
        for key in record["reduce_gbps"]:
            assert f"reduce_gbps.{key}" in sources, (name, key)
        for key in ("nics_per_node", "copy_gbps"):
            assert key in sources, (name, key)
        load_profile(name)


def test_perlmutter_and_delta_differ_only_in_nics():
    per, delta = load_profile("perlmutter"), load_profile("delta")
    assert (per.nics_per_node, delta.nics_per_node) == (4, 1)
    assert per.intra == delta.intra and per.inter == delta.inter
    m = Model(delta)
    lay = Layout.blocked(8, 4)
    t_delta = m.predict(Collective.ALLREDUCE, "hierarchical", 8, 1 << 28, layout=lay)
    t_per = Model(per).predict(Collective.ALLREDUCE, "hierarchical", 8, 1 << 28, layout=lay)
    assert t_delta.time_us > 2 * t_per.time_us   # one NIC shared by four GPUs


@pytest.mark.parametrize("record,message", [
    ({}, "not a collbench machine profile"),
    ({"collbench_profile": 1, "intra": {"alpha_us": 1}}, "needs numbers alpha_us and bandwidth_gbps"),
    ({"collbench_profile": 1, "intra": {"alpha_us": 1, "bandwidth_gbps": -2}}, "bandwidth_gbps > 0"),
    ({"collbench_profile": 9, "intra": {"alpha_us": 1, "bandwidth_gbps": 2}}, "newer"),
])
def test_bad_profiles_are_one_line(record, message):
    with pytest.raises(UsageError, match=message):
        profile_from_record(record, "x.json")


def test_unknown_profile_names_the_choices():
    with pytest.raises(UsageError, match="perlmutter"):
        load_profile("no-such-profile")


def test_parse_counts():
    assert parse_counts("1..1024", "--nodes")[:3] == [1, 2, 4] and parse_counts("1..1024", "x")[-1] == 1024
    assert parse_counts("3..10", "x") == [3, 6, 10]
    assert parse_counts("1,5,2", "x") == [1, 2, 5]
    with pytest.raises(UsageError):
        parse_counts("0..4", "--nodes")


# -- predictions ----------------------------------------------------------------------------------

def test_scaled_predictions_match_exact_costs():
    model = Model(load_profile("perlmutter"))
    lay = Layout.blocked(64, 4)
    for name in ("ring", "recursive_doubling", "rabenseifner", "double_binary_tree", "hierarchical"):
        for size in (1 << 16, 3 << 20, 1 << 30):
            exact = model.predict(Collective.ALLREDUCE, name, 64, size, layout=lay, exact=True)
            scaled = model.predict(Collective.ALLREDUCE, name, 64, size, layout=lay, exact=False)
            assert scaled.cost.total == pytest.approx(exact.cost.total, rel=1e-3), (name, size)


def test_16384_ranks_have_a_best_algorithm_at_every_size():
    """The model answers at 16384 ranks for every collective and size (how fast it answers is a
    benchmark, benchmarks/model_speed.py, not a timed test)."""
    from collbench.sizes import size_sweep

    model = Model(load_profile("perlmutter"))
    sizes = size_sweep(8, 1 << 34, 2, None)
    for coll in Collective:
        if coll is Collective.ALLTOALLV:  # per-pair costs stop at alltoallv.COST_RANKS (p^2 sizes)
            continue
        tables = predict_tables(model, coll, [4096], 4, sizes, None)
        assert all(tables[0].best(s) is not None for s in sizes), coll


def test_crossover_ring_vs_recursive_doubling():
    """Latency-bound small sizes go to recursive doubling, bandwidth-bound large ones to a
    bandwidth-optimal algorithm (ring or Rabenseifner), on any sane profile."""
    model = Model(load_profile("generic"))
    tables = predict_tables(model, Collective.ALLREDUCE, [1], 8, [8, 1 << 28], None)
    assert tables[0].best(8).algorithm == "recursive_doubling"
    assert tables[0].best(1 << 28).algorithm in ("ring", "rabenseifner", "double_binary_tree")
    assert tables[0].best(8).cost.dominant == "alpha"
    assert tables[0].best(1 << 28).cost.dominant in ("beta", "gamma")
