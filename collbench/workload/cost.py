"""Costing a step's collectives with collbench's α-β-γ model.

Allreduce, allgather, reduce-scatter and alltoall go through
:class:`collbench.analysis.model.predict.Model` for the group's own node layout: a named
algorithm per kind, or ``auto`` -- the fastest one the model can cost, roughly what a tuned
library picks. Skewed expert routing (``skew`` > 1: the busiest rank receives skew x its share)
is costed as the uniform alltoall of skew x the bytes: an alltoall lasts as long as its busiest
receiver. Two cases the model has no schedule for are costed here with the same machinery
(:mod:`..cost` phases on the profile's links):

* alltoall when this collbench has no alltoall schedule: pairwise exchange, p-1 steps; in step
  i rank r sends its block for r+i and receives from r-i (n/p bytes each) on the link that pair
  uses, and the busiest receiver gets ``skew`` times its share;
* p2p (pipeline stages): one message from the sending stage to the receiving one.

Concurrent groups: the model sees one group, but every group of a kind runs at once (all DP
groups allreduce together), so when a group crosses nodes its ranks share the node's NICs with
the other groups' ranks. With M such ranks on a node, k NICs and m of the group's own ranks per
node, the inter-node bandwidth is divided by max(1, M/k) / max(1, m/k) (the model already
charges the group's own m). This is what makes TP+DP slower on Delta (one NIC per node) than on
Perlmutter (four).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ..algorithms import Collective
from ..algorithms.registry import algorithms_for
from ..analysis.model.cost import Cost, Phase, Side, Sig, total
from ..analysis.model.predict import Model
from ..analysis.model.profile import Level, Profile
from ..errors import UsageError
from .grid import Grid, Group
from .step import ALLTOALL, P2P, CommOp, Step

KINDS = ("dp", "tp", "pp", "ep")
OWN_FORMULA = {ALLTOALL: "pairwise (workload formula)", P2P: "send/recv"}
AUTO = "auto"


def parse_algos(text: str | None) -> dict[str, str]:
    """``--algo``: ``auto``, one name for every kind, or ``dp=ring,tp=auto``."""
    out = {k: AUTO for k in KINDS}
    if not text:
        return out
    parts = [p.strip() for p in text.split(",") if p.strip()]
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep:
            if len(parts) > 1:
                raise UsageError(f"--algo {text!r}: give one algorithm for every kind, or KIND=ALGO pairs "
                                 f"(kinds: {', '.join(KINDS)})")
            return {k: key for k in KINDS}
        if key not in KINDS:
            raise UsageError(f"--algo {text!r}: unknown kind {key!r} (known: {', '.join(KINDS)})")
        out[key] = value.strip()
    return out


def nic_factor(profile: Profile, group: Group, sharers: int) -> float:
    """How much slower the group's inter-node links are because other groups share the NICs."""
    if group.nnodes == 1 or sharers <= 0:
        return 1.0
    k = max(1, profile.nics_per_node)
    return max(1.0, sharers / k) / max(1.0, group.per_node / k)


def _slower(level: Level, factor: float) -> Level:
    large = level.large
    if large is not None:
        large = (large[0], large[1], large[2] / factor)
    return dataclasses.replace(level, bandwidth_gbps=level.bandwidth_gbps / factor, large=large)


@dataclass(frozen=True)
class OpCost:
    """One op's predicted time per call on one group."""

    op: CommOp
    group: Group
    algorithm: str
    cost: Cost
    nic_factor: float

    @property
    def seconds(self) -> float:
        return self.cost.total

    @property
    def step_seconds(self) -> float:
        return self.cost.total * self.op.calls


class Coster:
    """Costs ops on one profile; caches models (per NIC factor) and results."""

    def __init__(self, profile: Profile, algos: dict[str, str] | None = None, dtype: str = "bfloat16") -> None:
        self.profile = profile
        self.algos = algos or {k: AUTO for k in KINDS}
        self.dtype = dtype
        self._models: dict[float, Model] = {}
        self._cache: dict[tuple, tuple[str, Cost]] = {}

    def model(self, factor: float = 1.0) -> Model:
        key = round(factor, 6)
        if key not in self._models:
            profile = self.profile if key == 1.0 else dataclasses.replace(
                self.profile, inter=_slower(self.profile.inter, factor))
            self._models[key] = Model(profile)
        return self._models[key]

    def cost(self, op: CommOp, group: Group, sharers: int, in_place: bool = True,
             algorithm: str | None = None, exact: bool | None = False) -> OpCost:
        factor = nic_factor(self.profile, group, sharers)
        wanted = algorithm or self.algos.get(op.kind, AUTO)
        key = (op.collective, op.nbytes, group.nodes, factor, wanted, op.root, op.skew, in_place, exact)
        if key not in self._cache:
            self._cache[key] = self._cost(op, group, factor, wanted, in_place, exact)
        name, cost = self._cache[key]
        return OpCost(op, group, name, cost, factor)

    def _cost(self, op: CommOp, group: Group, factor: float, wanted: str, in_place: bool,
              exact: bool | None) -> tuple[str, Cost]:
        if group.size == 1:
            return "none", Cost(0.0, 0.0, 0.0)
        machine = self.model(factor).profile.machine(self.dtype)
        if op.collective == P2P:
            return OWN_FORMULA[P2P], total(p2p_phases(group, op.nbytes, op.root), machine)
        collective = Collective.parse(op.collective)
        names = ([a.name for a in algorithms_for(collective, include_native=False)] if wanted == AUTO
                 else [wanted])
        if op.collective == ALLTOALL and not names:
            # a collbench without alltoall schedules: this module's pairwise formula
            return OWN_FORMULA[ALLTOALL], total(alltoall_phases(group, op.nbytes, op.skew), machine)
        nbytes = op.nbytes
        if op.collective == ALLTOALL and op.skew != 1:
            # an alltoall lasts as long as its busiest receiver, which gets skew x its share: cost
            # the uniform alltoall of skew x the bytes (its messages, and so its α, are unchanged)
            nbytes = int(math.ceil(op.nbytes * op.skew))
        model = self.model(factor)
        best: tuple[str, Cost] | None = None
        # allreduce in place (DDP reduces its buckets in place); gathers and scatters out of place
        place = in_place and collective is Collective.ALLREDUCE
        for name in names:
            try:
                pred = model.predict(collective, name, group.size, nbytes, self.dtype, group.layout(),
                                     place, exact=exact)
            except ValueError:
                pred = None
            if pred is not None and (best is None or pred.cost.total < best[1].total):
                best = (pred.algorithm, pred.cost)
        if best is None:
            if wanted != AUTO:
                raise UsageError(f"--algo {op.kind}={wanted}: the model cannot cost {wanted} for "
                                 f"{op.collective} on {group.describe()} (no model, or its precondition "
                                 "fails); choose another or auto")
            raise UsageError(f"the model has no algorithm for {op.collective} on {group.describe()}")
        return best


def _node_of(group: Group) -> list[int]:
    node = [0] * group.size
    for k, members in enumerate(group.nodes):
        for i in members:
            node[i] = k
    return node


def _side(inter: bool, nbytes: int, share: int) -> Side:
    if inter:
        return Side(inter_msgs=1, inter_max=nbytes, inter_total=nbytes, share=share)
    return Side(intra_msgs=1, intra_max=nbytes, intra_total=nbytes)


def alltoall_phases(group: Group, nbytes: int, skew: float = 1.0) -> list[Phase]:
    """Pairwise exchange: p-1 steps of one n/p-byte message to and from each peer in turn."""
    p = group.size
    node = _node_of(group)
    block = -(-nbytes // p)
    received = int(math.ceil(block * skew))
    phases = []
    for i in range(1, p):
        crossing: dict[int, int] = {}
        for r in range(p):
            if node[r] != node[(r + i) % p]:
                crossing[node[r]] = crossing.get(node[r], 0) + 1
        sigs = set()
        for r in range(p):
            to, frm = (r + i) % p, (r - i) % p
            send = _side(node[r] != node[to], block, crossing.get(node[r], 0))
            recv = _side(node[r] != node[frm], received, crossing.get(node[r], 0))
            sigs.add(Sig(send, recv))
        phases.append(Phase(1, tuple(sigs)))
    return phases


def p2p_phases(group: Group, nbytes: int, root: int) -> list[Phase]:
    """One message between the two ranks of a stage-boundary pair."""
    inter = group.nnodes > 1
    side = _side(inter, nbytes, 1)
    return [Phase(1, (Sig(send=side), Sig(recv=side)))]


# -- a whole step ---------------------------------------------------------------------------------------


@dataclass
class StageCost:
    stage: int
    ops: list[OpCost]

    @property
    def seconds(self) -> float:
        return sum(c.step_seconds for c in self.ops)

    def by_kind(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for c in self.ops:
            out[c.op.kind] = out.get(c.op.kind, 0.0) + c.step_seconds
        return out


@dataclass
class StepCost:
    """Predicted communication of one step: every stage, and the busiest one."""

    step: Step
    stages: list[StageCost]

    @property
    def busiest(self) -> StageCost:
        return max(self.stages, key=lambda s: s.seconds)

    @property
    def seconds(self) -> float:
        return self.busiest.seconds

    def by_kind(self) -> dict[str, float]:
        return self.busiest.by_kind()

    def bound(self) -> str:
        """The busiest kind of traffic on the busiest stage, and what limits it."""
        kinds = self.by_kind()
        if not kinds or max(kinds.values()) <= 0:
            return "no communication"
        kind = max(kinds, key=kinds.get)  # type: ignore[arg-type]
        ops = [c for c in self.busiest.ops if c.op.kind == kind]
        a = sum(c.cost.alpha * c.op.calls for c in ops)
        b = sum(c.cost.beta * c.op.calls for c in ops)
        g = sum(c.cost.local * c.op.calls for c in ops)
        term = max((("latency α", a), ("bandwidth β", b), ("local reduction γ", g)), key=lambda x: x[1])[0]
        worst = max(ops, key=lambda c: c.step_seconds)
        where = worst.group.describe()
        if worst.group.nnodes > 1:
            where += ", inter-node"
            if worst.nic_factor > 1:
                where += f"; NIC bandwidth ÷{worst.nic_factor:g}, shared with other groups"
        else:
            where += ", intra-node"
        return f"{kind}: {term}; {where}"


def cost_step(step: Step, coster: Coster, exact: bool | None = False) -> StepCost:
    grid = Grid(step.par)
    sharers: dict[str, int] = {}
    stages = []
    for stage in range(step.par.pp):
        costs = []
        for op in step.stage_ops(stage):
            group = grid.representative(op.group, stage if op.group != "embedding" else 0)
            if op.group not in sharers:
                sharers[op.group] = grid.nic_sharers(op.group)
            costs.append(coster.cost(op, group, sharers[op.group], exact=exact))
        stages.append(StageCost(stage, costs))
    return StepCost(step, stages)


def describe_profile(profile: Profile) -> str:
    return (f"profile {profile.label}: intra α {profile.intra.alpha_us:g} us, "
            f"{profile.intra.bandwidth_gbps:g} GB/s{f' x{profile.intra.ports}' if profile.intra.ports > 1 else ''}; "
            f"inter α {profile.inter.alpha_us:g} us, {profile.inter.bandwidth_gbps:g} GB/s per NIC, "
            f"{profile.nics_per_node} NIC(s) per node")


__all__ = ["Coster", "OpCost", "StageCost", "StepCost", "cost_step", "parse_algos", "nic_factor",
           "alltoall_phases", "p2p_phases", "describe_profile", "KINDS", "AUTO"]
