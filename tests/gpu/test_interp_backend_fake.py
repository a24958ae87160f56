"""`--backend cuda --algo <any registered schedule>`: the schedule interpreter, end to end through the
real CLI and mpiexec on the CPU fake of CuPy (tests/gpu/fakecuda). Ranks are processes; the
IpcCommunicator's buffers are shared files (fake CUDA IPC), the interpreter kernel is the
reference interpreter run on them (fakecuda/cupy/_interp_kernel.py), decoding the uploaded program
and the communicator descriptor from their bytes as the kernel does. What needs a GPU (the kernel
itself) is in scripts/gpu_kernels_check.py's interpreter section."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from fakecuda import FAKECUDA  # the one fake CuPy (tests/gpu/fakecuda)

from cbtest import read_jsonl, run_cli
from collbench.algorithms import Collective, Layout
from collbench.backends.base import OpRequest, Placement
from collbench.backends.capabilities import Environment, capability_rows
from collbench.backends.cuda import CudaIpcBackend
from collbench.dtypes import DTYPES
from collbench.gpu import interp
from collbench.gpu.interp_program import constants
from collbench.gpu.kernel_sources import header_constants

SCHEDULES = "ring,recursive_doubling,rabenseifner,double_binary_tree,tree,direct,bruck,recursive_halving,pairwise"


def _fake_env(tmp_path: Path, **knobs: str) -> dict[str, str]:
    ipc_dir = tmp_path / "ipc"
    ipc_dir.mkdir(exist_ok=True)
    return {"PYTHONPATH": FAKECUDA + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "FAKECUDA_IPC_DIR": str(ipc_dir), **knobs}


@pytest.mark.mpi
def test_every_schedule_runs_on_the_interpreter_across_processes(tmp_path):
    out = tmp_path / "interp.jsonl"
    result = run_cli(["run", "allreduce", "allgather", "reduce_scatter", "alltoall", "--backend", "cuda",
                      "--algo", SCHEDULES, "-np", "3", "-d", "float32,bfloat16,int8", "-o", "sum,avg,max",
                      "-b", "8", "-e", "192", "-f", "24", "-n", "2", "-w", "1", "--out", str(out)],
                     env=_fake_env(tmp_path), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [r for r in read_jsonl(out) if r["type"] == "row"]
    assert rows and all(r["wrong"] == 0 for r in rows), [r for r in rows if r["wrong"]][:2]
    assert {r["executor"] for r in rows} == {"cuda-interp"}
    seen = {(r["collective"], r["algorithm"]) for r in rows}
    assert {("allreduce", "ring"), ("allreduce", "rabenseifner"), ("allreduce", "double_binary_tree"),
            ("allgather", "bruck"), ("reduce_scatter", "recursive_halving"), ("alltoall", "pairwise")} <= seen
    assert {r["placement"] for r in rows} == {"out_of_place", "in_place"}
    assert not list((tmp_path / "ipc").iterdir()), "the fake IPC files outlived the run"


@pytest.mark.mpi
def test_graph_replays_and_a_capture_that_loses_the_launch(tmp_path):
    """-G: the launch is captured on the backend's stream and replayed (epochs on the device). A
    capture that drops the work must show up as wrong values: the launch really goes through the
    stream, so validation of the replayed graph sees it."""
    args = ["run", "allreduce", "--backend", "cuda", "--algo", "ring,direct", "-np", "2", "-G", "3",
            "-b", "8", "-e", "512", "-f", "8", "-n", "3", "-w", "1", "-d", "int32"]
    good = run_cli([*args, "--out", str(tmp_path / "g.jsonl")], env=_fake_env(tmp_path), timeout=300)
    assert good.returncode == 0, good.stderr[-3000:]
    rows = [r for r in read_jsonl(tmp_path / "g.jsonl") if r["type"] == "row"]
    assert rows and all(r["wrong"] == 0 and r["executor"] == "cuda-interp" for r in rows)
    dropped = run_cli([*args, "--out", str(tmp_path / "d.jsonl")],
                      env=_fake_env(tmp_path, FAKECUDA_GRAPH_DROPS_WORK="1"), timeout=300)
    assert dropped.returncode == 1, dropped.stderr[-3000:]
    rows = [r for r in read_jsonl(tmp_path / "d.jsonl") if r["type"] == "row"]
    assert all(r["wrong"] > 0 for r in rows if r["placement"] == "out_of_place")


@pytest.mark.mpi
def test_a_rank_that_never_launches_is_reported_on_every_rank(tmp_path):
    """Rank 1's interpreter launches do nothing: rank 0's wait for its ready times out (bounded,
    not a hang), the error record is decoded, and every rank stops with the same message."""
    result = run_cli(["run", "allreduce", "--backend", "cuda", "--algo", "ring", "-np", "2", "-b", "64", "-e", "64",
                      "-n", "2", "-w", "1", "--out", str(tmp_path / "x.jsonl")],
                     env=_fake_env(tmp_path, FAKECUDA_INTERP_SKIP_RANK="1", FAKECUDA_INTERP_TIMEOUT_S="1"),
                     timeout=300)
    assert result.returncode != 0
    assert "rank 0: schedule interpreter: instruction" in result.stderr, result.stderr[-3000:]
    assert "waiting for rank 1's ready" in result.stderr


# -- list and run agree -----------------------------------------------------------------------

EVERYTHING = Environment(mpi=None, cupy=None, gpu=None, nccl=None, details=())


def _backend(nranks: int, per_node: int | None) -> CudaIpcBackend:
    """The backend's decision logic without a GPU (only its reasons are asked)."""
    backend = object.__new__(CudaIpcBackend)
    local = per_node or nranks
    backend.size, backend.local_size, backend.uniform = nranks, local, nranks % local == 0
    backend.layout = Layout.blocked(nranks, per_node) if per_node else None
    backend.groups = backend.layout.nodes if backend.layout is not None else (tuple(range(nranks)),)
    backend.algorithm_options = {}
    return backend


@pytest.mark.parametrize("nranks,per_node", [(4, None), (7, None), (12, None), (6, 3), (18, 9)])
def test_list_says_yes_exactly_where_the_interpreter_runs(nranks, per_node):
    backend = _backend(nranks, per_node)
    checked = 0
    for coll_name, algorithm, name, status in capability_rows(nranks, per_node, EVERYTHING):
        collective = Collective.parse(coll_name)
        if name != "cuda" or algorithm in ("native", "one_shot", "two_shot", "ipc_direct", "ipc_hierarchical"):
            continue
        request = OpRequest(collective, algorithm, DTYPES["float32"], "sum" if collective.reduces else None,
                            1024, Placement.IN_PLACE)
        runs = backend.reason(request) is None
        assert status.startswith("yes") == runs, (coll_name, algorithm, status, backend.reason(request))
        checked += 1
    assert checked > 20
    rows = {(c, a): s for c, a, b, s in capability_rows(nranks, per_node, EVERYTHING) if b == "cuda"}
    if nranks <= 8 and per_node is None:
        assert rows[("allreduce", "ring")] == "yes" and rows[("broadcast", "tree")] == "yes"
    elif per_node is not None and per_node <= 8:  # across nodes: the interpreter inside, NCCL across
        assert rows[("allreduce", "ring")] == rows[("allreduce", "hierarchical")] == "yes (executor cuda-interp+nccl)"
    else:
        assert rows[("allreduce", "ring")].startswith("the schedule interpreter")


# -- the error record ---------------------------------------------------------------------------


def test_interpreter_error_records_are_decoded() -> None:
    c, h = constants(), header_constants()
    words = np.zeros(h["ERR_WORDS"], dtype=np.uint32)
    words[:11] = [h["ERR_TIMEOUT"], c["KID"], 3, 1, 17, 9, 8, 2, 1_500_000, 4, c["OP_WAIT_DONE"]]
    rec = interp.decode(words)
    assert rec is not None and rec.peer == 1 and rec.instruction == 17
    message = rec.message()
    assert message.startswith("rank 2: schedule interpreter: instruction 17 of block 3/4 timed out after 1.500 s")
    assert "rank 1's done" in message and "expected 9, saw 8" in message
    words[10] = c["WAIT_GRID"]
    assert "grid barrier" in interp.decode(words).message()
    words[1] = h["KID_ONE_SHOT"]  # another kernel's record is not the interpreter's
    assert interp.decode(words) is None
    words[:2] = [h["ERR_BAD_LAUNCH"], c["KID"]]
    assert "does not match the launch" in interp.decode(words).message()
