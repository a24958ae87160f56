"""Time `collbench verify --max-ranks 64` on two source trees, side by side in one run.

    git worktree add /tmp/before <commit>
    python benchmarks/verify_sweep.py /tmp/before . --rounds 2

Each tree's package (collbench, and algorithms/ as collbench.algorithms, as pyproject maps it) is
loaded in a fresh interpreter, which runs the whole sweep in a pool of ``--workers`` processes
(the function behind the CLI). Rounds alternate the order of the trees, because this machine's
speed drifts; compare the pairs, not absolute times.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

_CHILD = r"""
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
from collbench.verify.parallel import verify_everything
start, before = time.perf_counter(), os.times()
report = verify_everything(int(sys.argv[2]), (128, 1000), None, workers=int(sys.argv[3]))
after = os.times()
cpu = after.user + after.children_user - before.user - before.children_user
print(json.dumps({"wall": time.perf_counter() - start, "cpu": cpu, "ok": report.ok,
                  "schedules": report.schedules}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("trees", nargs="+", type=Path, help="source trees (repository roots)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--max-ranks", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    for n in range(args.rounds):
        trees = args.trees if n % 2 == 0 else args.trees[::-1]
        for tree in trees:
            out = subprocess.run([sys.executable, "-c", _CHILD, str(tree.resolve()),
                                  str(args.max_ranks), str(args.workers)],
                                 capture_output=True, text=True, check=True, cwd="/")
            print(f"round {n + 1}  {tree}:  {out.stdout.strip()}", flush=True)


if __name__ == "__main__":
    main()
