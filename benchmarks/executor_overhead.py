"""Per-step cost of the schedule executor against the same step written in C.

A synthetic program of STEPS steps, each one send and one receive of BYTES with a partner rank
(0 bytes: the step costs only its bookkeeping), runs through the real MPI executor
(collbench.backends.mpi_executor.MpiScheduleRun: persistent requests, Startall + Waitall per
step) and through a C loop of MPI_Irecv + MPI_Isend + MPI_Waitall (csrc/mpi_baselines.c), in the
same processes, alternately, for several rounds. The difference per step is what Python adds.

    python benchmarks/executor_overhead.py --rounds 7
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _baselines import Baselines, build, mpi_tool

STEPS, ITERS = 64, 300


def worker(library: Path, rounds: int) -> None:
    import mpi4py

    mpi4py.rc.thread_level = "single"
    import numpy as np
    from mpi4py import MPI

    from collbench.algorithms import Buf, Slice
    from collbench.backends.mpi_executor import MpiScheduleRun
    from collbench.lowering import LoweredProgram, LoweredStep

    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    peer = rank ^ 1
    baselines = Baselines(library)
    print_rows = []
    for nbytes in (0, 8):
        steps = tuple(LoweredStep(s, ((peer, Slice(Buf.INPUT, 0, nbytes)),), ((peer, Slice(Buf.OUTPUT, 0, nbytes)),), ())
                      for s in range(STEPS))
        run = MpiScheduleRun(comm, LoweredProgram(steps, 0, None),
                             {Buf.INPUT: np.zeros(max(nbytes, 1), np.uint8), Buf.OUTPUT: np.zeros(max(nbytes, 1), np.uint8)},
                             MPI.UINT8_T, None, comm.Get_size())
        py, c = [], []
        for _ in range(rounds):
            c.append(baselines.exchange_loop(comm, peer, nbytes, STEPS, ITERS))
            for _ in range(10):
                run.run()
            comm.Barrier()
            start = time.perf_counter()
            for _ in range(ITERS):
                run.run()
            py.append(comm.allreduce((time.perf_counter() - start) / (ITERS * STEPS) * 1e6, op=MPI.MAX))
        run.free()
        print_rows.append((nbytes, statistics.median(c), statistics.median(py)))
    if rank == 0:
        print(f"# {comm.Get_size()} ranks, {STEPS} steps x {ITERS} runs, {rounds} alternating rounds, "
              "median us per step (max over ranks)")
        print(f"{'bytes':>6} {'C step':>8} {'executor step':>14} {'overhead':>9}")
        for nbytes, c_us, py_us in print_rows:
            print(f"{nbytes:>6} {c_us:>8.3f} {py_us:>14.3f} {py_us - c_us:>9.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.rounds)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        library = build(Path(tmp))
        return subprocess.run([mpi_tool("mpiexec"), "-n", "2", sys.executable, __file__, "--worker", str(library),
                               "--rounds", str(args.rounds)]).returncode


if __name__ == "__main__":
    sys.exit(main())
