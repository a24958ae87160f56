"""nccl-tests logs (``all_reduce_perf`` and friends, 2017 to today) to collbench rows.

A log is read line by line into *runs*: one run is one program's header (version line,
``# nThread …`` line, device list), its results table and its footer. Several runs may follow
each other in one file (``all_reduce_perf`` then ``all_gather_perf``). The table's own column
header says which columns the rows have, so old layouts (1.x's "bytes N type op … res" in ms,
no ``root``, no ``redop``, an ``error`` column of floats instead of ``#wrong``) and new ones
(``-I`` statistics, ``-S`` timestamps, rccl-tests) are read by the same code. Every other line
(NCCL INFO/WARN, MPI noise) is skipped; where NCCL logged in the middle of a row (NCCL_DEBUG=INFO
during the first operations, MPICH tagging every write) the row's pieces are put back together.
Output of several independent jobs interleaved in one log (nccl-tests without MPI started by
mpirun: every process is rank 0 of a job of its own) is refused: their rows cannot be told apart.

Layouts: /work/shared/reference/nccl_tests.md §2; nccl-tests' conventions: collbench/metrics.py.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from ..metrics import bus_factor
from .common import Log, LogError, Options, base_metadata, clean, collective_of, dtype_of, layout, row_record

# nccl-tests ≥ 2.17 and rccl-tests ≥ 2.17 ("# rccl-tests version … rccl-headers=… rccl-library=…")
_VERSION = re.compile(r"[nr]ccl-tests version (\S+)(?:\s+\((\w+)\))?(?:.*?[nr]ccl-headers=(\d+))?"
                      r"(?:.*?[nr]ccl-library=(\d+))?")
_STARTING = re.compile(r"Collective test starting:\s*(\S+)")
_CONCLUDED = re.compile(r"Collective test concluded:\s*(\S+)")
_HEADER = re.compile(r"^nThread\s+\d+\s+nGpus\s+\d+")
_DEVICE = re.compile(r"^Rank\s+(\d+)\s+(?:Group\s+(\d+)\s+)?(?:Pid\s+(\d+)\s+)?on\s+(\S*)\s+"
                     r"device\s+(\d+)\s+\[([^\]]*)\]\s*(.*)$")
_COLUMNS = re.compile(r"^(?:size\s+count|bytes\s+n\s+type)\s", re.IGNORECASE)
# nccl-tests 1.x (2017-2018) named its columns "bytes N type op [root] … res"
_OLD_NAMES = {"bytes": "size", "n": "count", "op": "redop", "res": "error"}
_OOB = re.compile(r"Out of bounds values\s*:\s*(\d+)\s*(\w*)")
_AVG = re.compile(r"Avg bus bandwidth\s*:\s*(\S+)")
_NCCL_LOG = re.compile(r"\bNCCL (?:INFO|WARN|TRACE)\b")
_GLUED_NUMBER = re.compile(r"-?\d+(?:\.\d+)?|N/A")
_GLUED = re.compile(r"^(-?\d+(?:\.\d+)?|N/A)(?=[A-Za-z])")   # "-1h100-node": root -1, then the host
_RCCL_VERSION = re.compile(r"^rccl-tests:\s*Version\s+(\S+)")   # older rccl-tests
_RCCL_LIBRARY = re.compile(r"^RCCL version\s*:\s*(\S+)")           # RCCL's NCCL_DEBUG=VERSION
_FAILURE = re.compile(r"\bTest (?:NCCL |CUDA |HIP |)failure\b|\bTest timeout\b")
_ROW_START = re.compile(r"^\d+\s+\d+\s")   # size, count, …: a row (or the start of one)
# the rest of a row printed in pieces: times, bandwidths, #wrong, -S's date and time
_ROW_REST = re.compile(r"^(?:-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|N/A|-?nan|-?inf|"
                       r"\d{4}-\d{2}-\d{2}|\d{2}:\d{2}:\d{2})$", re.IGNORECASE)
_NCCL_VERSION = re.compile(r"\bNCCL version (\S+)")
# NCCL_DEBUG=INFO prints every NCCL_* variable it read: "NCCL INFO NCCL_PROTO set by environment to Simple"
_NCCL_ENV = re.compile(r"\bNCCL INFO (NCCL_[A-Z0-9_]+) set by environment to (.*)$")
_BINARY = re.compile(r"\b([a-z][a-z0-9]*(?:_[a-z0-9]+)*?)_perf(?:_\w+)?\b")
_AVERAGE_FLAG = re.compile(r"(?:^|\s)(?:-a|--average)[\s=](\d)\b")
_AGGREGATION = {"0": "rank0", "1": "mean", "2": "min", "3": "max"}   # nccl-tests -a
_HEADER_FIELDS = {"nthread": r"nThread\s+(\d+)", "ngpus": r"nGpus\s+(\d+)",
                  "minbytes": r"minBytes\s+(\d+)", "maxbytes": r"maxBytes\s+(\d+)",
                  "warmup": r"warmup iters:\s*(\d+)", "iters": r"(?<!warmup )iters:\s*(\d+)",
                  "agg_iters": r"agg iters:\s*(\d+)", "validation": r"validation:\s*(\d+)",
                  "graph": r"graph:\s*(\d+)"}
_WRONG = ("#wrong", "wrong", "error")
_STATS = {"i_min": "min", "i_max": "max", "i_p99": "p99"}   # -I columns collbench also keeps
_NUMERIC = {"time", "cputime", "algbw", "busbw"}             # always a finite number
_OPTIONAL = {"i_min", "i_max", "i_p99", "i_cv%", *_WRONG}   # a finite number or N/A


def _finite(text: str) -> float:
    """A printed number; ValueError for anything else, NaN and infinity included."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


@dataclass
class _Run:
    """What one program printed, as it accumulates."""

    log: str
    line: int
    binary: str | None = None
    version_line: str | None = None
    nccl_library: int | None = None
    nccl_version: str | None = None
    header_line: str | None = None
    header_line_number: int | None = None
    header: dict[str, int] = field(default_factory=dict)
    command: str | None = None
    devices: list[dict[str, Any]] = field(default_factory=list)
    columns: list[str] | None = None
    columns_line: int = 0
    columns_old: bool = False    # nccl-tests 1.x's "bytes N type op … res" header
    rows: list[tuple[int, list[str]]] = field(default_factory=list)
    cut: tuple[int, str] | None = None       # a row that did not parse: cut off, or an error
    pending: tuple[int, list[str]] | None = None   # a row printed in pieces, not finished yet
    out_of_bounds: str | None = None
    avg_busbw: float | None = None
    failures: list[str] = field(default_factory=list)   # "Test NCCL failure …" lines

    @property
    def started(self) -> bool:
        return bool(self.header_line or self.columns or self.devices)

    @property
    def has_footer(self) -> bool:
        return self.avg_busbw is not None or self.out_of_bounds is not None


def _split_columns(columns: list[str], log: str, line: int) -> tuple[list[str], list[dict[str, int]]]:
    """The preamble column names and, per placement, the index of each half's columns."""
    starts = [i for i, name in enumerate(columns) if name in ("time", "cputime")]
    if len(starts) != 2 or columns[:2] != ["size", "count"]:
        raise LogError(log, line, "unrecognised nccl-tests table header (expected size, count, …, "
                       "then time/algbw/busbw twice for out-of-place and in-place)")
    halves = []
    for start, end in ((starts[0], starts[1]), (starts[1], len(columns))):
        half = {name: i for i, name in enumerate(columns[start:end], start)}
        half["time"] = start
        if "algbw" not in half or "busbw" not in half:
            raise LogError(log, line, "nccl-tests table header without algbw/busbw columns")
        halves.append(half)
    return columns[:starts[0]], halves


def _wrong(text: str, column: str) -> tuple[int | None, float | None]:
    """(#wrong, old max error): N/A is unknown; the old ``error`` column held the largest
    deviation (a float), not a count, so only an exact 0 says "nothing wrong"."""
    if text.upper() == "N/A":
        return None, None
    value = _finite(text)
    if column == "error":
        return (0 if value == 0 else None), value
    return int(value), None


class _Parser:
    """Reads logs into runs; one parser for all the logs of one import."""

    def __init__(self) -> None:
        self.runs: list[_Run] = []
        self.env: dict[str, str | None] = {}   # NCCL_* as NCCL reported them; None: runs disagree
        self.hosts: set[str] = set()           # the hosts NCCL's log lines name

    def parse(self, log: Log) -> None:
        run = _Run(log.name, 1)
        found_table = False
        lines = [clean(raw).strip() for raw in log.lines]
        for line in lines:   # the hosts, to tell a row's last number from a host glued to it
            if (tag := _NCCL_LOG.search(line)) is not None and (where := _log_start(line, tag.start()))[0] == 0:
                self.hosts.add(where[1])
        self.hosts.discard("")
        for number, line in enumerate(lines, start=1):
            if not line:
                continue
            tag = _NCCL_LOG.search(line)
            if tag is not None or line.startswith("NCCL version"):
                start, host = _log_start(line, tag.start()) if tag else (0, "")
                head, message = line[:start], line[start:]
                # "… sum -1h100-node:1:2 [0] NCCL INFO": no space between the row and the host
                glued = _glued(host, self.hosts) if run.columns and head.strip() else None
                version = _NCCL_VERSION.search(message)
                if version and run.nccl_version is None:
                    run.nccl_version = version.group(1)
                if (setting := _NCCL_ENV.search(message)) is not None:
                    name, value = setting.group(1), setting.group(2).strip()
                    self.env[name] = value if self.env.get(name, value) == value else None
                if head.strip() and run.columns and not head.lstrip().startswith("#"):
                    # NCCL logged while a row was being printed: the row goes on after the log
                    self._piece(run, number, head.split(), ended=False, glued=glued)
                continue
            # GitHub turns an unfenced "# ..." line into a heading: accept headers without "#"
            text = line[1:].strip() if line.startswith("#") else line
            if run.columns and not line.startswith("#") and (
                    _ROW_START.match(text) or (run.pending and all(_ROW_REST.match(t) for t in text.split()))):
                self._piece(run, number, text.split(), ended=True)
                continue
            # (anything else inside a table, another rank's output say, leaves a row begun pending)
            if (match := _VERSION.search(text)) is not None:
                run = self._next(run, number)
                run.version_line = text
                run.nccl_library = int(match.group(4)) if match.group(4) else None
            elif (match := _RCCL_LIBRARY.match(text)) is not None:
                run.nccl_version = run.nccl_version or match.group(1)
            elif _RCCL_VERSION.match(text):
                # rccl-tests prints its version after the "# nThread" line: it does not start a run
                self._flush(run)
                run.version_line = run.version_line or text
            elif (match := _STARTING.search(text)) is not None:
                run = self._next(run, number)
                run.binary = match.group(1)
            elif _CONCLUDED.search(text):
                self._flush(run)   # the footer's last line; its program name must not start a new run
            elif _HEADER.match(text):
                run = self._next(run, number)
                run.header_line, run.header_line_number = text, number
                run.header = {k: int(m.group(1)) for k, p in _HEADER_FIELDS.items()
                              if (m := re.search(p, text))}
            elif (match := _DEVICE.match(text)) is not None:
                if run.columns:
                    run = self._next(run, number)
                rank, group, pid, host, device, pci, name = match.groups()
                entry = {"rank": int(rank), "group": int(group) if group else None,
                         "pid": int(pid) if pid else None, "host": host or None,
                         "index": int(device), "pci": pci, "name": name.strip() or None}
                same = next((d for d in run.devices if d["rank"] == entry["rank"]), None)
                if same == entry:
                    continue   # the device list pasted twice
                if same is not None:
                    raise LogError(log.name, number, f"rank {rank} is listed twice ({_where(same)}, then "
                                   f"{_where(entry)}): the log interleaves several nccl-tests jobs whose "
                                   "rows cannot be told apart (without MPI=1, each process mpirun/srun "
                                   "starts runs a job of its own); import one job's output")
                run.devices.append(entry)
            elif _COLUMNS.match(text):
                self._flush(run)
                if run.rows or run.cut:
                    run = self._next(run, number, keep_all=True)
                run.columns_old = text.lower().split()[0] == "bytes"
                run.columns = [_OLD_NAMES.get(c, c) for c in text.lower().split()]
                run.columns_line = number
                found_table = True
            elif (match := _OOB.search(text)) is not None:
                self._flush(run)
                run.out_of_bounds = f"{match.group(1)} {match.group(2)}".strip()
            elif (match := _AVG.search(text)) is not None:
                self._flush(run)
                try:
                    run.avg_busbw = _finite(match.group(1))
                except ValueError:
                    run.avg_busbw = None
            elif _FAILURE.search(text):
                run.failures.append(f"line {number}: {text}")
            elif (match := _BINARY.search(text)) is not None and not (run.header_line and not run.columns):
                # a pasted command line (./build/all_gather_perf -b 8 …) starts the next run; between
                # a header and its table such a line is another process's noise ("all_reduce_perf:
                # /lib/…/libcurl.so.4: no version information available")
                if run.columns:
                    run = self._next(run, number)
                run.binary, run.command = match.group(0), line
        self._finish(run)
        if not found_table:
            raise LogError(log.name, None, f"no nccl-tests results table in {len(log.lines)} lines "
                           "(is this an nccl-tests log?)")

    def _next(self, run: _Run, number: int, keep_all: bool = False) -> _Run:
        """Finish ``run`` if it has begun; the lines that announce a program (version, "test
        starting", its command) come before its header and belong to the next run."""
        self._flush(run)
        if not run.started:
            return run
        if run.header_line_number is not None and not run.columns and not run.failures:
            raise LogError(run.log, number, "a new run starts here, but the '# nThread …' header of line "
                           f"{run.header_line_number} has no table: the log interleaves several "
                           "nccl-tests jobs whose rows cannot be told apart (without MPI=1, each "
                           "process that mpirun or srun starts runs a job of its own), or a run stopped "
                           "before its table; import one job's output")
        self._finish(run)
        new = _Run(run.log, number)
        if keep_all:   # a second table header in one run (pasted twice): same program and job
            new.binary, new.version_line, new.nccl_library = run.binary, run.version_line, run.nccl_library
            new.header_line, new.header, new.devices = run.header_line, run.header, run.devices
            new.command, new.nccl_version = run.command, run.nccl_version
            new.header_line_number = run.header_line_number
        return new

    def _piece(self, run: _Run, number: int, tokens: list[str], ended: bool,
               glued: str | None = None) -> None:
        """A row, or a piece of one: NCCL's log lines (NCCL_DEBUG=INFO) and launchers that tag
        every write ([0]) split a row wherever the program had not yet printed its newline.
        ``glued``: the number the NCCL log's host was glued to, the piece's last token if one
        more token ends one of nccl-tests' writes there (preamble, each half's numbers)."""
        assert run.columns is not None
        if glued is not None:
            ends = {i for i, c in enumerate(run.columns) if c in ("time", "cputime", "i_min")}
            ends.add(len(run.columns) - ("timestamp" in run.columns))
            begun = 0 if _ROW_START.match(" ".join(tokens)) or run.pending is None else len(run.pending[1])
            if begun + len(tokens) + 1 in ends:
                tokens = [*tokens, glued]
        if _ROW_START.match(" ".join(tokens)):
            self._flush(run)   # a row not finished before the next one starts: cut, or broken
            run.pending = (number, tokens)
        elif run.pending is not None and all(_ROW_REST.match(t) for t in tokens):
            run.pending = (run.pending[0], run.pending[1] + tokens)
        else:
            return             # numbers without the start of their row, or not numbers
        needed = len(run.columns) - ("timestamp" in run.columns)   # -S: a date and a time
        if len(run.pending[1]) >= needed + 2 or (ended and len(run.pending[1]) >= needed):
            self._flush(run)

    def _flush(self, run: _Run) -> None:
        if run.pending is not None:
            number, tokens = run.pending
            run.pending = None
            self._row(run, number, tokens)

    def _row(self, run: _Run, number: int, tokens: list[str]) -> None:
        if run.cut is not None:   # a broken row followed by more rows: not a cut-off log
            raise LogError(run.log, run.cut[0], f"cannot read this nccl-tests row: {run.cut[1]}")
        assert run.columns is not None
        needed = len(run.columns) - ("timestamp" in run.columns)   # -S: a date and a time
        if len(tokens) < needed:
            run.cut = (number, f"{len(tokens)} fields, the header has {needed}")
            return
        try:
            for index, name in enumerate(run.columns):
                if name in ("size", "count", "root"):
                    int(tokens[index])
                elif name in _NUMERIC or (name in _OPTIONAL and tokens[index].upper() != "N/A"):
                    _finite(tokens[index])
        except ValueError:
            run.cut = (number, f"{tokens[index]!r} in column {run.columns[index]}")
            return
        run.rows.append((number, tokens))

    def _finish(self, run: _Run) -> None:
        self._flush(run)
        if run.cut is not None and run.has_footer:
            raise LogError(run.log, run.cut[0], f"cannot read this nccl-tests row: {run.cut[1]}")
        if run.columns:
            self.runs.append(run)


def _log_start(line: str, tag: int) -> tuple[int, str]:
    """(where the NCCL log message whose "NCCL INFO" tag is at ``tag`` starts, its host) in a
    cleaned line: at its "host:pid:tid" (RCCL puts a source path between that and the tag).
    What comes before it on the same line is stdout the program had not ended with a newline,
    typically the start of a results row; (0, "") when the message has no such prefix."""
    words = list(re.finditer(r"\S+", line[:tag]))[-2:]
    for word in reversed(words):
        host, _, rest = word.group().partition(":")
        pid, _, tid = rest.partition(":")
        if host and pid.isdigit() and tid.isdigit():
            return word.start(), host
    return 0, ""


def _glued(word: str, hosts: set[str]) -> str | None:
    """The number a row piece ends with when NCCL's "host:pid:tid" followed it without a space
    ("-1h100-node" for root -1 on h100-node, "-110-4-3-3" on 10-4-3-3): by the hosts NCCL's
    other log lines name, else by where the digits stop and the host's letters start."""
    for host in hosts:
        if word.endswith(host) and _GLUED_NUMBER.fullmatch(word[:-len(host)]):
            return word[:-len(host)]
    match = _GLUED.match(word)
    return match.group(1) if match else None


def _where(device: dict[str, Any]) -> str:
    return " ".join(f"{k} {device[k]}" for k in ("host", "pid", "group") if device[k] is not None) or "?"


def _records(run: _Run, options: Options, nranks: int | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rows of one run, and what the metadata says about it."""
    assert run.columns is not None
    binary = run.binary or options.collective
    info: dict[str, Any] = {
        "file": run.log, "line": run.line, "program": run.binary, "version_line": run.version_line,
        "header_line": run.header_line, "command": run.command, "columns": run.columns,
        "rows": 0, "truncated": not run.has_footer, "out_of_bounds": run.out_of_bounds,
        "avg_bus_bandwidth": run.avg_busbw, "notes": []}
    try:
        pre, halves = _split_columns(run.columns, run.log, run.columns_line)
    except LogError:
        if run.rows or run.cut:
            raise
        # the log ends inside the column header (several tables, the last one cut short)
        info["notes"].append(f"line {run.columns_line}: the table header is cut off, no rows (truncated)")
        info["truncated"] = True
        return [], info
    if not binary and not run.rows:
        info["notes"].append(f"line {run.columns_line}: a table without rows")
        return [], info
    if not binary:
        raise LogError(run.log, run.columns_line, "the log does not say which collective this table "
                       "measures (no *_perf name or \"Collective test starting\" line); pass --collective")
    collective, name = _collective(binary)
    if collective is None:
        info["notes"].append(f"skipped: collbench has no {name} collective")
        return [], info
    if run.cut is not None:
        info["notes"].append(f"line {run.cut[0]}: the last row is cut off ({run.cut[1]}); kept the "
                             "complete rows")
    if not run.has_footer:
        info["notes"].append("no footer: the log ends inside the table (truncated)")
    info["notes"] += run.failures
    scale = _time_scale(run, halves)
    if scale != 1:
        info["notes"].append("the time column is in ms (nccl-tests 1.x): converted to µs")
    average = _AVERAGE_FLAG.search(run.command or "")
    aggregation = _AGGREGATION.get(average.group(1)) if average else None
    records = []
    for _, tokens in run.rows:
        value = dict(zip(run.columns, tokens, strict=False))   # -S adds timestamp tokens
        pre_values = {name: tokens[i] for i, name in enumerate(pre)}
        dtype, _ = dtype_of(pre_values.get("type", "unknown"))
        redop = pre_values.get("redop")
        root = int(pre_values["root"]) if "root" in pre_values else -1
        for placement, half in zip(("out_of_place", "in_place"), halves, strict=True):
            wrong_column = next((c for c in _WRONG if c in half), None)
            wrong, error = (_wrong(tokens[half[wrong_column]], wrong_column)
                            if wrong_column else (None, None))
            if error is not None and (run.out_of_bounds or "").startswith("0 "):
                wrong = 0   # the footer's "0 OK": every deviation was within nccl-tests' tolerance
            stats = {key: float(tokens[half[col]]) for col, key in _STATS.items()
                     if col in half and tokens[half[col]].upper() != "N/A"}
            if error is not None:
                info["max_error"] = max(info.get("max_error", 0.0), error)
            records.append(row_record(
                collective=collective.value, algorithm="native", backend="nccl",
                executor="nccl-tests", dtype=dtype,
                op=None if redop in (None, "none") else redop,
                root=root if root >= 0 and collective.rooted else None,
                placement=placement, nranks=nranks, bytes=int(value["size"]),
                count=int(value["count"]), iterations=run.header.get("iters"),
                warmup=run.header.get("warmup"), timing="batch", aggregation=aggregation,
                time_us=round(float(tokens[half["time"]]) * scale, 9), algbw_gbps=float(tokens[half["algbw"]]),
                busbw_gbps=float(tokens[half["busbw"]]), wrong=wrong, stats_us=stats or None))
    if "max_error" in info:
        info["notes"].append("old nccl-tests: the error column is the largest deviation, not a count "
                             "of wrong elements; rows carry wrong=0 where it was 0 or the footer says "
                             "\"Out of bounds values : 0 OK\", else null")
    keys = [tuple(tokens[:len(pre)]) for _, tokens in run.rows]
    if len(set(keys)) < len(keys):
        info["notes"].append(f"{len(keys) - len(set(keys))} rows repeat an earlier row's size, type, op "
                             "and root (nccl-tests -N cycles?): kept as rows of their own")
    if "cputime" in run.columns:
        info["notes"].append("-C: the time column is CPU enqueue time, not completion time")
    info["rows"] = len(records)
    return records, info


def _time_scale(run: _Run, halves: list[dict[str, int]]) -> int:
    """1 where the time column is in µs, 1000 where it is in ms: nccl-tests 1.x (the "bytes N
    type op" header) printed ms, later versions µs. The numbers decide where they can (algbw is
    size / time in every version), the header where they cannot (tiny times, no bandwidth)."""
    assert run.columns is not None
    votes = {1: 0, 1000: 0}
    for _, tokens in run.rows:
        for half in halves:
            time, algbw = float(tokens[half["time"]]), float(tokens[half["algbw"]])
            if algbw >= 0.5 and time >= 1:
                ratio = int(tokens[0]) / (algbw * 1e3) / time   # µs per printed time unit
                for scale in votes:
                    votes[scale] += abs(ratio / scale - 1) < 0.1
    if votes[1] != votes[1000]:
        return max(votes, key=votes.__getitem__)
    return 1000 if run.columns_old else 1


def _collective(binary: str) -> tuple[Any, str]:
    """(Collective or None, the name as the log has it) for all_gather_perf_mpi, --collective, …"""
    name = re.sub(r"_perf.*$", "", binary.split()[0].rsplit("/", 1)[-1])
    return collective_of(name), name


def _consistent(run: _Run, nranks: int, options: Options) -> bool:
    """Whether the printed busbw/algbw ratio is nccl-tests' factor for ``nranks``. A device list
    cut with "..." (or ranks split into groups) would otherwise give a wrong rank count."""
    collective, _ = _collective(run.binary or options.collective or "unknown")
    if collective is None or not run.columns or not run.rows:
        return True
    factor = bus_factor(collective, nranks)
    _, halves = _split_columns(run.columns, run.log, run.columns_line)
    for _, tokens in run.rows:
        for half in halves:
            algbw, busbw = float(tokens[half["algbw"]]), float(tokens[half["busbw"]])
            # both are rounded to 2 decimals (fewer above 1000): allow that rounding, no more
            if algbw >= 1 and abs(busbw - algbw * factor) > 0.025 + 0.0006 * busbw:
                return False
    return True


def _version_string(code: int) -> str:
    """2.27.3 from 22703 (NCCL ≥ 2.9: major*10000 + minor*100 + patch; before: *1000)."""
    if code >= 10000:
        return f"{code // 10000}.{code % 10000 // 100}.{code % 100}"
    return f"{code // 1000}.{code % 1000 // 100}.{code % 100}"


def _job(runs: list[_Run]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The devices the runs list (one job for all of them: runs of other jobs go to other
    files), and the job shape they give."""
    devices: list[dict[str, Any]] = []
    where = ""
    for run in runs:
        if not run.devices:
            continue
        mine = sorted(run.devices, key=lambda d: d["rank"])
        placed = [(d["host"], d["index"]) for d in mine]
        if devices and placed != [(d["host"], d["index"]) for d in devices]:
            raise LogError(run.log, run.line, f"this run used other devices ({len(mine)} ranks) than the "
                           f"run at {where}; import them into separate files")
        if not devices:
            devices, where = mine, f"{run.log}:{run.line}"
    hosts = [d["host"] for d in devices]
    shape = layout(hosts if devices and all(hosts) else None)
    if devices and not all(hosts):
        shape["nranks"] = len(devices)
    # a GPU is its index and its PCI address: with one GPU visible per process every rank says
    # "device 0" (the address tells them apart), and old logs print the bus number alone
    shape["gpus_per_node"] = ([len({(d["index"], d["pci"]) for d in devices if d["host"] == h})
                               for h in shape["nodes"]] if shape["nodes"] else None)
    return devices, shape


def _resolve(shape: dict[str, Any], runs: list[_Run], options: Options, name: str,
             notes: list[str]) -> dict[str, Any]:
    """The job shape once --nranks/--nodes and the printed busbw/algbw have had their say: a
    rank count the numbers contradict is dropped (from the log) or refused (from the user)."""
    unknown = {**layout(None), "gpus_per_node": None}
    listed = shape["nranks"]
    nranks = options.nranks or listed
    if nranks and not all(_consistent(r, nranks, options) for r in runs):
        if options.nranks:
            raise LogError(name, None, f"busbw/algbw in the log do not match {options.nranks} ranks "
                           "(--nranks)")
        notes.append(f"the {listed} devices listed do not match busbw/algbw (a cut device list?): "
                     "rank and node counts left unknown")
        shape = unknown
    elif options.nranks and listed and listed != options.nranks:
        notes.append(f"the log lists {listed} devices; --nranks {options.nranks} matches busbw/algbw: "
                     "the host layout is left unknown")
        shape = {**unknown, "nranks": options.nranks}
    elif options.nranks:
        shape = {**shape, "nranks": options.nranks}
    if options.nodes is not None:
        if shape["nnodes"] is not None and shape["nnodes"] != options.nodes:
            raise LogError(name, None, f"the log lists {shape['nnodes']} hosts, --nodes says {options.nodes}")
        shape = {**shape, "nnodes": options.nodes}
    return shape


def convert(logs: list[Log], options: Options) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    """(metadata, rows, skipped) for ``collbench import nccl-tests``.

    Raises:
        LogError: a log holds no nccl-tests table, a row is broken mid-table, or the logs mix jobs.
    """
    parser = _Parser()
    for log in logs:
        parser.parse(log)
    devices, shape = _job(parser.runs)
    notes: list[str] = []
    shape = _resolve(shape, parser.runs, options, logs[0].name, notes)
    rows: list[dict[str, Any]] = []
    runs_info, skipped = [], []
    for run in parser.runs:
        records, info = _records(run, options, shape["nranks"])
        rows += records
        runs_info.append(info)
        skipped += [f"{run.log}:{run.line}: {n[len('skipped: '):]}" for n in info["notes"]
                    if n.startswith("skipped: ")]
    if not rows:
        first = parser.runs[0] if parser.runs else None
        raise LogError(first.log if first else logs[0].name, first.columns_line if first else None,
                       "no table of a collective collbench knows (" + "; ".join(skipped) + ")"
                       if skipped else "the nccl-tests table has no rows")
    versions = sorted({r.version_line for r in parser.runs if r.version_line})
    libraries = sorted({_version_string(r.nccl_library) for r in parser.runs if r.nccl_library}
                       | {r.nccl_version for r in parser.runs if r.nccl_version})
    metadata = base_metadata("nccl-tests", options.argv)
    metadata.update(shape)
    # the environment NCCL said it read (the model honours NCCL_ALGO / NCCL_PROTO); a variable
    # set to different values in the imported logs is left out, with a note
    metadata["env"] = {k: v for k, v in sorted(parser.env.items()) if v is not None}
    notes += [f"{k} differs between the imported logs: left out of env"
              for k, v in sorted(parser.env.items()) if v is None]
    metadata["processes"] = ([{"host": d["host"], "pid": d["pid"]} for d in devices]
                             if devices else None)
    metadata["spec"] = {"collectives": sorted({r["collective"] for r in rows}), "backend": "nccl",
                        "dtypes": sorted({r["dtype"] for r in rows}),
                        "ops": sorted({r["op"] for r in rows if r["op"]}),
                        "placements": ["out_of_place", "in_place"]}
    metadata["backend"] = {"backend": "nccl",
                           "nccl_version": libraries[0] if len(libraries) == 1 else (libraries or None),
                           "devices": [{k: d[k] for k in ("rank", "host", "index", "pci", "name", "group")}
                                       for d in devices] or None}
    metadata["import"].update({
        "tool_version": versions[0] if len(versions) == 1 else (versions or None),
        "files": [log.name for log in logs], "runs": runs_info, "notes": notes,
        "truncated": any(info["truncated"] for info in runs_info)})
    return metadata, rows, skipped
