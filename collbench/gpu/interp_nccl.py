"""Schedules across nodes: the interpreter (csrc/interp.cu, CUDA IPC) inside a node, NCCL across.

The ranks are split into *groups*: the ranks that share a node (and, with ``--ranks-per-node``,
the same emulated node). A group is one :class:`~collbench.gpu.ipc.IpcCommunicator`. Each rank's
lowered schedule (:func:`collbench.execute.bind.lower`, the IR every executor runs) is cut into
*parts*, in step order, all on one stream:

* a message whose peer is in the rank's group is an IPC read of the interpreter;
* a message whose peer is in another group is an ``ncclSend``/``ncclRecv`` over a world NCCL
  communicator, the step's cross-group messages in one NCCL group;
* a step with cross-group messages runs them first (one NCCL part), then the rest of the step:
  its in-group messages and local operations start a new interpreter run; a step with only
  cross-group messages runs its local copies and reductions with the reduction kernels
  (``gpu/kernels``), as the NCCL executor does;
* the steps between two NCCL parts form one interpreter launch, whose device program names only
  in-group peers (numbered as the group's IPC communicator numbers them).

Why this is safe: every rank runs its steps in order; a step's NCCL part waits only for its
peers' NCCL parts of the same step and an interpreter step only for in-group peers' same step, so
the ranks progress as under the step-synchronous semantics every executor already relies on. The
interpreter's ready/done flags are counted per ordered pair over all launches (running bases in
the signal buffers), so two ranks of a group may cut their steps into launches differently. Every
launch ends after every peer has read its sources, so an NCCL part never overwrites memory an
in-group peer still reads. One hazard is new: in a mixed step, an NCCL receive lands *before* the
interpreter's part of the step, where in-group peers still read this step's sources; a
cross-group receive into memory that the step also sends to an in-group peer therefore lands in
a staging area behind the scratch and is copied into place by the interpreter (after the done
waits its write needs). avg is summed through every part and divided once at the end by the
reduction kernels' ``finalize_avg`` (the program's ``DIVIDE`` would divide by the group's size).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from ..algorithms import Buf, Copy, Problem, Reduce, Schedule, Slice
from ..execute.bind import LoweredProgram, LoweredStep, lower, regions
from .interp_program import DeviceProgram, ProgramError, Span, _Compiler, _memory_of, _RankView

#: the ``executor`` of a row whose schedule ran on the interpreter inside nodes and NCCL across
EXECUTOR = "cuda-interp+nccl"


@dataclass(frozen=True)
class Part:
    """One piece of a rank's run, in order.

    ``interp``: the rank's filtered steps ``[start, stop)`` in one interpreter launch.
    ``nccl``: one step's cross-group messages (global peers) in one NCCL group, then ``local``
    (copies and reductions on the reduction kernels; empty when the interpreter runs them).
    """

    kind: str
    index: int
    start: int = 0
    stop: int = 0
    sends: tuple[tuple[int, Slice], ...] = ()
    recvs: tuple[tuple[int, Slice], ...] = ()
    local: tuple[Copy | Reduce, ...] = ()


@dataclass
class RankPlan:
    """A rank's schedule split into parts.

    Attributes:
        rank: global rank; ``group``: the global ranks of its group (index = IPC rank).
        filtered: the in-group steps, peers numbered in the group, scratch grown by the staging.
        parts: the run, in order.
        staged: cross-group receives that go through the staging area.
    """

    rank: int
    group: tuple[int, ...]
    filtered: LoweredProgram
    parts: list[Part] = field(default_factory=list)
    staged: int = 0

    @property
    def launches(self) -> int:
        return sum(p.kind == "interp" for p in self.parts)

    @property
    def nccl_groups(self) -> int:
        return sum(p.kind == "nccl" for p in self.parts)


def groups_of(color: Sequence[Any]) -> tuple[tuple[int, ...], ...]:
    """The groups (global ranks, ascending) of ranks with equal ``color[rank]``, ordered by their
    first rank."""
    out: dict[Any, list[int]] = {}
    for r, c in enumerate(color):
        out.setdefault(c, []).append(r)
    return tuple(sorted((tuple(g) for g in out.values()), key=lambda g: g[0]))


def _span(problem: Problem, rank: int, in_place: bool, scratch_len: int) -> Callable[[Slice], Span]:
    where = _memory_of(regions(problem, rank, in_place, scratch_len))

    def span(s: Slice) -> Span:
        mem, base = where[s.buf]
        return Span(mem, base + s.offset, s.length)
    return span


def split(problem: Problem, lowered: LoweredProgram, rank: int, group: Sequence[int], in_place: bool) -> RankPlan:
    """Cut ``rank``'s lowered program into interpreter runs and NCCL parts (see the module)."""
    group = tuple(group)
    local_of = {g: i for i, g in enumerate(group)}
    span = _span(problem, rank, in_place, lowered.scratch_len)
    filtered: list[LoweredStep] = []
    parts: list[Part] = []
    run_start = 0
    stage_max, staged = 0, 0

    def close_run() -> None:
        nonlocal run_start
        if len(filtered) > run_start:
            parts.append(Part("interp", filtered[run_start].index, run_start, len(filtered)))
        run_start = len(filtered)

    for step in lowered.steps:
        intra_s = tuple((local_of[q], s) for q, s in step.sends if q in local_of)
        intra_r = tuple((local_of[q], s) for q, s in step.recvs if q in local_of)
        cross_s = tuple((q, s) for q, s in step.sends if q not in local_of)
        cross_r = tuple((q, s) for q, s in step.recvs if q not in local_of)
        if not cross_s and not cross_r:
            filtered.append(LoweredStep(step.index, intra_s, intra_r, step.local))
            continue
        close_run()
        if not intra_s and not intra_r:  # NCCL only: its local ops on the reduction kernels
            parts.append(Part("nccl", step.index, sends=cross_s, recvs=cross_r, local=step.local))
            continue
        # mixed: NCCL first, then the in-group part and the local ops on the interpreter; a
        # receive landing where an in-group peer still reads this step's sources is staged
        sources = [span(s) for _, s in intra_s]
        landed: list[tuple[int, Slice]] = []
        copies: list[Copy | Reduce] = []
        top = lowered.scratch_len
        for q, dst in cross_r:
            if any(span(dst).overlaps(x) for x in sources):
                stage = Slice(Buf.SCRATCH, top, dst.length)
                top += dst.length
                landed.append((q, stage))
                copies.append(Copy(stage, dst))
                staged += 1
            else:
                landed.append((q, dst))
        stage_max = max(stage_max, top - lowered.scratch_len)
        parts.append(Part("nccl", step.index, sends=cross_s, recvs=tuple(landed)))
        filtered.append(LoweredStep(step.index, intra_s, intra_r, tuple(copies) + step.local))
    close_run()
    program = LoweredProgram(tuple(filtered), lowered.scratch_len + stage_max, lowered.finalize)
    return RankPlan(rank, group, program, parts, staged)


def plan_all(schedule: Schedule, groups: Sequence[Sequence[int]], in_place: bool, op: Optional[str]) -> list[RankPlan]:
    """Every rank's plan (a rank's device programs read its in-group peers' send sources)."""
    problem = schedule.problem
    group_of = {r: tuple(g) for g in groups for r in g}
    if sorted(group_of) != list(range(problem.nranks)):
        raise ValueError(f"groups {groups} do not partition {problem.nranks} ranks")
    return [split(problem, lower(problem, prog, in_place, op), prog.rank, group_of[prog.rank], in_place)
            for prog in schedule.programs]


def _views(problem: Problem, plans: Sequence[RankPlan], group: Sequence[int], in_place: bool) -> list[_RankView]:
    views = []
    for g in group:
        plan = plans[g]
        where = _memory_of(regions(problem, g, in_place, plan.filtered.scratch_len))
        out_mem, out_off = where[Buf.OUTPUT]
        views.append(_RankView(plan.filtered, where, Span(out_mem, out_off, problem.output_len(g))))
    return views


def compile_parts(problem: Problem, plans: Sequence[RankPlan], rank: int, in_place: bool) -> list[Optional[DeviceProgram]]:
    """``rank``'s device program for each of its parts (None for the NCCL parts), numbered in its
    group. The interpreter never runs the avg division here (see the module)."""
    plan = plans[rank]
    views = _views(problem, plans, plan.group, in_place)
    me = plan.group.index(rank)
    out: list[Optional[DeviceProgram]] = []
    last_interp = max((i for i, p in enumerate(plan.parts) if p.kind == "interp"), default=-1)
    for i, part in enumerate(plan.parts):
        if part.kind != "interp":
            out.append(None)
            continue
        # the liveness of received ranges (for fusions) may only look past this launch when
        # nothing but later interpreter steps follow; the final division always follows
        open_end = i != last_interp or i != len(plan.parts) - 1 or plan.filtered.finalize is not None
        compiler = _Compiler(problem, views, me, in_place, start=part.start, stop=part.stop,
                             nranks=len(plan.group), memory_rank=rank, open_end=open_end)
        out.append(compiler.compile())
    return out


def memory_need(problem: Problem, plan: RankPlan, programs: Sequence[Optional[DeviceProgram]], in_place: bool) -> int:
    """Elements each of the rank's in/out/scratch buffers must hold."""
    from .interp_program import memory_lengths

    lens = list(memory_lengths(problem, plan.rank, in_place, plan.filtered.scratch_len))
    for prog in programs:
        if prog is not None:
            lens = [max(a, b) for a, b in zip(lens, prog.memory_len)]
    return max(lens)


def check_plans(schedule: Schedule, groups: Sequence[Sequence[int]], in_place: bool, op: Optional[str]) -> None:
    """Compile every rank's parts (raises :class:`ProgramError` where the composition cannot run
    the schedule): for tests and for :func:`describe`."""
    plans = plan_all(schedule, groups, in_place, op)
    for r in range(schedule.problem.nranks):
        compile_parts(schedule.problem, plans, r, in_place)


def describe(plan: RankPlan) -> list[str]:
    """The parts of a rank, one line each (docs and debugging)."""
    lines = []
    for p in plan.parts:
        if p.kind == "interp":
            lines.append(f"interp steps {[s.index for s in plan.filtered.steps[p.start:p.stop]]}")
        else:
            lines.append(f"nccl step {p.index}: send to {[q for q, _ in p.sends]}, recv from "
                         f"{[q for q, _ in p.recvs]}, {len(p.local)} local op(s) on the reduction kernels")
    return lines


class ComposedRun:
    """A rank's parts bound to its group's IPC buffers, a world NCCL communicator and one stream:
    :meth:`run` issues every part in order without host synchronisation (capturable).

    Args:
        ipc: the group's :class:`~collbench.gpu.ipc.IpcCommunicator` (its in/out/scratch buffers
            hold the schedule's input, output and scratch as :func:`~collbench.execute.bind.regions`
            places them; NCCL sends from and receives into the same memory).
        nccl_comm: NCCL over every rank (global peers), or anything with send/recv.
        stream: the backend's stream.
    """

    def __init__(self, ipc: Any, nccl_comm: Any, stream: Any, problem: Problem, plan: RankPlan,
                 programs: Sequence[Optional[DeviceProgram]], in_place: bool, dtype: str, op: Optional[str]) -> None:
        from cupy.cuda import nccl

        from ..execute.bind import Memory
        from . import kernels
        from .interp import ProgramLaunch
        from .nccl_lib import NCCL_DTYPES

        cp = ipc._cp
        self.ipc, self.plan = ipc, plan
        where = regions(problem, plan.rank, in_place, plan.filtered.scratch_len)
        memories = {Memory.SEND: ipc._in, Memory.RECV: ipc._out, Memory.SCRATCH: ipc._scratch}

        def view(s: Slice) -> Any:
            reg = where[s.buf]
            return ipc._view(memories[reg.memory], s.length, dtype, reg.offset + s.offset)

        self.input = view(Slice(Buf.INPUT, 0, where[Buf.INPUT].length))
        self.output = view(Slice(Buf.OUTPUT, 0, where[Buf.OUTPUT].length))
        nccl_dtype, sptr = NCCL_DTYPES[dtype], stream.ptr
        self.launches: list[Any] = []
        calls: list[Callable[[], Any]] = []
        for part, prog in zip(plan.parts, programs):
            if part.kind == "interp":
                assert prog is not None
                if len(prog.instrs):
                    launch = ProgramLaunch(ipc, prog, dtype, op)
                    self.launches.append(launch)
                    calls.append(_bind(launch.launch, stream))
                continue
            if part.sends or part.recvs:
                calls.append(nccl.groupStart)
                for q, s in part.sends:
                    calls.append(_bind(nccl_comm.send, view(s).data.ptr, s.length, nccl_dtype, q, sptr))
                for q, s in part.recvs:
                    calls.append(_bind(nccl_comm.recv, view(s).data.ptr, s.length, nccl_dtype, q, sptr))
                calls.append(nccl.groupEnd)
            for item in part.local:
                if item.dst.length == 0:
                    continue
                if isinstance(item, Copy):
                    src, dst = view(item.src), view(item.dst)
                    calls.append(_bind(cp.cuda.runtime.memcpyAsync, dst.data.ptr, src.data.ptr, src.nbytes,
                                       cp.cuda.runtime.memcpyDeviceToDevice, sptr))
                else:
                    dst, a, b = view(item.dst), view(item.a), view(item.b)
                    calls.append(_bind_kw(kernels.reduce, op, dst, a, b, dtype=dtype, stream=stream))
        finalize = plan.filtered.finalize
        if finalize is not None and finalize.length:
            calls.append(_bind_kw(kernels.finalize_avg, view(finalize), problem.nranks, dtype=dtype, stream=stream))
        self._calls = calls

    def run(self) -> None:
        for call in self._calls:
            call()

    def free(self) -> None:
        for launch in self.launches:
            launch.free()
        self._calls, self.launches = [], []


def _bind(function: Callable[..., Any], *args: Any) -> Callable[[], Any]:
    return lambda: function(*args)


def _bind_kw(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[[], Any]:
    return lambda: function(*args, **kwargs)


__all__ = ["EXECUTOR", "ComposedRun", "Part", "ProgramError", "RankPlan", "check_plans", "compile_parts", "describe",
           "groups_of", "memory_need", "plan_all", "split"]
