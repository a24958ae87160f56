"""Alltoall algorithms: rank ``r`` sends block ``j`` of its input to rank ``j``, which keeps it
as block ``r`` of its output (``count`` elements per block, ``p`` blocks each way).

One schedule serves both placements (:mod:`.schedule`): in place the input *is* the output
(MPI_IN_PLACE), so a block must not land on a slot whose own data has not left yet, and a
receive must never overwrite what a send of the same step reads. Every algorithm here therefore
receives into scratch and copies into the output once the slot is free, which out of place
costs one extra pass over the received data (the δ term of the model). Each algorithm is
correct for any ``p`` and any ``count`` (zero included).

* ``pairwise``: ``p-1`` steps, one block each way per step. For a power of two the partner in
  step ``s`` is ``r xor s`` (each pair swaps in the same step, as MPICH); otherwise rank ``r``
  sends to ``r+s`` and receives from ``r-s``. A block received in step ``s`` lands on the slot
  sent in step ``p-s`` (``s`` for xor), so it waits in scratch until then.
* ``direct``: every send and receive in one step (``p-1`` messages each way).
* ``bruck`` (Bruck, Ho, Kipnis, Upfal & Weathersby 1997, the index algorithm): ``⌈lg p⌉``
  steps. Rotated index ``i`` of rank ``r`` is the block for rank ``r+i``; the initial rotation
  is virtual (index ``i`` is addressed where it lies, input block ``r+i``). In step ``k`` the
  blocks whose index has bit ``k`` set are packed into one contiguous scratch message for
  ``r+2^k`` and the same indices arrive from ``r-2^k``; after the last step index ``i`` holds
  rank ``r-i``'s block for ``r``, and the final copy (the inverse rotation and reversal) puts
  it at output block ``r-i``. Received blocks stay where they arrived until packed again (one
  receive area per step): fewer copies than unpacking into a rotated buffer, for ``~lg p / 2``
  buffers of scratch.
* ``hierarchical`` (the rail / PXN idea): on ``P`` nodes of ``g`` ranks, rank ``(k, j)`` (node
  ``k``, local index ``j``) first exchanges inside its node: it gives local index ``j'`` the
  ``P`` blocks for the ranks with local index ``j'`` on every node (the transpose, packed per
  peer), then sends along its rail one node-sized message per other node: the ``g`` blocks of
  its node's ranks for rank ``(k', j)``. That message lands straight in the output when node
  ``k'`` is a run of consecutive ranks (blocked layouts); otherwise it is unpacked. PXN's
  final intra-node scatter is not needed: the first phase already routes every block to the
  rank on its destination's rail. Inter-node messages per rank: ``P-1`` instead of ``p-g``,
  for twice the bytes moved. Needs the same number of ranks on every node.

``pairwise``, ``direct`` and ``bruck`` move O(p^2) blocks in all (Bruck in ``lg p`` messages,
but with O(p) packing copies per rank) and are written as rows over every rank at once
(:mod:`.rows`: ``*_rows``, from which the per-rank generators are derived), so that the
verifier proves them without a Python object per message.

Each generator has a cost function (``*_cost``) beside it: the same schedule's steps as
:class:`~.traffic.Traffic` (messages and local work per rank), which the cost model prices
and tests/analysis checks against the schedule walk.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ._build import log2_ceil
from .rows import IN, OUT, SCR, Rows, RowsBuilder, per_rank
from .schedule import Problem
from .traffic import Shift, Traffic, Xor


def _is_pof2(p: int) -> bool:
    return p & (p - 1) == 0


# -- pairwise ----------------------------------------------------------------------------------

def _pairwise_landing(p: int, s: int) -> int:
    """The step whose locals copy the block received in step ``s`` into the output: the step
    that sends the slot it lands on (in place the slot's own data must have left)."""
    return s if _is_pof2(p) else max(s, p - s)


def _pairwise_slots(p: int) -> dict[int, int]:
    """Scratch slot (in blocks) of the block received in step ``s``: blocks that wait get a
    slot each; blocks copied out in the step they arrive share the last one."""
    waiting = {s: n for n, s in enumerate(s for s in range(1, p) if _pairwise_landing(p, s) > s)}
    return {s: waiting.get(s, len(waiting)) for s in range(1, p)}


def pairwise_partners(p: int, ranks: np.ndarray) -> tuple[np.ndarray, ...]:
    """(s, rank, to, frm) for every rank of ``ranks`` (rows) and every step ``s = 1 .. p-1``
    (columns): the partner is ``rank xor s`` for a power of two, else rank sends to ``rank + s``
    and receives from ``rank - s``."""
    s = np.arange(1, p)[None, :]
    rank = ranks[:, None]
    if _is_pof2(p):
        return s, rank, rank ^ s, rank ^ s
    return s, rank, (rank + s) % p, (rank - s) % p


def pairwise_rows(problem: Problem, ranks: np.ndarray, options: Mapping[str, Any]) -> Rows:
    """Pairwise exchange alltoall: step ``s`` (index ``s-1``) sends one block, receives one."""
    p, c = problem.nranks, problem.count
    b = RowsBuilder(p)
    b.copy(0, ranks, (IN, ranks * c, c), (OUT, ranks * c, c), seq=0)   # my own block
    if p > 1:
        s, rank, to, frm = pairwise_partners(p, ranks)
        slots = _pairwise_slots(p)
        held = np.array([slots[k] for k in range(1, p)], dtype=np.int64)[None, :] * c
        landing = np.array([_pairwise_landing(p, k) for k in range(1, p)], dtype=np.int64)
        b.send(s - 1, rank, to, (IN, to * c, c))
        b.recv(s - 1, rank, frm, (SCR, held, c))
        b.copy(landing[None, :] - 1, rank, (SCR, held, c), (OUT, frm * c, c), seq=s)
    return b.finish()


pairwise = per_rank(pairwise_rows)


def _shift(p: int, s: int) -> tuple[Shift | Xor, Shift | Xor]:
    """(send peers, receive peers) of every rank in pairwise step ``s``."""
    if _is_pof2(p):
        return Xor(s), Xor(s)
    return Shift(s), Shift(-s)


def pairwise_cost(problem: Problem, options: Mapping[str, Any], in_place: bool) -> list[Traffic]:
    """The steps of :func:`pairwise`: step ``s`` moves one block each way and copies the blocks
    that land in it (plus, out of place, the own block in the first step)."""
    p, c = problem.nranks, problem.count
    own = 0 if in_place else c
    if p == 1:
        return [Traffic(copy=own)]
    landing = [0] * p
    for s in range(1, p):
        landing[_pairwise_landing(p, s)] += 1
    steps = []
    for s in range(1, p):
        to, frm = _shift(p, s)
        steps.append(Traffic(sends=((to, c),), recvs=((frm, c),),
                             copy=landing[s] * c + (own if s == 1 else 0)))
    return steps


# -- direct ------------------------------------------------------------------------------------

def direct_rows(problem: Problem, ranks: np.ndarray, options: Mapping[str, Any]) -> Rows:
    """Everything in one step: ``p-1`` sends and receives, then the copies out of scratch."""
    p, c = problem.nranks, problem.count
    b = RowsBuilder(p)
    b.copy(0, ranks, (IN, ranks * c, c), (OUT, ranks * c, c), seq=-1)  # my own block first
    rank = ranks[:, None]
    j = np.arange(p)[None, :]
    rank, j = np.broadcast_arrays(rank, j)
    others = rank != j
    rank, j = rank[others], j[others]
    held = np.where(j < rank, j, j - 1) * c
    b.send(0, rank, j, (IN, j * c, c), seq=j)
    b.recv(0, rank, j, (SCR, held, c), seq=j)
    b.copy(0, rank, (SCR, held, c), (OUT, j * c, c), seq=j)
    return b.finish()


direct = per_rank(direct_rows)


def direct_cost(problem: Problem, options: Mapping[str, Any], in_place: bool) -> list[Traffic]:
    """One step: ``p-1`` messages of one block each way, ``p-1`` blocks copied (+ own)."""
    p, c = problem.nranks, problem.count
    everyone = np.zeros(p, dtype=np.int64)  # one group: the whole communicator
    return [Traffic(exchange=(everyone, c), copy=(p - 1) * c + (0 if in_place else c))]


# -- bruck -------------------------------------------------------------------------------------

def _bruck_indices(p: int) -> list[list[int]]:
    """Per step ``k``: the rotated indices with bit ``k`` set (what moves in step ``k``)."""
    return [[i for i in range(1, p) if i >> k & 1] for k in range(log2_ceil(p))]


def bruck_rows(problem: Problem, ranks: np.ndarray, options: Mapping[str, Any]) -> Rows:
    """Bruck's index algorithm: step ``k`` (index ``k+1``) sends the packed bit-``k`` blocks to
    ``rank + 2^k``; packing for step ``k`` happens in the locals of index ``k`` (index 0 is a
    local-only step when the first message needs packing)."""
    p, c = problem.nranks, problem.count
    b = RowsBuilder(p)
    b.copy(0, ranks, (IN, ranks * c, c), (OUT, ranks * c, c), seq=0)   # my own block
    moves = _bruck_indices(p)
    pack_len = max((len(m) for m in moves if len(m) > 1), default=0) * c
    rank = ranks[:, None]
    index = np.arange(p)[None, :]
    # where rotated index i of each rank lies now: input block rank + i, until it moves
    where_buf = np.full((len(ranks), p), IN, dtype=np.int64)
    where_off = (rank + index) % p * c
    area = pack_len  # receive areas follow the pack buffer
    for k, indices in enumerate(moves):
        moving = np.asarray(indices, dtype=np.int64)
        n = len(indices) * c
        if len(indices) == 1:
            message = (where_buf[:, moving[0]], where_off[:, moving[0]], c)
        else:
            b.copy_runs(k, ranks, (where_buf[:, moving], where_off[:, moving], c),
                        (SCR, np.arange(len(indices))[None, :] * c, c), seq=1)
            message = (SCR, 0, n)
        d = 1 << k
        b.send(k + 1, ranks, (ranks + d) % p, message)
        b.recv(k + 1, ranks, (ranks - d) % p, (SCR, area, n))
        where_buf[:, moving] = SCR
        where_off[:, moving] = area + np.arange(len(indices)) * c
        area += n
    # inverse rotation and reversal: index i came from rank - i
    b.copy_runs(len(moves), ranks, (where_buf[:, 1:], where_off[:, 1:], c),
                (OUT, (rank - index[:, 1:]) % p * c, c), seq=1)
    return b.finish()


bruck = per_rank(bruck_rows)


def bruck_cost(problem: Problem, options: Mapping[str, Any], in_place: bool) -> list[Traffic]:
    """The steps of :func:`bruck`: a local pack step when the first message packs, then one
    message each way per step, packing for the next step, and the final copy of ``p-1``
    blocks in the last step."""
    p, c = problem.nranks, problem.count
    own = 0 if in_place else c
    moves = _bruck_indices(p)
    packs = [len(m) * c if len(m) > 1 else 0 for m in moves]
    steps = [Traffic(copy=own + (packs[0] if packs else 0))]
    for k, indices in enumerate(moves):
        d = 1 << k
        last = k == len(moves) - 1
        copy = (p - 1) * c if last else packs[k + 1]
        n = len(indices) * c
        steps.append(Traffic(sends=((Shift(d), n),), recvs=((Shift(-d), n),), copy=copy))
    return steps


# -- hierarchical ------------------------------------------------------------------------------

def precondition(problem: Problem, options: Mapping[str, Any]) -> str | None:
    """Why hierarchical alltoall cannot run this problem, or None."""
    layout = problem.nodes
    if not layout.uniform:
        sizes = ", ".join(str(len(node)) for node in layout.nodes)
        return (f"hierarchical alltoall needs the same number of ranks on every node; the layout "
                f"has {len(layout.nodes)} nodes holding {sizes} ranks")
    return None


def node_grid(problem: Problem) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``grid[k, j]``: the rank at local index ``j`` of node ``k`` (nodes of equal size), and
    every rank's node and local index."""
    grid = np.array(problem.nodes.nodes, dtype=np.int64)
    P, g = grid.shape
    node_of = np.empty(problem.nranks, dtype=np.int64)
    local_of = np.empty(problem.nranks, dtype=np.int64)
    node_of[grid] = np.arange(P)[:, None]
    local_of[grid] = np.arange(g)[None, :]
    return grid, node_of, local_of


def consecutive_nodes(grid: np.ndarray) -> np.ndarray:
    """Per node: whether its ranks are a run of consecutive ranks (its blocks are one output
    range)."""
    return (grid == grid[:, :1] + np.arange(grid.shape[1])[None, :]).all(axis=1)


def hierarchical_rows(problem: Problem, ranks: np.ndarray, options: Mapping[str, Any]) -> Rows:
    """Intra-node transpose (index 1), then one node-sized message per other node along the
    rail (index 2); index 0 packs.

    Rank ``(k, j)`` (node ``k``, local index ``j``) talks to its node-mates ``(k, j+d)`` and to
    its rail ``(k+e, j)``, ``d`` and ``e`` counted from it (spreads the traffic of one step).
    """
    c = problem.count
    grid, node_of, local_of = node_grid(problem)
    P, g = grid.shape
    b = RowsBuilder(problem.nranks)
    b.copy(0, ranks, (IN, ranks * c, c), (OUT, ranks * c, c), seq=0)     # my own block
    # scratch: S1 (per node-mate, P blocks), A (received from each node-mate, P blocks),
    # S2 (per other node, g blocks), B (per other node, g blocks, unless it lands in place);
    # a node-mate's (other node's) slot is its place among the others in rank order.
    # Arrays are (rank, d) for the d-th node-mate and (rank, e) for the e-th other node.
    a = (g - 1) * P * c
    s2 = 2 * (g - 1) * P * c
    bb = s2 + (P - 1) * g * c
    rank = ranks[:, None]
    k, j = node_of[rank], local_of[rank]
    d = np.arange(1, g)[None, :]
    jj = (j + d) % g
    slot = np.where(jj < j, jj, jj - 1)
    mate = grid[k, jj]
    if P > 1:   # index 0: pack what goes to each node-mate, node-major
        pairs = (len(ranks) * (g - 1), P)
        b.copy_runs(0, np.repeat(ranks, g - 1), (IN, grid.T[jj].reshape(pairs) * c, c),
                    (SCR, (slot.reshape(-1, 1) * P + np.arange(P)) * c, c),
                    seq=(d * (P + 1)).repeat(len(ranks), axis=0).reshape(-1))
    # index 1: the transpose; the block for me goes straight to my output
    src = (SCR, slot * P * c, P * c) if P > 1 else (IN, mate * c, c)
    b.send(1, rank, mate, src, seq=d)
    b.recv(1, rank, mate, (SCR, a + slot * P * c, P * c), seq=d)
    b.copy(1, rank, (SCR, a + (slot * P + k) * c, c), (OUT, mate * c, c), seq=d)
    if P == 1:
        return b.finish()
    e = np.arange(1, P)[None, :]
    kk = (k + e) % P
    slot = np.where(kk < k, kk, kk - 1)
    peer = grid[kk, j]
    # index 0: my own block for each rail peer
    b.copy(0, rank, (IN, peer * c, c), (SCR, s2 + (slot * g + j) * c, c), seq=g * (P + 1) + e)
    # index 1: what my node-mates gave me for node kk, forwarded along my rail, (rank, e, mate)
    mates = np.broadcast_to(np.arange(g), (len(ranks), g))
    mates = mates[mates != j].reshape(len(ranks), 1, g - 1)        # in rank order
    mate_slot = np.where(mates < j[:, :, None], mates, mates - 1)
    pairs = (len(ranks) * (P - 1), g - 1)
    b.copy_runs(1, np.repeat(ranks, P - 1),
                (SCR, (a + (mate_slot * P + kk[:, :, None]) * c).reshape(pairs), c),
                (SCR, (s2 + (slot[:, :, None] * g + mates) * c).reshape(pairs), c),
                seq=np.broadcast_to(g + e * g, kk.shape).reshape(-1))
    # index 2: one node-sized message per other node; it lands in place when that node's ranks
    # are consecutive, else in scratch and is copied out block by block
    b.send(2, rank, peer, (SCR, s2 + slot * g * c, g * c), seq=e)
    lands = consecutive_nodes(grid)[kk]
    rank, e = np.broadcast_arrays(rank, e)
    b.recv(2, rank[lands], peer[lands], (OUT, grid[kk[lands], 0] * c, g * c), seq=e[lands])
    held = ~lands
    b.recv(2, rank[held], peer[held], (SCR, bb + slot[held] * g * c, g * c), seq=e[held])
    local = np.arange(g)[None, :]
    b.copy(2, rank[held][:, None], (SCR, bb + (slot[held][:, None] * g + local) * c, c),
           (OUT, grid[kk[held]] * c, c), seq=e[held][:, None] * g + local)
    return b.finish()


hierarchical = per_rank(hierarchical_rows)


def hierarchical_cost(problem: Problem, options: Mapping[str, Any],
                      in_place: bool) -> list[Traffic]:
    """The steps of :func:`hierarchical`: the packing step, the intra-node transpose (``g-1``
    messages of ``P`` blocks, ``(g-1)P`` blocks copied), the rail step (``P-1`` messages of
    ``g`` blocks, copied out of scratch only for nodes that are not runs of consecutive ranks)."""
    c = problem.count
    grid, node_of, local_of = node_grid(problem)
    P, g = grid.shape
    own = 0 if in_place else c
    pack = (g - 1) * P * c if P > 1 else 0
    steps = [Traffic(copy=own + pack + (P - 1) * c)]
    # the transpose is an all-to-all inside each node, the rail step one inside each local index
    steps.append(Traffic(exchange=(node_of, P * c), copy=(g - 1) * P * c))
    scattered = (~consecutive_nodes(grid)).astype(np.int64)
    unpack = (int(scattered.sum()) - scattered[node_of]) * g * c
    steps.append(Traffic(exchange=(local_of, g * c), copy=unpack))
    return steps
