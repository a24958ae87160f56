"""Lowering a rank's schedule program to what a transport executes.

Lowering resolves in-place aliasing (so every range names the memory it really touches), drops
copies of a range onto itself (they appear in place), and keeps the step structure: each step
is one group of sends/receives posted together, then local copies and reductions in order.
Transports bind the resulting regions to their buffers once per size; nothing here allocates
in the timed loop. :func:`nccl_calls` spells out the exact grouped NCCL call sequence, which the
NCCL transport executes and the tests check against the schedule without a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..algorithms import Buf, Collective, Copy, Problem, Program, Reduce, Slice
from ..algorithms.schedule import resolve_slice


@dataclass(frozen=True)
class LoweredStep:
    """One step with physical ranges: (peer, slice) messages and local ops."""

    index: int
    sends: tuple[tuple[int, Slice], ...]
    recvs: tuple[tuple[int, Slice], ...]
    local: tuple[Copy | Reduce, ...]


@dataclass(frozen=True)
class LoweredProgram:
    steps: tuple[LoweredStep, ...]
    scratch_len: int
    finalize: Slice | None   # output range to divide by nranks when the op is avg


def lower(problem: Problem, program: Program, in_place: bool, op: str | None) -> LoweredProgram:
    """Resolve ``program`` (of ``program.rank``) for one placement and op."""
    rank = program.rank

    def phys(s: Slice) -> Slice:
        return resolve_slice(problem, rank, s, in_place)

    steps = []
    for step in program.steps:
        sends = tuple((m.peer, phys(m.src)) for m in step.sends if m.src.length)
        recvs = tuple((m.peer, phys(m.dst)) for m in step.recvs if m.dst.length)
        local: list[Copy | Reduce] = []
        for item in step.local:
            if isinstance(item, Copy):
                src, dst = phys(item.src), phys(item.dst)
                if src != dst and src.length:
                    local.append(Copy(src, dst))
            elif item.dst.length:
                local.append(Reduce(phys(item.dst), phys(item.a), phys(item.b)))
        if sends or recvs or local:
            steps.append(LoweredStep(step.index, sends, recvs, tuple(local)))
    return LoweredProgram(tuple(steps), program.scratch_len, _finalize_range(problem, rank, in_place, op))


def _finalize_range(problem: Problem, rank: int, in_place: bool, op: str | None) -> Slice | None:
    """Where an avg result lives on this rank (none for non-reducing collectives or non-roots)."""
    coll = problem.collective
    if op != "avg" or not coll.reduces or problem.count == 0 or problem.nranks == 1:
        return None  # (dividing by one rank is the identity)
    if coll is Collective.REDUCE and rank != problem.root:
        return None
    return resolve_slice(problem, rank, Slice(Buf.OUTPUT, 0, problem.output_len(rank)), in_place)


def nccl_calls(lowered: LoweredProgram) -> list[tuple]:
    """The call sequence the NCCL transport issues, one tuple per call:

    ``("group_start",)``, ``("send", peer, slice)``, ``("recv", peer, slice)``,
    ``("group_end",)``, ``("copy", src, dst)``, ``("reduce", dst, a, b)``, ``("finalize_avg", slice)``.
    Sends and receives of one step form one NCCL group, so NCCL can progress them together
    (a send to a peer that also sends to us would otherwise deadlock).
    """
    calls: list[tuple] = []
    for step in lowered.steps:
        if step.sends or step.recvs:
            calls.append(("group_start",))
            calls += [("send", peer, s) for peer, s in step.sends]
            calls += [("recv", peer, s) for peer, s in step.recvs]
            calls.append(("group_end",))
        for item in step.local:
            if isinstance(item, Copy):
                calls.append(("copy", item.src, item.dst))
            else:
                calls.append(("reduce", item.dst, item.a, item.b))
    if lowered.finalize is not None:
        calls.append(("finalize_avg", lowered.finalize))
    return calls
