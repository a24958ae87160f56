"""collbench compare: matching, ratios, significance, refusal of incomparable runs, CI exit codes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import meta, row, write

from cbtest import run_cli
from collbench.analysis.compare import compare, differences, mann_whitney_u, parse_fraction
from collbench.errors import UsageError
from collbench.results.files import read_results

SIZES = [1 << 10, 1 << 16, 1 << 20]


def _samples(center: float, n: int = 40, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    return [float(x) for x in center * (1 + 0.03 * rng.standard_normal(n))]


def test_ratios_geomean_and_unmatched(tmp_path):
    a = write(tmp_path / "a.jsonl", [row("ring", s, 100.0) for s in SIZES] + [row("tree", 8, 5.0)])
    b = write(tmp_path / "b.jsonl", [row("ring", s, 110.0) for s in SIZES] + [row("direct", 8, 5.0)])
    c = compare(str(a), str(b))
    assert [p.time_ratio for p in c.pairs] == pytest.approx([1.1, 1.1, 1.1])
    assert c.geomean() == pytest.approx(1.1)
    assert c.geomean(busbw=True) == pytest.approx(1 / 1.1)
    assert len(c.only_a) == 1 and len(c.only_b) == 1
    assert all(p.p_value is None and p.mark(0.05) == "n/a" for p in c.pairs)


def test_significance_from_samples(tmp_path):
    a = write(tmp_path / "a.jsonl", [row("ring", 1 << 20, 100, samples=_samples(100, seed=1)),
                                     row("ring", 1 << 16, 10, samples=_samples(10, seed=2))])
    b = write(tmp_path / "b.jsonl", [row("ring", 1 << 20, 120, samples=_samples(120, seed=3)),
                                     row("ring", 1 << 16, 10, samples=_samples(10, seed=4))])
    c = compare(str(a), str(b))
    by_size = {p.a.bytes: p for p in c.pairs}
    assert by_size[1 << 20].p_value < 1e-6 and by_size[1 << 20].mark(0.05) == "*"
    assert by_size[1 << 16].p_value > 0.05 and by_size[1 << 16].mark(0.05) == "~"
    assert "Mann-Whitney" in c.test_name


def test_numpy_fallback_agrees_with_scipy():
    scipy = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(7)
    for shift in (0.0, 0.02, 0.1):
        x = rng.normal(1.0, 0.05, 60)
        y = rng.normal(1.0 + shift, 0.05, 45)
        y[:5] = x[:5]   # some ties
        ours = mann_whitney_u(x, y)[1]
        ref = scipy.mannwhitneyu(x, y, alternative="two-sided", method="asymptotic").pvalue
        assert ours == pytest.approx(ref, rel=1e-6, abs=1e-12)


def test_incomparable_runs_are_refused_in_one_line(tmp_path):
    a = write(tmp_path / "a.jsonl", [row("ring", 1 << 20, 100)], meta(2))
    b = write(tmp_path / "b.jsonl", [row("ring", 1 << 20, 100, nranks=4, dtype="float64")],
              meta(4, library="Open MPI v5.0", thread="multiple"))
    diffs = differences(read_results(a), read_results(b))
    assert any(d.startswith("ranks 2 vs 4") for d in diffs)
    assert any("MPI library" in d for d in diffs) and any("thread level" in d for d in diffs)
    assert any(d.startswith("dtypes float32 vs float64") for d in diffs)
    with pytest.raises(UsageError, match="not comparable: ranks 2 vs 4.*--force"):
        compare(str(a), str(b))
    result = run_cli(["compare", str(a), str(b)])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "not comparable" in lines[0] and "Traceback" not in result.stderr


def test_force_compares_and_warns(tmp_path):
    a = write(tmp_path / "a.jsonl", [row("ring", 1 << 20, 100)], meta(2))
    b = write(tmp_path / "b.jsonl", [row("ring", 1 << 20, 50)], meta(2, library="Open MPI v5.0"))
    result = run_cli(["compare", str(a), str(b), "--force"])
    assert result.returncode == 0, result.stderr
    assert "warning (--force): not comparable: MPI library" in result.stdout
    assert "time B/A 0.500" in result.stdout


def test_fail_above_exit_codes(tmp_path):
    a = write(tmp_path / "a.jsonl", [row("ring", s, 100) for s in SIZES])
    slow = write(tmp_path / "slow.jsonl", [row("ring", s, 108) for s in SIZES])
    same = write(tmp_path / "same.jsonl", [row("ring", s, 103) for s in SIZES])
    failed = run_cli(["compare", str(a), str(slow), "--fail-above", "5%"])
    assert failed.returncode == 1 and "regression above 5.0%" in failed.stderr
    assert run_cli(["compare", str(a), str(same), "--fail-above", "5%"]).returncode == 0
    assert run_cli(["compare", str(a), str(slow), "--fail-above", "0.1"]).returncode == 0
    out = run_cli(["compare", str(a), str(slow), "--format", "json"])
    assert json.loads(out.stdout)["geomean_time_ratio"] == pytest.approx(1.08)


def test_significant_row_regression_fails_even_when_the_mean_does_not(tmp_path):
    a = write(tmp_path / "a.jsonl", [row("ring", 1 << 20, 100, samples=_samples(100, seed=1))]
              + [row("ring", s, 100, samples=_samples(100, seed=s)) for s in (8, 64, 512)])
    b = write(tmp_path / "b.jsonl", [row("ring", 1 << 20, 112, samples=_samples(112, seed=2))]
              + [row("ring", s, 97, samples=_samples(97, seed=s + 1)) for s in (8, 64, 512)])
    c = compare(str(a), str(b))
    assert c.geomean() < 1.05
    why = c.regressions(0.05, 0.05)
    assert len(why) == 1 and "1 MiB" in why[0]


def test_parse_fraction():
    assert parse_fraction("5%") == pytest.approx(0.05)
    assert parse_fraction("0.2") == pytest.approx(0.2)
    with pytest.raises(UsageError):
        parse_fraction("five")
    result = run_cli(["compare", "a", "b", "--fail-above", "lots"])
    assert result.returncode == 2 and "--fail-above" in result.stderr


def test_missing_file_is_one_line(tmp_path):
    result = run_cli(["compare", str(tmp_path / "nope.jsonl"), str(tmp_path / "b.jsonl")])
    assert result.returncode == 2 and "no such results file" in result.stderr
