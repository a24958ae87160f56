"""--algo auto: per size, the model's (or a previous sweep's) fastest algorithm, the same on every rank."""

from __future__ import annotations

import pytest
from helpers import row, write

from cbtest import read_jsonl, run_cli
from collbench.algorithms import Collective
from collbench.analysis.model.predict import Model
from collbench.analysis.model.profile import load_profile
from collbench.analysis.select import Selector


def _everything(coll, name, dtype, op):
    return True


def test_selector_model_choice_is_the_cheapest_prediction():
    sel = Selector(8, None, _everything, auto_profile="generic")
    model = Model(load_profile("generic"))
    for size in (8, 1 << 12, 1 << 24):
        name, by = sel.choose(Collective.ALLREDUCE, size, "float32", "sum")
        assert by == "model:generic"
        best = min((model.predict(Collective.ALLREDUCE, a, 8, size) for a in
                    ("ring", "recursive_doubling", "rabenseifner", "tree", "double_binary_tree", "direct")),
                   key=lambda p: p.cost.total)
        assert name == best.algorithm


def test_selector_respects_what_the_backend_can_run():
    sel = Selector(8, None, lambda c, n, d, o: n != "recursive_doubling", auto_profile="generic")
    assert sel.choose(Collective.ALLREDUCE, 8, "float32", "sum")[0] != "recursive_doubling"


def test_selector_from_results_picks_the_fastest_measured_nearest_size(tmp_path):
    f = write(tmp_path / "sweep.jsonl", [row("tree", 8, 5.0, nranks=4), row("ring", 8, 9.0, nranks=4),
                                         row("tree", 1 << 20, 900.0, nranks=4),
                                         row("ring", 1 << 20, 300.0, nranks=4),
                                         row("native", 1 << 20, 250.0, nranks=4)])
    sel = Selector(4, None, _everything, auto_from=str(f))
    assert sel.choose(Collective.ALLREDUCE, 16, "float32", "sum") == ("tree", "results:sweep.jsonl")
    assert sel.choose(Collective.ALLREDUCE, 1 << 21, "float32", "sum")[0] == "native"
    no_native = Selector(4, None, lambda c, n, d, o: n != "native", auto_from=str(f))
    assert no_native.choose(Collective.ALLREDUCE, 1 << 21, "float32", "sum")[0] == "ring"


@pytest.mark.mpi
def test_auto_run_records_the_choice_on_every_row(tmp_path):
    out = tmp_path / "auto.jsonl"
    result = run_cli(["run", "allreduce", "allgather", "--algo", "auto", "--profile", "generic", "-np", "3",
                      "-b", "8", "-e", "4M", "-f", "32", "-n", "2", "-w", "1", "--out", str(out)],
                     timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "algorithm auto (model:generic" in result.stdout
    rows = [r for r in read_jsonl(out) if r["type"] == "row"]
    assert rows and all(r["wrong"] == 0 and r["selected_by"] == "model:generic" for r in rows)
    model, chosen = Model(load_profile("generic")), {}
    for r in rows:
        chosen.setdefault((r["collective"], r["bytes"]), set()).add(r["algorithm"])
    for (coll, nbytes), names in chosen.items():
        assert len(names) == 1                      # both placements ran the same algorithm
        coll_enum = Collective.parse(coll)
        preds = [model.predict(coll_enum, a.name, 3, nbytes) for a in
                 __import__("collbench.algorithms.registry", fromlist=["x"]).algorithms_for(coll_enum, False)]
        best = min((p for p in preds if p is not None), key=lambda p: p.cost.total)
        assert names == {best.algorithm}, (coll, nbytes)
    assert len({r["algorithm"] for r in rows if r["collective"] == "allreduce"}) >= 2   # a crossover


@pytest.mark.mpi
def test_auto_from_a_previous_sweep_and_a_bad_file(tmp_path):
    sweep = write(tmp_path / "prev.jsonl", [row("tree", 8, 1.0, nranks=2), row("ring", 8, 9.0, nranks=2),
                                            row("ring", 1 << 20, 5.0, nranks=2),
                                            row("tree", 1 << 20, 50.0, nranks=2)])
    out = tmp_path / "auto.jsonl"
    result = run_cli(["run", "allreduce", "--algo", "auto", "--auto-from", str(sweep), "-np", "2", "-b", "8",
                      "-e", "1M", "-f", "131072", "-n", "2", "-w", "1", "--placement", "out-of-place",
                      "--out", str(out)], timeout=200, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {r["bytes"]: r for r in read_jsonl(out) if r["type"] == "row"}
    assert rows[8]["algorithm"] == "tree" and rows[1 << 20]["algorithm"] == "ring"
    assert rows[8]["selected_by"] == "results:prev.jsonl"
    bad = run_cli(["run", "allreduce", "--algo", "auto", "--auto-from", str(tmp_path / "none.jsonl"), "-np", "2",
                   "-e", "64", "--out", str(tmp_path / "x.jsonl")], timeout=120, cwd=tmp_path)
    assert bad.returncode == 2 and "no such results file" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("args,message", [
    (["--algo", "ring", "--profile", "generic"], "add auto to --algo"),
    (["--algo", "auto", "--profile", "generic", "--auto-from", "x.jsonl"], "not both"),
])
def test_auto_option_mistakes(args, message, tmp_path):
    result = run_cli(["run", "allreduce", *args, "--out", str(tmp_path / "o.jsonl")], cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr
