"""Compressed algorithms run on the mpi backend (host buffers) and on the nccl backend
(test_gpu_path.py); the nccl backend refuses what it has no version of with the reason (on the
CPU fake of CuPy/NCCL, tests/gpu/fakecuda), and the exact `all` stays exact."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from gpu.fakecuda import FAKECUDA  # the one fake CuPy (tests/gpu/fakecuda)

from cbtest import run_cli

pytestmark = pytest.mark.mpi


def _fake_env() -> dict[str, str]:
    return {"PYTHONPATH": FAKECUDA + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_nccl_backend_refuses_with_the_reason(tmp_path: Path) -> None:
    result = run_cli(["run", "allreduce", "--backend", "nccl", "--algo", "topk_rd", "-d", "float64", "-np", "1",
                      "-b", "1K", "-e", "1K", "-n", "1", "-w", "1", "--out", str(tmp_path / "n.jsonl")],
                     env=_fake_env(), timeout=180)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "float64 runs on the mpi backend" in result.stderr


def test_all_means_exact_algorithms(tmp_path: Path) -> None:
    from collbench.algorithms import Collective
    from collbench.backends.mpi import CAPABILITIES
    from collbench.compress.names import ALGORITHMS

    names = CAPABILITIES.algorithm_names(Collective.ALLREDUCE)
    assert "ring" in names and not set(names) & set(ALGORITHMS)
    assert CAPABILITIES.implements("topk_rd", Collective.ALLREDUCE)
    assert not CAPABILITIES.implements("topk_rd", Collective.ALLGATHER)
