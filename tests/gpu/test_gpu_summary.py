"""scripts/gpu_summary.py on small synthetic results files: what counts as a measured result."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

from _gpu_helpers import REPO

from collbench.results.files import Row


def load_summary():
    spec = importlib.util.spec_from_file_location("gpu_summary", REPO / "scripts" / "gpu_summary.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def row(collective: str, nranks: int, nbytes: int, busbw: float, time_us: float, **changes) -> Row:
    base = Row(collective=collective, algorithm="native", backend="nccl", executor="library", dtype="float32",
               op="sum", root=0, placement="out_of_place", nranks=nranks, bytes=nbytes, count=nbytes // 4,
               iterations=10, warmup=1, timing="batch", aggregation="max", time_us=time_us,
               time_us_min_rank=time_us, time_us_max_rank=time_us, algbw_gbps=busbw, busbw_gbps=busbw, wrong=0)
    return dataclasses.replace(base, **changes)


def write_results(path: Path, rows: list[Row]) -> None:
    records = [{"type": "metadata", "schema": 1}] + [r.to_record() for r in rows]
    records.append({"type": "summary", "rows": len(rows), "wrong_total": sum(r.wrong or 0 for r in rows),
                    "status": "complete"})
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def summary_line(capsys, name: str) -> str:
    return next(line for line in capsys.readouterr().out.splitlines() if line.startswith(name))


def test_no_op_rows_are_not_peak_bandwidth(tmp_path, capsys) -> None:
    """At one rank, reduce and broadcast report busbw = algbw from a local copy (or nothing): a
    huge 'peak' that measures no communication. Zero-byte rows (empty graphs) time a launch."""
    write_results(tmp_path / "mixed.jsonl", [
        row("broadcast", 1, 1 << 20, busbw=900.0, time_us=1.2),     # one rank: a local copy
        row("reduce", 1, 1 << 20, busbw=800.0, time_us=1.1, wrong=3),
        row("allreduce", 2, 0, busbw=0.0, time_us=0.4),              # empty graph
        row("allreduce", 2, 1 << 20, busbw=150.0, time_us=14.0),
        row("allreduce", 2, 1 << 10, busbw=2.5, time_us=6.0),
    ])
    assert load_summary().main(str(tmp_path)) == 0
    line = summary_line(capsys, "mixed.jsonl")
    assert line.split()[1:5] == ["5", "3", "150.0GB/s", "6.00us"]  # rows, wrong (all rows), peak, min


def test_a_file_of_one_rank_runs_has_no_peak(tmp_path, capsys) -> None:
    write_results(tmp_path / "np1.jsonl", [row("broadcast", 1, 1 << 20, busbw=900.0, time_us=1.2),
                                           row("allreduce", 1, 0, busbw=0.0, time_us=0.3)])
    load_summary().main(str(tmp_path))
    line = summary_line(capsys, "np1.jsonl")
    assert "900" not in line and "GB/s" not in line
    assert "no communicating rows" in line


def test_cli_entry_point(tmp_path) -> None:
    import subprocess

    write_results(tmp_path / "a.jsonl", [row("allreduce", 4, 1 << 20, busbw=42.0, time_us=9.0)])
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_summary.py"), str(tmp_path)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "42.0GB/s" in result.stdout
