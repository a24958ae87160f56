"""Costs registered beside the generator (algorithms/traffic.py, Implementation.cost): the model
prices them, they equal the schedule walk exactly, and ``collbench model predict`` uses them.

The flat alltoall algorithms are also in tests/analysis/test_model_crosscheck.py (it sweeps
every collective); this file adds the hierarchical alltoall on every node shape and the
registry hook itself."""

from __future__ import annotations

import pytest

from cbtest import run_cli
from collbench.algorithms import Collective, Layout, Problem, alltoall, register, unregister
from collbench.algorithms.traffic import Traffic
from collbench.analysis.model.cost import Link, Machine, Phase, total
from collbench.analysis.model.forms import phases
from collbench.analysis.model.walk import step_signatures

MACHINES = [
    Machine(Link(1e-6, 1e-9, 1), Link(5e-6, 4e-9), nics=1, gamma=3e-10, delta=2e-10),
    Machine(Link(2e-6, 1e-10, 3), Link(3e-6, 5e-9), nics=2, gamma=1e-9, delta=7e-11),
]
A2A = Collective.ALLTOALL


def _assert_closed_equals_walk(name, problem, in_place, options=None):
    closed = phases(name, problem, 4, in_place, options)
    assert closed is not None
    walked = [Phase(1, s) for _, s in step_signatures(name, problem, 4, in_place, options)]
    for m in MACHINES:
        a, b = total(closed, m).total, total(walked, m).total
        assert a == pytest.approx(b, rel=1e-12, abs=1e-18), (name, problem, in_place, a, b)


def test_hierarchical_alltoall_every_node_shape():
    for p in range(1, 25):
        for per_node in (g for g in range(1, p + 1) if p % g == 0):
            layouts = [Layout.blocked(p, per_node)]
            if 1 < per_node < p:
                layouts.append(Layout.round_robin(p, p // per_node))  # unpacked into the output
            for layout in layouts:
                for count in (1, 7):
                    for in_place in (False, True):
                        _assert_closed_equals_walk("hierarchical", Problem(A2A, p, count, layout=layout),
                                                   in_place)


def test_flat_alltoall_any_layout_any_count():
    for name in ("pairwise", "direct", "bruck"):
        for p in (2, 3, 5, 6, 8, 12):
            for layout in (None, Layout.blocked(p, 2), Layout.round_robin(p, 2), Layout.blocked(p, 5)):
                for count in (1, 13):
                    _assert_closed_equals_walk(name, Problem(A2A, p, count, layout=layout), count == 13)


def test_phases_consults_the_registered_cost_first():
    """A user algorithm with a cost function: the model prices the cost, not a walk."""
    calls = []

    def cost(problem, options, in_place):
        calls.append((problem.nranks, dict(options), in_place))
        return [Traffic(copy=problem.count * problem.nranks, repeat=3)]

    register("toy_alltoall", A2A, alltoall.direct, cost=cost, defaults={"knob": 1},
             description="direct, with a made-up cost")
    try:
        got = phases("toy_alltoall", Problem(A2A, 4, 10), 8, in_place=True)
    finally:
        unregister("toy_alltoall")
    assert calls == [(4, {"knob": 1}, True)]
    assert len(got) == 1 and got[0].repeat == 3 and got[0].candidates[0].copy == 10 * 4 * 8


def test_model_predict_alltoall_cli(tmp_path):
    result = run_cli(["model", "predict", "--collective", "alltoall", "--nodes", "1,2",
                      "--gpus-per-node", "4", "--sizes", "1K,1M"], cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    for name in ("pairwise", "direct", "bruck", "hierarchical"):
        assert name in result.stdout


@pytest.mark.parametrize("collective", [Collective.ALLTOALL, Collective.ALLTOALLV])
def test_nccl_own_alltoall_is_its_grouped_send_recv_not_a_tuned_collective(collective) -> None:
    """NCCL's tuning model (ring/tree x LL/LL128/Simple) covers the reductions and gathers only;
    its alltoall is one group of ncclSend/ncclRecv to every peer. ``native`` on nccl is priced
    as the direct schedule on NCCL p2p, not as a ring/LL chain."""
    from collbench.analysis.model.predict import Model
    from collbench.analysis.model.profile import load_profile

    model = Model(load_profile("perlmutter"))
    layout = Layout.blocked(16, 4)
    for size in (4096, 1 << 20, 64 << 20):
        native = model.predict(collective, "native", 16, size, layout=layout, backend="nccl")
        direct = model.predict(collective, "direct", 16, size, layout=layout, backend="nccl")
        assert native is not None and direct is not None
        assert native.cost.total == pytest.approx(direct.cost.total)
        assert native.method == "nccl p2p (direct)"


def test_the_model_prices_the_alltoallv_count_matrix_it_is_given() -> None:
    """``--algo auto -O skew=S`` and ``model predict --skew S`` price alltoallv with that
    matrix, not the default Zipf 1: at 4 Perlmutter nodes the hierarchical schedule (which
    funnels each node's traffic through the NICs) costs more on a uniform matrix than on a
    skewed one, and the two choices differ."""
    import json

    from collbench.algorithms.vcounts import Skew
    from collbench.analysis.select import Selector

    layout = Layout.blocked(16, 4)
    times = {}
    chosen = {}
    for s in (0.0, 3.0):
        selector = Selector(16, layout, lambda *_: True, "perlmutter", skew=Skew(s))
        chosen[s] = selector.choose_variant(Collective.ALLTOALLV, 64 << 20, "float32", None)[0]
        result = run_cli(["model", "predict", "--profile", "perlmutter", "--collective", "alltoallv",
                          "--nodes", "4", "--gpus-per-node", "4", "--sizes", "64M", "--skew", str(s),
                          "--format", "json"])
        assert result.returncode == 0, result.stderr
        records = {r["algorithm"]: r for r in json.loads(result.stdout)}
        assert {r["skew"] for r in records.values()} == {f"zipf:{s:g}"}
        times[s] = records["hierarchical"]["time_us"]
        assert [n for n, r in records.items() if r["best"]] == [chosen[s]]
    assert times[0.0] > times[3.0]
    assert chosen[0.0] != chosen[3.0]


def test_model_predict_refuses_a_bad_skew_in_one_line() -> None:
    for args in (["--collective", "alltoallv", "--skew", "x"], ["--collective", "alltoallv", "--skew", "-1"],
                 ["--collective", "allreduce", "--skew", "1"]):
        result = run_cli(["model", "predict", *args])
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1 and "--skew" in result.stderr, result.stderr


def test_model_check_prices_alltoallv_rows_with_the_files_count_matrix(tmp_path) -> None:
    """A results file records its alltoallv matrix in the metadata (spec.skew); model check
    judges its rows with that matrix, not the default."""
    from helpers import meta, row, write

    from collbench.algorithms import vcounts
    from collbench.algorithms.vcounts import Skew
    from collbench.analysis.model.check import check
    from collbench.analysis.model.predict import Model
    from collbench.analysis.model.profile import load_profile

    profile = load_profile("perlmutter")
    layout = Layout.blocked(16, 4)
    got = {}
    for s in (0.0, 3.0):
        metadata = meta(16, 4)
        metadata["spec"]["skew"] = vcounts.to_record(Skew(s))
        f = write(tmp_path / f"a2av-{s:g}.jsonl",
                  [row("hierarchical", 64 << 20, 2000.0, nranks=16, collective="alltoallv")], metadata)
        _, checked = check([str(f)], profile)
        want = Model(profile, Skew(s)).predict(Collective.ALLTOALLV, "hierarchical", 16, 64 << 20,
                                               layout=layout, exact=True)
        assert checked[0].predicted_us == pytest.approx(want.time_us)
        got[s] = checked[0].predicted_us
    assert got[0.0] != pytest.approx(got[3.0])


def test_a_count_matrix_survives_its_record() -> None:
    from collbench.algorithms import vcounts
    from collbench.algorithms.vcounts import Skew

    for skew in (None, Skew(0.0), Skew(2.5), Skew(weights=((0, 1, 2), (3, 0, 1), (1, 1, 0)), source="m.json")):
        assert vcounts.from_record(vcounts.to_record(skew)) == skew
    with pytest.raises(ValueError):
        vcounts.from_record([1, 2])
