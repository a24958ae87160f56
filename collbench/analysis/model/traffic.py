"""Prices an algorithm's registered, model-neutral cost (:mod:`collbench.algorithms.traffic`).

An algorithm may register, beside its generator, a cost function that lists the schedule's
steps as :class:`~collbench.algorithms.traffic.Traffic`: every rank's messages (peer,
elements), all-to-all exchanges inside groups, and local work (elements copied, reduced). This
module turns each entry into the model's per-step rank signatures -- every message classified
by the node layout (intra- or inter-node), NIC sharing counted, the distinct signatures kept --
exactly as the schedule walk (:mod:`.walk`) does from the real program, so the two agree.

Speed: a step costs O(ranks) (an exchange too: it counts group members per node instead of
listing messages). Steps whose peers are patterns (:class:`~collbench.algorithms.traffic.Shift`,
:class:`~collbench.algorithms.traffic.Xor`) are priced once per class the layout cannot tell
apart (on one node every shift costs the same; on nodes of ``g`` consecutive ranks every shift
between ``g`` and ``p-g`` crosses nodes for every rank), so ``p-1`` pairwise steps cost
O(g · ranks), not O(ranks²).
"""

from __future__ import annotations

from typing import Any, Hashable, Mapping, Sequence

import numpy as np

from ...algorithms import Problem
from ...algorithms.registry import get_algorithm
from ...algorithms.traffic import Peers, PerRank, Shift, Traffic, Xor
from .cost import EMPTY, Phase, PhaseList, Side, Sig
from .topo import Topo, topo_of, vstep


def _rows(value: PerRank, topo: Topo, scale: int) -> Any:
    """``value`` (one number or one per rank) times ``scale``, for the ranks the topo evaluates."""
    arr = np.asarray(value, dtype=np.int64) * scale
    if arr.ndim and topo.rows is not None:
        arr = arr[topo.rows]
    return arr


def _peer_array(peers: Peers, topo: Topo) -> np.ndarray:
    p = topo.size
    if isinstance(peers, Shift):
        arr = (np.arange(p) + peers.by) % p
    elif isinstance(peers, Xor):
        arr = np.arange(p) ^ peers.by
    else:
        arr = np.asarray(peers, dtype=np.int64)
    return arr[topo.rows] if topo.rows is not None else arr


class _Classes:
    """Which pattern steps a layout cannot tell apart (see the module docstring)."""

    def __init__(self, topo: Topo) -> None:
        self.p = topo.size
        self.single = topo.single and topo.rows is None
        sizes = np.bincount(topo.node) if topo.size else np.zeros(0, dtype=np.int64)
        self.g = int(sizes[0]) if topo.contiguous and len(set(sizes.tolist())) == 1 else 0
        if topo.rows is not None:
            self.g = 0

    def of(self, peers: Peers) -> Hashable | None:
        """A key equal for patterns that cost the same here; None: an explicit array."""
        p, g = self.p, self.g
        if isinstance(peers, Shift):
            if self.single:
                return "intra"
            s = peers.by % p
            return "cross" if g and g <= s <= p - g else ("shift", s)
        if isinstance(peers, Xor):
            if self.single:
                return "intra"
            aligned = g and g & (g - 1) == 0 and p % g == 0
            return "cross" if aligned and peers.by >= g else ("xor", peers.by)
        return None


def _step_key(step: Traffic, classes: _Classes) -> Hashable | None:
    """A cache key for a step made only of pattern messages and scalar amounts."""
    if step.exchange is not None or not np.isscalar(step.copy) or not np.isscalar(step.reduce):
        return None
    key: list[Hashable] = [int(step.copy), int(step.reduce)]
    for side in (step.sends, step.recvs):
        for peers, n in side:
            cls = classes.of(peers)
            if cls is None or not np.isscalar(n):
                return None
            key.append((cls, int(n)))
        key.append("|")
    return tuple(key)


def _exchange_sigs(topo: Topo, group: Sequence[int], nbytes: int, reduce: Any,
                   copy: Any) -> tuple[Sig, ...]:
    """Signatures of a step in which every rank sends ``nbytes`` to every other member of its
    group and receives as much from each: counts of group members on the rank's own node and
    elsewhere, O(ranks)."""
    grp = np.asarray(group, dtype=np.int64)
    node = topo.node
    size = np.bincount(grp)[grp]
    nnodes = topo.nnodes()
    same = np.bincount(grp * nnodes + node)[grp * nnodes + node]
    intra, inter = same - 1, size - same
    if topo.rows is not None:
        intra, inter, node = intra[topo.rows], inter[topo.rows], topo.me
    if not nbytes:
        intra, inter = intra * 0, inter * 0
    using = inter > 0
    share = (np.bincount(node[using], minlength=nnodes)[node] * topo.mult) * using
    cols = [intra, np.where(intra > 0, nbytes, 0), intra * nbytes,
            inter, np.where(inter > 0, nbytes, 0), inter * nbytes, share]
    g = len(intra)
    cols.append(np.broadcast_to(np.asarray(reduce, dtype=np.int64), (g,)))
    cols.append(np.broadcast_to(np.asarray(copy, dtype=np.int64), (g,)))
    rows = np.unique(np.stack(cols, axis=1), axis=0).tolist()
    sigs = []
    for row in rows:
        side = Side(*row[0:7]) if any(row[0:7]) else EMPTY
        if side is not EMPTY or row[7] or row[8]:
            sigs.append(Sig(side, side, row[7], row[8]))  # sends and receives are alike
    return tuple(sigs)


def traffic_phases(traffic: Sequence[Traffic], topo: Topo, itemsize: int) -> list[Phase]:
    """The phases of a registered cost: one per :class:`Traffic` entry (``repeat`` steps)."""
    out = PhaseList()
    classes = _Classes(topo)
    cache: dict[Hashable, tuple[Sig, ...]] = {}
    for step in traffic:
        key = _step_key(step, classes)
        sigs = cache.get(key) if key is not None else None
        if sigs is None:
            reduce, copy = _rows(step.reduce, topo, itemsize), _rows(step.copy, topo, itemsize)
            if step.exchange is not None:
                group, n = step.exchange
                sigs = _exchange_sigs(topo, group, int(n) * itemsize, reduce, copy)
            else:
                sends = [(_peer_array(peers, topo), _rows(n, topo, itemsize)) for peers, n in step.sends]
                recvs = [(_peer_array(peers, topo), _rows(n, topo, itemsize)) for peers, n in step.recvs]
                sigs = vstep(topo, sends, recvs, reduce, copy)
            if key is not None:
                cache[key] = sigs
        out.add(step.repeat, *sigs)
    return out.phases


def _implementation(algorithm: str, problem: Problem) -> Any:
    impl = get_algorithm(algorithm).implementations.get(problem.collective)
    return impl if impl is not None and impl.cost is not None else None


def has_registered_cost(algorithm: str, problem: Problem) -> bool:
    """Whether ``algorithm`` registered a cost function for ``problem``'s collective."""
    return _implementation(algorithm, problem) is not None


def registered_phases(algorithm: str, problem: Problem, itemsize: int, in_place: bool = False,
                      options: Mapping[str, Any] | None = None,
                      topo: Topo | None = None) -> list[Phase] | None:
    """The phases of ``algorithm``'s registered cost on ``problem`` (None: no formula there, or
    none registered; callers then walk the schedule)."""
    impl = _implementation(algorithm, problem)
    if impl is None:
        return None
    steps = impl.cost(problem, {**impl.defaults, **(options or {})}, in_place)
    if steps is None:
        return None
    return traffic_phases(steps, topo if topo is not None else topo_of(problem.layout, problem.nranks),
                          itemsize)
