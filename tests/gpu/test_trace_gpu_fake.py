"""--nvtx and --nccl-log end to end, through the real CLI and mpiexec, on the CPU fake of CuPy
(tests/gpu/fakecuda records NVTX pushes and pops per rank, and writes NCCL-format INFO lines to
NCCL_DEBUG_FILE when asked). A real NCCL log and an Nsight capture need a GPU (docs/tracing.md)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fakecuda import FAKECUDA  # the one fake CuPy (tests/gpu/fakecuda)

from cbtest import read_jsonl, run_cli
from collbench.algorithms import Collective, Problem
from collbench.execute.bind import lower
from collbench.execute.programs import build_program
from collbench.trace.nvtx import STEP_SEPARATOR

pytestmark = pytest.mark.mpi


def _env(tmp_path: Path, **knobs: str) -> dict[str, str]:
    nvtx_dir = tmp_path / "nvtx"
    nvtx_dir.mkdir(exist_ok=True)
    return {"PYTHONPATH": FAKECUDA + os.pathsep + os.environ.get("PYTHONPATH", ""), "FAKECUDA_UUID": "per-rank",
            "FAKECUDA_NCCL_DIR": str(tmp_path), "FAKECUDA_NVTX_DIR": str(nvtx_dir), **knobs}


def _tree(path: Path) -> list[dict]:
    """A rank's NVTX log as a tree of {"name", "children"}; fails on a pop without a push or a
    range left open."""
    root: dict = {"name": None, "children": []}
    stack = [root]
    for line in path.read_text().splitlines():
        if line.startswith("push\t"):
            node = {"name": line[5:], "children": []}
            stack[-1]["children"].append(node)
            stack.append(node)
        else:
            assert line == "pop" and len(stack) > 1, f"{path}: pop without a push"
            stack.pop()
    assert len(stack) == 1, f"{path}: {len(stack) - 1} ranges left open"
    return root["children"]


def _step_indices(collective: Collective, algorithm: str, nranks: int, count: int, rank: int) -> list[int]:
    problem = Problem(collective, nranks, count, 0, None)
    return [s.index for s in lower(problem, build_program(algorithm, problem, rank, {}), False, None).steps]


def test_nvtx_ranges_and_nccl_log(tmp_path):
    out = tmp_path / "r.jsonl"
    # allgather: the fake cannot run our reduction kernels, so no reducing schedule at 2 ranks here
    result = run_cli(["run", "allgather", "--backend", "nccl", "--algo", "native,ring", "-np", "2",
                      "-b", "64", "-e", "64", "-n", "3", "-w", "2", "--placement", "out-of-place",
                      "--nvtx", "--nccl-log", "--out", str(out)], env=_env(tmp_path), timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    records = read_jsonl(out)
    meta, rows = records[0], [r for r in records if r["type"] == "row"]
    assert [(r["algorithm"], r["wrong"]) for r in rows] == [("native", 0), ("ring", 0)]
    assert meta["spec"]["nvtx"] is True

    for rank in (0, 1):
        measurements = _tree(tmp_path / "nvtx" / f"nvtx.{rank}.log")
        assert [m["name"] for m in measurements] == [
            f"measure {r['collective']} {r['algorithm']} {r['bytes']} B float32{' sum' if r['op'] else ''} out-of-place"
            for r in rows]
        for measurement, row in zip(measurements, rows):
            collective = f"{row['collective']} {row['algorithm']} {row['bytes']} B"
            phases = {p["name"]: p["children"] for p in measurement["children"]}
            assert list(phases) == ["warm-up", f"timed loop ({row['iterations']} iterations)", "validation"]
            ops = [len(phases["warm-up"]), len(phases[f"timed loop ({row['iterations']} iterations)"]),
                   len(phases["validation"])]
            assert ops == [2, 3, 1]  # -w 2, -n 3, -c 1: one range per operation
            for op in (o for children in phases.values() for o in children):
                assert op["name"] == collective
                steps = [s["name"] for s in op["children"]]
                if row["algorithm"] == "native":
                    assert steps == []  # one NCCL call: its kernels sit in the collective's range
                else:
                    expected = _step_indices(Collective.parse(row["collective"]), "ring", 2, row["count"], rank)
                    assert steps == [f"{collective}{STEP_SEPARATOR}step {i}" for i in expected] and expected

    # --nccl-log: one file per rank beside the results, summarised in the metadata
    directory = tmp_path / "r.nccl"
    assert meta["spec"]["nccl_log"] == str(directory) and len(list(directory.glob("nccl.*.log"))) == 2
    summary = meta["nccl_log"]
    assert summary["problems"] == [] and summary["nccl_version"] == "2.32.3+cuda13.0"
    assert summary["transports"] == ["P2P/NVLink"] and summary["connections"] == {"P2P/CUMEM/read": 4}
    assert summary["network"] == ["Socket"] and len(summary["ranks"]) == 2
    assert meta["env"]["NCCL_DEBUG"] == "INFO" and meta["env"]["NCCL_DEBUG_SUBSYS"] == "INIT,BOOTSTRAP,ENV,GRAPH"
    assert "warning" not in result.stderr


def test_off_by_default_and_graph_mode(tmp_path):
    out = tmp_path / "off.jsonl"
    result = run_cli(["run", "allgather", "--backend", "nccl", "--algo", "native,ring", "-np", "1", "-b", "64",
                      "-e", "64", "-n", "2", "-w", "1", "--out", str(out)], env=_env(tmp_path), timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    assert not list((tmp_path / "nvtx").iterdir())  # nothing pushed at all without --nvtx
    meta = read_jsonl(out)[0]
    assert meta["spec"]["nvtx"] is False and meta["nccl_log"] is None

    # -G: ranges mark host time, so the captured operations are named once, not per replay
    result = run_cli(["run", "allgather", "--backend", "nccl", "-np", "1", "-b", "64", "-e", "64", "-n", "2",
                      "-w", "1", "-G", "5", "--placement", "out-of-place", "--nvtx",
                      "--out", str(tmp_path / "graph.jsonl")], env=_env(tmp_path), timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    (measurement,) = _tree(tmp_path / "nvtx" / "nvtx.0.log")
    phases = {p["name"]: len(p["children"]) for p in measurement["children"]}
    assert phases == {"warm-up": 1, "timed loop (2 iterations)": 2, "validation": 1}


def test_absent_nccl_log_is_one_warning_and_keeps_the_results(tmp_path):
    out = tmp_path / "r.jsonl"
    result = run_cli(["run", "allgather", "--backend", "nccl", "-np", "2", "-b", "64", "-e", "256", "-n", "2",
                      "-w", "1", "--nccl-log", "--out", str(out)],
                     env=_env(tmp_path, FAKECUDA_NCCL_NO_LOG="1"), timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    warnings = [line for line in result.stderr.splitlines() if "--nccl-log" in line]
    assert len(warnings) == 1 and warnings[0].startswith("collbench: warning: --nccl-log: rank 0: NCCL wrote no log")
    assert "Traceback" not in result.stderr
    records = read_jsonl(out)
    assert len(records[0]["nccl_log"]["problems"]) == 2
    assert [r["bytes"] for r in records if r["type"] == "row"] == [64, 64, 256, 256]
    assert records[-1]["type"] == "summary" and records[-1]["status"] == "complete"


def test_flags_are_checked_before_launch(tmp_path):
    for args, message in ((["--nvtx"], "--nvtx needs a GPU backend"),
                          (["--backend", "cuda", "--nccl-log"], "--nccl-log applies to --backend nccl")):
        result = run_cli(["run", "-np", "2", "-e", "64", "--out", str(tmp_path / "x.jsonl"), *args], timeout=60)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1 and not (tmp_path / "x.jsonl").exists()
