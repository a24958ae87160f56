"""What each collective *is*, in one frozen descriptor per collective.

nccl-tests keeps everything about a collective in one ``struct testColl`` (the count for a sweep
size, the buffer lengths and in-place offsets, the bandwidth factor, the expected data). This
module is collbench's equivalent. Every consumer reads these facts from here and nowhere else:

* buffer lengths and in-place aliasing: :meth:`Problem.input_len
  <.schedule.Problem.input_len>`, :meth:`~.schedule.Problem.output_len` and
  :func:`~.schedule.inplace_input_offset`;
* the nccl-tests sweep conventions and the busbw factor: ``collbench.metrics``;
* the *postcondition* (:meth:`Descriptor.blocks`): the expected output of validation
  (``collbench.validation.expected_output``), of the symbolic verifier
  (:func:`.verify.expected_output`) and of the simulator (:func:`.simulate.reference_result`).

The postcondition is data. For rank ``r`` it is a list of output :class:`Block` s
``(out_offset, length, sources, in_offset)`` meaning::

    out[out_offset + k] = reduce-or-copy over q in sources of input_q[in_offset + k]

(a reduction when the collective reduces, else ``sources`` is one rank and it is a copy). The
blocks of a rank cover its output in order. ``None`` means the collective leaves that rank's
output unspecified (reduce on a non-root rank).

The same facts for every rank at once, as numpy columns, are :func:`block_table` (what the
vectorized proof reads; tests hold the two forms equal).

Adding a collective: a :class:`~.schedule.Collective` member, one descriptor in
``_DESCRIPTORS`` below (and its :func:`block_table` entry), then algorithms and the backends' call entries (docs/architecture.md,
"Adding a collective").
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from . import vcounts
from .schedule import Buf, Collective

if TYPE_CHECKING:  # schedule.py imports this module; Problem is only needed for type hints
    from .schedule import Problem


@dataclass(frozen=True)
class Block:
    """``out[out_offset + k] = op over q in sources of input_q[in_offset + k]``, ``k < length``.

    Attributes:
        out_offset: First element of the block in the rank's output.
        length: Elements in the block.
        sources: The ranks whose inputs contribute (one rank for data movement). A ``range``
            in every built-in collective, so "every rank" costs nothing to store at any scale.
        in_offset: First element read from each source's input.
    """

    out_offset: int
    length: int
    sources: Sequence[int]
    in_offset: int


Postcondition = Callable[["Problem", int], "tuple[Block, ...] | None"]


@dataclass(frozen=True)
class Descriptor:
    """Everything collbench knows about one collective.

    Attributes:
        collective: The collective described.
        reduces: Combines data with a reduction operator.
        rooted: Has a root rank.
        input_blocks: The input holds ``count * nranks`` elements (one block per rank); else
            ``count``.
        output_blocks: The same for the output.
        inplace_host: The buffer an in-place run keeps: ``OUTPUT`` when the input lives inside
            the output (MPI_IN_PLACE), ``INPUT`` when the output lives inside the input
            (reduce_scatter).
        inplace_own_block: The aliased buffer starts at block ``rank`` of its host (offset
            ``rank * count``), else at offset 0.
        sweep_per_block: nccl-tests' sweep size is the whole ``nranks``-block buffer and the
            count is per block, rounded down to 16 bytes (allgather, reduce_scatter, alltoall);
            else the size is the buffer and the count is ``size / itemsize``.
        bus: busbw/algbw as a function of the rank count (nccl-tests doc/PERFORMANCE.md).
        bus_formula: The same factor as text, for docs and ``collbench list``.
        postcondition: ``postcondition(problem, rank)``: the output blocks (see
            :meth:`blocks`).
        same_result: Every rank's postcondition is the same (lets checkers build it once).
        vector: Per-pair counts (alltoallv): the buffer lengths come from the problem's count
            matrix (:mod:`.vcounts`), not from ``*_blocks``; in place the one buffer is the
            larger of the two, and both start at its first element.
    """

    collective: Collective
    reduces: bool
    rooted: bool
    input_blocks: bool
    output_blocks: bool
    inplace_host: Buf
    inplace_own_block: bool
    sweep_per_block: bool
    bus: Callable[[int], float]
    bus_formula: str
    postcondition: Postcondition
    same_result: bool
    vector: bool = False

    # -- buffers ----------------------------------------------------------------------------

    def input_len(self, problem: "Problem", rank: int) -> int:
        """Elements in ``rank``'s input buffer."""
        if self.vector:
            return int(vcounts.of(problem).send_total[rank])
        return problem.count * problem.nranks if self.input_blocks else problem.count

    def output_len(self, problem: "Problem", rank: int) -> int:
        """Elements in ``rank``'s output buffer."""
        if self.vector:
            return int(vcounts.of(problem).recv_total[rank])
        return problem.count * problem.nranks if self.output_blocks else problem.count

    def inplace(self, problem: "Problem", rank: int) -> tuple[Buf, int]:
        """Where an in-place run aliases: (host buffer, element offset of the other buffer in it)."""
        if self.vector:  # the larger buffer hosts the other at its start
            c = vcounts.of(problem)
            return (Buf.OUTPUT if c.recv_total[rank] >= c.send_total[rank] else Buf.INPUT), 0
        return self.inplace_host, rank * problem.count if self.inplace_own_block else 0

    def count_of_input(self, length: int, nranks: int) -> int:
        """The problem's count, given the length of an input buffer (alltoallv: use
        :func:`.vcounts.count_of_lengths`, which needs every rank's)."""
        if self.vector:
            raise ValueError("alltoallv's count follows from every rank's input length, not one")
        return length // nranks if self.input_blocks and nranks else length

    # -- nccl-tests sweep conventions --------------------------------------------------------

    def count_for_size(self, size: int, itemsize: int, nranks: int) -> int:
        """The element count nccl-tests passes for a sweep ``size`` in bytes.

        Per-block collectives round the per-block count down to a multiple of 16 bytes exactly
        like nccl-tests (``(count/nranks) & ~(16/eltSize-1)``), so a row's size may be smaller
        than the size asked for.
        """
        if not self.sweep_per_block:
            return size // itemsize
        per_block = (size // itemsize) // nranks
        align = max(1, 16 // itemsize)
        return per_block - per_block % align

    def bytes_for_count(self, count: int, itemsize: int, nranks: int) -> int:
        """The size nccl-tests reports for a count: the larger of send and receive bytes per rank."""
        return count * itemsize * (nranks if self.sweep_per_block else 1)

    def bus_factor(self, nranks: int) -> float:
        """busbw / algbw at ``nranks`` ranks."""
        return self.bus(nranks)

    # -- the postcondition -------------------------------------------------------------------

    def blocks(self, problem: "Problem", rank: int) -> tuple[Block, ...] | None:
        """``rank``'s expected output as blocks, in output order; None when unspecified."""
        return self.postcondition(problem, rank)

    def has_result(self, problem: "Problem", rank: int) -> bool:
        """Whether the collective defines ``rank``'s output (False: reduce on a non-root)."""
        return not self.rooted or not self.reduces or rank == problem.root


# -- bus factors (nccl-tests doc/PERFORMANCE.md) ------------------------------------------------

def _bus_one(nranks: int) -> float:
    return 1.0


def _bus_spread(nranks: int) -> float:
    """(n-1)/n: each rank receives all but its own 1/n of the buffer."""
    return (nranks - 1) / nranks


def _bus_allreduce(nranks: int) -> float:
    """2(n-1)/n: a reduce-scatter and an allgather."""
    return 2.0 * (nranks - 1) / nranks


# -- postconditions ----------------------------------------------------------------------------

def _allreduce(problem: "Problem", rank: int) -> tuple[Block, ...]:
    return (Block(0, problem.count, range(problem.nranks), 0),)


def _reduce_scatter(problem: "Problem", rank: int) -> tuple[Block, ...]:
    count = problem.count
    return (Block(0, count, range(problem.nranks), rank * count),)


def _reduce(problem: "Problem", rank: int) -> tuple[Block, ...] | None:
    return _allreduce(problem, rank) if rank == problem.root else None


def _allgather(problem: "Problem", rank: int) -> tuple[Block, ...]:
    count = problem.count
    return tuple(Block(q * count, count, range(q, q + 1), 0) for q in range(problem.nranks))


def _broadcast(problem: "Problem", rank: int) -> tuple[Block, ...]:
    root = problem.root
    return (Block(0, problem.count, range(root, root + 1), 0),)


def _alltoallv(problem: "Problem", rank: int) -> tuple[Block, ...]:
    """Output block ``q`` (at ``rdispls[rank][q]``) is rank ``q``'s block for ``rank`` (at
    ``sdispls[q][rank]`` of its input), ``counts[q][rank]`` elements."""
    c = vcounts.of(problem)
    lengths, outs, ins = (c.matrix[:, rank].tolist(), c.rdispls[rank].tolist(),
                          c.sdispls[:, rank].tolist())
    return tuple(Block(outs[q], lengths[q], range(q, q + 1), ins[q])
                 for q in range(problem.nranks))


def _alltoall(problem: "Problem", rank: int) -> tuple[Block, ...]:
    """Block ``q`` of the output is block ``rank`` of rank ``q``'s input."""
    count = problem.count
    return tuple(Block(q * count, count, range(q, q + 1), rank * count)
                 for q in range(problem.nranks))


_O, _I = Buf.OUTPUT, Buf.INPUT
_DESCRIPTORS: dict[Collective, Descriptor] = {d.collective: d for d in (
    Descriptor(Collective.ALLREDUCE, reduces=True, rooted=False, input_blocks=False,
               output_blocks=False, inplace_host=_O, inplace_own_block=False,
               sweep_per_block=False, bus=_bus_allreduce, bus_formula="2(n-1)/n",
               postcondition=_allreduce, same_result=True),
    Descriptor(Collective.ALLGATHER, reduces=False, rooted=False, input_blocks=False,
               output_blocks=True, inplace_host=_O, inplace_own_block=True,
               sweep_per_block=True, bus=_bus_spread, bus_formula="(n-1)/n",
               postcondition=_allgather, same_result=True),
    # in place the *output* is block ``rank`` of the input (MPI_Reduce_scatter_block leaves it
    # at the start of the buffer; NCCL and collbench use the rank's own block)
    Descriptor(Collective.REDUCE_SCATTER, reduces=True, rooted=False, input_blocks=True,
               output_blocks=False, inplace_host=_I, inplace_own_block=True,
               sweep_per_block=True, bus=_bus_spread, bus_formula="(n-1)/n",
               postcondition=_reduce_scatter, same_result=False),
    Descriptor(Collective.BROADCAST, reduces=False, rooted=True, input_blocks=False,
               output_blocks=False, inplace_host=_O, inplace_own_block=False,
               sweep_per_block=False, bus=_bus_one, bus_formula="1",
               postcondition=_broadcast, same_result=True),
    Descriptor(Collective.REDUCE, reduces=True, rooted=True, input_blocks=False,
               output_blocks=False, inplace_host=_O, inplace_own_block=False,
               sweep_per_block=False, bus=_bus_one, bus_formula="1",
               postcondition=_reduce, same_result=False),
    # count is per peer (nccl-tests alltoall_perf); in place the one buffer is both, as
    # MPI_IN_PLACE: algorithms need scratch for what they receive before it is sent
    Descriptor(Collective.ALLTOALL, reduces=False, rooted=False, input_blocks=True,
               output_blocks=True, inplace_host=_O, inplace_own_block=False,
               sweep_per_block=True, bus=_bus_spread, bus_formula="(n-1)/n",
               postcondition=_alltoall, same_result=False),
    # per-pair counts (vcounts.py): the sweep conventions of alltoall (count = per block to
    # the busiest destination, whose receive buffer is the size); in place the larger buffer
    # hosts the other. busbw (n-1)/n is exact for the busiest receiver of the Zipf family.
    Descriptor(Collective.ALLTOALLV, reduces=False, rooted=False, input_blocks=True,
               output_blocks=True, inplace_host=_O, inplace_own_block=False,
               sweep_per_block=True, bus=_bus_spread, bus_formula="(n-1)/n",
               postcondition=_alltoallv, same_result=False, vector=True),
)}


# -- the postcondition of every rank at once ----------------------------------------------------

@dataclass(frozen=True)
class BlockTable:
    """Every rank's postcondition blocks as columns, one row per non-empty block, in rank order
    and, within a rank, in output order (what :meth:`Descriptor.blocks` gives rank by rank).

    Attributes:
        rank, out_offset, length, in_offset: As in :class:`Block` (``rank``: whose output).
        mask: The block's sources as a contributor bitmask (:func:`source_mask`), Python ints
            in an object array.
        defined: Per rank, whether the collective specifies its output at all.
    """

    rank: np.ndarray
    out_offset: np.ndarray
    length: np.ndarray
    in_offset: np.ndarray
    mask: np.ndarray
    defined: np.ndarray


@lru_cache(maxsize=16)
def _single(nranks: int) -> np.ndarray:
    """``[1 << q for q < nranks]`` as an object array (read only: shared by every table)."""
    masks = np.empty(nranks, dtype=object)
    masks[:] = [1 << q for q in range(nranks)]
    masks.flags.writeable = False
    return masks


def block_table(problem: "Problem") -> BlockTable:
    """:meth:`Descriptor.blocks` of every rank of ``problem`` at once."""
    p, c, root = problem.nranks, problem.count, problem.root
    ranks = np.arange(p, dtype=np.int64)
    everyone = np.empty(1, dtype=object)
    everyone[0] = (1 << p) - 1
    defined = np.ones(p, dtype=bool)
    collective = problem.collective
    if collective in (Collective.ALLREDUCE, Collective.REDUCE, Collective.BROADCAST,
                      Collective.REDUCE_SCATTER):   # one block per rank
        if collective is Collective.REDUCE:
            defined = ranks == root
        owner = ranks[defined]
        mask = _single(p)[[root]] if collective is Collective.BROADCAST else everyone
        in_offset = owner * c if collective is Collective.REDUCE_SCATTER else 0
        columns = (owner, 0, c, in_offset, mask[np.zeros(owner.size, dtype=np.int64)])
    else:   # one block per rank and source q, in q order
        owner, q = np.repeat(ranks, p), np.tile(ranks, p)
        if collective is Collective.ALLGATHER:
            columns = (owner, q * c, c, 0, _single(p)[q])
        elif collective is Collective.ALLTOALL:
            columns = (owner, q * c, c, owner * c, _single(p)[q])
        elif collective is Collective.ALLTOALLV:
            v = vcounts.of(problem)
            columns = (owner, v.rdispls[owner, q], v.matrix[q, owner], v.sdispls[q, owner],
                       _single(p)[q])
        else:
            raise ValueError(f"no block table for collective {collective!r}")
    owner, out_offset, length, in_offset, mask = columns
    length = np.broadcast_to(np.asarray(length, dtype=np.int64), owner.shape)
    keep = length > 0
    return BlockTable(owner[keep],
                      np.broadcast_to(np.asarray(out_offset, dtype=np.int64), owner.shape)[keep],
                      length[keep],
                      np.broadcast_to(np.asarray(in_offset, dtype=np.int64), owner.shape)[keep],
                      mask[keep], defined)


def descriptor(collective: Collective) -> Descriptor:
    """The descriptor of ``collective``.

    Raises:
        ValueError: A collective without a descriptor (a new enum member nobody described).
    """
    try:
        return _DESCRIPTORS[collective]
    except KeyError:
        raise ValueError(f"no descriptor for collective {collective!r}") from None


def source_mask(sources: Sequence[int]) -> int:
    """Bit ``q`` set for every source rank ``q`` (the verifier's contributor sets)."""
    if isinstance(sources, range) and sources.step == 1:
        return ((1 << sources.stop) - 1) ^ ((1 << sources.start) - 1) if sources else 0
    mask = 0
    for q in sources:
        mask |= 1 << q
    return mask
