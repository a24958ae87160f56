"""``collbench run``: the nccl-tests-style sweep. Parses flags into a RunSpec, then either
re-executes itself under mpiexec (outside an MPI job) or runs the sweep in this rank."""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import Callable

from ..algorithms import Collective
from ..algorithms.vcounts import Skew, load_matrix, parse_exponent
from ..backends import BACKENDS
from ..backends.base import Placement
from ..backends.cuda import BACKEND_ALGORITHMS
from ..dtypes import parse_dtypes, parse_ops
from ..errors import UsageError
from ..execute.programs import check_algorithm_names, parse_option_value
from ..run.launcher import (
    KEEP_SHM_VARIABLE,
    inside_mpi_job,
    oversubscription_environment,
    oversubscription_warning,
    relaunch,
)
from ..run.resources import memory_problem
from ..run.spec import Aggregation, RunSpec
from ..sizes import parse_size, size_sweep
from ..trace.nvtx import BACKENDS as NVTX_BACKENDS
from .argtypes import MAX_OPERATIONS, add_plugin_argument, int_in_range, local_ranks
from .argtypes import non_negative_float as _non_negative_float
from .argtypes import non_negative_int as _non_negative_int
from .argtypes import positive_int as _positive_int

DEFAULT_COLLECTIVES = ("allreduce", "allgather", "reduce_scatter")
DEFAULT_RESULTS_DIR = Path("results")
MAX_CHECKS = 1000              # -c: validation rounds per row
MAX_TRACE_ITERATIONS = 1000    # --trace-iters: traced operations per row


def _operations(low: int, what: str) -> Callable[[str], int]:
    """-n, -w, -G: at most MAX_OPERATIONS (at 1 µs an operation, 10 s per size and placement;
    the automatic count stops at RunSpec.max_iterations, 10^5)."""
    return int_in_range(low, MAX_OPERATIONS, f"{what} per size: 10^7 take 10 s even at 1 µs each")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    run = sub.add_parser("run", help="measure collectives (nccl-tests flags)",
                         description="Sweep collectives over sizes; prints nccl-tests-style tables "
                         "and writes a JSON Lines results file. Sizes take binary K/M/G suffixes.")
    run.add_argument("collectives", nargs="*", metavar="COLLECTIVE",
                     help="allreduce, allgather, reduce_scatter (or reduce-scatter), broadcast, "
                     "reduce; default: allreduce allgather reduce_scatter")
    g = run.add_argument_group("sweep (nccl-tests flags)")
    g.add_argument("-b", "--minbytes", default="8", help="smallest size (default 8)")
    g.add_argument("-e", "--maxbytes", default="16M", help="largest size (default 16M)")
    g.add_argument("-f", "--stepfactor", type=_positive_int, default=None,
                   help="multiply the size by this factor (default 4, unless -i is given)")
    g.add_argument("-i", "--stepbytes", default=None, help="add this many bytes per step (when -f is 1)")
    g.add_argument("-n", "--iters", type=_operations(1, "timed iterations"), default=None,
                   help="timed iterations per size (default: automatic, ~--target-time per size)")
    g.add_argument("-w", "--warmup_iters", "--warmup-iters", dest="warmup",
                   type=_operations(0, "warm-up iterations"), default=20, help="warm-up iterations per size (default 20: MPICH switches collective paths after its first few calls; at least 1 is run)")
    g.add_argument("-c", "--check", type=int_in_range(0, MAX_CHECKS, "each round is a full operation "
                   "checked element by element"), default=1,
                   help="validation rounds per size, outside the timed loop (0 = off; default 1)")
    g.add_argument("-d", "--datatype", default="float32",
                   help="int8 uint8 int32 uint32 int64 uint64 float16 bfloat16 float32 float64, "
                   "a comma list, or all (nccl-tests names half/float/double accepted)")
    g.add_argument("-o", "--op", default="sum", help="sum prod max min avg, a comma list, or all")
    g.add_argument("-a", "--average", type=int, choices=[0, 1, 2, 3], default=3,
                   help="combine per-rank times: 0 rank 0, 1 mean, 2 min, 3 max (default 3: a "
                   "collective ends when its slowest rank does)")
    g.add_argument("-T", "--timeout", type=_non_negative_float, default=60.0,
                   help="seconds before a stuck operation or a missing rank aborts the job (0 = off)")
    g.add_argument("-I", "--per-iter", "--per_iter_timing", dest="per_iter", nargs="?", const=1,
                   type=int, choices=[0, 1], default=0,
                   help="time every iteration: min/p50/p99/max/stdev columns and samples in the file")
    g.add_argument("-r", "--root", type=_non_negative_int, default=0, help="root of broadcast/reduce")
    g.add_argument("--placement", choices=["both", "out-of-place", "in-place"], default="both")
    g.add_argument("--target-time", type=_non_negative_float, default=0.05,
                   help="seconds the timed loop aims for when -n is not given (default 0.05)")
    x = run.add_argument_group("execution")
    x.add_argument("-np", "--nprocs", type=local_ranks, default=4,
                   help="ranks to launch with the bundled mpiexec when not already in an MPI job (default 4)")
    x.add_argument("--backend", default="mpi", help="mpi (default), nccl (GPU), cuda (our IPC kernels, GPU)")
    x.add_argument("--algo", default="native",
                   help="algorithm(s), comma separated, or all: native (the library's own), ring, "
                   "recursive_doubling, rabenseifner, tree, double_binary_tree, direct, hierarchical, "
                   "bruck, recursive_halving (see `collbench list`); auto picks per size (--profile)")
    add_plugin_argument(x)
    x.add_argument("-O", "--algo-option", action="append", default=[], metavar="KEY=VALUE",
                   help="algorithm option, e.g. -O inner=ring -O outer=recursive_doubling for hierarchical; "
                   "alltoallv's count matrix: -O skew=<s> (Zipf: counts[src][dst] = count/(dst+1)^s, default 1) "
                   "or -O counts=FILE.json (a p x p matrix of weights)")
    x.add_argument("--mpi-thread-level", choices=["single", "funneled", "serialized", "multiple"],
                   default="single", help="MPI thread level to request (default single; mpi4py's "
                   "own default is multiple, which changes MPICH's latency and algorithm choice)")
    x.add_argument("--ranks-per-node", type=_positive_int, default=None,
                   help="treat consecutive blocks of K ranks as nodes (emulation for tests and labs)")
    x.add_argument("--executor", choices=["auto", "native", "python"], default="auto",
                   help="mpi backend: time native collectives and run custom schedules in collbench's "
                   "C loops (native, built with the MPI's mpicc at first use) or in Python; auto "
                   "(default) is native when it builds, else python")
    gpu = run.add_argument_group("GPU")
    gpu.add_argument("-G", "--cudagraph", type=_operations(0, "graph replays"), default=0,
                     help="CUDA-graph mode: capture the timed loop and replay it N times (nccl, cuda)")
    gpu.add_argument("--gpu-map", default=None,
                     help="device index per local rank, e.g. 3,2,1,0 (Perlmutter: local rank r is "
                     "nearest GPU 3-r); default: local rank modulo visible devices")
    gpu.add_argument("--nccl-algo", default=None, help="sets NCCL_ALGO (e.g. Ring, Tree) and records it")
    gpu.add_argument("--nccl-proto", default=None, help="sets NCCL_PROTO (e.g. Simple, LL, LL128)")
    gpu.add_argument("--device", choices=["host", "cuda"], default="host",
                     help="where the mpi backend's buffers live (cuda needs a CUDA-aware MPI or --stage-host)")
    gpu.add_argument("--stage-host", action="store_true",
                     help="with --device cuda: copy through host memory around each MPI call")
    tr = run.add_argument_group("timelines (collbench trace show|compare FILE)")
    tr.add_argument("--trace", default=None, metavar="FILE",
                    help="after each row's timed loop and validation, run --trace-iters more operations "
                    "stamping every step of every rank, into FILE (Chrome trace / Perfetto JSON)")
    tr.add_argument("--trace-iters", type=int_in_range(1, MAX_TRACE_ITERATIONS, "every traced operation's "
                    "per-step stamps of every rank go into the trace file"), default=3,
                    help="traced operations per row (default 3)")
    tr.add_argument("--nvtx", action="store_true",
                    help="GPU backends: NVTX ranges named after collective, algorithm, size and step around "
                    "every measurement, operation and schedule step, for Nsight Systems (off by default: "
                    "from Python each range costs time inside the timed loop; docs/tracing.md)")
    tr.add_argument("--nccl-log", action="store_true",
                    help="nccl backend: NCCL_DEBUG=INFO of every rank into <results>.nccl/ beside the results "
                    "file, and the transports NCCL chose (P2P/NVLink, SHM, NET/IB, ...) in the metadata")
    x.add_argument("--out", default=None, help="results file (default results/collbench-<time>.jsonl); "
                   "never overwritten")
    auto = run.add_argument_group("--algo auto (per size, the algorithm the model or a sweep says is fastest)")
    auto.add_argument("--profile", default=None, help="machine profile for the model: perlmutter, delta, "
                      "generic, local or a file (default: this host's calibrated profile, else generic)")
    auto.add_argument("--auto-from", default=None, metavar="FILE",
                      help="choose from a previous sweep's results instead of the model")
    return run


def build_spec(args: argparse.Namespace) -> RunSpec:
    """Turn parsed ``run`` arguments into a RunSpec, validating everything up front."""
    names = args.collectives or list(DEFAULT_COLLECTIVES)
    collectives = []
    for name in (n for part in names for n in part.split(",") if n):
        try:
            collectives.append(Collective.parse(name))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    minbytes = parse_size(args.minbytes, "minbytes (-b)")
    maxbytes = parse_size(args.maxbytes, "maxbytes (-e)")
    stepbytes = parse_size(args.stepbytes, "stepbytes (-i)") if args.stepbytes is not None else None
    stepfactor = args.stepfactor if args.stepfactor is not None else (None if stepbytes else 4)
    sizes = size_sweep(minbytes, maxbytes, stepfactor, stepbytes if stepbytes else 1 << 20)
    placements = {"both": (Placement.OUT_OF_PLACE, Placement.IN_PLACE),
                  "out-of-place": (Placement.OUT_OF_PLACE,),
                  "in-place": (Placement.IN_PLACE,)}[args.placement]
    algorithms = tuple(dict.fromkeys(a.strip() for a in args.algo.split(",") if a.strip()))
    if not algorithms:
        raise UsageError("--algo needs at least one algorithm name")
    if args.backend not in BACKENDS:
        raise UsageError(f"unknown backend {args.backend!r} (known: {', '.join(BACKENDS)})")
    algorithms = check_algorithm_names(algorithms, (BACKEND_ALGORITHMS if args.backend == "cuda" else ())
                                       + ("auto",))
    if (args.profile or args.auto_from) and "auto" not in algorithms:
        raise UsageError("--profile and --auto-from choose for --algo auto; add auto to --algo")
    if args.profile and args.auto_from:
        raise UsageError("--algo auto uses either the model (--profile) or a sweep (--auto-from), not both")
    options = []
    # -O a=1,b=2 is -O a=1 -O b=2 (a comma starts a new option only where KEY= follows it)
    for item in (part for given in args.algo_option for part in re.split(r",(?=\s*\w+=)", given)):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise UsageError(f"-O/--algo-option {item!r}: expected KEY=VALUE, e.g. inner=ring")
        options.append((key.strip(), parse_option_value(value.strip())))
    options, skew = _count_matrix(options, collectives)
    if args.cudagraph and args.backend == "mpi":
        raise UsageError("-G (CUDA graphs) needs a GPU backend: --backend nccl or cuda")
    if args.cudagraph and args.per_iter:
        raise UsageError("-I cannot be combined with -G: a graph replays all iterations at once")
    if args.device == "cuda" and args.backend != "mpi":
        raise UsageError("--device cuda applies to the mpi backend (nccl and cuda always use the GPU)")
    if args.stage_host and args.device != "cuda":
        raise UsageError("--stage-host only makes sense with --device cuda")
    if args.trace is not None and (not args.trace.strip() or Path(args.trace).is_dir()):
        raise UsageError(f"--trace {args.trace!r}: give a file name")
    if args.nvtx and args.backend not in NVTX_BACKENDS:
        raise UsageError(f"--nvtx needs a GPU backend (--backend {' or '.join(NVTX_BACKENDS)}): NVTX comes through CuPy")
    if args.nccl_log and args.backend != "nccl":
        raise UsageError("--nccl-log applies to --backend nccl (for the cuda backend's ipc_hierarchical, "
                         "set NCCL_DEBUG=INFO and NCCL_DEBUG_FILE yourself)")
    if args.executor == "native" and (args.backend != "mpi" or args.device != "host"):
        raise UsageError("--executor native applies to the mpi backend on host buffers")
    return RunSpec(
        collectives=tuple(dict.fromkeys(collectives)), sizes=tuple(sizes),
        dtypes=parse_dtypes(args.datatype), ops=parse_ops(args.op), algorithms=algorithms,
        backend=args.backend, placements=placements, iterations=args.iters, warmup=args.warmup,
        check=args.check, aggregation=Aggregation(args.average), per_iteration=bool(args.per_iter),
        timeout=args.timeout, root=args.root, target_seconds=args.target_time,
        strict_dtypes=args.datatype.strip().lower() != "all",
        strict_ops=args.op.strip().lower() != "all", algorithm_options=tuple(options),
        graph_replays=args.cudagraph, device=args.device, stage_host=args.stage_host,
        executor=args.executor, auto_profile=args.profile, auto_from=args.auto_from,
        trace=args.trace, trace_iterations=args.trace_iters, skew=skew, nvtx=args.nvtx)


def _count_matrix(options: list, collectives: list) -> tuple[list, Skew | None]:
    """-O skew=<s> and -O counts=FILE describe alltoallv's count matrix (algorithms/vcounts.py),
    not an algorithm: (the other options, the Skew or None for the default)."""
    given = [(k, v) for k, v in options if k in ("skew", "counts")]
    if not given:
        return options, None
    if Collective.ALLTOALLV not in collectives:
        raise UsageError(f"-O {given[0][0]}= describes alltoallv's count matrix; the run has no "
                         f"alltoallv")
    if len(given) > 1:
        raise UsageError("alltoallv takes one count matrix: -O skew=<s> or -O counts=FILE.json, once")
    key, value = given[0]
    try:
        skew = parse_exponent(value) if key == "skew" else load_matrix(str(value))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return [(k, v) for k, v in options if k not in ("skew", "counts")], skew


def default_results_path(spec: RunSpec) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    what = "-".join(c.value for c in spec.collectives) if len(spec.collectives) <= 3 else "sweep"
    return DEFAULT_RESULTS_DIR / f"collbench-{stamp}-{what}-{os.getpid()}.jsonl"


def main(args: argparse.Namespace, argv: list[str]) -> int:
    spec = build_spec(args)
    from ..gpu.device import parse_gpu_map

    gpu_map = parse_gpu_map(args.gpu_map)
    # NCCL reads these when its communicator is created: set them before anything starts, in
    # the launcher (children inherit them) and in every rank (when launched by srun directly).
    if args.nccl_algo:
        os.environ["NCCL_ALGO"] = args.nccl_algo
    if args.nccl_proto:
        os.environ["NCCL_PROTO"] = args.nccl_proto
    if spec.root >= args.nprocs and not inside_mpi_job():
        raise UsageError(f"root {spec.root} is not a rank of a {args.nprocs}-rank job")
    if not inside_mpi_job():
        from ..backends.nccl_env import selection_warnings

        for found in selection_warnings(args.nccl_algo, args.nccl_proto):
            sys.stderr.write(f"collbench: warning: {found}\n")
        out = Path(args.out) if args.out else default_results_path(spec)
        _check_before_launch(spec, out)
        spec = _nccl_log(spec, args, out)
        if not spec.nvtx and spec.backend in NVTX_BACKENDS and os.environ.get("NVTX_INJECTION64_PATH"):
            sys.stderr.write("collbench: an NVTX tool is attached (NVTX_INJECTION64_PATH); add --nvtx for ranges "
                             "named after each measurement, collective and step\n")
        problem = memory_problem(spec.max_bytes, spec.check > 0, args.nprocs)
        if problem:
            raise UsageError(problem)
        warning = oversubscription_warning(args.nprocs)
        if warning:
            sys.stderr.write(f"collbench: {warning}\n")
        extra_env = oversubscription_environment(args.nprocs)
        if extra_env:
            sys.stderr.write("collbench: MPICH's shared-memory collectives spin without yielding when "
                             "oversubscribed; using its point-to-point algorithms (MPIR_CVAR_*_POSIX_INTRA_"
                             f"ALGORITHM=mpir, recorded in the results; {KEEP_SHM_VARIABLE}=1 keeps them)\n")
        child_argv = list(argv) if args.out else [*argv, "--out", str(out)]
        return relaunch(args.nprocs, child_argv, extra_env)
    from ..run.job import run_in_job

    out = Path(args.out) if args.out else _agreed_default_path(spec)
    spec = _nccl_log(spec, args, out)
    return run_in_job(spec, argv, out, args.mpi_thread_level, args.ranks_per_node, gpu_map)


def _check_before_launch(spec: RunSpec, out: Path) -> None:
    """What the ranks would only find out after mpiexec started them, checked once here: the
    output files can be created (and overwrite nothing), the build variables are usable
    ($COLLBENCH_NATIVE_CFLAGS, $COLLBENCH_CSRC), and --algo auto's profile or results file is
    usable. Each mistake is one line, before any rank runs."""
    from ..run.job import check_build_variables, check_outputs

    check_outputs(out, spec.trace)  # the ranks check again (started directly, they skip this)
    check_build_variables(spec)
    if "auto" in spec.algorithms:
        from ..analysis.select import check_auto

        check_auto(spec.auto_profile, spec.auto_from)
    from ..run.faults import from_environment

    from_environment()  # a malformed $COLLBENCH_INJECT_FAULT, before a results file exists


def _nccl_log(spec: RunSpec, args: argparse.Namespace, out: Path) -> RunSpec:
    """--nccl-log: NCCL's INFO log into <results>.nccl/, set up before NCCL initialises (in the
    launcher, whose children inherit it, and in every rank); the spec records the directory."""
    if not args.nccl_log:
        return spec
    from ..trace.nccl_log import configure_environment, log_dir

    directory = log_dir(out)
    configure_environment(directory)
    return replace(spec, nccl_log=str(directory))


def _agreed_default_path(spec: RunSpec) -> Path:
    """The default results name inside a job started by srun/mpiexec directly (only rank 0
    opens it); under Slurm it is named after the job step so sweeps are easy to find."""
    job = os.environ.get("SLURM_JOB_ID")
    step = os.environ.get("SLURM_STEP_ID")
    if job:
        return DEFAULT_RESULTS_DIR / f"collbench-slurm{job}.{step or 0}.jsonl"
    return default_results_path(spec)  # only rank 0 opens it, so the others' names do not matter
