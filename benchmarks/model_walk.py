"""The cost model's schedule walk on rows against the walk on programs built from the same rows,
side by side in one run: every rows algorithm (ring, direct, pairwise, Bruck and hierarchical
alltoall(v)), p = 1..64, both placements, the crosscheck's regular counts.

    python benchmarks/model_walk.py [--rounds 3]

Prints CPU seconds per algorithm and path and their ratio; both walks must give equal
signatures (checked on every case, as tests/analysis/test_model_walk.py does on fewer).
"""

from __future__ import annotations

import argparse
import time

from collbench.algorithms import Problem
from collbench.algorithms.registry import algorithms
from collbench.analysis.model import walk
from collbench.analysis.model.forms import regular_count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--max-ranks", type=int, default=64)
    args = parser.parse_args()
    totals = [0.0, 0.0]
    for n in range(args.rounds):
        for algo in algorithms():
            for coll, impl in algo.implementations.items():
                if impl.rows is None:
                    continue
                spent = [0.0, 0.0]
                for p in range(1, args.max_ranks + 1):
                    problem = Problem(coll, p, regular_count(p, None, 3) * 2)
                    if algo.precondition(problem, op=None, options=None):
                        continue
                    node = walk.node_index(None, p)
                    for in_place in (False, True):
                        t0 = time.process_time()
                        rows = walk.signatures_of_rows(problem, algo.rows(problem), 4, in_place, node)
                        t1 = time.process_time()
                        programs = algo.schedule(problem).programs
                        slow = walk.signatures_of_programs(problem, programs, 4, in_place, node)
                        t2 = time.process_time()
                        assert rows == slow, (algo.name, coll.value, p, in_place)
                        spent[0] += t1 - t0
                        spent[1] += t2 - t1
                totals[0] += spent[0]
                totals[1] += spent[1]
                print(f"round {n + 1}  {algo.name:13s} {coll.value:15s} rows {spent[0]:6.2f} s  "
                      f"programs {spent[1]:6.2f} s  ({spent[1] / max(spent[0], 1e-9):.1f}x)", flush=True)
    print(f"all: rows {totals[0]:.2f} s, programs {totals[1]:.2f} s "
          f"({totals[1] / max(totals[0], 1e-9):.1f}x)")


if __name__ == "__main__":
    main()
