"""``--nccl-log``: NCCL's INFO log of every rank next to the results file, and what it says.

``collbench run --backend nccl --nccl-log`` sets, before NCCL initialises (in the launcher and
in every rank, as for ``--nccl-algo``):

* ``NCCL_DEBUG=INFO`` (TRACE is kept: it includes INFO);
* ``NCCL_DEBUG_FILE=<results>.nccl/nccl.%h.%p.log``: NCCL expands ``%h`` to the host name (up
  to its first dot) and ``%p`` to the process id, so every rank writes its own file
  (NVIDIA/nccl ``src/debug.cc``, ``ncclDebugInit``; NCCL only opens the file when the level is
  above VERSION, and needs the directory to exist, which collbench creates);
* ``NCCL_DEBUG_SUBSYS=INIT,BOOTSTRAP,ENV,GRAPH`` unless already set: NCCL's default subsystems
  plus GRAPH, whose topology-search lines (``Pattern 4, ..., type NVL/PIX``) say whether the
  GPUs of a node talk over NVLink, which the connection lines do not.

:func:`collect` (metadata time, once NCCL is initialised) has every rank parse its own file and
rank 0 combine them into the metadata's ``nccl_log`` record: the NCCL version, the network
(IB, Socket or a plugin), the transports of the connections NCCL logged (``P2P/NVLink``,
``P2P/IPC``, ``P2P/CUMEM``, ``SHM``, ``NET/IB``, ``NET/Socket``, …) with counts, per rank. NCCL
2.22 and later connect channels at the first collective that needs them, so the metadata may
list fewer connections than the run made; ``collbench trace nccl-log DIR`` summarises the
complete files after the run. A missing, unreadable or empty log is one warning line, never an
error: the measurement goes on and nothing already written is touched.

Line formats (the messages NCCL's INFO/WARN macros print after its ``host:pid:tid [dev] NCCL
INFO`` prefix, optionally preceded by a ``[timestamp]``; NVIDIA/nccl ``src/debug.cc``):

* connections: ``Channel 02/0 : 7[7] -> 0[0] via P2P/CUMEM``, ``... via P2P/IPC/read``,
  ``... via P2P/direct pointer`` (``src/transport/p2p.cc``), ``Channel 00 : 0[0] -> 1[1] via
  SHM/direct/direct`` (``src/transport/shm.cc``), ``Channel 00/0 : 0[0] -> 2[0] [send] via
  NET/IB/3/GDRDMA`` (``src/transport/net.cc``); NCCL 2.3 and older wrote ``Ring 00 : ...``;
* the network: ``NET/IB : Using [0]mlx5_0:1/IB [1]mlx5_1:1/RoCE ; OOB eth0:10.0.0.1<0>``,
  ``NET/Socket : Using [0]eth0:10.0.0.1<0>``, ``Using network IB``;
* topology: ``Pattern 4, crossNic 0, nChannels 16, bw 40.000000/40.000000, type NVL/PIX,
  sameChannels 1`` (``src/graph/search.cc``, ``ncclTopoPrintGraph``);
* ``NCCL version 2.21.5+cuda12.4`` (rank 0 only; without the prefix in recent versions).
"""

from __future__ import annotations

import glob
import os
import re
import socket
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError

LOG_NAME = "nccl.%h.%p.log"
DEFAULT_SUBSYS = "INIT,BOOTSTRAP,ENV,GRAPH"
#: the directory of this run's logs, set by ``run --nccl-log`` (and recorded with the env)
DIR_VARIABLE = "COLLBENCH_NCCL_LOG"
WHEN = "after NCCL initialisation"

_PREFIX = re.compile(r"\[(?P<dev>\d+)\] (?:\S+:\d+ )?NCCL (?P<level>INFO|WARN) (?P<msg>.*)$")
_VERSION = re.compile(r"NCCL version (?P<version>\d+\.\d+\.\d+\S*)")
_CONNECTION = re.compile(r"^(?:Channel|Ring) (?P<channel>\d+)(?:/(?P<conn>\d+))? : (?P<src>\d+)\[[0-9a-fA-F]+\] "
                         r"-> (?P<dst>\d+)\[[0-9a-fA-F]+\](?: \[(?P<dir>send|receive)\])? via (?P<via>\S.*?)\s*$")
_NET_DEVICES = re.compile(r"^NET/(?P<net>[^:]+?) ?: Using (?P<devices>.*?)(?: ?; OOB .*)?$")
_NETWORK = re.compile(r"^Using network (?P<net>.+?)\s*$")
_PATTERN = re.compile(r"^Pattern \d+, crossNic \d+, nChannels \d+, .*\btype (?P<intra>[A-Z0-9]+)/(?P<inter>[A-Z0-9]+)")
# intra-node path types of NCCL's topology (src/graph/topo.h): NVLink, or NVLink through a GPU
_NVLINK_PATHS = {"NVL", "NVB"}
# the order transports are listed in: fastest path first
_ORDER = ("P2P/NVLink", "P2P/CUMEM", "P2P/IPC", "P2P/direct", "SHM", "NVLS", "COLLNET", "NET/IB", "NET/Socket")


@dataclass
class LogSummary:
    """What one NCCL log says (one process, usually one rank)."""

    file: str
    lines: int = 0                      # NCCL INFO/WARN lines
    version: str | None = None
    network: str | None = None          # "Using network X"
    net_devices: dict[str, list[str]] = field(default_factory=dict)   # NET/IB -> ["[0]mlx5_0:1/IB", ...]
    intra_paths: list[str] = field(default_factory=list)               # topology search: NVL, PIX, ...
    connections: dict[str, int] = field(default_factory=dict)          # as NCCL printed them, counted
    warnings: list[str] = field(default_factory=list)                  # NCCL WARN messages (first few)

    @property
    def transports(self) -> list[str]:
        nvlink = bool(set(self.intra_paths) & _NVLINK_PATHS)
        return _ordered({transport_class(via, nvlink) for via in self.connections})

    def record(self) -> dict[str, Any]:
        return {"file": self.file, "lines": self.lines, "version": self.version, "network": self.network,
                "net_devices": self.net_devices, "intra_paths": self.intra_paths,
                "transports": self.transports, "connections": self.connections,
                "nccl_warnings": self.warnings}


def transport_class(via: str, nvlink: bool = False) -> str:
    """The transport of one connection, from what follows ``via``: ``P2P/CUMEM/read`` is
    ``P2P/NVLink`` when the topology says the node's GPUs are NVLink-connected, else
    ``P2P/CUMEM``; ``SHM/direct/direct`` is ``SHM``; ``NET/IB/3/GDRDMA`` is ``NET/IB``."""
    parts = via.split("/")
    family = parts[0].strip().upper()
    if family == "P2P":
        mechanism = parts[1].split()[0] if len(parts) > 1 and parts[1].strip() else "?"
        if nvlink or mechanism == "MNNVL":  # MNNVL: NVLink across nodes
            return "P2P/NVLink"
        return f"P2P/{mechanism}"
    if family == "NET":
        return f"NET/{parts[1].strip()}" if len(parts) > 1 else "NET"
    return family


def parse(text: str, name: str = "") -> LogSummary:
    """Summarise one NCCL log (the text of one ``NCCL_DEBUG_FILE``); never raises on odd lines."""
    summary = LogSummary(name)
    connections: Counter[str] = Counter()
    paths: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        version = _VERSION.search(line)
        if version and summary.version is None:
            summary.version = version.group("version")
        found = _PREFIX.search(line)
        if not found:
            continue
        summary.lines += 1
        message = found.group("msg").strip()
        if found.group("level") == "WARN":
            if len(summary.warnings) < 5:
                summary.warnings.append(message)
            continue
        if (match := _CONNECTION.match(message)) is not None:
            connections[match.group("via")] += 1
        elif (match := _NETWORK.match(message)) is not None:
            summary.network = match.group("net")
        elif (match := _NET_DEVICES.match(message)) is not None:
            devices = re.findall(r"\[\d+\]\S+", match.group("devices"))
            if devices:  # not "NET/Plugin: Using internal network plugin."
                summary.net_devices[f"NET/{match.group('net').strip()}"] = devices
        elif (match := _PATTERN.match(message)) is not None and match.group("intra") not in paths:
            paths.append(match.group("intra"))
    summary.connections = dict(sorted(connections.items()))
    summary.intra_paths = paths
    return summary


def _ordered(names: set[str]) -> list[str]:
    rank = {name: i for i, name in enumerate(_ORDER)}
    return sorted(names, key=lambda n: (rank.get(n, len(_ORDER)), n))


# -- the run's side: environment, per-rank files, the metadata record ---------------------------


def log_dir(results: Path) -> Path:
    """``results/x.jsonl`` -> ``results/x.nccl``: the logs live beside their results file."""
    return results.with_name(results.stem + ".nccl")


def configure_environment(directory: Path, environ: Any = None) -> None:
    """Point NCCL's INFO log at ``directory`` (call before NCCL initialises; idempotent).

    Raises:
        UsageError: the directory cannot be created.
    """
    env = os.environ if environ is None else environ
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--nccl-log: cannot create {directory}: {exc.strerror or exc}") from None
    if env.get("NCCL_DEBUG", "").strip().upper() != "TRACE":
        env["NCCL_DEBUG"] = "INFO"
    env["NCCL_DEBUG_FILE"] = str(directory).replace("%", "%%") + os.sep + LOG_NAME
    env.setdefault("NCCL_DEBUG_SUBSYS", DEFAULT_SUBSYS)
    env[DIR_VARIABLE] = str(directory)


def expand(pattern: str, host: str, pid: int) -> str:
    """NCCL's expansion of ``NCCL_DEBUG_FILE``: ``%h`` host, ``%p`` pid, ``%%`` a percent sign,
    anything else echoed (src/debug.cc)."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c != "%" or i + 1 >= len(pattern):
            out.append(c)
            i += 1
            continue
        code = pattern[i + 1]
        out.append({"%": "%", "h": host, "p": str(pid)}.get(code, "%" + code))
        i += 2
    return "".join(out)


def own_log(environ: Any = None) -> Path | None:
    """This process's log file, if NCCL wrote one where ``NCCL_DEBUG_FILE`` says."""
    env = os.environ if environ is None else environ
    pattern = env.get("NCCL_DEBUG_FILE")
    if not pattern:
        return None
    pid = os.getpid()
    host = env.get("NCCL_HOSTID") or socket.gethostname().split(".")[0]
    exact = Path(expand(pattern, host, pid))
    if exact.is_file():
        return exact
    # a host name NCCL spelled differently: this pid's file, if exactly one matches
    candidates = glob.glob(glob.escape(expand(pattern, "\0", pid)).replace("\0", "*"))
    return Path(candidates[0]) if len(candidates) == 1 else None


def rank_summary(environ: Any = None) -> dict[str, Any]:
    """This rank's log, summarised; a missing or unreadable file is a ``problem``, not an error."""
    try:
        path = own_log(environ)
        if path is None:
            return {"problem": "NCCL wrote no log file (NCCL_DEBUG_FILE="
                    f"{(os.environ if environ is None else environ).get('NCCL_DEBUG_FILE')})"}
        summary = parse(path.read_text(encoding="utf-8", errors="replace"), path.name)
        record = summary.record()
        if not summary.lines:
            record["problem"] = f"{path.name} holds no NCCL INFO lines"
        return record
    except Exception as exc:  # noqa: BLE001 - a log is never worth a failed run
        return {"problem": f"cannot read the NCCL log: {type(exc).__name__}: {exc}"}


def combine(directory: str, ranks: list[dict[str, Any]]) -> dict[str, Any]:
    """Rank 0: the metadata's ``nccl_log`` record from every rank's summary."""
    transports: set[str] = set()
    connections: Counter[str] = Counter()
    networks: set[str] = set()
    versions = [r["version"] for r in ranks if r.get("version")]
    problems = [f"rank {i}: {r['problem']}" for i, r in enumerate(ranks) if r.get("problem")]
    for r in ranks:
        transports.update(r.get("transports") or [])
        connections.update(r.get("connections") or {})
        if r.get("network"):
            networks.add(r["network"])
    return {"dir": directory, "files": LOG_NAME, "when": WHEN,
            "nccl_version": versions[0] if versions else None,
            "network": sorted(networks), "transports": _ordered(transports),
            "connections": dict(sorted(connections.items())),
            "note": None if connections else "no connections were logged yet (NCCL 2.22 and later connect "
            "channels at first use); `collbench trace nccl-log DIR` summarises the logs after the run",
            "problems": problems, "ranks": ranks}


def collect(comm: Any, directory: str | None) -> dict[str, Any] | None:
    """Every rank summarises its own log (collective over ``comm``); rank 0 returns the
    combined record and prints one warning line if any rank's log was missing or unreadable."""
    if directory is None:
        return None
    everyone = comm.gather(rank_summary(), root=0)
    if comm.Get_rank() != 0:
        return None
    record = combine(directory, everyone)
    problems = record["problems"]
    if problems:
        more = f" (and {len(problems) - 1} more; metadata nccl_log.problems)" if len(problems) > 1 else ""
        sys.stderr.write(f"collbench: warning: --nccl-log: {problems[0]}{more}\n")
    return record


# -- after the run: ``collbench trace nccl-log DIR`` ---------------------------------------------


def summarise_dir(directory: str | Path) -> list[LogSummary]:
    """Every ``*.log`` in ``directory``, summarised (sorted by name).

    Raises:
        UsageError: no such directory, or no log files in it.
    """
    path = Path(directory)
    if not path.is_dir():
        raise UsageError(f"{directory}: no such directory (run --nccl-log writes <results>.nccl/)")
    files = sorted(path.glob("*.log"))
    if not files:
        raise UsageError(f"{directory} holds no NCCL log files (*.log)")
    summaries = []
    for file in files:
        try:
            summaries.append(parse(file.read_text(encoding="utf-8", errors="replace"), file.name))
        except OSError as exc:
            summary = LogSummary(file.name)
            summary.warnings.append(f"cannot read: {exc.strerror or exc}")
            summaries.append(summary)
    return summaries


def dir_text(summaries: list[LogSummary]) -> str:
    """The table ``collbench trace nccl-log`` prints: one line per log file, then the totals."""
    lines = [f"# {'file':<32} {'version':<18} {'network':<10} transports (connections logged)"]
    total: Counter[str] = Counter()
    classes: set[str] = set()
    for s in summaries:
        total.update(s.connections)
        classes.update(s.transports)
        detail = ", ".join(f"{t}" for t in s.transports) or ("no NCCL lines" if not s.lines else "none logged")
        count = sum(s.connections.values())
        lines.append(f"  {s.file:<32} {s.version or '-':<18} {s.network or '-':<10} {detail} ({count})")
        for warning in s.warnings[:1]:
            lines.append(f"    NCCL WARN {warning}")
    lines.append(f"# transports: {', '.join(_ordered(classes)) or 'none logged'}")
    lines += [f"#   {count:6d} via {via}" for via, count in sorted(total.items())]
    return "\n".join(lines)
