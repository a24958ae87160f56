"""Closed-form costs of every algorithm in the suite, in the model of :mod:`.cost`.

Each function returns the algorithm's *phases* (a step, or a run of identical steps, with the
signatures of the ranks that can be slowest in it), built from formulas for the step count and
the bytes each rank sends, receives, reduces and copies -- never from the schedule. Evaluating
the phases under a :class:`~.cost.Machine` gives the time; the textbook formulas are what the
phases sum to for p >= 2 ranks on one node (one link class, a rank drives ``ports`` links at
once, no NIC sharing; local copies, the δ term, left out). The time is the α column times α
plus the β column times nβ plus the γ column times nγ, where n is the bytes of the largest
buffer (allgather's output, reduce_scatter's input, the vector otherwise).

Notation: p' = 2^⌊lg p⌋ and r = p - p'; ``[+x]`` is added only when p ≠ p' (MPICH's fold, an
extra step before and after); s = Σ_{j < lg p'} min(2^j, r) counts the blocks by which the
fold's doubled new ranks make each level's largest range longer; k is the pipeline chunks;
H the height of the taller tree of the double binary tree, whose m is the messages of the
busiest side summed over its steps (each one chunk of n/(2k); k + 2H - 1 <= m <= 4(k + 2H - 1))
and m_r <= m the chunks the busiest rank reduces, both set by the trees' shape.
tests/analysis/test_closed_table.py parses every row below and checks it against the code.

==================================  ==============  ========================  ================
collective, algorithm               α ×             β × n                     γ × n
==================================  ==============  ========================  ================
allreduce ring                      2(p-1)          2(p-1)/p                  (p-1)/p
allreduce recursive_doubling        lg p' [+2]      lg p' [+2]                lg p' [+1]
allreduce rabenseifner              2 lg p' [+2]    2(p'-1)/p' [+2]           (p'-1)/p' [+1]
allreduce tree                      2⌈lg p⌉         2⌈lg p⌉                   ⌈lg p⌉
allreduce double_binary_tree        m               m/(2k)                    m_r/(2k)
allreduce direct                    p-1             max(1, (p-1)/ports)       p-1
allgather ring                      p-1             (p-1)/p                   0
allgather direct                    p-1             max(1, (p-1)/ports)/p     0
allgather recursive_doubling        lg p' [+2]      (p'-1+s)/p [+(p+1)/p]     0
allgather bruck                     ⌈lg p⌉          (p-1)/p                   0
reduce_scatter ring                 p-1             (p-1)/p                   (p-1)/p
reduce_scatter direct               p-1             (p-1)/p                   (p-1)/p
reduce_scatter recursive_halving    lg p' [+2]      (p'-1+s)/p [+(p+1)/p]     (p'-1+s)/p [+1]
broadcast tree                      ⌈lg p⌉          ⌈lg p⌉                    0
reduce tree                         ⌈lg p⌉          ⌈lg p⌉                    ⌈lg p⌉
broadcast ring                      p-2+k           (p-2+k)/k                 0
reduce ring                         p-2+k           (p-2+k)/k                 (p-2+k)/k
==================================  ==============  ========================  ================

The hierarchical algorithms on P nodes of g ranks (blocked layout, default options) are sums of
the rows above, each evaluated at (ranks, bytes) -- the outer algorithm's g groups share each
node's NICs, which the formulas leave out; on a blocked layout allgather also unpacks its
packed vector with one copy of the output, and reduce_scatter packs its input with one copy:

==================================  ==========================================================
hierarchical allreduce              reduce_scatter ring (g, n) + allreduce recursive_doubling
                                    (P, n/g) + allgather ring (g, n)
hierarchical allgather              allgather recursive_doubling (P, n/g) + allgather ring (g, n)
hierarchical reduce_scatter         reduce_scatter ring (g, n) + reduce_scatter
                                    recursive_halving (P, n/g)
==================================  ==========================================================

Thakur, Rabenseifner & Gropp 2005 (MPICH's algorithms and their costs), Chan et al. 2007
(lower bounds, bucket/MST building blocks), Sanders, Speck & Träff 2009 (two-tree pipelining),
Bruck et al. 1997 (the rotated allgather); the non-power-of-two fold is MPICH's.

Ring channels (``-O channels=K``, allreduce/allgather/reduce-scatter): K rings in the same
steps, ring ``k`` on its own member order (``algorithms/ring.py``, :func:`ring_channel_phases`);
every message is charged on its own link, so rings that share a link share its bandwidth.

Link classes: which messages cross nodes (and how many ranks of a node use the NICs at once)
follows from the layout. For the logarithmic algorithms it is computed with a vectorized pass
over the ranks of each step's pattern (O(p) per step, any layout); for the linear ones (ring,
pairwise, chain, direct) from the pattern's invariance, which needs a *contiguous* layout (each
node a block of consecutive ranks, as Slurm's block distribution and ``--ranks-per-node`` give).
:func:`phases` returns None where no closed form applies (other layouts for those algorithms,
hierarchical on a layout that is not blocked, user-registered algorithms): callers then walk the
schedule (:mod:`.walk`).

Exactness: with a *regular* count -- one that splits evenly at every level (see
:func:`regular_count`) -- the phases give exactly the schedule walk's cost (tests/analysis
check every algorithm for p = 1..64). Otherwise the linear algorithms charge every message the
largest block (an upper bound, at most one element per message too high) and the logarithmic
ones stay exact; counts smaller than the number of blocks (empty messages, which schedules
drop) are the one case where a closed form can be far off, and only at a few bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping, Sequence

import numpy as np

from ...algorithms import Collective, Layout, Problem
from ...algorithms._build import Fold, default_chunks, log2_ceil
from ...algorithms.double_binary_tree import trees
from .cost import EMPTY, PhaseList, Side, Sig


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


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


def _unique_rows(cols: list[np.ndarray]) -> list[list[int]]:
    """Distinct non-zero rows of the column arrays, sorted. Rows are grouped by a 64-bit
    hash and the grouping is then checked exactly (np.unique(axis=0) sorts void records and
    is 50x slower at 16k ranks)."""
    with np.errstate(over="ignore"):
        key = np.zeros(len(cols[0]), dtype=np.int64)
        for col in cols:
            key = (key ^ col) * _MIX + np.int64(0x632BE59BD9B4E019)
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    if all(np.array_equal(col[first][inverse], col) for col in cols):
        rows = np.stack([col[first] for col in cols], axis=1).tolist()
    else:   # a hash collision: fall back to the exact (slow) way
        rows = np.unique(np.stack(cols, axis=1), axis=0).tolist()
    return sorted(row for row in rows if any(row))


def _sig(row: list[int]) -> Sig:
    s = Side(*row[0:7]) if any(row[0:7]) else EMPTY
    r = Side(*row[7:14]) if any(row[7:14]) else EMPTY
    return Sig(s, r, row[14], row[15])


NONE = -1


def _peers(mask: np.ndarray, peer: np.ndarray) -> np.ndarray:
    return np.where(mask, peer, NONE)


def _fold_arrays(f: Fold, g: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(member acting as each new rank, new rank of each member or -1, bound of each new rank
    0..pof2) of MPICH's fold, vectorized (:class:`~collbench.algorithms._build.Fold`)."""
    n = np.arange(f.pof2, dtype=np.int64)
    survivors = np.where(n < f.rem, 2 * n + 1, n + f.rem)
    nr = np.full(g, -1, dtype=np.int64)
    nr[survivors] = n
    j = np.arange(f.pof2 + 1, dtype=np.int64)
    bound = np.where(j <= f.rem, 2 * j, j + f.rem)
    return survivors, nr, bound


# -- building blocks: ring, pairwise, recursive doubling/halving, Bruck, direct, trees, chain ------

def _ring_pattern(topo: Topo, nbytes: int, reduce: int, copy_first: int, steps: int) -> PhaseList:
    """``steps`` ring steps (member i sends ``nbytes`` to i+1 and receives as much from i-1);
    ``copy_first`` bytes copied locally in the first step."""
    out = PhaseList()
    g = topo.size
    if steps <= 0:
        if copy_first:
            out.add(1, Sig(copy=copy_first))
        return out
    idx = np.arange(g)
    nxt, prv = (idx + 1) % g, (idx - 1) % g
    sends = [(nxt, nbytes)]
    recvs = [(prv, nbytes)]
    first = vstep(topo, sends, recvs, reduce, copy_first)
    rest = vstep(topo, sends, recvs, reduce, 0)
    out.add(1, *first)
    out.add(steps - 1, *rest)
    return out


def _ring_links(orders: Sequence[Sequence[int]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(next member, previous member) of every member on each channel's ring order."""
    out = []
    for order in orders:
        pos = np.asarray(order, dtype=np.int64)
        nxt, prv = np.empty_like(pos), np.empty_like(pos)
        nxt[pos] = np.roll(pos, -1)
        prv[pos] = np.roll(pos, 1)
        out.append((nxt, prv))
    return out


def _ring_channels(topo: Topo, orders: Sequence[Sequence[int]], nbytes: Sequence[int],
                   reduce: bool, copy_first: int, steps: int) -> PhaseList:
    """``steps`` steps of ``len(orders)`` concurrent rings: on channel ``k`` every member sends
    ``nbytes[k]`` to its successor on ring ``k`` and receives as much from its predecessor
    (reducing it when ``reduce``); ``copy_first`` bytes copied locally in the first step. Every
    step has the same peers, so two step signatures cover them all."""
    out = PhaseList()
    if steps <= 0:
        if copy_first:
            out.add(1, Sig(copy=copy_first))
        return out
    links = _ring_links(orders)
    sends = [(nxt, nb) for (nxt, _), nb in zip(links, nbytes)]
    recvs = [(prv, nb) for (_, prv), nb in zip(links, nbytes)]
    red = sum(int(nb) for nb in nbytes) if reduce else 0
    out.add(1, *vstep(topo, sends, recvs, red, copy_first))
    out.add(steps - 1, *vstep(topo, sends, recvs, red, 0))
    return out


def channels_option(options: Mapping[str, Any] | None) -> int:
    k = (options or {}).get("channels")
    return 1 if k is None else int(k)


def _ring_orders(problem: Problem, channels: int) -> list[list[int]]:
    from ...algorithms.ring import ring_orders

    layout = problem.layout
    nodes = None if layout is None else [list(n) for n in layout.nodes]
    return ring_orders(problem.nranks, channels, nodes)


def ring_channel_phases(problem: Problem, s: int, in_place: bool, channels: int,
                        topo: Topo) -> PhaseList | None:
    """Closed form of the ring allreduce, allgather and reduce-scatter on ``channels`` rings
    (``algorithms/ring.py``): channel ``k`` moves its part of every block around its own ring
    order, all channels in the same steps."""
    g, c, coll = problem.nranks, problem.count, problem.collective
    from ...algorithms._build import Partition

    orders = _ring_orders(problem, channels)
    if coll is Collective.ALLREDUCE:
        if g == 1:
            out = PhaseList()
            if not in_place and c:
                out.add(1, Sig(copy=c * s))
            return out
        chunks = Partition(c, channels)
        blk = [ceil_div(chunks.len(k), g) * s for k in range(channels)]
        out = PhaseList()
        out.extend(_ring_channels(topo, orders, blk, True, 0, g - 1).phases)
        out.extend(_ring_channels(topo, orders, blk, False, 0, g - 1).phases)
        return out
    sub = Partition(c, channels)
    nb = [sub.len(k) * s for k in range(channels)]
    if coll is Collective.ALLGATHER:
        return _ring_channels(topo, orders, nb, False, 0 if in_place else c * s, g - 1)
    if coll is Collective.REDUCE_SCATTER:
        if g == 1:
            out = PhaseList()
            if not in_place:
                out.add(1, Sig(copy=c * s))
            return out
        return _ring_channels(topo, orders, nb, True, 0, g - 1)
    return None


def _pairwise(topo: Topo, nbytes: int, reduce: int) -> PhaseList:
    """Pairwise exchange: step s sends to i+s and receives from i-s, s = 1..g-1."""
    g = topo.size
    out = PhaseList()
    idx = np.arange(g)
    if topo.single:
        out.add(g - 1, *vstep(topo, [((idx + 1) % g, nbytes)], [((idx - 1) % g, nbytes)], reduce))
        return out
    # for a contiguous uniform layout the shifts g..p-g all cross nodes for every member
    sizes = np.bincount(topo.node)
    uniform = topo.contiguous and len(set(sizes.tolist())) == 1
    lo_hi = (int(sizes[0]), g - int(sizes[0])) if uniform else (g, 0)
    for s in range(1, g):
        if uniform and lo_hi[0] <= s <= lo_hi[1]:
            if s == lo_hi[0]:
                out.add(lo_hi[1] - lo_hi[0] + 1,
                        *vstep(topo, [((idx + s) % g, nbytes)], [((idx - s) % g, nbytes)], reduce))
            continue
        out.add(1, *vstep(topo, [((idx + s) % g, nbytes)], [((idx - s) % g, nbytes)], reduce))
    return out


def _rd_allreduce(topo: Topo, n: int, s: int, copy_single: bool) -> PhaseList:
    """Recursive doubling allreduce of n elements (MPICH fold for non-powers of two)."""
    g = topo.size
    out = PhaseList()
    nb = n * s
    if g == 1:
        if copy_single and nb:
            out.add(1, Sig(copy=nb))
        return out
    f = Fold.of(g)
    idx = np.arange(g)
    if f.rem:
        pair = idx < 2 * f.rem
        even, odd = pair & (idx % 2 == 0), pair & (idx % 2 == 1)
        out.add(1, *vstep(topo, [(_peers(even, idx + 1), nb)], [(_peers(odd, idx - 1), nb)],
                          np.where(odd, nb, 0)))
    survivors, newrank, _ = _fold_arrays(f, g)
    alive = newrank >= 0
    for k in range(f.pof2.bit_length() - 1):
        partner = np.where(alive, survivors[np.where(alive, newrank ^ (1 << k), 0)], NONE)
        out.add(1, *vstep(topo, [(partner, nb)], [(partner, nb)], np.where(alive, nb, 0)))
    if f.rem:
        pair = idx < 2 * f.rem
        even, odd = pair & (idx % 2 == 0), pair & (idx % 2 == 1)
        out.add(1, *vstep(topo, [(_peers(odd, idx - 1), nb)], [(_peers(even, idx + 1), nb)]))
    return out


def _partition_offsets(n: int, k: int) -> np.ndarray:
    """Block boundaries of :class:`~collbench.algorithms._build.Partition` (k + 1 offsets)."""
    q, r = divmod(n, k)
    i = np.arange(k + 1, dtype=np.int64)
    return i * q + np.minimum(i, r)


def _halving(topo: Topo, f: Fold, offs: np.ndarray, s: int) -> PhaseList:
    """The power-of-two part of recursive halving over new ranks: level k exchanges ranges of
    ``pof2 >> (k+1)`` new blocks (boundaries ``offs`` in elements)."""
    g = topo.size
    out = PhaseList()
    levels = f.pof2.bit_length() - 1
    survivors, nr, _ = _fold_arrays(f, g)
    alive = nr >= 0
    nra = np.where(alive, nr, 0)
    for k in range(levels):
        size = f.pof2 >> (k + 1)
        keep_lo = nra & ~(size - 1)
        give_lo = (nra ^ size) & ~(size - 1)
        keep = (offs[keep_lo + size] - offs[keep_lo]) * s
        give = (offs[give_lo + size] - offs[give_lo]) * s
        partner = np.where(alive, survivors[nra ^ (1 << (levels - 1 - k))], NONE)
        out.add(1, *vstep(topo, [(partner, np.where(alive, give, 0))],
                          [(partner, np.where(alive, keep, 0))], np.where(alive, keep, 0)))
    return out


def _doubling_ag(topo: Topo, f: Fold, offs: np.ndarray, s: int) -> PhaseList:
    """The power-of-two part of recursive-doubling allgather: level k exchanges 2^k new blocks."""
    g = topo.size
    out = PhaseList()
    survivors, nr, _ = _fold_arrays(f, g)
    alive = nr >= 0
    nra = np.where(alive, nr, 0)
    for k in range(f.pof2.bit_length() - 1):
        m = 1 << k
        mine_lo = nra & ~(m - 1)
        theirs_lo = mine_lo ^ m
        mine = (offs[mine_lo + m] - offs[mine_lo]) * s
        theirs = (offs[theirs_lo + m] - offs[theirs_lo]) * s
        partner = np.where(alive, survivors[nra ^ m], NONE)
        out.add(1, *vstep(topo, [(partner, np.where(alive, mine, 0))],
                          [(partner, np.where(alive, theirs, 0))]))
    return out


def _rabenseifner(topo: Topo, n: int, s: int, copy_single: bool) -> PhaseList:
    g = topo.size
    out = PhaseList()
    if g == 1:
        if copy_single and n:
            out.add(1, Sig(copy=n * s))
        return out
    f = Fold.of(g)
    nb = n * s
    idx = np.arange(g)
    pair = idx < 2 * f.rem
    even, odd = pair & (idx % 2 == 0), pair & (idx % 2 == 1)
    if f.rem:
        out.add(1, *vstep(topo, [(_peers(even, idx + 1), nb)], [(_peers(odd, idx - 1), nb)],
                          np.where(odd, nb, 0)))
    offs = _partition_offsets(n, f.pof2)
    out.extend(_halving(topo, f, offs, s).phases)
    out.extend(_doubling_ag(topo, f, offs, s).phases)
    if f.rem:
        out.add(1, *vstep(topo, [(_peers(odd, idx - 1), nb)], [(_peers(even, idx + 1), nb)]))
    return out


def binomial_reduce(topo: Topo, root: int, nb: int) -> list[tuple[Sig, ...]]:
    g = topo.size
    idx = np.arange(g)
    v = (idx - root) % g
    steps = []
    m = 1
    while m < g:
        active = v % m == 0
        sender = active & ((v & m) != 0)
        receiver = active & ((v & m) == 0) & (v + m < g)
        steps.append(vstep(topo, [(_peers(sender, (v - m + root) % g), nb)],
                           [(_peers(receiver, (v + m + root) % g), nb)],
                           np.where(receiver, nb, 0)))
        m *= 2
    return steps


def binomial_bcast(topo: Topo, root: int, nb: int, root_copy: int) -> list[tuple[Sig, ...]]:
    g = topo.size
    levels = log2_ceil(g)
    idx = np.arange(g)
    v = (idx - root) % g
    steps = []
    for t in range(levels):
        m = 1 << (levels - 1 - t)   # distance used in step t
        # v receives in step levels - bitlen(lowbit(v)); sends to v+m when m < lowbit(v) (root: any)
        low = np.where(v == 0, 1 << levels, v & -v)
        sender = (m < low) & (v + m < g)
        receiver = (v != 0) & (low == m)
        copy = np.where(v == 0, root_copy, 0) if t == 0 else 0
        steps.append(vstep(topo, [(_peers(sender, (v + m + root) % g), nb)],
                           [(_peers(receiver, (v - m + root) % g), nb)], 0, copy))
    if not levels and root_copy:
        steps.append((Sig(copy=root_copy),))
    return steps


def _bruck(topo: Topo, mb: int, own_copy: int) -> PhaseList:
    """Bruck allgather of one block of ``mb`` bytes per member through a rotated buffer: step
    k sends one range of min(2^k, g - 2^k) blocks to member i - 2^k. Local copies: the own
    block into its place (``own_copy``) and, when a later step sends it, into the rotated
    buffer, in the first step; the inverse rotation of the g - 1 other blocks in the last."""
    g = topo.size
    out = PhaseList()
    if g == 1:
        if own_copy:
            out.add(1, Sig(copy=own_copy))
        return out
    idx = np.arange(g)
    steps = log2_ceil(g)
    for k in range(steps):
        d = 1 << k
        nb = min(d, g - d) * mb
        copy = (own_copy + (mb if steps > 1 else 0)) if k == 0 else 0
        if k == steps - 1:
            copy += (g - 1) * mb
        out.add(1, *vstep(topo, [((idx - d) % g, nb)], [((idx + d) % g, nb)], 0, copy))
    return out


def chain(topo: Topo, root: int, k: int, seg: int, reduce: bool, root_copy: int) -> PhaseList:
    """Pipelined chain along the ring from the root (broadcast) or to it (reduce)."""
    g = topo.size
    out = PhaseList()
    if g == 1:
        if root_copy:
            out.add(1, Sig(copy=root_copy))
        return out
    # position i in chain order: broadcast i = rank - root (sends to rank + 1); reduce i = hops
    # from the far end, root - 1 (sends to rank - 1), so the root is the last position
    pos = np.arange(g)
    if reduce:
        rank_at = (root - 1 - pos) % g
        nxt = (rank_at - 1) % g
    else:
        rank_at = (root + pos) % g
        nxt = (rank_at + 1) % g
    cross = topo.node[rank_at] != topo.node[nxt]   # position i -> i+1 crosses nodes
    # prefix sums of the (send crosses, receive crosses) combinations over chain positions
    es = np.append(cross[:-1], False)            # senders are positions 0..g-2
    er = np.concatenate([[False], cross[:-1]])   # receivers 1..g-1 get from i-1
    combos = [(a, b) for a in (False, True) for b in (False, True)]
    prefix = {ab: np.concatenate([[0], np.cumsum((es == ab[0]) & (er == ab[1]))]) for ab in combos}
    steps = k + g - 2
    t = np.arange(steps, dtype=np.int64)
    s_lo, s_hi = np.maximum(0, t - k + 1), np.minimum(t, g - 2)        # sending positions
    r_lo, r_hi = np.maximum(1, t - k + 2), np.minimum(t + 1, g - 1)    # receiving positions

    def present(ab: tuple[bool, bool], lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        ok = lo <= hi
        lo_c, hi_c = np.clip(lo, 0, g - 1), np.clip(hi, 0, g - 1)
        return ok & (prefix[ab][hi_c + 1] - prefix[ab][lo_c] > 0)

    def side(inter: bool) -> Side:
        return Side(0, 0, 0, 1, seg, seg, topo.mult) if inter else Side(1, seg, seg)

    red = seg if reduce else 0
    columns = []   # (presence per step, signature)
    for ab in combos:
        a, b = ab
        both = present(ab, np.maximum(s_lo, r_lo), np.minimum(s_hi, r_hi))
        only_s = present(ab, s_lo, np.minimum(s_hi, r_lo - 1)) | present(ab, np.maximum(s_lo, r_hi + 1), s_hi)
        only_r = present(ab, r_lo, np.minimum(r_hi, s_lo - 1)) | present(ab, np.maximum(r_lo, s_hi + 1), r_hi)
        columns.append((both, Sig(side(a), side(b), red)))
        columns.append((only_s, Sig(side(a), EMPTY, 0)))
        columns.append((only_r, Sig(EMPTY, side(b), red)))
    mask = np.stack([c for c, _ in columns], axis=1)
    # the root's first send also copies its input into its output (broadcast out of place)
    plain = Sig(side(bool(es[0])), EMPTY, 0)
    first_root = Sig(side(bool(es[0])), EMPTY, 0, root_copy) if root_copy and not reduce else None
    # a collective's time is a sum over steps, so steps with the same set of signatures are
    # counted together whatever their order (a chain over thousands of ranks has few kinds)
    bits = mask.astype(np.int64) @ (1 << np.arange(mask.shape[1], dtype=np.int64))
    start = 0
    if first_root is not None:
        cands = [sig for on, (_, sig) in zip(mask[0], columns) if on]
        cands = [first_root if c == plain else c for c in cands]
        out.add(1, *(cands if first_root in cands else [*cands, first_root]))
        start = 1
    kinds, counts = np.unique(bits[start:], return_counts=True)
    for kind, count in zip(kinds.tolist(), counts.tolist()):
        out.add(count, *[sig for j, (_, sig) in enumerate(columns) if kind >> j & 1])
    return out


# -- double binary tree: per-step vectorized over ranks -----------------------------------------------

@lru_cache(maxsize=64)
def _dbt_arrays(g: int) -> tuple:
    out = []
    for tree in trees(g):
        parent = np.array(tree.parent, dtype=np.int64)
        height = np.array(tree.height, dtype=np.int64)
        depth = np.array(tree.depth, dtype=np.int64)
        kids = np.full((g, 2), NONE, dtype=np.int64)
        for r, ch in enumerate(tree.children):
            for j, c in enumerate(sorted(ch, key=lambda c: tree.height[c])):
                kids[r, j] = c
        out.append((parent, height, depth, kids, int(tree.height[tree.root])))
    return tuple(out)


_DBT_ROWS: dict[tuple, np.ndarray | None] = {}


def _dbt_representatives(topo: Topo, arrays: tuple) -> np.ndarray | None:
    """For many ranks on uniform contiguous nodes: the members of one node of every kind.

    A node's kind is what each of its ranks does in both trees (heights, depths, whether its
    parent and children are on other nodes): nodes of one kind have identical signatures in
    every step, NIC sharing included, so the slowest rank of a step is among these rows.
    """
    g = topo.size
    sizes = np.bincount(topo.node)
    if g < 256 or not topo.contiguous or len(set(sizes.tolist())) != 1:
        return None
    cols = []
    for parent, height, depth, kids, _top in arrays:
        up = parent >= 0
        cols += [height, depth, up, up & (topo.node[np.where(up, parent, 0)] != topo.node)]
        for j in range(2):
            kid = kids[:, j]
            has = kid >= 0
            cols += [np.where(has, height[np.where(has, kid, 0)], -1),
                     has & (topo.node[np.where(has, kid, 0)] != topo.node)]
    per_node = int(sizes[0])
    node_cols = [np.asarray(c, dtype=np.int64).reshape(-1, per_node)[:, i]
                 for c in cols for i in range(per_node)]
    with np.errstate(over="ignore"):
        key = np.zeros(len(sizes), dtype=np.int64)
        for col in node_cols:
            key = (key ^ col) * _MIX + np.int64(0x632BE59BD9B4E019)
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    if not all(np.array_equal(col[first][inverse], col) for col in node_cols):
        return None
    return (first[:, None] * per_node + np.arange(per_node)).reshape(-1)


def _dbt(topo: Topo, n: int, s: int, k: int, copy_single: bool) -> PhaseList:
    g = topo.size
    out = PhaseList()
    if g == 1:
        if copy_single and n:
            out.add(1, Sig(copy=n * s))
        return out
    halves = _partition_offsets(n, 2)
    chunk = [ceil_div(int(halves[w + 1] - halves[w]), k) * s for w in (0, 1)]
    arrays = _dbt_arrays(g)
    key = (g, topo.mult, hash(topo.node.tobytes()))
    if key not in _DBT_ROWS:
        if len(_DBT_ROWS) > 32:
            _DBT_ROWS.clear()
        _DBT_ROWS[key] = _dbt_representatives(topo, arrays)
    rows = _DBT_ROWS[key]
    if rows is not None:
        topo = Topo(topo.node, topo.mult, rows)
        arrays = tuple((parent[rows], height, depth[rows], kids[rows], top, height[rows])
                       for parent, height, depth, kids, top in arrays)
    else:
        arrays = tuple((*a, a[1]) for a in arrays)
    g = len(topo.me)
    steps = max(k + 2 * a[4] - 1 for a in arrays)
    # every event runs for k consecutive steps from a fixed offset (a child's height, the
    # node's height, top + depth, ...): steps between two offsets or offset + k are identical
    offsets = set()
    for _parent, _height, depth, _kids, top, own_h in arrays:
        offsets.update(own_h.tolist())
        offsets.update((top + depth - 1).tolist())
        offsets.update((top + depth).tolist())
    marks = sorted({0, steps} | {a for a in offsets if 0 <= a < steps}
                   | {a + k for a in offsets if 0 <= a + k < steps})
    for t, t_next in zip(marks[:-1], marks[1:]):
        sends: list = []
        recvs: list = []
        reduce = np.zeros(g, dtype=np.int64)
        for w, (parent, height, depth, kids, top, own_h) in enumerate(arrays):
            cb = chunk[w]
            for j in range(2):
                kid = kids[:, j]
                has = kid >= 0
                c = t - np.where(has, height[np.where(has, kid, 0)], 0)
                on = has & (c >= 0) & (c < k)
                recvs.append((_peers(on, kid), cb))
                reduce += np.where(on, cb, 0)
            up = parent >= 0
            c_up = t - own_h
            sends.append((_peers(up & (c_up >= 0) & (c_up < k), parent), cb))
            c_down = t - top - depth + 1
            recvs.append((_peers(up & (c_down >= 0) & (c_down < k), parent), cb))
            c_kid = t - top - depth
            for j in range(2):
                kid = kids[:, j]
                sends.append((_peers((kid >= 0) & (c_kid >= 0) & (c_kid < k), kid), cb))
        out.add(t_next - t, *vstep(topo, sends, recvs, reduce))
    return out


# -- direct ---------------------------------------------------------------------------------------

def _direct(topo: Topo, nb: int, reduce_per_msg: int, copy: int) -> PhaseList:
    """One step: every member sends ``nb`` bytes to every other member and receives ``nb``
    from each."""
    g = topo.size
    out = PhaseList()
    if g == 1:
        if copy:
            out.add(1, Sig(copy=copy))
        return out
    sizes = np.bincount(topo.node)
    cands = []
    for size in sorted(set(sizes.tolist()) - {0}):
        intra, inter = size - 1, g - size

        side = Side(intra, nb if intra else 0, intra * nb, inter, nb if inter else 0,
                    inter * nb, size * topo.mult if inter else 0)
        cands.append(Sig(side, side, reduce_per_msg * (g - 1), copy))
    out.add(1, *cands)
    return out


# -- cores shared by the flat algorithms and the hierarchical compositions ---------------------

def _ag_ring(topo: Topo, mb: int, own_copy: int) -> PhaseList:
    """Ring allgather of one ``mb``-byte block per member."""
    g = topo.size
    out = PhaseList()
    if g == 1:
        if own_copy:
            out.add(1, Sig(copy=own_copy))
        return out
    idx = np.arange(g)
    nxt, prv = (idx + 1) % g, (idx - 1) % g
    out.add(1, *vstep(topo, [(nxt, mb)], [(prv, mb)], 0, own_copy))
    out.add(g - 2, *vstep(topo, [(nxt, mb)], [(prv, mb)]))
    return out


def ag_core(kind: str, topo: Topo, mb: int, own_copy: int) -> PhaseList | None:
    """Allgather of one ``mb``-byte block per member by ``kind`` (None: no closed form);
    ``own_copy``: bytes a member copies to put its own block in place (0 when it is there).
    Every range a step sends is contiguous (flat blocks, or the hierarchical packed vector),
    so each is one message."""
    if kind == "ring":
        return _ag_ring(topo, mb, own_copy) if topo.contiguous else None
    if kind == "direct":
        return _direct(topo, mb, 0, own_copy)
    if kind == "recursive_doubling":
        return _rd_allgather(topo, mb, own_copy)
    if kind == "bruck":
        return _bruck(topo, mb, own_copy)
    return None


def rs_core(kind: str, topo: Topo, blk: int, s: int, copy_single: int) -> PhaseList | None:
    """Reduce-scatter of one ``blk``-element block per member by ``kind``."""
    g = topo.size
    if g == 1:
        out = PhaseList()
        if copy_single:
            out.add(1, Sig(copy=copy_single))
        return out
    if kind == "ring":
        return _ring_pattern(topo, blk * s, blk * s, 0, g - 1) if topo.contiguous else None
    if kind == "direct":
        return _pairwise(topo, blk * s, blk * s) if topo.contiguous else None
    if kind == "recursive_halving":
        return _recursive_halving_rs(topo, blk, s)
    return None


def ar_core(kind: str, topo: Topo, n: int, s: int, copy_single: bool,
            options: Mapping[str, Any]) -> PhaseList | None:
    """Allreduce of ``n`` elements by ``kind``; ``copy_single``: a lone member copies its input."""
    g = topo.size
    if g == 1 and kind != "direct":
        out = PhaseList()
        if copy_single and n:
            out.add(1, Sig(copy=n * s))
        return out
    if kind == "ring" and channels_option(options) > 1:
        from ...algorithms._build import Partition
        from ...algorithms.ring import ring_orders

        k = channels_option(options)
        chunks = Partition(n, k)
        blocks = [ceil_div(chunks.len(j), g) * s for j in range(k)]
        orders = ring_orders(g, k)
        out = PhaseList()
        out.extend(_ring_channels(topo, orders, blocks, True, 0, g - 1).phases)
        out.extend(_ring_channels(topo, orders, blocks, False, 0, g - 1).phases)
        return out
    if kind == "ring":
        if not topo.contiguous:
            return None
        out = PhaseList()
        blk = ceil_div(n, g) * s
        out.extend(_ring_pattern(topo, blk, blk, 0, g - 1).phases)
        out.extend(_ring_pattern(topo, blk, 0, 0, g - 1).phases)
        return out
    if kind == "recursive_doubling":
        return _rd_allreduce(topo, n, s, copy_single)
    if kind == "rabenseifner":
        return _rabenseifner(topo, n, s, copy_single)
    if kind == "tree":
        out = PhaseList()
        for sigs in binomial_reduce(topo, 0, n * s) + binomial_bcast(topo, 0, n * s, 0):
            out.add(1, *sigs)
        return out
    if kind == "double_binary_tree":
        return _dbt(topo, n, s, chunks_option(options, n), copy_single)
    if kind == "direct":
        return _direct(topo, n * s, n * s, n * s if (g == 1 and copy_single) else 0)
    return None


# -- public: phases of an algorithm -----------------------------------------------------------------

def regular_count(nranks: int, layout: Layout | None = None, chunks: int = 1) -> int:
    """The smallest element count that splits evenly at every level of every algorithm for
    ``nranks`` ranks (and the hierarchical algorithm's ``layout``), with ``chunks`` pipeline
    chunks; multiply it by anything to get more."""
    pof2 = 1 << (nranks.bit_length() - 1)
    base = math.lcm(nranks, pof2, 2 * chunks)
    if layout is not None:
        g = len(layout.nodes[0])
        P = len(layout.nodes)
        base = math.lcm(base, g * (1 << (P.bit_length() - 1)) * P, g * 2 * chunks,
                        g * (1 << (g.bit_length() - 1)))
    return base


def chunks_option(options: Mapping[str, Any] | None, count: int) -> int:
    k = options.get("chunks") if options else None
    return int(k) if k is not None else default_chunks(count)


def _rd_allgather(topo: Topo, mb: int, own_copy: int) -> PhaseList:
    """Recursive-doubling allgather of one block of ``mb`` bytes per member (fold for
    non-powers of two). A member whose data is still at its own input sends it from there and
    copies it into place (``own_copy`` bytes) the first time it sends."""
    g = topo.size
    out = PhaseList()
    if g == 1:
        if own_copy:
            out.add(1, Sig(copy=own_copy))
        return out
    f = Fold.of(g)
    idx = np.arange(g)
    pair = idx < 2 * f.rem
    even, odd = pair & (idx % 2 == 0), pair & (idx % 2 == 1)
    if f.rem:
        out.add(1, *vstep(topo, [(_peers(even, idx + 1), mb)], [(_peers(odd, idx - 1), mb)], 0,
                          np.where(odd, own_copy, 0)))
    survivors, nr, bound = _fold_arrays(f, g)
    alive = nr >= 0
    nra = np.where(alive, nr, 0)
    pending = alive & (idx >= 2 * f.rem)    # survivors that did not fold: own data unplaced
    for k in range(f.pof2.bit_length() - 1):
        m = 1 << k
        mine_lo = nra & ~(m - 1)
        theirs_lo = mine_lo ^ m
        mine = bound[mine_lo + m] - bound[mine_lo]
        theirs = bound[theirs_lo + m] - bound[theirs_lo]
        partner = np.where(alive, survivors[nra ^ m], NONE)
        copy = np.where(pending, own_copy, 0) if k == 0 else 0
        out.add(1, *vstep(topo, [(partner, np.where(alive, mine * mb, 0))],
                          [(partner, np.where(alive, theirs * mb, 0))], 0, copy))
    if f.rem:
        total = g * mb
        out.add(1, *vstep(topo, [(_peers(odd, idx - 1), total)], [(_peers(even, idx + 1), total)]))
    return out


def _recursive_halving_rs(topo: Topo, c: int, s: int) -> PhaseList:
    """Recursive-halving reduce_scatter of p blocks of c elements (fold, results sent back)."""
    g = topo.size
    out = PhaseList()
    if g == 1:
        return out
    f = Fold.of(g)
    n = c * g
    nb = n * s
    idx = np.arange(g)
    pair = idx < 2 * f.rem
    even, odd = pair & (idx % 2 == 0), pair & (idx % 2 == 1)
    if f.rem:
        out.add(1, *vstep(topo, [(_peers(even, idx + 1), nb)], [(_peers(odd, idx - 1), nb)],
                          np.where(odd, nb, 0)))
    offs = _fold_arrays(f, g)[2] * c
    out.extend(_halving(topo, f, offs, s).phases)
    if f.rem:
        out.add(1, *vstep(topo, [(_peers(odd, idx - 1), c * s)], [(_peers(even, idx + 1), c * s)]))
    return out
