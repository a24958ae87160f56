"""OSU Micro-Benchmarks collective logs (``osu_allreduce`` and friends) to collbench rows.

OSU prints latency only: ``# Size  Avg Latency(us)``, with ``-f`` also Min, Max and Iterations,
with ``-c`` a Validation column. Avg is the mean over ranks of each rank's mean per-iteration
time, Min and Max the fastest and slowest rank's (reference/osu_imb.md §1.3-1.5), which is
what collbench's ``aggregation: mean`` and ``time_us_min_rank``/``time_us_max_rank`` hold.

Bandwidths are computed here with collbench's own conventions (collbench/metrics.py). They need
the rank count, which OSU does not print: it comes from ``--nranks`` or stays unknown, and so
do the numbers that depend on it (allgather and alltoall tables, whose total size needs it, are
skipped without it). OSU's size is per rank for allgather (the send buffer), per
peer for alltoall (each rank sends ``size`` bytes to every rank: its buffer is ``size × nranks``,
collbench's size), the whole input for reduce_scatter, the buffer otherwise.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from ..algorithms import Collective
from ..metrics import bandwidths, bus_factor
from .common import Log, LogError, Options, base_metadata, clean, collective_of, dtype_of, row_record

_TITLE = re.compile(r"^OSU\s+(\S+)\s+(.+?)\s+(?:Latency\s+)?Test(?:\s+v?(\S+))?$")
_DATATYPE = re.compile(r"^Datatype:\s*(\S+?)\.?$")
_COMMAND = re.compile(r"\bosu_\w+")
_IN_PLACE = re.compile(r"\s(?:-l|--in-place)(?:\s|$)")
# OSU titles → collbench names (Collective.parse does the rest)
_NAMES = {"allreduce": "allreduce", "allgather": "allgather", "reduce_scatter": "reduce_scatter",
          "reduce_scatter_block": "reduce_scatter", "broadcast": "broadcast", "bcast": "broadcast",
          "reduce": "reduce", "all_to_all_personalized_exchange": "alltoall", "alltoall": "alltoall"}
_MPI_TYPES = {"MPI_CHAR": "int8", "MPI_SIGNED_CHAR": "int8", "MPI_UNSIGNED_CHAR": "uint8",
              "MPI_INT": "int32", "MPI_UNSIGNED": "uint32", "MPI_FLOAT": "float32",
              "MPI_DOUBLE": "float64", "MPI_LONG_LONG": "int64", "MPI_INT64_T": "int64"}
_FULL = ["size", "avg", "min", "max", "iterations"]   # the -f layout
_ROW = re.compile(r"^\d+\s+(?:[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|-?nan|-?inf)(?:\s|$)", re.IGNORECASE)
# the column names OSU prints (print_only_header, print_only_header_nbc), matched whatever the
# spacing between them: a paste that squeezed the runs of spaces still has its columns
_HEADER_NAMES = re.compile(
    r"(Size|Avg\s*Latency\s*\(us\)|Min\s*Latency\s*\(us\)|Max\s*Latency\s*\(us\)|Iterations"
    r"|Validation|P\d+\s*Tail\s*Lat\s*\(us\)|P\d+\s*Tail\s*BW\s*\(MB/s\)|Bandwidth\s*\(MB/s\)"
    r"|MB/s|Messages/s|Transmit\s*Size|Overall\s*\(us\)|Compute\s*\(us\)|Pure\s*Comm\.?\s*\(us\)"
    r"|Overlap\s*\(%\)|Coll\.?\s*Init\s*\(us\)|MPI_Test\s*\(us\)|MPI_Wait\s*\(us\)"
    r"|Min\s*Comm\.?\s*\(us\)|Max\s*Comm\.?\s*\(us\)|Latency\s*\(us\))(?=\s|$)", re.IGNORECASE)
_DEVICES = {"CUDA": "cuda", "NCCL": "cuda", "ROCM": "rocm", "RCCL": "rocm", "SYCL": "sycl",
            "OPENACC": "openacc"}


@dataclass
class _Table:
    log: str
    line: int
    title: str | None = None
    flavour: str | None = None          # MPI, MPI-CUDA, NCCL, …
    name: str | None = None             # the collective as OSU titles it
    version: str | None = None
    datatype: str | None = None
    command: str | None = None
    columns: list[str] | None = None
    column_names: list[str] | None = None   # as OSU printed them
    rows: list[tuple[int, list[str]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def started(self) -> bool:
        return bool(self.columns or self.rows)


def _column(name: str) -> str:
    key = " ".join(name.lower().replace("(", " (").split())
    for prefix, short in (("size", "size"), ("avg latency", "avg"), ("min latency", "min"),
                          ("max latency", "max"), ("iterations", "iterations"),
                          ("validation", "validation")):
        if key.startswith(prefix):
            return short
    return key   # tail latencies (p50 tail lat (us), …), bandwidths: kept by name, not imported


def _columns(text: str) -> tuple[list[str], list[str]]:
    """(collbench's names, OSU's names) of a '# Size …' header's columns."""
    names, at = [], 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        match = _HEADER_NAMES.match(text, at)
        if match is None:
            break
        names.append(" ".join(match.group(1).split()))
        at = match.end()
    if at < len(text):   # a column OSU does not print (a newer release?): split on wide gaps
        names = [c for c in re.split(r"\s{2,}", text.strip()) if c]
    return [_column(c) for c in names], names


def _parse(log: Log) -> list[_Table]:
    tables: list[_Table] = []
    table = _Table(log.name, 1)
    command: str | None = None

    def finish() -> None:
        if table.columns or table.rows:
            tables.append(table)

    for number, raw in enumerate(log.lines, start=1):
        line = clean(raw).strip()
        if not line:
            continue
        text = line[1:].strip() if line.startswith("#") else line
        if (match := _TITLE.match(text)) is not None:
            finish()
            table = _Table(log.name, number, text, match.group(1), match.group(2), match.group(3),
                           command=command)
        elif (match := _DATATYPE.match(text)) is not None:
            if table.rows:   # -T all: one table per type under one title
                finish()
                table = _Table(log.name, number, table.title, table.flavour, table.name,
                               table.version, command=table.command)
            table.datatype = match.group(1)
        elif text.lower().startswith("size ") and (line.startswith("#") or "latency" in text.lower()):
            table.columns, table.column_names = _columns(text)
        elif _ROW.match(line) and table.columns:   # not "3 more processes have sent help message"
            table.rows.append((number, line.split()))
        elif "DATA VALIDATION ERROR" in line:
            table.notes.append(f"line {number}: {line}")
        elif _COMMAND.search(line) and not line.startswith("#"):
            command = line
            if not table.started:
                table.command = line
    finish()
    if not tables:
        raise LogError(log.name, None, f"no OSU results table in {len(log.lines)} lines "
                       "(expected '# OSU MPI … Latency Test' and '# Size  Avg Latency(us)')")
    return tables


def _layout(table: _Table, tokens: list[str], number: int, last: bool) -> list[str] | None:
    """The column names of one row: the header's, or -f's when OSU 7.3 printed a short header;
    None for a last row cut short (the log ends inside the table)."""
    columns = table.columns or []
    note = "the header lacks -f's Min/Max/Iterations columns the rows have (OSU 7.3 header bug)"
    if len(tokens) == len(columns):
        return columns
    if columns == ["size", "avg"] and len(tokens) == len(_FULL):
        if note not in table.notes:
            table.notes.append(note)
        return _FULL
    expected = len(_FULL) if note in table.notes else len(columns)
    if last and len(tokens) < expected:
        table.notes.append(f"line {number}: the last row is cut off; kept the complete rows")
        return None
    raise LogError(table.log, number, f"{len(tokens)} fields, the OSU header has {len(columns)}")


def _finite(text: str) -> float:
    """A printed number; ValueError (naming the text) for anything else, NaN and infinity too."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number")
    return value


def _records(table: _Table, options: Options) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    name = (table.name or options.collective or "").lower().replace("-", "_").replace(" ", "_")
    info: dict[str, Any] = {"file": table.log, "line": table.line, "title": table.title,
                            "version": table.version, "datatype": table.datatype,
                            "command": table.command, "columns": table.columns, "rows": 0,
                            "notes": table.notes}
    if not name:
        raise LogError(table.log, table.line, "the log does not say which collective this table "
                       "measures (no '# OSU … Test' title); pass --collective")
    if name.startswith("non_blocking") or "persistent" in name:
        info["notes"].append(f"skipped: {table.name} (non-blocking/persistent tables time overlap, "
                             "not the collective alone)")
        return [], info
    collective = collective_of(_NAMES.get(name, name))
    if collective is None:
        info["notes"].append(f"skipped: collbench has no {table.name or name} collective")
        return [], info
    if "avg" not in (table.columns or []):
        shown = ", ".join(table.column_names or table.columns or [])
        info["notes"].append(f"skipped: not a latency table (columns {shown}); collbench imports "
                             "the '# Size  Avg Latency(us)' tables of OSU's blocking collectives")
        return [], info
    if collective in (Collective.ALLGATHER, Collective.ALLTOALL) and not options.nranks:
        # OSU's size is per rank (per peer); a row's size is the whole buffer, size x nranks
        info["notes"].append(f"skipped: {table.name or name} rows give the size per rank; their "
                             "total size needs the rank count, which OSU does not print: pass --nranks")
        return [], info
    if table.datatype:
        dtype = _MPI_TYPES.get(table.datatype, table.datatype)
    elif options.dtype:
        dtype = options.dtype
    else:
        dtype = None
        info["notes"].append("no '# Datatype' line and no --dtype: the element count is unknown")
    dtype, itemsize = dtype_of(dtype) if dtype else (None, None)
    nranks = options.nranks
    in_place = bool(table.command and _IN_PLACE.search(table.command))
    info["placement_from"] = "the command line in the log" if table.command else \
        "OSU's default (out-of-place); the log shows no command line"
    records = []
    for index, (number, tokens) in enumerate(table.rows):
        columns = _layout(table, tokens, number, last=index == len(table.rows) - 1)
        if columns is None:
            info["truncated"] = True
            continue
        value = dict(zip(columns, tokens, strict=True))
        try:
            size, avg = int(value["size"]), _finite(value["avg"])
            low = _finite(value["min"]) if "min" in value else None
            high = _finite(value["max"]) if "max" in value else None
            iterations = int(value["iterations"]) if "iterations" in value else None
        except KeyError as exc:
            raise LogError(table.log, number, f"cannot read this OSU row: no {exc.args[0]} column") from None
        except ValueError as exc:
            raise LogError(table.log, number, f"cannot read this OSU row: {exc.args[0]}") from None
        elements = size // itemsize if itemsize else None
        nbytes: int | None = size
        count = elements
        if collective is Collective.ALLGATHER:       # OSU: size per rank; collbench: the output
            nbytes = size * nranks if nranks else None
        elif collective is Collective.REDUCE_SCATTER:  # OSU: the whole input; count is per rank
            count = elements // nranks if elements is not None and nranks else None
        elif collective is Collective.ALLTOALL:      # OSU: size per peer (count too); collbench:
            nbytes = size * nranks if nranks else None  # the whole buffer, nranks blocks
        algbw = busbw = None
        if nbytes is not None:
            algbw, busbw = bandwidths(collective, nbytes, avg * 1e-6, nranks or 2)
            if nranks is None and bus_factor(collective, 2) != bus_factor(collective, 3):
                busbw = None   # the factor depends on the rank count, which nobody told us
        validation = value.get("validation")
        wrong = {"pass": 0}.get(validation.lower()) if validation else None
        if validation and validation.lower() != "pass":
            info["notes"].append(f"line {number}: validation {validation} at size {size}")
        records.append(row_record(
            collective=collective.value, algorithm="native",
            backend="nccl" if "CCL" in (table.flavour or "").upper() else "mpi", executor="osu",
            dtype=dtype, op="sum" if collective.reduces else None,
            root=None, placement="in_place" if in_place else "out_of_place", nranks=nranks,
            bytes=nbytes, count=count, iterations=iterations, warmup=None,
            timing="per_iteration", aggregation="mean", time_us=avg, time_us_min_rank=low,
            time_us_max_rank=high, algbw_gbps=algbw, busbw_gbps=busbw, wrong=wrong))
    info["rows"] = len(records)
    return records, info


def _device(flavours: list[str]) -> str | None:
    """cuda, rocm, … from the titles' flavours (MPI-CUDA, NCCL, MPI-ROCM); None for host buffers
    or titles that disagree."""
    devices = {next((d for k, d in _DEVICES.items() if k in f.upper()), None) for f in flavours}
    return devices.pop() if len(devices) == 1 else None


def convert(logs: list[Log], options: Options) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    """(metadata, rows, skipped) for ``collbench import osu``."""
    rows: list[dict[str, Any]] = []
    runs, skipped = [], []
    for log in logs:
        for table in _parse(log):
            records, info = _records(table, options)
            rows += records
            runs.append(info)
            skipped += [f"{table.log}:{table.line}: {n[len('skipped: '):]}" for n in info["notes"]
                        if n.startswith("skipped: ")]
    if not rows:
        raise LogError(logs[0].name, runs[0]["line"] if runs else None,
                       "no table collbench can import (" + "; ".join(skipped) + ")"
                       if skipped else "the OSU table has no rows")
    flavours = sorted({r["title"].split()[1] for r in runs if r["title"]})
    metadata = base_metadata("osu-micro-benchmarks", options.argv)
    metadata.update({"nranks": options.nranks, "nnodes": options.nodes, "nodes": None,
                     "ranks_per_node": None, "node_of_rank": None, "gpus_per_node": None,
                     "processes": None})
    backends = sorted({r["backend"] for r in rows})
    metadata["spec"] = {"collectives": sorted({r["collective"] for r in rows}),
                        "backend": backends[0] if len(backends) == 1 else ",".join(backends),
                        "dtypes": sorted({r["dtype"] for r in rows if r["dtype"]}),
                        "ops": sorted({r["op"] for r in rows if r["op"]}),
                        "placements": sorted({r["placement"] for r in rows})}
    metadata["backend"] = {"backend": metadata["spec"]["backend"],
                           "device": _device(flavours),
                           "osu_flavour": flavours[0] if len(flavours) == 1 else (flavours or None)}
    versions = sorted({r["version"] for r in runs if r["version"]})
    metadata["import"].update({
        "tool_version": versions[0] if len(versions) == 1 else (versions or None),
        "files": [log.name for log in logs], "runs": runs, "notes": [],
        "truncated": any(r.get("truncated") for r in runs),
        "rank_count_from": "--nranks" if options.nranks else None})
    return metadata, rows, skipped
