"""NCCL's own collectives (``native`` on the nccl backend), modelled the way NCCL runs them.

NCCL does not run one fixed schedule: for every call it estimates, with its tuning model
(``src/graph/tuning.cc``), the time of each algorithm (Ring, Tree) × protocol (LL, LL128,
Simple) it has enabled, and runs the cheapest. This module reproduces that choice from NCCL's
published constants, then costs the chosen pair:

* **NCCL's estimate** (what NCCL believes): ``latency + bytes / bandwidth`` where the latency is
  a base per launch plus a per-hop latency for every step on NVLink, PCI or network, and the
  bandwidth is the graph's channels × per-channel bandwidth, reduced per protocol (LL moves 8 B
  of data per 16 B line, LL128 120 of 128 B) and capped per channel; Tree's bandwidth is scaled by
  a per-size correction table. Those inputs -- how many channels, at what per-channel rate, on
  which link class -- come from NCCL's topology search on the real machine; a profile's ``nccl``
  section gives them for its machine (see :class:`NcclSystem`), each with its source.
* **the realised time** (what collbench predicts for a measurement): NCCL's estimate of the
  chosen pair, run on the channels NCCL actually launches for that size (``enqueue.cc`` drops
  channels, then threads, while a channel would get less than ``threads × threshold`` bytes),
  with per-protocol realisation factors: measured latency / NCCL's latency and measured
  bandwidth / NCCL's bandwidth, plus (fitted only) an *aggregate* term, bytes at NCCL's
  bandwidth on all its channels: the launched channels run on one GPU and share it, so time
  grows with the bytes even where NCCL adds channels in step with the size (one Ring/LL channel
  per 32 KiB on 8 ranks). Every one-node log shows it: ABCI 1 x 8's Ring/LL takes 40 us at
  64 KiB and 76 us at 1 MiB, where NCCL's estimate on the launched channels is flat at 38 us.
  NCCL's own estimate is known to be optimistic at mid sizes (it
  only has to rank the pairs, not to be right), so a profile may carry factors fitted by
  ``collbench calibrate --from LOGS`` on nccl-tests logs of the same system class; without them
  the factors are 1 and the prediction is NCCL's own estimate on the channels it launches.

Constants are NCCL 2.30.7's (``src/graph/tuning.cc`` at 5067397c, copied verbatim in
/work/shared/reference/algorithms.md section 3.3) unless a comment says otherwise; Ampere
(compute capability 8.0, A100) rows only. CollNet (SHARP), NVLS and PAT are not modelled: none
is available by default on an A100 cluster without a CollNet plugin (reference section 3.1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, Iterator, Mapping

from ...algorithms import Collective
from .cost import Cost

PROTOCOLS = ("LL", "LL128", "Simple")
ALGORITHMS = ("tree", "ring")

# -- NCCL 2.30.7 src/graph/tuning.cc: latencies in microseconds ---------------------------------

# baseLat[algo][proto]: per launch (reference section 3.3: Tree {6.8, 14.0, 8.4}, Ring {6.6, 14.0, 8.4})
BASE_LAT = {"tree": (6.8, 14.0, 8.4), "ring": (6.6, 14.0, 8.4)}
# hwLat[link][algo][proto]: per hop (reference section 3.3 table, rows NVLINK, PCI, NET)
HW_LAT = {
    "nvlink": {"tree": (0.6, 1.25, 4.0), "ring": (0.6, 1.9, 3.4)},
    "pci": {"tree": (1.0, 1.9, 4.0), "ring": (1.0, 2.5, 5.7)},
    "net": {"tree": (5.0, 8.5, 14.0), "ring": (2.7, 4.0, 14.0)},
}
# getNetOverhead(): 1 us on Intel hosts, 2 us on AMD, x3 for Simple; a multi-node ring's intra
# hops cost at least this (reference section 3.3, "Latency assembly")
NET_OVERHEAD = {"intel": 1.0, "amd": 2.0}
# ncclTopoGetAlgoTime: a multi-node Simple ring allreduce's latency x1.4 on Ampere and newer once
# bytes / (channels x ranks) >= 64 ("plateau effect of ring", reference section 3.3)
RING_PLATEAU = 1.4

# -- bandwidth caps, GB/s, Ampere row -------------------------------------------------------------

# llMaxBws: [1 node (by GPU: Ampere), 2 nodes, >= 4 nodes (by CPU vendor)]
LL_MAX_BW = {"intel": (87.7, 39.0, 20.4), "amd": (87.7, 22.5, 19.0)}
PER_CH_MAX_RING_LL128_BW = 20.0            # perChMaxRingLL128Bws, Ampere, all scales
PER_CH_MAX_TREE_LL128_BW = 20.0            # perChMaxTreeLL128Bws, Ampere, all scales
PER_CH_MAX_TREE_BW = (24.0, 23.6, 17.8)     # perChMaxTreeBws, Ampere: 1, 2, >= 4 nodes

# treeCorrectionFactor[proto][log2(bytes / 64)], 64 B .. 256 MiB: NCCL 2.20.5 src/graph/tuning.cc
# (NVIDIA/nccl, read through the code index; the reference notes the same 0.4-1.0 range for 2.30.7)
TREE_CORRECTION = {
    "LL": (1.0, 1.0, 1.0, 1.0, .9, .8, .7, .7, .7, .7, .6, .5, .4, .4, .5, .6, .7, .8, .9, 1.0,
           1.0, 1.0, 1.0),
    "LL128": (1.0, 1.0, 1.0, 1.0, 1.0, .9, .8, .8, .8, .7, .6, .6, .6, .6, .6, .6, .8, .9, .9, .9,
              .9, 1.0, 1.0),
    "Simple": (.9, .9, .9, .9, .9, .9, .9, .8, .7, .6, .6, .5, .5, .5, .5, .6, .7, .8, .7, .7, .8,
               .9, .9),
}

# -- channels NCCL launches for one call (src/enqueue.cc getNthreadsAndChannels; src/include/comm.h)

THREAD_THRESHOLD = {"LL": 8, "LL128": 8, "Simple": 64}   # NCCL_*_THREAD_THRESHOLD (comm.h)
MAX_THREADS = {"LL": 512, "LL128": 640, "Simple": 512}   # NCCL_LL/LL128/SIMPLE_MAX_NTHREADS


@dataclass(frozen=True)
class NcclSystem:
    """What NCCL's topology search finds on one machine class, and how NCCL's estimate turns
    into measured time there (a profile's ``nccl`` section).

    Attributes:
        intra: link class of the intra-node graph, ``nvlink`` or ``pci`` (NCCL's hw index).
        intra_busbw: GB/s, channels × per-channel bandwidth of the one-node ring graph (A100
            with 12 NVLinks: 12 × SM80_NVLINK_BW 20 GB/s = 240).
        inter_busbw: GB/s, channels × per-channel bandwidth of the multi-node ring graph (the
            NICs NCCL spreads its channels over, at NCCL's per-NIC speed).
        channels: channels of the one-node graph (per-channel caps use it); NCCL launches up
            to twice as many (``ncclTopoPostset`` duplicates the rings).
        inter_channels: channels of the multi-node graph (0: ``channels``).
        cpu: ``intel`` or ``amd`` (network overhead per hop and the multi-node LL caps).
        ll128_multinode: LL128 enabled across nodes (NCCL enables it only when the GPU-NIC path
            is at most PXB, i.e. through a PCIe switch, not the CPU).
        latency_inter: us added per network hop (graph.latencyInter; twice for Simple).
        realisation: per class (``intra``: one node, ``inter``: several), how NCCL's estimate
            turns into measured time (:class:`Realisation`); absent: NCCL's estimate as is.
        algo_env, proto_env: the run's ``NCCL_ALGO`` and ``NCCL_PROTO`` (None: unset), which
            restrict the pairs NCCL may choose (:func:`enabled_by_env`); not part of a profile,
            set per run by :func:`with_env`.
    """

    intra_busbw: float
    inter_busbw: float
    channels: int
    intra: str = "nvlink"
    cpu: str = "amd"
    ll128_multinode: bool = True
    latency_inter: float = 0.0
    realisation: Mapping[str, "Realisation"] = field(default_factory=dict)
    inter_channels: int = 0
    algo_env: str | None = None
    proto_env: str | None = None

    def graph_channels(self, nnodes: int) -> int:
        """Channels of the graph NCCL searched for this many nodes."""
        return self.channels if nnodes <= 1 or not self.inter_channels else self.inter_channels

    def realised_as(self, nnodes: int) -> "Realisation":
        return self.realisation.get("intra" if nnodes <= 1 else "inter", IDENTITY)


@dataclass(frozen=True)
class Realisation:
    """Measured time / NCCL's estimate on one link class, per protocol: the latency is
    multiplied by ``lat_scale``, the bandwidth by ``bw_scale`` (both 1: NCCL's estimate).
    ``fitted_on`` names the logs they were fitted on (``collbench calibrate --from``) and
    ``fitted_sha256`` holds their contents' digests, so a check can warn when it judges a file
    with factors fitted on it (by content: files of one name from different systems are
    different logs). ``launch_per_gpu_us``: added
    per call for every GPU beyond the first that one process drives (nccl-tests ``-g N``
    launches N GPUs' kernels from one thread, one after another). ``aggregate``: per protocol,
    time per byte of NCCL's bandwidth on *all* its channels, added to the launched channels'
    term (0, NCCL's estimate, unless fitted on rows where NCCL launched fewer channels)."""

    lat_scale: Mapping[str, float] = field(default_factory=dict)
    bw_scale: Mapping[str, float] = field(default_factory=dict)
    fitted_on: tuple[str, ...] = ()
    launch_per_gpu_us: float = 0.0
    fitted_sha256: tuple[str, ...] = ()
    aggregate: Mapping[str, float] = field(default_factory=dict)

    def scales(self, proto: str) -> tuple[float, float]:
        return float(self.lat_scale.get(proto, 1.0)), float(self.bw_scale.get(proto, 1.0))

    def aggregate_of(self, proto: str) -> float:
        return float(self.aggregate.get(proto, 0.0))

    def parts_us(self, choice: "Choice", share: float, gpus_per_process: int = 1) -> tuple[float, float]:
        """(latency part, bytes part) of the realised time in µs of ``choice`` run on ``share``
        of NCCL's channels (:func:`channel_share`) by a process driving ``gpus_per_process``
        GPUs: the one formula the prediction and the fit's residuals use."""
        lat_scale, bw_scale = self.scales(choice.protocol)
        latency = self.launch_per_gpu_us * max(0, gpus_per_process - 1) + lat_scale * choice.latency_us
        all_channels = choice.nbytes / (1000.0 * choice.algbw_gbps)
        return latency, all_channels * (1.0 / (share * bw_scale) + self.aggregate_of(choice.protocol))


IDENTITY = Realisation()


@dataclass(frozen=True)
class Choice:
    """One (algorithm, protocol) pair as NCCL's tuning model sees it for one call."""

    algorithm: str          # ring | tree
    protocol: str           # LL | LL128 | Simple
    latency_us: float       # NCCL's latency (plateau included)
    algbw_gbps: float       # NCCL's algorithm bandwidth for this size (tree correction included)
    nbytes: int

    @property
    def estimate_us(self) -> float:
        """NCCL's estimate: ``latency + bytes / (1000 × algbw)``."""
        return self.latency_us + self.nbytes / (1000.0 * self.algbw_gbps)

    @property
    def label(self) -> str:
        return f"{self.algorithm}/{self.protocol}"


def _scale_index(nnodes: int) -> int:
    return 0 if nnodes <= 1 else 1 if nnodes == 2 else 2


def _steps(coll: Collective, nranks: int, nnodes: int) -> tuple[int, int]:
    """(steps, inter-node steps) of NCCL's ring for ``coll`` (reference section 3.3)."""
    if coll is Collective.ALLREDUCE:
        return 2 * (nranks - 1), 2 * (nnodes - 1)
    if coll in (Collective.ALLGATHER, Collective.REDUCE_SCATTER):
        return nranks - 1, nnodes - 1
    return nranks, nnodes          # broadcast, reduce: a pipelined chain


def _busbw(sys: NcclSystem, algo: str, proto: str, nranks: int, nnodes: int, coll: Collective) -> float:
    """NCCL's bus bandwidth of (algo, proto) before the conversion to algorithm bandwidth."""
    i = _scale_index(nnodes)
    ppn = nranks / nnodes
    # NCCL takes the graph's intra bandwidth on 1 and 2 nodes, its inter bandwidth beyond. A
    # multi-node ring graph runs both at one per-channel speed (the NIC's), but the search may
    # raise a tree graph's intra speed up to twice its inter speed (search.cc, "increase
    # bwIntra"): on 2 nodes, where each node sends half of a tree's traffic over the network,
    # Tree can reach twice the network's bandwidth (sjeaugey, NCCL issue #946)
    if nnodes == 1:
        bus = sys.intra_busbw
    elif algo == "tree" and nnodes == 2:
        bus = min(sys.intra_busbw, 2 * sys.inter_busbw)
    else:
        bus = min(sys.intra_busbw, sys.inter_busbw)
    ll_max = LL_MAX_BW.get(sys.cpu, LL_MAX_BW["amd"])[i]
    nch = sys.graph_channels(nnodes)
    if algo == "ring":
        if proto == "LL":
            bus = min(ll_max, bus * (0.25 if nnodes > 1 or coll in (Collective.ALLREDUCE, Collective.REDUCE)
                                     else 1 / 3))
        elif proto == "LL128":
            bus = min(bus * (0.7 if ppn < 2 else 0.92), nch * PER_CH_MAX_RING_LL128_BW)
        return bus
    bus = min(bus * 0.92, nch * PER_CH_MAX_TREE_BW[i])
    if proto == "LL":
        bus = min(bus / 3.8, ll_max)
    elif proto == "LL128":
        bus = min(bus * (7 / 9 if nnodes == 1 else 120 / 128), nch * PER_CH_MAX_TREE_LL128_BW)
    return bus


def _latency(sys: NcclSystem, algo: str, proto: str, nranks: int, nnodes: int,
             coll: Collective) -> float:
    """NCCL's latency of (algo, proto), in us (reference section 3.3, "Latency assembly")."""
    p = PROTOCOLS.index(proto)
    lat = BASE_LAT[algo][p]
    intra = HW_LAT[sys.intra][algo][p]
    inter = HW_LAT["net"][algo][p] + sys.latency_inter
    if proto == "Simple":
        inter += sys.latency_inter            # the flush
    if algo == "ring":
        steps, inter_steps = _steps(coll, nranks, nnodes)
        if coll in (Collective.BROADCAST, Collective.REDUCE):
            hop = HW_LAT["net" if nnodes > 1 else sys.intra]["tree" if proto == "Simple" else "ring"][p]
            return lat + steps * hop
        if nnodes > 1:
            overhead = NET_OVERHEAD.get(sys.cpu, 1.0) * (3 if proto == "Simple" else 1)
            intra = max(intra, overhead)
        return lat + (steps - inter_steps) * intra + inter_steps * inter
    ppn = nranks // nnodes
    return lat + 2 * ((ppn - 1) * intra + int(math.log2(nnodes)) * inter)


# -- NCCL_ALGO and NCCL_PROTO (reference section 3.5: the parser comment in tuning.cc) -----------

# NCCL's function names, which the per-function prefixes use (matched without case)
FUNCTION_NAMES = {Collective.ALLREDUCE: "allreduce", Collective.ALLGATHER: "allgather",
                  Collective.REDUCE_SCATTER: "reducescatter", Collective.BROADCAST: "broadcast",
                  Collective.REDUCE: "reduce"}
# every name NCCL accepts in each variable (lower case); the model runs the first two / three
NCCL_ALGORITHM_NAMES = ("tree", "ring", "collnetdirect", "collnetchain", "nvls", "nvlstree", "pat")
NCCL_PROTOCOL_NAMES = ("ll", "ll128", "simple")
ENV_VARIABLES = ("NCCL_ALGO", "NCCL_PROTO")   # the run's environment the model honours


@lru_cache(maxsize=256)
def enabled_by_env(value: str | None, names: tuple[str, ...], function: str
                   ) -> frozenset[str] | None:
    """What ``NCCL_ALGO`` or ``NCCL_PROTO`` = ``value`` enables for ``function``: a set of
    ``names`` (lower case), or None when it leaves NCCL's defaults (unset, or no entry applies).

    NCCL's grammar: entries separated by ``;``; every entry but the first starts with a function
    prefix and a colon (``allreduce:tree``; a comma list of functions is accepted here); an
    element list is comma separated and ``^`` in front enables everything but the listed ones;
    names match without case and unknown ones are ignored; a later entry for a function replaces
    an earlier one.

    Raises:
        ValueError: An entry after the first has no prefix (NCCL refuses it: ncclInvalidUsage).
    """
    if value is None or not value.strip():
        return None
    out: frozenset[str] | None = None
    for functions, negate, listed in _entries(value):
        if functions is not None and function not in functions:
            continue
        wanted = {e.lower() for e in listed}
        out = frozenset(n for n in names if (n in wanted) != negate)
    return out


def listed_names(value: str) -> list[str]:
    """Every name a ``NCCL_ALGO``/``NCCL_PROTO`` value lists, as written, in order (function
    prefixes and ``^`` left out).

    Raises:
        ValueError: As :func:`enabled_by_env`.
    """
    out: list[str] = []
    for _, _, listed in _entries(value):
        out += [name for name in listed if name not in out]
    return out


def _entries(value: str) -> Iterator[tuple[set[str] | None, bool, list[str]]]:
    """(functions or None for every function, negated, element names as written) per entry
    of :func:`enabled_by_env`'s grammar."""
    for i, entry in enumerate(value.split(";")):
        prefix, colon, elements = entry.partition(":")
        if not colon:
            if i:
                raise ValueError(f"every entry but the first needs a function prefix: {value!r}")
            elements, functions = prefix, None
        else:
            functions = {f.strip().lower() for f in prefix.split(",")}
        elements = elements.strip()
        listed = [e.strip() for e in elements.lstrip("^").split(",") if e.strip()]
        yield functions, elements.startswith("^"), listed


def with_env(sys: NcclSystem, env: Mapping[str, str] | None) -> NcclSystem:
    """``sys`` for a run with this environment (its ``NCCL_ALGO`` and ``NCCL_PROTO``)."""
    env = env or {}
    return replace(sys, algo_env=env.get("NCCL_ALGO"), proto_env=env.get("NCCL_PROTO"))


def _enabled(sys: NcclSystem, algo: str, proto: str, nnodes: int, coll: Collective) -> bool:
    if algo == "tree" and coll is not Collective.ALLREDUCE:
        return False                                  # Tree is allreduce-only (reference 3.1)
    function = FUNCTION_NAMES.get(coll, "")
    algos = enabled_by_env(sys.algo_env, NCCL_ALGORITHM_NAMES, function)
    protos = enabled_by_env(sys.proto_env, NCCL_PROTOCOL_NAMES, function)
    if algos is not None and algo not in algos:
        return False
    if protos is not None:
        # set by the user, LL128 is on wherever the variable enables it (NCCL's default for it,
        # "enabled where the hardware suits it", is replaced)
        return proto.lower() in protos
    if proto == "LL128" and nnodes > 1 and not sys.ll128_multinode:
        return False
    return True


def candidates(sys: NcclSystem, coll: Collective, nranks: int, nnodes: int,
               nbytes: int) -> list[Choice]:
    """Every enabled (algorithm, protocol) pair with NCCL's estimate for ``nbytes``."""
    out = []
    log_size = int(math.log2(nbytes >> 6)) if nbytes >> 6 else 0
    for algo in ALGORITHMS:
        for proto in PROTOCOLS:
            if not _enabled(sys, algo, proto, nnodes, coll):
                continue
            bus = _busbw(sys, algo, proto, nranks, nnodes, coll)
            steps, _ = _steps(coll, nranks, nnodes)
            algbw = bus * (nranks / steps if algo == "ring" else 0.5)
            if algo == "tree" and log_size < len(TREE_CORRECTION[proto]):
                algbw *= TREE_CORRECTION[proto][log_size]
            lat = _latency(sys, algo, proto, nranks, nnodes, coll)
            if (algo == "ring" and proto == "Simple" and nnodes > 1 and coll is Collective.ALLREDUCE
                    and nbytes / (2 * sys.graph_channels(nnodes) * nranks) >= 64):
                lat *= RING_PLATEAU
            if algbw > 0:
                out.append(Choice(algo, proto, lat, algbw, nbytes))
    return out


def choose(sys: NcclSystem, coll: Collective, nranks: int, nnodes: int, nbytes: int) -> Choice | None:
    """The pair NCCL runs: the lowest estimate (ties: NCCL's loop order, Tree before Ring)."""
    cands = candidates(sys, coll, nranks, nnodes, nbytes)
    return min(cands, key=lambda c: c.estimate_us, default=None)


def launched_channels(sys: NcclSystem, choice: Choice, nranks: int, nnodes: int) -> int:
    """Channels NCCL launches for this call: it starts from all of them (twice the graph's, the
    rings duplicated in ncclTopoPostset) and drops one while each would get fewer than
    ``threads × threshold`` bytes (Ring LL's threshold is multiplied by the rank count)."""
    nc = 2 * sys.graph_channels(nnodes)
    nt = MAX_THREADS[choice.protocol]
    threshold = THREAD_THRESHOLD[choice.protocol] * (nranks if (choice.algorithm, choice.protocol)
                                                     == ("ring", "LL") else 1)
    while choice.nbytes < nc * nt * threshold and nc > 1:
        nc -= 1
    return nc


def channel_share(sys: NcclSystem, choice: Choice, nranks: int, nnodes: int) -> float:
    """Channels NCCL launches for this call / all its channels (the graph's, duplicated)."""
    return launched_channels(sys, choice, nranks, nnodes) / (2 * sys.graph_channels(nnodes))


def realised(sys: NcclSystem, choice: Choice, nranks: int, nnodes: int,
             gpus_per_process: int = 1) -> Cost:
    """The predicted time of NCCL running ``choice``: its latency and bandwidth, on the
    channels it launches, times the profile's realisation factors (α: latency and launches,
    β: bytes)."""
    share = channel_share(sys, choice, nranks, nnodes)
    latency, nbytes = sys.realised_as(nnodes).parts_us(choice, share, gpus_per_process)
    return Cost(latency * 1e-6, nbytes * 1e-6, 0.0, 1)


def predict(sys: NcclSystem, coll: Collective, nranks: int, nnodes: int, nbytes: int,
            gpus_per_process: int = 1) -> tuple[Cost, Choice] | None:
    """(predicted cost, NCCL's choice) of NCCL's own collective, or None for one rank."""
    if nranks < 2 or nnodes < 1 or nranks % nnodes:
        return None
    choice = choose(sys, coll, nranks, nnodes, max(1, nbytes))
    if choice is None:
        return None
    return realised(sys, choice, nranks, nnodes, gpus_per_process), choice


def system_from_record(record: Any, where: str) -> NcclSystem:
    """A profile's ``nccl`` section as an :class:`NcclSystem` (mistakes: one UsageError line)."""
    from ...errors import UsageError

    if not isinstance(record, dict):
        raise UsageError(f"profile {where}: 'nccl' must be an object")
    try:
        sys = NcclSystem(
            intra_busbw=float(record["intra_busbw_gbps"]),
            inter_busbw=float(record.get("inter_busbw_gbps", record["intra_busbw_gbps"])),
            channels=int(record.get("channels", 12)),
            intra=str(record.get("intra", "nvlink")),
            cpu=str(record.get("cpu", "amd")),
            ll128_multinode=bool(record.get("ll128_multinode", True)),
            latency_inter=float(record.get("latency_inter_us", 0.0)),
            realisation={str(k): _realisation(v) for k, v in (record.get("realisation") or {}).items()},
            inter_channels=int(record.get("inter_channels", 0)),
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        raise UsageError(f"profile {where}: 'nccl' needs numbers intra_busbw_gbps (and "
                         f"inter_busbw_gbps, channels, ...); see collbench/analysis/model/nccl.py") from None
    if sys.intra not in HW_LAT or sys.intra == "net":
        raise UsageError(f"profile {where}: nccl.intra must be nvlink or pci, not {sys.intra!r}")
    if sys.cpu not in NET_OVERHEAD:
        raise UsageError(f"profile {where}: nccl.cpu must be intel or amd, not {sys.cpu!r}")
    if sys.intra_busbw <= 0 or sys.inter_busbw <= 0 or sys.channels < 1:
        raise UsageError(f"profile {where}: nccl bandwidths must be positive and channels >= 1")
    for cls, real in sys.realisation.items():
        bad = [p for p in (*real.lat_scale, *real.bw_scale) if p not in PROTOCOLS]
        if cls not in ("intra", "inter") or bad:
            raise UsageError(f"profile {where}: nccl.realisation has classes intra and inter, each "
                             f"with lat_scale and bw_scale per protocol ({', '.join(PROTOCOLS)})")
        if any(v <= 0 for v in (*real.lat_scale.values(), *real.bw_scale.values())):
            raise UsageError(f"profile {where}: nccl.realisation factors must be positive")
        if any(p not in PROTOCOLS or not v >= 0 for p, v in real.aggregate.items()):
            raise UsageError(f"profile {where}: nccl.realisation aggregate terms must be >= 0, "
                             f"per protocol ({', '.join(PROTOCOLS)})")
    return sys


def _realisation(record: Mapping[str, Any]) -> Realisation:
    return Realisation({str(k): float(v) for k, v in (record.get("lat_scale") or {}).items()},
                       {str(k): float(v) for k, v in (record.get("bw_scale") or {}).items()},
                       tuple(str(f) for f in record.get("fitted_on") or ()),
                       float(record.get("launch_per_gpu_us") or 0.0),
                       tuple(str(d) for d in record.get("fitted_sha256") or ()),
                       {str(k): float(v) for k, v in (record.get("aggregate") or {}).items()})


__all__ = ["NcclSystem", "Realisation", "Choice", "candidates", "choose", "predict", "realised",
           "launched_channels", "channel_share", "system_from_record", "PROTOCOLS", "enabled_by_env", "with_env"]
