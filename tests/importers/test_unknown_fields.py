"""Imported logs leave unknown fields null; every reader shows them as N/A instead of failing."""

from __future__ import annotations

import pytest

from cbtest import run_cli

OSU_WITHOUT_RANKS = """# OSU MPI Allreduce Latency Test v5.7
# Size       Avg Latency(us)
4                      10.50
8                      10.70
1024                   20.10
"""


@pytest.fixture()
def imported(tmp_path):
    log = tmp_path / "osu.txt"
    log.write_text(OSU_WITHOUT_RANKS)
    out = tmp_path / "osu.jsonl"
    result = run_cli(["import", "osu", str(log), "-o", str(out)])
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.parametrize("fmt", ["text", "markdown", "csv", "json"])
def test_report_shows_unknown_fields_as_na(imported, fmt):
    result = run_cli(["report", str(imported), "--format", fmt])
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "10.5" in result.stdout
    if fmt in ("text", "markdown"):
        assert "N/A" in result.stdout and "None" not in result.stdout


def test_compare_and_model_check_accept_unknown_fields(imported):
    compared = run_cli(["compare", str(imported), str(imported)])
    assert compared.returncode == 0, compared.stderr
    checked = run_cli(["model", "check", str(imported), "--profile", "generic"])
    assert "Traceback" not in checked.stderr, checked.stderr
