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

from typing import Any, Mapping, Sequence

import numpy as np

from ._build import Builder, Region, log2_ceil, make_slice
from .bruck import _copy_runs
from .rows import IN, OUT, SCR, Rows, RowsBuilder, per_rank
from .schedule import Buf, Problem, Program, Slice
from .traffic import Shift, Traffic, Xor

_IN, _OUT, _SCR = Buf.INPUT, Buf.OUTPUT, Buf.SCRATCH


def _block(buf: Buf, j: int, count: int) -> Slice:
    """Block ``j`` (``count`` elements) of ``buf``."""
    return make_slice(buf, j * count, count)


def _own(b: Builder, t: int, rank: int, count: int) -> None:
    """My own block stays with me (a no-op in place, which lowering drops)."""
    b.copy(t, _block(_IN, rank, count), _block(_OUT, rank, count))


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


def _consecutive(node: Sequence[int]) -> bool:
    """Whether a node's ranks are a run of consecutive ranks (its blocks are one output range)."""
    return all(node[m] == node[0] + m for m in range(len(node)))


def _others(n: int, me: int) -> list[int]:
    """0..n-1 without ``me``, starting after it (spreads the traffic of one step)."""
    return [(me + m) % n for m in range(1, n)]


def hierarchical(problem: Problem, rank: int, options: Mapping[str, Any]) -> Program:
    """Intra-node transpose (index 1), then one node-sized message per other node along the
    rail (index 2); index 0 packs."""
    c = problem.count
    nodes = problem.nodes.nodes
    P, g = len(nodes), len(nodes[0])
    k = next(n for n, members in enumerate(nodes) if rank in members)
    j = nodes[k].index(rank)
    b = Builder(rank)
    _own(b, 0, rank, c)
    # scratch: S1 (per local peer, P blocks), A (received from each local peer, P blocks),
    # S2 (per other node, g blocks), B (per other node, g blocks, unless it lands in place)
    peers, others = _others(g, j), _others(P, k)
    pos_j = {jj: m for m, jj in enumerate(sorted(peers))}
    pos_k = {kk: m for m, kk in enumerate(sorted(others))}
    s1 = Region(_SCR, 0)
    a = Region(_SCR, (g - 1) * P * c)
    s2 = Region(_SCR, 2 * (g - 1) * P * c)
    bb = Region(_SCR, 2 * (g - 1) * P * c + (P - 1) * g * c)
    # index 0: pack what goes to each local peer (node-major), and my own rail blocks
    for jj in peers:
        if P > 1:
            _copy_runs(b, 0, [(_block(_IN, nodes[kk][jj], c), s1.at((pos_j[jj] * P + kk) * c, c))
                              for kk in range(P)])
    for kk in others:
        b.copy(0, _block(_IN, nodes[kk][j], c), s2.at((pos_k[kk] * g + j) * c, c))
    # index 1: intra-node transpose
    for jj in peers:
        peer = nodes[k][jj]
        message = s1.at(pos_j[jj] * P * c, P * c) if P > 1 else _block(_IN, peer, c)
        b.send(1, peer, message)
        b.recv(1, peer, a.at(pos_j[jj] * P * c, P * c))
    for jj in peers:  # what my node-mates have for me, then what I forward along my rail
        b.copy(1, a.at((pos_j[jj] * P + k) * c, c), _block(_OUT, nodes[k][jj], c))
    for kk in others:
        _copy_runs(b, 1, [(a.at((pos_j[jj] * P + kk) * c, c), s2.at((pos_k[kk] * g + jj) * c, c))
                          for jj in sorted(peers)])
    # index 2: one node-sized message per other node, along the rail
    for kk in others:
        peer = nodes[kk][j]
        b.send(2, peer, s2.at(pos_k[kk] * g * c, g * c))
        if _consecutive(nodes[kk]):
            b.recv(2, peer, _block(_OUT, nodes[kk][0], c) if g == 1
                   else make_slice(_OUT, nodes[kk][0] * c, g * c))
        else:
            held = bb.at(pos_k[kk] * g * c, g * c)
            b.recv(2, peer, held)
            for jj in range(g):
                b.copy(2, bb.at((pos_k[kk] * g + jj) * c, c), _block(_OUT, nodes[kk][jj], c))
    return b.build()


def hierarchical_cost(problem: Problem, options: Mapping[str, Any],
                      in_place: bool) -> list[Traffic]:
    """The steps of :func:`hierarchical`: the packing step, the intra-node transpose (``g-1``
    messages of ``P`` blocks, ``(g-1)P`` blocks copied), the rail step (``P-1`` messages of
    ``g`` blocks, copied out of scratch only for nodes that are not runs of consecutive ranks)."""
    c = problem.count
    nodes = problem.nodes.nodes
    P, g = len(nodes), len(nodes[0])
    p = P * g
    grid = np.array(nodes, dtype=np.int64)               # grid[k][j] = rank
    node_of = np.empty(p, dtype=np.int64)
    local_of = np.empty(p, dtype=np.int64)
    node_of[grid] = np.arange(P)[:, None]
    local_of[grid] = np.arange(g)[None, :]
    own = 0 if in_place else c
    pack = (g - 1) * P * c if P > 1 else 0
    steps = [Traffic(copy=own + pack + (P - 1) * c)]
    # the transpose is an all-to-all inside each node, the rail step one inside each local index
    steps.append(Traffic(exchange=(node_of, P * c), copy=(g - 1) * P * c))
    scattered = np.array([not _consecutive(node) for node in nodes], dtype=np.int64)
    unpack = (int(scattered.sum()) - scattered[node_of]) * g * c
    steps.append(Traffic(exchange=(local_of, g * c), copy=unpack))
    return steps
