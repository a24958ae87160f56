"""Every verdict of docs/performance.md §9 in one run: each published A100 log judged under
issue 11's rule (a hardware profile, or factors fitted on *other* logs of the same system class).

    python benchmarks/nccl_fidelity.py [--only SUBSTRING] [--worst N]

Prints, per judged log: the profile and the logs its factors were fitted on, the share of rows
from 1 MiB within ±25 % and of rows from 8 B to 64 KiB within ±50 % (the targets are 80 % each),
and with ``--worst N`` the N worst rows of each band. The pairs below are the table's rows; the
same pairs are recomputed by tests/analysis/test_model_fidelity.py, which pins each verdict.
Nothing here is fitted on the log it judges.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from collbench.analysis.model.check import check
from collbench.analysis.model.fit import calibrate_from
from collbench.analysis.model.profile import Profile, load_profile, profile_from_record

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = ROOT / "results" / "public"
ABCI = "abci-compute-node-a"
OCI = "oci-bm-gpu4.8"
POLARIS = "alcf-polaris"
STANAGE = "sheffield-stanage-xe8545"
SUPERBENCH = "superbench-8xa100-sxm4-40gb"
GALVATRON = "galvatron-8xa100-sxm4-40gb"

HGX_ONE_NODE = [f"{ABCI}/allreduce-1node-8gpu", f"{ABCI}/allreduce-1node-4gpu",
                f"{OCI}/allreduce-1node-8gpu"]
# the two-node BM.GPU4.8 runs with NCCL_IB_HCA naming all 16 ports and a RoCE GID index
OCI_TWO_NODE_TUNED = [f"{OCI}/allreduce-2node-16gpu-nccltests", f"{OCI}/allreduce-2node-16gpu-oke"]
POLARIS_MULTI = [f"{POLARIS}/allreduce-{run}" for run in
                 ("2node-8gpu", "8node-32gpu", "2node-8gpu-nccl2.18", "8node-32gpu-nccl2.18")]


@dataclass(frozen=True)
class Judgement:
    judged: str                  # results/public/<system>/<file> without .jsonl
    base: str                    # shipped hardware profile
    fitted_on: tuple[str, ...]   # logs the factors come from (empty: the profile alone)

    def __post_init__(self) -> None:
        assert self.judged not in self.fitted_on, "a log is never judged with factors fitted on it"


def _others(judged: str, pool: list[str]) -> tuple[str, ...]:
    return tuple(p for p in pool if p != judged)


JUDGEMENTS = [
    Judgement(f"{ABCI}/allreduce-1node-8gpu", "abci-a", _others(f"{ABCI}/allreduce-1node-8gpu", HGX_ONE_NODE)),
    Judgement(f"{ABCI}/allreduce-1node-4gpu", "abci-a", _others(f"{ABCI}/allreduce-1node-4gpu", HGX_ONE_NODE)),
    Judgement(f"{OCI}/allreduce-1node-8gpu", "oci-bm-gpu4.8", _others(f"{OCI}/allreduce-1node-8gpu", HGX_ONE_NODE)),
    Judgement(f"{ABCI}/allreduce-2node-16gpu", "abci-a", (f"{ABCI}/allreduce-16node-128gpu",)),
    Judgement(f"{ABCI}/allreduce-16node-128gpu", "abci-a", (f"{ABCI}/allreduce-2node-16gpu",)),
    Judgement(f"{ABCI}/allreduce-4node-32gpu", "abci-a",
              (f"{ABCI}/allreduce-2node-16gpu", f"{ABCI}/allreduce-16node-128gpu")),
    Judgement(f"{ABCI}/allreduce-8node-64gpu", "abci-a",
              (f"{ABCI}/allreduce-2node-16gpu", f"{ABCI}/allreduce-16node-128gpu")),
    Judgement(f"{OCI}/allreduce-2node-16gpu", "oci-bm-gpu4.8", ()),
    Judgement(f"{OCI}/allreduce-2node-16gpu", "oci-bm-gpu4.8", tuple(OCI_TWO_NODE_TUNED)),
    Judgement(f"{OCI}/allreduce-2node-16gpu-nccltests", "oci-bm-gpu4.8", ()),
    Judgement(f"{OCI}/allreduce-2node-16gpu-oke", "oci-bm-gpu4.8", ()),
    Judgement(f"{OCI}/allreduce-2node-16gpu-ubuntu", "oci-bm-gpu4.8", ()),
    Judgement(f"{OCI}/allreduce-1node-8gpu-ubuntu", "oci-bm-gpu4.8", ()),
    Judgement(f"{SUPERBENCH}/allreduce-1node-8gpu", "abci-a", tuple(HGX_ONE_NODE)),
    Judgement(f"{SUPERBENCH}/allgather-1node-8gpu", "abci-a", tuple(HGX_ONE_NODE)),
    Judgement(f"{SUPERBENCH}/reducescatter-1node-8gpu", "abci-a", tuple(HGX_ONE_NODE)),
    Judgement(f"{GALVATRON}/allreduce-1node-8gpu", "abci-a", tuple(HGX_ONE_NODE)),
    Judgement(f"{STANAGE}/allreduce-1node-4gpu", "perlmutter", (f"{POLARIS}/allreduce-1node-4gpu-nccl2.28",)),
    Judgement(f"{POLARIS}/allreduce-1node-4gpu-nccl2.28", "perlmutter", (f"{STANAGE}/allreduce-1node-4gpu",)),
    *[Judgement(p, "perlmutter", _others(p, POLARIS_MULTI)) for p in POLARIS_MULTI],
    *[Judgement(f"{POLARIS}/allgather-{run}", "perlmutter", tuple(POLARIS_MULTI))
      for run in ("2node-8gpu", "8node-32gpu", "2node-8gpu-nccl2.18")],
]


def _path(name: str) -> Path:
    return PUBLIC / f"{name}.jsonl"


def _profile(j: Judgement) -> Profile:
    if not j.fitted_on:
        return load_profile(j.base)
    record, _ = calibrate_from([str(_path(p)) for p in j.fitted_on], load_profile(j.base))
    return profile_from_record(record, f"{j.base} fitted on {len(j.fitted_on)} log(s)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="", help="judge only logs whose name contains this")
    ap.add_argument("--worst", type=int, default=0, help="print the N worst rows of each band")
    args = ap.parse_args(argv)
    if args.worst < 0:
        ap.error("--worst takes a count >= 0")
    if not any(args.only in j.judged for j in JUDGEMENTS):
        ap.error(f"--only {args.only!r} matches no judged log")
    passed = judged = 0
    for j in JUDGEMENTS:
        if args.only not in j.judged:
            continue
        _, checked = check([str(_path(j.judged))], _profile(j))
        rows = [c for c in checked if c.error is not None]
        big = [c for c in rows if c.row.bytes >= 1 << 20]
        small = [c for c in rows if 8 <= c.row.bytes <= 64 << 10]
        bw_ok = sum(abs(c.error) <= 0.25 for c in big)
        lat_ok = sum(abs(c.error) <= 0.5 for c in small)
        ok = (bw_ok >= 0.8 * len(big)) and (not small or lat_ok >= 0.8 * len(small))
        judged += 1
        passed += ok
        fitted = ", ".join(j.fitted_on) or "hardware spec only"
        lat = f"{lat_ok}/{len(small)}" if small else "-"
        print(f"{'PASS' if ok else 'miss'}  {j.judged:<52} >=1MiB {bw_ok:>2}/{len(big):<2}  "
              f"8B-64KiB {lat:>5}   [{j.base} + {fitted}]")
        for band in (big, small)[: 2 if args.worst else 0]:
            for c in sorted(band, key=lambda c: -abs(c.error))[: args.worst]:
                print(f"        {c.row.bytes:>11} B {c.row.placement:<12} {c.method:<24} "
                      f"measured {c.row.time_us:>9.1f} us  predicted {c.predicted_us:>9.1f} us  "
                      f"{c.error:+.0%}")
    print(f"# {passed} of {judged} logs meet both targets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
