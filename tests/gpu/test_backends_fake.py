"""The GPU backends' Python, end to end through the real CLI and mpiexec, on a CPU-only fake of
CuPy/NCCL (tests/gpu/fakecuda): buffer views, call sequences, graph capture, validation and
metadata. What needs a real device (kernels, IPC, NCCL itself) runs in scripts/gpu_check.sh."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cbtest import read_jsonl, run_cli

FAKE = str(Path(__file__).parent / "fakecuda")
pytestmark = pytest.mark.mpi


def _fake_env() -> dict[str, str]:
    return {"PYTHONPATH": FAKE + os.pathsep + os.environ.get("PYTHONPATH", "")}


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
