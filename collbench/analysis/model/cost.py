"""The α-β-γ cost model: what one step of one rank costs, and how steps add up.

The model is *bulk synchronous*: a collective is a sequence of steps (the schedule IR's step
index); in each step every rank posts its sends and receives, waits, then runs its local
copies and reductions. A step lasts as long as its slowest rank; the collective lasts the sum
of its steps. This is exactly what the schedule executors do (one Startall/Waitall per step),
and it makes the cost of a schedule computable two ways that must agree: by walking the
schedule (:mod:`.walk`) and by closed forms (:mod:`.costs`).

One rank in one step (``Sig``):

* sends and receives overlap (a link is full duplex), so communication costs
  ``max(send side, receive side)``;
* on one side, every message costs its link class's ``α`` (start-up is serialised by the
  sending/receiving process);
* the bytes are charged **per link**: all messages between the same pair of ranks in one step
  share that pair's link (``β`` per byte), and the messages to different peers share the rank's
  injection limit, ``ports`` links at full rate (A100 NVLink3 on a 4-GPU board: a 4-link bundle
  to each of 3 peers, ``ports = 3``; NVSwitch: any one peer at the full per-GPU rate, so the
  per-pair β is the injection rate and ``ports = 1``; a CPU process copying through shared
  memory: 1). The bandwidth term of the intra-node class is
  ``max(bytes to the busiest peer, total / ports) * β``;
* inter-node bytes go through the node's NICs: when ``m`` ranks of a node send (or receive)
  across nodes in the same step and the node has ``k`` NICs, each rank drives
  ``min(rank_nics, k/m)`` of them (``rank_nics``: how many NICs one rank can use at once --
  one per GPU rail on Perlmutter, two on a 16-NIC, 8-GPU node), so its bytes cost
  ``β_nic * max(1/rank_nics, m/k)``;
* a rank with both intra- and inter-node bytes in one step pays their sum, and every message's
  ``α``; with ``link_overlap`` (GPUs: a step's messages are posted together as one NCCL group,
  each on its own channel, and NVLink and NIC transfers proceed at once) it pays one ``α`` per
  link class and the larger of the two classes' terms;
* local work is serial after communication: ``γ`` per reduced byte (output bytes of each
  reduction), ``δ`` per copied byte.

Approximations (documented where they matter): α is per message, not per step (a real
executor has a per-step cost and a smaller per-message one); a side is charged in the
protocol regime of its busiest link; no network contention
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
        ports: links one rank can drive at full rate at once (intra-node only): the per-rank
            injection limit is ``ports`` times the per-pair rate.
        large_from: messages of at least this many bytes use ``large_alpha``/``large_beta``
            instead (a protocol switch, e.g. MPI's eager -> rendezvous); 0: one regime. A side
            of a step is charged in the regime of its busiest link (bytes to one peer).
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
        rank_nics: NICs one rank can drive at once (1: a GPU uses one NIC rail).
        link_overlap: a rank's messages of one step start and move at the same time (a GPU:
            one NCCL group, a channel per message), so a side costs one α per link class and
            the larger of its intra- and inter-node terms, not their sum (a CPU process: one
            message after the other).
        gamma: seconds per byte of reduction output (this dtype).
        delta: seconds per byte of local copy.
    """

    intra: Link
    inter: Link
    nics: int = 1
    gamma: float = 0.0
    delta: float = 0.0
    rank_nics: int = 1
    link_overlap: bool = False

    def nic_factor(self, share: int) -> float:
        """Time per NIC-byte multiplier for a rank when ``share`` ranks of its node use the
        NICs at once: it gets ``min(rank_nics, nics / share)`` NICs."""
        return max(1.0 / max(1, self.rank_nics), share / max(1, self.nics))


@dataclass(frozen=True)
class Side:
    """One direction (send or receive) of one rank in one step.

    ``*_msgs``, ``*_max`` and ``*_total``: message count, bytes to the busiest peer (all
    messages to it summed: they share one link) and total bytes on the intra- and inter-node
    link classes; ``share``: ranks of this node using the NICs in
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
        a_intra = a_inter = b_intra = b_inter = 0.0
        if self.intra_msgs:
            alpha, beta = m.intra.regime(self.intra_max * scale)
            a_intra = (1 if m.link_overlap else self.intra_msgs) * alpha
            b_intra = max(self.intra_max, self.intra_total / max(1, m.intra.ports)) * beta * scale
        if self.inter_msgs:
            alpha, beta = m.inter.regime(self.inter_max * scale)
            a_inter = (1 if m.link_overlap else self.inter_msgs) * alpha
            b_inter = self.inter_total * beta * m.nic_factor(self.share) * scale
        if m.link_overlap:
            # a GPU posts a step's messages together (one NCCL group, one channel each): their
            # start-ups overlap, and NVLink and NIC bytes move at the same time
            return max(a_intra, a_inter), max(b_intra, b_inter)
        # one CPU process starts and moves one message after the other
        return a_intra + a_inter, b_intra + b_inter


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
