"""The rank grid: which ranks form each process group, and where they sit on nodes.

Rank = Σ coordinate × stride over the dimensions in ``order`` (fastest first). Group kinds:

* ``tp``, ``ep``, ``dp``: ranks differing only in that coordinate;
* ``dp×ep``: ranks differing in dp and ep (dense gradients when experts are split);
* ``pp s-s+1``: the two ranks at the same place of stages s and s+1 (point-to-point);
* ``embedding``: the first and last stage's ranks (tied embedding gradients, Megatron).

Nodes hold consecutive ranks (``ranks_per_node`` each), as mpiexec and srun place them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from ..algorithms import Layout
from .plan import Parallel

DENSE_DP = "dp×ep"


@dataclass(frozen=True)
class Group:
    """One process group: its world ranks (ascending) and how they sit on nodes."""

    kind: str
    ranks: tuple[int, ...]
    ranks_per_node: int
    node_of: tuple[int, ...] | None = None   # node of each member (None: rank // ranks_per_node)

    @property
    def size(self) -> int:
        return len(self.ranks)

    @cached_property
    def nodes(self) -> tuple[tuple[int, ...], ...]:
        """Group-local indices per node, nodes in order of first appearance."""
        by_node: dict[int, list[int]] = {}
        for i, r in enumerate(self.ranks):
            node = self.node_of[i] if self.node_of is not None else r // self.ranks_per_node
            by_node.setdefault(node, []).append(i)
        return tuple(tuple(v) for v in by_node.values())

    @property
    def nnodes(self) -> int:
        return len(self.nodes)

    @property
    def per_node(self) -> int:
        return max(len(n) for n in self.nodes)

    def layout(self) -> Layout | None:
        """The group's node layout for the cost model (None: one node)."""
        return None if self.nnodes == 1 else Layout(self.nodes)

    def describe(self) -> str:
        if self.nnodes == 1:
            return f"{self.size} rank{'s' if self.size != 1 else ''} in 1 node"
        return f"{self.size} ranks over {self.nnodes} nodes, {self.per_node} per node"


class Grid:
    """Coordinates and groups of a resolved plan."""

    def __init__(self, par: Parallel) -> None:
        self.par = par
        self.sizes = {"tp": par.tp, "ep": par.ep, "dp": par.dp, "pp": par.pp}
        self.strides: dict[str, int] = {}
        stride = 1
        for dim in par.order:
            self.strides[dim] = stride
            stride *= self.sizes[dim]
        self.world = stride

    def coords(self, rank: int) -> dict[str, int]:
        return {d: (rank // self.strides[d]) % self.sizes[d] for d in self.sizes}

    def rank(self, coords: dict[str, int]) -> int:
        return sum(coords[d] * self.strides[d] for d in self.sizes)

    def _vary(self, rank: int, dims: tuple[str, ...], fixed: dict[str, int] | None = None) -> tuple[int, ...]:
        base = {**self.coords(rank), **(fixed or {})}
        ranks = [base]
        for dim in dims:
            ranks = [{**c, dim: v} for c in ranks for v in range(self.sizes[dim])]
        return tuple(sorted(self.rank(c) for c in ranks))

    def group_of(self, kind: str, rank: int) -> Group | None:
        """The group of ``kind`` holding ``rank`` (None: the rank is not in one)."""
        rpn = self.par.ranks_per_node
        if kind in ("tp", "ep", "dp"):
            return Group(kind, self._vary(rank, (kind,)), rpn)
        if kind == DENSE_DP:
            return Group(kind, self._vary(rank, ("dp", "ep")), rpn)
        stage = self.coords(rank)["pp"]
        if kind == "embedding":
            if stage not in (0, self.par.pp - 1):
                return None
            ranks = (self.rank({**self.coords(rank), "pp": 0}), self.rank({**self.coords(rank), "pp": self.par.pp - 1}))
            return Group(kind, tuple(sorted(ranks)), rpn)
        if kind.startswith("pp "):
            s = int(kind[3:].split("-")[0])
            if stage not in (s, s + 1):
                return None
            ranks = (self.rank({**self.coords(rank), "pp": s}), self.rank({**self.coords(rank), "pp": s + 1}))
            return Group(kind, ranks, rpn)
        raise ValueError(f"unknown group kind {kind!r}")

    def groups(self, kind: str) -> list[Group]:
        """Every group of ``kind`` (disjoint), in order of their lowest rank."""
        found: list[Group] = []
        covered: set[int] = set()
        for r in range(self.world):
            if r in covered:
                continue
            g = self.group_of(kind, r)
            if g is not None:          # groups are disjoint: r is the lowest rank of a new one
                found.append(g)
                covered.update(g.ranks)
        return found

    def representative(self, kind: str, stage: int | None = None) -> Group:
        """The group of ``kind`` holding the first rank of ``stage`` (default stage 0)."""
        first = self.rank({"tp": 0, "ep": 0, "dp": 0, "pp": stage or 0})
        group = self.group_of(kind, first)
        assert group is not None
        return group

    def nic_sharers(self, kind: str) -> int:
        """Most ranks of one node that cross nodes at once in groups of ``kind``: concurrent
        groups share the node's NICs (the cost model only sees one group)."""
        per_node: dict[int, int] = {}
        for g in self.groups(kind):
            if g.nnodes > 1:
                for r in g.ranks:
                    node = r // self.par.ranks_per_node
                    per_node[node] = per_node.get(node, 0) + 1
        return max(per_node.values(), default=0)


__all__ = ["Grid", "Group", "DENSE_DP"]
