"""Schedule-walking cost: charge every message and local operation of a real schedule.

For every step index, every rank's sends, receives, reductions and copies (after lowering, so
in-place runs drop the copies they do not make) become a :class:`~.cost.Sig`; NIC sharing
counts, per node and direction, the ranks with inter-node messages in that step. A step costs
its slowest rank; the collective the sum of its steps. This is the reference the closed forms
(:mod:`.costs`) must equal exactly; it costs O(ranks × messages), so predictions use the
closed forms and this is used to check them (and for user-registered algorithms without one).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Mapping, Sequence

from ...algorithms import Copy, Layout, Problem
from ...algorithms.registry import get_algorithm
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


def step_signatures(algorithm: str, problem: Problem, itemsize: int, in_place: bool = False,
                    options: Mapping[str, Any] | None = None) -> list[tuple[int, tuple[Sig, ...]]]:
    """(step index, distinct rank signatures) of every step of the schedule."""
    algo = get_algorithm(algorithm)
    p = problem.nranks
    node = node_index(problem.layout, p)
    per_step: dict[int, list[tuple[int, tuple, tuple, int, int]]] = defaultdict(list)
    # every rank's program at once: an algorithm written as rows emits them in one call
    for rank, program in enumerate(algo.schedule(problem, options).programs):
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

