"""Does the calibrated cost model predict this machine? (issue 7's validation target)

    python benchmarks/model_validation.py [--ranks 2,4] [--rounds 5] [--minbytes 64K]
        [--maxbytes 16M] [--keep DIR]

Each *round* calibrates and then measures, back to back, so that every measurement is compared
with a calibration taken minutes, not hours, apart (this VM's speed drifts by 2-3x between
sessions, docs/performance.md §8):

1. ``collbench calibrate -np 2 --dtypes float32`` -> ``np2`` profile;
2. for 4 ranks also ``collbench calibrate -np 4 --concurrent --dtypes float32`` -> ``np4c``
   (every rank exchanging at once: what oversubscribed ranks really get);
3. for each rank count, one job of ``collbench run allreduce --algo
   ring,recursive_doubling,rabenseifner -b MIN -e MAX -f 2 --placement out-of-place -np N``.

Every step starts only when the CPUs are otherwise idle (``--quiet``), and is repeated when
other processes took more than 10 % of the machine while it ran (another job starting
mid-measurement doubles this VM's times). The prediction of a row
is ``collbench model check``'s (the exact closed form for its ranks, layout, dtype and
placement) with that round's profile. Reported per (ranks, profile, algorithm, size): the
median measured time over the rounds, the median predicted time, and the median of the paired
errors (predicted / measured - 1); then how many are within ±25 % and whether the model orders
each pair of algorithms whose median times differ by more than 20 % like the measurement.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from collbench.analysis.model.check import check_rows
from collbench.analysis.model.predict import Model
from collbench.analysis.model.profile import load_profile
from collbench.results.files import read_results
from collbench.sizes import format_bytes

ALGOS = ("ring", "recursive_doubling", "rabenseifner")


def _busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all processes, all cores)."""
    fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def collbench(cmd: list[str], limit: float = 0.10, tries: int = 5) -> float:
    """Run a collbench command; repeat it (up to ``tries``) when other processes took more than
    ``limit`` of the machine while it ran (CPU time of the machine minus that of our children:
    a job of someone else starting mid-measurement doubles the times). Returns that share."""
    foreign = 1.0
    for _ in range(tries):
        busy0, own0, wall0 = _busy_seconds(), _children_cpu(), time.monotonic()
        subprocess.run([sys.executable, "-m", "collbench", *cmd], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.monotonic() - wall0
        other = (_busy_seconds() - busy0) - (_children_cpu() - own0)
        foreign = max(0.0, other) / (wall * (os.cpu_count() or 1))
        if foreign <= limit:
            break
        print(f"#   others used {foreign:.0%} of the CPUs meanwhile: repeating", flush=True)
        for arg in cmd:   # a results file must not exist before a run
            if arg.endswith(".jsonl") and Path(arg).exists():
                Path(arg).unlink()
    return foreign


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def busy_fraction(seconds: float = 1.0) -> float:
    """Share of the machine's CPU time used (by anything) over ``seconds`` (Linux /proc/stat)."""
    def sample() -> tuple[int, int]:
        fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
        return sum(fields), fields[3] + fields[4]

    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


def wait_until_quiet(limit: float, patience: float) -> float:
    """Wait (up to ``patience`` s) until other work uses at most ``limit`` of the CPUs: on a
    shared 2-core VM another job doubles the times of this one."""
    deadline = time.monotonic() + patience
    while True:
        busy = busy_fraction()
        if busy <= limit or time.monotonic() > deadline:
            return busy
        time.sleep(5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", default="2,4")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--minbytes", default="64K")
    parser.add_argument("--maxbytes", default="16M")
    parser.add_argument("--tolerance", type=float, default=0.25)
    parser.add_argument("--margin", type=float, default=0.20)
    parser.add_argument("--keep", type=Path, help="keep profiles and results files in this directory")
    parser.add_argument("--quiet", type=float, default=0.15,
                        help="before each step wait until the CPUs are at most this busy (default 0.15)")
    parser.add_argument("--patience", type=float, default=900, help="seconds to wait for quiet")
    args = parser.parse_args()
    ranks = [int(r) for r in args.ranks.split(",")]
    tmp = tempfile.TemporaryDirectory()
    folder = args.keep or Path(tmp.name)
    folder.mkdir(parents=True, exist_ok=True)
    # (ranks, profile kind) -> (algorithm, size) -> [(measured, predicted)]
    pairs: dict[tuple[int, str], dict[tuple[str, int], list[tuple[float, float]]]] = {}

    def quiet(what: str) -> None:
        print(f"# {what}: CPUs {wait_until_quiet(args.quiet, args.patience):.0%} busy before", flush=True)

    for k in range(args.rounds):
        profiles = {}
        quiet(f"round {k} calibrate -np 2")
        profiles["np2"] = folder / f"round{k}-np2.json"
        collbench(["calibrate", "-np", "2", "--dtypes", "float32", "--out", str(profiles["np2"])])
        if any(n > 2 for n in ranks):
            quiet(f"round {k} calibrate -np 4 --concurrent")
            profiles["np4c"] = folder / f"round{k}-np4c.json"
            collbench(["calibrate", "-np", "4", "--concurrent", "--dtypes", "float32", "--out",
                       str(profiles["np4c"])])
        for n in ranks:
            out = folder / f"round{k}-allreduce-np{n}.jsonl"
            if out.exists():
                out.unlink()
            quiet(f"round {k} run -np {n}")
            collbench(["run", "allreduce", "--algo", ",".join(ALGOS), "-b", args.minbytes, "-e",
                       args.maxbytes, "-f", "2", "--placement", "out-of-place", "-np", str(n),
                       "--out", str(out)])
            results = read_results(out)
            kinds = ["np2"] + (["np4c"] if n > 2 else [])
            for kind in kinds:
                model = Model(load_profile(str(profiles[kind])))
                table = pairs.setdefault((n, kind), {})
                for c in check_rows(model, results):
                    if c.predicted_us is not None:
                        table.setdefault((c.row.algorithm, c.row.bytes), []).append(
                            (c.row.time_us, c.predicted_us))
    grand_ok = grand_rows = grand_agree = grand_pairs = 0
    for (n, kind), table in pairs.items():
        sizes = sorted({b for _, b in table})
        print(f"\n### {n} ranks, profile {kind} (medians of {args.rounds} paired rounds; measured "
              f"min-max in brackets)\n")
        print("| size | " + " | ".join(f"{a} measured | predicted | error" for a in ALGOS) + " |")
        print("|---|" + "---|---|---|" * len(ALGOS))
        ok = rows = 0
        med_measured, med_predicted = {}, {}
        for size in sizes:
            cells = []
            for a in ALGOS:
                got = table.get((a, size))
                if not got:
                    cells += ["-", "-", "-"]
                    continue
                measured = [m for m, _ in got]
                med_measured[(a, size)] = statistics.median(measured)
                med_predicted[(a, size)] = statistics.median(p for _, p in got)
                err = statistics.median(p / m - 1 for m, p in got)
                rows += 1
                ok += abs(err) <= args.tolerance
                cells += [f"{med_measured[(a, size)]:.4g} µs [{min(measured):.3g}-{max(measured):.3g}]",
                          f"{med_predicted[(a, size)]:.4g} µs",
                          f"{err:+.0%}{'' if abs(err) <= args.tolerance else ' ✗'}"]
            print(f"| {format_bytes(size)} | " + " | ".join(cells) + " |")
        agree = compared = 0
        notes = []
        for size in sizes:
            for i, a in enumerate(ALGOS):
                for b in ALGOS[i + 1:]:
                    if (a, size) not in med_measured or (b, size) not in med_measured:
                        continue
                    ma, mb = med_measured[(a, size)], med_measured[(b, size)]
                    if max(ma, mb) <= min(ma, mb) * (1 + args.margin):
                        continue
                    fast, slow = (a, b) if ma < mb else (b, a)
                    compared += 1
                    if med_predicted[(fast, size)] <= med_predicted[(slow, size)]:
                        agree += 1
                    else:
                        notes.append(f"{format_bytes(size)}: measured {fast} "
                                     f"{med_measured[(fast, size)]:.4g} < {slow} {med_measured[(slow, size)]:.4g} µs, "
                                     f"model {med_predicted[(fast, size)]:.4g} > {med_predicted[(slow, size)]:.4g} µs")
        print(f"\n{ok} of {rows} within ±{args.tolerance:.0%}; ranking: {agree} of {compared} pairs "
              f"differing by more than {args.margin:.0%} in the measured order")
        for note in notes:
            print(f"- disagrees at {note}")
        if kind == "np2":
            grand_ok, grand_rows = grand_ok + ok, grand_rows + rows
            grand_agree, grand_pairs = grand_agree + agree, grand_pairs + compared
    print(f"\nwith the 2-rank profile: {grand_ok} of {grand_rows} within ±{args.tolerance:.0%}; "
          f"ranking {grand_agree} of {grand_pairs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
