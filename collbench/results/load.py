"""``collbench.load(paths)``: every row of results files, for notebooks and scripts.

Each row is flattened with the facts of its file that a comparison needs (file, node count,
MPI library, hosts), so rows from many runs can be filtered and grouped together. With pandas
installed the result is a DataFrame; without it, a list of dicts with the same columns.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable

from .files import expand_paths, read_results


def _file_columns(path: str, metadata: dict[str, Any]) -> dict[str, Any]:
    mpi = metadata.get("mpi") or {}
    return {"file": path, "nnodes": metadata.get("nnodes"),
            "mpi_library": mpi.get("library_version"),
            "source": (metadata.get("source") or {}).get("tool") or "collbench",
            "start_time": metadata.get("start_time")}


def load_records(paths: str | Iterable[str]) -> list[dict[str, Any]]:
    """One dict per row of every results file under ``paths`` (files or directories)."""
    records = []
    for path in expand_paths([paths] if isinstance(paths, str) else paths):
        results = read_results(path)
        extra = _file_columns(str(path), results.metadata)
        for row in results.rows:
            records.append({**dataclasses.asdict(row), **extra})
    return records


def load(paths: str | Iterable[str]) -> Any:
    """Rows of results files: a pandas DataFrame when pandas is installed, else a list of dicts.

    Raises:
        UsageError: a path is missing or is not a collbench results file.
    """
    records = load_records(paths)
    try:
        import pandas
    except ImportError:
        return records
    return pandas.DataFrame.from_records(records)
