"""The commands that read rather than measure: ``collbench report``, ``list`` and ``verify``."""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import UsageError
from .argtypes import add_plugin_argument
from .argtypes import positive_int as _positive_int


def add_report_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    report = sub.add_parser("report", help="re-print tables from results files",
                            description="Print the tables of results files (or directories of them).")
    report.add_argument("paths", nargs="+", metavar="FILE")
    report.add_argument("--format", choices=["text", "csv", "markdown", "json"], default="text")
    return report


def report_main(args: argparse.Namespace, argv: list[str]) -> int:
    from ..results.report import report
    from ..results.sweep_report import report_paths

    # a Slurm sweep directory (results/<cluster>/<jobid>/) gets the node-count table
    text = report_paths(args.paths, args.format) or report(args.paths, args.format)
    sys.stdout.write(text + ("" if text.endswith("\n") else "\n"))
    return 0


def add_list_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    listing = sub.add_parser("list", help="what can run here: collectives × algorithms × backends",
                             description="Every collective × algorithm × backend combination, and "
                             "why the ones that cannot run here cannot.")
    listing.add_argument("--ranks", type=_positive_int, default=4, help="rank count to check preconditions for")
    listing.add_argument("--ranks-per-node", type=_positive_int, default=None)
    add_plugin_argument(listing)
    return listing


def list_main(args: argparse.Namespace, argv: list[str]) -> int:
    from ..backends.capabilities import format_capabilities

    print(format_capabilities(args.ranks, args.ranks_per_node))
    return 0


def add_verify_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    verify = sub.add_parser("verify", help="prove every algorithm correct symbolically (no MPI needed)",
                            description="Symbolically execute every registered schedule for every rank "
                            "count up to --max-ranks and a spread of element counts, in both placements.")
    verify.add_argument("--max-ranks", type=_positive_int, default=64)
    verify.add_argument("--algo", default=None, help="only these algorithms (comma separated)")
    verify.add_argument("--extra-ranks", default="128,1000",
                        help="larger rank counts for the logarithmic algorithms (comma list, or none)")
    verify.add_argument("-j", "--jobs", type=_positive_int, default=None,
                        help="worker processes (default: every core)")
    add_plugin_argument(verify)
    return verify


def verify_main(args: argparse.Namespace, argv: list[str]) -> int:
    from ..algorithms.verify import format_verify_report
    from ..verify.parallel import verify_everything

    names = _verifiable(args.algo) if args.algo is not None else None
    try:
        extra = () if args.extra_ranks.strip().lower() in ("", "none") else tuple(
            _positive_int(v) for v in args.extra_ranks.split(","))
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"--extra-ranks: {exc}") from None
    report = verify_everything(args.max_ranks, extra, names, workers=args.jobs)
    print(format_verify_report(report))
    print(f"(on {args.jobs or os.cpu_count()} processes; the time column is CPU seconds per line)")
    return 0 if report.ok else 1


def _verifiable(text: str) -> list[str] | None:
    """--algo's names as registered schedules (None: ``all``); one line for a name verify
    cannot check: unknown, ``native`` (the library's own) or a compressed allreduce."""
    from ..algorithms.registry import get_algorithm
    from ..compress import names as compressed
    from ..execute.programs import check_algorithm_names

    given = [a.strip() for a in text.split(",") if a.strip()]
    if not given:
        raise UsageError("--algo needs at least one algorithm name (or leave it out for all)")
    canonical = check_algorithm_names(given)  # unknown names: the usual one line
    if "all" in canonical:
        return None
    names = []
    for name in canonical:
        if name == compressed.ALL_COMPRESSED or compressed.is_compressed(name):
            raise UsageError(f"--algo {name}: compressed allreduces are not symbolic schedules; "
                             "verify checks the registered algorithms (`collbench list`)")
        algorithm = get_algorithm(name)
        if algorithm.native:
            raise UsageError(f"--algo {name}: the library's own collective has no schedule to verify")
        names.append(algorithm.name)
    return names
