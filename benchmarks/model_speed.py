"""How long the cost model takes to answer at scale: `collbench model predict` for every
collective at 4096 nodes × 4 ranks (16384 ranks), 8 B to 16 GiB in ×2 steps.

    python benchmarks/model_speed.py

Prints seconds per collective (target: well under a second each on an idle core). This was a
timed unit test; timings belong here, where a loaded machine cannot fail the suite.
"""

from __future__ import annotations

import time

from collbench.algorithms import Collective
from collbench.analysis.model.predict import Model, predict_tables
from collbench.analysis.model.profile import load_profile
from collbench.sizes import size_sweep


def main() -> None:
    model = Model(load_profile("perlmutter"))
    sizes = size_sweep(8, 1 << 34, 2, None)
    for coll in Collective:
        start = time.perf_counter()
        predict_tables(model, coll, [4096], 4, sizes, None)
        print(f"{coll.value:15s} {time.perf_counter() - start:6.2f} s  ({len(sizes)} sizes, 16384 ranks)")


if __name__ == "__main__":
    main()
