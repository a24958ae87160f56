"""The interpreter's GPU check (collbench/gpu/interp_check.py, the `interp` section of
scripts/gpu_kernels_check.py) runs on the CPU fake of CuPy: ranks as streams of one process (the
fake's launches block, so each rank launches from its own thread, as the check does everywhere),
exact validation, chains, graph replays and the timing table. A broken kernel must fail it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fakecuda import FAKECUDA  # the one fake CuPy (tests/gpu/fakecuda)

DRIVER = """
import json, sys
from collbench.algorithms import Collective
from collbench.gpu import kernels
from collbench.gpu.interp_check import check_interpreter
ranks, colls, sizes = json.loads(sys.argv[1])
checks = []
def report(section, name, status, detail="", **metrics):
    checks.append({"name": name, "status": status, "detail": detail, "metrics": metrics})
perf = check_interpreter(report, kernels.cupy_module(), ranks=ranks, counts=lambda p: (2 * p + 1,),
                         dtypes=("float32", "bfloat16"), time_sizes=sizes, budget_s=600,
                         collectives=[Collective.parse(c) for c in colls])
print(json.dumps({"checks": checks, "perf": perf}))
"""
ALL = ["allreduce", "allgather", "reduce_scatter"]


def _run(tmp_path: Path, ranks=(2, 3), collectives=ALL, sizes=(64,), **env: str) -> dict:
    (tmp_path / "ipc").mkdir(exist_ok=True)
    full = {**os.environ, "PYTHONPATH": FAKECUDA + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "FAKECUDA_IPC_DIR": str(tmp_path / "ipc"), **env}
    args = json.dumps([list(ranks), list(collectives), list(sizes)])
    proc = subprocess.run([sys.executable, "-c", DRIVER, args], capture_output=True, text=True, env=full, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_interpreter_check_passes_on_the_fake(tmp_path):
    result = _run(tmp_path)
    checks = result["checks"]
    failed = [c for c in checks if c["status"] == "fail"]
    assert not failed, failed[:2]
    cases = [c for c in checks if c["status"] == "pass" and " np=" in c["name"]]
    names = {c["name"].split(" np=")[0] for c in cases}
    assert {"allreduce ring", "allreduce rabenseifner", "allgather bruck", "reduce_scatter recursive_halving"} <= names
    assert {c["name"].split(" np=")[1].split()[0] for c in cases} == {"2", "3"}
    # timings: every allreduce schedule per operation and per step; one-/two-shot need a GPU
    row = result["perf"]["np3_64B"]
    assert row["ring"] > 0 and row["ring_per_step"] == row["ring"] / 4
    assert any(c["name"].startswith("time one_shot") and "not timed" in c["detail"] for c in checks)


def test_interpreter_check_catches_a_broken_kernel(tmp_path):
    checks = _run(tmp_path, ranks=(2,), collectives=["allreduce", "allgather"], sizes=(),
                  FAKECUDA_INTERP_CORRUPT="1")["checks"]
    cases = [c for c in checks if " np=" in c["name"] and not c["name"].startswith("time")]
    assert cases and all(c["status"] == "fail" for c in cases), [c for c in cases if c["status"] != "fail"][:2]
    assert "wrong bytes" in cases[0]["detail"]


def test_no_garbage_collection_while_the_ranks_launch():
    """On an H200 a collection inside the launch window ran a finalizer that synchronized the
    device while holding the GIL: three ranks launched only after the first had timed out (5 s,
    results/gpu/h200-2026-11-30/). ``together`` keeps the collector off until every rank has
    launched, restores it afterwards, and reports when each rank's launch started and how long it
    took."""
    import gc

    from collbench.gpu.interp_check import _describe_spans, together

    seen = []
    assert gc.isenabled()
    spans = together([lambda: seen.append(gc.isenabled()) for _ in range(4)])
    assert seen == [False] * 4
    assert gc.isenabled()
    assert len(spans) == 4 and all(start >= 0 and took >= 0 for start, took in spans)
    text = _describe_spans([(0.0001, 0.0005), (5.0012, 0.0002)])
    assert "rank 0 +0.1/0.5" in text and "rank 1 +5001.2/0.2" in text

    def boom() -> None:
        raise RuntimeError("launch failed")

    with pytest.raises(RuntimeError, match="launch failed"):
        together([boom])
    assert gc.isenabled()  # restored on the error path too
