"""Harness overhead: collbench's native MPI allreduce against a minimal C loop, side by side.

The C loop (csrc/mpi_baselines.c) is built as a shared library with the mpicc of the MPI
that mpi4py uses and loaded into the same MPI processes that run collbench's harness, so all
are timed alternately on the same ranks, cores, MPI state and thread level. For each size the
script alternates the C loop, collbench with the Python executor (mpi4py calls timed by a
Python loop) and collbench with the C executor (``--executor native``: the same MPI call timed by
collbench's C loop, collbench/execute/c_executor.py) for several rounds and reports medians.

    python benchmarks/harness_overhead.py --ranks 2 --rounds 7 --thread-level single

(It launches itself under the bundled mpiexec; the work happens in ``--worker`` mode.)
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _baselines import Baselines, build, launch_env, mpi_tool

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
    from collbench.run.harness import Harness
    from collbench.run.spec import RunSpec
    from collbench.run.watchdog import Activity, Watchdog

    comm = MPI.COMM_WORLD
    baselines = Baselines(library)

    executors = ("python", "native")
    results = {size: {"c": [], **{e: [] for e in executors}} for size in SIZES}
    float32 = DTYPES["float32"]
    for size in SIZES:
        iters = iterations_for(size)
        warmup = max(20, iters // 10)
        spec = RunSpec(collectives=(Collective.ALLREDUCE,), sizes=(size,), dtypes=(float32,), ops=("sum",),
                       placements=(Placement.OUT_OF_PLACE,), iterations=iters, warmup=warmup, check=0,
                       timeout=0)
        request = OpRequest(Collective.ALLREDUCE, "native", float32, "sum", size // 4, Placement.OUT_OF_PLACE)
        harnesses, cleanup = {}, []
        for executor in executors:
            ctrl = comm.Dup()
            backend = MpiBackend(comm, executor=executor)
            backend.reserve(size, [float32])
            activity = Activity(rank=comm.Get_rank())
            harnesses[executor] = Harness(spec, backend, ctrl, Watchdog(ctrl, 0, activity, False), activity)
            cleanup += [backend.close, ctrl.Free]
        for _ in range(rounds):
            results[size]["c"].append(baselines.allreduce_loop(comm, size, iters, warmup))
            for executor, harness in harnesses.items():
                row = harness.measure(request)
                results[size][executor].append(row.time_us if row else 0.0)
        for step in cleanup:
            step()
    if comm.Get_rank() == 0:
        provided = {0: "single", 1: "funneled", 2: "serialized", 3: "multiple"}[MPI.Query_thread()]
        print(f"# {comm.Get_size()} ranks, thread level {provided}, {rounds} alternating rounds in one job, "
              "median per-op time (max over ranks); executor python = mpi4py calls timed in Python, "
              "native = the same MPI call timed by collbench's C loop")
        print(f"{'size (B)':>10} {'C loop (us)':>12} {'python (us)':>12} {'ratio':>7} {'native (us)':>12} "
              f"{'ratio':>7} {'gap (us)':>9}")
        for size in SIZES:
            c = statistics.median(results[size]["c"])
            py = statistics.median(results[size]["python"])
            nat = statistics.median(results[size]["native"])
            print(f"{size:>10} {c:>12.3f} {py:>12.3f} {py / c:>7.3f} {nat:>12.3f} {nat / c:>7.3f} {nat - c:>9.3f}")


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
                               "--thread-level", args.thread_level], env=launch_env(args.ranks)).returncode


if __name__ == "__main__":
    sys.exit(main())
