"""``collbench report``: the tables of results files again, or their rows as CSV/Markdown/JSON."""

from __future__ import annotations

import csv
import io
import json
from typing import Sequence

from tabulate import tabulate

from . import table
from .files import ResultsFile, Row, expand_paths, read_results

# Columns for the machine-readable formats, in reading order.
CSV_FIELDS = ("collective", "algorithm", "backend", "executor", "dtype", "op", "root", "placement",
              "nranks", "bytes", "count", "iterations", "time_us", "time_us_min_rank",
              "time_us_max_rank", "algbw_gbps", "busbw_gbps", "wrong", "timing", "aggregation")
_STAT_FIELDS = ("min", "p50", "p99", "max", "mean", "stdev")
# compressed algorithms' columns (collbench/compress): only when some row has them
COMPRESSED_FIELDS = ("sent_bytes", "compression", "err_rel_l2", "err_max_abs", "dense_busbw_gbps")


def _flat(row: Row, source: str, compressed: bool = False) -> dict[str, object]:
    record = {name: getattr(row, name) for name in CSV_FIELDS}
    for key in _STAT_FIELDS:
        record[f"{key}_us"] = row.stats_us.get(key) if row.stats_us else None
    if compressed:
        record.update({name: getattr(row, name) for name in COMPRESSED_FIELDS})
    record["file"] = source
    return record


def report(paths: Sequence[str], fmt: str = "text") -> str:
    files = [read_results(p) for p in expand_paths(paths)]
    if fmt == "text":
        return "\n".join(_text(f) for f in files)
    compressed = any(table.is_compressed(row) for f in files for row in f.rows)
    records = [_flat(row, str(f.path), compressed) for f in files for row in f.rows]
    if fmt == "json":
        return json.dumps(records, indent=1)
    if fmt == "csv":
        buffer = io.StringIO()
        fields = (list(CSV_FIELDS) + [f"{k}_us" for k in _STAT_FIELDS]
                  + (list(COMPRESSED_FIELDS) if compressed else []) + ["file"])
        writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
        return buffer.getvalue()
    headers = ["collective", "algorithm", "backend", "dtype", "op", "placement", "nranks", "bytes",
               "time (us)", "algbw (GB/s)", "busbw (GB/s)", "#wrong"]
    body = [[r["collective"], r["algorithm"], r["backend"], _known(r["dtype"]), r["op"] or "-",
             str(r["placement"]).replace("_", "-"), _known(r["nranks"]), _known(r["bytes"]),
             _number(r["time_us"]), _number(r["algbw_gbps"]), _number(r["busbw_gbps"]),
             _known(r["wrong"])] for r in records]
    if compressed:
        headers += ["sent (B)", "ratio", "rel L2 err", "max abs err", "dense busbw (GB/s)"]
        for line, r in zip(body, records):
            line += [_known(r["sent_bytes"]), _number(r["compression"]), _sci(r["err_rel_l2"]),
                     _sci(r["err_max_abs"]), _number(r["dense_busbw_gbps"])]
    return tabulate(body, headers=headers, tablefmt="github", disable_numparse=True)


def _known(value: object) -> object:
    """A field an imported log did not give is None: show N/A."""
    return "N/A" if value is None else value


def _number(value: object) -> str:
    return "N/A" if value is None else f"{float(value):.2f}"  # type: ignore[arg-type]


def _sci(value: object) -> str:
    return "N/A" if value is None else f"{float(value):.2e}"  # type: ignore[arg-type]


def _meta(value: object) -> object:
    return "?" if value is None else value


def _text(results: ResultsFile) -> str:
    meta = results.metadata
    mpi = meta.get("mpi") or {}
    lines = [f"# file {results.path}",
             f"# {_meta(meta.get('start_time'))} · collbench {_meta(meta.get('collbench_version'))} · "
             f"{_meta(meta.get('nranks'))} ranks on {_meta(meta.get('nnodes'))} node(s) · "
             f"{_meta(mpi.get('library_version'))} · thread level {_meta(mpi.get('thread_level'))}",
             f"# command: {_meta(meta.get('command'))}"]
    lines += [f"# warning: {w}" for w in results.warnings]
    lines.append(table.render(results.rows, meta.get("nnodes")) if results.rows else "# (no rows)")
    return "\n".join(lines)
