"""The GPU backends' Python, end to end through the real CLI and mpiexec, on a CPU-only fake of
CuPy/NCCL (tests/gpu/fakecuda): buffer views, call sequences, graph capture, validation and
metadata. What needs a real device (kernels, IPC, NCCL itself) runs in scripts/gpu_check.sh."""

from __future__ import annotations

import os

import pytest
from fakecuda import FAKECUDA  # the one fake CuPy (tests/gpu/fakecuda)

from cbtest import read_jsonl, run_cli

pytestmark = pytest.mark.mpi


def _fake_env(**knobs: str) -> dict[str, str]:
    """The fake CuPy first on the path, plus FAKECUDA_* knobs (see fakecuda/cupy/__init__.py)."""
    return {"PYTHONPATH": FAKECUDA + os.pathsep + os.environ.get("PYTHONPATH", ""), **knobs}


def test_nccl_backend_every_collective_validates(tmp_path):
    out = tmp_path / "nccl.jsonl"
    result = run_cli(["run", "allreduce", "allgather", "reduce_scatter", "broadcast", "reduce",
                      "--backend", "nccl", "-np", "1", "-d", "float32,bfloat16,int8,float16",
                      "-o", "sum,avg,min", "-b", "0", "-e", "4K", "-f", "16", "-n", "2", "-w", "1",
                      "--nccl-algo", "Ring", "--out", str(out)], env=_fake_env(), timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    records = read_jsonl(out)
    meta, rows = records[0], [r for r in records if r["type"] == "row"]
    assert meta["backend"]["backend"] == "nccl" and meta["backend"]["nccl_version"] == "2.32.3"
    assert meta["backend"]["devices"][0]["name"] == "Fake GPU"
    assert meta["env"]["NCCL_ALGO"] == "Ring"
    assert rows and all(r["wrong"] == 0 for r in rows)
    # NCCL does bfloat16 and avg natively: nothing was skipped
    assert {("allreduce", "bfloat16", "avg"), ("reduce_scatter", "float16", "min")} <= {
        (r["collective"], r["dtype"], r["op"]) for r in rows}
    assert {r["placement"] for r in rows if r["collective"] == "broadcast"} == {"out_of_place", "in_place"}


def test_nccl_graph_mode_and_custom_schedules(tmp_path):
    out = tmp_path / "graph.jsonl"
    result = run_cli(["run", "allreduce", "allgather", "--backend", "nccl", "--algo", "all", "-np", "1",
                      "-G", "5", "-n", "3", "-b", "8", "-e", "1K", "-f", "8", "-o", "sum,avg",
                      "--out", str(out)], env=_fake_env(), timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    records = read_jsonl(out)
    rows = [r for r in records if r["type"] == "row"]
    assert records[0]["spec"]["graph_replays"] == 5
    assert {r["executor"] for r in rows} == {"library", "nccl-p2p"}
    assert {"ring", "recursive_doubling", "bruck", "native"} <= {r["algorithm"] for r in rows}
    assert all(r["wrong"] == 0 for r in rows)


def test_nccl_alltoall_native_and_schedules_over_grouped_send_recv(tmp_path):
    """alltoall on NCCL: the native entry is one group of ncclSend/ncclRecv per peer (NCCL has
    no alltoall call), out of place only; the schedules run over grouped send/recv too. Two
    ranks, so messages really cross (the fake moves a group's messages over MPI)."""
    out = tmp_path / "a2a.jsonl"
    result = run_cli(["run", "alltoall", "--backend", "nccl", "--algo", "native,pairwise,bruck", "-np", "2",
                      "-d", "float32,int8", "-b", "0", "-e", "4K", "-f", "8", "-n", "2", "-w", "1",
                      "--out", str(out)],
                     env=_fake_env(FAKECUDA_UUID="per-rank", FAKECUDA_NCCL_DIR=str(tmp_path)), timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [r for r in read_jsonl(out) if r["type"] == "row"]
    assert rows and all(r["wrong"] == 0 for r in rows), [r for r in rows if r["wrong"]][:2]
    seen = {(r["algorithm"], r["placement"], r["executor"]) for r in rows}
    assert ("native", "out_of_place", "library") in seen
    assert ("native", "in_place", "library") not in seen        # refused: one buffer would race
    assert {("pairwise", "in_place", "nccl-p2p"), ("bruck", "out_of_place", "nccl-p2p")} <= seen
    assert any(r["count"] > 0 and r["bytes"] == r["count"] * 2 * (4 if r["dtype"] == "float32" else 1)
               for r in rows)


def test_gpu_flags_are_checked_before_launch(tmp_path):
    for args, message in ((["-G", "4"], "needs a GPU backend"),
                          (["--backend", "nccl", "-G", "4", "-I"], "cannot be combined with -G"),
                          (["--stage-host"], "only makes sense with --device cuda"),
                          (["--backend", "nccl", "--gpu-map", "a,b"], "comma-separated device indices")):
        result = run_cli(["run", *args], env=_fake_env(), cwd=tmp_path)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)


def test_nccl_refuses_two_ranks_on_one_gpu(tmp_path):
    result = run_cli(["run", "--backend", "nccl", "-np", "2", "-e", "8", "--out", str(tmp_path / "x.jsonl")],
                     env=_fake_env(), timeout=120)
    assert result.returncode == 2
    assert "NCCL needs one GPU per rank, but ranks 0, 1 would share GPU 0" in result.stderr
    assert "GPU-0101" in result.stderr  # named by its UUID: the index says nothing across ranks


def test_nccl_accepts_per_task_gpu_binding(tmp_path):
    """srun --gpus-per-task=1 and friends: every rank sees its own GPU as device 0. Distinct
    UUIDs are distinct GPUs, so the run goes ahead (NCCL across two processes, validated)."""
    out = tmp_path / "bound.jsonl"
    result = run_cli(["run", "allreduce", "reduce_scatter", "broadcast", "--backend", "nccl", "-np", "2",
                      "-d", "float32,bfloat16", "-o", "sum,avg", "-b", "8", "-e", "1K", "-f", "8", "-n", "2",
                      "-w", "1", "--out", str(out)],
                     env=_fake_env(FAKECUDA_UUID="per-rank", FAKECUDA_NCCL_DIR=str(tmp_path)), timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    records = read_jsonl(out)
    rows = [r for r in records if r["type"] == "row"]
    assert rows and all(r["nranks"] == 2 and r["wrong"] == 0 for r in rows)
    devices = records[0]["backend"]["devices"]
    assert [d["index"] for d in devices] == [0, 0] and len({d["uuid"] for d in devices}) == 2


def test_nccl_init_failure_on_one_rank_stops_every_rank(tmp_path):
    """ncclCommInitRank raises on rank 1; the others would wait for it in NCCL's bootstrap
    forever. Every rank stops at once, with one line naming rank 1 and its error."""
    result = run_cli(["run", "allreduce", "--backend", "nccl", "-np", "3", "-e", "64", "--out", str(tmp_path / "x.jsonl")],
                     env=_fake_env(FAKECUDA_UUID="per-rank", FAKECUDA_NCCL_DIR=str(tmp_path),
                                   FAKECUDA_NCCL_INIT_FAIL_RANK="1", COLLBENCH_NCCL_INIT_TIMEOUT="60"),
                     timeout=50)  # well under the init deadline: the verdict must not wait for it
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert errors == [("collbench: error: NCCL initialisation failed on rank 1: NcclError: NCCL_ERROR_SYSTEM_ERROR: "
                       "fake init failure on rank 1; every rank stopped")]
    assert not (tmp_path / "x.jsonl").exists()


def test_nccl_init_that_never_returns_ends_at_the_deadline(tmp_path):
    """Rank 1 never reaches NCCL's bootstrap, so every rank waits in ncclCommInitRank. At the
    deadline all ranks stop together, with one line (no rank can tell whose fault it is)."""
    result = run_cli(["run", "allreduce", "--backend", "nccl", "-np", "2", "-e", "64", "--out", str(tmp_path / "x.jsonl")],
                     env=_fake_env(FAKECUDA_UUID="per-rank", FAKECUDA_NCCL_DIR=str(tmp_path),
                                   FAKECUDA_NCCL_INIT_HANG_RANK="1", FAKECUDA_NCCL_BOOTSTRAP_TIMEOUT="60",
                                   COLLBENCH_NCCL_INIT_TIMEOUT="3"),
                     timeout=50)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith(
        "collbench: error: NCCL initialisation did not finish within 3 s on every rank"), errors


def test_graph_mode_validates_the_graph_replay(tmp_path):
    """A capture that loses the operation (here: the fake drops all captured work) must fail
    validation in graph mode; validating an eager call instead would report 0 wrong."""
    env = _fake_env(FAKECUDA_GRAPH_DROPS_WORK="1")
    args = ["run", "allreduce", "--backend", "nccl", "-np", "1", "-b", "8", "-e", "256", "-f", "4", "-n", "2"]
    graph = run_cli([*args, "-G", "3", "--out", str(tmp_path / "graph.jsonl")], env=env, timeout=120)
    eager = run_cli([*args, "--out", str(tmp_path / "eager.jsonl")], env=env, timeout=120)
    assert eager.returncode == 0, eager.stderr[-2000:]
    assert graph.returncode == 1, graph.stderr[-2000:]  # wrong values
    rows = [r for r in read_jsonl(tmp_path / "graph.jsonl") if r["type"] == "row"]
    # at one rank an in-place allreduce is the identity, so only out-of-place rows can show it
    assert all(r["wrong"] > 0 for r in rows if r["placement"] == "out_of_place")


def test_mpi_on_device_buffers_without_cuda_aware_mpi(tmp_path):
    refused = run_cli(["run", "--backend", "mpi", "--device", "cuda", "-np", "2", "-e", "64"],
                      env=_fake_env(), cwd=tmp_path, timeout=120)
    assert refused.returncode == 2
    assert "not CUDA-aware" in refused.stderr and "--stage-host" in refused.stderr
    out = tmp_path / "staged.jsonl"
    staged = run_cli(["run", "allreduce", "allgather", "--backend", "mpi", "--device", "cuda", "--stage-host",
                      "-np", "2", "-b", "8", "-e", "4K", "-f", "8", "--out", str(out)], env=_fake_env(), timeout=120)
    assert staged.returncode == 0, staged.stderr[-2000:]
    rows = [r for r in read_jsonl(out) if r["type"] == "row"]
    assert rows and all(r["wrong"] == 0 and r["executor"] == "staged-host" for r in rows)
