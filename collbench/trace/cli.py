"""``collbench trace show|compare FILE``: read a trace written by ``collbench run --trace``;
``collbench trace nccl-log DIR``: summarise the NCCL logs written by ``run --nccl-log``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import UsageError


def add_parser(sub: Any) -> argparse.ArgumentParser:
    trace = sub.add_parser("trace", help="timelines from run --trace: per-step table, measured vs model",
                           description="Read a trace file written by `collbench run --trace FILE` "
                           "(Chrome trace / Perfetto JSON: open it in ui.perfetto.dev or chrome://tracing).")
    cmds = trace.add_subparsers(dest="trace_command", metavar="show|compare|nccl-log")
    show = cmds.add_parser("show", help="per step: time (max/median over ranks), waits, bytes, critical rank")
    show.add_argument("path", metavar="FILE")
    cmp = cmds.add_parser("compare", help="each step's measured time beside the model's α, β, γ cost")
    cmp.add_argument("path", metavar="FILE")
    cmp.add_argument("--profile", default=None, help="machine profile, as for `collbench model check` "
                     "(default: this host's calibrated profile, else generic)")
    cmp.add_argument("--tolerance", type=float, default=0.25,
                     help="whole-operation verdict: ok within this fraction (default 0.25, as model check)")
    for p in (show, cmp):
        p.add_argument("--algo", default=None, help="only measurements of this algorithm")
    log = cmds.add_parser("nccl-log", help="NCCL's version, network and transports from run --nccl-log's logs")
    log.add_argument("path", metavar="DIR", help="the <results>.nccl directory")
    return trace


def _selected(record: dict[str, Any], algo: str | None) -> list[dict[str, Any]]:
    chosen = [m for m in record["measurements"] if algo is None or m["algorithm"] == algo]
    if not chosen:
        raise UsageError("the trace holds no traced measurements" + (f" of {algo}" if algo else "")
                         + "".join(f"; skipped {s}" for s in record.get("skipped", [])[:1]))
    return chosen


def main(args: argparse.Namespace, argv: list[str]) -> int:
    from .document import read

    if args.trace_command is None:
        raise UsageError("trace needs a subcommand: show, compare or nccl-log")
    if args.trace_command == "nccl-log":
        from .nccl_log import dir_text, summarise_dir

        sys.stdout.write(dir_text(summarise_dir(args.path)) + "\n")
        return 0
    record = read(args.path)
    measurements = _selected(record, args.algo)
    if args.trace_command == "show":
        from .report import show_text

        sys.stdout.write(show_text(record, measurements) + "\n")
        return 0
    if not 0 <= args.tolerance < 10:
        raise UsageError(f"--tolerance {args.tolerance}: expected a fraction such as 0.25")
    from ..analysis.model.profile import load_profile
    from .report import compare_text

    profile = load_profile(args.profile)
    sys.stdout.write(compare_text(record, measurements, profile, args.tolerance) + "\n")
    return 0
