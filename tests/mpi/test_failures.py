"""A stuck or failing rank ends the whole job with a message that names it; nothing hangs and
rows written before the failure stay readable."""

from __future__ import annotations

import pytest

from cbtest import run_cli
from collbench.results.files import read_results

pytestmark = pytest.mark.mpi

BASE = ["run", "allreduce", "-b", "8", "-e", "64", "-f", "8", "-n", "3", "-w", "1", "-T", "2"]


def test_absent_rank_is_named_by_the_rendezvous(tmp_path):
    out = tmp_path / "r.jsonl"
    result = run_cli([*BASE, "-np", "3", "--out", str(out)], timeout=60,
                     env={"COLLBENCH_INJECT_FAULT": "absent:1:64"})
    assert result.returncode != 0
    assert "rank(s) 1 did not arrive at allreduce algorithm=native size=64 B" in result.stderr
    # the 8-byte rows finished before the failure and are intact
    partial = read_results(out)
    assert [r.bytes for r in partial.rows] == [8, 8]
    assert not partial.complete


def test_stuck_operation_fires_the_deadline(tmp_path):
    result = run_cli([*BASE, "-np", "2", "--out", str(tmp_path / "r.jsonl")], timeout=60,
                     env={"COLLBENCH_INJECT_FAULT": "stall:0"})
    assert result.returncode == 4
    assert "did not complete within the -T limit (2 s)" in result.stderr
    assert "allreduce algorithm=native size=8 B float32 sum out-of-place" in result.stderr


@pytest.mark.parametrize("level", ["single", "multiple"])
def test_exception_on_one_rank_aborts_all(tmp_path, level):
    result = run_cli([*BASE, "-np", "3", "--mpi-thread-level", level, "--out", str(tmp_path / "r.jsonl")],
                     timeout=60, env={"COLLBENCH_INJECT_FAULT": "raise:2"})
    assert result.returncode != 0
    assert "error on rank 2 during allreduce" in result.stderr
    assert "RuntimeError: fault injected" in result.stderr
    assert "Traceback" not in result.stderr


def test_out_of_place_run_that_changes_its_input_is_counted_wrong(tmp_path):
    """An out-of-place collective must leave its input intact (or later iterations time
    compounding data): damaging it is caught by validation, whatever the output holds."""
    out = tmp_path / "r.jsonl"
    result = run_cli([*BASE, "-np", "2", "-T", "30", "--out", str(out)], timeout=60,
                     env={"COLLBENCH_INJECT_FAULT": "scribble:1:64"})
    assert result.returncode == 1, result.stderr
    rows = read_results(out).rows
    wrong = {(r.bytes, r.placement): r.wrong for r in rows}
    # in place the input is the output: overwriting it is the collective's job, so only the
    # out-of-place row counts the damaged input element
    assert wrong == {(8, "out_of_place"): 0, (8, "in_place"): 0,
                     (64, "out_of_place"): 1, (64, "in_place"): 1}


def test_thread_level_is_recorded(tmp_path):
    out = tmp_path / "r.jsonl"
    result = run_cli(["run", "allreduce", "-e", "8", "-n", "2", "-np", "2", "--mpi-thread-level",
                      "multiple", "--out", str(out)], timeout=60)
    assert result.returncode == 0, result.stderr
    meta = read_results(out).metadata
    assert meta["mpi"]["thread_level"] == "multiple"
    assert meta["mpi"]["thread_level_requested"] == "multiple"


def test_wrong_results_are_counted_and_fail_the_run(tmp_path):
    out = tmp_path / "r.jsonl"
    result = run_cli([*BASE, "-np", "3", "-T", "30", "--out", str(out)], timeout=60,
                     env={"COLLBENCH_INJECT_FAULT": "corrupt:1:64"})
    assert result.returncode == 1, result.stderr
    assert "wrong values in total" in result.stderr
    assert "Out of bounds values : 2 FAILED" in result.stdout   # one element, each placement
    rows = read_results(out).rows
    assert {(r.bytes, r.wrong) for r in rows} == {(8, 0), (64, 1)}
