"""``collbench verify`` on every core: the sweep split into independent pieces.

Each (algorithm, collective) pair and each slice of rank counts verifies independently, so the
sweep is cut into pieces of similar cost (rank counts dealt round-robin, so every piece gets
small and large ones), run in a process pool, and merged back into one report.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from typing import Sequence

from .. import plugins
from ..algorithms import Collective
from ..algorithms.registry import algorithms as registered
from ..algorithms.registry import get_algorithm
from ..algorithms.verify import AlgorithmReport, VerifyReport, verify_all


def _piece(args: tuple[str, str, int, tuple[int, ...]]) -> VerifyReport:
    name, collective, max_ranks, ranks = args
    return verify_all(max_ranks, algorithms=[name], collectives=[collective], rank_counts=ranks)


def verify_everything(max_ranks: int, extra_ranks: Sequence[int], names: Sequence[str] | None,
                      workers: int | None = None) -> VerifyReport:
    """The same result as ``verify_all``, computed by ``workers`` processes (default: all cores)."""
    workers = workers or os.cpu_count() or 1
    algos = [get_algorithm(n) for n in names] if names else [a for a in registered() if not a.native]
    ranks = list(range(1, max_ranks + 1)) + [p for p in extra_ranks if p > max_ranks]
    slices = max(1, workers * 2)
    pieces = [(algo.name, coll.value, max_ranks, tuple(ranks[k::slices]))
              for algo in algos for coll in algo.implementations for k in range(slices)
              if ranks[k::slices]]
    start = time.perf_counter()
    if workers == 1:
        reports = [_piece(p) for p in pieces]
    else:
        # workers load the same plugins (inherited under fork; imported again under spawn)
        specs = [p.env_spec for p in plugins.loaded()]
        with ProcessPoolExecutor(max_workers=workers, initializer=plugins.initialize_worker,
                                 initargs=(specs,)) as pool:
            reports = list(pool.map(_piece, pieces, chunksize=1))
    merged: dict[tuple[str, Collective], AlgorithmReport] = {}
    for report in reports:
        for entry in report.entries:
            key = (entry.algorithm, entry.collective)
            if key not in merged:
                merged[key] = entry
                continue
            old = merged[key]
            merged[key] = replace(old, ranks=tuple(sorted(old.ranks + entry.ranks)),
                                  schedules=old.schedules + entry.schedules,
                                  failures=old.failures + entry.failures,
                                  elapsed=old.elapsed + entry.elapsed)
    return VerifyReport(tuple(merged.values()), time.perf_counter() - start)
