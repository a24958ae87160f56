"""The bind step: a rank's schedule program made ready for an executor, once per size.

:func:`bind` is the one place that decides where a run's data lives, for every executor and
every kind of memory:

* **lowering** (:func:`lower`) resolves in-place aliasing (so every range names the memory it
  really touches), drops copies of a range onto itself (they appear in place), and keeps the
  step structure: each step is one group of sends/receives posted together, then local copies
  and reductions in order;
* **buffer binding** (:func:`regions`) maps each of the program's buffers (input, output,
  scratch) onto the backend's send buffer, receive buffer or the executor's scratch, following
  the MPI/NCCL in-place conventions, and makes the typed views the executors address and the
  harness fills and reads, through a function the backend supplies (numpy and CuPy alike).

Nothing here allocates in the timed loop. :func:`nccl_calls` spells out the exact grouped NCCL
call sequence, which the NCCL transport executes and the tests check against the schedule
without a GPU.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ..algorithms import Buf, Copy, Problem, Program, Reduce, Slice
from ..algorithms.collectives import descriptor
from ..algorithms.schedule import inplace_input_offset, resolve_slice
from ..dtypes import DType


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
    desc = descriptor(problem.collective)
    if op != "avg" or not desc.reduces or problem.count == 0 or problem.nranks == 1:
        return None  # (dividing by one rank is the identity)
    if not desc.has_result(problem, rank):
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


# -- buffer binding ----------------------------------------------------------------------------------


class Memory(enum.Enum):
    """The physical buffers of a schedule run: the backend's two, and the executor's scratch
    (each executor allocates it in its own kind of memory)."""

    SEND = "send"
    RECV = "recv"
    SCRATCH = "scratch"


@dataclass(frozen=True)
class Region:
    """Where one of the program's buffers lives: ``length`` elements from element ``offset``."""

    memory: Memory
    offset: int
    length: int


#: ``view(memory, count, offset)``: ``count`` elements of the run's dtype from element ``offset``
#: of the backend's SEND or RECV buffer (a numpy or CuPy array aliasing that memory)
TypedView = Callable[[Memory, int, int], Any]


def regions(problem: Problem, rank: int, in_place: bool, scratch_len: int = 0) -> dict[Buf, Region]:
    """Where INPUT, OUTPUT and SCRATCH of ``rank``'s program live.

    Out of place, the input is the send buffer and the output the receive buffer. In place they
    share the receive buffer with the nccl-tests/NCCL layout (:func:`inplace_input_offset`):
    allgather's input is the rank's block of the output, reduce_scatter's output is the rank's
    block of the input, the others' input and output are the same elements.
    """
    n_in, n_out = problem.input_len(rank), problem.output_len(rank)
    scratch = Region(Memory.SCRATCH, 0, scratch_len)
    if not in_place:
        return {Buf.INPUT: Region(Memory.SEND, 0, n_in), Buf.OUTPUT: Region(Memory.RECV, 0, n_out),
                Buf.SCRATCH: scratch}
    host, offset = inplace_input_offset(problem, rank)
    if host is Buf.OUTPUT:
        return {Buf.INPUT: Region(Memory.RECV, offset, n_in), Buf.OUTPUT: Region(Memory.RECV, 0, n_out),
                Buf.SCRATCH: scratch}
    return {Buf.INPUT: Region(Memory.RECV, 0, n_in), Buf.OUTPUT: Region(Memory.RECV, offset, n_out),
            Buf.SCRATCH: scratch}


@dataclass(frozen=True, eq=False)  # holds arrays: compared by identity
class BoundProgram:
    """A lowered program and the memory it runs on.

    Attributes:
        lowered: the program with physical ranges (in-place aliasing resolved).
        regions: where each of INPUT, OUTPUT and SCRATCH lives.
        buffers: INPUT and OUTPUT as typed views of the backend's memory; the ranges of
            ``lowered`` index these (SCRATCH is allocated by the executor, ``scratch_len`` long).
    """

    lowered: LoweredProgram
    regions: Mapping[Buf, Region]
    buffers: Mapping[Buf, Any]

    @property
    def input(self) -> Any:
        """Where the harness writes this rank's input."""
        return self.buffers[Buf.INPUT]

    @property
    def output(self) -> Any:
        """Where the harness reads this rank's result."""
        return self.buffers[Buf.OUTPUT]

    @property
    def scratch_len(self) -> int:
        return self.lowered.scratch_len


def bind(problem: Problem, program: Program, in_place: bool, op: str | None,
         view: TypedView) -> BoundProgram:
    """Lower ``program`` (of ``program.rank``) and bind it to the backend's memory.

    Args:
        view: makes typed views of the backend's SEND/RECV buffers (see :func:`views_of`).
    """
    lowered = lower(problem, program, in_place, op)
    where = regions(problem, program.rank, in_place, lowered.scratch_len)
    buffers = {buf: view(where[buf].memory, where[buf].length, where[buf].offset)
               for buf in (Buf.INPUT, Buf.OUTPUT)}
    return BoundProgram(lowered, where, buffers)


def views_of(send: Any, recv: Any, dtype: DType,
             typed: Callable[[Any, DType, int, int], Any]) -> TypedView:
    """The :data:`TypedView` of a backend whose raw byte buffers are ``send`` and ``recv`` and
    whose ``typed(buffer, dtype, count, offset)`` makes a typed view of one (both the MPI and
    the NCCL backend have one)."""
    raw = {Memory.SEND: send, Memory.RECV: recv}
    return lambda memory, count, offset: typed(raw[memory], dtype, count, offset)
