"""Command-line wiring of the analysis commands: compare, plot, calibrate, model predict/check.

Each command is an ``add_<name>_parser(sub)`` / ``<name>_main(args, argv)`` pair that the command
registry in :mod:`collbench.cli` imports only when that command runs; the argparse parser class
comes from there, so mistakes end as one line.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..cli.argtypes import add_plugin_argument, local_ranks
from ..cli.argtypes import positive_float as _positive_float
from ..cli.argtypes import positive_int as _positive_int
from ..errors import UsageError

EXIT_REGRESSION = 1


def _fraction(text: str) -> float:
    from .compare import parse_fraction

    try:
        return parse_fraction(text, "")  # argparse names the option
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[-1]) from None


def _probability(text: str) -> float:
    """A significance level: strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {text!r}")
    return value


def _size(text: str) -> int:
    from ..sizes import parse_size

    try:
        return parse_size(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


FORMATS = ["text", "markdown", "csv", "json"]


def add_compare_parser(sub: Any) -> argparse.ArgumentParser:
    formats = FORMATS
    cmp = sub.add_parser("compare", help="B relative to A, row by row, with significance",
                         description="Compare two results files: time and busbw ratios per matching "
                         "row, a Mann-Whitney U test on per-iteration samples (-I runs), the geometric "
                         "mean, and an exit status for regression checks.")
    cmp.add_argument("a", metavar="A.jsonl", help="the baseline")
    cmp.add_argument("b", metavar="B.jsonl", help="the candidate")
    cmp.add_argument("--fail-above", type=_fraction, default=None, metavar="PCT",
                     help="exit 1 when B is slower than A by more than PCT (e.g. 5%%) in the geometric "
                     "mean, or significantly in any row")
    cmp.add_argument("--alpha", type=_probability, default=0.05, help="significance level (default 0.05)")
    cmp.add_argument("--force", action="store_true",
                     help="compare runs whose metadata differ (rank count, MPI library, ...)")
    cmp.add_argument("--format", choices=formats, default="text")
    return cmp


def add_plot_parser(sub: Any) -> argparse.ArgumentParser:
    plt = sub.add_parser("plot", help="figures: busbw, latency, busbw vs nodes, measured vs model, "
                         "time vs error",
                         description="Plot results files (or Slurm sweep directories for --kind nodes) "
                         "to PNG, SVG or PDF. Needs matplotlib (pip install 'collbench[plot]').")
    plt.add_argument("paths", nargs="+", metavar="FILE")
    plt.add_argument("-o", "--out", required=True, help="output file: .png, .svg or .pdf")
    plt.add_argument("--kind", choices=["busbw", "latency", "nodes", "model", "error", "timeline"], default="busbw",
                     help="error: time vs error of compressed algorithms (docs/compression.md)")
    plt.add_argument("--placement", choices=["out-of-place", "in-place"], default=None,
                     help="only this placement (default: both; the model plot uses out-of-place)")
    plt.add_argument("--size", type=_size, default=None,
                     help="--kind nodes: the message size (default: the largest at every node count)")
    plt.add_argument("--profile", default=None, help="--kind model: machine profile (default: this "
                     "host's calibrated one, else generic)")
    return plt


def add_calibrate_parser(sub: Any) -> argparse.ArgumentParser:
    cal = sub.add_parser("calibrate", help="measure this machine's α, β, γ into a profile",
                         description="Point-to-point (intra- and inter-node) and local reduction/copy "
                         "sweeps through collbench's schedule executor, fitted by least squares; writes "
                         "a machine profile for the cost model and --algo auto.")
    cal.add_argument("-np", "--nprocs", type=local_ranks, default=2,
                     help="ranks to launch when not already in an MPI job (default 2)")
    cal.add_argument("--out", default=None, help="profile file (default ~/.config/collbench/profiles/"
                     "<host>.json, which the model uses by default)")
    cal.add_argument("--name", default=None, help="profile name (default: the host name)")
    cal.add_argument("--max-bytes", type=_size, default=16 << 20, help="largest size (default 16M)")
    cal.add_argument("--dtypes", default="float32,float64,int32,int64,int8,bfloat16,float16",
                     help="reduction data types to time (comma list)")
    cal.add_argument("--repeats", type=_positive_int, default=5, help="timed repeats per size (median)")
    cal.add_argument("--target-time", type=_positive_float, default=0.02,
                     help="seconds each timed repeat aims for (default 0.02)")
    cal.add_argument("--nics-per-node", type=_positive_int, default=1,
                     help="NICs per node to record (calibrate cannot count them)")
    cal.add_argument("--ranks-per-node", type=_positive_int, default=None,
                     help="treat consecutive blocks of K ranks as nodes (tests)")
    cal.add_argument("--concurrent", action="store_true",
                     help="intra-node pairs all exchange at once (0-1, 2-3, ...), as ranks do in a "
                     "collective step; default: one pair while the others sleep")
    cal.add_argument("--single-regime", action="store_true",
                     help="fit one α, β line to all message sizes (default: two lines when the MPI "
                     "library visibly switches protocol)")
    cal.add_argument("--executor", choices=["auto", "native", "python"], default="auto",
                     help="which schedule executor to time (default: the one `run` would use)")
    cal.add_argument("--from", dest="from_logs", nargs="+", metavar="LOG", default=None,
                     help="fit a profile on imported logs (collbench import nccl-tests) instead of "
                     "measuring: NCCL realisation factors and link α/β per class (one-node logs: "
                     "intra, multi-node: inter), with residuals; needs --profile")
    cal.add_argument("--profile", default=None,
                     help="--from: the machine's hardware profile to start from (its nccl section "
                     "says what NCCL's topology search finds), e.g. abci-a, dgx-a100, perlmutter")
    return cal


def add_model_parser(sub: Any) -> argparse.ArgumentParser:
    formats = FORMATS
    model = sub.add_parser("model", help="the α-β-γ cost model: predict, check",
                           description="Predict collective times from a machine profile, or check "
                           "predictions against results files.")
    msub = model.add_subparsers(dest="model_command", metavar="ACTION", parser_class=type(model))
    pred = msub.add_parser("predict", help="time, busbw and the best algorithm per size and node count")
    pred.add_argument("--profile", default=None, help="perlmutter, delta, generic, local or a file "
                      "(default: this host's calibrated profile, else generic)")
    pred.add_argument("--collective", default="allreduce")
    pred.add_argument("--nodes", default="1", help="node counts: 1..1024 (powers of two), a list, or N")
    pred.add_argument("--gpus-per-node", "--ranks-per-node", dest="per_node", type=_positive_int,
                      default=None, help="ranks per node (default: the profile's, else 1)")
    pred.add_argument("--sizes", default=None, help="comma list of sizes (K/M/G binary)")
    pred.add_argument("-b", "--minbytes", default="8")
    pred.add_argument("-e", "--maxbytes", default="1G")
    pred.add_argument("-f", "--stepfactor", type=_positive_int, default=4)
    pred.add_argument("--algo", default=None, help="only these algorithms (comma list)")
    pred.add_argument("-d", "--datatype", default="float32")
    pred.add_argument("--format", choices=formats, default="text")
    pred.add_argument("--defaults-only", action="store_true",
                      help="cost each algorithm with its default options only (default: search "
                      "its variants -- ring and tree channels, chunks, hierarchical inner/outer -- and "
                      "report the fastest with its options)")
    pred.add_argument("--compressed", action="store_true",
                      help="compressed allreduce (docs/compression.md): the largest density, bit width "
                      "and rank at which each compressed algorithm still beats the best dense one")
    pred.add_argument("--nccl-algo", default=None, metavar="LIST",
                      help="native on nccl as with NCCL_ALGO=LIST (as run's --nccl-algo), e.g. Ring or ^Tree")
    pred.add_argument("--nccl-proto", default=None, metavar="LIST",
                      help="native on nccl as with NCCL_PROTO=LIST (as run's --nccl-proto), e.g. Simple")
    pred.add_argument("--skew", default=None, metavar="S",
                      help="alltoallv's count matrix: Zipf exponent S, as run's -O skew=S "
                      "(default 1; 0 is uniform)")
    add_plugin_argument(pred)
    chk = msub.add_parser("check", help="predicted vs measured for every row of results files")
    chk.add_argument("paths", nargs="+", metavar="RESULTS")
    chk.add_argument("--profile", default=None)
    chk.add_argument("--tolerance", type=_fraction, default=0.25, help="ok within this (default 25%%)")
    chk.add_argument("--rank-margin", type=_fraction, default=0.20,
                     help="ranking check: pairs that differ by more than this (default 20%%)")
    chk.add_argument("--min-bytes", type=_size, default=0, help="only rows at least this large")
    chk.add_argument("--format", choices=formats, default="text")
    chk.add_argument("--nccl-algo", default=None, metavar="LIST",
                     help="judge native nccl rows as if the run had NCCL_ALGO=LIST (default: what it recorded)")
    chk.add_argument("--nccl-proto", default=None, metavar="LIST",
                     help="judge native nccl rows as if the run had NCCL_PROTO=LIST (default: what it recorded)")
    add_plugin_argument(chk)  # rows measured with a plugin's algorithm are modelled from its schedule
    return model


def plot_main(args: argparse.Namespace, argv: list[str]) -> int:
    from .plot import plot

    placement = args.placement.replace("-", "_") if args.placement else None
    out = plot(args.paths, args.out, args.kind, placement, args.size, args.profile)
    print(f"# plot written to {out}")
    return 0


def calibrate_main(args: argparse.Namespace, argv: list[str]) -> int:
    from .calibrate import command_calibrate

    return command_calibrate(args, argv)


def model_main(args: argparse.Namespace, argv: list[str]) -> int:
    if args.model_command == "predict":
        return _predict(args)
    if args.model_command == "check":
        return _check(args)
    raise UsageError("model needs an action: predict or check (see `collbench model --help`)")


def compare_main(args: argparse.Namespace, argv: list[str]) -> int:
    from .compare import compare, format_comparison

    result = compare(args.a, args.b, force=args.force)
    sys.stdout.write(format_comparison(result, args.alpha, args.format) + "\n")
    if args.fail_above is not None:
        why = result.regressions(args.fail_above, args.alpha)
        if why:
            sys.stderr.write(f"collbench: regression above {args.fail_above:.1%}: {'; '.join(why)}\n")
            return EXIT_REGRESSION
    return 0


def _predict(args: argparse.Namespace) -> int:
    from ..algorithms import Collective
    from ..algorithms.registry import get_algorithm
    from ..dtypes import DTYPES
    from ..sizes import parse_size, size_sweep
    from .model.predict import Model, format_predictions, parse_counts, predict_tables
    from .model.profile import load_profile

    profile = load_profile(args.profile)
    try:
        collective = Collective.parse(args.collective)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.datatype not in DTYPES:
        raise UsageError(f"unknown data type {args.datatype!r} (known: {', '.join(DTYPES)})")
    nodes = parse_counts(args.nodes, "--nodes")
    per_node = args.per_node or profile.ranks_per_node or 1
    if args.sizes is not None:
        sizes = sorted({parse_size(s.strip(), "--sizes") for s in args.sizes.split(",") if s.strip()})
        if not sizes:
            raise UsageError("--sizes: no sizes given (a comma list, e.g. 8,64K,16M)")
    else:
        sizes = size_sweep(parse_size(args.minbytes, "-b"), parse_size(args.maxbytes, "-e"),
                           args.stepfactor, None)
    sizes = [s for s in sizes if s > 0] or [8]
    algos = None
    if args.algo:
        algos = []
        for name in (n.strip() for n in args.algo.split(",") if n.strip()):
            try:
                algo = get_algorithm(name)
            except ValueError as exc:
                raise UsageError(str(exc)) from None
            if algo.native and profile.nccl is not None:
                algos.append("native")       # NCCL's own collective, modelled (nccl section)
                continue
            if not algo.implements(collective) or algo.native:
                raise UsageError(f"{algo.name} has no {collective.value} schedule to model")
            algos.append(algo.name)
    if max(nodes) * per_node > 1 << 17:
        raise UsageError(f"{max(nodes) * per_node} ranks is beyond what the model is checked for "
                         f"(131072)")
    if args.compressed:  # the crossover table of collbench.analysis.model.compressed
        from .model.compressed import crossovers, format_crossovers

        if collective is not Collective.ALLREDUCE or algos:
            raise UsageError("--compressed models the compressed allreduces: drop --collective/--algo")
        item = DTYPES[args.datatype].itemsize
        rows = crossovers(profile, nodes, per_node, sizes, item, args.datatype)
        sys.stdout.write(format_crossovers(rows, profile, per_node, item, args.datatype, args.format) + "\n")
        return 0
    skew = None
    if args.skew is not None:
        if collective is not Collective.ALLTOALLV:
            raise UsageError("--skew describes alltoallv's count matrix: use it with --collective alltoallv")
        from ..algorithms.vcounts import parse_exponent

        try:
            skew = parse_exponent(args.skew)
        except ValueError as exc:
            raise UsageError(str(exc).replace("-O skew=", "--skew ", 1)) from None
    nccl_env = _nccl_env(args, profile, collective)
    tables = predict_tables(Model(profile, skew, nccl_env), collective, nodes, per_node, sizes, algos,
                            args.datatype, search=not args.defaults_only)
    sys.stdout.write(format_predictions(tables, profile, collective, args.datatype, args.format, skew,
                                        nccl_env) + "\n")
    return 0


def _nccl_env(args: argparse.Namespace, profile: Any, collective: Any) -> dict[str, str]:
    """--nccl-algo / --nccl-proto as the environment NCCL would see, checked like NCCL parses it."""
    from .model import nccl

    env = {name: value for name, value in (("NCCL_ALGO", args.nccl_algo), ("NCCL_PROTO", args.nccl_proto))
           if value is not None}
    if env and profile.nccl is None:
        raise UsageError(f"--nccl-algo/--nccl-proto restrict NCCL's own collective, which profile "
                         f"{profile.label} does not model (it has no 'nccl' section)")
    function = nccl.FUNCTION_NAMES.get(collective, "")
    for name, flag, names in (("NCCL_ALGO", "--nccl-algo", nccl.NCCL_ALGORITHM_NAMES),
                              ("NCCL_PROTO", "--nccl-proto", nccl.NCCL_PROTOCOL_NAMES)):
        try:
            nccl.enabled_by_env(env.get(name), names, function)
        except ValueError as exc:
            raise UsageError(f"{flag}: {exc}") from None
    return env


def _check(args: argparse.Namespace) -> int:
    from .model.check import check
    from .model.profile import load_profile

    profile = load_profile(args.profile)
    given = _nccl_env(args, profile, None)
    text, _ = check(args.paths, profile, args.tolerance, args.rank_margin, args.min_bytes, args.format,
                    given or None)
    sys.stdout.write(text + "\n")
    return 0
