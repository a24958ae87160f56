"""The vectorized proof: a schedule shown correct by whole steps of numpy operations.

:func:`prove` (a :class:`~.schedule.Schedule`) and :func:`prove_rows` (one problem's
:class:`~.rows.Rows`) answer one question: would the segment verifier (:class:`.verify._Verifier`,
on :mod:`._symbolic`'s state) find nothing wrong? They repeat its rules conservatively, so True
is exact and False only means "ask the segment verifier", which is the reference and writes the
messages.
"""

from __future__ import annotations

from itertools import chain, compress, repeat
from operator import attrgetter, is_
from typing import Callable, Sequence, Union

import numpy as np

from ._symbolic import Piece
from .collectives import BlockTable
from .rows import CODES as _CODES
from .rows import Rows, in_program_order
from .schedule import Buf, Copy, Problem, Program, Reduce, Schedule, inplace_input_offset

# -- the vectorized state: atoms -------------------------------------------------------------
#
# The segment lists of :mod:`._symbolic` cost a few microseconds of Python per message, which a
# sweep of millions of messages pays in full. The vectorized form here runs whole steps as numpy
# gathers and scatters instead. The memory of every rank (and of both placements) is laid out
# in one address space and cut into *atoms*: runs of elements between the boundaries of the
# slices a schedule uses, closed under its transfers (a boundary inside the source of a
# transfer is also a boundary at the same place in its destination). Closure makes every
# destination atom lie inside one source atom, so each atom stays a segment (source indices
# growing by one, one contributor set) through the whole execution, and an atom's state is two
# numbers: the source index of its first element (``idx``; ``UNDEFINED`` when nothing was
# written) and its contributors (``mask``, a bitset of the ranks). Up to 64 ranks a bitset is a
# uint64, so copies, unions and comparisons are machine operations; beyond, it is a Python int
# in an object array, which a copy only references (rows of 64-bit words were tried there: a
# 1000-rank allgather's million atoms then copy 128 bytes each, and its proof took 3x longer).
# Checking an atom checks every element in it.

UNDEFINED = -(1 << 62)
"""``idx`` of an atom nobody wrote: negative after adding any in-buffer offset."""


def mask_type(nranks: int) -> type:
    """The dtype of contributor bitsets over ``nranks`` ranks: uint64 when they fit."""
    return np.uint64 if nranks <= 64 else object


def as_masks(masks: np.ndarray, dtype: type) -> np.ndarray | None:
    """Contributor sets (Python ints in an object array) as ``dtype``; None when one does not
    fit (negative, or a bit beyond the ranks): the segment verifier explains those."""
    if dtype is object:
        return masks
    try:
        return np.array(masks.tolist(), dtype=dtype)
    except (OverflowError, TypeError, ValueError):
        return None


def concat_ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, s + c) for s, c in zip(starts, counts)])`` without the loop."""
    total = int(counts.sum())
    if not total:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(counts)
    # within each run the value grows by one; each run jumps to its own start
    step = np.ones(total, dtype=np.int64)
    firsts = ends - counts
    nonempty = counts > 0
    step[firsts[nonempty]] = starts[nonempty] - np.concatenate(
        ([0], (starts + counts - 1)[nonempty][:-1]))
    return np.cumsum(step)


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique`` for integers by sorting (numpy 2's hashing unique is far slower on the
    large, mostly sorted arrays made here)."""
    out = np.sort(values)
    if out.size > 1:
        out = out[np.concatenate(([True], out[1:] != out[:-1]))]
    return out


def close_boundaries(bounds: np.ndarray, src: np.ndarray, dst: np.ndarray, length: np.ndarray,
                     growth: int = 2, rounds: int = 12) -> np.ndarray:
    """``bounds`` sorted, plus boundaries that close them under the transfers ``src[i] ..
    src[i]+length[i]`` -> ``dst[i] ..`` (a boundary inside a source is one at the same place in
    the destination), as far as that is cheap.

    Works through the new boundaries only: one already mapped through every transfer cannot
    make more. The closure ignores time, so a buffer reused with different block layouts
    (a scratch slot) can make boundaries cascade towards single elements: it stops after
    ``rounds`` rounds or ``growth`` times the boundaries it started with. Where it stopped short,
    a destination atom may cover several source atoms; :func:`atom_sources` lists them and the
    state checks at run time that they hold one run.
    """
    closed = sorted_unique(bounds)
    limit = growth * closed.size + 64
    fresh = closed
    for _ in range(rounds):
        lo = np.searchsorted(fresh, src, "right")  # boundaries strictly inside the source
        hi = np.searchsorted(fresh, src + length, "left")
        counts = np.maximum(hi - lo, 0)
        if not counts.any():
            break
        which = np.repeat(np.arange(src.size), counts)
        mapped = sorted_unique(dst[which] - src[which] + fresh[concat_ranges(lo, counts)])
        at = np.searchsorted(closed, mapped)
        known = (at < closed.size) & (closed[np.minimum(at, closed.size - 1)] == mapped)
        fresh = mapped[~known]
        if not fresh.size or closed.size + fresh.size > limit:
            break
        closed = merge_sorted(closed, fresh, at[~known])
    return closed


def merge_sorted(old: np.ndarray, new: np.ndarray, at: np.ndarray) -> np.ndarray:
    """``old`` and ``new`` (sorted, disjoint) as one sorted array, where ``at`` is
    ``searchsorted(old, new)``: a linear merge, not a sort of millions of boundaries again."""
    out = np.empty(old.size + new.size, dtype=old.dtype)
    where_new = at + np.arange(new.size)
    is_new = np.zeros(out.size, dtype=bool)
    is_new[where_new] = True
    out[where_new] = new
    out[~is_new] = old
    return out


class Sources:
    """Where the data of each destination atom of some transfers comes from.

    Entries are destination atoms, transfer by transfer: ``which`` (the transfer), ``atom``,
    ``source`` (the source atom holding the entry's first element) and ``delta`` (that
    element's offset in it). A destination atom whose data spans several source atoms has
    *joins*: pairs (``before``, ``after``) of consecutive source atoms, listed in entry order
    (``join_entry``), that must hold one run for the copy to be exact.
    """

    __slots__ = ("which", "atom", "source", "delta", "join_entry", "before", "after", "run")

    def __init__(self, bounds: np.ndarray, src: np.ndarray, dst: np.ndarray,
                 length: np.ndarray) -> None:
        first = np.searchsorted(bounds, dst)
        counts = np.searchsorted(bounds, dst + length) - first
        self.which = np.repeat(np.arange(dst.size), counts)
        self.atom = concat_ranges(first, counts)
        where = src[self.which] + bounds[self.atom] - dst[self.which]
        self.source = np.searchsorted(bounds, where, "right") - 1
        self.delta = where - bounds[self.source]
        # the source atom holding the entry's last element
        size = bounds[self.atom + 1] - bounds[self.atom]
        last = np.searchsorted(bounds, where + size, "left") - 1
        spans = last - self.source
        self.join_entry = np.repeat(np.arange(spans.size), spans)
        self.before = concat_ranges(self.source, spans)
        self.after = self.before + 1
        self.run = bounds[self.after] - bounds[self.before]  # a run continues after this many

    def joins(self, lo: int, hi: int) -> slice:
        """The joins of entries ``lo .. hi-1``."""
        return slice(int(np.searchsorted(self.join_entry, lo)),
                     int(np.searchsorted(self.join_entry, hi)))


class AtomState:
    """The contents of every atom: ``idx`` (first source element) and ``mask`` (contributors).

    The two operations apply the entries ``lo .. hi-1`` of :class:`Sources` (all operands read
    before any write). They return False as soon as the data they read or combine is not what a
    correct schedule reads (undefined, duplicated contributions, different source elements, or
    a destination atom that would not hold one run); the caller then runs the segment verifier
    for the exact messages.
    """

    __slots__ = ("idx", "mask")

    def __init__(self, natoms: int, mask_dtype: type = object) -> None:
        self.idx = np.full(natoms, UNDEFINED, dtype=np.int64)
        self.mask = np.zeros(natoms, dtype=mask_dtype)

    def _one_run(self, src: Sources, lo: int, hi: int) -> bool:
        """Whether each destination atom reads a single run (defined, one contributor set,
        source elements continuing across the source atoms it spans)."""
        if not src.join_entry.size:
            return True
        joins = src.joins(lo, hi)
        if joins.start == joins.stop:
            return True
        before, after = src.before[joins], src.after[joins]
        ib, ia = self.idx[before], self.idx[after]
        return (min(ib.min(), ia.min()) >= 0 and np.array_equal(ia, ib + src.run[joins])
                and not np.count_nonzero(self.mask[after] != self.mask[before]))

    def copy(self, src: Sources, lo: int, hi: int) -> bool:
        """Destination atoms take their source's data."""
        s = src.source[lo:hi]
        idx = self.idx[s]
        if idx.min() < 0 or not self._one_run(src, lo, hi):
            return False  # reads undefined data, or more than one run
        dst = src.atom[lo:hi]
        self.idx[dst] = idx + src.delta[lo:hi]
        self.mask[dst] = self.mask[s]
        return True

    def reduce(self, a: Sources, b: Sources, lo: int, hi: int) -> bool:
        """Destination atoms take the reduction of two operands (same destinations)."""
        sa, sb = a.source[lo:hi], b.source[lo:hi]
        ia, ib = self.idx[sa], self.idx[sb]
        if min(ia.min(), ib.min()) < 0 or not (self._one_run(a, lo, hi)
                                               and self._one_run(b, lo, hi)):
            return False  # undefined operand, or more than one run
        ia += a.delta[lo:hi]
        if not np.array_equal(ia, ib + b.delta[lo:hi]):
            return False  # mixes source elements
        ma, mb = self.mask[sa], self.mask[sb]
        if np.count_nonzero(ma & mb):
            return False  # a contribution would count twice
        dst = a.atom[lo:hi]
        self.idx[dst] = ia
        self.mask[dst] = ma | mb
        return True


# -- the vectorized proof ----------------------------------------------------------------------
#
# ``prove`` answers one question: does the segment verifier (``verify._Verifier``) find nothing
# wrong with this schedule? It mirrors every rule of that verifier conservatively: whatever it
# cannot show correct (a malformed slice, an unmatched message, a hazard, undefined data, a
# duplicate, a wrong result, an odd type) makes it answer False, and the caller then runs the
# segment verifier, which is the reference and writes the messages. So True is always exact,
# and a False costs only time.

Expected = Union[BlockTable, Callable[[int], "list[Piece] | None"]]
"""The postcondition: every rank's blocks at once (:func:`.collectives.block_table`), or
``expected(rank)``: the pieces (length, first source element, contributors) ``rank``'s output
must hold in output order, None where it is unspecified."""


class _NotPlain(Exception):
    """Something the fast path does not take (the segment verifier explains it)."""


def _ints(values: list) -> np.ndarray:
    """``values`` as int64; a float would otherwise be truncated silently."""
    arr = np.array(values) if values else np.zeros(0, dtype=np.int64)
    if arr.dtype != np.int64 or arr.ndim != 1:
        raise _NotPlain
    return arr


_index, _sends, _recvs, _local = (attrgetter(a) for a in ("index", "sends", "recvs", "local"))
_peer, _src, _dst = attrgetter("peer"), attrgetter("src"), attrgetter("dst")
_a, _b = attrgetter("a"), attrgetter("b")
_buf, _offset, _length = attrgetter("buf"), attrgetter("offset"), attrgetter("length")


def _slices(slices: list) -> list[np.ndarray]:
    """(buffer code, offset, length) columns of a list of slices.

    Builders share Slice objects (``_build.make_slice``), so the attributes are read once per
    distinct object, found by identity (hashing a frozen dataclass costs more than reading it).
    """
    ids = np.fromiter(map(id, slices), dtype=np.uint64, count=len(slices))
    order = np.argsort(ids)
    first = np.ones(ids.size, dtype=bool)
    first[1:] = ids[order][1:] != ids[order][:-1]
    where = np.empty(ids.size, dtype=np.int64)
    where[order] = np.cumsum(first) - 1
    distinct = [slices[k] for k in order[first].tolist()]
    cols = (list(map(_CODES.__getitem__, map(_buf, distinct))), list(map(_offset, distinct)),
            list(map(_length, distinct)))
    return [_ints(col)[where] for col in cols]


def _spread(per_step: list, t: np.ndarray, rank: np.ndarray) -> tuple[list, list[np.ndarray]]:
    """The items of every step's tuple in one list, with their step and rank columns."""
    counts = np.fromiter(map(len, per_step), dtype=np.int64, count=len(per_step))
    return list(chain.from_iterable(per_step)), [np.repeat(t, counts), np.repeat(rank, counts)]


def _messages(per_step: list, t: np.ndarray, rank: np.ndarray, get: attrgetter) -> np.ndarray:
    ops, cols = _spread(per_step, t, rank)
    peers = list(map(_peer, ops))
    if not set(map(type, peers)) <= {int}:  # the segment verifier rejects bool, numpy ints
        raise _NotPlain
    return np.column_stack(cols + [_ints(peers)] + _slices(list(map(get, ops))))


def _flatten(programs: Sequence[Program]) -> Rows | None:
    """The arrays of :class:`~.rows.Rows`, or None for anything the fast path does not take: step
    indices that are not increasing ints, unknown buffers or operations, non-int peers.

    Column by column with ``map``: a Python loop over millions of operations is what made the
    segment verifier slow.
    """
    try:
        steps = list(chain.from_iterable(prog.steps for prog in programs))
        per_rank = np.fromiter((len(prog.steps) for prog in programs), dtype=np.int64,
                               count=len(programs))
        rank = np.repeat(np.arange(len(programs)), per_rank)
        index = list(map(_index, steps))
        if not set(map(type, index)) <= {int}:
            raise _NotPlain
        t = _ints(index)
        # non-negative and strictly increasing within each program
        if t.size and (t.min() < 0 or ((t[1:] <= t[:-1]) & (rank[1:] == rank[:-1])).any()):
            raise _NotPlain
        sends = _messages(list(map(_sends, steps)), t, rank, _src)
        recvs = _messages(list(map(_recvs, steps)), t, rank, _dst)
        per_step = list(map(_local, steps))
        ops, (ot, orank) = _spread(per_step, t, rank)
        kinds = list(map(type, ops))
        if not set(kinds) <= {Copy, Reduce}:
            raise _NotPlain
        counts = np.fromiter(map(len, per_step), dtype=np.int64, count=len(per_step))
        position = concat_ranges(np.zeros(counts.size, dtype=np.int64), counts)
        is_red = np.fromiter(map(is_, kinds, repeat(Reduce)), dtype=bool, count=len(kinds))
        red = list(compress(ops, is_red.tolist()))
        cop = list(compress(ops, (~is_red).tolist()))
        head = [ot, orank, position]
        copies = np.column_stack([col[~is_red] for col in head] + _slices(list(map(_src, cop)))
                                 + _slices(list(map(_dst, cop))))
        reduces = np.column_stack([col[is_red] for col in head] + _slices(list(map(_dst, red)))
                                  + _slices(list(map(_a, red))) + _slices(list(map(_b, red))))
    except (_NotPlain, KeyError, TypeError, AttributeError, ValueError):
        return None
    return Rows(sends.reshape(-1, 6), recvs.reshape(-1, 6), copies.reshape(-1, 9),
                reduces.reshape(-1, 12))


# -- the ranks a proof runs over -----------------------------------------------------------


class Frame:
    """The per-rank facts of one problem a proof needs, one row per rank.

    ``lens``: input, output and scratch length; ``host_out``: in place, the output hosts the
    input (else the input hosts the output); ``offset``: where the hosted buffer starts in its
    host; ``expected``: the postcondition, as a :class:`~.collectives.BlockTable`.
    """

    __slots__ = ("lens", "host_out", "offset", "expected")

    def __init__(self, problem: Problem, scratch: np.ndarray, expected: Expected) -> None:
        p = problem.nranks
        ranks = range(p)
        self.lens = np.empty((p, 3), dtype=np.int64)
        self.lens[:, 0] = [problem.input_len(r) for r in ranks]
        self.lens[:, 1] = [problem.output_len(r) for r in ranks]
        self.lens[:, 2] = scratch
        aliases = [inplace_input_offset(problem, r) for r in ranks]
        self.host_out = np.array([host is Buf.OUTPUT for host, _ in aliases], dtype=bool)
        self.offset = np.array([off for _, off in aliases], dtype=np.int64)
        self.expected = expected if isinstance(expected, BlockTable) else _table_of(expected, p)


def _table_of(expected: Callable[[int], "list[Piece] | None"], p: int) -> BlockTable:
    """The :class:`~.collectives.BlockTable` of ``expected(rank)`` piece lists (ranks that
    share one list convert it once)."""
    converted: dict[int, tuple[list, list, list]] = {}
    seen: list = []     # keeps every list alive, so an id is never reused for another one
    owner: list[int] = []
    length: list[int] = []
    idx: list[int] = []
    masks: list[int] = []
    defined = np.ones(p, dtype=bool)
    for r in range(p):
        pieces = expected(r)
        if pieces is None:
            defined[r] = False
            continue
        got = converted.get(id(pieces))
        if got is None:
            seen.append(pieces)
            got = converted[id(pieces)] = ([x[0] for x in pieces], [x[1] for x in pieces],
                                           [x[2] for x in pieces])
        owner += [r] * len(got[0])
        length += got[0]
        idx += got[1]
        masks += got[2]
    lengths = np.array(length, dtype=np.int64)
    counts = np.bincount(np.array(owner, dtype=np.int64), minlength=p)
    # pieces lie back to back from the start of the output
    starts = np.cumsum(lengths) - lengths
    firsts = np.repeat(np.cumsum(counts) - counts, counts)
    out_offset = starts - starts[firsts] if lengths.size else lengths
    mask = np.empty(len(masks), dtype=object)
    mask[:] = masks
    return BlockTable(np.array(owner, dtype=np.int64), out_offset, lengths,
                      np.array(idx, dtype=np.int64), mask, defined)


def _ranks_inside(rows: Rows, p: int) -> bool:
    """Steps non-negative, ranks within 0..p-1, scratch lengths known and non-negative."""
    if rows.scratch is None or len(rows.scratch) != p or (np.asarray(rows.scratch) < 0).any():
        return False
    return all(not t.size or (t[:, 0].min() >= 0 and t[:, 1].min() >= 0 and t[:, 1].max() < p)
               for t in (rows.sends, rows.recvs, rows.copies, rows.reduces))


# -- the rules -----------------------------------------------------------------------------


def _inside(lens: np.ndarray, rank: np.ndarray, buf: np.ndarray, off: np.ndarray,
            n: np.ndarray) -> np.ndarray:
    """Slices inside their buffer (``buf`` a valid code: see :meth:`.rows.Rows.unknown_buffers`)."""
    return (off >= 0) & (off + n <= lens[rank, buf])


def _well_formed(flat: Rows, lens: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The structural rules of the segment verifier, all at once: peers, bounds, lengths, no
    write to the input, messages that pair up. Returns the orders that pair the sends with
    the receives (sorted by step, sender, receiver; program order within), or None."""
    if flat.unknown_buffers():
        return None
    p = len(lens)
    for rows, is_recv in ((flat.sends, False), (flat.recvs, True)):
        t, r, peer, buf, off, n = rows.T
        ok = (peer != r) & (peer >= 0) & (peer < p) & (n > 0) & _inside(lens, r, buf, off, n)
        if is_recv:
            ok &= buf != 0
        if not ok.all():
            return None
    c = flat.copies
    if c.size and not ((c[:, 8] >= 0) & (c[:, 5] == c[:, 8]) & (c[:, 6] != 0)
                       & _inside(lens, c[:, 1], c[:, 3], c[:, 4], c[:, 8])
                       & _inside(lens, c[:, 1], c[:, 6], c[:, 7], c[:, 8])).all():
        return None
    d = flat.reduces
    if d.size and not ((d[:, 5] >= 0) & (d[:, 8] == d[:, 5]) & (d[:, 11] == d[:, 5])
                       & (d[:, 3] != 0)
                       & _inside(lens, d[:, 1], d[:, 3], d[:, 4], d[:, 5])
                       & _inside(lens, d[:, 1], d[:, 6], d[:, 7], d[:, 5])
                       & _inside(lens, d[:, 1], d[:, 9], d[:, 10], d[:, 5])).all():
        return None
    # the k-th send from a to b in step t meets the k-th receive of b from a in step t
    s, q = flat.sends, flat.recvs
    if s.shape != q.shape:
        return None
    so = np.lexsort((s[:, 2], s[:, 1], s[:, 0]))
    ro = np.lexsort((q[:, 1], q[:, 2], q[:, 0]))
    s, q = s[so], q[ro]
    if not ((s[:, 0] == q[:, 0]) & (s[:, 1] == q[:, 2]) & (s[:, 2] == q[:, 1])
            & (s[:, 5] == q[:, 5])).all():
        return None
    return so, ro


def _bases(frame: Frame, placements: Sequence[bool]) -> np.ndarray:
    """``base[i, r, buf]``: where buffer ``buf`` of rank ``r`` starts in placement ``i``, all
    placements in one address space. In place the aliased buffer starts inside its host."""
    lens = frame.lens
    nr = len(lens)
    ranks = np.arange(nr)
    base = np.zeros((len(placements), nr, 3), dtype=np.int64)
    origin = 0
    for i, in_place in enumerate(placements):
        if not in_place:
            sizes = lens.reshape(-1)
            base[i] = (origin + np.cumsum(sizes) - sizes).reshape(nr, 3)
            origin += int(sizes.sum())
            continue
        hosted = frame.host_out.astype(np.int64)   # 1: the output hosts the input
        hosted_len = lens[ranks, hosted]
        span = hosted_len + lens[:, 2]
        start = origin + np.cumsum(span) - span
        base[i, ranks, hosted] = start
        base[i, ranks, 1 - hosted] = start + frame.offset
        base[i, :, 2] = start + hosted_len
        origin += int(span.sum())
    return base


def _hazard_free(group: np.ndarray, start: np.ndarray, end: np.ndarray,
                 is_recv: np.ndarray) -> bool:
    """No receive overlaps another receive or a send of the same group (rank and step)."""
    if group.size < 2:
        return True
    order = np.lexsort((start, group))
    g, s, e, rec = group[order], start[order], end[order], is_recv[order]
    # move each group's addresses into a range of its own, in group order, so that a running
    # maximum never leaks into the next group
    head = np.ones(g.size, dtype=bool)
    head[1:] = g[1:] != g[:-1]
    heads = np.flatnonzero(head)
    lowest = s[heads]
    span = np.maximum.reduceat(e, heads) - lowest + 1
    shift = (np.cumsum(span) - span - lowest)[np.cumsum(head) - 1]
    ks, ke = s + shift, e + shift
    none = np.int64(-1)
    last_recv = np.maximum.accumulate(np.where(rec, ke, none))
    last_send = np.maximum.accumulate(np.where(rec, none, ke))
    before_recv = np.concatenate(([none], last_recv[:-1]))
    before_send = np.concatenate(([none], last_send[:-1]))
    return not ((before_recv > ks) | (rec & (before_send > ks))).any()


def _dense(values: np.ndarray) -> np.ndarray:
    """Each value's rank among the distinct values."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(values.size, dtype=np.int64)
    ranks[order] = np.cumsum(np.concatenate(([0], np.diff(values[order]) != 0)))
    return ranks


def _phys(base: np.ndarray, rows: np.ndarray, buf_col: int, off_col: int) -> np.ndarray:
    """Addresses of one slice column of ``rows`` in every placement, stacked (placement major)."""
    return (base[:, rows[:, 1], rows[:, buf_col]] + rows[:, off_col]).reshape(-1)


def _partial(x: np.ndarray, d: np.ndarray, n: np.ndarray) -> bool:
    """Whether some operand starts elsewhere than its destination yet overlaps it."""
    return bool(((x != d) & (x < d + n) & (d < x + n)).any())


def _batches(keys: np.ndarray, which: np.ndarray, tag: tuple) -> list[tuple]:
    """(step, phase, position, kind, first entry, end entry) for each run of equal ``keys``
    rows (transfers sorted by key); ``which`` maps entries to transfers."""
    if not keys.shape[0]:
        return []
    change = np.flatnonzero((keys[1:] != keys[:-1]).any(axis=1)) + 1
    starts = np.concatenate(([0], change))
    bounds = np.searchsorted(which, np.concatenate((starts, [keys.shape[0]])))
    phase, kind = tag
    firsts = keys[starts]
    steps = firsts[:, 0].tolist()
    positions = firsts[:, 1].tolist() if keys.shape[1] > 1 else [0] * len(steps)
    b = bounds.tolist()
    return [(t, phase, pos, kind, b[j], b[j + 1])
            for j, (t, pos) in enumerate(zip(steps, positions))]


def _by_key(keys: np.ndarray, npl: int, *cols: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Rows of every placement in execution order: ``keys`` (step[, position]) per row,
    ``cols`` stacked placement-major as :func:`_phys` makes them."""
    keys = np.tile(keys, (npl, 1))
    order = np.lexsort(keys.T[::-1])
    return keys[order], [col[order] for col in cols]


def _expected_pieces(lens: np.ndarray, base: np.ndarray,
                     table: BlockTable) -> tuple[np.ndarray, ...] | None:
    """The postcondition at its addresses: (first and end address of every checked output,
    start address, first source element and contributors of every piece), or None when the
    pieces do not lie back to back over the whole output of their rank."""
    npl = base.shape[0]
    owner, length = table.rank, table.length
    if owner.size and ((length <= 0).any() or (owner[1:] < owner[:-1]).any()
                       or not table.defined[owner].all()):
        return None
    counts = np.bincount(owner, minlength=len(lens))
    starts = np.cumsum(length) - length
    firsts = np.repeat(np.cumsum(counts) - counts, counts)
    if owner.size and not np.array_equal(table.out_offset, starts - starts[firsts]):
        return None
    ranks = np.flatnonzero(table.defined)
    covered = np.zeros(len(lens), dtype=np.int64)
    np.add.at(covered, owner, length)
    if not np.array_equal(covered[ranks], lens[ranks, 1]):
        return None
    firsts_at = base[:, ranks, 1]  # (placement, checked rank)
    piece_at = (base[:, owner, 1] + table.out_offset).reshape(-1)
    masks = as_masks(table.mask, mask_type(len(lens)))
    if masks is None:
        return None
    return (firsts_at.reshape(-1), (firsts_at + lens[ranks, 1]).reshape(-1), piece_at,
            np.tile(table.in_offset, npl), np.tile(masks, npl))


def _load_inputs(state: AtomState, bounds: np.ndarray, base: np.ndarray,
                 lens: np.ndarray) -> None:
    """Element ``k`` of rank ``r``'s input holds source element ``k`` of rank ``r``."""
    npl, p = base.shape[:2]
    start = base[:, :, 0].reshape(-1)
    first = np.searchsorted(bounds, start)
    counts = np.searchsorted(bounds, start + np.tile(lens[:, 0], npl)) - first
    which = np.repeat(np.arange(start.size), counts)
    atoms = concat_ranges(first, counts)
    state.idx[atoms] = bounds[atoms] - start[which]
    rank_masks = np.empty(p, dtype=state.mask.dtype)
    rank_masks[:] = [1 << r for r in range(p)]
    state.mask[atoms] = rank_masks[which % p]


def _results_hold(state: AtomState, bounds: np.ndarray, out_first: np.ndarray,
                  out_end: np.ndarray, piece_at: np.ndarray, piece_idx: np.ndarray,
                  piece_mask: np.ndarray) -> bool:
    """Every atom of every checked output holds what its piece of the postcondition says."""
    first = np.searchsorted(bounds, out_first)
    atoms = concat_ranges(first, np.searchsorted(bounds, out_end) - first)
    if not atoms.size:
        return True
    at = bounds[atoms]
    k = np.searchsorted(piece_at, at, "right") - 1
    return (np.array_equal(state.idx[atoms], piece_idx[k] + at - piece_at[k])
            and not np.count_nonzero(state.mask[atoms] != piece_mask[k]))


# -- the entry points ------------------------------------------------------------------------

_MIN_OPS = 400
_MIN_OPS_PER_STEP = 16


def worth_proving(programs: Sequence[Program]) -> bool:
    """Whether :func:`prove` is likely faster than the segment verifier: it has a fixed cost of
    a few milliseconds and one of some tens of microseconds per batch (step index, local
    position), so it wins on schedules with many operations per step index."""
    steps = list(chain.from_iterable(prog.steps for prog in programs))
    ops = 2 * sum(map(len, map(_sends, steps))) + sum(map(len, map(_local, steps)))
    if ops < _MIN_OPS:
        return False
    try:
        return ops >= _MIN_OPS_PER_STEP * len(set(map(_index, steps)))
    except TypeError:  # an unhashable step index: the segment verifier reports it
        return False


def worth_proving_rows(rows: Rows) -> bool:
    """:func:`worth_proving` of a schedule given as rows."""
    ops = rows.operations
    if ops < _MIN_OPS:
        return False
    steps = np.unique(np.concatenate([t[:, 0] for t in (rows.sends, rows.recvs, rows.copies,
                                                         rows.reduces)]))
    return ops >= _MIN_OPS_PER_STEP * steps.size


def schedule_rows(schedule: Schedule) -> Rows | None:
    """A schedule's programs as rows, or None for anything the proof does not take (odd
    types, unknown buffers or operations, step indices not increasing)."""
    programs = schedule.programs
    if any(type(prog.scratch_len) is not int or prog.scratch_len < 0 for prog in programs):
        return None
    flat = _flatten(programs)
    if flat is not None:
        flat.scratch = np.array([prog.scratch_len for prog in programs], dtype=np.int64)
    return flat


def prove(schedule: Schedule, placements: Sequence[bool], expected: Expected) -> bool:
    """True when the segment verifier would find no error in any of ``placements``.

    Args:
        schedule: The schedule to check.
        placements: The placements (False: out of place, True: in place).
        expected: The postcondition (:data:`Expected`): a block table, or ``expected(rank)``
            piece lists (ranks with the same result may share one list; it is converted
            once).
    """
    flat = schedule_rows(schedule)
    return flat is not None and prove_rows(schedule.problem, flat, placements, expected)


def prove_rows(problem: Problem, flat: Rows, placements: Sequence[bool],
               expected: Expected) -> bool:
    """:func:`prove` of a schedule given as rows of every rank (:mod:`.rows`)."""
    if not _ranks_inside(flat, problem.nranks) or not in_program_order(flat):
        return False   # a negative step, an unknown rank, rows out of program order: the
                       # segment verifier, on the programs, names the fault
    assert flat.scratch is not None
    return _prove_frame(Frame(problem, flat.scratch, expected), flat, placements)


def _prove_frame(frame: Frame, flat: Rows, placements: Sequence[bool]) -> bool:
    """The proof of ``flat`` (ranks and steps checked in range, rows in program order)."""
    p = len(frame.lens)
    paired = _well_formed(flat, frame.lens)
    if paired is None:
        return False
    s, q = flat.sends[paired[0]], flat.recvs[paired[1]]
    c = flat.copies[flat.copies[:, 8] > 0]  # empty local operations do nothing at all
    d = flat.reduces[flat.reduces[:, 5] > 0]
    base = _bases(frame, placements)
    npl = len(placements)
    lens = frame.lens

    # hazards: a receive overlapping a receive or a send of its own step
    send_at, recv_at = _phys(base, s, 3, 4), _phys(base, q, 3, 4)
    m_n = np.tile(s[:, 5], npl)
    if s.size:
        # (step, rank) of every send and receive, rows stacked as send_at and recv_at are
        steps = np.concatenate((np.tile(s[:, 0], npl), np.tile(q[:, 0], npl)))
        group = _dense(steps) * p + np.concatenate((np.tile(s[:, 1], npl),
                                                     np.tile(q[:, 1], npl)))
        starts = np.concatenate((send_at, recv_at))
        is_recv = np.repeat(np.array([False, True]), send_at.size)
        if not _hazard_free(group, starts, starts + np.concatenate((m_n, m_n)), is_recv):
            return False
    # local operations whose destination partially overlaps an operand
    c_src, c_dst, c_n = _phys(base, c, 3, 4), _phys(base, c, 6, 7), np.tile(c[:, 8], npl)
    r_dst, r_a, r_b = _phys(base, d, 3, 4), _phys(base, d, 6, 7), _phys(base, d, 9, 10)
    r_n = np.tile(d[:, 5], npl)
    if _partial(c_src, c_dst, c_n) or _partial(r_a, r_dst, r_n) or _partial(r_b, r_dst, r_n):
        return False

    result = _expected_pieces(lens, base, frame.expected)
    if result is None:
        return False
    out_first, out_end, piece_at, piece_idx, piece_mask = result

    # atoms: every slice boundary, closed under the transfers
    ends = (base + lens[None]).reshape(-1)
    bounds = np.concatenate((
        base.reshape(-1), ends, send_at, send_at + m_n, recv_at, recv_at + m_n, c_src,
        c_src + c_n, c_dst, c_dst + c_n, r_dst, r_dst + r_n, r_a, r_a + r_n, r_b, r_b + r_n,
        out_first, out_end, piece_at, [0, int(ends.max()) if ends.size else 0]))
    bounds = close_boundaries(bounds, np.concatenate((send_at, c_src, r_a, r_b)),
                              np.concatenate((recv_at, c_dst, r_dst, r_dst)),
                              np.concatenate((m_n, c_n, r_n, r_n)))
    state = AtomState(max(bounds.size - 1, 0), mask_type(p))
    _load_inputs(state, bounds, base, lens)

    # the program in order: a step's receives (one batch), then its local operations by
    # position in the local list (one batch per position: ranks never share memory)
    keys, (ms, md, mn) = _by_key(s[:, :1], npl, send_at, recv_at, m_n)
    moves = Sources(bounds, ms, md, mn)
    batches = _batches(keys, moves.which, (0, 0))
    keys, (cs, cd, cn) = _by_key(c[:, [0, 2]], npl, c_src, c_dst, c_n)
    copies = Sources(bounds, cs, cd, cn)
    batches += _batches(keys, copies.which, (1, 1))
    keys, (ra, rb, rd, rn) = _by_key(d[:, [0, 2]], npl, r_a, r_b, r_dst, r_n)
    first, second = Sources(bounds, ra, rd, rn), Sources(bounds, rb, rd, rn)
    batches += _batches(keys, first.which, (1, 2))
    batches.sort()
    for _, _, _, kind, lo, hi in batches:
        if kind == 0:
            ok = state.copy(moves, lo, hi)
        elif kind == 1:
            ok = state.copy(copies, lo, hi)
        else:
            ok = state.reduce(first, second, lo, hi)
        if not ok:
            return False
    return _results_hold(state, bounds, out_first, out_end, piece_at, piece_idx, piece_mask)
