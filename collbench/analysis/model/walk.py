"""Schedule-walking cost: charge every message and local operation of a real schedule.

For every step index, every rank's sends, receives, reductions and copies (after lowering, so
in-place runs drop the copies they do not make) become a :class:`~.cost.Sig`; NIC sharing
counts, per node and direction, the ranks with inter-node messages in that step. A step costs
its slowest rank; the collective the sum of its steps. This is the reference the closed forms
(:mod:`.costs`) must equal exactly; it costs O(ranks × messages), so predictions use the
closed forms and this is used to check them (and for user-registered algorithms without one).
An algorithm written as rows (:mod:`...algorithms.rows`) is walked on its rows, with the
lowering's rules applied to them, rather than on programs built from them (25x cheaper for a
64-rank ring; tests/analysis/test_model_walk.py holds the two walks equal).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ...algorithms import Buf, Copy, Layout, Problem, Program
from ...algorithms.registry import get_algorithm
from ...algorithms.rows import CODES as ROW_CODES
from ...algorithms.rows import Rows
from ...algorithms.schedule import inplace_input_offset
from ...execute.bind import lower
from .cost import EMPTY, Side, Sig


def node_index(layout: Layout | None, nranks: int) -> list[int]:
    """Node of every rank (all on node 0 without a layout)."""
    node = [0] * nranks
    if layout is not None:
        for k, members in enumerate(layout.nodes):
            for r in members:
                node[r] = k
    return node


def _side(msgs: Sequence[tuple[int, int]], node: list[int], me: int) -> tuple:
    """(intra msgs, intra max, intra total, inter msgs, inter max, inter total); the maxima
    are per link: the most bytes to one peer, summed over this step's messages to it."""
    im = itot = em = etot = 0
    per_peer: dict[int, int] = defaultdict(int)
    mine = node[me]
    for peer, nbytes in msgs:
        if nbytes <= 0:
            continue
        per_peer[peer] += nbytes
        if node[peer] == mine:
            im, itot = im + 1, itot + nbytes
        else:
            em, etot = em + 1, etot + nbytes
    imax = max((b for q, b in per_peer.items() if node[q] == mine), default=0)
    emax = max((b for q, b in per_peer.items() if node[q] != mine), default=0)
    return im, imax, itot, em, emax, etot


Entry = tuple[int, tuple, tuple, int, int]
"""One rank's lowered step: (rank, send side, receive side, bytes reduced, bytes copied); the
sides as :func:`_side` gives them."""

Signatures = list[tuple[int, tuple[Sig, ...]]]


def step_signatures(algorithm: str, problem: Problem, itemsize: int, in_place: bool = False,
                    options: Mapping[str, Any] | None = None) -> Signatures:
    """(step index, distinct rank signatures, in rank order) of every step of the schedule."""
    algo = get_algorithm(algorithm)
    node = node_index(problem.layout, problem.nranks)
    # an algorithm written as rows is walked on its rows: no object per message
    rows = algo.rows(problem, options)
    if rows is not None:
        return signatures_of_rows(problem, rows, itemsize, in_place, node)
    programs = algo.schedule(problem, options).programs
    return signatures_of_programs(problem, programs, itemsize, in_place, node)


def signatures_of_programs(problem: Problem, programs: Sequence[Program], itemsize: int,
                           in_place: bool, node: list[int]) -> Signatures:
    """The walk over every rank's lowered program (what executors run)."""
    per_step: dict[int, list[Entry]] = defaultdict(list)
    for rank, program in enumerate(programs):
        lowered = lower(problem, program, in_place, "sum")
        for step in lowered.steps:
            sends = _side([(peer, s.length * itemsize) for peer, s in step.sends], node, rank)
            recvs = _side([(peer, s.length * itemsize) for peer, s in step.recvs], node, rank)
            red = cop = 0
            for item in step.local:
                if isinstance(item, Copy):
                    cop += item.dst.length * itemsize
                else:
                    red += item.dst.length * itemsize
            per_step[step.index].append((rank, sends, recvs, red, cop))
    out = []
    for index in sorted(per_step):
        entries = per_step[index]
        send_share: dict[int, int] = defaultdict(int)
        recv_share: dict[int, int] = defaultdict(int)
        for rank, sends, recvs, _, _ in entries:
            if sends[3]:
                send_share[node[rank]] += 1
            if recvs[3]:
                recv_share[node[rank]] += 1
        sigs = []
        for rank, sends, recvs, red, cop in entries:
            s = Side(*sends, send_share[node[rank]] if sends[3] else 0) if any(sends) else EMPTY
            r = Side(*recvs, recv_share[node[rank]] if recvs[3] else 0) if any(recvs) else EMPTY
            sigs.append(Sig(s, r, red, cop))
        out.append((index, tuple(dict.fromkeys(sigs))))
    return out


# -- the same walk on rows, as array operations ------------------------------------------------
#
# An entry is one (step, rank) pair with something left after lowering, as 16 numbers: the send
# side's six (intra messages, busiest intra link, intra total, then inter) and its NIC share,
# the receive side's seven, bytes reduced and bytes copied. Equal numbers make equal Sigs, so
# only each step's distinct entries become objects.


def signatures_of_rows(problem: Problem, rows: Rows, itemsize: int, in_place: bool,
                       node: list[int]) -> Signatures:
    """:func:`signatures_of_programs` of a schedule given as rows, with
    :func:`~...execute.bind.lower`'s rules: empty messages and reductions dropped, and copies
    that move nothing (a range onto itself, where in place aliasing puts it) left out."""
    p = problem.nranks
    nodes = np.asarray(node, dtype=np.int64)
    parts = [_sides(rows.sends, nodes, itemsize), _sides(rows.recvs, nodes, itemsize)]
    red = rows.reduces[rows.reduces[:, 5] > 0]
    parts.append(_sums(red[:, 0], red[:, 1], red[:, 5] * itemsize))
    cop = rows.copies
    alias = _aliasing(problem, in_place, cop[:, 1])
    src_buf, src_off = alias(cop[:, 3], cop[:, 4])
    dst_buf, dst_off = alias(cop[:, 6], cop[:, 7])
    moves = (cop[:, 5] > 0) & ((src_buf != dst_buf) | (src_off != dst_off) | (cop[:, 5] != cop[:, 8]))
    cop = cop[moves]
    parts.append(_sums(cop[:, 0], cop[:, 1], cop[:, 8] * itemsize))
    # every (step, rank) with anything left, in step then rank order
    key = np.unique(np.concatenate([k[:, 0] * p + k[:, 1] for k, _ in parts]))
    table = np.zeros((key.size, 16), dtype=np.int64)
    for (keys, values), at in zip(parts, (0, 7, 14, 15)):
        where = np.searchsorted(key, keys[:, 0] * p + keys[:, 1])
        table[where, at:at + values.shape[1]] = values
    step, rank = key // p, key % p
    for inter, share in ((3, 6), (10, 13)):   # ranks of the node using its NICs in the step
        busy = table[:, inter] > 0
        group = step * (int(nodes.max()) + 1 if nodes.size else 1) + nodes[rank]
        _, which, counts = np.unique(group[busy], return_inverse=True, return_counts=True)
        table[busy, share] = counts[which]
    distinct, first = np.unique(np.column_stack((step, table)), axis=0, return_index=True)
    out: dict[int, list[Sig]] = defaultdict(list)
    for t, *v in distinct[np.argsort(first)].tolist():
        send = Side(*v[0:7]) if any(v[0:6]) else EMPTY
        recv = Side(*v[7:14]) if any(v[7:13]) else EMPTY
        out[t].append(Sig(send, recv, v[14], v[15]))
    return [(t, tuple(out[t])) for t in sorted(out)]


def _first_of_runs(*cols: np.ndarray) -> np.ndarray:
    """Where a run of equal rows (over ``cols``, sorted) starts."""
    n = cols[0].size
    head = np.ones(n, dtype=bool)
    for col in cols:
        head[1:] &= col[1:] == col[:-1]
    head[1:] = ~head[1:]
    head[:1] = n > 0
    return head


def _sums(step: np.ndarray, rank: np.ndarray, nbytes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """((step, rank) keys, their byte totals as one column), over rows of any order."""
    order = np.lexsort((rank, step))
    step, rank, nbytes = step[order], rank[order], nbytes[order]
    starts = np.flatnonzero(_first_of_runs(step, rank))
    totals = np.add.reduceat(nbytes, starts) if starts.size else nbytes[:0]
    return np.column_stack((step[starts], rank[starts])), totals.reshape(-1, 1)


def _sides(msgs: np.ndarray, nodes: np.ndarray, itemsize: int) -> tuple[np.ndarray, np.ndarray]:
    """((step, rank) keys, :func:`_side`'s six numbers) of the messages' rows (step, rank,
    peer, buffer, offset, length)."""
    msgs = msgs[msgs[:, 5] > 0]
    order = np.lexsort((msgs[:, 2], msgs[:, 1], msgs[:, 0]))
    step, rank, peer = (msgs[order, c] for c in (0, 1, 2))
    nbytes = msgs[order, 5] * itemsize
    inter = nodes[peer] != nodes[rank]
    entry_head = _first_of_runs(step, rank)
    entry = np.cumsum(entry_head) - 1
    link = np.flatnonzero(_first_of_runs(step, rank, peer))   # all messages to one peer
    link_bytes = np.add.reduceat(nbytes, link) if link.size else nbytes[:0]
    values = np.zeros((int(entry_head.sum()), 6), dtype=np.int64)
    for cls, col in ((False, 0), (True, 3)):
        mine = inter == cls
        np.add.at(values[:, col], entry[mine], 1)
        np.add.at(values[:, col + 2], entry[mine], nbytes[mine])
        on = inter[link] == cls
        np.maximum.at(values[:, col + 1], entry[link][on], link_bytes[on])
    heads = np.flatnonzero(entry_head)
    return np.column_stack((step[heads], rank[heads])), values


def _aliasing(problem: Problem, in_place: bool, rank: np.ndarray
              ) -> Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``alias(buf, off)``: the (buffer code, offset) columns that ranges of rows of ``rank``
    really address: in place, the hosted buffer lives inside its host
    (:func:`~...algorithms.schedule.resolve_slice`, on :mod:`.rows` codes)."""
    if not in_place or not rank.size:
        return lambda buf, off: (buf, off)
    hosts = [inplace_input_offset(problem, r) for r in range(problem.nranks)]
    host = np.array([ROW_CODES[h] for h, _ in hosts], dtype=np.int64)[rank]
    shift = np.array([o for _, o in hosts], dtype=np.int64)[rank]
    aliased = (ROW_CODES[Buf.INPUT], ROW_CODES[Buf.OUTPUT])

    def alias(buf: np.ndarray, off: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        hosted = (buf != host) & np.isin(buf, aliased)
        return np.where(hosted, host, buf), off + np.where(hosted, shift, 0)

    return alias
