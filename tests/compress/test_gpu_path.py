"""The nccl path of the compressed algorithms on the CPU fake of CuPy/NCCL (tests/gpu/fakecuda),
whose RawModule runs csrc/compress.cu's kernels as numpy transliterations of the CUDA source.

The contract (docs/compression.md, "The nccl path"): the nccl runners give the mpi runners'
bits -- same selection (magnitude, ties to the lower index), same quantization rounding, same
float32 sums in the same order -- and send the same bytes (powersgd: within float32 rounding,
its products and orthogonalization sum in another order). Checked at three levels:

* the launch wrappers (collbench/compress/device.py) against the host primitives, on adversarial
  inputs, with deliberate kernel mistakes that must be caught (gpu_kernel_checks.py);
* every nccl runner against the mpi runner and the numpy reference under mpiexec (gpu_driver.py);
* the CLI end to end on the nccl backend, with the harness's validation.

Everything runs in subprocesses: the fake must never shadow a real CuPy in the test process.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from gpu.fakecuda import FAKECUDA  # the one fake CuPy (tests/gpu/fakecuda)

from cbtest import REPO, read_jsonl, run_cli
from collbench.algorithms import Collective
from collbench.backends.base import OpRequest, Placement
from collbench.compress.backend import nccl_unsupported_reason
from collbench.compress.names import ALGORITHMS
from collbench.dtypes import DTYPES

HERE = Path(__file__).parent


def _fake_env(tmp_path: Path | None = None, **extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": FAKECUDA + os.pathsep + str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "FAKECUDA_UUID": "per-rank", **extra}
    if tmp_path is not None:
        env["FAKECUDA_NCCL_DIR"] = str(tmp_path)
    return env


def _last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


# -- the launch wrappers and the kernels' semantics -------------------------------------------------


@pytest.mark.parametrize("sizes,cases", [("1,7,300", 500),
                                         pytest.param("1,7,1000,4099", 1000, marks=pytest.mark.slow)])
def test_kernels_match_the_host_primitives(sizes: str, cases: int) -> None:
    proc = subprocess.run([sys.executable, str(HERE / "gpu_kernel_checks.py"), f"--sizes={sizes}"],
                          capture_output=True, text=True, timeout=300, env=_fake_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = _last_json(proc.stdout)
    assert result.pop("cases") > cases
    assert result == {"select": [], "select_masked": [], "quantize": [], "dequantize_add": [], "scatter": [],
                      "lowrank": []}


@pytest.mark.parametrize("mistakes,caught_by", [
    # int8 half away from zero (not to even), and equal magnitudes to the higher index: each
    # breaks one check only, so one run shows both caught
    ("int8-round,ties", ("quantize", "select", "select_masked")),
    pytest.param("fp8-tie", ("quantize",), marks=pytest.mark.slow),   # e4m3 ties rounded up
    pytest.param("scale", ("quantize",), marks=pytest.mark.slow),     # scale to nearest, not up
])
def test_a_kernel_mistake_is_caught(mistakes: str, caught_by: tuple[str, ...]) -> None:
    proc = subprocess.run([sys.executable, str(HERE / "gpu_kernel_checks.py"), f"--break={mistakes}",
                           "--sizes=7,100"], capture_output=True, text=True, timeout=300, env=_fake_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = _last_json(proc.stdout)
    assert all(result[check] for check in caught_by), f"{mistakes} went unnoticed: {result}"


# -- the runners against the mpi runners, under mpiexec ---------------------------------------------


def _mpiexec(nranks: int) -> tuple[list[str], dict[str, str]]:
    from collbench.run.launcher import find_mpiexec, oversubscription_environment

    return [str(find_mpiexec()), "-n", str(nranks)], oversubscription_environment(nranks)


@pytest.mark.mpi
@pytest.mark.parametrize("nranks,counts", [
    (3, "7,120"),
    pytest.param(1, "1,7,1000,4099", marks=pytest.mark.slow),
    pytest.param(2, "1,7,1000,4099", marks=pytest.mark.slow),
    pytest.param(4, "7,1000,4099", marks=pytest.mark.slow),
    pytest.param(5, "7,1000", marks=pytest.mark.slow),
    pytest.param(8, "7,1000", marks=pytest.mark.slow),
])
def test_nccl_runners_equal_the_mpi_runners(nranks: int, counts: str, tmp_path: Path) -> None:
    launcher, env = _mpiexec(nranks)
    proc = subprocess.run([*launcher, sys.executable, str(HERE / "gpu_driver.py"), counts], capture_output=True,
                          text=True, timeout=900, env=_fake_env(tmp_path, **env))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = _last_json(proc.stdout)
    assert result["cases"] >= 40 and result["failures"] == [], result


@pytest.mark.mpi
def test_cli_runs_every_compressed_algorithm_on_nccl(tmp_path: Path) -> None:
    out = tmp_path / "nccl.jsonl"
    result = run_cli(["run", "allreduce", "--backend", "nccl", "--algo", "all-compressed", "-np", "2",
                      "-d", "float32,float64", "-b", "4K", "-e", "4K", "-n", "2", "-w", "1", "-c", "1",
                      "-O", "density=0.05,block=64", "--out", str(out)],
                     env=_fake_env(tmp_path), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [r for r in read_jsonl(out) if r["type"] == "row"]
    ran = {(r["algorithm"], r["dtype"], r["placement"]) for r in rows}
    assert ran == {(a, "float32", p) for a in ALGORITHMS for p in ("out_of_place", "in_place")}
    assert all(r["wrong"] == 0 and r["executor"] == "compressed" and r["sent_bytes"] for r in rows), rows
    assert all(r["err_rel_l2"] is not None for r in rows)
    rd = [r for r in rows if r["algorithm"] == "topk_rd"]
    assert all(r["compress"]["header_bytes"] == 16 and 0 < r["compress"]["fill"] <= 1 for r in rd)
    text = result.stdout + result.stderr
    assert re.search(r"skipped \(backend nccl\): \w+ on the nccl backend takes float16, bfloat16, float32", text)


# -- what the nccl backend refuses ---------------------------------------------------------------------


def _request(algorithm: str, dtype: str = "float32", count: int = 1024) -> OpRequest:
    return OpRequest(Collective.ALLREDUCE, algorithm, DTYPES[dtype], "sum", count, Placement.OUT_OF_PLACE)


def test_nccl_refusals_say_why() -> None:
    assert nccl_unsupported_reason(_request("quant_ring"), {}) is None
    assert nccl_unsupported_reason(_request("topk_rd", "bfloat16"), {"density": "0.1"}) is None
    assert nccl_unsupported_reason(_request("powersgd", "float16"), {"rank": "2"}) is None
    assert "float64 runs on the mpi backend" in nccl_unsupported_reason(_request("powersgd", "float64"), {})
    assert "float64 runs on the mpi backend" in nccl_unsupported_reason(_request("gtopk", "float64"), {})
    assert "CUDA graph (-G)" in nccl_unsupported_reason(_request("quant_oneshot"), {}, graph_replays=4)
    # the mpi backend's own refusals come first: a bad option, a dtype no format holds
    assert "must be in (0, 1]" in nccl_unsupported_reason(_request("topk_rd"), {"density": "2"})
    assert "cannot hold int32" in nccl_unsupported_reason(_request("quant_ring", "int32"), {})
