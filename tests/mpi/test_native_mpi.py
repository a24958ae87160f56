"""The C executor under real mpiexec: the same answers as the Python executor and the numpy
simulator for every algorithm at 1..8 ranks (bit for bit, on random data), the fallback when it
cannot be built, and the watchdog while a rank is inside a C loop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cbtest import REPO, native_library_or_skip, read_jsonl, run_cli
from collbench.algorithms import Collective, Layout, Problem
from collbench.algorithms.registry import algorithms_for
from collbench.backends.mpi import CAPABILITIES as MPI_CAPABILITIES
from collbench.run.launcher import find_mpiexec, oversubscription_environment

pytestmark = pytest.mark.mpi

DRIVER = Path(__file__).parent / "native_driver.py"
# one launch per rank count; the dtype/op pair rotates (the 3-rank launch below covers them all)
DTYPE_OPS = {1: ("float16", "sum,avg"), 2: ("float32", "prod,max"), 3: ("uint8", "sum,min"),
             4: ("bfloat16", "sum,avg"), 5: ("int64", "prod,max"), 6: ("float64", "sum,min"),
             7: ("int32", "avg,prod"), 8: ("bfloat16", "max,prod")}


@pytest.fixture(scope="module")
def native_library():
    return native_library_or_skip()


def _drive(nranks: int, *args: str) -> dict:
    env = {**os.environ, **oversubscription_environment(nranks)}
    result = subprocess.run([str(find_mpiexec()), "-n", str(nranks), sys.executable, str(DRIVER), *args],
                            capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _expected_coverage(nranks: int, ops: list[str]) -> set[tuple]:
    layout = Layout.blocked(nranks, 2) if nranks >= 4 and nranks % 2 == 0 else None
    expected = set()
    for collective in Collective:
        for op in (ops if collective.reduces else [None]):
            problem = Problem(collective, nranks, 1, root=0, layout=layout)
            for algorithm in algorithms_for(collective, include_native=False):
                if algorithm.precondition(problem, op=op) is None:
                    expected.add((collective.value, algorithm.name, op))
            # MPI has no avg; MPICH has no bfloat16 reductions
            if op != "avg" and collective in MPI_CAPABILITIES.native:
                expected.add((collective.value, "native", op))
    return expected


def _check(report: dict, dtype: str, ops: list[str]) -> None:
    assert report["mismatch_count"] == 0, report["mismatches"]
    covered = {tuple(c) for c in report["covered"]}
    expected = _expected_coverage(report["nranks"], ops)
    if dtype == "bfloat16":
        expected = {c for c in expected if c[1] != "native" or c[2] is None}
    assert covered == expected
    ran = report["ran"]
    assert set(ran) == {"native", "python", "library+native", "library"}
    assert ran["native"] == ran["python"] and ran["library+native"] == ran["library"]


@pytest.mark.parametrize("nranks", sorted(DTYPE_OPS))
def test_native_executor_gives_the_same_answers(nranks, native_library):
    dtype, ops = DTYPE_OPS[nranks]
    report = _drive(nranks, "--dtypes", dtype, "--ops", ops, "--counts", "0,1,37")
    _check(report, dtype, ops.split(","))


def test_every_dtype_and_op(native_library):
    report = _drive(3, "--dtypes", "all", "--ops", "all", "--counts", "13",
                    "--movement-dtypes", "int8,float16,float32,float64")
    _check(report, "all", ["sum", "prod", "max", "min", "avg"])


# -- through the CLI ------------------------------------------------------------------------------

SMALL = ["-b", "8", "-e", "64", "-f", "8", "-n", "3", "-w", "1"]


def test_rows_and_metadata_say_which_path_ran(tmp_path, native_library):
    out = tmp_path / "r.jsonl"
    result = run_cli(["run", "allreduce", "--algo", "native,ring", *SMALL, "-np", "2", "-I",
                      "--out", str(out)], timeout=120)
    assert result.returncode == 0, result.stderr
    records = read_jsonl(out)
    meta, rows = records[0], [r for r in records if r["type"] == "row"]
    executor = meta["backend"]["executor"]
    assert executor["path"] == "native" and executor["requested"] == "auto"
    assert executor["library"] == str(native_library.path) and executor["digest"] == native_library.digest
    assert executor["compiler"] == native_library.compiler
    assert meta["spec"]["executor"] == "auto"
    assert {(r["algorithm"], r["executor"]) for r in rows} == {("native", "library+native"), ("ring", "native")}
    assert all(r["wrong"] == 0 and len(r["samples_us"]) == 3 for r in rows)
    assert "# executor: native (C loops;" in result.stdout


def test_python_executor_on_request(tmp_path):
    out = tmp_path / "r.jsonl"
    result = run_cli(["run", "allreduce", "--algo", "native,ring", *SMALL, "-np", "2", "--executor",
                      "python", "--out", str(out)], timeout=120)
    assert result.returncode == 0, result.stderr
    records = read_jsonl(out)
    assert records[0]["backend"]["executor"]["path"] == "python"
    assert {r["executor"] for r in records if r["type"] == "row"} == {"library", "python"}


def test_without_a_compiler_auto_falls_back_to_python(tmp_path):
    out = tmp_path / "r.jsonl"
    env = {"MPICC": "/nonexistent/mpicc", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    result = run_cli(["run", "allreduce", "--algo", "native,ring", *SMALL, "-np", "2", "--out", str(out)],
                     timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    note = "# executor: python (native path unavailable: MPI compiler '/nonexistent/mpicc' ($MPICC) not found"
    assert result.stdout.count(note) == 1, result.stdout[:2000]
    records = read_jsonl(out)
    executor = records[0]["backend"]["executor"]
    assert executor["path"] == "python" and "not found" in executor["unavailable"]
    assert {r["executor"] for r in records if r["type"] == "row"} == {"library", "python"}
    assert all(r["wrong"] == 0 for r in records if r["type"] == "row")


def test_without_a_compiler_native_is_a_usage_error(tmp_path):
    env = {"MPICC": "/nonexistent/mpicc", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    result = run_cli(["run", "allreduce", *SMALL, "-np", "2", "--executor", "native",
                      "--out", str(tmp_path / "r.jsonl")], timeout=120, env=env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "collbench: error: --executor native: the native path is unavailable: MPI compiler "
        "'/nonexistent/mpicc' ($MPICC) not found"]


def test_native_on_a_gpu_backend_is_a_usage_error(tmp_path):
    result = run_cli(["run", "allreduce", "--backend", "nccl", "--executor", "native"], timeout=60)
    assert result.returncode == 2
    assert "--executor native applies to the mpi backend on host buffers" in result.stderr


# -- the watchdog while a rank is inside C ----------------------------------------------------------


def test_stalled_rank_trips_the_deadline_with_native_schedules(tmp_path, native_library):
    result = run_cli(["run", "allreduce", "--algo", "ring", *SMALL, "-T", "2", "-np", "2",
                      "--executor", "native", "--out", str(tmp_path / "r.jsonl")],
                     timeout=60, env={"COLLBENCH_INJECT_FAULT": "stall:1"})
    assert result.returncode == 4, result.stderr
    assert "did not complete within the -T limit (2 s)" in result.stderr
    assert "allreduce algorithm=ring size=8 B float32 sum out-of-place" in result.stderr


def test_watchdog_fires_while_the_thread_is_blocked_in_c(native_library):
    """A schedule whose receive is never matched blocks in MPI_Waitall inside C; ctypes has
    released the GIL, so the watchdog thread ends the process (exit 4, the message names it)."""
    script = textwrap.dedent("""
        import numpy as np
        from mpi4py import MPI
        from collbench.execute.c_build import load
        from collbench.execute.c_executor import NativeScheduleRun
        from collbench.algorithms import Buf, Slice
        from collbench.execute.bind import LoweredProgram, LoweredStep
        from collbench.run.watchdog import Activity, Watchdog

        comm = MPI.COMM_SELF.Dup()
        never = (LoweredStep(0, (), ((0, Slice(Buf.OUTPUT, 0, 1)),), ()),)  # nobody sends it
        buffers = {Buf.INPUT: np.zeros(1, np.int32), Buf.OUTPUT: np.zeros(1, np.int32)}
        run = NativeScheduleRun(load(), comm, LoweredProgram(never, 0, None), buffers,
                                MPI.INT32_T, "int32", None, 1)
        activity = Activity(rank=0, collective="allreduce", algorithm="stuck", size=4, dtype="int32",
                            placement="out-of-place", phase="timed loop")
        watchdog = Watchdog(comm.Dup(), 1.0, activity, False)
        watchdog.arm(1.0)
        run.batch(10)
        print("returned from a stuck loop")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            cwd=REPO)
    assert result.returncode == 4, (result.stdout, result.stderr)
    assert ("timeout on rank 0: allreduce algorithm=stuck size=4 B int32 out-of-place, during timed loop "
            "did not complete within the -T limit (1 s)") in result.stderr
    assert "returned" not in result.stdout
