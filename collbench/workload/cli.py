"""``collbench workload``: training steps as collectives -- list, show, predict, run, check,
from-hf. See docs/workloads.md."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import sys
from fractions import Fraction
from pathlib import Path

from ..cli.argtypes import local_ranks, non_negative_float, non_negative_int, positive_float, positive_int
from ..errors import UsageError

DEFAULT_RESULTS_DIR = Path("results")


def fraction_of_peak(text: str) -> float:
    """``--mfu``: the fraction of the GPU's peak the compute runs at, in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction of the GPU's peak such as 0.4, got {text!r}") from None
    if not (math.isfinite(value) and 0 < value <= 1):
        raise argparse.ArgumentTypeError(f"a fraction of the GPU's peak must be in (0, 1], e.g. 0.4; got {text}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser("workload", help="training workloads: a model's step as collectives (show, "
                            "predict, run, check)",
                            description="A training step of a real model as the collectives it runs: "
                            "list models, show a plan's collectives, predict them with the cost model, "
                            "run them here over MPI (or NCCL), check a run against its prediction.")
    cmds = parser.add_subparsers(dest="workload_command", metavar="SUBCOMMAND", parser_class=type(parser))
    cmds.add_parser("list", help="shipped (and your) models and their sizes")

    from .options import add_arguments

    show = cmds.add_parser("show", help="every collective of one step of one plan")
    show.add_argument("model", help="a shipped model, a model file, or a Hugging Face config.json")
    show.add_argument("--plan", default=None, help="one plan, e.g. ddp, zero3, tp4+pp2+zero1 (default ddp)")
    for dim in ("dp", "tp", "pp", "ep"):
        show.add_argument(f"--{dim}", type=int, default=None, help=f"{dim} degree (adds {dim}N to --plan)")
    show.add_argument("--sp", action="store_true", help="sequence parallelism with tp")
    show.add_argument("--nodes", type=int, default=None,
                      help="nodes (default: enough whole nodes for tp·pp·ep, data parallelism filling them)")
    show.add_argument("--gpus-per-node", type=int, default=4, help="ranks per node (default 4)")
    show.add_argument("--detail", action="store_true", help="every op (every bucket, every layer), not grouped")
    show.add_argument("--format", choices=("markdown", "json"), default="markdown")
    add_arguments(show)

    pred = cmds.add_parser("predict", help="communication time per step by kind, per plan and node count")
    pred.add_argument("model")
    pred.add_argument("--plan", default="ddp", help="plans to compare, comma-separated; join one plan's "
                      "parts with + (default ddp)")
    pred.add_argument("--nodes", default="1..64", help="node counts: 1..64 (powers of two), a list, or one")
    pred.add_argument("--gpus-per-node", type=positive_int, default=None,
                      help="ranks per node (default: the profile's, else 4)")
    pred.add_argument("--profile", default=None, help="machine profile: perlmutter, delta, generic, local or "
                      "a file (default: this host's calibrated profile, else generic)")
    pred.add_argument("--algo", default="auto", help="auto (the fastest the model knows, per collective), "
                      "one algorithm, or KIND=ALGO pairs, e.g. dp=ring,tp=auto")
    pred.add_argument("--mfu", type=fraction_of_peak, default=None,
                      help="add the compute estimate at this fraction of peak (e.g. 0.4)")
    pred.add_argument("--peak-tflops", type=positive_float, default=None,
                      help="GPU peak TFLOP/s for --mfu (default: known for perlmutter and delta A100s)")
    pred.add_argument("--plot", default=None, metavar="FILE", help="also draw comm/step vs nodes (.png/.svg/.pdf)")
    pred.add_argument("--format", choices=("markdown", "json"), default="markdown")
    add_arguments(pred)

    run = cmds.add_parser("run", help="measure one step's collectives here (MPI; NCCL on a GPU node)")
    run.add_argument("model")
    run.add_argument("--plan", default="ddp", help="one plan: ddp, zero3, tp4,dp2 (commas or + join parts)")
    run.add_argument("--backend", default="mpi", choices=("mpi", "nccl"))
    run.add_argument("--algo", default=None,
                     help="auto (the model's choice per collective), one algorithm (native: the library's "
                          "own), or KIND=ALGO pairs (default: auto on mpi, native on nccl -- what training "
                          "frameworks call)")
    run.add_argument("--profile", default=None, help="profile --algo auto chooses with (default: this host's "
                     "calibrated one, else generic)")
    run.add_argument("--scale", default="1", help="shrink every byte count, e.g. 1/64 (recorded)")
    # the same ranges as `collbench run` (collbench/cli/run.py), whose RunSpec these fill
    run.add_argument("-np", "--nprocs", type=local_ranks, default=4, help="ranks for the local launcher (default 4)")
    run.add_argument("--ranks-per-node", type=positive_int, default=None, help="emulate nodes of this many ranks")
    run.add_argument("-n", "--iters", type=positive_int, default=None,
                     help="timed iterations per collective (default: auto)")
    run.add_argument("-w", "--warmup_iters", type=non_negative_int, default=20, dest="warmup")
    run.add_argument("-c", "--check", type=non_negative_int, default=1,
                     help="validation rounds per collective (0: off)")
    run.add_argument("-T", "--timeout", type=non_negative_float, default=60.0,
                     help="seconds before a stuck collective aborts the job (0 = off)")
    run.add_argument("--target-time", type=non_negative_float, default=0.05)
    run.add_argument("--executor", default="auto", choices=("auto", "native", "python"))
    run.add_argument("--step-repeats", type=non_negative_int, default=5,
                     help="times the whole step is run back to back after the per-collective rows (0: skip)")
    run.add_argument("--gpu-map", default=None, help="device per local rank (nccl)")
    run.add_argument("--mpi-thread-level", default="single",
                     choices=("single", "funneled", "serialized", "multiple"))
    run.add_argument("--out", default=None, help="results file (never overwritten)")
    add_arguments(run)

    chk = cmds.add_parser("check", help="a `workload run` results file against the model's prediction")
    chk.add_argument("results")
    chk.add_argument("--profile", default=None, help="machine profile (default: this host's calibrated one)")
    chk.add_argument("--tolerance", type=positive_float, default=0.30, help="relative error for ok (default 0.30)")

    hf = cmds.add_parser("from-hf", help="write a collbench model file from a Hugging Face config.json")
    hf.add_argument("config", help="a local config.json (nothing is downloaded)")
    hf.add_argument("--name", default=None)
    hf.add_argument("--out", default=None, help="file to write (default: print it)")
    return parser


def main(args: argparse.Namespace, argv: list[str]) -> int:
    command = args.workload_command
    if command is None:
        raise UsageError("workload: give a subcommand: list, show, predict, run, check, from-hf")
    return {"list": _list, "show": _show, "predict": _predict, "run": _run, "check": _check,
            "from-hf": _from_hf}[command](args, argv)


def _list(args: argparse.Namespace, argv: list[str]) -> int:
    from .library import all_models, user_model_dir
    from .report import format_list

    print(format_list(all_models()))
    print(f"\n# your own models: {user_model_dir()}/NAME.json, any file path, or a Hugging Face config.json")
    return 0


def _show_plan(args: argparse.Namespace):
    from .plan import Plan, parse_plan

    plan = parse_plan(args.plan) if args.plan else Plan()
    fields = {}
    for dim in ("dp", "tp", "pp", "ep"):
        value = getattr(args, dim)
        if value is not None:
            if value < 1:
                raise UsageError(f"--{dim} must be at least 1")
            given = getattr(plan, dim)
            if dim != "dp" and given != 1 and given != value or dim == "dp" and given not in (None, value):
                raise UsageError(f"--{dim} {value} disagrees with --plan {args.plan}")
            fields[dim] = value
    if args.sp:
        fields["sp"] = True
    from dataclasses import replace

    plan = replace(plan, **fields)
    if plan.sp and plan.tp == 1:
        raise UsageError("--sp (sequence parallelism) needs --tp > 1")
    return plan


def _show(args: argparse.Namespace, argv: list[str]) -> int:
    from .library import load_model
    from .options import options_from
    from .report import format_show, show_json

    model = load_model(args.model)
    plan = _show_plan(args)
    options = options_from(args)
    if args.gpus_per_node < 1:
        raise UsageError("--gpus-per-node must be at least 1")
    if args.nodes is not None:
        if args.nodes < 1:
            raise UsageError("--nodes must be at least 1")
        world = args.nodes * args.gpus_per_node
    elif plan.dp is not None:
        world = plan.dp * plan.model_parallel
    else:   # enough whole nodes for the model-parallel part; data parallelism fills them
        nodes = -(-plan.model_parallel // args.gpus_per_node)
        world = nodes * args.gpus_per_node
        if world % plan.model_parallel:
            world = plan.model_parallel
    step = options.step(model, plan, world, args.gpus_per_node)
    print(show_json(step) if args.format == "json" else format_show(step, args.detail))
    return 0


def _predict(args: argparse.Namespace, argv: list[str]) -> int:
    from ..analysis.model.predict import parse_counts
    from ..analysis.model.profile import load_profile
    from .compute import peak_for
    from .cost import parse_algos
    from .library import load_model
    from .options import options_from
    from .plan import parse_plans
    from .predict import predict
    from .report import format_predict

    if args.plot is not None:   # before any work: the table is printed before the figure is drawn
        _check_plot_path(args.plot)
    if args.peak_tflops is not None and args.mfu is None:
        raise UsageError("--peak-tflops is the peak that --mfu takes a fraction of; add --mfu (e.g. 0.4)")
    model = load_model(args.model)
    plans = parse_plans(args.plan)
    nodes = parse_counts(args.nodes, "--nodes")
    profile = load_profile(args.profile)
    rpn = args.gpus_per_node if args.gpus_per_node is not None else (profile.ranks_per_node or 4)
    if rpn < 1:
        raise UsageError("--gpus-per-node must be at least 1")
    options = options_from(args)
    algos = parse_algos(args.algo)
    peak = peak_for(profile.name, options.dtype, args.peak_tflops) if args.mfu is not None else None
    points = predict(model, plans, nodes, rpn, profile, options, algos, args.mfu, peak)
    print(format_predict(points, model, profile, args.format))
    if args.plot is not None:
        from .plot import plot_predictions

        plot_predictions(points, Path(args.plot), f"{model.name}: communication per step, profile "
                         f"{profile.name}, {rpn} GPUs per node")
        if args.format != "json":
            print(f"\n# plot written to {args.plot}")
    return 0


def _check_plot_path(plot: str) -> None:
    """``--plot FILE``: a figure format, in a place that can be written. A figure is redrawn from
    the model, so an existing one is replaced (as `collbench plot -o` does)."""
    from ..results.files import check_output_path
    from .plot import FORMATS

    if plot.strip() and not Path(plot).is_dir() and Path(plot).suffix.lower() not in FORMATS:
        raise UsageError(f"--plot {plot}: give a .png, .svg or .pdf file")
    check_output_path(plot, "--plot", "figure", may_replace=lambda _: True)


def parse_scale(text: str) -> float:
    try:
        value = float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        raise UsageError(f"--scale {text!r}: give a fraction like 1/64 or a number like 0.25") from None
    if not 0 < value <= 1:
        raise UsageError(f"--scale {text!r}: must be in (0, 1]")
    return value


def _run(args: argparse.Namespace, argv: list[str]) -> int:
    from ..run.launcher import (
        KEEP_SHM_VARIABLE,
        inside_mpi_job,
        oversubscription_environment,
        oversubscription_warning,
        relaunch,
    )
    from .cost import parse_algos
    from .execute import RunConfig, alltoall_problem
    from .library import load_model
    from .options import options_from
    from .plan import parse_plan

    if args.out is not None and not inside_mpi_job():
        from ..results.files import ResultsWriter

        ResultsWriter.check_path(Path(args.out))     # before the model, the plan and the launch
    model = load_model(args.model)
    plan = parse_plan(args.plan)
    options = options_from(args)
    algos = parse_algos(args.algo or ("native" if args.backend == "nccl" else "auto"))
    scale = parse_scale(args.scale)
    if args.profile:
        from ..analysis.model.profile import load_profile

        load_profile(args.profile)       # fail early on a bad name
    gpu_map = None
    if args.gpu_map:
        from ..gpu.device import parse_gpu_map

        gpu_map = parse_gpu_map(args.gpu_map)
    cfg = RunConfig(backend=args.backend, algos=algos, profile=args.profile, scale=scale, iterations=args.iters,
                    warmup=args.warmup, check=args.check, timeout=args.timeout, target_seconds=args.target_time,
                    executor=args.executor, step_repeats=args.step_repeats, ranks_per_node=args.ranks_per_node,
                    thread_level=args.mpi_thread_level, gpu_map=gpu_map)
    if not inside_mpi_job():
        # the plan must fit the job before anything is launched
        rpn = args.ranks_per_node or args.nprocs
        step = options.step(model, plan, args.nprocs, rpn)
        if any(op.collective == "alltoall" for op in step.ops):
            if options.skew != 1:
                raise UsageError("--ep-skew: a skewed alltoall (alltoallv) cannot be measured yet; run "
                                 "measures balanced routing only (predict and show model the skew)")
            problem = alltoall_problem(args.backend) if algos["ep"] in ("auto", "native") else None
            if problem:
                raise UsageError(problem)
        from ..results.files import ResultsWriter

        out = Path(args.out) if args.out else _default_path(model.name, step.par.label)
        ResultsWriter.check_path(out)
        warning = oversubscription_warning(args.nprocs)
        if warning:
            sys.stderr.write(f"collbench: {warning}\n")
        extra_env = oversubscription_environment(args.nprocs)
        if extra_env:
            sys.stderr.write("collbench: MPICH's shared-memory collectives spin without yielding when "
                             "oversubscribed; using its point-to-point algorithms (MPIR_CVAR_*_POSIX_INTRA_"
                             f"ALGORITHM=mpir, recorded in the results; {KEEP_SHM_VARIABLE}=1 keeps them)\n")
        child = list(argv) if args.out else [*argv, "--out", str(out)]
        return relaunch(args.nprocs, child, extra_env)
    from .execute import run_in_job

    out = Path(args.out) if args.out else _default_path(model.name, plan.label)
    return run_in_job(model, plan, options, cfg, argv, out)


def _default_path(model: str, plan: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    job = os.environ.get("SLURM_JOB_ID")
    tag = f"slurm{job}" if job else str(os.getpid())
    return DEFAULT_RESULTS_DIR / f"workload-{model}-{plan.replace('+', '_')}-{stamp}-{tag}.jsonl"


def _check(args: argparse.Namespace, argv: list[str]) -> int:
    from ..analysis.model.profile import load_profile
    from .check import format_check

    if not 0 < args.tolerance < 10:
        raise UsageError("--tolerance: a relative error such as 0.3")
    text, ok = format_check(Path(args.results), load_profile(args.profile), args.tolerance)
    print(text)
    return 0 if ok else 1


def _from_hf(args: argparse.Namespace, argv: list[str]) -> int:
    from .hf import hf_record
    from .model import model_from_record

    if args.out is not None:
        from ..results.files import check_output_path

        check_output_path(args.out, "--out", "model file")   # never overwritten; before the config is read
    path = Path(args.config)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"no such file: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read {path} as JSON: {exc}") from None
    record = hf_record(config, str(path), args.name)
    model = model_from_record(record, str(path))      # validate what we are about to write
    text = json.dumps(record, indent=1) + "\n"
    if args.out is not None:
        out = Path(args.out)
        try:
            with open(out, "x", encoding="utf-8") as file:   # "x": never overwrites, even now
                file.write(text)
        except FileExistsError:
            raise UsageError(f"{out} exists; choose another --out") from None
        print(f"# {model.name}: {model.params:,} parameters; written to {out}")
    else:
        sys.stdout.write(text)
    return 0


__all__ = ["add_parser", "main", "parse_scale"]
