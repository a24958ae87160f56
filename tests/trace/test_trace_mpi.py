"""Acceptance of `collbench run --trace` under a real mpiexec: valid Chrome-trace JSON, the
schedules' step counts and bytes per step, the fact recorded in the metadata, and
`trace compare` reproducing `model check`'s verdict."""

from __future__ import annotations

import json

import pytest

from cbtest import read_jsonl, run_cli
from collbench.algorithms import Collective, Problem
from collbench.algorithms.registry import get_algorithm
from collbench.analysis.model.profile import load_profile
from collbench.execute.bind import lower
from collbench.trace.compare import compare, layout_of
from collbench.trace.document import FINALIZE_STEP, read
from collbench.trace.schema import problems

pytestmark = pytest.mark.mpi
ALGOS = "ring,recursive_doubling,rabenseifner,hierarchical"


@pytest.mark.parametrize("nranks,executor", [(4, "python"), (6, "native")])
def test_traces_match_the_schedules(nranks, executor, tmp_path):
    trace, out = tmp_path / "t.json", tmp_path / "r.jsonl"
    result = run_cli(["run", "allreduce", "--algo", ALGOS, "-np", str(nranks), "-b", "48K", "-e", "48K",
                      "-n", "2", "-w", "1", "--placement", "out-of-place", "--ranks-per-node", "2",
                      "--executor", executor, "--trace", str(trace), "--trace-iters", "2",
                      "--out", str(out)], timeout=400)
    assert result.returncode == 0, result.stderr[-2000:]
    doc = json.loads(trace.read_text())
    assert problems(doc) == []
    record = read(trace)
    assert {m["algorithm"] for m in record["measurements"]} == set(ALGOS.split(","))
    assert len(record["offsets_ns"]) == nranks and all(b >= 0 for b in record["offset_bound_ns"])
    layout = layout_of(record["node_of_rank"])
    for m in record["measurements"]:
        problem = Problem(Collective.ALLREDUCE, nranks, m["count"], 0, layout)
        algo = get_algorithm(m["algorithm"])
        for entry in m["ranks"]:
            lowered = lower(problem, algo.program(problem, entry["rank"], {}), False, "sum")
            steps = [s for s in entry["steps"] if s["index"] != FINALIZE_STEP]
            assert [s["index"] for s in steps] == [s.index for s in lowered.steps]
            assert [sum(n for _, n in s["sends"]) for s in steps] == \
                [sum(x.length for _, x in s.sends) * 4 for s in lowered.steps]
            assert all(len(it) == len(entry["steps"]) for it in entry["stamps_ns"])
            assert all(a <= b <= c <= d for it in entry["stamps_ns"] for a, b, c, d in it)
    (meta, *rows) = read_jsonl(out)
    assert meta["spec"]["trace"] == {"file": str(trace), "iterations": 2}  # rows say tracing was on
    assert all(r.get("wrong") == 0 for r in rows if "wrong" in r)


def _traced_and_checked(tmp_path, run_args: list[str]) -> tuple[dict, dict]:
    """Run with --trace and --out, then model check the results file: (the trace record, model
    check's JSON records by (algorithm, placement))."""
    trace, out = tmp_path / "t.json", tmp_path / "r.jsonl"
    result = run_cli(["run", *run_args, "-n", "5", "-w", "2", "--trace", str(trace), "--out", str(out)],
                     timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    checked = run_cli(["model", "check", str(out), "--profile", "dev-vm", "--format", "json"])
    assert checked.returncode == 0, checked.stderr
    return read(trace), {(c["algorithm"], c["placement"]): c for c in json.loads(checked.stdout)}


def test_compare_reproduces_model_check(tmp_path):
    record, checked = _traced_and_checked(tmp_path, ["allreduce", "--algo", "ring,recursive_doubling",
                                                     "-np", "2", "-b", "64K", "-e", "64K"])
    profile = load_profile("dev-vm")
    for m in record["measurements"]:
        c = compare(record, m, profile)
        assert c.verdict(0.25) == checked[(m["algorithm"], m["placement"])]["verdict"]
        assert [s.stat.index for s in c.steps] and all(s.model_us for s in c.steps)
    text = run_cli(["trace", "compare", str(tmp_path / "t.json"), "--profile", "dev-vm"])
    assert text.returncode == 0 and "furthest off" in text.stdout


def test_compare_prices_alltoallv_with_the_runs_count_matrix(tmp_path):
    """The trace records alltoallv's count matrix with each measurement, and `trace compare`
    prices the operation with it, as `model check` prices the row (both read the run's matrix,
    not the default Zipf 1)."""
    record, checked = _traced_and_checked(tmp_path, ["alltoallv", "--algo", "pairwise,direct", "-O",
                                                     "skew=2.5", "-np", "3", "-b", "12K", "-e", "12K"])
    profile = load_profile("dev-vm")
    assert record["measurements"]
    for m in record["measurements"]:
        assert m["skew"]["exponent"] == 2.5
        c = compare(record, m, profile)
        assert c.predicted_us is not None
        assert c.predicted_us == pytest.approx(checked[(m["algorithm"], m["placement"])]["predicted_us"])
