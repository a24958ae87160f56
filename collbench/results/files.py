"""Results files: JSON Lines, a metadata record first, one record per table row, a summary last.

Rows are appended and flushed as they complete, so a killed sweep keeps every finished row;
the reader tolerates a missing summary and a torn last line. The schema is documented in
results/README.md; bump SCHEMA_VERSION when a field changes meaning.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, TextIO

from ..errors import UsageError

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Row:
    """One measured configuration at one size and placement (half a table line)."""

    collective: str
    algorithm: str
    backend: str
    executor: str
    dtype: str
    op: str | None
    root: int | None
    placement: str
    nranks: int
    bytes: int
    count: int
    iterations: int
    warmup: int
    timing: str                  # "batch" or "per_iteration"
    aggregation: str             # rank0 | mean | min | max
    time_us: float               # aggregated per-operation time
    time_us_min_rank: float      # spread of the per-rank times behind time_us
    time_us_max_rank: float
    algbw_gbps: float
    busbw_gbps: float
    wrong: int | None            # summed over ranks; None when validation is off
    stats_us: dict[str, float] | None = None   # min p50 p99 max mean stdev (per_iteration only)
    samples_us: list[float] | None = None      # aggregated per-iteration samples
    options: dict[str, object] | None = None   # algorithm options (hierarchical inner/outer, …)
    selected_by: str | None = None             # --algo auto: model:<profile> or results:<file>
    skew: str | None = None                    # alltoallv: its count matrix, zipf:<s> or file:<name>
    # compressed algorithms only (collbench/compress; docs/compression.md), None elsewhere:
    sent_bytes: int | None = None              # most bytes any rank sent per operation
    compression: float | None = None           # dense ring bytes per rank / sent_bytes
    err_rel_l2: float | None = None            # vs the exact dense sum, over all ranks' outputs
    err_max_abs: float | None = None
    dense_busbw_gbps: float | None = None      # busbw a dense allreduce needs to match the time
    compress: dict[str, object] | None = None  # options in effect, quantizations, switch point

    def to_record(self) -> dict[str, Any]:
        record = {"type": "row", **dataclasses.asdict(self)}
        return {k: v for k, v in record.items() if v is not None or k in ("wrong", "op", "root")}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "Row":
        """The row of a record; a field the record lacks is None (imported logs leave unknowns
        out or null). Raises ValueError, naming the field, for a record no reader can use
        (:func:`row_problem`)."""
        problem = row_problem(record)
        if problem:
            raise ValueError(problem)
        fields: dict[str, Any] = {f.name: record.get(f.name) for f in dataclasses.fields(cls)
                                  if f.name in record or f.default is dataclasses.MISSING}
        return cls(**fields)


# What a row field must hold (when not null): the checks every reader relies on, so that a
# damaged or hand-edited file is one error line naming the field, never a traceback later.
_NUMBER = (int, float)
_ROW_TYPES: dict[str, tuple[type, ...]] = {
    "collective": (str,), "algorithm": (str,), "backend": (str,), "executor": (str,),
    "dtype": (str,), "op": (str,), "root": (int,), "placement": (str,), "nranks": (int,),
    "bytes": (int,), "count": (int,), "iterations": (int,), "warmup": (int,), "timing": (str,),
    "aggregation": (str,), "time_us": _NUMBER, "time_us_min_rank": _NUMBER,
    "time_us_max_rank": _NUMBER, "algbw_gbps": _NUMBER, "busbw_gbps": _NUMBER, "wrong": (int,),
    "stats_us": (dict,), "samples_us": (list,), "options": (dict,), "selected_by": (str,),
    "skew": (str,), "sent_bytes": (int,), "compression": _NUMBER, "err_rel_l2": _NUMBER,
    "err_max_abs": _NUMBER, "dense_busbw_gbps": _NUMBER, "compress": (dict,),
}
# never null: what identifies a row and what it measured
_ROW_REQUIRED = ("collective", "algorithm", "backend", "placement", "bytes", "time_us")
PLACEMENTS = ("out_of_place", "in_place")
# metadata fields readers open as objects or lists (when not null)
_METADATA_TYPES: dict[str, tuple[type, ...]] = {
    "schema": (int,), "nranks": (int,), "nnodes": (int,), "cpu_count": (int,),
    "collbench_version": (str,), "git_revision": (str,), "command": (str,), "start_time": (str,),
    "cpu_model": (str,), "argv": (list,), "nodes": (list,), "ranks_per_node": (list,),
    "node_of_rank": (list,), "processes": (list,), "plugins": (list,), "gpus_per_node": (list,),
    "mpi": (dict,), "software": (dict,), "env": (dict,), "spec": (dict,), "backend": (dict,),
    "import": (dict,), "source": (dict,), "workload": (dict,),
}


def _type_problem(name: str, value: Any, types: tuple[type, ...]) -> str | None:
    """Why ``value`` is not of ``types`` (bools are not numbers; numbers must be finite)."""
    if isinstance(value, bool) or not isinstance(value, types):
        kind = {str: "text", int: "a whole number", float: "a number", dict: "an object",
                list: "a list"}[types[-1]]
        shown = json.dumps(value) if not isinstance(value, (dict, list)) else type(value).__name__
        return f"'{name}' must be {kind}, not {shown[:40]}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"'{name}' must be a finite number, not {value}"
    return None


def row_problem(record: dict[str, Any]) -> str | None:
    """Why a row record cannot be read (a missing or mistyped field), or None."""
    for name in _ROW_REQUIRED:
        if record.get(name) is None:
            return f"row has no '{name}'"
    problem = _fields_problem(record, _ROW_TYPES, "row")
    if problem:
        return problem
    if record["placement"] not in PLACEMENTS:
        return f"row field 'placement' must be out_of_place or in_place, not {record['placement']!r}"
    if record["bytes"] < 0 or record["time_us"] < 0:
        return f"row field '{'bytes' if record['bytes'] < 0 else 'time_us'}' is negative"
    samples = record.get("samples_us")
    if samples is not None and not all(isinstance(v, _NUMBER) and not isinstance(v, bool)
                                       and math.isfinite(v) for v in samples):
        return "row field 'samples_us' must hold finite numbers only"
    stats = record.get("stats_us")
    if stats is not None and not all(isinstance(v, _NUMBER) and not isinstance(v, bool)
                                     for v in stats.values()):
        return "row field 'stats_us' must hold numbers only"
    return None


def metadata_problem(record: dict[str, Any]) -> str | None:
    """Why a metadata record cannot be read (a mistyped field), or None."""
    return _fields_problem(record, _METADATA_TYPES, "metadata")


def _fields_problem(record: dict[str, Any], fields: dict[str, tuple[type, ...]],
                    kind: str) -> str | None:
    """The first of ``fields`` that ``record`` holds (not null) with the wrong type."""
    for name, types in fields.items():
        value = record.get(name)
        if value is not None:
            problem = _type_problem(name, value, types)
            if problem:
                return f"{kind} field {problem}"
    return None


def check_output_path(path: str | Path, flag: str, what: str = "file",
                      may_replace: Callable[[Path], bool] | None = None, create: bool = True) -> Path:
    """Fail early, before any work, when ``path`` cannot be written: empty, a directory, in a
    directory that cannot be created or written, or an existing file that ``may_replace`` does
    not allow replacing (by default none: results are never overwritten). Creates the parent
    directory (``create``; otherwise the nearest existing one must be a writable directory).
    Every output option goes through this, so the mistakes read the same everywhere.

    Raises:
        UsageError: one line naming ``flag`` and the path.
    """
    if not str(path).strip():
        raise UsageError(f"{flag}: give a file name")
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{flag} {path} is a directory; give a file name")
    if path.exists() or path.is_symlink():
        if may_replace is None:
            raise UsageError(f"{what} {path} already exists; choose another {flag} "
                             "(collbench never overwrites results)")
        if not may_replace(path):
            raise UsageError(f"{flag} {path} already exists and is not a {what}; choose another "
                             f"{flag} (collbench replaces only its own {what}s)")
    parent = path.parent
    if not create:
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise UsageError(f"cannot write {path} ({flag}): {parent} is not a directory")
    if create:
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot write {path} ({flag}): cannot create directory {parent}: "
                             f"{exc.strerror or exc}") from None
    if not os.access(parent, os.W_OK):
        raise UsageError(f"cannot write {path} ({flag}): directory {parent} is not writable")
    return path


class ResultsWriter:
    """Appends records to a new JSON Lines file, flushing each one to the OS immediately.

    The file must not exist: results already written are never overwritten.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: TextIO | None = None

    @staticmethod
    def check_path(path: Path, flag: str = "--out") -> None:
        """Fail early (before any measurement) if ``path`` cannot be created."""
        check_output_path(path, flag, "results file")

    def open(self) -> None:
        self.check_path(self.path)
        try:
            self._file = open(self.path, "x", encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot create results file {self.path}: {exc.strerror}") from None

    def write(self, record: dict[str, Any]) -> None:
        assert self._file is not None, "open() first"
        self._file.write(json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


@dataclass
class ResultsFile:
    """A parsed results file."""

    path: Path
    metadata: dict[str, Any]
    rows: list[Row]
    summary: dict[str, Any] | None
    warnings: list[str]

    @property
    def complete(self) -> bool:
        return self.summary is not None


def read_results(path: Path) -> ResultsFile:
    """Parse a results file; a missing summary or torn final line becomes a warning, not an error.

    Raises:
        UsageError: the file is missing, empty, or not a collbench results file.
    """
    where = Path(path)
    if where.is_dir():
        raise UsageError(f"{path} is a directory, not a results file")
    try:
        data = where.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"no such results file: {path}") from None
    except OSError as exc:
        raise UsageError(f"cannot read results file {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark (an editor's save) is not an error
    except UnicodeDecodeError as exc:
        bad_line = data[:exc.start].count(b"\n") + 1
        raise UsageError(f"{path}:{bad_line}: not UTF-8 text (byte {exc.start}); is this a collbench "
                         "results file?") from None
    lines = text.splitlines()
    metadata: dict[str, Any] | None = None
    rows: list[Row] = []
    summary = None
    warnings: list[str] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                warnings.append(f"{path}: last line is incomplete (the run was interrupted); ignored")
                continue
            raise UsageError(f"{path}:{number}: not valid JSON; is this a collbench results file?") from None
        kind = record.get("type") if isinstance(record, dict) else None
        problem = None
        if kind == "metadata":
            if metadata is not None:
                problem = "a second metadata record (were two results files joined?)"
            else:
                problem = metadata_problem(record)
                metadata = record
        elif kind == "row":
            try:
                rows.append(Row.from_record(record))
            except ValueError as exc:
                problem = str(exc)
        elif kind == "summary":
            summary = record
        if problem:
            raise UsageError(f"{path}:{number}: {problem}; is this file damaged?")
    if metadata is None:
        raise UsageError(f"{path}: no metadata record; is this a collbench results file?")
    if (metadata.get("schema") or 0) > SCHEMA_VERSION:
        raise UsageError(f"{path}: schema {metadata.get('schema')} is newer than this collbench "
                         f"understands ({SCHEMA_VERSION}); upgrade collbench")
    if summary is None:
        warnings.append(f"{path}: no summary record (the run did not finish); showing {len(rows)} rows")
    return ResultsFile(Path(path), metadata, rows, summary, warnings)


def file_digest(path: str | Path) -> str:
    """The sha256 of a file's bytes: which log a profile was fitted on, whatever its name."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def expand_paths(paths: Iterable[str]) -> list[Path]:
    """Files as given; directories expand to the ``*.jsonl`` files they hold (sorted)."""
    result: list[Path] = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            found = sorted(path.rglob("*.jsonl"))
            if not found:
                raise UsageError(f"directory {path} holds no .jsonl results files")
            result.extend(found)
        else:
            result.append(path)
    return result
