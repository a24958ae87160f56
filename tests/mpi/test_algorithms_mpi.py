"""Every registered algorithm × collective, executed over real MPI point-to-point at 1..8 ranks,
in and out of place, validated (#wrong = 0); hierarchical with emulated nodes. One launch per
rank count; the dtype/op pair rotates with the rank count (the simulator tests cover every
dtype × op exhaustively; here the point is real message passing at many rank counts). Most rank
counts run the default executor (native where it builds), two run the Python executor
(tests/mpi/test_native_mpi.py compares the two bit for bit)."""

from __future__ import annotations

import pytest

from cbtest import native_library_or_skip, read_jsonl, run_cli
from collbench.algorithms import Collective, Layout, Problem
from collbench.algorithms.registry import algorithms_for

pytestmark = pytest.mark.mpi

COLLECTIVES = [c.value for c in Collective]
DTYPE_OPS = {1: ("float64", "prod"), 2: ("bfloat16", "sum,avg"), 3: ("int8", "max,sum"),
             4: ("float16", "min,avg"), 5: ("uint64", "prod,sum"), 6: ("float32", "sum"),
             7: ("int32", "avg,min"), 8: ("bfloat16", "max")}
SIZES = ["-b", "100", "-e", "1700", "-i", "800"]   # 100, 900, 1700 bytes: uneven splits
PYTHON_EXECUTOR_RANKS = {2, 5}


def _default_schedule_executor() -> str:
    """What ``--executor auto`` gives custom schedules on this machine (CI must build it)."""
    try:
        native_library_or_skip()
        return "native"
    except pytest.skip.Exception:
        return "python"


def _expected(nranks: int, ops: list[str], layout: Layout | None) -> set[tuple[str, str, str | None]]:
    """(collective, algorithm, op) that must have run: every registered algorithm whose
    preconditions hold for this rank count and layout, plus native where MPI has the op."""
    expected = set()
    for collective in Collective:
        for op in (ops if collective.reduces else [None]):
            problem = Problem(collective, nranks, 1, root=0, layout=layout)
            for algorithm in algorithms_for(collective, include_native=False):
                if algorithm.precondition(problem, op=op) is None:
                    expected.add((collective.value, algorithm.name, op))
    return expected


@pytest.mark.parametrize("nranks", sorted(DTYPE_OPS))
def test_every_algorithm_runs_and_validates(nranks, tmp_path):
    dtype, ops = DTYPE_OPS[nranks]
    out = tmp_path / "algorithms.jsonl"
    python = nranks in PYTHON_EXECUTOR_RANKS
    result = run_cli(["run", *COLLECTIVES, "--algo", "all", "-d", dtype, "-o", ops, *SIZES,
                      "-n", "1", "-w", "1", "-c", "1", "-np", str(nranks), "-T", "120", "--out", str(out),
                      *(["--executor", "python"] if python else [])], timeout=400, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [r for r in read_jsonl(out) if r["type"] == "row"]
    assert rows and all(r["wrong"] == 0 for r in rows), [r for r in rows if r["wrong"]][:3]
    custom = {(r["collective"], r["algorithm"], r["op"]) for r in rows if r["algorithm"] != "native"}
    assert custom == _expected(nranks, ops.split(","), None)
    expected_executor = "python" if python else _default_schedule_executor()
    assert all(r["executor"] == expected_executor for r in rows if r["algorithm"] != "native")
    by_case = {}
    for r in rows:
        by_case.setdefault((r["collective"], r["algorithm"], r["op"]), set()).add((r["placement"], r["bytes"]))
    for case, seen in by_case.items():
        if case[1] != "native":
            assert {p for p, _ in seen} == {"out_of_place", "in_place"}, case


@pytest.mark.parametrize("ranks_per_node", [4, 2])
def test_hierarchical_on_emulated_nodes(ranks_per_node, tmp_path):
    out = tmp_path / "hier.jsonl"
    result = run_cli(["run", "allreduce", "allgather", "reduce_scatter", "--algo", "hierarchical",
                      "-O", "inner=ring", "-d", "int32", "-o", "sum", *SIZES, "-n", "1", "-w", "1",
                      "-np", "8", "--ranks-per-node", str(ranks_per_node), "--out", str(out)],
                     timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    records = read_jsonl(out)
    assert records[0]["nnodes"] == 8 // ranks_per_node
    rows = [r for r in records if r["type"] == "row"]
    assert {r["collective"] for r in rows} == {"allreduce", "allgather", "reduce_scatter"}
    assert all(r["wrong"] == 0 and r["options"] == {"inner": "ring"} for r in rows)


def test_uneven_layout_is_rejected_with_the_reason(tmp_path):
    result = run_cli(["run", "allreduce", "--algo", "hierarchical", "-e", "64", "-np", "8",
                      "--ranks-per-node", "3", "--out", str(tmp_path / "x.jsonl")], timeout=120, cwd=tmp_path)
    assert result.returncode == 2
    assert "3 nodes holding 3, 3, 2 ranks" in result.stderr
    assert "Traceback" not in result.stderr
