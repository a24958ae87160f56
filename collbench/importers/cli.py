"""``collbench import nccl-tests|osu LOG... -o OUT``: logs of other tools as a collbench results
file, so ``report``, ``compare``, ``plot`` and ``model check`` read them like a ``run``'s."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cli.argtypes import positive_int
from ..errors import UsageError
from .common import Options, check_out, collective_option, dtype_option, read_logs, summary_record, write_results

TOOLS = ("nccl-tests", "osu")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "import", help="nccl-tests or OSU logs as a collbench results file",
        description="Read nccl-tests (all_reduce_perf, …) or OSU (osu_allreduce, …) output as "
        "pasted from a terminal, a launcher or an issue, and write a collbench results file. "
        "What a log does not say is recorded as unknown; the options below fill it in.")
    parser.add_argument("tool", choices=TOOLS, metavar="TOOL", help="nccl-tests or osu")
    parser.add_argument("logs", nargs="+", metavar="LOG", help="log files; - reads stdin")
    parser.add_argument("-o", "--out", required=True, help="results file to create (never overwritten)")
    parser.add_argument("--nranks", type=positive_int, default=None,
                        help="rank count, for logs that do not list the ranks (OSU never does)")
    parser.add_argument("--nodes", type=positive_int, default=None, help="node count, likewise")
    parser.add_argument("--collective", default=None,
                        help="the collective of tables whose log never names it (no *_perf or OSU title)")
    parser.add_argument("--dtype", default=None,
                        help="OSU: the data type when the log has no '# Datatype' line (OSU < 7): "
                        "int8 ... float64, or float, double, char, int, MPI_FLOAT, ...")
    return parser


def main(args: argparse.Namespace, argv: list[str]) -> int:
    out = Path(args.out)
    check_out(out)   # refuse before reading anything, like `collbench run --out`
    options = Options(list(argv), args.nranks, args.nodes, *_checked_names(args))
    logs = read_logs(args.logs)
    if args.tool == "nccl-tests":
        from .nccl_tests import convert
    else:
        from .osu import convert
    metadata, rows, skipped = convert(logs, options)
    truncated = bool(metadata["import"].get("truncated"))
    write_results(out, [metadata, *rows, summary_record(rows, skipped, truncated)])
    runs = metadata["import"]["runs"]
    print(f"# imported {len(rows)} rows from {len(runs)} table{'s' if len(runs) != 1 else ''} "
          f"of {', '.join(dict.fromkeys(log.name for log in logs))} into {out}")
    for note in metadata["import"].get("notes") or []:
        print(f"# note: {note}")
    for run in runs:
        for note in run["notes"]:
            print(f"# {run['file']}:{run['line']}: {note}")
    if metadata.get("nranks") is None:
        what = ("busbw is left empty where it depends on it" if args.tool == "osu"
                else "rows carry no rank count")
        print(f"collbench: note: the log does not give the rank count ({what}); pass --nranks N "
              "if you know it", file=sys.stderr)
    return 0


def _checked_names(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """--collective and --dtype as collbench's names, refused (one line, before any log is read)
    when collbench does not know them, or for --dtype, when the tool's logs already give the type
    of every row (nccl-tests): neither may be written into the file or ignored unseen."""
    osu_names: dict[str, str] = {}
    mpi_types: dict[str, str] = {}
    if args.tool == "osu":
        from .osu import _MPI_TYPES, _NAMES

        osu_names, mpi_types = _NAMES, _MPI_TYPES
    collective = collective_option(args.collective, osu_names)
    if args.dtype is not None and args.tool != "osu":
        raise UsageError(f"--dtype applies to OSU logs; {args.tool} logs give the type of every row")
    return collective, dtype_option(args.dtype, mpi_types)
