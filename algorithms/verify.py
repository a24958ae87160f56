"""Symbolic verification of schedules: correct for every rank, or a precise reason why not.

:func:`verify` executes a schedule symbolically (see :mod:`._symbolic`) and checks

* structure: step indices non-negative and strictly increasing per program; peers in range and
  never the rank itself; every slice inside its buffer (scratch inside ``scratch_len``); no
  zero-length message; no write to the input buffer (it is read-only out of place, and in place
  only the output may be written);
* communication: in every step the sends from ``a`` to ``b`` and the receives of ``b`` from ``a``
  pair up in order with equal lengths; no two receives of one rank write overlapping memory in
  one step and no receive overwrites memory a send of the same step reads;
* data: nothing reads undefined data (scratch, and output not yet written; in place the aliased
  input counts as written); a reduction combines equal source elements with disjoint
  contributor sets (no duplicate contribution, no mixing of element indices); a local copy or
  reduction never partially overlaps its own operands;
* result: every checked output element holds exactly the contributions the collective demands
  (allreduce: element ``i`` of every rank; allgather: block ``r`` is rank ``r``'s input;
  reduce_scatter: block ``r`` of everyone's input; broadcast: the root's input; reduce: the
  root's output only; alltoall: block ``q`` is block ``r`` of rank ``q``'s input), as the
  collective's descriptor (:mod:`.collectives`) states it.

In-place runs are checked on the aliased memory (:func:`~.schedule.resolve_slice`).

Two engines, one verdict. Large schedules first go through the vectorized proof
(:func:`._proof.prove`: whole steps as numpy gathers over "atoms" of memory), which makes
every check above and answers only "correct" or "not shown correct". "Correct" is final; anything
else, and every small schedule, runs the segment verifier (:class:`_Verifier`), which is the
reference and writes the error messages.

:func:`verify_algorithm` checks one algorithm in both placements and :func:`verify_all` sweeps the
registry; :func:`format_verify_report` renders the result for the CLI.
"""

from __future__ import annotations

import gc
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from ._proof import (
    Expected,
    prove,
    prove_rows,
    worth_proving,
    worth_proving_rows,
)
from ._symbolic import Memory, Piece, combine, format_ranks
from .collectives import block_table, descriptor, source_mask
from .schedule import Buf, Collective, Copy, Layout, Problem, Reduce, Schedule, inplace_input_offset

_NAMES = {Buf.INPUT: "in", Buf.OUTPUT: "out", Buf.SCRATCH: "scratch"}
_MAX_ERRORS = 25
_IN, _OUT, _SCR = Buf.INPUT, Buf.OUTPUT, Buf.SCRATCH


def _fmt(buf: Any, start: int, length: int) -> str:
    return f"{_NAMES.get(buf, buf)}[{start}:{start + length}]"


def _fs(slc: Any) -> str:
    return _fmt(slc.buf, slc.offset, slc.length)


def _may_overlap(a: Any, b: Any) -> bool:
    """Whether two slices can share memory in some placement (scratch never aliases)."""
    if a.buf is b.buf:
        return a.offset < b.offset + b.length and b.offset < a.offset + a.length
    return a.buf is not _SCR and b.buf is not _SCR


class _TooMany(Exception):
    pass


class _Placement:
    """The memories of every rank under one placement, and the errors found in it."""

    def __init__(self, problem: Problem, scratch_lens: Sequence[int], in_place: bool) -> None:
        self.in_place = in_place
        self.errors: list[str] = []
        # where[r] = {buf: (memory, offset of the logical buffer in it)}
        self.where: list[dict] = []
        for r, scratch_len in enumerate(scratch_lens):
            in_len, out_len = problem.input_len(r), problem.output_len(r)
            inp = Memory(in_len, 0, 1 << r)
            out = Memory(out_len)
            where = {_IN: (inp, 0), _OUT: (out, 0), _SCR: (Memory(max(scratch_len, 0)), 0)}
            if in_place:
                host, offset = inplace_input_offset(problem, r)
                if host is _OUT:
                    if in_len:
                        out.write(offset, inp.read(0, in_len))
                    where[_IN] = (out, offset)
                else:
                    where[_OUT] = (inp, offset)
            self.where.append(where)

    def error(self, msg: str) -> None:
        self.errors.append(msg)
        if len(self.errors) >= _MAX_ERRORS:
            self.errors.append(f"... stopped after {_MAX_ERRORS} errors")
            raise _TooMany


class _Verifier:
    """Runs a schedule once, symbolically, for one or two placements at the same time.

    Everything that does not depend on the placement (structure, bounds, message matching) is
    checked once and reported in every placement; memory contents are tracked per placement.
    """

    def __init__(self, schedule: Schedule, placements: Sequence[bool]) -> None:
        self.schedule = schedule
        self.problem = schedule.problem
        self.pls = [_Placement(schedule.problem, [p.scratch_len for p in schedule.programs], ip)
                    for ip in placements]
        self.lens = [(self.problem.input_len(r), self.problem.output_len(r), prog.scratch_len)
                     for r, prog in enumerate(schedule.programs)]
        self.limits = [{_IN: a, _OUT: b, _SCR: c} for a, b, c in self.lens]
        # wheres[r][i] = placement i's {buf: (memory, offset)} for rank r
        self.wheres = [tuple(pl.where[r] for pl in self.pls)
                       for r in range(schedule.problem.nranks)]

    def common(self, msg: str) -> None:
        for pl in self.pls:
            pl.error(msg)

    def run(self) -> list[list[str]]:
        try:
            self._run()
        except _TooMany:
            pass
        return [pl.errors for pl in self.pls]

    # -- checks that do not depend on the placement -----------------------------------------
    def bad_slice(self, r: int, slc: Any) -> str | None:
        """Why ``slc`` is not a valid slice of rank ``r``'s buffers, or None."""
        buf = slc.buf
        lens = self.lens[r]
        if buf is _IN:
            limit = lens[0]
        elif buf is _OUT:
            limit = lens[1]
        elif buf is _SCR:
            limit = lens[2]
        else:
            return f"unknown buffer {buf!r}"
        if slc.offset < 0 or slc.length < 0 or slc.offset + slc.length > limit:
            extra = " (scratch_len)" if buf is _SCR else ""
            return f"{_fs(slc)} is outside the {limit}-element {_NAMES[buf]} buffer{extra}"
        return None

    def _run(self) -> None:
        problem = self.problem
        p = problem.nranks
        by_step: dict[int, list] = {}
        for r, prog in enumerate(self.schedule.programs):
            if prog.scratch_len < 0:
                self.common(f"rank {r}: negative scratch_len {prog.scratch_len}")
                return
            last = -1
            for step in prog.steps:
                t = step.index
                if not isinstance(t, int) or t <= last:
                    self.common(f"rank {r}: step index {t} does not follow {last} (indices "
                                f"must be non-negative and strictly increasing)")
                    return
                last = t
                entries = by_step.get(t)
                if entries is None:
                    by_step[t] = [(r, step)]
                else:
                    entries.append((r, step))
        for t in sorted(by_step):
            self._step(t, by_step[t], p)
        for pl in self.pls:
            self._check_results(pl)

    def _step(self, t: int, entries: list, p: int) -> None:
        # This loop runs for every message of a sweep (millions): locals, fast paths first,
        # error messages built only when something is wrong.
        pls = self.pls
        npl = len(pls)
        limits = self.limits
        wheres = self.wheres
        in_flight: dict[tuple[int, int], list] = {}
        for r, step in entries:
            sends, recvs = step.sends, step.recvs
            if len(recvs) > 1 or (recvs and sends and (
                    len(sends) > 1 or _may_overlap(sends[0].src, recvs[0].dst))):
                for pl in pls:
                    self._hazards(pl, t, r, step)
            if not sends:
                continue
            lim = limits[r]
            ws = wheres[r]
            for k, send in enumerate(sends):
                peer, slc = send.peer, send.src
                buf, off, n = slc.buf, slc.offset, slc.length
                limit = lim.get(buf)
                if (peer == r or type(peer) is not int or not 0 <= peer < p or limit is None
                        or off < 0 or n <= 0 or off + n > limit):
                    self._bad_message(t, r, k, send, True, p)
                    continue
                snap = []
                for w in ws:
                    mem, base = w[buf]
                    pieces = mem.read(base + off, n)
                    if len(pieces) != 1 or not pieces[0][2]:
                        for _, _, mask in pieces:
                            if not mask:
                                self._undefined(pls[len(snap)],
                                                f"rank {r} step {t} send #{k} to {peer}",
                                                slc, pieces)
                                break
                    snap.append(pieces)
                key = (r, peer)
                queue = in_flight.get(key)
                if queue is None:
                    in_flight[key] = [slc, k, snap]
                else:
                    queue += (slc, k, snap)
        cursor: dict[tuple[int, int], int] = {}
        for r, step in entries:
            recvs = step.recvs
            if recvs:
                lim = limits[r]
                ws = wheres[r]
                for k, recv in enumerate(recvs):
                    peer, dst = recv.peer, recv.dst
                    buf, off, n = dst.buf, dst.offset, dst.length
                    limit = lim.get(buf)
                    if (peer == r or type(peer) is not int or not 0 <= peer < p
                            or limit is None or off < 0 or n <= 0 or off + n > limit
                            or buf is _IN):
                        self._bad_message(t, r, k, recv, False, p)
                        continue
                    key = (peer, r)
                    queue = in_flight.get(key)
                    pos = cursor.get(key, 0)
                    snap = None
                    if queue is None or pos >= len(queue):
                        self.common(f"rank {r} step {t} recv #{k} from {peer} into "
                                    f"{_fs(dst)}: rank {peer} sends no matching message in "
                                    f"step {t}")
                    else:
                        cursor[key] = pos + 3
                        src = queue[pos]
                        if src.length != n:
                            self.common(f"rank {r} step {t} recv #{k} from {peer} into "
                                        f"{_fs(dst)}: length {n} but rank {peer} send "
                                        f"#{queue[pos + 1]} has {src.length} elements "
                                        f"({_fs(src)})")
                        else:
                            snap = queue[pos + 2]
                    for i in range(npl):
                        mem, base = ws[i][buf]
                        if snap is None:
                            mem.put(base + off, n, 0, 0)
                        else:
                            pieces = snap[i]
                            if len(pieces) == 1:
                                piece = pieces[0]
                                mem.put(base + off, n, piece[1], piece[2])
                            else:
                                mem.write(base + off, pieces)
            if step.local:
                self._local(t, r, step.local)
        for key, queue in in_flight.items():
            for pos in range(cursor.get(key, 0), len(queue), 3):
                src, sk = queue[pos], queue[pos + 1]
                self.common(f"rank {key[0]} step {t} send #{sk} to {key[1]} of {_fs(src)}: "
                            f"rank {key[1]} posts no matching receive in step {t}")

    def _bad_message(self, t: int, r: int, k: int, op: Any, is_send: bool, p: int) -> None:
        """Report why a send or receive is malformed (the fast path only detects it)."""
        peer = op.peer
        slc = op.src if is_send else op.dst
        what = f"rank {r} step {t} {'send' if is_send else 'recv'} #{k}"
        if peer == r:
            self.common(f"{what}: message {'to' if is_send else 'from'} itself")
            return
        if type(peer) is not int or not 0 <= peer < p:
            self.common(f"{what}: peer {peer!r} is not a rank of 0..{p - 1}")
            return
        what += f" {'to' if is_send else 'from'} {peer}"
        why = self.bad_slice(r, slc)
        if why is None and slc.length == 0:
            why = "zero-length message"
        if why is None and not is_send and slc.buf is _IN:
            why = f"writes the input buffer {_fs(slc)}"
        self.common(f"{what}: {why}")

    def _undefined(self, pl: _Placement, where: str, slc: Any, pieces: list[Piece]) -> None:
        pos = 0
        for length, _, mask in pieces:
            if not mask:
                pl.error(f"{where}: reads undefined data at "
                         f"{_fmt(slc.buf, slc.offset + pos, length)}")
            pos += length

    def _hazards(self, pl: _Placement, t: int, r: int, step: Any) -> None:
        """No two receives overlap, and no receive overlaps a send source, in one step."""
        where = pl.where[r]
        ivs = []
        for kind, ops in ((0, step.sends), (1, step.recvs)):
            for k, op in enumerate(ops):
                slc = op.src if kind == 0 else op.dst
                if slc.buf in where and slc.length > 0:
                    mem, base = where[slc.buf]
                    a = base + slc.offset
                    ivs.append((id(mem), a, a + slc.length, kind, k, slc))
        if len(ivs) < 2:
            return
        ivs.sort(key=lambda iv: (iv[0], iv[1]))
        cur_mem = None
        best: list = [None, None]  # per kind: the interval with the largest end so far
        for iv in ivs:
            m, a, e, kind, k, slc = iv
            if m != cur_mem:
                cur_mem, best = m, [None, None]
            prev_recv = best[1]
            if prev_recv is not None and prev_recv[2] > a:
                what = f"send #{k} from" if kind == 0 else f"recv #{k} into"
                pl.error(f"rank {r} step {t}: recv #{prev_recv[4]} into {_fs(prev_recv[5])} "
                         f"overlaps {what} {_fs(slc)} in the same step")
            elif kind == 1 and best[0] is not None and best[0][2] > a:
                pl.error(f"rank {r} step {t}: recv #{k} into {_fs(slc)} overwrites the source "
                         f"of send #{best[0][4]} ({_fs(best[0][5])}) in the same step")
            if best[kind] is None or best[kind][2] < e:
                best[kind] = iv

    def _local(self, t: int, r: int, ops: Iterable[Any]) -> None:
        pls = self.pls
        lim = self.limits[r]
        ws = self.wheres[r]
        for k, op in enumerate(ops):
            kind = type(op)
            if kind is Reduce:
                dst, a, b = op.dst, op.a, op.b
                dbuf, doff, n = dst.buf, dst.offset, dst.length
                abuf, aoff, bbuf, boff = a.buf, a.offset, b.buf, b.offset
                dlim, alim, blim = lim.get(dbuf), lim.get(abuf), lim.get(bbuf)
                if (dlim is None or alim is None or blim is None or n < 0 or doff < 0
                        or aoff < 0 or boff < 0 or a.length != n or b.length != n
                        or doff + n > dlim or aoff + n > alim or boff + n > blim
                        or dbuf is _IN):
                    self._bad_local(t, r, k, op)
                    continue
                if not n:
                    continue
                for i, w in enumerate(ws):
                    dmem, dbase = w[dbuf]
                    amem, abase = w[abuf]
                    bmem, bbase = w[bbuf]
                    d0, a0, b0 = dbase + doff, abase + aoff, bbase + boff
                    if (amem is dmem and a0 != d0 and a0 < d0 + n and d0 < a0 + n) or \
                            (bmem is dmem and b0 != d0 and b0 < d0 + n and d0 < b0 + n):
                        pls[i].error(f"{self._describe(t, r, k, op)}: destination partially "
                                     f"overlaps an operand")
                        continue
                    pa = amem.read(a0, n)
                    pb = bmem.read(b0, n)
                    if len(pa) == 1 and len(pb) == 1:
                        _, xa, ma = pa[0]
                        _, xb, mb = pb[0]
                        if ma and mb and xa == xb and not ma & mb:
                            dmem.put(d0, n, xa, ma | mb)
                            continue
                    pieces, problems = combine(pa, pb)
                    if problems:
                        self._reduce_problems(pls[i], t, r, k, op, problems)
                    dmem.write(d0, pieces)
            elif kind is Copy:
                src, dst = op.src, op.dst
                dbuf, doff, n = dst.buf, dst.offset, dst.length
                sbuf, soff = src.buf, src.offset
                dlim, slim = lim.get(dbuf), lim.get(sbuf)
                if (dlim is None or slim is None or n < 0 or doff < 0 or soff < 0
                        or src.length != n or doff + n > dlim or soff + n > slim
                        or dbuf is _IN):
                    self._bad_local(t, r, k, op)
                    continue
                if not n:
                    continue
                for i, w in enumerate(ws):
                    dmem, dbase = w[dbuf]
                    smem, sbase = w[sbuf]
                    d0, s0 = dbase + doff, sbase + soff
                    if smem is dmem and s0 != d0 and s0 < d0 + n and d0 < s0 + n:
                        pls[i].error(f"{self._describe(t, r, k, op)}: destination partially "
                                     f"overlaps the source")
                        continue
                    pieces = smem.read(s0, n)
                    for _, _, mask in pieces:
                        if not mask:
                            self._undefined(pls[i], self._describe(t, r, k, op), src, pieces)
                            break
                    dmem.write(d0, pieces)
            else:
                self.common(f"rank {r} step {t} local #{k}: unknown local operation {op!r}")

    def _bad_local(self, t: int, r: int, k: int, op: Any) -> None:
        """Report why a local operation is malformed (the fast path only detects it)."""
        if type(op) is Reduce:
            dst, operands = op.dst, (op.a, op.b)
        else:
            dst, operands = op.dst, (op.src,)
        why = self.bad_slice(r, dst)
        for o in operands:
            why = why or self.bad_slice(r, o)
        if why is None:
            if any(o.length != dst.length for o in operands):
                why = "lengths differ"
            else:
                why = "writes the input buffer"
        self.common(f"{self._describe(t, r, k, op)}: {why}")

    def _reduce_problems(self, pl: _Placement, t: int, r: int, k: int, op: Any,
                         problems: list[tuple[int, int, str]]) -> None:
        head = self._describe(t, r, k, op)
        for pos, length, desc in problems:
            rng = f"elements {pos}..{pos + length - 1} of the operands"
            if desc == "undefined":
                pl.error(f"{head}: reads undefined data ({rng})")
            elif desc.startswith("duplicate"):
                pl.error(f"{head}: both operands already contain contributions of ranks "
                         f"{desc[len('duplicate '):]} ({rng}): duplicated")
            else:
                pl.error(f"{head}: {desc} ({rng})")

    @staticmethod
    def _describe(t: int, r: int, k: int, op: Any) -> str:
        if type(op) is Copy:
            return f"rank {r} step {t} local #{k} copy {_fs(op.src)} -> {_fs(op.dst)}"
        return (f"rank {r} step {t} local #{k} reduce {_fs(op.dst)} = {_fs(op.a)} + "
                f"{_fs(op.b)}")

    # -- the result -------------------------------------------------------------------------
    def _check_results(self, pl: _Placement) -> None:
        problem = self.problem
        shared = None  # same result on every rank (allreduce, allgather, ...): build it once
        if descriptor(problem.collective).same_result:
            shared = expected_output(problem, 0)
        for r, where in enumerate(pl.where):
            expected = shared if shared is not None else expected_output(problem, r)
            if not expected:
                continue
            mem, base = where[_OUT]
            actual = mem.read(base, self.lens[r][1])
            self._compare(pl, r, actual, expected)

    @staticmethod
    def _compare(pl: _Placement, r: int, actual: list[Piece],
                 expected: list[tuple[int, int, int]]) -> None:
        """Walk both piece lists; report each maximal wrong range once."""
        if actual == expected:  # maximal runs on both sides: equal lists mean equal contents
            return
        bad: list[list] = []  # [start, length, description]
        pos = 0
        ia = ie = 0
        la, xa, ma = actual[0]
        le, xe, me = expected[0]
        while True:
            n = la if la < le else le
            if n and (ma != me or xa != xe):
                if not ma:
                    desc = "is undefined"
                elif ma != me:
                    missing, extra = me & ~ma, ma & ~me
                    desc = (f"holds contributions of ranks {format_ranks(ma)} but needs "
                            f"{format_ranks(me)}")
                    if missing:
                        desc += f" (missing {format_ranks(missing)})"
                    if extra:
                        desc += f" (extra {format_ranks(extra)})"
                else:
                    desc = f"holds source elements {xa}.. but needs {xe}.."
                if bad and bad[-1][0] + bad[-1][1] == pos and bad[-1][2] == desc:
                    bad[-1][1] += n
                else:
                    bad.append([pos, n, desc])
            pos += n
            la -= n
            le -= n
            xa += n
            xe += n
            if la == 0:
                ia += 1
                if ia == len(actual):
                    break
                la, xa, ma = actual[ia]
            if le == 0:
                ie += 1
                if ie == len(expected):
                    break
                le, xe, me = expected[ie]
        for start, length, desc in bad:
            pl.error(f"rank {r}: result {_fmt(_OUT, start, length)} {desc}")


def expected_output(problem: Problem, rank: int) -> list[tuple[int, int, int]] | None:
    """What ``rank``'s output must hold, as (length, first source element, contributors) pieces.

    The collective's postcondition blocks (:mod:`.collectives`) as maximal runs (adjacent
    blocks that continue each other merge, so equal lists mean equal contents). None when the
    collective leaves that output unspecified (reduce on a non-root rank).
    """
    blocks = descriptor(problem.collective).blocks(problem, rank)
    if blocks is None:
        return None
    pieces: list[tuple[int, int, int]] = []
    for block in blocks:
        if not block.length:
            continue
        mask = source_mask(block.sources)
        if pieces and pieces[-1][2] == mask and sum(pieces[-1][:2]) == block.in_offset:
            last = pieces[-1]
            pieces[-1] = (last[0] + block.length, last[1], mask)
        else:
            pieces.append((block.length, block.in_offset, mask))
    return pieces


def verify(schedule: Schedule, in_place: bool) -> list[str]:
    """Check one schedule in one placement.

    Args:
        schedule: The programs of every rank.
        in_place: Check the in-place placement (input aliased into the output as in
            :func:`~.schedule.inplace_input_offset`) instead of out-of-place.

    Returns:
        Error messages, each naming the rank, the step and the buffer range at fault; an empty
        list means the schedule is correct. At most 25 errors are reported.
    """
    if _proven(schedule, (in_place,)):
        return []
    return _Verifier(schedule, (in_place,)).run()[0]


def verify_both(schedule: Schedule) -> tuple[list[str], list[str]]:
    """Check a schedule out of place and in place in one pass (faster than two calls).

    Returns:
        (out-of-place errors, in-place errors).
    """
    if _proven(schedule, (False, True)):
        return [], []
    oop, inp = _Verifier(schedule, (False, True)).run()
    return oop, inp


def _proven(schedule: Schedule, placements: tuple[bool, ...]) -> bool:
    """Whether the vectorized proof (:func:`._proof.prove`) shows the schedule correct.

    Large schedules try it first: it answers in a fraction of the segment verifier's time and
    is exact when it says yes. A no (or a small schedule, where its setup costs more than it
    saves) leaves the verdict, and the error messages, to :class:`_Verifier`.
    """
    if not worth_proving(schedule.programs):
        return False
    return prove(schedule, placements, _expected(schedule.problem))


def _expected(problem: Problem) -> Expected:
    """The postcondition for the proofs: every rank's blocks at once."""
    return block_table(problem)


def _algorithm_errors(algo: Any, problem: Problem, options: Mapping[str, Any] | None) -> list[str]:
    """Both placements' errors of ``algo``'s schedule for ``problem`` (precondition met).

    An algorithm written as rows (:mod:`.rows`) is proved on its rows, without building a
    Python object per message; only a schedule the proof does not show correct is built as
    programs, for the segment verifier's exact messages.
    """
    rows = algo.rows(problem, options)
    if rows is None:
        return _placement_errors(algo.schedule(problem, options))
    mismatch = _emitted_alone_differs(algo, problem, options, rows)
    if mismatch is not None:
        return [f"rows: rank {mismatch}'s program, emitted for that rank alone, differs from its "
                f"rows in the schedule of every rank (an emitter must give a rank the same "
                f"rows whichever ranks it is asked for)"]
    if worth_proving_rows(rows) and prove_rows(problem, rows, (False, True),
                                               _expected(problem)):
        return []
    schedule = Schedule(algo.name, problem, rows.programs(problem.nranks))
    oop, inp = _Verifier(schedule, (False, True)).run()
    return [f"out-of-place: {e}" for e in oop] + [f"in-place: {e}" for e in inp]


def _emitted_alone_differs(algo: Any, problem: Problem, options: Mapping[str, Any] | None,
                           rows: Any) -> int | None:
    """The first of ranks 0 and p-1 whose rows, emitted for that rank alone, give another
    program than its rows in ``rows`` (every rank's), or None.

    Executors ask an emitter for one rank's rows, the proof reads every rank's: what is
    proved must be what runs.
    """
    for rank in sorted({0, problem.nranks - 1}):
        alone = algo.rows(problem, options, ranks=[rank]).rank_rows(rank)
        if all(np.array_equal(a, b) for a, b in zip(alone, rows.rank_rows(rank))):
            continue
        if algo.program(problem, rank, options) != rows.program(rank):
            return rank
    return None


# -- sweeping the registry ---------------------------------------------------------------------

LARGE_ODD_COUNT = 10007
"""The "large odd" element count of the default sweep (prime, so no rank count divides it)."""


def default_counts(nranks: int) -> list[int]:
    """0, 1, p-1, p, p+1 and a large odd count (duplicates removed)."""
    return sorted({0, 1, nranks - 1, nranks, nranks + 1, LARGE_ODD_COUNT})


def _placement_errors(schedule: Schedule) -> list[str]:
    oop, inp = verify_both(schedule)
    return [f"out-of-place: {e}" for e in oop] + [f"in-place: {e}" for e in inp]


def verify_algorithm(name: str, problem: Problem,
                     options: Mapping[str, Any] | None = None) -> list[str]:
    """Build ``name``'s schedule for ``problem`` and check it in both placements.

    Returns:
        Error messages prefixed with ``out-of-place:`` or ``in-place:``; a precondition failure
        is returned as a single ``precondition: ...`` message. Empty means correct.

    Raises:
        ValueError: Unknown algorithm name.
    """
    from .registry import get_algorithm

    return _case_errors(get_algorithm(name), problem, options)


def _case_errors(algo: Any, problem: Problem, options: Mapping[str, Any] | None) -> list[str]:
    """The errors of one case: its precondition's refusal, the schedule's faults, or what the
    algorithm's code raised while building it (a finding about the algorithm, such as a
    plugin's, not a reason to stop a sweep)."""
    try:
        reason = algo.precondition(problem, op=None, options=options)
        if reason is not None:
            return [f"precondition: {reason}"]
        return _algorithm_errors(algo, problem, options)
    except Exception as exc:  # noqa: BLE001 (reported as the case's error)
        return [f"building the schedule raised {type(exc).__name__}: {exc}"]


@dataclass(frozen=True)
class VerifyFailure:
    """One (problem, options) combination that failed verification."""

    nranks: int
    count: int
    root: int
    layout: Layout | None
    options: Mapping[str, Any]
    errors: tuple[str, ...]

    def describe(self) -> str:
        parts = [f"p={self.nranks}", f"count={self.count}"]
        if self.root:
            parts.append(f"root={self.root}")
        if self.layout is not None:
            parts.append("nodes=" + "/".join(str(len(n)) for n in self.layout.nodes)
                         + ("" if _blocked(self.layout) else " (round robin)"))
        if self.options:
            parts.append(f"options={dict(self.options)}")
        return " ".join(parts)


def _blocked(layout: Layout) -> bool:
    flat = [r for node in layout.nodes for r in node]
    return flat == sorted(flat)


@dataclass(frozen=True)
class AlgorithmReport:
    """Verification of one algorithm for one collective."""

    algorithm: str
    collective: Collective
    ranks: tuple[int, ...]
    schedules: int
    failures: tuple[VerifyFailure, ...]
    elapsed: float

    @property
    def ok(self) -> bool:
        return not self.failures


@dataclass(frozen=True)
class VerifyReport:
    """The result of :func:`verify_all`."""

    entries: tuple[AlgorithmReport, ...]
    elapsed: float

    @property
    def ok(self) -> bool:
        return all(e.ok for e in self.entries)

    @property
    def schedules(self) -> int:
        return sum(e.schedules for e in self.entries)


@contextmanager
def _quiet_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector: a sweep allocates millions of small acyclic objects
    and would otherwise spend a third of its time in collections that free nothing."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _cases(impl: Any, p: int, large: bool) -> Iterator[tuple[Mapping[str, Any], Layout | None, int]]:
    """(options, layout, root) combinations to check at rank count ``p``.

    The default options are checked with every layout and root; each other option set in turn
    (one per rank count, rotating) with one layout and root, which covers every variant at many
    rank counts without multiplying the sweep.
    """
    layouts = list(impl.verify_layouts(p)) if impl.verify_layouts else [None]
    roots = sorted({0, p // 2, p - 1}) if impl.collective.rooted else [0]
    variants = [o for o in impl.verify_options if o]
    for layout in layouts:
        for root in roots:
            yield {}, layout, root
    if variants and not large:
        options = variants[p % len(variants)]
        yield options, layouts[p % len(layouts)], roots[p % len(roots)]


def verify_all(max_ranks: int = 64,
               counts: Sequence[int] | Callable[[int], Sequence[int]] | None = None,
               extra_ranks: Sequence[int] = (128, 1000),
               algorithms: Sequence[str] | None = None,
               collectives: Sequence[Collective | str] | None = None,
               rank_counts: Sequence[int] | None = None) -> VerifyReport:
    """Verify every registered algorithm (except ``native``) in both placements.

    Args:
        max_ranks: Check every rank count 1..max_ranks.
        counts: Element counts per rank count: a fixed list, a function of the rank count, or
            None for :func:`default_counts` (0, 1, p-1, p, p+1, 10007).
        extra_ranks: Larger rank counts checked for the algorithms with logarithmic step
            counts only (default options).
        algorithms: Restrict to these names (aliases allowed); None checks all.
        collectives: Restrict to these collectives; None checks all.
        rank_counts: Check exactly these rank counts instead (those above ``max_ranks`` only
            for the logarithmic algorithms); lets a caller split one sweep across processes.

    Returns:
        A :class:`VerifyReport` with, per algorithm and collective, the rank counts checked, the
        number of schedules, the failures and the time taken.
    """
    from .registry import algorithms as registered
    from .registry import get_algorithm

    if algorithms is None:
        algos = [a for a in registered() if not a.native]
    else:
        algos = [get_algorithm(n) for n in algorithms]
    wanted = None if collectives is None else {
        c if isinstance(c, Collective) else Collective.parse(c) for c in collectives}
    count_fn: Callable[[int], Sequence[int]]
    if counts is None:
        count_fn = default_counts
    elif callable(counts):
        count_fn = counts
    else:
        fixed = sorted(set(counts))
        count_fn = lambda p: fixed  # noqa: E731
    start = time.perf_counter()
    entries = []
    with _quiet_gc():
        for algo in algos:
            for coll, impl in algo.implementations.items():
                if wanted is not None and coll not in wanted:
                    continue
                t0 = time.perf_counter()
                if rank_counts is not None:
                    ranks = [p for p in rank_counts if p <= max_ranks or impl.log_steps]
                else:
                    ranks = list(range(1, max_ranks + 1))
                    ranks += [p for p in extra_ranks if p > max_ranks and impl.log_steps]
                failures: list[VerifyFailure] = []
                n = 0
                for p in ranks:
                    large = p > max_ranks
                    for options, layout, root in _cases(impl, p, large):
                        for count in count_fn(p):
                            problem = Problem(coll, p, count, root, layout)
                            errors = _case_errors(algo, problem, options)
                            n += 1
                            if errors:
                                failures.append(VerifyFailure(p, count, root, layout,
                                                              dict(options), tuple(errors)))
                entries.append(AlgorithmReport(algo.name, coll, tuple(ranks), n,
                                               tuple(failures), time.perf_counter() - t0))
    return VerifyReport(tuple(entries), time.perf_counter() - start)


def _ranks_text(ranks: Sequence[int]) -> str:
    """``1-64, 128, 1000``."""
    parts: list[str] = []
    run: list[int] = []
    for r in list(ranks) + [None]:  # type: ignore[list-item]
        if run and (r is None or r != run[-1] + 1):
            parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
            run = []
        if r is not None:
            run.append(r)
    return ", ".join(parts)


def format_verify_report(report: VerifyReport, max_errors: int = 5) -> str:
    """Render a :class:`VerifyReport` as text: one line per algorithm and collective, then the
    first errors of every failure, then a summary line."""
    rows = [("algorithm", "collective", "ranks", "schedules", "result", "time")]
    for e in report.entries:
        rows.append((e.algorithm, e.collective.value, _ranks_text(e.ranks), str(e.schedules),
                     "ok" if e.ok else f"{len(e.failures)} FAILED", f"{e.elapsed:.2f}s"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    for e in report.entries:
        for failure in e.failures[:3]:
            lines.append("")
            lines.append(f"{e.algorithm} {e.collective.value} {failure.describe()}:")
            for err in failure.errors[:max_errors]:
                lines.append(f"  {err}")
            if len(failure.errors) > max_errors:
                lines.append(f"  ... {len(failure.errors) - max_errors} more")
        if len(e.failures) > 3:
            lines.append(f"{e.algorithm} {e.collective.value}: {len(e.failures) - 3} more "
                         f"failing cases")
    failed = sum(len(e.failures) for e in report.entries)
    verdict = "all correct" if report.ok else f"{failed} failing cases"
    lines.append("")
    lines.append(f"{report.schedules} schedules x 2 placements verified in "
                 f"{report.elapsed:.1f}s: {verdict}")
    return "\n".join(lines)
