"""Machine profiles: the α, β, γ constants of a machine, as JSON files.

A profile has two link levels -- ``intra`` (ranks of one node) and ``inter`` (one NIC) -- and
the node's NIC count, local reduction throughput per data type and copy throughput::

    {"collbench_profile": 1, "name": "perlmutter", "description": "...",
     "ranks_per_node": 4,                      # the usual rank count per node (GPUs)
     "intra": {"alpha_us": 3.4, "bandwidth_gbps": 100, "ports": 3},
     "inter": {"alpha_us": 14.0, "bandwidth_gbps": 25},
     # optional on a level: "large": {"from_bytes": 32768, "alpha_us": 8, "bandwidth_gbps": 7}
     # -- messages from that size on cost the second α, β (MPI's eager -> rendezvous switch)
     "nics_per_node": 4,
     "reduce_gbps": {"default": 518, "float32": 518},   # bytes of reduction output per second
     "copy_gbps": 777,
     "sources": {"intra.alpha_us": "where the number comes from", ...}}

``bandwidth_gbps`` is per link and direction (10⁹ B/s): for ``intra`` the rate between one pair
of ranks, ``ports`` how many such pairs one rank can drive at full rate at once (its injection
limit is ``ports × bandwidth``). Topology classes (``"topology"``, descriptive, checked):

* ``nvswitch`` -- DGX/HGX A100 8-GPU: any pair at the full per-GPU rate through the switches,
  so ``bandwidth_gbps`` is the per-GPU rate and ``ports`` 1;
* ``nvlink`` -- 4-GPU NVLink3 all-to-all (Perlmutter, Polaris, Delta): 4 links to each peer,
  ``bandwidth_gbps`` per pair and ``ports`` 3;
* ``pcie`` -- GPUs that talk through PCIe (and the CPU): one shared port;
* ``shm`` -- CPU processes copying through shared memory.

``link_overlap`` (GPU profiles): a rank's NVLink and NIC bytes of one step move at once.
NICs: ``nics_per_node`` shared by the node's ranks; ``rank_nics`` (default 1) how many of them
one rank can drive at once. ``"nics": "rail"`` (one NIC per GPU, rank i of every node on rail
i), ``"shared"`` (fewer NICs than GPUs) or ``"multi"`` (several NICs per GPU) says which case
the numbers describe. An optional ``nccl`` section models NCCL's own collectives
(:mod:`.nccl`). JSON has no comments, so every constant of a shipped profile cites
its source in ``sources`` under its dotted name (tests check that each one does). A calibrated
profile (``collbench calibrate``) adds ``fit`` records (values with standard errors, R², the
sizes fitted) and ``metadata`` (host, MPI library, executor, date, ranks).

Shipped profiles live in ``collbench/analysis/profiles/``; ``collbench calibrate`` writes this
machine's to ``~/.config/collbench/profiles/<host>.json`` ($XDG_CONFIG_HOME honoured) unless told
``--out``. :func:`load_profile` accepts a shipped name, ``local`` (this host's calibrated
profile) or a path.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ...errors import UsageError
from .cost import Link, Machine
from .nccl import NcclSystem, system_from_record

INTRA_KINDS = ("nvswitch", "nvlink", "pcie", "shm", "other")
NIC_KINDS = ("rail", "shared", "multi", "none")

PROFILE_VERSION = 1
GENERIC = "generic"


@dataclass(frozen=True)
class Level:
    alpha_us: float
    bandwidth_gbps: float
    ports: int = 1
    large: tuple[float, float, float] | None = None   # (from bytes, alpha us, GB/s)

    def link(self) -> Link:
        link = Link(self.alpha_us * 1e-6, 1.0 / (self.bandwidth_gbps * 1e9), max(1, self.ports))
        if self.large:
            frm, alpha, bw = self.large
            link = Link(link.alpha, link.beta, link.ports, frm, alpha * 1e-6, 1.0 / (bw * 1e9))
        return link


@dataclass(frozen=True)
class Profile:
    """A machine's cost constants (see the module docstring for the file format)."""

    name: str
    intra: Level
    inter: Level
    nics_per_node: int = 1
    reduce_gbps: dict[str, float] = field(default_factory=dict)
    copy_gbps: float = 0.0
    ranks_per_node: int | None = None
    description: str = ""
    path: str | None = None
    record: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    rank_nics: int = 1
    topology: dict[str, str] = field(default_factory=dict)
    nccl: NcclSystem | None = None
    link_overlap: bool = False

    def reduce_rate(self, dtype: str | None) -> float:
        """Bytes of reduction output per second for ``dtype`` (the default when not listed)."""
        rates = self.reduce_gbps
        value = rates.get(dtype or "", rates.get("default", 0.0))
        return value * 1e9

    def machine(self, dtype: str | None = "float32") -> Machine:
        rate = self.reduce_rate(dtype)
        return Machine(self.intra.link(), self.inter.link(), max(1, self.nics_per_node),
                       1.0 / rate if rate > 0 else 0.0,
                       1.0 / (self.copy_gbps * 1e9) if self.copy_gbps > 0 else 0.0,
                       max(1, self.rank_nics), self.link_overlap)

    @property
    def label(self) -> str:
        return self.name + (f" ({self.path})" if self.path else "")


def _level(record: Any, what: str, where: str) -> Level:
    if not isinstance(record, dict):
        raise UsageError(f"profile {where}: '{what}' must be an object with alpha_us and bandwidth_gbps")
    try:
        alpha = float(record["alpha_us"])
        bandwidth = float(record["bandwidth_gbps"])
        ports = int(record.get("ports", 1))
    except (KeyError, TypeError, ValueError):
        raise UsageError(f"profile {where}: '{what}' needs numbers alpha_us and bandwidth_gbps") from None
    if alpha < 0 or bandwidth <= 0 or ports < 1:
        raise UsageError(f"profile {where}: '{what}' needs alpha_us >= 0, bandwidth_gbps > 0, ports >= 1")
    large = record.get("large")
    if large is not None:
        try:
            frm, la, lb = float(large["from_bytes"]), float(large["alpha_us"]), float(large["bandwidth_gbps"])
        except (KeyError, TypeError, ValueError):
            raise UsageError(f"profile {where}: '{what}.large' needs from_bytes, alpha_us and "
                             f"bandwidth_gbps") from None
        if frm <= 0 or la < 0 or lb <= 0:
            raise UsageError(f"profile {where}: '{what}.large' needs positive numbers")
        return Level(alpha, bandwidth, ports, (frm, la, lb))
    return Level(alpha, bandwidth, ports)


def profile_from_record(record: Any, where: str = "<record>") -> Profile:
    """Validate a parsed profile; every mistake is one UsageError line naming the file."""
    if not isinstance(record, dict) or "collbench_profile" not in record:
        raise UsageError(f"{where} is not a collbench machine profile (no 'collbench_profile' key)")
    if int(record["collbench_profile"]) > PROFILE_VERSION:
        raise UsageError(f"{where}: profile version {record['collbench_profile']} is newer than this "
                         f"collbench understands ({PROFILE_VERSION})")
    intra = _level(record.get("intra"), "intra", where)
    inter = _level(record.get("inter", record.get("intra")), "inter", where)
    reduce = record.get("reduce_gbps", {})
    if isinstance(reduce, (int, float)):
        reduce = {"default": float(reduce)}
    if not isinstance(reduce, dict) or not all(isinstance(v, (int, float)) and v > 0
                                               for v in reduce.values()):
        raise UsageError(f"profile {where}: reduce_gbps must map data types to positive GB/s")
    try:
        nics = int(record.get("nics_per_node", 1))
        copy = float(record.get("copy_gbps", 0.0))
    except (TypeError, ValueError):
        raise UsageError(f"profile {where}: nics_per_node and copy_gbps must be numbers") from None
    rpn = record.get("ranks_per_node")
    try:
        rank_nics = int(record.get("rank_nics", 1))
    except (TypeError, ValueError):
        raise UsageError(f"profile {where}: rank_nics must be a whole number") from None
    topology = _topology(record.get("topology", {}), where)
    nccl = system_from_record(record["nccl"], where) if record.get("nccl") is not None else None
    return Profile(str(record.get("name", Path(where).stem)), intra, inter, max(1, nics),
                   {str(k): float(v) for k, v in reduce.items()}, copy,
                   int(rpn) if rpn else None, str(record.get("description", "")), None, record,
                   max(1, rank_nics), topology, nccl, bool(record.get("link_overlap", False)))


def _topology(record: Any, where: str) -> dict[str, str]:
    """The descriptive topology class: ``{"intra": INTRA_KINDS, "nics": NIC_KINDS}``."""
    if not isinstance(record, dict):
        raise UsageError(f"profile {where}: 'topology' must be an object")
    intra, nics = record.get("intra"), record.get("nics")
    if intra is not None and intra not in INTRA_KINDS:
        raise UsageError(f"profile {where}: topology.intra must be one of {', '.join(INTRA_KINDS)}")
    if nics is not None and nics not in NIC_KINDS:
        raise UsageError(f"profile {where}: topology.nics must be one of {', '.join(NIC_KINDS)}")
    return {k: str(v) for k, v in record.items() if v is not None}


def shipped_names() -> list[str]:
    folder = resources.files("collbench.analysis") / "profiles"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


def local_profile_path(host: str | None = None) -> Path:
    """Where ``collbench calibrate`` keeps this host's profile by default."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "collbench" / "profiles" / f"{host or socket.gethostname()}.json"


def load_profile(spec: str | None) -> Profile:
    """A profile by shipped name (``perlmutter``, ``delta``, ``generic``, ...), ``local`` (this
    host's calibrated profile), or a JSON file path; None means :func:`default_profile`."""
    if spec is None:
        return default_profile()
    if spec == "local":
        path = local_profile_path()
        if not path.is_file():
            raise UsageError(f"no calibrated profile for this host at {path}; run `collbench calibrate`")
        return _read(path)
    names = shipped_names()
    if spec in names:
        text = (resources.files("collbench.analysis") / "profiles" / f"{spec}.json").read_text()
        return profile_from_record(json.loads(text), f"{spec}.json")
    path = Path(spec)
    if not path.exists():
        raise UsageError(f"no such profile {spec!r}: give a file, 'local' or one of "
                         f"{', '.join(names)}")
    return _read(path)


def _read(path: Path) -> Profile:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read profile {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"profile {path} is not valid JSON: {exc.msg} (line {exc.lineno})") from None
    profile = profile_from_record(record, str(path))
    return dataclasses.replace(profile, path=str(path))


def default_profile() -> Profile:
    """This host's calibrated profile when there is one, else the built-in generic one."""
    path = local_profile_path()
    if path.is_file():
        return _read(path)
    return load_profile(GENERIC)


def save_profile(record: dict[str, Any], path: Path) -> None:
    """Validate and write a profile record (parents created; an existing file is replaced:
    a profile is a cache of the machine's constants, not a measurement to keep)."""
    profile_from_record(record, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)
