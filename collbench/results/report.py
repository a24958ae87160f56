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


def _flat(row: Row, source: str) -> dict[str, object]:
    record = {name: getattr(row, name) for name in CSV_FIELDS}
    for key in _STAT_FIELDS:
        record[f"{key}_us"] = row.stats_us.get(key) if row.stats_us else None
    record["file"] = source
    return record


def report(paths: Sequence[str], fmt: str = "text") -> str:
    files = [read_results(p) for p in expand_paths(paths)]
    if fmt == "text":
        return "\n".join(_text(f) for f in files)
    records = [_flat(row, str(f.path)) for f in files for row in f.rows]
    if fmt == "json":
        return json.dumps(records, indent=1)
    if fmt == "csv":
        buffer = io.StringIO()
        fields = list(CSV_FIELDS) + [f"{k}_us" for k in _STAT_FIELDS] + ["file"]
        writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
        return buffer.getvalue()
    headers = ["collective", "algorithm", "backend", "dtype", "op", "placement", "nranks", "bytes",
               "time (us)", "algbw (GB/s)", "busbw (GB/s)", "#wrong"]
    body = [[r["collective"], r["algorithm"], r["backend"], r["dtype"], r["op"] or "-",
             str(r["placement"]).replace("_", "-"), r["nranks"], r["bytes"], f"{r['time_us']:.2f}",
             f"{r['algbw_gbps']:.2f}", f"{r['busbw_gbps']:.2f}",
             "N/A" if r["wrong"] is None else r["wrong"]] for r in records]
    return tabulate(body, headers=headers, tablefmt="github", disable_numparse=True)


def _text(results: ResultsFile) -> str:
    meta = results.metadata
    mpi = meta.get("mpi", {})
    lines = [f"# file {results.path}",
             f"# {meta.get('start_time', '?')} · collbench {meta.get('collbench_version', '?')} · "
             f"{meta.get('nranks', '?')} ranks on {meta.get('nnodes', '?')} node(s) · "
             f"{mpi.get('library_version', '?')} · thread level {mpi.get('thread_level', '?')}",
             f"# command: {meta.get('command', '?')}"]
    lines += [f"# warning: {w}" for w in results.warnings]
    lines.append(table.render(results.rows, meta.get("nnodes")) if results.rows else "# (no rows)")
    return "\n".join(lines)
