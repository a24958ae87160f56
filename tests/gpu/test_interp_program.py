"""The interpreter's device programs (collbench/gpu/interp_program.py), without a GPU.

Every registered algorithm of every collective is compiled into device programs and executed by
the pure-Python reference interpreter (collbench/gpu/interp_reference.py), with the ranks
interleaved adversarially and every remote read and every write checked for happens-before
(vector clocks). The result must be exactly, bit for bit, what the numpy simulator computes from
the schedule itself, so a mistake in compiling (a wrong source range, a missing flag, a fused
reduction whose operand was still needed) fails here.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "algorithms"))
from algo_cases import IMPLEMENTATIONS, build, impl_id  # noqa: E402  (tests/algorithms helpers)

from collbench.algorithms import Buf, Collective, Problem, Program, Recv, Schedule, Send, Slice, Step  # noqa: E402
from collbench.algorithms.simulate import simulate  # noqa: E402
from collbench.gpu import kernel_sources as _sources  # noqa: E402
from collbench.gpu.interp_program import (  # noqa: E402
    INSTR_DTYPE,
    ProgramError,
    check_program,
    compile_schedule,
    constants,
)
from collbench.gpu.interp_reference import InterpDeadlock, InterpRace, interpret  # noqa: E402


def _inputs(problem: Problem, dtype, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 4, problem.input_len(r)).astype(dtype) for r in range(problem.nranks)]


def _problem(impl, p: int, count: int, layout_index: int = 0) -> Problem:
    layouts = impl.verify_layouts(p) if impl.verify_layouts else [None]
    root = p - 1 if impl.collective.rooted else 0
    return Problem(impl.collective, p, count, root, layouts[layout_index % len(layouts)])


def _same(got: list[np.ndarray], want: list[np.ndarray], what: str) -> None:
    for r, (g, w) in enumerate(zip(got, want)):
        assert g.dtype == w.dtype and g.shape == w.shape, f"{what}: rank {r}"
        assert g.tobytes() == w.tobytes(), f"{what}: rank {r}: {g} != {w}"


def _check(schedule: Schedule, op: str, dtype, seed: int, policies: tuple[str, ...], launches: int = 1) -> None:
    inputs = _inputs(schedule.problem, dtype, seed)
    for in_place in (False, True):
        want = simulate(schedule, inputs, op, in_place=in_place)
        programs = compile_schedule(schedule, in_place, op)
        for policy in policies:
            got = interpret(schedule, inputs, op, in_place, policy=policy, seed=seed, programs=programs)
            _same(got, want, f"{schedule.algorithm} {schedule.problem} in_place={in_place} {policy}")


@pytest.mark.parametrize("pair", IMPLEMENTATIONS, ids=impl_id)
def test_every_algorithm_equals_the_simulator(pair) -> None:
    """p = 1..8, in and out of place, odd counts (and one element: mostly empty blocks)."""
    algo, impl = pair
    checked = 0
    for p in range(1, 9):
        for count in (2 * p + 1,) if p not in (3, 8) else (2 * p + 1, 1):
            problem = _problem(impl, p, count, layout_index=p)
            if algo.precondition(problem, op="sum"):
                continue
            policy = ("forward", "backward", "roundrobin", "random")[p % 4]
            _check(algo.schedule(problem), "sum", np.int32, seed=p * 31 + count, policies=(policy,))
            checked += 1
    assert checked >= 6, f"{algo.name} {impl.collective.value}: only {checked} rank counts ran"


@pytest.mark.parametrize("pair", [pair for pair in IMPLEMENTATIONS if len(pair[1].verify_options) > 1],
                         ids=impl_id)
def test_algorithm_options(pair) -> None:
    algo, impl = pair
    for options in impl.verify_options[1:]:
        for p in (7,):
            problem = _problem(impl, p, 3 * p + 2)
            if algo.precondition(problem, op="sum", options=options):
                continue
            _check(algo.schedule(problem, options), "sum", np.int64, seed=p, policies=("random",))


@pytest.mark.parametrize("name,collective", [("ring", "allreduce"), ("rabenseifner", "allreduce"),
                                             ("tree", "reduce")])
def test_every_op_and_dtype(name: str, collective: str) -> None:
    schedule = build(name, collective, 5, 13, root=2)
    for op in ("sum", "prod", "max", "min", "avg"):
        for dtype in (np.int8, np.uint64, np.float16, ml_dtypes.bfloat16, np.float32, np.float64):
            _check(schedule, op, dtype, seed=7, policies=("forward",))


@pytest.mark.parametrize("name,collective,p", [("ring", "allreduce", 4), ("rabenseifner", "allreduce", 6),
                                               ("recursive_doubling", "allreduce", 3), ("ring", "allgather", 5),
                                               ("pairwise", "alltoall", 4), ("bruck", "allgather", 7)])
def test_chains_of_launches(name: str, collective: str, p: int) -> None:
    """Back-to-back launches on the same memory (a chain, or graph replays): the epochs carry over
    on the device and a fast rank may start the next launch while others finish this one. In place,
    each launch's result is the next one's input."""
    schedule = build(name, collective, p, 2 * p + 3)
    problem = schedule.problem
    inputs = _inputs(problem, np.int64, 3)
    for in_place in (False, True):
        programs = compile_schedule(schedule, in_place, "sum")
        want = simulate(schedule, inputs, "sum", in_place=in_place)
        if in_place and collective in ("allreduce", "alltoall"):  # the output is the next input
            for _ in range(2):
                want = simulate(schedule, want, "sum", in_place=True)
        for policy in ("forward", "backward", "random"):
            got = interpret(schedule, inputs, "sum", in_place, policy=policy, seed=p, launches=3, programs=programs)
            _same(got, want, f"{name} chain in_place={in_place} {policy}")


def test_ring_allreduce_fuses_its_reductions() -> None:
    """Ring reduce-scatter steps read the neighbour's block and reduce in one instruction (no
    scratch round trip), and a ring step waits for no done (the ranges it writes are not being read)."""
    programs = compile_schedule(build("ring", "allreduce", 4, 64), False, "sum")
    for prog in programs:
        assert prog.fused == 3 and prog.staged == 0
        assert prog.count("reduce") == 3 and prog.count("wait_ready") == 6 and prog.count("signal_done") == 6
        # done waits: before overwriting a block sent earlier (allgather phase), and at the end
        assert prog.count("wait_done") <= 4


def _swap_schedule(n: int) -> Schedule:
    """Two ranks exchange their whole output in place, in one step: each receives into the very
    range it sends (a peer is still reading it), so the receive must be staged."""
    problem = Problem(Collective.ALLREDUCE, 2, n)
    whole = Slice(Buf.OUTPUT, 0, n)
    programs = tuple(Program(r, (Step(0, (Send(1 - r, whole),), (Recv(1 - r, whole),)),)) for r in range(2))
    return Schedule("swap", problem, programs)


def test_receive_into_own_send_source_is_staged() -> None:
    schedule = _swap_schedule(11)
    programs = compile_schedule(schedule, True, "sum")
    assert [p.staged for p in programs] == [1, 1]
    inputs = [np.arange(11, dtype=np.int32), np.arange(11, dtype=np.int32) * 10]
    for policy in ("forward", "backward"):
        got = interpret(schedule, inputs, "sum", True, policy=policy, programs=programs)
        _same(got, [inputs[1], inputs[0]], f"swap {policy}")


@pytest.mark.parametrize("drop", ["OP_WAIT_DONE", "OP_WAIT_READY", "OP_SYNC", "OP_SIGNAL_DONE"])
def test_a_missing_synchronisation_is_caught(drop: str) -> None:
    """The reference interpreter is only a test if a broken program fails it."""
    c = constants()
    caught = 0
    cases = [("ring", "allreduce"), ("direct", "allgather"), ("tree", "broadcast"), ("pairwise", "alltoall")]
    for name, collective in cases:
        schedule = build(name, collective, 4, 9)
        inputs = _inputs(schedule.problem, np.int32, 1)
        programs = [dataclasses.replace(p, instrs=p.instrs[p.instrs["op"] != c[drop]])
                    for p in compile_schedule(schedule, True, "sum")]
        try:
            interpret(schedule, inputs, "sum", True, programs=programs)
        except (InterpRace, InterpDeadlock, ProgramError):
            caught += 1
    assert caught == len(cases)


def test_program_bytes_match_the_kernel_layout() -> None:
    c, h = constants(), _sources.header_constants()
    assert INSTR_DTYPE.itemsize == c["INSTR_BYTES"] == 64
    assert (c["SIG_WORD"] + c["SIG_WORDS"]) * 4 <= h["SIG_BYTES"]
    assert c["SIG_WORD"] >= h["SIG_ERROR_WORD"] + h["ERR_WORDS"]
    prog = compile_schedule(build("ring", "allreduce", 3, 10), False, "sum")[1]
    raw = prog.to_bytes(4096, 4)
    assert raw.dtype == np.uint8 and raw.size == c["HEADER_BYTES"] + 64 * len(prog.instrs)
    words = raw[:c["HEADER_BYTES"]].view(np.uint32)
    assert list(words[:6]) == [c["MAGIC"], c["VERSION"], 1, 3, len(prog.instrs), 4]
    assert int(raw[24:32].view(np.uint64)[0]) == 4096
    assert list(words[16:19]) == list(prog.totals[0])  # ready signals per peer
    back = raw[c["HEADER_BYTES"]:].view(INSTR_DTYPE)
    assert back.tobytes() == prog.instrs.tobytes()
    with pytest.raises(ProgramError, match="needs"):
        prog.to_bytes(8, 4)


def test_check_program_rejects_a_conflict_inside_a_phase() -> None:
    prog = compile_schedule(build("recursive_doubling", "allreduce", 4, 8), True, "sum")[0]
    check_program(prog)
    c = constants()
    no_sync = dataclasses.replace(prog, instrs=prog.instrs[prog.instrs["op"] != c["OP_SYNC"]])
    with pytest.raises(ProgramError):
        check_program(no_sync)
