"""Per-step cost of the schedule executors against the same step written in C.

A synthetic program of STEPS steps, each one send and one receive of BYTES with a partner rank
(0 bytes: the step costs only its bookkeeping), runs through the Python MPI executor
(collbench.execute.python_mpi.MpiScheduleRun: persistent requests, Startall + Waitall per
step), through the C executor (collbench.execute.c_executor.NativeScheduleRun: the flattened
program run by csrc/native_executor.c; "native" in the output, as in results files) and through
a hand-written C loop of MPI_Irecv + MPI_Isend + MPI_Waitall (csrc/mpi_baselines.c), in the same
processes, alternately, for several rounds.
The difference per step is what each executor adds to the MPI calls themselves.

    python benchmarks/executor_overhead.py --rounds 7 [--ranks 4]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _baselines import Baselines, build, launch_env, mpi_tool

STEPS, ITERS = 64, 300


def worker(library: Path, rounds: int) -> None:
    import mpi4py

    mpi4py.rc.thread_level = "single"
    import numpy as np
    from mpi4py import MPI

    from collbench.algorithms import Buf, Slice
    from collbench.execute.bind import LoweredProgram, LoweredStep
    from collbench.execute.c_build import load
    from collbench.execute.c_executor import NativeScheduleRun
    from collbench.execute.python_mpi import MpiScheduleRun

    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    peer = rank ^ 1
    baselines = Baselines(library)
    native = load()
    print_rows = []
    for nbytes in (0, 8):
        steps = tuple(LoweredStep(s, ((peer, Slice(Buf.INPUT, 0, nbytes)),), ((peer, Slice(Buf.OUTPUT, 0, nbytes)),), ())
                      for s in range(STEPS))
        program = LoweredProgram(steps, 0, None)
        buffers = {Buf.INPUT: np.zeros(max(nbytes, 1), np.uint8), Buf.OUTPUT: np.zeros(max(nbytes, 1), np.uint8)}
        run = MpiScheduleRun(comm, program, buffers, MPI.UINT8_T, None, comm.Get_size())
        native_run = NativeScheduleRun(native, comm, program, buffers, MPI.UINT8_T, "uint8", None, comm.Get_size())
        py, nat, c = [], [], []
        for _ in range(rounds):
            c.append(baselines.exchange_loop(comm, peer, nbytes, STEPS, ITERS))
            for _ in range(10):
                run.run()
            comm.Barrier()
            start = time.perf_counter()
            for _ in range(ITERS):
                run.run()
            py.append(comm.allreduce((time.perf_counter() - start) / (ITERS * STEPS) * 1e6, op=MPI.MAX))
            native_run.batch(10)
            comm.Barrier()
            nat.append(comm.allreduce(native_run.batch(ITERS) / STEPS * 1e6, op=MPI.MAX))
        run.free()
        native_run.free()
        print_rows.append((nbytes, statistics.median(c), statistics.median(py), statistics.median(nat)))
    if rank == 0:
        print(f"# {comm.Get_size()} ranks, {STEPS} steps x {ITERS} runs, {rounds} alternating rounds, "
              "median us per step (max over ranks)")
        print(f"{'bytes':>6} {'C step':>8} {'python step':>12} {'overhead':>9} {'native step':>12} {'overhead':>9}")
        for nbytes, c_us, py_us, nat_us in print_rows:
            print(f"{nbytes:>6} {c_us:>8.3f} {py_us:>12.3f} {py_us - c_us:>9.3f} {nat_us:>12.3f} {nat_us - c_us:>9.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--ranks", type=int, default=2, help="an even number: ranks exchange in pairs")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.rounds)
        return 0
    if args.ranks < 2 or args.ranks % 2:
        parser.error("--ranks must be even (ranks exchange in pairs)")
    with tempfile.TemporaryDirectory() as tmp:
        library = build(Path(tmp))
        return subprocess.run([mpi_tool("mpiexec"), "-n", str(args.ranks), sys.executable, __file__, "--worker",
                               str(library), "--rounds", str(args.rounds)], env=launch_env(args.ranks)).returncode


if __name__ == "__main__":
    sys.exit(main())
