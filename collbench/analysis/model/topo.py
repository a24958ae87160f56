"""Where ranks live, and one step of a closed form vectorized over ranks.

A closed form (:mod:`.costs`) describes a step by every member's messages (peer, bytes) and
local work as numpy arrays; :func:`vstep` classifies each message by the node layout (intra- or
inter-node), charges bytes per link (all messages to one peer in a step share that pair's link,
:mod:`.cost`), counts the ranks of a node that use its NICs at once, and keeps the distinct
signatures -- exactly what the schedule walk (:mod:`.walk`) computes from a real program, in
O(ranks) per step. :mod:`.traffic` prices registered costs with the same function.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ...algorithms import Layout
from .cost import EMPTY, Side, Sig

# -- where ranks live ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Topo:
    """Node of every member of a group, for classifying its messages.

    Attributes:
        node: node index per member (numpy int array).
        mult: ranks of a node that play each member's role at once (the hierarchical outer
            phase runs g identical groups, so a member's inter-node traffic shares the NICs
            with g-1 others); multiplies NIC sharing counts.
    """

    node: np.ndarray
    mult: int = 1
    rows: np.ndarray | None = None    # evaluate only these members (whole nodes); None: all

    @property
    def size(self) -> int:
        return len(self.node)

    @property
    def single(self) -> bool:
        return bool(self.size == 0 or self.node.min() == self.node.max())

    @property
    def contiguous(self) -> bool:
        """Each node is one block of consecutive members."""
        n = self.node
        return bool(np.all(n[1:] >= n[:-1])) if self.size > 1 else True

    def nnodes(self) -> int:
        return int(self.node.max()) + 1 if self.size else 0

    @property
    def me(self) -> np.ndarray:
        """Node of every evaluated member."""
        return self.node if self.rows is None else self.node[self.rows]


def single_node(g: int) -> Topo:
    return Topo(np.zeros(g, dtype=np.int64))


def own_nodes(g: int, mult: int = 1) -> Topo:
    """Every member on its own node (the outer level of a hierarchical algorithm)."""
    return Topo(np.arange(g, dtype=np.int64), mult)


def topo_of(layout: Layout | None, nranks: int) -> Topo:
    node = np.zeros(nranks, dtype=np.int64)
    if layout is not None:
        for k, members in enumerate(layout.nodes):
            node[list(members)] = k
    return Topo(node)


# -- one step, vectorized over ranks ---------------------------------------------------------------

Msgs = Sequence[tuple]   # (peer per rank or -1, bytes per rank or scalar): one message each


def _run_totals(peers: np.ndarray, nbytes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Messages of a block of ranks as (messages × ranks) arrays: each rank's peers sorted, and
    for each message the bytes of all its rank's messages to the same peer (its link's bytes)."""
    n = len(peers)
    order = np.argsort(peers, axis=0, kind="stable")
    ps = np.take_along_axis(peers, order, 0)
    nbs = np.take_along_axis(nbytes, order, 0)
    cs = np.cumsum(nbs, axis=0)
    first = np.ones_like(ps, dtype=bool)
    first[1:] = ps[1:] != ps[:-1]
    last = np.ones_like(ps, dtype=bool)
    last[:-1] = first[1:]
    # a run's total is the running sum at its last message minus the one before its first;
    # running sums of non-negative bytes never decrease, so accumulated minima (of the next
    # run end) and maxima (of the last run start) carry each run's boundaries to its members
    idx = np.broadcast_to(np.arange(n)[:, None], ps.shape)
    end_at = np.flip(np.minimum.accumulate(np.flip(np.where(last, idx, n - 1), 0), 0), 0)
    start_sum = np.maximum.accumulate(np.where(first, cs - nbs, 0), axis=0)
    return ps, np.take_along_axis(cs, end_at, 0) - start_sum


def _columns_many(topo: Topo, msgs: Msgs) -> list[np.ndarray]:
    """:func:`_side_columns` for many messages per rank (an all-to-all posts p - 1 in one
    step), in blocks of ranks so the (messages × ranks) work arrays stay small; the message
    arrays are read, never copied whole."""
    me = topo.me
    g, n = len(me), len(msgs)
    cols = [np.zeros(g, dtype=np.int64) for _ in range(6)]
    width = max(1, (1 << 20) // n)
    for lo in range(0, g, width):
        hi = min(g, lo + width)
        peers = np.stack([np.broadcast_to(np.asarray(q, dtype=np.int64), (g,))[lo:hi] for q, _ in msgs])
        nb = np.stack([np.broadcast_to(np.asarray(b, dtype=np.int64), (g,))[lo:hi] for _, b in msgs])
        valid = (peers >= 0) & (nb > 0)
        peers = np.where(valid, peers, NONE)
        nb = np.where(valid, nb, 0)
        ps, link = _run_totals(peers, nb)
        inter_all = valid & (topo.node[np.where(valid, peers, 0)] != me[lo:hi])
        inter_sorted = (ps >= 0) & (topo.node[np.where(ps >= 0, ps, 0)] != me[lo:hi])
        intra_all = valid & ~inter_all
        cols[0][lo:hi] = intra_all.sum(axis=0)
        cols[1][lo:hi] = np.where((ps >= 0) & ~inter_sorted, link, 0).max(axis=0)
        cols[2][lo:hi] = np.where(intra_all, nb, 0).sum(axis=0)
        cols[3][lo:hi] = inter_all.sum(axis=0)
        cols[4][lo:hi] = np.where(inter_sorted, link, 0).max(axis=0)
        cols[5][lo:hi] = np.where(inter_all, nb, 0).sum(axis=0)
    return cols


def _side_columns(topo: Topo, msgs: Msgs) -> list[np.ndarray]:
    """Per rank: intra msgs, max, total, inter msgs, max, total, share (7 column arrays).

    ``max`` is per *link*: the most bytes this rank moves to one peer in the step, summed over
    all its messages to that peer -- two messages to the same peer share that pair's link
    (:mod:`.cost`). A handful of messages per rank (trees, rings) are compared pairwise."""
    me = topo.me
    g = len(me)
    zero = np.zeros(g, dtype=np.int64)
    if len(msgs) > 8:
        cols = _columns_many(topo, msgs)
    else:
        peers, nbytes = [], []
        for spec in msgs:
            peer = np.asarray(spec[0], dtype=np.int64)
            nb = np.asarray(spec[1], dtype=np.int64)
            valid = (peer >= 0) & (nb > 0)
            if valid.any():
                peers.append(np.broadcast_to(np.where(valid, peer, NONE), (g,)))
                nbytes.append(np.broadcast_to(np.where(valid, nb, 0), (g,)))
        im, imax, itot, em, emax, etot = zero, zero, zero, zero, zero, zero
        for peer, nb in zip(peers, nbytes):
            valid = peer >= 0
            inter = valid & (topo.node[np.where(valid, peer, 0)] != me)
            intra = valid & ~inter
            link = sum((np.where(other == peer, onb, 0) for other, onb in zip(peers, nbytes)), zero)
            im, itot = im + intra, itot + np.where(intra, nb, 0)
            em, etot = em + inter, etot + np.where(inter, nb, 0)
            imax = np.maximum(imax, np.where(intra, link, 0))
            emax = np.maximum(emax, np.where(inter, link, 0))
        cols = [im, imax, itot, em, emax, etot]
    em = cols[3]
    share = zero
    using = em > 0
    if using.any():
        counts = np.bincount(me[using], minlength=topo.nnodes())
        share = np.where(using, counts[me] * topo.mult, 0)
    return [*cols, share]


def vstep(topo: Topo, sends: Msgs = (), recvs: Msgs = (), reduce: Any = 0,
          copy: Any = 0) -> tuple[Sig, ...]:
    """Distinct signatures of one step given every rank's messages (peer -1: no message)."""
    g = len(topo.me)
    cols = _side_columns(topo, sends) + _side_columns(topo, recvs)
    cols.append(np.broadcast_to(np.asarray(reduce, dtype=np.int64), (g,)))
    cols.append(np.broadcast_to(np.asarray(copy, dtype=np.int64), (g,)))
    return tuple(_sig(row) for row in _unique_rows(cols))


_MIX = np.int64(0x9E3779B97F4A7C15 - (1 << 64))   # odd 64-bit constant (golden ratio)


def group_rows(cols: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
    """(index of the first row of each group, group of every row) of the rows of the column
    arrays, grouped by a 64-bit hash and then checked exactly; None on a hash collision
    (np.unique(axis=0) sorts void records and is 50x slower at 16k ranks)."""
    with np.errstate(over="ignore"):
        key = np.zeros(len(cols[0]), dtype=np.int64)
        for col in cols:
            key = (key ^ col) * _MIX + np.int64(0x632BE59BD9B4E019)
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    if all(np.array_equal(col[first][inverse], col) for col in cols):
        return first, inverse
    return None


def _unique_rows(cols: list[np.ndarray]) -> list[list[int]]:
    """Distinct non-zero rows of the column arrays, sorted."""
    groups = group_rows(cols)
    if groups is not None:
        rows = np.stack([col[groups[0]] for col in cols], axis=1).tolist()
    else:   # a hash collision: fall back to the exact (slow) way
        rows = np.unique(np.stack(cols, axis=1), axis=0).tolist()
    return sorted(row for row in rows if any(row))


def _sig(row: list[int]) -> Sig:
    s = Side(*row[0:7]) if any(row[0:7]) else EMPTY
    r = Side(*row[7:14]) if any(row[7:14]) else EMPTY
    return Sig(s, r, row[14], row[15])


NONE = -1


def masked(mask: np.ndarray, peer: np.ndarray) -> np.ndarray:
    """``peer`` where ``mask`` holds, else :data:`NONE` (no message)."""
    return np.where(mask, peer, NONE)
