"""Ring: allreduce (reduce-scatter then allgather around the ring), allgather and reduce-scatter
on one ring or on K channels (``-O channels=K``), and broadcast and reduce as a chain along the
ring from (to) the root, pipelined in k chunks (``algorithms/ring.py``). Notation in
:mod:`collbench.analysis.model.costs`.

==================================  ==============  ========================  ================
collective, algorithm               α ×             β × n                     γ × n
==================================  ==============  ========================  ================
allreduce ring                      2(p-1)          2(p-1)/p                  (p-1)/p
allgather ring                      p-1             (p-1)/p                   0
reduce_scatter ring                 p-1             (p-1)/p                   (p-1)/p
broadcast ring                      p-2+k           (p-2+k)/k                 0
reduce ring                         p-2+k           (p-2+k)/k                 (p-2+k)/k
==================================  ==============  ========================  ================

Ring channels (allreduce/allgather/reduce-scatter): K rings in the same steps, ring ``k`` on
its own member order (:func:`~collbench.algorithms.ring.ring_orders`,
:func:`ring_channel_phases`); every message is charged on its own link, so rings that share a
link share its bandwidth. The linear patterns need a contiguous layout (else None: the model
walks the schedule).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ....algorithms import Collective, Problem
from ....algorithms._build import Partition
from ....algorithms.ring import ring_orders
from ..cost import EMPTY, PhaseList, Side, Sig
from ..topo import Topo, vstep
from . import register
from .common import alone, ceil_div, chunks_option


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
    layout = problem.layout
    nodes = None if layout is None else [list(n) for n in layout.nodes]
    return ring_orders(problem.nranks, channels, nodes)


def ring_channel_phases(problem: Problem, s: int, in_place: bool, channels: int,
                        topo: Topo) -> PhaseList | None:
    """Closed form of the ring allreduce, allgather and reduce-scatter on ``channels`` rings
    (``algorithms/ring.py``): channel ``k`` moves its part of every block around its own ring
    order, all channels in the same steps."""
    g, c, coll = problem.nranks, problem.count, problem.collective
    orders = _ring_orders(problem, channels)
    if coll is Collective.ALLREDUCE:
        if g == 1:
            return alone(0 if in_place else c * s)
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


def chain(topo: Topo, root: int, k: int, seg: int, reduce: bool, root_copy: int) -> PhaseList:
    """Pipelined chain along the ring from the root (broadcast) or to it (reduce)."""
    g = topo.size
    if g == 1:
        return alone(root_copy)
    out = PhaseList()
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


@register("ring", Collective.ALLREDUCE)
def allreduce(topo: Topo, problem: Problem, s: int, in_place: bool,
              options: Mapping[str, Any]) -> PhaseList | None:
    """Ring reduce-scatter then ring allgather of blocks of n/p."""
    channels = channels_option(options)
    if channels > 1:
        return ring_channel_phases(problem, s, in_place, channels, topo)
    g, n = topo.size, problem.count
    if g == 1:
        return alone(0 if in_place else n * s)
    out = PhaseList()
    if not topo.contiguous:
        return None
    blk = ceil_div(n, g) * s
    out.extend(_ring_pattern(topo, blk, blk, 0, g - 1).phases)
    out.extend(_ring_pattern(topo, blk, 0, 0, g - 1).phases)
    return out


@register("ring", Collective.ALLGATHER)
def allgather(topo: Topo, problem: Problem, s: int, in_place: bool,
              options: Mapping[str, Any]) -> PhaseList | None:
    """Ring allgather of one block per member (each step's range is one message)."""
    channels = channels_option(options)
    if channels > 1:
        return ring_channel_phases(problem, s, in_place, channels, topo)
    if not topo.contiguous:
        return None
    mb = problem.count * s
    own_copy = 0 if in_place else mb
    g = topo.size
    if g == 1:
        return alone(own_copy)
    out = PhaseList()
    idx = np.arange(g)
    nxt, prv = (idx + 1) % g, (idx - 1) % g
    out.add(1, *vstep(topo, [(nxt, mb)], [(prv, mb)], 0, own_copy))
    out.add(g - 2, *vstep(topo, [(nxt, mb)], [(prv, mb)]))
    return out


@register("ring", Collective.REDUCE_SCATTER)
def reduce_scatter(topo: Topo, problem: Problem, s: int, in_place: bool,
                   options: Mapping[str, Any]) -> PhaseList | None:
    """Ring reduce-scatter of one block per member."""
    channels = channels_option(options)
    if channels > 1:
        return ring_channel_phases(problem, s, in_place, channels, topo)
    g, blk = topo.size, problem.count
    if g == 1:
        return alone(0 if in_place else blk * s)
    return _ring_pattern(topo, blk * s, blk * s, 0, g - 1) if topo.contiguous else None


@register("ring", Collective.BROADCAST, Collective.REDUCE)
def pipelined_chain(topo: Topo, problem: Problem, s: int, in_place: bool,
                    options: Mapping[str, Any]) -> PhaseList | None:
    """Ring broadcast/reduce: a chain from the root, pipelined in chunks."""
    copy = 0 if in_place else problem.count * s
    if problem.nranks == 1:
        out = PhaseList()
        out.add(1, Sig(copy=copy))
        return out
    if not (topo.single or topo.contiguous):
        return None  # no closed form: the model walks the schedule
    k = chunks_option(options, problem.count)
    reduce = problem.collective is Collective.REDUCE
    return chain(topo, problem.root, k, ceil_div(problem.count, k) * s, reduce,
                 0 if reduce else copy)
