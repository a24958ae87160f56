"""The α-β-γ cost model: what one step of one rank costs, and how steps add up.

The model is *bulk synchronous*: a collective is a sequence of steps (the schedule IR's step
index); in each step every rank posts its sends and receives, waits, then runs its local
copies and reductions. A step lasts as long as its slowest rank; the collective lasts the sum
of its steps. This is exactly what the schedule executors do (one Startall/Waitall per step),
and it makes the cost of a schedule computable two ways that must agree: by walking the
schedule (:mod:`.walk`) and by closed forms (:mod:`.closed`).

One rank in one step (``Sig``):

* sends and receives overlap (a link is full duplex), so communication costs
  ``max(send side, receive side)``;
* on one side, every message costs its link class's ``α`` (start-up is serialised by the
  sending/receiving process), and the bytes cost ``β`` per byte on that class, where a rank
  can drive ``ports`` intra-node links at once (A100 NVLink: one link bundle to each of 3 peers;
  a CPU process copying through shared memory: 1) -- so the bandwidth term of a class is
  ``max(largest message, total / ports) * β``;
* inter-node bytes go through the node's NICs: when ``m`` ranks of a node send (or receive)
  across nodes in the same step and the node has ``k`` NICs, each gets ``β_nic * max(1, m/k)``
  (one rank drives at most one NIC);
* local work is serial after communication: ``γ`` per reduced byte (output bytes of each
  reduction), ``δ`` per copied byte.

Approximations (documented where they matter): α is per message, not per step (a real
executor has a per-step cost and a smaller per-message one); bytes of two messages to the same
peer in one step share ``ports`` like messages to different peers; no network contention
beyond NIC sharing (fat tree / dragonfly assumed non-blocking); no overlap between one step's
local work and the next step's communication (the executors do not overlap either).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable


@dataclass(frozen=True)
class Link:
    """One class of link: start-up time per message and time per byte.

    Attributes:
        alpha: seconds per message.
        beta: seconds per byte (1 / bandwidth of one link, one direction).
        ports: links one rank can drive at full rate at once (intra-node only).
        large_from: messages of at least this many bytes use ``large_alpha``/``large_beta``
            instead (a protocol switch, e.g. MPI's eager -> rendezvous); 0: one regime. A side
            of a step is charged in the regime of its largest message.
    """

    alpha: float
    beta: float
    ports: int = 1
    large_from: float = 0.0
    large_alpha: float = 0.0
    large_beta: float = 0.0

    def regime(self, largest: float) -> tuple[float, float]:
        """(α, β) for a side whose largest message has ``largest`` bytes."""
        if self.large_from and largest >= self.large_from:
            return self.large_alpha, self.large_beta
        return self.alpha, self.beta


@dataclass(frozen=True)
class Machine:
    """Everything a cost needs, for one data type.

    Attributes:
        intra: links between ranks of one node.
        inter: one NIC (per-rank inter-node rate).
        nics: NICs per node, shared by the node's ranks.
        gamma: seconds per byte of reduction output (this dtype).
        delta: seconds per byte of local copy.
    """

    intra: Link
    inter: Link
    nics: int = 1
    gamma: float = 0.0
    delta: float = 0.0


@dataclass(frozen=True)
class Side:
    """One direction (send or receive) of one rank in one step.

    ``*_msgs``, ``*_max`` and ``*_total``: message count, largest message and total bytes on
    the intra- and inter-node link classes; ``share``: ranks of this node using the NICs in
    this direction in this step (including this one).
    """

    intra_msgs: int = 0
    intra_max: int = 0
    intra_total: int = 0
    inter_msgs: int = 0
    inter_max: int = 0
    inter_total: int = 0
    share: int = 0

    def cost(self, m: Machine, scale: float = 1.0) -> tuple[float, float]:
        """(α part, β part) in seconds; byte counts are multiplied by ``scale``."""
        a = b = 0.0
        if self.intra_msgs:
            alpha, beta = m.intra.regime(self.intra_max * scale)
            a += self.intra_msgs * alpha
            b += max(self.intra_max, self.intra_total / max(1, m.intra.ports)) * beta * scale
        if self.inter_msgs:
            alpha, beta = m.inter.regime(self.inter_max * scale)
            a += self.inter_msgs * alpha
            b += self.inter_total * beta * max(1.0, self.share / max(1, m.nics)) * scale
        return a, b


EMPTY = Side()


@dataclass(frozen=True)
class Sig:
    """What one rank does in one step: sends, receives, bytes reduced, bytes copied."""

    send: Side = EMPTY
    recv: Side = EMPTY
    reduce: int = 0
    copy: int = 0

    def parts(self, m: Machine, scale: float = 1.0) -> tuple[float, float, float]:
        """(α, β, local) seconds: the busier direction's α and β, then γ and δ work."""
        sa, sb = self.send.cost(m, scale)
        ra, rb = self.recv.cost(m, scale)
        a, b = (sa, sb) if sa + sb >= ra + rb else (ra, rb)
        return a, b, (self.reduce * m.gamma + self.copy * m.delta) * scale

    def time(self, m: Machine, scale: float = 1.0) -> float:
        a, b, c = self.parts(m, scale)
        return a + b + c


@dataclass(frozen=True)
class Phase:
    """``repeat`` identical steps; each lasts as long as its slowest candidate rank."""

    repeat: int
    candidates: tuple[Sig, ...]

    def parts(self, m: Machine, scale: float = 1.0) -> tuple[float, float, float]:
        best = max((c.parts(m, scale) for c in self.candidates), key=sum, default=(0.0, 0.0, 0.0))
        return best[0] * self.repeat, best[1] * self.repeat, best[2] * self.repeat


@dataclass(frozen=True)
class Cost:
    """A predicted time, split into its α (latency), β (bandwidth) and γ/δ (local) parts."""

    alpha: float
    beta: float
    local: float
    steps: int = 0

    @property
    def total(self) -> float:
        return self.alpha + self.beta + self.local

    @property
    def dominant(self) -> str:
        """Which term is largest: ``alpha``, ``beta`` or ``gamma`` (local work)."""
        terms = {"alpha": self.alpha, "beta": self.beta, "gamma": self.local}
        return max(terms, key=terms.get)  # type: ignore[arg-type]


def total(phases: Iterable[Phase], m: Machine, scale: float = 1.0) -> Cost:
    """Sum of the phases' costs (byte counts multiplied by ``scale``)."""
    a = b = c = 0.0
    steps = 0
    for phase in phases:
        pa, pb, pc = phase.parts(m, scale)
        a, b, c, steps = a + pa, b + pb, c + pc, steps + phase.repeat
    return Cost(a, b, c, steps)


@dataclass
class PhaseList:
    """Builds a list of phases, merging consecutive identical ones."""

    phases: list[Phase] = field(default_factory=list)

    def add(self, repeat: int, *candidates: Sig) -> None:
        if repeat <= 0:
            return
        cands = tuple(dict.fromkeys(c for c in candidates if c != Sig()))
        if not cands:
            return
        if self.phases and self.phases[-1].candidates == cands:
            last = self.phases[-1]
            self.phases[-1] = Phase(last.repeat + repeat, cands)
        else:
            self.phases.append(Phase(repeat, cands))

    def extend(self, other: Iterable[Phase]) -> None:
        for phase in other:
            self.add(phase.repeat, *phase.candidates)


@dataclass(frozen=True)
class Compiled:
    """Phases evaluated for one machine as lines in the byte scale: each candidate's time is
    ``alpha + scale * (beta + local)``. Candidates that another beats on both the α part and
    the per-scale part can never be a step's maximum at any scale >= 0 and are dropped, so a
    step over 16k ranks with as many distinct signatures costs a handful of multiplications."""

    rows: tuple[tuple[int, tuple[tuple[float, float, float], ...]], ...]
    phases: tuple[Phase, ...] | None = None    # kept when costs are not linear in the scale
    machine: Machine | None = None

    def cost(self, scale: float = 1.0) -> Cost:
        if self.phases is not None and self.machine is not None:
            return total(self.phases, self.machine, scale)
        a = b = c = 0.0
        steps = 0
        for repeat, cands in self.rows:
            best = max(cands, key=lambda x: x[0] + scale * (x[1] + x[2]))
            a += repeat * best[0]
            b += repeat * best[1] * scale
            c += repeat * best[2] * scale
            steps += repeat
        return Cost(a, b, c, steps)


def compile_phases(phases: Iterable[Phase], m: Machine) -> Compiled:
    if m.intra.large_from or m.inter.large_from:   # piecewise in the scale: no pruning
        return Compiled((), tuple(phases), m)
    rows = []
    for phase in phases:
        lines = sorted({c.parts(m, 1.0) for c in phase.candidates}, key=lambda x: (-x[0], -(x[1] + x[2])))
        front, best_slope = [], -1.0
        for line in lines:          # by α descending: keep a line only if it is steeper
            slope = line[1] + line[2]
            if slope > best_slope:
                front.append(line)
                best_slope = slope
        # α parts do not scale; β and local parts were computed at scale 1
        rows.append((phase.repeat, tuple(front)))
    return Compiled(tuple(rows))
