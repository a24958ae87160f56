"""A schedule as arrays: every message and local operation of many ranks, one row each.

A generator writes one rank's program through a :class:`~._build.Builder`, one Python object
per message. For the algorithms with O(p^2) messages (ring, direct, pairwise) building those objects for
every rank is what a verification sweep spends its time on. A *rows emitter* writes the same
schedule for any set of ranks at once as numpy columns (:class:`RowsBuilder`); :class:`Rows`
then gives one rank's :class:`~.schedule.Program` (what executors run) or the whole table
(what the vectorized proof, :func:`._proof.prove_rows`, reads). The registry derives the
per-rank generator of such an algorithm from its emitter, so the rows the verifier proves and
the programs executors run come from one piece of code.

Rows follow the Builder's rules: zero-length messages and operations, and copies onto
themselves, are dropped; a rank's scratch length is the furthest scratch element any of its
operations touches; within one rank and step, messages and local operations keep the order of
their ``seq`` key (ties: the order they were emitted in), as a Builder keeps call order.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence, Union

import numpy as np

from ._build import make_slice
from .schedule import Buf, Copy, Problem, Program, Recv, Reduce, Send, Step

# Buffer codes of the columns (the vectorized proof uses the same ones).
IN, OUT, SCR = 0, 1, 2
CODES = {Buf.INPUT: IN, Buf.OUTPUT: OUT, Buf.SCRATCH: SCR}
BUFS = (Buf.INPUT, Buf.OUTPUT, Buf.SCRATCH)

IntArray = Union[np.ndarray, int]
# A slice as columns: (buffer code, offset, length), each an array or a scalar.
Cols = tuple[IntArray, IntArray, IntArray]

RowsEmitter = Callable[[Problem, np.ndarray, Mapping[str, Any]], "Rows"]

_EMPTY6 = np.zeros((0, 6), dtype=np.int64)


class Rows:
    """Every message and local operation of some ranks as integer arrays, one row each.

    Columns: ``sends``/``recvs`` (step, rank, peer, buf, offset, length); ``copies`` (step,
    rank, position in the step's local list, src buf, offset, length, dst buf, offset,
    length); ``reduces`` (step, rank, position, dst buf, offset, length, a buf, offset, length,
    b buf, offset, length). Rows are in program order: by rank, then step, then their order in
    the step. ``scratch``: the scratch length of every rank 0..p-1 (None when unknown).
    """

    __slots__ = ("sends", "recvs", "copies", "reduces", "scratch", "_by_rank", "_unknown")

    def __init__(self, sends: np.ndarray, recvs: np.ndarray, copies: np.ndarray,
                 reduces: np.ndarray, scratch: np.ndarray | None = None) -> None:
        self.sends, self.recvs, self.copies, self.reduces = sends, recvs, copies, reduces
        self.scratch = scratch
        self._by_rank: bool | None = None   # every table sorted by rank (found on first use)
        self._unknown: list[int] | None = None   # buffer codes outside 0..2 (found on first use)

    @property
    def operations(self) -> int:
        """Messages (counted at both ends) plus local operations."""
        return 2 * len(self.sends) + len(self.copies) + len(self.reduces)

    def program(self, rank: int) -> Program:
        """Rank ``rank``'s program, as a Builder would have built it."""
        steps: dict[int, tuple[list, list, list]] = {}

        def entry(t: int) -> tuple[list, list, list]:
            got = steps.get(t)
            if got is None:
                got = steps[t] = ([], [], [])
            return got

        sort = self._sorted_by_rank()
        unknown = self.unknown_buffers()
        if unknown:
            raise ValueError(f"rows name buffer codes outside 0..{len(BUFS) - 1} (input, "
                             f"output, scratch): {unknown[:5]}")
        for rows, which, kind in ((self.sends, 0, Send), (self.recvs, 1, Recv)):
            for t, _, peer, buf, off, n in _of_rank(rows, rank, sort).tolist():
                entry(t)[which].append(kind(peer, make_slice(BUFS[buf], off, n)))
        local: list[tuple[int, int, Any]] = []
        for t, _, pos, sb, so, sn, db, do, dn in _of_rank(self.copies, rank, sort).tolist():
            local.append((t, pos, Copy(make_slice(BUFS[sb], so, sn), make_slice(BUFS[db], do, dn))))
        for row in _of_rank(self.reduces, rank, sort).tolist():
            t, _, pos, db, do, dn, ab, ao, an, bb, bo, bn = row
            local.append((t, pos, Reduce(make_slice(BUFS[db], do, dn), make_slice(BUFS[ab], ao, an),
                                         make_slice(BUFS[bb], bo, bn))))
        local.sort(key=lambda item: (item[0], item[1]))
        for t, _, op in local:
            entry(t)[2].append(op)
        scratch = 0 if self.scratch is None else int(self.scratch[rank])
        return Program(rank, tuple(Step(t, tuple(s), tuple(r), tuple(loc))
                                   for t, (s, r, loc) in sorted(steps.items())), scratch)

    def _sorted_by_rank(self) -> bool:
        if self._by_rank is None:
            self._by_rank = all(bool((t[1:, 1] >= t[:-1, 1]).all()) for t in
                                (self.sends, self.recvs, self.copies, self.reduces))
        return self._by_rank

    def unknown_buffers(self) -> list[int]:
        """The buffer codes outside 0..2 (input, output, scratch) that any row names, sorted."""
        if self._unknown is None:
            codes = np.concatenate([self.sends[:, 3], self.recvs[:, 3],
                                    self.copies[:, [3, 6]].reshape(-1),
                                    self.reduces[:, [3, 6, 9]].reshape(-1)])
            bad = codes[(codes < 0) | (codes >= len(BUFS))]
            self._unknown = sorted(set(bad.tolist()))
        return self._unknown

    def rank_rows(self, rank: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
        """One rank's rows of each table, and its scratch length: where these are equal for two
        :class:`Rows`, :meth:`program` gives that rank the same program."""
        sort = self._sorted_by_rank()
        tables = tuple(_of_rank(t, rank, sort)
                       for t in (self.sends, self.recvs, self.copies, self.reduces))
        scratch = 0 if self.scratch is None else int(self.scratch[rank])
        return tables + (scratch,)  # type: ignore[return-value]

    def programs(self, nranks: int) -> tuple[Program, ...]:
        """The programs of ranks 0..nranks-1."""
        return tuple(self.program(r) for r in range(nranks))


def _of_rank(rows: np.ndarray, rank: int, by_rank: bool) -> np.ndarray:
    """The rows of one rank, in their order: a binary search when the table is sorted by rank
    (as RowsBuilder makes it), else a mask (rows written by hand)."""
    if by_rank:
        ranks = rows[:, 1]
        return rows[np.searchsorted(ranks, rank, "left"):np.searchsorted(ranks, rank, "right")]
    return rows[rows[:, 1] == rank]


def in_program_order(rows: Rows) -> bool:
    """Whether every table lists its rows by rank, then step (what :class:`RowsBuilder` makes
    and the vectorized proof assumes; within a step, row order is program order)."""
    for table in (rows.sends, rows.recvs, rows.copies, rows.reduces):
        if len(table) > 1:
            rank, t = table[:, 1], table[:, 0]
            if ((rank[1:] < rank[:-1]) | ((rank[1:] == rank[:-1]) & (t[1:] < t[:-1]))).any():
                return False
    # a rank's local operations of one step each have their own position (the proof applies
    # one position of every rank at a time)
    local = np.concatenate((rows.copies[:, :3], rows.reduces[:, :3]))
    if len(local) > 1:
        if local[:, 2].min() < 0:
            return False
        # (step, rank, position) all distinct: sorted, no row equals the next (a lexsort of the
        # columns is far cheaper than np.unique over rows)
        local = local[np.lexsort((local[:, 2], local[:, 1], local[:, 0]))]
        if (local[1:] == local[:-1]).all(axis=1).any():
            return False
    elif len(local) and local[0, 2] < 0:
        return False
    return True


def _broadcast_shape(shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
    """numpy's broadcasting rule for a few shapes (``np.broadcast_shapes`` builds arrays to
    find it, which costs more than the small tables it is asked about here)."""
    ndim = max(map(len, shapes))
    out = []
    for axis in range(-ndim, 0):
        sizes = {s[axis] for s in shapes if len(s) >= -axis} - {1}
        if len(sizes) > 1:
            raise ValueError(f"shapes {shapes} do not broadcast together")
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def _column(value: IntArray, size: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(value, dtype=np.int64), (size,))


class RowsBuilder:
    """Collects rows for many ranks at once; :meth:`finish` applies the Builder's rules.

    Every method takes equal-shaped arrays (or scalars, broadcast against them): one row per
    element. ``seq`` orders a rank's messages (and, separately, its local operations) within
    one step.
    """

    def __init__(self, nranks: int) -> None:
        self.nranks = nranks
        self._sends: list[np.ndarray] = []
        self._recvs: list[np.ndarray] = []
        self._local: list[np.ndarray] = []   # (t, rank, seq, kind, d, a, b slices, length)

    @staticmethod
    def _table(*columns: IntArray) -> np.ndarray:
        # one assignment per column broadcasts at C speed (np.broadcast_arrays over a dozen
        # columns costs more than the rows themselves for the small calls emitters make)
        shape = _broadcast_shape([np.shape(c) for c in columns])
        table = np.empty(shape + (len(columns),), dtype=np.int64)
        for i, column in enumerate(columns):
            table[..., i] = column
        return table.reshape(-1, len(columns))

    def send(self, t: IntArray, rank: IntArray, peer: IntArray, src: Cols,
             seq: IntArray = 0) -> None:
        self._sends.append(self._table(t, rank, seq, peer, *src))

    def recv(self, t: IntArray, rank: IntArray, peer: IntArray, dst: Cols,
             seq: IntArray = 0) -> None:
        self._recvs.append(self._table(t, rank, seq, peer, *dst))

    def copy(self, t: IntArray, rank: IntArray, src: Cols, dst: Cols, seq: IntArray = 0) -> None:
        """``dst[:] = src[:]``; both lengths must be equal (the length is ``src``'s)."""
        self._local.append(self._table(t, rank, seq, 0, dst[0], dst[1], src[0], src[1], -1, 0,
                                       src[2]))

    def reduce(self, t: IntArray, rank: IntArray, dst: Cols, a: Cols, b: Cols,
               seq: IntArray = 0) -> None:
        """``dst = a (op) b``, all of ``dst``'s length."""
        self._local.append(self._table(t, rank, seq, 1, dst[0], dst[1], a[0], a[1], b[0], b[1],
                                       dst[2]))

    def copy_runs(self, t: IntArray, rank: np.ndarray, src: Cols, dst: Cols,
                  seq: IntArray = 0) -> None:
        """Copy pairs listed along the last axis (one row of pairs per element of ``rank``, a
        column), merging neighbours contiguous on both sides, as :func:`.bruck._copy_runs` does
        for one rank: the runs keep the pairs' order, with ``seq``, ``seq + 1``, ... (``seq``:
        one for all rows, or one per row)."""
        sb, so, n, db, do = np.broadcast_arrays(*(np.asarray(x, dtype=np.int64) for x in
                                                  (src[0], src[1], src[2], dst[0], dst[1])))
        if sb.ndim != 2 or not sb.size:
            if sb.size:
                raise ValueError("copy_runs takes one row of pairs per rank")
            return
        rows, width = sb.shape
        joins = np.zeros(sb.shape, dtype=bool)
        joins[:, 1:] = ((sb[:, 1:] == sb[:, :-1]) & (db[:, 1:] == db[:, :-1])
                        & (so[:, 1:] == so[:, :-1] + n[:, :-1])
                        & (do[:, 1:] == do[:, :-1] + n[:, :-1]))
        first = np.flatnonzero(~joins.reshape(-1))
        length = np.add.reduceat(n.reshape(-1), first)
        r = first // width
        order = np.arange(first.size) - np.searchsorted(first, r * width)   # run index per rank
        when = np.broadcast_to(np.asarray(t, dtype=np.int64), sb.shape).reshape(-1)[first]
        who = np.broadcast_to(np.asarray(rank, dtype=np.int64).reshape(-1, 1), sb.shape)
        base = np.broadcast_to(np.asarray(seq, dtype=np.int64).reshape(-1, 1), sb.shape)
        self.copy(when, who.reshape(-1)[first], (sb.reshape(-1)[first], so.reshape(-1)[first], length),
                  (db.reshape(-1)[first], do.reshape(-1)[first], length),
                  base.reshape(-1)[first] + order)

    def finish(self) -> Rows:
        """The rows collected, with the Builder's rules applied, in program order."""
        sends = self._messages(self._sends)
        recvs = self._messages(self._recvs)
        local = np.concatenate(self._local) if self._local else np.zeros((0, 11), np.int64)
        kind, n = local[:, 3], local[:, 10]
        # no empty op, no self-copy
        keep = (n > 0) & ((kind == 1) | (local[:, 4] != local[:, 6]) | (local[:, 5] != local[:, 7]))
        local = local[keep]
        # lexsort is stable: ties keep the order of emission
        local = local[np.lexsort((local[:, 2], local[:, 0], local[:, 1]))]
        # columns: t, rank, seq, kind, d buf, off, a buf, off, b buf, off, length, position
        local = np.column_stack((local, _positions(local[:, 1], local[:, 0])))
        c = local[:, 3] == 0
        copies = local[c].take([0, 1, 11, 6, 7, 10, 4, 5, 10], axis=1)
        reduces = local[~c].take([0, 1, 11, 4, 5, 10, 6, 7, 10, 8, 9, 10], axis=1)
        # scratch: the furthest scratch element of any slice (a copy's b buffer is -1)
        n = local[:, 10]
        who = np.concatenate((sends[:, 1], recvs[:, 1], local[:, 1], local[:, 1], local[:, 1]))
        buf = np.concatenate((sends[:, 3], recvs[:, 3], local[:, 4], local[:, 6], local[:, 8]))
        end = np.concatenate((sends[:, 4] + sends[:, 5], recvs[:, 4] + recvs[:, 5],
                              local[:, 5] + n, local[:, 7] + n, local[:, 9] + n))
        on = buf == SCR
        scratch = np.zeros(self.nranks, dtype=np.int64)
        np.maximum.at(scratch, who[on], end[on])
        return Rows(sends, recvs, copies, reduces, scratch)

    @staticmethod
    def _messages(parts: Sequence[np.ndarray]) -> np.ndarray:
        if not parts:
            return _EMPTY6
        rows = np.concatenate(parts)
        rows = rows[rows[:, 6] > 0]
        order = np.lexsort((rows[:, 2], rows[:, 0], rows[:, 1]))   # stable: emission order
        return rows[order].take([0, 1, 3, 4, 5, 6], axis=1)


def _positions(rank: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Each row's index among the rows of its (rank, step), rows sorted by rank and step."""
    if not rank.size:
        return rank.copy()
    new = np.ones(rank.size, dtype=bool)
    new[1:] = (rank[1:] != rank[:-1]) | (t[1:] != t[:-1])
    starts = np.flatnonzero(new)
    first = np.repeat(starts, np.diff(np.append(starts, rank.size)))
    return np.arange(rank.size) - first


def per_rank(emit: RowsEmitter) -> Callable[[Problem, int, Mapping[str, Any]], Program]:
    """The per-rank generator of a rows emitter: the rows of one rank, as its program."""
    def generator(problem: Problem, rank: int, options: Mapping[str, Any]) -> Program:
        return emit(problem, np.array([rank], dtype=np.int64), options).program(rank)
    generator.__doc__ = emit.__doc__
    generator.__name__ = getattr(emit, "__name__", "generator").removesuffix("_rows")
    return generator
