"""Issue 11 parts 5-6: the model sees channels, and predict / --algo auto search variants."""

from __future__ import annotations

import json

from collbench.algorithms import Collective, Layout
from collbench.analysis.model.predict import Model, variants
from collbench.analysis.model.profile import load_profile
from collbench.analysis.select import Selector


def test_channels_raise_ring_bandwidth_where_there_are_links_to_use():
    per = Model(load_profile("perlmutter"))
    one = per.predict(Collective.ALLREDUCE, "ring", 4, 1 << 30)
    two = per.predict(Collective.ALLREDUCE, "ring", 4, 1 << 30, options={"channels": 2})
    assert two.busbw_gbps > 1.7 * one.busbw_gbps          # forward and backward rings: 2 links
    lay = Layout.blocked(64, 4)
    flat = per.predict(Collective.ALLREDUCE, "ring", 64, 1 << 30, layout=lay)
    rails = per.predict(Collective.ALLREDUCE, "ring", 64, 1 << 30, layout=lay,
                        options={"channels": 4})
    # 16 nodes: one ring crosses every node through one NIC; four rings through all four
    assert rails.busbw_gbps > 3 * flat.busbw_gbps and rails.busbw_gbps > 75
    delta = Model(load_profile("delta"))
    shared = delta.predict(Collective.ALLREDUCE, "ring", 64, 1 << 30, layout=lay,
                           options={"channels": 4})
    assert shared.busbw_gbps < 26                          # one NIC per node: nothing to gain
    nvs = Model(load_profile("dgx-a100"))
    assert nvs.predict(Collective.ALLREDUCE, "ring", 8, 1 << 30, options={"channels": 4}).busbw_gbps \
        <= nvs.predict(Collective.ALLREDUCE, "ring", 8, 1 << 30).busbw_gbps * 1.001


def test_variants_lists_the_options_worth_searching():
    assert {"channels": 4} in variants(Collective.ALLGATHER, "ring", 16)
    assert {"chunks": 16} in variants(Collective.ALLREDUCE, "double_binary_tree", 16)
    hier = variants(Collective.ALLREDUCE, "hierarchical", 64, Layout.blocked(64, 4))
    assert {} in hier and {"inner": "ring", "outer": "rabenseifner"} in hier
    assert variants(Collective.ALLREDUCE, "recursive_doubling", 16) == [{}]


def test_hierarchical_search_finds_rabenseifner_at_256_nodes():
    """The brief's example: at 256 Perlmutter nodes and 1 GiB the hierarchical allreduce with an
    inter-node Rabenseifner is several times faster than with its default recursive doubling."""
    model = Model(load_profile("perlmutter"))
    lay = Layout.blocked(1024, 4)
    default = model.predict(Collective.ALLREDUCE, "hierarchical", 1024, 1 << 30, layout=lay)
    best = model.best_variant(Collective.ALLREDUCE, "hierarchical", 1024, 1 << 30, layout=lay)
    assert best.options["outer"] == "rabenseifner"
    assert default.time_us / best.time_us > 2.5


def test_predict_reports_the_winning_variant(capsys):
    from collbench.cli import main

    assert main(["model", "predict", "--profile", "perlmutter", "--nodes", "16", "--sizes", "1G",
                 "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    ring = next(r for r in records if r["algorithm"] == "ring")
    assert ring["options"] == {"channels": 4}
    native = next(r for r in records if r["algorithm"] == "native")
    assert native["method"].startswith("nccl ring/")
    assert main(["model", "predict", "--profile", "perlmutter", "--nodes", "16", "--sizes", "1G",
                 "--defaults-only", "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert all(r["options"] == {} for r in records if r["algorithm"] != "native")


def test_auto_searches_variants():
    sel = Selector(1024, Layout.blocked(1024, 4), lambda *a: True, "perlmutter")
    name, options, source = sel.choose_variant(Collective.ALLREDUCE, 1 << 30, "float32", "sum")
    assert source == "model:perlmutter" and options      # a non-default variant wins
    pinned = Selector(64, Layout.blocked(64, 4), lambda c, n, d, o: n == "ring", "perlmutter",
                      algorithm_options={"channels": 2})
    assert pinned.choose_variant(Collective.ALLREDUCE, 1 << 30, "float32", "sum")[1] == {"channels": 2}
