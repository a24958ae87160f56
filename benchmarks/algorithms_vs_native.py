"""Every custom allreduce against the MPI library's own, side by side in one collbench run.

    python benchmarks/algorithms_vs_native.py --ranks 2 [--maxbytes 64M] [--keep results/x.jsonl]
    python benchmarks/algorithms_vs_native.py --ranks 2 --algo native,recursive_doubling,ring,rabenseifner \
        --executor native --maxbytes 4M

Runs ``collbench run allreduce --algo all`` (one job: every algorithm measured at every size in
turn, out of place, float32 sum, validated), then prints time per algorithm and its ratio to
native per size, plus the number of steps each rank executes (the latency term). ``--executor``
is passed through (default: collbench's default, native where it builds).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from collbench.algorithms import Collective, Problem
from collbench.algorithms.registry import get_algorithm
from collbench.results.files import read_results


def steps_of(name: str, nranks: int, count: int) -> int:
    """Communication steps rank 0 executes (the α term of the algorithm)."""
    if name == "native":
        return 0
    program = get_algorithm(name).program(Problem(Collective.ALLREDUCE, nranks, count), 0)
    return sum(1 for step in program.steps if step.sends or step.recvs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--maxbytes", default="64M")
    parser.add_argument("--keep", type=Path, help="keep the results file here")
    parser.add_argument("--target-time", default="0.1")
    parser.add_argument("--iters", help="fixed timed iterations (oversubscribed runs: auto is slow)")
    parser.add_argument("--warmup", default="20")
    parser.add_argument("--algo", default="all")
    parser.add_argument("--executor", choices=["auto", "native", "python"], default="auto")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp) / "algorithms.jsonl"
        subprocess.run([sys.executable, "-m", "collbench", "run", "allreduce", "--algo", args.algo,
                        "--executor", args.executor, "-b", "8",
                        "-e", args.maxbytes, "-f", "4", "--placement", "out-of-place", "-np", str(args.ranks),
                        "--target-time", args.target_time, "-w", args.warmup,
                        *(["-n", args.iters] if args.iters else []), "--out", str(out)], check=True,
                       stdout=subprocess.DEVNULL)
        results = read_results(out)
    rows = results.rows
    algorithms = list(dict.fromkeys(r.algorithm for r in rows))
    sizes = sorted({r.bytes for r in rows})
    time_of = {(r.algorithm, r.bytes): r.time_us for r in rows}
    executors = ", ".join(sorted({f"{r.algorithm}: {r.executor}" for r in rows if r.algorithm == "native"}
                                 | {f"schedules: {r.executor}" for r in rows if r.algorithm != "native"}))
    print(f"# allreduce float32 sum, {args.ranks} ranks, out of place; time in us and ratio to native "
          f"({results.metadata['mpi']['library_version']}, thread level {results.metadata['mpi']['thread_level']}; "
          f"executors {executors})")
    print(f"{'size (B)':>10} " + " ".join(f"{a[:18]:>18}" for a in algorithms))
    for size in sizes:
        native = time_of.get(("native", size))
        cells = []
        for a in algorithms:
            t = time_of.get((a, size))
            cells.append(f"{'-':>18}" if t is None else
                         f"{t:9.1f} ({t / native:5.2f}x)" if native else f"{t:18.1f}")
        print(f"{size:>10} " + " ".join(cells))
    big = sizes[-1] // 4
    print("# steps per rank (rank 0, at the largest size): " + ", ".join(
        f"{a} {steps_of(a, args.ranks, big)}" for a in algorithms if a != "native"))
    wrong = sum(r.wrong or 0 for r in rows)
    print(f"# validation: {'all rows #wrong = 0' if wrong == 0 else f'{wrong} WRONG'}")
    return 0 if wrong == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
