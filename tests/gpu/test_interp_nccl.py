"""Schedules across nodes on the cuda backend: the interpreter inside a node, NCCL across
(collbench/gpu/interp_nccl.py), without a GPU.

* In process: every registered schedule of every collective, cut into interpreter launches (one
  program per group, in-group peers only) and NCCL parts, runs on the reference interpreter plus
  matched messages (collbench/gpu/interp_reference.interpret_composed) and must equal the numpy
  simulator bit for bit, at several node layouts, in and out of place.
* Under mpiexec: the real CLI on the CPU fake of CuPy (tests/gpu/fakecuda), nodes emulated with
  ``--ranks-per-node`` (one IPC communicator per emulated node over shared files, the fake NCCL's
  grouped send/recv over MPI between them, the reduction kernels as numpy), exact validation.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from fakecuda import FAKECUDA  # the one fake CuPy (tests/gpu/fakecuda)

from cbtest import read_jsonl, run_cli
from collbench.algorithms import Buf, Collective, Layout, Problem, Program, Recv, Schedule, Send, Slice, Step
from collbench.algorithms.registry import get_algorithm
from collbench.algorithms.simulate import simulate
from collbench.execute.programs import algorithm_names
from collbench.gpu import interp_nccl
from collbench.gpu.interp_program import check_program, constants
from collbench.gpu.interp_reference import interpret_composed

LAYOUTS = [(4, Layout.blocked(4, 2)), (6, Layout.blocked(6, 3)), (6, Layout.round_robin(6, 2)),
           (7, Layout.blocked(7, 3)), (8, Layout.blocked(8, 4))]


def _same(got: list[np.ndarray], want: list[np.ndarray], what: str) -> None:
    for r, (g, w) in enumerate(zip(got, want)):
        assert g.dtype == w.dtype and g.tobytes() == w.tobytes(), f"{what}: rank {r}: {g} != {w}"


@pytest.mark.parametrize("collective", list(Collective), ids=lambda c: c.value)
def test_every_schedule_composed_equals_the_simulator(collective: Collective) -> None:
    checked = 0
    for name in algorithm_names(collective):
        if name == "native":
            continue
        algo = get_algorithm(name)
        for i, (p, layout) in enumerate(LAYOUTS):
            problem = Problem(collective, p, 2 * p + 1, p - 1 if collective.rooted else 0, layout)
            if algo.precondition(problem, op="sum"):
                continue
            schedule = algo.schedule(problem)
            rng = np.random.default_rng(p)
            inputs = [rng.integers(0, 4, problem.input_len(r)).astype(np.int32) for r in range(p)]
            ops = ("sum", "avg") if collective.reduces else ("sum",)
            for in_place in (False, True):
                for op in ops:
                    want = simulate(schedule, inputs, op, in_place=in_place)
                    policy = ("forward", "backward", "random")[(i + in_place) % 3]
                    got = interpret_composed(schedule, layout.nodes, inputs, op, in_place, policy=policy, seed=i)
                    _same(got, want, f"{name} {collective.value} p={p} {layout.nodes} in_place={in_place} {op}")
            checked += 1
    assert checked >= 3, f"{collective.value}: only {checked} cases ran"


def test_device_programs_name_only_peers_of_their_node() -> None:
    """Hierarchical allreduce on 2 nodes x 3: each rank's programs are numbered in its node (3
    ranks), the node-crossing step is NCCL between two interpreter launches, and every program
    passes the block-level checks."""
    problem = Problem(Collective.ALLREDUCE, 6, 61, 0, Layout.blocked(6, 3))
    schedule = get_algorithm("hierarchical").schedule(problem)
    plans = interp_nccl.plan_all(schedule, problem.layout.nodes, False, "sum")
    c = constants()
    control = [c["OP_SIGNAL_READY"], c["OP_WAIT_READY"], c["OP_SIGNAL_DONE"], c["OP_WAIT_DONE"]]
    for r, plan in enumerate(plans):
        assert plan.group == ((0, 1, 2) if r < 3 else (3, 4, 5))
        kinds = [part.kind for part in plan.parts]
        assert kinds == ["interp", "nccl", "interp"], (r, interp_nccl.describe(plan))
        nccl_part = plan.parts[1]
        assert {q for q, _ in nccl_part.sends + nccl_part.recvs} == {(r + 3) % 6}
        programs = [prog for prog in interp_nccl.compile_parts(problem, plans, r, False) if prog is not None]
        assert len(programs) == 2
        for prog in programs:
            check_program(prog)
            assert prog.nranks == 3 and prog.rank == r % 3
            peers = prog.instrs["peer"][np.isin(prog.instrs["op"], control)]
            assert peers.size and set(peers.tolist()) <= {0, 1, 2} - {r % 3}


def _rotation(n: int) -> Schedule:
    """Four ranks pass their whole output one to the right, in place, in one step: on nodes
    {0, 1} and {2, 3}, rank 0 sends its output to rank 1 (in node, read by the interpreter) and
    receives rank 3's (across, over NCCL) into that same range. NCCL runs first, so the receive
    must be staged until rank 1 has read the old values."""
    problem = Problem(Collective.ALLREDUCE, 4, n, 0, Layout.blocked(4, 2))
    whole = Slice(Buf.OUTPUT, 0, n)
    programs = tuple(Program(r, (Step(0, (Send((r + 1) % 4, whole),), (Recv((r - 1) % 4, whole),)),))
                     for r in range(4))
    return Schedule("rotation", problem, programs)


def test_a_cross_node_receive_into_a_range_a_node_peer_reads_is_staged() -> None:
    schedule = _rotation(13)
    groups = schedule.problem.layout.nodes
    plans = interp_nccl.plan_all(schedule, groups, True, "sum")
    assert [plan.staged for plan in plans] == [1, 0, 1, 0]
    inputs = [np.arange(13, dtype=np.int32) + 100 * r for r in range(4)]
    for policy in ("forward", "backward", "random"):
        got = interpret_composed(schedule, groups, inputs, "sum", True, policy=policy, seed=3)
        _same(got, [inputs[(r - 1) % 4] for r in range(4)], f"rotation {policy}")


def test_groups_follow_real_and_emulated_nodes() -> None:
    # (real node leader, emulated node) per rank: one machine, --ranks-per-node 2
    assert interp_nccl.groups_of([(0, 0), (0, 0), (0, 1), (0, 1)]) == ((0, 1), (2, 3))
    # two real nodes of 3, no emulation
    assert interp_nccl.groups_of([(0, 0), (0, 0), (0, 0), (3, 0), (3, 0), (3, 0)]) == ((0, 1, 2), (3, 4, 5))
    # emulated nodes larger than the real ones: memory is shared only inside a real node
    assert interp_nccl.groups_of([(0, 0), (0, 0), (2, 0), (2, 0)]) == ((0, 1), (2, 3))


# -- end to end under mpiexec on the fake -------------------------------------------------------


def _fake_env(tmp_path: Path) -> dict[str, str]:
    ipc_dir = tmp_path / "ipc"
    ipc_dir.mkdir(exist_ok=True)
    return {"PYTHONPATH": FAKECUDA + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "FAKECUDA_IPC_DIR": str(ipc_dir), "FAKECUDA_NCCL_DIR": str(tmp_path)}


@pytest.mark.mpi
@pytest.mark.parametrize("nranks,per_node,sizes", [(4, 2, ["-b", "8", "-e", "200", "-f", "25"]),
                                                   (6, 3, ["-b", "200", "-e", "200"])])
def test_hierarchical_and_ring_across_emulated_nodes(tmp_path, nranks, per_node, sizes):
    """2 nodes x 2 and 2 x 3: every row exact (validation against the simulator's result), two
    timed operations back to back (the interpreter's flag bases carry over between launches)."""
    out = tmp_path / "x.jsonl"
    result = run_cli(["run", "allreduce", "allgather", "reduce_scatter", "--backend", "cuda",
                      "--algo", "hierarchical,ring", "-np", str(nranks), "--ranks-per-node", str(per_node),
                      "-d", "bfloat16,int32", "-o", "sum,avg", *sizes, "-n", "2", "-w", "0", "-T", "60",
                      "--out", str(out)], env=_fake_env(tmp_path), timeout=150)
    assert result.returncode == 0, result.stderr[-3000:]
    records = read_jsonl(out)
    rows = [r for r in records if r["type"] == "row"]
    assert rows and all(r["wrong"] == 0 for r in rows), [r for r in rows if r["wrong"]][:2]
    assert {r["executor"] for r in rows} == {"cuda-interp+nccl"}
    seen = {(r["collective"], r["algorithm"]) for r in rows}
    assert {(c, a) for c in ("allreduce", "allgather", "reduce_scatter") for a in ("hierarchical", "ring")} <= seen
    assert {r["placement"] for r in rows} == {"out_of_place", "in_place"}
    assert {r["op"] for r in rows if r["collective"] == "allreduce"} == {"sum", "avg"}
    assert {r["dtype"] for r in rows} == {"bfloat16", "int32"}
    assert any(r["count"] >= 2 * nranks for r in rows)  # not only empty or one-element blocks
    assert not list((tmp_path / "ipc").iterdir()), "the fake IPC files outlived the run"
