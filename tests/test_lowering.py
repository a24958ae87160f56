"""Lowering schedules to transport calls: checked against the schedules, no GPU needed."""

from __future__ import annotations

import functools

import pytest

from collbench.algorithms import Buf, Collective, Copy, Problem, Slice
from collbench.algorithms.registry import algorithms_for
from collbench.algorithms.schedule import resolve_slice
from collbench.execute.bind import lower, nccl_calls

CASES = [(c, a.name) for c in Collective for a in algorithms_for(c, include_native=False)]


def _problem(collective: Collective, name: str, nranks: int, count: int) -> Problem:
    from collbench.algorithms import Layout

    layout = Layout.blocked(nranks, 2) if name == "hierarchical" else None
    return Problem(collective, nranks, count, root=nranks - 1 if collective.rooted else 0, layout=layout)


@pytest.mark.parametrize("collective, name", CASES, ids=[f"{c.value}-{n}" for c, n in CASES])
@pytest.mark.parametrize("in_place", [False, True])
def test_nccl_call_sequence_matches_the_schedule(collective, name, in_place):
    from collbench.algorithms.registry import get_algorithm

    problem = _problem(collective, name, 4, 37)
    algorithm = get_algorithm(name)
    for rank in range(problem.nranks):
        program = algorithm.program(problem, rank)
        calls = nccl_calls(lower(problem, program, in_place, "avg" if collective.reduces else None))
        # Rebuild the expected sequence straight from the schedule: one NCCL group per step with
        # messages (sends, then receives, on the memory in-place aliasing really addresses),
        # then that step's local ops.
        expected = []
        phys = functools.partial(resolve_slice, problem, rank, in_place=in_place)
        for step in program.steps:
            sends = [("send", m.peer, phys(m.src)) for m in step.sends if m.src.length]
            recvs = [("recv", m.peer, phys(m.dst)) for m in step.recvs if m.dst.length]
            if sends or recvs:
                expected += [("group_start",), *sends, *recvs, ("group_end",)]
            for op in step.local:
                if isinstance(op, Copy):
                    if phys(op.src) != phys(op.dst):
                        expected.append(("copy", phys(op.src), phys(op.dst)))
                else:
                    expected.append(("reduce", phys(op.dst), phys(op.a), phys(op.b)))
        if collective.reduces and problem.count and (collective is not Collective.REDUCE or rank == problem.root):
            out = resolve_slice(problem, rank, Slice(Buf.OUTPUT, 0, problem.output_len(rank)), in_place)
            expected.append(("finalize_avg", out))
        assert calls == expected
        # groups are balanced and never nested
        depth = 0
        for call in calls:
            depth += {"group_start": 1, "group_end": -1}.get(call[0], 0)
            assert depth in (0, 1)
        assert depth == 0


def test_in_place_lowering_never_touches_the_aliased_buffer():
    problem = Problem(Collective.ALLGATHER, 4, 8)
    from collbench.algorithms.registry import get_algorithm

    for rank in range(4):
        lowered = lower(problem, get_algorithm("ring").program(problem, rank), True, None)
        for step in lowered.steps:
            slices = [s for _, s in step.sends + step.recvs]
            slices += [x for op in step.local for x in ((op.src, op.dst) if isinstance(op, Copy) else (op.dst, op.a, op.b))]
            assert all(s.buf is not Buf.INPUT for s in slices)


def test_one_rank_avg_needs_no_division():
    problem = Problem(Collective.ALLREDUCE, 1, 8)
    from collbench.algorithms.registry import get_algorithm

    lowered = lower(problem, get_algorithm("ring").program(problem, 0), False, "avg")
    assert lowered.finalize is None
