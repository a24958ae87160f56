"""collbench calibrate: the fits, and one real two-rank calibration under mpiexec."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cbtest import run_cli
from collbench.analysis.calibrate import fit_line, fit_regimes
from collbench.analysis.model.profile import load_profile


def test_fit_line_recovers_alpha_beta_with_standard_errors():
    rng = np.random.default_rng(3)
    x = np.array([8, 64, 512, 4096, 32768, 262144, 2097152], dtype=float)
    y = 2e-6 + 1e-10 * x
    exact = fit_line(x, y)
    assert exact.intercept == pytest.approx(2e-6) and exact.slope == pytest.approx(1e-10)
    assert exact.intercept_se < 1e-12 and exact.r2 == pytest.approx(1.0)
    noisy = fit_line(x, y * (1 + 0.05 * rng.standard_normal(len(x))))
    assert noisy.intercept == pytest.approx(2e-6, rel=0.2) and noisy.slope == pytest.approx(1e-10, rel=0.2)
    assert 0 < noisy.intercept_se < 1e-6 and 0 < noisy.slope_se < 5e-11
    assert noisy.max_rel_residual > 0


def test_fit_regimes_finds_a_protocol_switch():
    sizes = [8, 64, 512] + [1 << k for k in range(10, 25)]
    samples = {b: [2e-6 + 4e-10 * b] if b < 32768 else [9e-6 + 1.3e-10 * b] for b in sizes}
    small, large, switch = fit_regimes(samples)
    assert switch == 32768 and large is not None
    assert small.intercept == pytest.approx(2e-6, rel=1e-6)
    assert large.intercept == pytest.approx(9e-6, rel=1e-6) and large.slope == pytest.approx(1.3e-10)
    one = {b: [2e-6 + 1e-10 * b] for b in sizes}
    assert fit_regimes(one)[1] is None


@pytest.mark.mpi
def test_calibrate_two_ranks_writes_a_usable_profile(tmp_path):
    out = tmp_path / "me.json"
    result = run_cli(["calibrate", "-np", "2", "--out", str(out), "--max-bytes", "256K", "--repeats", "2",
                      "--target-time", "0.003", "--dtypes", "float32,bfloat16", "--name", "test-vm"],
                     timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "intra: α =" in result.stdout and f"profile written to {out}" in result.stdout
    record = json.loads(out.read_text())
    assert record["name"] == "test-vm" and record["metadata"]["nranks"] == 2
    assert record["metadata"]["executor"] in ("native", "python")
    assert record["metadata"]["mpi_library"].startswith("MPICH")
    fit = record["fit"]["intra"]
    assert len(fit["alpha_us"]) == 2 and fit["points"] >= 3 and "r2" in fit
    assert set(record["reduce_gbps"]) == {"float32", "bfloat16", "default"}
    profile = load_profile(str(out))
    assert profile.intra.alpha_us >= 0 and profile.intra.bandwidth_gbps > 0
    assert record["inter"]["alpha_us"] == record["intra"]["alpha_us"]   # one node: copied, and said so
    assert "single-node job" in record["sources"]["inter"]
    check = run_cli(["model", "predict", "--profile", str(out), "--nodes", "1", "--gpus-per-node", "2",
                     "--sizes", "8,1M"])
    assert check.returncode == 0 and "crossovers:" in check.stdout


def test_calibrate_needs_two_ranks(tmp_path):
    result = run_cli(["calibrate", "-np", "1", "--out", str(tmp_path / "x.json")])
    assert result.returncode == 2 and "at least 2 ranks" in result.stderr
