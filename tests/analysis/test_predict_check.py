"""collbench model predict / model check on the command line."""

from __future__ import annotations

import json

from helpers import meta, row, write

from cbtest import run_cli
from collbench.algorithms import Collective, Layout
from collbench.analysis.model.check import check
from collbench.analysis.model.predict import Model
from collbench.analysis.model.profile import load_profile


def test_predict_tables_crossovers_and_dominant_terms():
    result = run_cli(["model", "predict", "--profile", "perlmutter", "--collective", "allreduce",
                      "--nodes", "1..4", "--gpus-per-node", "4", "--sizes", "8,64K,1G"])
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for text in ("## 1 node x 4 ranks per node = 4 ranks", "## 4 nodes x 4 ranks per node = 16 ranks",
                 "crossovers:", "α 100%", "hierarchical", "double_binary_tree", "4 NIC(s)/node"):
        assert text in out, text
    records = json.loads(run_cli(["model", "predict", "--profile", "delta", "--nodes", "2",
                                  "--gpus-per-node", "4", "--sizes", "1M", "--format", "json"]).stdout)
    assert sum(r["best"] for r in records) == 1
    assert all(r["nranks"] == 8 and r["time_us"] > 0 and r["busbw_gbps"] > 0 for r in records)


def test_predict_mistakes_are_one_line():
    for args, message in ((["--collective", "scan"], "unknown collective"),
                          (["--algo", "bruck"], "no allreduce schedule"),
                          (["--nodes", "0"], "--nodes"),
                          (["--profile", "nowhere.json"], "no such profile")):
        result = run_cli(["model", "predict", *args])
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1


def test_check_verdicts_and_ranking(tmp_path):
    profile = load_profile("generic")
    model = Model(profile)
    lay = Layout.blocked(4, 2)

    def predicted(algo, nbytes):
        return model.predict(Collective.ALLREDUCE, algo, 4, nbytes, layout=lay, exact=True).time_us

    rows = [row("ring", 1 << 20, predicted("ring", 1 << 20) * 1.1, nranks=4),
            row("recursive_doubling", 1 << 20, predicted("recursive_doubling", 1 << 20) * 0.4, nranks=4),
            row("native", 1 << 20, 10.0, nranks=4, executor="library")]
    f = write(tmp_path / "r.jsonl", rows, meta(4, 2))
    text, checked = check([str(f)], profile)
    verdicts = {c.row.algorithm: c.verdict(0.25) for c in checked}
    assert verdicts == {"ring": "ok", "recursive_doubling": "over", "native": "no model"}
    assert "1 of 2 modelled rows within ±25%" in text
    assert "# ranking:" in text
    result = run_cli(["model", "check", str(f), "--profile", "generic", "--format", "json"])
    assert result.returncode == 0
    assert {r["verdict"] for r in json.loads(result.stdout)} == {"ok", "over", "no model"}
