"""``collbench workload run`` under a real mpiexec (small scaled steps), its results file, and
``workload check`` on it."""

from __future__ import annotations

import pytest

from cbtest import read_jsonl, run_cli
from collbench.results.files import read_results

pytestmark = pytest.mark.mpi

FAST = ["-n", "3", "-w", "1", "--step-repeats", "2"]


def _run(tmp_path, name, *args, np_=2):
    out = tmp_path / f"{name}.jsonl"
    result = run_cli(["workload", "run", *args, "-np", str(np_), *FAST, "--out", str(out)], timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result.stdout


def _records(out):
    records = read_jsonl(out)
    meta = records[0]
    rows = [r for r in records if r["type"] == "row"]
    step = [r for r in records if r["type"] == "workload_step"]
    summary = [r for r in records if r["type"] == "summary"]
    return meta, rows, step[0], summary[0]


def test_ddp_step_runs_validates_and_checks(tmp_path):
    out, stdout = _run(tmp_path, "ddp", "gpt2", "--plan", "ddp", "--scale", "1/256")
    meta, rows, step, summary = _records(out)
    assert meta["workload"]["plan"] == "ddp+dp2" and meta["workload"]["scale"] == pytest.approx(1 / 256)
    assert rows and all(r["wrong"] == 0 for r in rows) and summary["wrong_total"] == 0
    assert {r["collective"] for r in rows} == {"allreduce"}
    # one row per distinct bucket size; the calls add up to the step's buckets
    assert sum(max(r["workload"]["calls_by_stage"].values()) for r in rows) == 7
    assert step["measured_step"]["repeats"] == 2 and step["sum_of_rows"]["us"] > 0
    # unscaled sizes are kept: the whole model's gradients, 2 bytes each
    assert sum(r["workload"]["unscaled_bytes"] * max(r["workload"]["calls_by_stage"].values())
               for r in rows if r["workload"]["what"].startswith("gradient bucket ")) > 0
    assert read_results(out).complete            # collbench's own reader takes the file
    result = run_cli(["workload", "check", str(out), "--profile", "generic"])
    assert result.returncode in (0, 1), result.stderr
    assert "predicted" in result.stdout and "verdict:" in result.stdout
    # never overwrite
    again = run_cli(["workload", "run", "gpt2", "-np", "2", "--out", str(out)])
    assert again.returncode == 2 and "already exists" in again.stderr


def test_zero3_step(tmp_path):
    out, _ = _run(tmp_path, "zero3", "gpt2", "--plan", "zero3", "--scale", "1/256", "--algo", "ring")
    meta, rows, step, summary = _records(out)
    assert {r["collective"] for r in rows} == {"allgather", "reduce_scatter"}
    assert {r["algorithm"] for r in rows} == {"ring"}
    assert summary["wrong_total"] == 0 and all(r["wrong"] == 0 for r in rows)


def test_tensor_and_pipeline_groups(tmp_path):
    out, stdout = _run(tmp_path, "tppp", "gpt2", "--plan", "tp2+pp2", "--scale", "1/256", "--seq-len", "64",
                       np_=4)
    meta, rows, step, summary = _records(out)
    groups = {r["workload"]["group"] for r in rows}
    assert {"tp", "pp 0-1", "embedding"} <= groups
    p2p = [r for r in rows if r["workload"]["collective"] == "p2p"]
    assert p2p and all(r["collective"] == "broadcast" and r["nranks"] == 2 for r in p2p)
    assert {r["root"] for r in p2p} == {0, 1}                 # forward from stage 0, backward from 1
    # the layers' allreduces run on both stages' TP groups at once; the loss's only on the last stage
    layers = [r for r in rows if r["workload"]["what"].startswith("transformer layers")]
    assert layers and all(r["workload"]["groups_measured"] == 2 for r in layers)
    loss = [r for r in rows if r["workload"]["what"].startswith("cross-entropy")]
    assert loss and loss[0]["workload"]["groups_measured"] == 1
    assert summary["wrong_total"] == 0


def test_expert_parallel_alltoall(tmp_path):
    out, _ = _run(tmp_path, "ep", "mixtral-8x7b", "--plan", "ep2", "--seq-len", "64", "--scale", "1/4096")
    meta, rows, step, summary = _records(out)
    a2a = [r for r in rows if r["collective"] == "alltoall"]
    assert a2a and a2a[0]["workload"]["calls_by_stage"]["0"] == 4 * 32
    assert summary["wrong_total"] == 0


def test_nccl_backend_through_the_cpu_fake(tmp_path):
    """The nccl path through the same backend interface, on tests/gpu/fakecuda (two processes,
    each its own fake GPU). The fake's NCCL spans MPI's world only, so sub-group communicators
    (tp and dp groups at once) need a real GPU node."""
    import os

    from gpu.fakecuda import FAKECUDA  # the one fake CuPy (tests/gpu/fakecuda)

    env = {"PYTHONPATH": FAKECUDA + os.pathsep + os.environ.get("PYTHONPATH", ""), "FAKECUDA_UUID": "per-rank",
           "FAKECUDA_NCCL_DIR": str(tmp_path)}
    out = tmp_path / "nccl.jsonl"
    result = run_cli(["workload", "run", "gpt2", "--plan", "ddp", "--backend", "nccl", "--scale", "1/256",
                      "-np", "2", *FAST, "--out", str(out)], env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    meta, rows, step, summary = _records(out)
    assert meta["backend"]["backend"] == "nccl"
    assert {r["algorithm"] for r in rows} == {"native"}          # nccl's default: NCCL's own allreduce
    assert summary["wrong_total"] == 0
