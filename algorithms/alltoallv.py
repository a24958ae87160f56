"""Alltoallv algorithms: rank ``r`` sends ``counts[r][j]`` elements (from ``sdispls[r][j]`` of its
input) to rank ``j``, which keeps them at ``rdispls[j][r]`` of its output. The count matrix and
displacements come from the problem (:mod:`.vcounts`: a skewed matrix, as MoE dispatch makes).

One schedule serves both placements. In place (:mod:`.collectives`) the larger of a rank's two
buffers hosts the other at its start, so the output block from ``q`` generally overlaps input
blocks for *other* ranks, not the block that left for ``q``: a block received into scratch is
copied into the output in the first step after it arrived in which every input block it
overlaps has been sent (its *landing* step). The own block goes straight to the output when it
has the same offset in both (a no-op in place), else through scratch too. Zero-length blocks
send no message. Each algorithm is correct for any ``p`` and any matrix.

* ``pairwise``: ``p-1`` steps as for alltoall (partner ``r xor s`` for a power of two, else send
  to ``r+s`` and receive from ``r-s``); step ``s`` moves one block each way.
* ``direct``: every send and receive in one step.
* ``hierarchical`` (rails, as alltoall's): on ``P`` nodes of ``g`` ranks, rank ``(k, j)`` first
  packs, for each node-mate ``j'``, its blocks for the ranks ``(k', j')`` of every node and
  exchanges them inside the node; then it sends each other node ``k'`` one message along its
  rail, to ``(k', j)``: the blocks of its node's ranks for ``(k', j)``. That message lands
  straight in the output when node ``k`` holds consecutive ranks. Everything the input holds
  is packed in the first (local) step, so the output is free from then on.

Each generator has a cost function (``*_cost``) beside it, its steps as
:class:`~.traffic.Traffic` with per-rank message sizes, up to :data:`COST_RANKS` ranks.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from . import vcounts
from ._build import Builder, make_slice
from .alltoall import _consecutive, _is_pof2, _pairwise_peers, _shift
from .alltoall import precondition as _uniform_nodes
from .schedule import Buf, Problem, Program
from .traffic import Message, Shift, Traffic

_IN, _OUT, _SCR = Buf.INPUT, Buf.OUTPUT, Buf.SCRATCH

def precondition(problem: Problem, options: Mapping[str, Any]) -> str | None:
    """Why hierarchical alltoallv cannot run ``problem`` (nodes of different sizes), or None."""
    reason = _uniform_nodes(problem, options)
    return reason.replace("alltoall ", "alltoallv ", 1) if reason else None


COST_RANKS = 1024
"""The cost functions list every rank's message to every peer (``p^2`` numbers): above this
many ranks they return None (no formula at that scale) rather than hold gigabytes."""


def _own_direct(c: vcounts.Counts, rank: int) -> bool:
    """Whether the own block sits at the same offset in input and output (copied directly)."""
    return bool(c.sdispls[rank, rank] == c.rdispls[rank, rank])


def _landing(c: vcounts.Counts, rank: int, arrive: np.ndarray, sent: np.ndarray) -> np.ndarray:
    """The step in which each block received by ``rank`` (``arrive[q]``, -1: none) can be copied
    into the output: at or after its arrival, and after every input block its output range
    overlaps has left (``sent[j]``, -1: never sent or empty)."""
    send_len = c.matrix[rank]
    s_lo = c.sdispls[rank]
    s_hi = s_lo + send_len
    recv_len = c.matrix[:, rank]
    r_lo = c.rdispls[rank]
    r_hi = r_lo + recv_len
    # input blocks are laid out in rank order: those overlapping [r_lo, r_hi) are a run
    first = np.searchsorted(s_hi, r_lo, "right")
    last = np.searchsorted(s_lo, r_hi, "left")
    land = arrive.copy()
    for q in np.flatnonzero((arrive >= 0) & (recv_len > 0)).tolist():
        a, b = int(first[q]), int(last[q])
        if a < b:
            lengths = send_len[a:b]
            blocking = sent[a:b][lengths > 0]
            if blocking.size:
                land[q] = max(int(land[q]), int(blocking.max()))
    return land


def _finish(b: Builder, c: vcounts.Counts, rank: int, arrive: np.ndarray, sent: np.ndarray,
            scratch: int) -> None:
    """The landing copies: the block from ``q`` waits at ``scratch + rdispls[rank][q]``."""
    land = _landing(c, rank, arrive, sent)
    rd, n = c.rdispls[rank].tolist(), c.matrix[:, rank].tolist()
    for q in np.argsort(land, kind="stable").tolist():
        if land[q] >= 0 and n[q]:
            b.copy(int(land[q]), make_slice(_SCR, scratch + rd[q], n[q]), make_slice(_OUT, rd[q], n[q]))


def _own(b: Builder, c: vcounts.Counts, rank: int, arrive: np.ndarray, sent: np.ndarray,
         scratch: int) -> None:
    """The own block: copied straight across in step 0, or into its scratch slot in step 0
    (it then lands like a received block)."""
    n = int(c.matrix[rank, rank])
    src = make_slice(_IN, int(c.sdispls[rank, rank]), n)
    if _own_direct(c, rank):
        b.copy(0, src, make_slice(_OUT, int(c.rdispls[rank, rank]), n))
    elif n:
        b.copy(0, src, make_slice(_SCR, scratch + int(c.rdispls[rank, rank]), n))
        arrive[rank] = sent[rank] = 0


# -- pairwise ----------------------------------------------------------------------------------

def _pairwise_times(c: vcounts.Counts, p: int, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """(arrive, sent): the step index (s-1) in which each block arrives from / leaves for each
    rank; -1 for empty blocks and the own block."""
    arrive = np.full(p, -1, dtype=np.int64)
    sent = np.full(p, -1, dtype=np.int64)
    for s in range(1, p):
        to, frm = _pairwise_peers(p, rank, s)
        if c.matrix[rank, to]:
            sent[to] = s - 1
        if c.matrix[frm, rank]:
            arrive[frm] = s - 1
    return arrive, sent


def pairwise(problem: Problem, rank: int, options: Mapping[str, Any]) -> Program:
    """Pairwise exchange alltoallv: step ``s`` (index ``s-1``) sends one block, receives one."""
    p = problem.nranks
    c = vcounts.of(problem)
    m, sd, rd = c.matrix, c.sdispls, c.rdispls
    b = Builder(rank)
    arrive, sent = _pairwise_times(c, p, rank)
    _own(b, c, rank, arrive, sent, 0)
    for s in range(1, p):
        to, frm = _pairwise_peers(p, rank, s)
        b.send(s - 1, to, make_slice(_IN, int(sd[rank, to]), int(m[rank, to])))
        b.recv(s - 1, frm, make_slice(_SCR, int(rd[rank, frm]), int(m[frm, rank])))
    _finish(b, c, rank, arrive, sent, 0)
    return b.build()


def _copies(c: vcounts.Counts, p: int, times: Any, steps: int, in_place: bool) -> np.ndarray:
    """``copy[t, r]``: elements rank ``r`` copies in step ``t`` (landing copies and the own
    block), for a schedule whose blocks arrive and leave at ``times(rank)``."""
    copy = np.zeros((max(steps, 1), p), dtype=np.int64)
    for r in range(p):
        arrive, sent = times(r)
        n = int(c.matrix[r, r])
        if _own_direct(c, r):
            copy[0, r] += 0 if in_place else n
        elif n:
            copy[0, r] += n
            arrive[r] = sent[r] = 0
        land = _landing(c, r, arrive, sent)
        recv = c.matrix[:, r]
        np.add.at(copy[:, r], land[(land >= 0) & (recv > 0)], recv[(land >= 0) & (recv > 0)])
    return copy


def pairwise_cost(problem: Problem, options: Mapping[str, Any],
                  in_place: bool) -> list[Traffic] | None:
    """The steps of :func:`pairwise`: step ``s`` sends each rank's block for its partner and
    receives the partner's, then copies what lands in it."""
    p = problem.nranks
    if p > COST_RANKS:
        return None
    c = vcounts.of(problem)
    copy = _copies(c, p, lambda r: _pairwise_times(c, p, r), p - 1, in_place)
    if p == 1:
        return [Traffic(copy=copy[0])]
    ranks = np.arange(p)
    steps = []
    for s in range(1, p):
        to, frm = _shift(p, s)
        dst = ranks ^ s if _is_pof2(p) else (ranks + s) % p
        src = ranks ^ s if _is_pof2(p) else (ranks - s) % p
        steps.append(Traffic(sends=((to, c.matrix[ranks, dst]),),
                             recvs=((frm, c.matrix[src, ranks]),), copy=copy[s - 1]))
    return steps


# -- direct ------------------------------------------------------------------------------------

def _direct_times(c: vcounts.Counts, p: int, rank: int) -> tuple[np.ndarray, np.ndarray]:
    arrive = np.where(c.matrix[:, rank] > 0, 0, -1)
    sent = np.where(c.matrix[rank] > 0, 0, -1)
    arrive[rank] = sent[rank] = -1
    return arrive, sent


def direct(problem: Problem, rank: int, options: Mapping[str, Any]) -> Program:
    """Everything in one step: up to ``p-1`` sends and receives, then the copies out of scratch."""
    p = problem.nranks
    c = vcounts.of(problem)
    m, sd, rd = c.matrix, c.sdispls, c.rdispls
    b = Builder(rank)
    arrive, sent = _direct_times(c, p, rank)
    _own(b, c, rank, arrive, sent, 0)
    for k in range(1, p):  # start after the own rank: spreads the traffic of the step
        j = (rank + k) % p
        b.send(0, j, make_slice(_IN, int(sd[rank, j]), int(m[rank, j])))
    for k in range(1, p):
        q = (rank - k) % p
        b.recv(0, q, make_slice(_SCR, int(rd[rank, q]), int(m[q, rank])))
    _finish(b, c, rank, arrive, sent, 0)
    return b.build()


def direct_cost(problem: Problem, options: Mapping[str, Any],
                in_place: bool) -> list[Traffic] | None:
    """One step: rank ``r``'s ``p-1`` messages of ``counts[r][r+k]`` elements, its receives of
    ``counts[r-k][r]``, and every received (and a moved own) block copied."""
    p = problem.nranks
    if p > COST_RANKS:
        return None
    c = vcounts.of(problem)
    copy = _copies(c, p, lambda r: _direct_times(c, p, r), 1, in_place)
    ranks = np.arange(p)
    sends: tuple[Message, ...] = tuple((Shift(k), c.matrix[ranks, (ranks + k) % p].tolist())
                                       for k in range(1, p))
    recvs: tuple[Message, ...] = tuple((Shift(-k), c.matrix[(ranks - k) % p, ranks].tolist())
                                       for k in range(1, p))
    return [Traffic(sends=sends, recvs=recvs, copy=copy[0])]


# -- hierarchical ------------------------------------------------------------------------------

class _Rails:
    """The node grid and, for rank ``(k, j)``, where each packed piece lives in scratch."""

    def __init__(self, problem: Problem, c: vcounts.Counts, rank: int) -> None:
        nodes = problem.nodes.nodes
        self.nodes = nodes
        self.P, self.g = P, g = len(nodes), len(nodes[0])
        self.k = k = next(n for n, members in enumerate(nodes) if rank in members)
        self.j = j = nodes[k].index(rank)
        m = c.matrix
        grid = np.array(nodes, dtype=np.int64)          # grid[kk, jj] = rank
        self.grid = grid
        # out1[jj, kk]: my block for (kk, jj); in1[jj, kk]: (k, jj)'s block for (kk, j)
        self.out1 = m[rank][grid].T
        self.in1 = m[grid[k]][:, grid[:, j]]
        # out2[kk, jj]: (k, jj)'s block for (kk, j); in2[kk, jj]: (kk, jj)'s block for me
        self.out2 = m[grid[k]][:, grid[:, j]].T
        self.in2 = m[grid][:, :, rank]
        self.packs = P > 1  # one node: messages go straight from the input
        own = int(m[rank, rank])
        sizes = [own, int(self.out1.sum()) if self.packs else 0, int(self.in1.sum()),
                 int(self.out2.sum())]
        self.s0, self.s1, self.a, self.s2, self.bb = np.cumsum([0] + sizes).tolist()
        # offsets of each piece inside its area: per peer (row), then per column
        self.o1 = np.cumsum(self.out1.reshape(-1)).reshape(g, P) - self.out1 + self.s1
        self.oa = np.cumsum(self.in1.reshape(-1)).reshape(g, P) - self.in1 + self.a
        self.o2 = np.cumsum(self.out2.reshape(-1)).reshape(P, g) - self.out2 + self.s2
        self.ob = np.cumsum(self.in2.reshape(-1)).reshape(P, g) - self.in2 + self.bb


def hierarchical(problem: Problem, rank: int, options: Mapping[str, Any]) -> Program:
    """Pack (index 0), intra-node transpose (index 1), one message per other node along the
    rail (index 2)."""
    c = vcounts.of(problem)
    v = _Rails(problem, c, rank)
    nodes, P, g, k, j, grid = v.nodes, v.P, v.g, v.k, v.j, v.grid
    sd, rd = c.sdispls[rank], c.rdispls[rank]
    b = Builder(rank)

    def inp(dest: int, n: int) -> Any:
        return make_slice(_IN, int(sd[dest]), n)

    def scr(off: int, n: int) -> Any:
        return make_slice(_SCR, int(off), n)

    def out(src: int, n: int) -> Any:
        return make_slice(_OUT, int(rd[src]), n)

    own = int(c.matrix[rank, rank])
    direct_own = _own_direct(c, rank)
    if direct_own:
        b.copy(0, inp(rank, own), out(rank, own))
    else:
        b.copy(0, inp(rank, own), scr(v.s0, own))
    peers = [(j + d) % g for d in range(1, g)]
    others = [(k + d) % P for d in range(1, P)]
    # index 0: pack what goes to each node-mate (node order), and my own rail blocks
    if v.packs:
        for jj in peers:
            for kk in range(P):
                n = int(v.out1[jj, kk])
                b.copy(0, inp(int(grid[kk, jj]), n), scr(v.o1[jj, kk], n))
    for kk in others:
        n = int(v.out2[kk, j])
        b.copy(0, inp(int(grid[kk, j]), n), scr(v.o2[kk, j], n))
    # index 1: the intra-node transpose
    for jj in peers:
        n = int(v.out1[jj].sum())
        src = scr(v.o1[jj, 0], n) if v.packs else inp(int(grid[k, jj]), n)
        b.send(1, int(grid[k, jj]), src)
    for jj in reversed(peers):
        b.recv(1, int(grid[k, jj]), scr(v.oa[jj, 0], int(v.in1[jj].sum())))
    if not direct_own:
        b.copy(1, scr(v.s0, own), out(rank, own))
    for jj in peers:  # what my node-mates have for me, then what I forward along my rail
        n = int(v.in1[jj, k])
        b.copy(1, scr(v.oa[jj, k], n), out(int(grid[k, jj]), n))
    for kk in others:
        for jj in peers:
            n = int(v.in1[jj, kk])
            b.copy(1, scr(v.oa[jj, kk], n), scr(v.o2[kk, jj], n))
    # index 2: one message per other node along the rail
    for kk in others:
        b.send(2, int(grid[kk, j]), scr(v.o2[kk, 0], int(v.out2[kk].sum())))
    for kk in reversed(others):
        peer, n = int(grid[kk, j]), int(v.in2[kk].sum())
        if _consecutive(nodes[kk]):
            b.recv(2, peer, make_slice(_OUT, int(rd[nodes[kk][0]]), n))
        else:
            b.recv(2, peer, scr(v.ob[kk, 0], n))
            for jj in range(g):
                m = int(v.in2[kk, jj])
                b.copy(2, scr(v.ob[kk, jj], m), out(int(grid[kk, jj]), m))
    return b.build()


def hierarchical_cost(problem: Problem, options: Mapping[str, Any],
                      in_place: bool) -> list[Traffic] | None:
    """The steps of :func:`hierarchical`: packing, the transpose (messages to each node-mate),
    the rail step (one message per other node), with every rank's sizes and copies."""
    p = problem.nranks
    if p > COST_RANKS:
        return None
    c = vcounts.of(problem)
    nodes = problem.nodes.nodes
    P, g = len(nodes), len(nodes[0])
    copies = np.zeros((3, p), dtype=np.int64)
    t1_send = np.full((max(g - 1, 0), 2, p), -1, dtype=np.int64)   # [d, (peer, n), rank]
    t1_recv = np.full((max(g - 1, 0), 2, p), -1, dtype=np.int64)
    t2_send = np.full((max(P - 1, 0), 2, p), -1, dtype=np.int64)
    t2_recv = np.full((max(P - 1, 0), 2, p), -1, dtype=np.int64)
    for r in range(p):
        v = _Rails(problem, c, r)
        k, j, grid = v.k, v.j, v.grid
        own = int(c.matrix[r, r])
        direct_own = _own_direct(c, r)
        pack1 = sum(int(v.out1[(j + d) % g].sum()) for d in range(1, g)) if v.packs else 0
        pack2 = sum(int(v.out2[(k + d) % P, j]) for d in range(1, P))
        copies[0, r] = pack1 + pack2 + (own if not direct_own else (0 if in_place else own))
        mates = [(j + d) % g for d in range(1, g)]
        copies[1, r] = (0 if direct_own else own) + sum(int(v.in1[jj].sum()) for jj in mates)
        for d in range(1, g):
            jj = (j + d) % g
            t1_send[d - 1, :, r] = (grid[k, jj], v.out1[jj].sum())
            t1_recv[d - 1, :, r] = (grid[k, (j - d) % g], v.in1[(j - d) % g].sum())
        for d in range(1, P):
            kk = (k + d) % P
            t2_send[d - 1, :, r] = (grid[kk, j], v.out2[kk].sum())
            back = (k - d) % P
            t2_recv[d - 1, :, r] = (grid[back, j], v.in2[back].sum())
            if not _consecutive(nodes[back]):
                copies[2, r] += int(v.in2[back].sum())
    return [Traffic(copy=copies[0]),
            Traffic(sends=tuple((row[0], row[1]) for row in t1_send),
                    recvs=tuple((row[0], row[1]) for row in t1_recv), copy=copies[1]),
            Traffic(sends=tuple((row[0], row[1]) for row in t2_send),
                    recvs=tuple((row[0], row[1]) for row in t2_recv), copy=copies[2])]
