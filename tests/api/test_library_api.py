"""The library entry points: collbench.measure under a real mpiexec, collbench.load on files,
and make_spec's one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import collbench
from cbtest import run_cli
from collbench.errors import UsageError
from collbench.run.launcher import find_mpiexec, oversubscription_environment

DRIVER = Path(__file__).with_name("measure_driver.py")


@pytest.mark.mpi
@pytest.mark.parametrize("nranks", [3])
def test_measure_yields_every_planned_row_on_rank_zero(nranks):
    env = oversubscription_environment(nranks)
    result = subprocess.run([str(find_mpiexec()), "-n", str(nranks), sys.executable, str(DRIVER)],
                            capture_output=True, text=True, timeout=120, env={**os.environ, **env})
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    # 2 collectives × 2 algorithms × 2 sizes × 2 placements, each validated
    assert len(rows) == 16
    assert {(r["collective"], r["algorithm"]) for r in rows} == {
        ("allreduce", "native"), ("allreduce", "ring"), ("allgather", "native"), ("allgather", "ring")}
    assert all(r["wrong"] == 0 and r["nranks"] == nranks for r in rows)


def test_make_spec_rejects_unknown_names_in_one_line():
    with pytest.raises(UsageError, match="unknown collective"):
        collbench.make_spec("allreduse", sizes=[8])
    with pytest.raises(UsageError, match="ringg"):
        collbench.make_spec("allreduce", sizes=[8], algorithms="ringg")


@pytest.mark.mpi
def test_load_returns_the_rows_of_a_run(tmp_path, monkeypatch):
    out = tmp_path / "r.jsonl"
    result = run_cli(["run", "allreduce", "-b", "8", "-e", "64", "-f", "8", "-n", "2", "-w", "1",
                      "-np", "2", "--out", str(out)], timeout=120)
    assert result.returncode == 0, result.stderr
    import builtins

    real_import = builtins.__import__

    def no_pandas(name, *args, **kwargs):  # the list form must not depend on pandas being absent
        if name == "pandas":
            raise ImportError("pandas hidden by the test")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pandas)
    records = collbench.load(str(tmp_path))
    assert isinstance(records, list)
    assert sorted((r["bytes"], r["placement"]) for r in records) == [
        (8, "in_place"), (8, "out_of_place"), (64, "in_place"), (64, "out_of_place")]
    assert all(r["file"] == str(out) and r["nnodes"] == 1 and r["source"] == "collbench"
               for r in records)


def test_load_of_a_missing_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no such results file"):
        collbench.load(str(tmp_path / "missing.jsonl"))
