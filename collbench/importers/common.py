"""What the nccl-tests and OSU importers share: reading logs as users paste them, the row and
metadata records, and writing a results file all at once (or not at all).

Logs come through launchers, terminals and issue trackers, so every line is cleaned the same way
before a parser looks at it: carriage returns and colour codes go, and so do the tags launchers
put in front of (or, with ``mpiexec -prepend-rank``, in the middle of) each write.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from .. import __version__
from ..algorithms import Collective
from ..dtypes import parse_dtypes
from ..errors import UsageError
from ..results.files import SCHEMA_VERSION, Row
from ..results.metadata import now_iso

# Launcher tags: Open MPI --tag-output "[1,0]<stdout>:", MPICH -prepend-rank "[0] ", which
# MPICH repeats inside a line when one row is printed by several writes.
_TAG = re.compile(r"\[\d+(?:,\d+)?\](?:<std(?:out|err)>:)?")
# Line-start timestamps: ISO 8601 (`kubectl logs --timestamps`, `docker logs -t`, loggers, maybe in
# brackets), ctime (Open MPI 4 `--timestamp-output`: "Thu May  7 10:39:20 2020[1,1]<stdout>:"),
# syslog/`ts` ("Jan 31 13:25:21 ") and a bare time of day ("10:11:12.345 ").
_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_TIMESTAMP = (r"\[?(?:\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?"
              r"|(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) +" + _MONTH + r" +\d{1,2} +\d{2}:\d{2}:\d{2} +\d{4}"
              r"|" + _MONTH + r" +\d{1,2} +\d{2}:\d{2}:\d{2}(?:[.,]\d+)?"
              r"|\d{2}:\d{2}:\d{2}(?:[.,]\d+)?)\]?(?:\s+|(?=\[))")
# Line-start prefixes: Slurm `srun -l` (" 0: "), Ray/SkyPilot "(head, rank=0, pid=3808) ", timestamps.
_PREFIX = re.compile(r"^\s*(?:\d+:\s|\((?:[\w-]+, )?rank=\d+, pid=\d+[^)]*\)\s|" + _TIMESTAMP + ")")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class LogError(UsageError):
    """A log that cannot be read: one line naming the file and the line."""

    def __init__(self, name: str, line: int | None, message: str) -> None:
        super().__init__(f"{name}:{line}: {message}" if line else f"{name}: {message}")


@dataclass(frozen=True)
class Options:
    """What the user adds on the command line to what a log says (never guessed)."""

    argv: list[str]
    nranks: int | None = None       # --nranks: OSU logs do not print the rank count
    nodes: int | None = None        # --nodes
    collective: str | None = None   # --collective: for a table whose log never names it
    dtype: str | None = None        # --dtype: OSU before 7.0 prints no "# Datatype" line


@dataclass(frozen=True)
class Log:
    """One input: its name as the user gave it (``<stdin>`` for ``-``) and its lines."""

    name: str
    lines: list[str]


def decode(data: bytes) -> str:
    """The text of a log: UTF-8 (a bad byte must not hide the table around it, pasted logs are not
    always clean), without a byte-order mark; UTF-16 as PowerShell's ``>`` writes it."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", "replace")
    if len(data) >= 2 and data.count(0) * 3 > len(data):   # UTF-16 without a mark
        return data.decode("utf-16-le" if data[1] == 0 else "utf-16-be", "replace")
    return data.decode("utf-8", "replace").removeprefix("\ufeff")


def read_logs(paths: Iterable[str]) -> list[Log]:
    """Read every input up front (``-`` is stdin, once), so a missing file fails before parsing."""
    paths = list(paths)
    if paths.count("-") > 1:
        raise UsageError("- (stdin) is given twice; stdin can be read only once")
    logs = []
    for path in paths:
        if path == "-":
            logs.append(Log("<stdin>", decode(sys.stdin.buffer.read()).splitlines()))
            continue
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise UsageError(f"no such log file: {path}") from None
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from None
        logs.append(Log(path, decode(data).splitlines()))
    return logs


def clean(line: str) -> str:
    """The line as the tool printed it: launcher tags, terminal codes and CR removed."""
    line = _ANSI.sub("", line.replace("\r", ""))
    while True:
        stripped = _PREFIX.sub("", line, count=1)
        if stripped == line:
            break
        line = stripped
    return _TAG.sub(" ", line).rstrip()


def collective_of(name: str) -> Collective | None:
    """collbench's Collective for a tool's name, or None when collbench has no such collective.

    The one place that decides which tables are skipped: alltoall is imported as soon as the
    Collective enum has it.
    """
    try:
        return Collective.parse(name)
    except ValueError:
        return None


def dtype_of(name: str) -> tuple[str, int | None]:
    """(collbench dtype name, item size) for a tool's type name (float, half, int, char, ...);
    a type collbench does not know (f8e4m3, ...) keeps its own name and an unknown size."""
    try:
        dtypes = parse_dtypes(name)
    except UsageError:
        return name, None
    if len(dtypes) != 1:       # "all", "float,int": not one type
        return name, None
    return dtypes[0].name, dtypes[0].itemsize


def collective_option(text: str | None, aliases: dict[str, str] | None = None) -> str | None:
    """``--collective`` checked (None when not given): collbench's name of the collective, from
    its own spelling, nccl-tests' (``all_reduce``, ``all_reduce_perf``) or a tool's ``aliases``
    (OSU's ``bcast``, ``reduce_scatter_block``).

    Raises:
        UsageError: one line, for a collective collbench does not know (it would be skipped).
    """
    if text is None:
        return None
    key = re.sub(r"_perf\w*$", "", text.strip().rsplit("/", 1)[-1]).lower()
    key = re.sub(r"[-\s]+", "_", key)
    collective = collective_of((aliases or {}).get(key, key)) if key else None
    if collective is None:
        known = ", ".join(c.value for c in Collective)
        raise UsageError(f"--collective {text!r}: not a collective collbench knows (known: {known}; "
                         "nccl-tests and OSU spellings such as all_reduce or bcast work too)")
    return collective.value


def dtype_option(text: str | None, aliases: dict[str, str] | None = None) -> str | None:
    """``--dtype`` checked (None when not given): collbench's name of one data type, from its own
    spelling, nccl-tests' (``float``, ``half``, ``double``) or a tool's ``aliases`` (OSU's
    ``MPI_FLOAT``).

    Raises:
        UsageError: one line, for anything but one data type collbench knows.
    """
    if text is None:
        return None
    key = text.strip()
    key = (aliases or {}).get(key.upper(), key)
    if key.lower() == "all" or "," in key:
        raise UsageError(f"--dtype {text!r}: give one data type (the type of the log's rows)")
    try:
        dtypes = parse_dtypes(key) if key else ()
    except UsageError:
        dtypes = ()
    if len(dtypes) != 1:
        from ..dtypes import DTYPES

        raise UsageError(f"--dtype {text!r}: not a data type collbench knows (known: "
                         f"{', '.join(DTYPES)}; spellings such as float, double, half or int work too)")
    return dtypes[0].name


def row_record(**fields: Any) -> dict[str, Any]:
    """A ``row`` record with every field the reader requires, unknown ones as null."""
    record: dict[str, Any] = {"type": "row"}
    for field in dataclasses.fields(Row):
        required = field.default is dataclasses.MISSING
        value = fields.pop(field.name, None)
        if required or value is not None:   # optional fields only when set, as `run` writes them
            record[field.name] = value      # a required one is present, null when unknown
    assert not fields, f"not Row fields: {sorted(fields)}"
    return record


def layout(hosts_of_ranks: list[str] | None) -> dict[str, Any]:
    """nranks/nnodes/nodes/ranks_per_node/node_of_rank from the host of each rank (in rank
    order), as `collbench run` records them; all null when the log lists no ranks."""
    if not hosts_of_ranks:
        return {"nranks": None, "nnodes": None, "nodes": None, "ranks_per_node": None,
                "node_of_rank": None}
    nodes = list(dict.fromkeys(hosts_of_ranks))
    index = {host: i for i, host in enumerate(nodes)}
    return {"nranks": len(hosts_of_ranks), "nnodes": len(nodes), "nodes": nodes,
            "ranks_per_node": [hosts_of_ranks.count(h) for h in nodes],
            "node_of_rank": [index[h] for h in hosts_of_ranks]}


def base_metadata(tool: str, argv: list[str]) -> dict[str, Any]:
    """The fields every imported file's metadata record starts with."""
    return {"type": "metadata", "schema": SCHEMA_VERSION, "collbench_version": __version__,
            "command": " ".join(["collbench", *argv]), "argv": list(argv),
            "start_time": None,           # when the source measured: no log says
            "env": {},
            "import": {"tool": tool, "imported_at": now_iso()}}


def summary_record(rows: list[dict[str, Any]], skipped: list[str], truncated: bool) -> dict[str, Any]:
    wrong = [r["wrong"] for r in rows if r.get("wrong") is not None]
    return {"type": "summary", "end_time": None, "rows": len(rows), "wrong_total": sum(wrong),
            "skipped": skipped, "status": "truncated" if truncated else "complete"}


def check_out(out: Path) -> None:
    """Refuse an existing output file (never overwritten) before any log is parsed."""
    if out.exists():
        raise UsageError(f"results file {out} already exists; choose another -o "
                         "(collbench never overwrites results)")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"cannot write {out}: directory {parent} does not exist")


def write_results(out: Path, records: list[dict[str, Any]]) -> None:
    """Write the whole file under a temporary name, then link it into place: a failure leaves
    no partial file, and a file created meanwhile under ``out`` is not overwritten."""
    check_out(out)
    parent = out.parent if str(out.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)   # mkstemp makes 0600; results are ordinary files
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n")
        try:
            os.link(tmp, out)             # atomic, and fails if out appeared meanwhile
        except FileExistsError:
            raise UsageError(f"results file {out} already exists; choose another -o "
                             "(collbench never overwrites results)") from None
        except OSError:                   # a filesystem without hard links
            if out.exists():
                raise UsageError(f"results file {out} already exists; choose another -o") from None
            os.replace(tmp, out)
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror}") from None
    except ValueError as exc:   # a NaN or infinity a parser let through: no file rather than a bad one
        raise UsageError(f"cannot write {out}: {exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
