"""The ring's allreduce, allgather and reduce-scatter over every rank, as rows (:mod:`.rows`).

The same schedules as :func:`.ring.reduce_scatter_core` and :func:`.ring.allgather_core` run
on the whole communicator (channels included), written for many ranks at once: step ``t`` of
every member is one numpy expression instead of one Builder call per member. The cores stay
for the hierarchical algorithms, which run them on sub-groups; the test suite holds these
emitters to the programs the cores build.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping, NamedTuple

import numpy as np

from ._build import Partition
from .ring import channels_of, ring_orders
from .rows import IN, OUT, SCR, Rows, RowsBuilder
from .schedule import Problem


class Ring(NamedTuple):
    """One channel's ring, seen from the ranks being emitted.

    ``members[j]``: the global rank at position ``j``; ``ranks``: the ranks emitted and
    ``me`` their positions; ``off``/``size``: the element offset and length of the block
    that belongs to position ``j`` (relative to the region it is used in); ``seq``: the
    channel, which orders its messages after those of lower channels in the same step.
    """

    members: np.ndarray
    ranks: np.ndarray
    me: np.ndarray
    off: np.ndarray
    size: np.ndarray
    seq: int

    @property
    def g(self) -> int:
        return len(self.members)


def _ring(order: np.ndarray, ranks: np.ndarray, off: np.ndarray, size: np.ndarray,
          seq: int) -> Ring:
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(len(order))
    return Ring(order, ranks, position[ranks], off, size, seq)


def _orders(problem: Problem, channels: int) -> list[np.ndarray]:
    """Every channel's member order; one channel is the rank order, whatever the layout."""
    p = problem.nranks
    if channels == 1:
        return [np.arange(p, dtype=np.int64)]
    layout = problem.layout
    nodes = None if layout is None else [list(n) for n in layout.nodes]
    return [np.asarray(o, dtype=np.int64) for o in ring_orders(p, channels, nodes)]


def _blocks(n: int, g: int) -> tuple[np.ndarray, np.ndarray]:
    part = Partition(n, g)
    off = np.asarray(part.offsets(), dtype=np.int64)
    return off[:-1], np.diff(off)


def reduce_scatter_steps(b: RowsBuilder, ring: Ring, src: tuple[int, int], dst: tuple[int, int],
                         mirror: bool, t0: int, scratch: int) -> None:
    """:func:`.ring.reduce_scatter_core` for ``ring.ranks``; regions are (buffer, offset)."""
    g, i, ranks, seq = ring.g, ring.me, ring.ranks, ring.seq
    off, size = ring.off, ring.size
    sbuf, sbase = src
    dbuf, dbase = dst
    if g == 1:
        final_off = dbase + off[0] if mirror else dbase
        b.copy(t0, ranks, (sbuf, sbase + off[0], size[0]), (dbuf, final_off, size[0]), seq)
        return
    steps = np.arange(g - 1)[None, :]
    me = i[:, None]
    sent, got = (me - steps - 1) % g, (me - steps - 2) % g
    t = t0 + steps
    rank = ranks[:, None]
    nxt, prv = ring.members[(me + 1) % g], ring.members[(me - 1) % g]
    if mirror:   # partial sums accumulate in dst, each at its block; the last one is the result
        pbuf, poff = dbuf, dbase + off
        last_off = dbase + off[got]
    else:        # partial sums in the scratch slot after the receive slot; the result at dst
        pbuf, poff = SCR, np.full(g, scratch + int(size.max()), dtype=np.int64)
        last_off = np.full(got.shape, dbase, dtype=np.int64)
    first = steps == 0
    b.send(t, rank, nxt, (np.where(first, sbuf, pbuf), np.where(first, sbase + off[sent],
                                                                 poff[sent]), size[sent]), seq)
    b.recv(t, rank, prv, (SCR, scratch, size[got]), seq)
    last = steps == g - 2
    b.reduce(t, rank, (np.where(last, dbuf, pbuf), np.where(last, last_off, poff[got]), size[got]),
             (sbuf, sbase + off[got], size[got]), (SCR, scratch, size[got]), seq)


def allgather_steps(b: RowsBuilder, ring: Ring, region: tuple[int, int],
                    own: tuple[int, int, int] | None, t0: int) -> None:
    """:func:`.ring.allgather_core` (flat units) for ``ring.ranks``; ``own`` is (buffer,
    offset, length) of every emitted member's own data, sent from there and copied in place."""
    g, i, ranks, seq = ring.g, ring.me, ring.ranks, ring.seq
    off, size = ring.off, ring.size
    buf, base = region
    if own is not None:
        own_len = own[2]
        if own_len or size[i].any():
            if (size[i] != own_len).any():
                raise ValueError("a member's own data must map to one run of the same length")
            b.copy(t0, ranks, own, (buf, base + off[i], size[i]), seq)
    if g == 1:
        return
    steps = np.arange(g - 1)[None, :]
    me = i[:, None]
    sent, got = (me - steps) % g, (me - steps - 1) % g
    t = t0 + steps
    rank = ranks[:, None]
    nxt, prv = ring.members[(me + 1) % g], ring.members[(me - 1) % g]
    if own is None:
        b.send(t, rank, nxt, (buf, base + off[sent], size[sent]), seq)
    else:
        first = steps == 0
        b.send(t, rank, nxt, (np.where(first, own[0], buf), np.where(first, own[1],
                                                                     base + off[sent]),
                              np.where(first, own[2], size[sent])), seq)
    b.recv(t, rank, prv, (buf, base + off[got], size[got]), seq)


def allreduce_rows(problem: Problem, ranks: np.ndarray, options: Mapping[str, Any]) -> Rows:
    """Ring allreduce (``channels`` rings, :mod:`.ring`) of ``ranks``."""
    p, n = problem.nranks, problem.count
    channels = channels_of(options)
    b = RowsBuilder(p)
    chunks = Partition(n, channels)
    slot = Partition(chunks.max_len(), p).max_len()
    span = max(1, p - 1)
    for k, order in enumerate(_orders(problem, channels)):
        off, size = _blocks(chunks.len(k), p)
        ring = _ring(order, ranks, off, size, k)
        at = chunks.off(k)
        reduce_scatter_steps(b, ring, (IN, at), (OUT, at), True, 0, k * slot)
        allgather_steps(b, ring, (OUT, at), None, span)
    return b.finish()


def _count_blocks(problem: Problem, ranks: np.ndarray, options: Mapping[str, Any]
                  ) -> Iterator[tuple[Ring, int, int]]:
    """Each channel's ring for allgather and reduce-scatter, whose blocks are ``count`` long:
    position ``j`` of ring ``k`` carries member ``order[j]``'s sub-block ``k``. Yields (ring,
    offset and length of sub-block ``k`` inside a block)."""
    p, count = problem.nranks, problem.count
    channels = channels_of(options)
    sub = Partition(count, channels)
    for k, order in enumerate(_orders(problem, channels)):
        off = order * count + sub.off(k)
        size = np.full(p, sub.len(k), dtype=np.int64)
        yield _ring(order, ranks, off, size, k), sub.off(k), sub.len(k)


def allgather_rows(problem: Problem, ranks: np.ndarray, options: Mapping[str, Any]) -> Rows:
    """Ring allgather of ``ranks``; with ``channels`` K, sub-block ``k`` of every rank's block
    on ring ``k``."""
    b = RowsBuilder(problem.nranks)
    for ring, at, n in _count_blocks(problem, ranks, options):
        allgather_steps(b, ring, (OUT, 0), (IN, at, n), 0)
    return b.finish()


def reduce_scatter_rows(problem: Problem, ranks: np.ndarray, options: Mapping[str, Any]) -> Rows:
    """Ring reduce-scatter of ``ranks``; with ``channels`` K, sub-block ``k`` of every result
    on ring ``k``."""
    b = RowsBuilder(problem.nranks)
    scratch = 0
    for ring, at, n in _count_blocks(problem, ranks, options):
        reduce_scatter_steps(b, ring, (IN, 0), (OUT, at), False, 0, scratch)
        scratch += 2 * n            # its receive slot and its partial-sum slot
    return b.finish()
