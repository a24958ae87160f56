"""Lab 6 (docs/labs/lab6-training-step.md): GPT-2's step on both machines as the lab's table
says, and DDP measured here at 1/64 scale."""

from __future__ import annotations

import pytest
from labdoc import LABS, pipe_tables, run_lab

LAB = "lab6-training-step.md"
pytestmark = pytest.mark.mpi


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    return run_lab(LAB, tmp_path_factory.mktemp("lab6"), slow=False)


def _ms(cell: str) -> float:
    value, unit = cell.split()
    return float(value) * {"ms": 1.0, "s": 1e3, "us": 1e-3}[unit]


def _predictions(lab):
    out = lab.out("predict")
    perlmutter, delta = out.split("# profile delta")
    return {name: {plan: {int(r["nodes"]): r for r in rows} for plan, rows in pipe_tables(text).items()}
            for name, text in (("perlmutter", perlmutter), ("delta", delta))}


def test_table_in_the_lab_is_what_predict_prints(lab):
    pred = _predictions(lab)
    lines = [line for line in (LABS / LAB).read_text().splitlines() if line.startswith("| ddp") or line.startswith("| zero3")]
    assert len(lines) == 8
    for line in lines:
        plan, nodes, per, delta, compute = [c.strip() for c in line.strip("|").split("|")]
        for name, cell in (("perlmutter", per), ("delta", delta)):
            row = pred[name][plan][int(nodes)]
            assert cell == f"{row['comm/step']} ({row['comm/compute']})", (name, line)
            assert compute == row["compute/step"]


def test_delta_about_twice_perlmutter_across_nodes_and_comm_dominates_at_64(lab):
    pred = _predictions(lab)
    for plan in ("ddp", "zero3"):
        assert pred["perlmutter"][plan][1]["comm/step"] == pred["delta"][plan][1]["comm/step"]
        for nodes in (2, 16, 64):
            ratio = _ms(pred["delta"][plan][nodes]["comm/step"]) / _ms(pred["perlmutter"][plan][nodes]["comm/step"])
            assert 1.9 <= ratio <= 2.5, (plan, nodes, ratio)
    for name in pred:
        assert all(float(pred[name][plan][64]["comm/compute"]) > 1 for plan in pred[name])
        assert _ms(pred[name]["zero3"][64]["comm/step"]) < _ms(pred[name]["ddp"][64]["comm/step"])
    assert _ms(pred["perlmutter"]["ddp+tp4"][64]["comm/step"]) < _ms(pred["perlmutter"]["ddp"][64]["comm/step"])
    assert "NIC bandwidth ÷4, shared with other groups" in pred["delta"]["ddp+tp4"][64]["bound by"]


def test_show_and_ddp_run(lab):
    assert "groups: dp: 8 ranks over 2 nodes, 4 per node" in lab.out("show")
    out = lab.out("run-ddp")
    assert "# #wrong total: 0" in out and "plan ddp+dp2 · 2 ranks" in out
    assert out.count(" allreduce ") >= 3 and "gradient bucket 1 " in out
    check = lab.results["check-ddp"][0]
    verdict = "verdict: ok" if check.returncode == 0 else "verdict: outside ±30%"
    assert verdict in check.stdout and "per step (busiest stage): predicted" in check.stdout


@pytest.mark.slow
def test_zero3_run(tmp_path):
    lab = run_lab(LAB, tmp_path, slow=True)
    out = lab.out("run-zero3")
    assert "# #wrong total: 0" in out and " reduce_scatter " in out and " allgather " in out
    assert "verdict: " in lab.out("check-zero3")
