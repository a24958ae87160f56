"""Hand-made results files for the analysis tests (no MPI needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from collbench.results.files import ResultsWriter, Row


def meta(nranks: int = 2, nnodes: int = 1, library: str = "MPICH Version: 5.0.2", thread: str = "single",
         node_of_rank: list[int] | None = None) -> dict:
    nodes = node_of_rank or [r * nnodes // nranks for r in range(nranks)]
    return {"type": "metadata", "schema": 1, "nranks": nranks, "nnodes": nnodes,
            "nodes": [f"n{k}" for k in range(nnodes)],
            "ranks_per_node": [nodes.count(k) for k in range(nnodes)], "node_of_rank": nodes,
            "mpi": {"library_version": library, "thread_level": thread},
            "spec": {"backend": "mpi"}, "start_time": "2026-11-26T00:00:00+00:00",
            "command": "collbench run (test)"}


def row(algorithm: str = "ring", nbytes: int = 1 << 20, time_us: float = 100.0, nranks: int = 2,
        samples: list[float] | None = None, collective: str = "allreduce", dtype: str = "float32",
        placement: str = "out_of_place", executor: str = "python") -> Row:
    factor = 2 * (nranks - 1) / nranks if collective == "allreduce" else (nranks - 1) / nranks
    algbw = nbytes / (time_us * 1e-6) / 1e9
    count = nbytes // 4 if collective == "allreduce" else nbytes // 4 // nranks
    stats = None
    if samples is not None:
        arr = np.asarray(samples)
        stats = {"min": float(arr.min()), "p50": float(np.median(arr)), "p99": float(arr.max()),
                 "max": float(arr.max()), "mean": float(arr.mean()), "stdev": float(arr.std())}
    return Row(collective=collective, algorithm=algorithm, backend="mpi", executor=executor,
               dtype=dtype, op="sum", root=None, placement=placement, nranks=nranks, bytes=nbytes,
               count=count, iterations=len(samples) if samples else 10, warmup=5,
               timing="per_iteration" if samples is not None else "batch", aggregation="max",
               time_us=time_us, time_us_min_rank=time_us, time_us_max_rank=time_us,
               algbw_gbps=algbw, busbw_gbps=algbw * factor, wrong=0, stats_us=stats, samples_us=samples)


def write(path: Path, rows: list[Row], metadata: dict | None = None) -> Path:
    writer = ResultsWriter(path)
    writer.open()
    writer.write(metadata or meta(rows[0].nranks if rows else 2))
    for r in rows:
        writer.write(r.to_record())
    writer.write({"type": "summary", "rows": len(rows), "wrong_total": 0, "skipped": [],
                  "status": "complete"})
    writer.close()
    return path
