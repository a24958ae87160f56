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

``pairwise`` and ``direct`` are written as rows over every rank at once (:mod:`.rows`:
``*_rows``, the per-rank generators derived from them): O(p^2) blocks, proved without a Python
object per message. The landing step of every block is computed for all ranks together
(:func:`_landing_rows`).

Each generator has a cost function (``*_cost``) beside it, its steps as
:class:`~.traffic.Traffic` with per-rank message sizes, up to :data:`COST_RANKS` ranks.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from . import vcounts
from .alltoall import _is_pof2, _shift, consecutive_nodes, node_grid, pairwise_partners
from .alltoall import precondition as _uniform_nodes
from .rows import IN, OUT, SCR, Rows, RowsBuilder, per_rank
from .schedule import Problem
from .traffic import Message, Shift, Traffic


def precondition(problem: Problem, options: Mapping[str, Any]) -> str | None:
    """Why hierarchical alltoallv cannot run ``problem`` (nodes of different sizes), or None."""
    reason = _uniform_nodes(problem, options)
    return reason.replace("alltoall ", "alltoallv ", 1) if reason else None


COST_RANKS = 1024
"""The cost functions list every rank's message to every peer (``p^2`` numbers): above this
many ranks they return None (no formula at that scale) rather than hold gigabytes."""


def _range_max(x: np.ndarray, first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """``max(x[r, first[r, q]:last[r, q]])`` for every ``r, q`` (-1 for an empty range), by a
    sparse table over each row: O(p log p) per row instead of a Python loop over ``q``."""
    rows, width = x.shape
    levels = [x]
    span = 1
    while 2 * span <= width:
        prev = levels[-1]
        levels.append(np.maximum(prev[:, :-span], prev[:, span:]))
        span *= 2
    size = last - first
    out = np.full(first.shape, -1, dtype=np.int64)
    ok = size > 0
    k = np.zeros_like(size)
    k[ok] = np.floor(np.log2(size[ok])).astype(np.int64)
    r = np.broadcast_to(np.arange(rows)[:, None], first.shape)
    for level in range(len(levels)):
        sel = ok & (k == level)
        if sel.any():
            table = levels[level]
            out[sel] = np.maximum(table[r[sel], first[sel]], table[r[sel], last[sel] - (1 << level)])
    return out


def _landing_rows(c: vcounts.Counts, ranks: np.ndarray, arrive: np.ndarray,
                  sent: np.ndarray) -> np.ndarray:
    """The step in which each block received by each rank of ``ranks`` can be copied into the
    output (-1: none): at or after its arrival (``arrive[i, q]``, -1: none), and after every
    input block its output range overlaps has left (``sent[i, j]``, -1: never sent or empty)."""
    m = c.matrix
    send_len = m[ranks]
    s_lo = c.sdispls[ranks]
    s_hi = s_lo + send_len
    recv_len = m[:, ranks].T
    r_lo = c.rdispls[ranks]
    r_hi = r_lo + recv_len
    first = np.stack([np.searchsorted(s_hi[i], r_lo[i], "right") for i in range(len(ranks))])
    last = np.stack([np.searchsorted(s_lo[i], r_hi[i], "left") for i in range(len(ranks))])
    blocking = _range_max(np.where(send_len > 0, sent, -1), first, last.clip(max=m.shape[0]))
    waits = (arrive >= 0) & (recv_len > 0)
    return np.where(waits, np.maximum(arrive, blocking), arrive)


def _own_block(c: vcounts.Counts, ranks: np.ndarray, arrive: np.ndarray,
               sent: np.ndarray) -> np.ndarray:
    """Whether each rank's own block goes straight across (same offset in input and output);
    an own block that does not moves through scratch in step 0 and then lands like a received
    one, which this records in ``arrive`` and ``sent`` (one row per rank of ``ranks``)."""
    own_n = c.matrix[ranks, ranks]
    direct = c.sdispls[ranks, ranks] == c.rdispls[ranks, ranks]
    moved = np.flatnonzero(~direct & (own_n > 0))
    arrive[moved, ranks[moved]] = 0
    sent[moved, ranks[moved]] = 0
    return direct


def _emit(ranks: np.ndarray, arrive: np.ndarray, sent: np.ndarray, b: RowsBuilder,
          c: vcounts.Counts) -> None:
    """The own block of each of ``ranks`` (:func:`_own_block`) and the landing copies: the
    block from ``q`` waits at ``rdispls[rank][q]`` of scratch."""
    m, sd, rd = c.matrix, c.sdispls, c.rdispls
    own_n, own_dst = m[ranks, ranks], rd[ranks, ranks]
    direct = _own_block(c, ranks, arrive, sent)
    b.copy(0, ranks, (IN, sd[ranks, ranks], own_n), (np.where(direct, OUT, SCR), own_dst, own_n),
           seq=-1)
    land = _landing_rows(c, ranks, arrive, sent)
    n = m[:, ranks].T
    rank = np.broadcast_to(ranks[:, None], land.shape)
    q = np.broadcast_to(np.arange(m.shape[0])[None, :], land.shape)
    go = (land >= 0) & (n > 0)
    at = rd[ranks][go]
    b.copy(land[go], rank[go], (SCR, at, n[go]), (OUT, at, n[go]), seq=q[go])


# -- pairwise ----------------------------------------------------------------------------------

def _pairwise_times(c: vcounts.Counts, p: int, ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(arrive, sent), one row per rank of ``ranks``: the step index (s-1) in which each block
    arrives from / leaves for each rank; -1 for empty blocks and the own block."""
    arrive = np.full((len(ranks), p), -1, dtype=np.int64)
    sent = np.full((len(ranks), p), -1, dtype=np.int64)
    if p > 1:
        s, rank, to, frm = pairwise_partners(p, ranks)
        row = np.broadcast_to(np.arange(len(ranks))[:, None], to.shape)
        step = np.broadcast_to(s - 1, to.shape)
        out, into = c.matrix[rank, to] > 0, c.matrix[frm, rank] > 0
        sent[row[out], to[out]] = step[out]
        arrive[row[into], frm[into]] = step[into]
    return arrive, sent


def pairwise_rows(problem: Problem, ranks: np.ndarray, options: Mapping[str, Any]) -> Rows:
    """Pairwise exchange alltoallv: step ``s`` (index ``s-1``) sends one block, receives one."""
    p = problem.nranks
    c = vcounts.of(problem)
    m, sd, rd = c.matrix, c.sdispls, c.rdispls
    b = RowsBuilder(p)
    arrive, sent = _pairwise_times(c, p, ranks)
    if p > 1:
        s, rank, to, frm = pairwise_partners(p, ranks)
        b.send(s - 1, rank, to, (IN, sd[rank, to], m[rank, to]))
        b.recv(s - 1, rank, frm, (SCR, rd[rank, frm], m[frm, rank]))
    _emit(ranks, arrive, sent, b, c)
    return b.finish()


pairwise = per_rank(pairwise_rows)


def _copies(c: vcounts.Counts, p: int, times: Any, steps: int, in_place: bool) -> np.ndarray:
    """``copy[t, r]``: elements rank ``r`` copies in step ``t`` (landing copies and the own
    block), for a schedule whose blocks arrive and leave at ``times(ranks)``."""
    ranks = np.arange(p)
    arrive, sent = times(ranks)
    direct = _own_block(c, ranks, arrive, sent)
    own_n = c.matrix[ranks, ranks]
    copy = np.zeros((max(steps, 1), p), dtype=np.int64)
    copy[0] += np.where(direct & in_place, 0, own_n)   # a direct own block in place: no copy
    land = _landing_rows(c, ranks, arrive, sent)
    recv = c.matrix.T                                   # recv[r, q]: from q to r
    go = (land >= 0) & (recv > 0)
    np.add.at(copy, (land[go], np.broadcast_to(ranks[:, None], land.shape)[go]), recv[go])
    return copy


def pairwise_cost(problem: Problem, options: Mapping[str, Any],
                  in_place: bool) -> list[Traffic] | None:
    """The steps of :func:`pairwise`: step ``s`` sends each rank's block for its partner and
    receives the partner's, then copies what lands in it."""
    p = problem.nranks
    if p > COST_RANKS:
        return None
    c = vcounts.of(problem)
    copy = _copies(c, p, lambda ranks: _pairwise_times(c, p, ranks), p - 1, in_place)
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

def _direct_times(c: vcounts.Counts, p: int, ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(arrive, sent) of :func:`_pairwise_times` for the one-step schedule."""
    arrive = np.where(c.matrix[:, ranks].T > 0, 0, -1)
    sent = np.where(c.matrix[ranks] > 0, 0, -1)
    idx = np.arange(len(ranks))
    arrive[idx, ranks] = sent[idx, ranks] = -1
    return arrive, sent


def direct_rows(problem: Problem, ranks: np.ndarray, options: Mapping[str, Any]) -> Rows:
    """Everything in one step: up to ``p-1`` sends and receives, then the copies out of scratch."""
    p = problem.nranks
    c = vcounts.of(problem)
    m, sd, rd = c.matrix, c.sdispls, c.rdispls
    b = RowsBuilder(p)
    arrive, sent = _direct_times(c, p, ranks)
    if p > 1:
        k = np.arange(1, p)[None, :]
        rank = ranks[:, None]
        to, frm = (rank + k) % p, (rank - k) % p   # start after the own rank: spreads the step
        b.send(0, rank, to, (IN, sd[rank, to], m[rank, to]), seq=k)
        b.recv(0, rank, frm, (SCR, rd[rank, frm], m[frm, rank]), seq=k)
    _emit(ranks, arrive, sent, b, c)
    return b.finish()


direct = per_rank(direct_rows)


def direct_cost(problem: Problem, options: Mapping[str, Any],
                in_place: bool) -> list[Traffic] | None:
    """One step: rank ``r``'s ``p-1`` messages of ``counts[r][r+k]`` elements, its receives of
    ``counts[r-k][r]``, and every received (and a moved own) block copied."""
    p = problem.nranks
    if p > COST_RANKS:
        return None
    c = vcounts.of(problem)
    copy = _copies(c, p, lambda ranks: _direct_times(c, p, ranks), 1, in_place)
    ranks = np.arange(p)
    sends: tuple[Message, ...] = tuple((Shift(k), c.matrix[ranks, (ranks + k) % p].tolist())
                                       for k in range(1, p))
    recvs: tuple[Message, ...] = tuple((Shift(-k), c.matrix[(ranks - k) % p, ranks].tolist())
                                       for k in range(1, p))
    return [Traffic(sends=sends, recvs=recvs, copy=copy[0])]


# -- hierarchical ------------------------------------------------------------------------------

class _Rails:
    """The blocks of ranks ``ranks`` (first axis of every array) on the node grid; for rank
    ``(k, j)`` (node ``k``, local index ``j``):

    * ``out1[jj, kk]``: my block for ``(kk, jj)``, sent to node-mate ``(k, jj)`` in the transpose;
    * ``in1[jj, kk]``: node-mate ``(k, jj)``'s block for ``(kk, j)``, received in the transpose;
    * ``out2[kk, jj]``: ``(k, jj)``'s block for ``(kk, j)``, sent along the rail to ``(kk, j)``;
    * ``in2[kk, jj]``: ``(kk, jj)``'s block for me, received from ``(kk, j)``.
    """

    def __init__(self, problem: Problem, c: vcounts.Counts, ranks: np.ndarray) -> None:
        m = c.matrix
        self.grid, node_of, local_of = node_grid(problem)      # grid[k, j] = rank
        grid = self.grid
        self.P, self.g = grid.shape
        self.k, self.j = k, j = node_of[ranks], local_of[ranks]
        self.out1 = m[ranks[:, None, None], grid.T[None, :, :]]
        self.in1 = m[grid[k][:, :, None], grid[:, j].T[:, None, :]]
        self.out2 = self.in1.transpose(0, 2, 1)
        self.in2 = m[grid[None, :, :], ranks[:, None, None]]
        self.packs = self.P > 1   # one node: messages go straight from the input
        self.own = m[ranks, ranks]
        # the own block sits at the same offset in input and output: copied directly
        self.direct = c.sdispls[ranks, ranks] == c.rdispls[ranks, ranks]


def _packed(sizes: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Where each piece starts when every rank's pieces (``sizes[r]``, read in C order) lie
    back to back from ``start[r]``."""
    flat = sizes.reshape(len(sizes), -1)
    return (np.cumsum(flat, axis=1) - flat + start[:, None]).reshape(sizes.shape)


def hierarchical_rows(problem: Problem, ranks: np.ndarray, options: Mapping[str, Any]) -> Rows:
    """Pack (index 0), intra-node transpose (index 1), one message per other node along the
    rail (index 2), with each pair's own count (the layout of :class:`_Rails`)."""
    c = vcounts.of(problem)
    v = _Rails(problem, c, ranks)
    grid, P, g, k, j, packs, own, direct = v.grid, v.P, v.g, v.k, v.j, v.packs, v.own, v.direct
    out1, in1, out2, in2 = v.out1, v.in1, v.out2, v.in2
    me = np.arange(len(ranks))
    sd, rd = c.sdispls[ranks], c.rdispls[ranks]
    # where each piece lives in scratch: own block, S1 (out1), A (in1), S2 (out2), B (in2)
    s1 = own
    a = s1 + (out1.sum(axis=(1, 2)) if packs else 0)
    s2 = a + in1.sum(axis=(1, 2))
    o1, oa = _packed(out1, s1), _packed(in1, a)
    o2, ob = _packed(out2, s2), _packed(in2, s2 + out2.sum(axis=(1, 2)))
    kept = ~direct
    b = RowsBuilder(problem.nranks)
    my_in, my_out = sd[me, ranks], rd[me, ranks]
    b.copy(0, ranks, (IN, my_in, own), (np.where(direct, OUT, SCR), np.where(direct, my_out, 0),
                                        own), seq=0)
    b.copy(1, ranks[kept], (SCR, 0, own[kept]), (OUT, my_out[kept], own[kept]), seq=0)
    # from here arrays are (rank, d) for the d-th node-mate, (rank, e) for the e-th other node
    rank, me, k, j = ranks[:, None], me[:, None], k[:, None], j[:, None]
    d = np.arange(1, g)[None, :]
    jj = (j + d) % g
    mate = grid[k, jj]
    if packs:   # index 0: pack what goes to each node-mate, (rank, d, node)
        node = np.arange(P)[None, None, :]
        n = out1[me[:, :, None], jj[:, :, None], node]
        b.copy(0, rank[:, :, None], (IN, sd[me[:, :, None], grid.T[jj]], n),
               (SCR, o1[me[:, :, None], jj[:, :, None], node], n),
               seq=1 + (d[:, :, None] - 1) * P + node)
        src = (SCR, o1[me, jj, 0], out1[me, jj].sum(axis=-1))
    else:
        src = (IN, sd[me, mate], out1[me, jj].sum(axis=-1))
    # index 1: the transpose (receives posted in the reverse order); mine to my output
    b.send(1, rank, mate, src, seq=d)
    b.recv(1, rank, mate, (SCR, oa[me, jj, 0], in1[me, jj].sum(axis=-1)), seq=g - d)
    n = in1[me, jj, k]
    b.copy(1, rank, (SCR, oa[me, jj, k], n), (OUT, rd[me, mate], n), seq=d)
    if P == 1:
        return b.finish()
    e = np.arange(1, P)[None, :]
    kk = (k + e) % P
    peer = grid[kk, j]
    n = out2[me, kk, j]
    b.copy(0, rank, (IN, sd[me, peer], n), (SCR, o2[me, kk, j], n), seq=1 + (g - 1) * P + e)
    # index 1: forward what my node-mates gave me for each other node, (rank, e, d)
    m3, k3, j3 = me[:, :, None], kk[:, :, None], jj[:, None, :]
    n = in1[m3, j3, k3]
    b.copy(1, rank[:, :, None], (SCR, oa[m3, j3, k3], n), (SCR, o2[m3, k3, j3], n),
           seq=g + (e[:, :, None] - 1) * (g - 1) + (d[:, None, :] - 1))
    # index 2: one message per other node (received in the reverse order), in place when that
    # node's ranks are consecutive, else through scratch and copied out block by block
    b.send(2, rank, peer, (SCR, o2[me, kk, 0], out2[me, kk].sum(axis=-1)), seq=e)
    total = in2[me, kk].sum(axis=-1)
    rank, me, e = np.broadcast_arrays(rank, me, e)
    at = consecutive_nodes(grid)[kk]
    b.recv(2, rank[at], peer[at], (OUT, rd[me[at], grid[kk[at], 0]], total[at]), seq=P - e[at])
    h, hk, back = me[~at], kk[~at], P - e[~at]
    b.recv(2, rank[~at], peer[~at], (SCR, ob[h, hk, 0], total[~at]), seq=back)
    n = in2[h, hk]
    b.copy(2, rank[~at][:, None], (SCR, ob[h, hk], n), (OUT, rd[h[:, None], grid[hk]], n),
           seq=back[:, None] * g + np.arange(g)[None, :])
    return b.finish()


hierarchical = per_rank(hierarchical_rows)


def hierarchical_cost(problem: Problem, options: Mapping[str, Any],
                      in_place: bool) -> list[Traffic] | None:
    """The steps of :func:`hierarchical`: packing, the transpose (messages to each node-mate),
    the rail step (one message per other node), with every rank's sizes and copies."""
    p = problem.nranks
    if p > COST_RANKS:
        return None
    c = vcounts.of(problem)
    r = np.arange(p)
    v = _Rails(problem, c, r)
    grid, P, g, k, j = v.grid, v.P, v.g, v.k, v.j
    sent1, got1 = v.out1.sum(axis=2), v.in1.sum(axis=2)          # per node-mate
    sent2, got2 = v.out2.sum(axis=2), v.in2.sum(axis=2)          # per node
    pack1 = sent1.sum(axis=1) - sent1[r, j] if v.packs else 0
    rail = v.out2[r[:, None], np.arange(P)[None, :], j[:, None]]  # my blocks for my rail peers
    pack2 = rail.sum(axis=1) - rail[r, k]
    own = v.own
    copies = np.zeros((3, p), dtype=np.int64)
    copies[0] = pack1 + pack2 + np.where(v.direct, 0 if in_place else own, own)
    copies[1] = np.where(v.direct, 0, own) + got1.sum(axis=1) - got1[r, j]
    # [d, (peer, n), rank]: the d-th node-mate (transpose) and the d-th other node (rail)
    d = np.arange(1, g)[:, None]
    ahead, behind = (j + d) % g, (j - d) % g
    t1_send = np.stack((grid[k, ahead], sent1[r, ahead]), axis=1)
    t1_recv = np.stack((grid[k, behind], got1[r, behind]), axis=1)
    e = np.arange(1, P)[:, None]
    ahead, behind = (k + e) % P, (k - e) % P
    t2_send = np.stack((grid[ahead, j], sent2[r, ahead]), axis=1)
    t2_recv = np.stack((grid[behind, j], got2[r, behind]), axis=1)
    copies[2] = (got2[r, behind] * ~consecutive_nodes(grid)[behind]).sum(axis=0)
    return [Traffic(copy=copies[0]),
            Traffic(sends=tuple((row[0], row[1]) for row in t1_send),
                    recvs=tuple((row[0], row[1]) for row in t1_recv), copy=copies[1]),
            Traffic(sends=tuple((row[0], row[1]) for row in t2_send),
                    recvs=tuple((row[0], row[1]) for row in t2_recv), copy=copies[2])]
