"""alltoallv on the nccl backend through the CPU fake of CuPy/NCCL (tests/gpu/fakecuda): the
native entry is one group of ncclSend/ncclRecv with per-peer counts, out of place only; the
schedules run over grouped send/recv. Three ranks, so messages of different lengths cross."""

from __future__ import annotations

import os

import pytest
from fakecuda import FAKECUDA  # the one fake CuPy (tests/gpu/fakecuda)

from cbtest import read_jsonl, run_cli

pytestmark = pytest.mark.mpi


def test_nccl_alltoallv_native_and_schedules_with_a_skewed_matrix(tmp_path):
    out = tmp_path / "a2av.jsonl"
    env = {"PYTHONPATH": FAKECUDA + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "FAKECUDA_UUID": "per-rank", "FAKECUDA_NCCL_DIR": str(tmp_path)}
    result = run_cli(["run", "alltoallv", "--backend", "nccl", "--algo", "native,pairwise,direct", "-np", "3",
                      "-O", "skew=1.5", "-d", "float32,int8", "-b", "0", "-e", "1K", "-f", "32", "-n", "2",
                      "-w", "1", "--out", str(out)], env=env, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [r for r in read_jsonl(out) if r["type"] == "row"]
    assert rows and all(r["wrong"] == 0 for r in rows), [r for r in rows if r["wrong"]][:2]
    assert {r["skew"] for r in rows} == {"zipf:1.5"}
    seen = {(r["algorithm"], r["placement"], r["executor"]) for r in rows}
    assert ("native", "out_of_place", "library") in seen
    assert ("native", "in_place", "library") not in seen        # refused: one buffer would race
    assert {("pairwise", "in_place", "nccl-p2p"), ("direct", "out_of_place", "nccl-p2p")} <= seen
    # the size is the busiest rank's receive buffer: 3 blocks of `count` elements into rank 0
    assert any(r["count"] > 0 and r["bytes"] == r["count"] * 3 * (4 if r["dtype"] == "float32" else 1)
               for r in rows)
