"""The trace file is created exclusively: never over an existing file, whether the ranks were
started by `collbench run` (which checks before launching) or by mpiexec/srun directly (which
skip that check: the ranks' own exclusive create is what refuses)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from cbtest import one_job_at_a_time
from collbench.errors import UsageError
from collbench.run.launcher import find_mpiexec
from collbench.trace.document import create, read, write

EMPTY = {"nranks": 2, "offsets_ns": [], "offset_bound_ns": [], "node_of_rank": None,
         "measurements": [], "skipped": []}


def test_create_refuses_an_existing_file_and_keeps_it(tmp_path):
    path = tmp_path / "t.json"
    path.write_text("precious")
    with pytest.raises(UsageError, match="trace file .*t.json already exists; choose another --trace"):
        create(path, EMPTY)
    assert path.read_text() == "precious"


def test_rewrites_go_through_a_temporary_file_of_their_own(tmp_path):
    path = tmp_path / "t.json"
    create(path, EMPTY)
    mode = stat.S_IMODE(path.stat().st_mode)
    neighbour = tmp_path / "t.json.tmp"  # the name the writer used to take for its temporary file
    neighbour.write_text("someone else's")
    write(path, {**EMPTY, "skipped": ["x"]})
    assert read(path)["skipped"] == ["x"]
    assert neighbour.read_text() == "someone else's"
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.json", "t.json.tmp"]


def _direct(args, cwd):
    """``mpiexec -n 2 python -m collbench run ARGS`` as a user's own job script would start it
    (so collbench's launcher and its checks are not involved)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PMI_RANK", "PMIX_RANK", "COLLBENCH_LAUNCHED")}
    with one_job_at_a_time():
        return subprocess.run([str(find_mpiexec()), "-n", "2", sys.executable, "-m", "collbench", "run", *args],
                              cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.mpi
def test_ranks_started_directly_never_overwrite_a_trace(tmp_path):
    trace = tmp_path / "t.json"
    trace.write_text("precious")
    result = _direct(["allreduce", "--algo", "ring", "-b", "8", "-e", "8", "-n", "1", "-w", "0",
                      "--trace", "t.json", "--out", "o.jsonl"], tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == ("collbench: error: trace file t.json already exists; choose another "
                                     "--trace (collbench never overwrites results)")
    assert trace.read_text() == "precious"
    assert not (tmp_path / "o.jsonl").exists()  # refused before the results file was made


@pytest.mark.mpi
def test_ranks_started_directly_trace_a_new_file(tmp_path):
    result = _direct(["allreduce", "--algo", "ring", "-b", "8", "-e", "8", "-n", "1", "-w", "0",
                      "--trace", "t.json", "--out", "o.jsonl"], tmp_path)
    assert result.returncode == 0, result.stderr
    record = read(tmp_path / "t.json")
    assert [m["algorithm"] for m in record["measurements"]] == ["ring", "ring"]
    assert json.loads((tmp_path / "o.jsonl").read_text().splitlines()[-1])["type"] == "summary"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
