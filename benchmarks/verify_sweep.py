"""Time `collbench verify --max-ranks 64` on two source trees, side by side in one run.

    git worktree add /tmp/before <commit>
    python benchmarks/verify_sweep.py /tmp/before . --rounds 2

Each tree's package (collbench, and algorithms/ as collbench.algorithms, as pyproject maps it) is
loaded in a fresh interpreter, which runs the whole sweep in a pool of ``--workers`` processes
(the function behind the CLI). Rounds alternate the order of the trees, because this machine's
speed drifts; compare the pairs, not absolute times.

    python benchmarks/verify_sweep.py . --generation

instead splits one tree's sweep, in one process, into building each case's schedule (rows, or
every rank's program) and checking it: the building alone is a floor that no change to the
proof can lower.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

# Both child scripts first load the package of the tree in argv[1] (as pyproject maps it).
_LOAD = r"""
import importlib.util, json, os, sys, time
root = sys.argv[1]
def load(name, init, path):
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[path])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    return spec, module
top = load("collbench", f"{root}/collbench/__init__.py", f"{root}/collbench")
algos = load("collbench.algorithms", f"{root}/algorithms/__init__.py", f"{root}/algorithms")
for spec, module in (top, algos):
    spec.loader.exec_module(module)
"""

_CHILD = _LOAD + r"""
from collbench.verify.parallel import verify_everything
start, before = time.perf_counter(), os.times()
names = sys.argv[4].split(",") if sys.argv[4] else None
report = verify_everything(int(sys.argv[2]), (128, 1000), names, workers=int(sys.argv[3]))
after = os.times()
cpu = after.user + after.children_user - before.user - before.children_user
print(json.dumps({"wall": time.perf_counter() - start, "cpu": cpu, "ok": report.ok,
                  "schedules": report.schedules}))
"""


_GENERATION = _LOAD + r"""
from collbench.algorithms.registry import algorithms
from collbench.algorithms.schedule import Problem
from collbench.algorithms.verify import _case_errors, _cases, _quiet_gc, default_counts
max_ranks = int(sys.argv[2])
build = check = 0.0
cases = 0
with _quiet_gc():
    for algo in algorithms():
        if algo.native:
            continue
        for coll, impl in algo.implementations.items():
            ranks = list(range(1, max_ranks + 1)) + ([128, 1000] if impl.log_steps else [])
            for p in ranks:
                for options, layout, root_rank in _cases(impl, p, p > max_ranks):
                    for count in default_counts(p):
                        problem = Problem(coll, p, count, root_rank, layout)
                        if algo.precondition(problem, op=None, options=options) is not None:
                            continue
                        t0 = time.process_time()
                        if impl.rows is not None:
                            algo.rows(problem, options)
                        else:
                            algo.schedule(problem, options)
                        t1 = time.process_time()
                        assert not _case_errors(algo, problem, options)
                        check += time.process_time() - t1
                        build += t1 - t0
                        cases += 1
print(json.dumps({"cases": cases, "build_cpu": round(build, 1),
                  "verify_cpu": round(check, 1), "build_share": round(build / check, 3)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("trees", nargs="+", type=Path, help="source trees (repository roots)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--max-ranks", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--algo", default="", help="only these algorithms (comma separated)")
    parser.add_argument("--generation", action="store_true",
                        help="time building the schedules apart from verifying them (one process)")
    args = parser.parse_args()
    if args.generation:
        for tree in args.trees:
            out = subprocess.run([sys.executable, "-c", _GENERATION, str(tree.resolve()),
                                  str(args.max_ranks)], capture_output=True, text=True, check=True,
                                 cwd="/")
            print(f"{tree}:  {out.stdout.strip()}", flush=True)
        return
    for n in range(args.rounds):
        trees = args.trees if n % 2 == 0 else args.trees[::-1]
        for tree in trees:
            out = subprocess.run([sys.executable, "-c", _CHILD, str(tree.resolve()),
                                  str(args.max_ranks), str(args.workers), args.algo],
                                 capture_output=True, text=True, check=True, cwd="/")
            print(f"round {n + 1}  {tree}:  {out.stdout.strip()}", flush=True)


if __name__ == "__main__":
    main()
