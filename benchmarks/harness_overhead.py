"""Harness overhead: collbench's native MPI allreduce against a minimal C loop, side by side.

The C loop (csrc/mpi_baselines.c) is built as a shared library with the mpicc of the MPI
that mpi4py uses and loaded into the same MPI processes that run collbench's harness, so both
are timed alternately on the same ranks, cores, MPI state and thread level. For each size the
script alternates C loop and collbench measurement for several rounds and reports medians.

    python benchmarks/harness_overhead.py --ranks 2 --rounds 7 --thread-level single

(It launches itself under the bundled mpiexec; the work happens in ``--worker`` mode.)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _baselines import Baselines, build, mpi_tool

SIZES = (8, 64 << 10, 4 << 20)


def iterations_for(size: int) -> int:
    return 20000 if size <= 1024 else (2000 if size <= 1 << 20 else 200)


def worker(library: Path, rounds: int, level: str) -> None:
    import mpi4py

    mpi4py.rc.thread_level = level
    from mpi4py import MPI

    from collbench.algorithms import Collective
    from collbench.backends.base import OpRequest, Placement
    from collbench.backends.mpi import MpiBackend
    from collbench.dtypes import DTYPES
    from collbench.harness import Harness
    from collbench.spec import RunSpec
    from collbench.watchdog import Activity, Watchdog

    comm = MPI.COMM_WORLD
    baselines = Baselines(library)

    results = {size: {"c": [], "collbench": []} for size in SIZES}
    float32 = DTYPES["float32"]
    for size in SIZES:
        iters = iterations_for(size)
        warmup = max(20, iters // 10)
        spec = RunSpec(collectives=(Collective.ALLREDUCE,), sizes=(size,), dtypes=(float32,), ops=("sum",),
                       placements=(Placement.OUT_OF_PLACE,), iterations=iters, warmup=warmup, check=0,
                       timeout=0)
        ctrl = comm.Dup()
        backend = MpiBackend(comm)
        backend.reserve(size, [float32])
        activity = Activity(rank=comm.Get_rank())
        harness = Harness(spec, backend, ctrl, Watchdog(ctrl, 0, activity, False), activity)
        request = OpRequest(Collective.ALLREDUCE, "native", float32, "sum", size // 4, Placement.OUT_OF_PLACE)
        for _ in range(rounds):
            results[size]["c"].append(baselines.allreduce_loop(comm, size, iters, warmup))
            row = harness.measure(request)
            results[size]["collbench"].append(row.time_us if row else 0.0)
        backend.close()
        ctrl.Free()
    if comm.Get_rank() == 0:
        provided = {0: "single", 1: "funneled", 2: "serialized", 3: "multiple"}[MPI.Query_thread()]
        print(f"# {comm.Get_size()} ranks, thread level {provided}, {rounds} alternating rounds in one job, "
              "median per-op time (max over ranks)")
        print(f"{'size (B)':>10} {'C loop (us)':>12} {'collbench (us)':>15} {'ratio':>7} {'gap (us)':>9}")
        for size in SIZES:
            c = statistics.median(results[size]["c"])
            cb = statistics.median(results[size]["collbench"])
            print(f"{size:>10} {c:>12.3f} {cb:>15.3f} {cb / c:>7.3f} {cb - c:>9.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--thread-level", choices=["single", "multiple"], default="single")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.rounds, args.thread_level)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        library = build(Path(tmp))
        return subprocess.run([mpi_tool("mpiexec"), "-n", str(args.ranks), sys.executable, __file__,
                               "--worker", str(library), "--rounds", str(args.rounds),
                               "--thread-level", args.thread_level], env=dict(os.environ)).returncode


if __name__ == "__main__":
    sys.exit(main())
