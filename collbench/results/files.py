"""Results files: JSON Lines, a metadata record first, one record per table row, a summary last.

Rows are appended and flushed as they complete, so a killed sweep keeps every finished row;
the reader tolerates a missing summary and a torn last line. The schema is documented in
results/README.md; bump SCHEMA_VERSION when a field changes meaning.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, TextIO

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
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in names})


class ResultsWriter:
    """Appends records to a new JSON Lines file, flushing each one to the OS immediately.

    The file must not exist: results already written are never overwritten.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: TextIO | None = None

    @staticmethod
    def check_path(path: Path) -> None:
        """Fail early (before any measurement) if ``path`` cannot be created."""
        if path.exists():
            raise UsageError(f"results file {path} already exists; choose another --out "
                             "(collbench never overwrites results)")
        parent = path.parent if str(path.parent) else Path(".")
        if parent.exists() and not parent.is_dir():
            raise UsageError(f"cannot write results to {path}: {parent} is not a directory")
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create results directory {parent}: {exc.strerror}") from None
        if not os.access(parent, os.W_OK):
            raise UsageError(f"cannot write results to {path}: directory {parent} is not writable")

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
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UsageError(f"no such results file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read results file {path}: {exc}") from None
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
        if kind == "metadata":
            metadata = record
        elif kind == "row":
            rows.append(Row.from_record(record))
        elif kind == "summary":
            summary = record
    if metadata is None:
        raise UsageError(f"{path}: no metadata record; is this a collbench results file?")
    if metadata.get("schema", 0) > SCHEMA_VERSION:
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
