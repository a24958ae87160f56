"""The schedule IR: a collective algorithm written down as data.

A *program* is what one rank does: an ordered list of steps. In each step the rank posts all of
its sends and receives at once (non-blocking), waits for them, then applies its local operations
(copies and reductions) in order. Steps carry a global index: a send of rank ``a`` in step ``s``
to peer ``b`` is matched by the receive of rank ``b`` from peer ``a`` in the same step ``s``
(several messages between one pair in one step match in the order they are listed).

Buffers are addressed by element ranges (:class:`Slice`) in three per-rank buffers: the input,
the output and a scratch buffer whose length the program declares. Ranges are in elements, not
bytes, so a schedule is independent of the data type; the executor multiplies by the item size.

In-place runs alias the input into the output exactly as nccl-tests and MPI do (see
:func:`inplace_input_offset`); a schedule must be correct in both modes, and the verifier checks
both.

Nothing here imports MPI, CUDA or does I/O: schedules can be built, verified, simulated and costed
anywhere.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    from .vcounts import Skew


class Collective(enum.Enum):
    """The collectives collbench knows. Values are the canonical CLI spellings."""

    ALLREDUCE = "allreduce"
    ALLGATHER = "allgather"
    REDUCE_SCATTER = "reduce_scatter"
    BROADCAST = "broadcast"
    REDUCE = "reduce"
    ALLTOALL = "alltoall"
    ALLTOALLV = "alltoallv"

    # Members are singletons compared by identity: hash them by identity in C too (Enum's
    # default hashes the name in Python, which dominates dict lookups in the verifier).
    __hash__ = object.__hash__

    @property
    def reduces(self) -> bool:
        """Whether the collective combines data with a reduction operator."""
        return _collectives.descriptor(self).reduces

    @property
    def rooted(self) -> bool:
        """Whether the collective has a root rank."""
        return _collectives.descriptor(self).rooted

    @classmethod
    def parse(cls, name: str) -> "Collective":
        """Accept the canonical name and common spellings (``reduce-scatter``, ``all_reduce``)."""
        key = name.strip().lower().replace("-", "_")
        aliases = {"all_reduce": "allreduce", "all_gather": "allgather",
                   "reducescatter": "reduce_scatter", "bcast": "broadcast",
                   "all_to_all": "alltoall", "all_to_all_v": "alltoallv",
                   "all_to_allv": "alltoallv"}
        key = aliases.get(key, key)
        for member in cls:
            if member.value == key:
                return member
        known = ", ".join(m.value for m in cls)
        raise ValueError(f"unknown collective {name!r} (known: {known})")


class Buf(enum.Enum):
    """The three per-rank buffers a program can address."""

    INPUT = "in"
    OUTPUT = "out"
    SCRATCH = "scratch"

    __hash__ = object.__hash__  # identity hash in C, as for Collective


@dataclass(frozen=True)
class Slice:
    """A range of ``length`` elements starting at element ``offset`` of buffer ``buf``."""

    buf: Buf
    offset: int
    length: int

    @property
    def end(self) -> int:
        return self.offset + self.length


@dataclass(frozen=True)
class Send:
    """Send the elements of ``src`` to rank ``peer``."""

    peer: int
    src: Slice


@dataclass(frozen=True)
class Recv:
    """Receive ``dst.length`` elements from rank ``peer`` into ``dst`` (overwriting it)."""

    peer: int
    dst: Slice


@dataclass(frozen=True)
class Copy:
    """Local copy ``dst[:] = src[:]`` (same length)."""

    src: Slice
    dst: Slice


@dataclass(frozen=True)
class Reduce:
    """Local reduction ``dst[:] = a[:] (op) b[:]``; ``a`` may be ``dst`` itself (accumulate).

    The operator is not part of the schedule: it is the run's ``op``. ``avg`` is executed as
    ``sum`` followed by a division of the final output by the rank count, which the executor
    (not the schedule) applies.
    """

    dst: Slice
    a: Slice
    b: Slice


LocalOp = Union[Copy, Reduce]


@dataclass(frozen=True)
class Step:
    """One step of one rank: communication first (all posted at once), then local ops in order."""

    index: int
    sends: tuple[Send, ...] = ()
    recvs: tuple[Recv, ...] = ()
    local: tuple[LocalOp, ...] = ()


@dataclass(frozen=True)
class Layout:
    """Which ranks live on which node (for hierarchical algorithms and the cost model).

    ``nodes[k]`` lists the global ranks on node ``k``. The default layout is one node holding
    every rank.
    """

    nodes: tuple[tuple[int, ...], ...]

    @classmethod
    def single_node(cls, nranks: int) -> "Layout":
        return cls((tuple(range(nranks)),))

    @classmethod
    def blocked(cls, nranks: int, ranks_per_node: int) -> "Layout":
        """Consecutive blocks of ``ranks_per_node`` ranks (the last node may be smaller)."""
        if ranks_per_node < 1:
            raise ValueError("ranks_per_node must be at least 1")
        return cls(tuple(tuple(range(start, min(start + ranks_per_node, nranks)))
                         for start in range(0, nranks, ranks_per_node)))

    @classmethod
    def round_robin(cls, nranks: int, nnodes: int) -> "Layout":
        """Ranks dealt to ``nnodes`` nodes in turn: node ``k`` holds ``k, k + nnodes, ...``."""
        if not 1 <= nnodes <= nranks:
            raise ValueError("nnodes must be between 1 and nranks")
        return cls(tuple(tuple(range(k, nranks, nnodes)) for k in range(nnodes)))

    @property
    def nranks(self) -> int:
        return sum(len(node) for node in self.nodes)

    @property
    def uniform(self) -> bool:
        """True when every node holds the same number of ranks."""
        return len({len(node) for node in self.nodes}) <= 1

    def node_of(self, rank: int) -> int:
        for k, node in enumerate(self.nodes):
            if rank in node:
                return k
        raise ValueError(f"rank {rank} is on no node of the layout")


@dataclass(frozen=True)
class Problem:
    """What a schedule must compute: the collective, rank count, element count and root.

    ``count`` follows nccl-tests: for allreduce, broadcast and reduce it is the number of elements
    in each rank's buffer; for allgather it is the per-rank input count (output is ``count *
    nranks``); for reduce_scatter it is the per-rank output count (input is ``count * nranks``);
    for alltoall it is the count per peer (input and output are ``count * nranks``); for
    alltoallv it is the count to the busiest destination, and ``skew`` (a
    :class:`~.vcounts.Skew`, None for the default) spreads the rest (:mod:`.vcounts`).
    """

    collective: Collective
    nranks: int
    count: int
    root: int = 0
    layout: Layout | None = None
    skew: "Skew | None" = None

    def __post_init__(self) -> None:
        if self.nranks < 1:
            raise ValueError("nranks must be at least 1")
        if self.count < 0:
            raise ValueError("count must be non-negative")
        if not 0 <= self.root < self.nranks:
            raise ValueError(f"root {self.root} is outside 0..{self.nranks - 1}")
        if self.layout is not None:
            ranks = sorted(r for node in self.layout.nodes for r in node)
            if ranks != list(range(self.nranks)):
                raise ValueError(f"layout does not hold each of the ranks 0..{self.nranks - 1} "
                                 f"exactly once")
            if any(len(node) == 0 for node in self.layout.nodes):
                raise ValueError("layout has an empty node")
        if self.skew is not None:
            if self.collective is not Collective.ALLTOALLV:
                raise ValueError(f"a skew describes alltoallv, not {self.collective.value}")
            reason = self.skew.reason(self.nranks)
            if reason:
                raise ValueError(reason)

    @property
    def nodes(self) -> Layout:
        return self.layout if self.layout is not None else Layout.single_node(self.nranks)

    def input_len(self, rank: int) -> int:
        """Elements in ``rank``'s input buffer (see :mod:`.collectives`)."""
        return _collectives.descriptor(self.collective).input_len(self, rank)

    def output_len(self, rank: int) -> int:
        """Elements in ``rank``'s output buffer (see :mod:`.collectives`)."""
        return _collectives.descriptor(self.collective).output_len(self, rank)


def inplace_input_offset(problem: Problem, rank: int) -> tuple[Buf, int]:
    """Where the input lives in an in-place run, as (buffer it aliases, element offset).

    Follows MPI/NCCL conventions (the facts live in :mod:`.collectives`): allgather's input is
    the rank's own block of the output; reduce_scatter's output is the rank's own block of the
    input (so the *output* aliases into the input, reported here as ``(Buf.INPUT, offset)`` of
    the output); the others (alltoall included, as MPI_IN_PLACE) share one buffer at offset 0.
    """
    return _collectives.descriptor(problem.collective).inplace(problem, rank)


def resolve_slice(problem: Problem, rank: int, slc: Slice, in_place: bool) -> Slice:
    """The memory a slice really addresses: in-place runs rewrite the aliased buffer onto its host.

    Out of place every slice is returned unchanged. In place, input slices of allreduce,
    allgather, broadcast and reduce become output slices (shifted by the input's offset in the
    output) and output slices of reduce_scatter become input slices, following
    :func:`inplace_input_offset`. Executors can use it to recognise a :class:`Copy` whose source
    and destination are the same memory (a no-op they may skip), verifiers to find aliasing.
    """
    if not in_place:
        return slc
    host, offset = inplace_input_offset(problem, rank)
    if host is Buf.OUTPUT and slc.buf is Buf.INPUT:
        return Slice(Buf.OUTPUT, slc.offset + offset, slc.length)
    if host is Buf.INPUT and slc.buf is Buf.OUTPUT:
        return Slice(Buf.INPUT, slc.offset + offset, slc.length)
    return slc


@dataclass(frozen=True)
class Program:
    """Everything one rank executes for one problem."""

    rank: int
    steps: tuple[Step, ...]
    scratch_len: int = 0


@dataclass(frozen=True)
class Schedule:
    """The programs of every rank for one problem, as built by one algorithm."""

    algorithm: str
    problem: Problem
    programs: tuple[Program, ...] = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.programs) != self.problem.nranks:
            raise ValueError("a schedule needs exactly one program per rank")
        for index, program in enumerate(self.programs):
            if program.rank != index:
                raise ValueError(f"program {index} of the schedule is for rank {program.rank}")


# At the end: collectives.py imports Collective and Buf from this module (either module may be
# imported first; the functions above look the descriptor up only when called).
from . import collectives as _collectives  # noqa: E402
