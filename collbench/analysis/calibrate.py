"""``collbench calibrate``: measure this machine's α, β, γ and save them as a profile.

Launched like ``collbench run`` (outside an MPI job it re-executes itself under mpiexec with
``-np`` ranks, default 2). Three sweeps, each timed through the same executor that runs
collbench's schedules (the native C executor when it builds, else the Python one -- so α
includes exactly the per-step cost a schedule pays):

* **point-to-point**: one pair of ranks exchanges ``b`` bytes in both directions at once (a
  one-step schedule: one send and one receive each, the step every ring/recursive-doubling
  step is made of), for sizes 8 B .. ``--max-bytes``; the other ranks sleep. Intra-node (rank 0
  and a rank on its node) and, when the job spans several nodes, inter-node (rank 0 and the
  first rank of the next node) separately. With ``--concurrent`` every rank of a node
  exchanges with a neighbour at the same time (pairs 0-1, 2-3, ...), as in a collective step:
  what ranks that share cores or memory bandwidth really get. Fit: ``t = α + β b``.
* **local reduction**: every rank at once (as in a collective step) runs one reduction of ``b``
  bytes per data type (``sum``; the schedule executors' reduce call), fit ``t = c + γ b``.
* **local copy**: the same for a copy (``δ``).

The fits are least squares weighted by 1/t² (every size counts by its *relative* error, so
8 B and 16 MiB both matter), with standard errors from the residuals (σ² (XᵀWX)⁻¹). The profile
(collbench/analysis/model/profile.py) records the values, their standard errors, R², the
largest relative residual, and the metadata (host, MPI library, executor, date, ranks). Default
output: ``~/.config/collbench/profiles/<host>.json``, which ``--algo auto`` and ``model`` use
when no ``--profile`` is given.
"""

from __future__ import annotations

import json
import math
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .. import __version__
from ..errors import UsageError
from ..results.files import check_output_path


@dataclass(frozen=True)
class Fit:
    """``t = intercept + slope * x``, with standard errors and fit quality."""

    intercept: float
    slope: float
    intercept_se: float
    slope_se: float
    r2: float
    max_rel_residual: float
    points: int

    def record(self, intercept_name: str, intercept_scale: float, slope_name: str,
               slope_scale: float) -> dict[str, Any]:
        return {intercept_name: [self.intercept * intercept_scale, self.intercept_se * intercept_scale],
                slope_name: [self.slope * slope_scale, self.slope_se * slope_scale],
                "r2": self.r2, "max_rel_residual": self.max_rel_residual, "points": self.points}


def fit_line(x: Sequence[float], y: Sequence[float], relative: bool = True) -> Fit:
    """Weighted least squares of ``y = a + b x`` (weights 1/y² when ``relative``).

    Standard errors are sqrt of the diagonal of σ² (XᵀWX)⁻¹ with σ² the weighted residual
    variance (n - 2 degrees of freedom); R² is the weighted coefficient of determination.
    """
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(xs) < 2 or np.ptp(xs) == 0:
        raise ValueError("a line needs at least two different x values")
    w = 1.0 / np.maximum(ys, 1e-300) ** 2 if relative else np.ones_like(ys)
    X = np.column_stack([np.ones_like(xs), xs])
    XtW = X.T * w
    cov = np.linalg.inv(XtW @ X)
    a, b = cov @ (XtW @ ys)
    resid = ys - (a + b * xs)
    dof = max(1, len(xs) - 2)
    sigma2 = float(np.sum(w * resid ** 2) / dof)
    se = np.sqrt(np.maximum(np.diag(cov) * sigma2, 0.0))
    mean = np.sum(w * ys) / np.sum(w)
    ss_tot = float(np.sum(w * (ys - mean) ** 2))
    r2 = 1.0 - float(np.sum(w * resid ** 2)) / ss_tot if ss_tot > 0 else 1.0
    rel = float(np.max(np.abs(resid) / np.maximum(ys, 1e-300)))
    return Fit(float(a), float(b), float(se[0]), float(se[1]), r2, rel, len(xs))


# -- running one-step programs through the schedule executors -------------------------------------


class _Runner:
    """A lowered one-step program bound to buffers, timed by the executor that would run it."""

    def __init__(self, executor: Any, comm: Any, program: Any, n: int, dtype: Any, op: str | None,
                 scratch: bool) -> None:
        from mpi4py import MPI

        from ..algorithms import Buf, Collective, Problem
        from ..execute.bind import lower

        self.n = n
        inp = np.ones(max(n, 1), dtype=dtype)
        out = np.zeros(max(n, 1), dtype=dtype)
        buffers = {Buf.INPUT: inp[:n], Buf.OUTPUT: out[:n]}
        problem = Problem(Collective.BROADCAST, comm.Get_size(), n)
        lowered = lower(problem, program, False, None)
        move = {1: MPI.BYTE, 2: MPI.UINT16_T, 4: MPI.UINT32_T, 8: MPI.UINT64_T}[np.dtype(dtype).itemsize]
        self._free: Callable[[], None] = lambda: None
        if executor is not None:
            from ..execute.c_executor import NativeScheduleRun

            plan = NativeScheduleRun(executor, comm, lowered, buffers, move, _dtype_name(dtype), op,
                                     comm.Get_size())
            self.batch = plan.batch
            self._free = plan.free
        else:
            from ..execute.python_mpi import MpiScheduleRun

            run = MpiScheduleRun(comm, lowered, buffers, move, op, comm.Get_size())

            def batch(iterations: int) -> float:
                start = time.perf_counter()
                for _ in range(iterations):
                    run.run()
                return (time.perf_counter() - start) / iterations

            self.batch = batch
            self._free = run.free

    def free(self) -> None:
        self._free()


def _dtype_name(dtype: Any) -> str:
    from ..dtypes import DTYPES

    for d in DTYPES.values():
        if d.numpy == np.dtype(dtype):
            return d.name
    return str(np.dtype(dtype))


def _exchange_program(rank: int, peer: int, n: int) -> Any:
    from ..algorithms import Buf, Program, Recv, Send, Slice, Step

    return Program(rank, (Step(0, sends=(Send(peer, Slice(Buf.INPUT, 0, n)),),
                               recvs=(Recv(peer, Slice(Buf.OUTPUT, 0, n)),)),))


def _local_program(rank: int, n: int, reduce: bool) -> Any:
    from ..algorithms import Buf, Copy, Program, Reduce, Slice, Step

    if reduce:
        op = Reduce(Slice(Buf.OUTPUT, 0, n), Slice(Buf.INPUT, 0, n), Slice(Buf.SCRATCH, 0, n))
        return Program(rank, (Step(0, local=(op,)),), scratch_len=n)
    return Program(rank, (Step(0, local=(Copy(Slice(Buf.INPUT, 0, n), Slice(Buf.OUTPUT, 0, n)),)),))


def _timed(comm: Any, runner: _Runner, target: float, repeats: int) -> list[float]:
    """Seconds per operation, max over the ranks of ``comm``, ``repeats`` times."""
    from mpi4py import MPI

    for _ in range(3):
        runner.batch(1)
    estimate = comm.allreduce(runner.batch(3), op=MPI.MAX)
    iterations = int(min(20000, max(3, math.ceil(target / max(estimate, 1e-9)))))
    iterations = comm.bcast(iterations, root=0)
    samples = []
    for _ in range(repeats):
        comm.Barrier()
        samples.append(comm.allreduce(runner.batch(iterations), op=MPI.MAX))
    return samples


def _idle_wait(comm: Any) -> None:
    """Wait at a barrier without spinning (idle ranks must not steal cores from the pair)."""
    request = comm.Ibarrier()
    while not request.Test():
        time.sleep(0.0005)


def p2p_sizes(max_bytes: int) -> list[int]:
    """8, 64, 512 B, then every power of two from 1 KiB (dense where protocols switch)."""
    sizes = [b for b in (8, 64, 512) if b <= max_bytes]
    b = 1024
    while b <= max_bytes:
        sizes.append(b)
        b *= 2
    return sizes


# the smallest --max-bytes that leaves two local sizes (4K, 16K) to fit a line through
MIN_MAX_BYTES = 16 << 10


def local_sizes(max_bytes: int) -> list[int]:
    sizes, b = [], 4096
    while b <= max_bytes:
        sizes.append(b)
        b *= 4 if b < 65536 else 2
    return sizes


def sweep_pairs(comm: Any, executor: Any, pairs: Sequence[tuple[int, int]], sizes: Sequence[int],
                target: float, repeats: int) -> dict[int, list[float]] | None:
    """Exchange sweep between the given pairs of world ranks, all pairs at once (time = the
    slowest rank); ranks in no pair sleep. Returns the samples on world rank 0 (which must be
    in a pair), None elsewhere."""
    from mpi4py import MPI

    rank = comm.Get_rank()
    members = sorted({r for pair in pairs for r in pair})
    partner = {a: b for a, b in pairs} | {b: a for a, b in pairs}
    inside = rank in partner
    sub = comm.Split(0 if inside else MPI.UNDEFINED, rank)
    result = None
    if inside:
        me, peer = sub.Get_rank(), members.index(partner[rank])
        result = {}
        for n in sizes:
            runner = _Runner(executor, sub, _exchange_program(me, peer, n), n, np.uint8, None, False)
            try:
                result[n] = _timed(sub, runner, target, repeats)
            finally:
                runner.free()
        sub.Free()
        comm.Ibarrier().Wait()
    else:
        _idle_wait(comm)
    return result if rank == 0 else None


def sweep_local(comm: Any, executor: Any, dtype: Any, sizes: Sequence[int], reduce: bool,
                target: float, repeats: int, slow_limit: float = 0.004) -> dict[int, list[float]]:
    """Every rank at once: one reduction (or copy) of ``n`` bytes; stops growing when one
    operation takes longer than ``slow_limit`` seconds (16-bit floats on a CPU)."""
    from mpi4py import MPI

    item = np.dtype(dtype).itemsize
    result: dict[int, list[float]] = {}
    for nbytes in sizes:
        n = nbytes // item
        runner = _Runner(executor, comm, _local_program(comm.Get_rank(), n, reduce), n, dtype,
                         "sum" if reduce else None, reduce)
        try:
            result[nbytes] = _timed(comm, runner, target, repeats)
        finally:
            runner.free()
        if comm.allreduce(min(result[nbytes]), op=MPI.MAX) > slow_limit and len(result) >= 4:
            break
    return result


def _fit_sweep(samples: dict[int, list[float]], min_bytes: int = 0) -> Fit:
    xs = [b for b in sorted(samples) if b >= min_bytes]
    ys = [float(np.median(samples[b])) for b in xs]
    return fit_line(xs, ys)


def _rss(fit: Fit, xs: Sequence[float], ys: Sequence[float]) -> float:
    return float(sum(((y - fit.intercept - fit.slope * x) / y) ** 2 for x, y in zip(xs, ys)))


def _positive(fit: Fit, xs: Sequence[float], ys: Sequence[float], slope: float) -> Fit:
    """A fit whose slope came out <= 0 (flat, noisy latency regime): keep ``slope`` and put
    the intercept at the median of what is left (the standard errors are then the spread)."""
    if fit.slope > 0 and fit.intercept >= 0:
        return fit
    if fit.slope <= 0:
        rest = [y - slope * x for x, y in zip(xs, ys)]
        a = max(0.0, float(np.median(rest)))
        se = float(np.std(rest) / math.sqrt(max(1, len(rest) - 1)))
        return Fit(a, slope, se, 0.0, fit.r2, fit.max_rel_residual, fit.points)
    return Fit(0.0, fit.slope, fit.intercept_se, fit.slope_se, fit.r2, fit.max_rel_residual, fit.points)


def fit_regimes(samples: dict[int, list[float]], min_points: int = 3,
                gain: float = 0.5) -> tuple[Fit, Fit | None, int]:
    """One line, or two (below and from a switch size) when one line misses some size by more
    than 10 % and two at least halve (``gain``) the weighted squared relative residual: MPI libraries switch protocol (eager ->
    rendezvous, shared-memory cells -> single copy) at some size, and one line through both
    regimes misses each by 20-50 %. Returns (small or only fit, large fit or None, switch)."""
    xs = sorted(samples)
    ys = [float(np.median(samples[b])) for b in xs]
    single = fit_line(xs, ys)
    best: tuple[float, Fit, Fit, int] | None = None
    for k in range(min_points, len(xs) - min_points + 1):
        small, large = fit_line(xs[:k], ys[:k]), fit_line(xs[k:], ys[k:])
        if large.slope <= 0:
            continue
        small = _positive(small, xs[:k], ys[:k], large.slope)
        large = _positive(large, xs[k:], ys[k:], large.slope)
        rss = _rss(small, xs[:k], ys[:k]) + _rss(large, xs[k:], ys[k:])
        if best is None or rss < best[0]:
            best = (rss, small, large, xs[k])
    # two lines only when one line visibly misses (some size off by more than 10 %)
    if best is not None and single.max_rel_residual > 0.1 and best[0] < gain * _rss(single, xs, ys):
        return best[1], best[2], best[3]
    return single, None, 0


def calibrate_in_job(args: Any, argv: list[str]) -> int:
    """Every rank of the calibration job runs this; rank 0 writes the profile."""
    import mpi4py

    mpi4py.rc.thread_level = "single"
    from mpi4py import MPI

    world = MPI.COMM_WORLD
    comm = world.Dup()
    rank, size = comm.Get_rank(), comm.Get_size()
    try:
        return _calibrate(comm, args, argv)
    except UsageError as exc:
        if rank == 0:
            sys.stderr.write(f"collbench: error: {exc}\n")
        return 2
    except BaseException as exc:  # noqa: BLE001 - a failure on one rank must end the job
        sys.stderr.write(f"collbench: calibrate failed on rank {rank} of {size}: "
                         f"{type(exc).__name__}: {exc}\n")
        sys.stderr.flush()
        world.Abort(1)
        return 1


def _calibrate(comm: Any, args: Any, argv: list[str]) -> int:
    from mpi4py import MPI

    from ..dtypes import DTYPES
    from ..results.metadata import cpu_model, git_revision, now_iso, relevant_environment
    from ..run.topology import discover, emulated
    from .model.profile import local_profile_path, save_profile

    rank, size = comm.Get_rank(), comm.Get_size()
    if size < 2:
        raise UsageError("calibrate needs at least 2 ranks to measure messages (-np 2)")
    nodes = emulated(size, args.ranks_per_node) if args.ranks_per_node else discover(comm)
    executor, path_name, reason = None, "python", None
    if args.executor in ("auto", "native"):
        try:
            from ..execute.c_executor import load_agreed

            executor, reason = load_agreed(comm)
        except Exception as exc:  # noqa: BLE001 - the native path is optional
            executor, reason = None, f"{type(exc).__name__}: {exc}"
        if executor is None and args.executor == "native":
            raise UsageError(f"--executor native: the native path is unavailable: {reason}")
        path_name = "native" if executor is not None else "python"
    target, repeats = args.target_time, args.repeats
    node_of = nodes.node_of_rank
    same = [r for r in range(1, size) if node_of[r] == node_of[0]]
    other = [r for r in range(1, size) if node_of[r] != node_of[0]]
    sizes = p2p_sizes(args.max_bytes)
    if rank == 0:
        print(f"# collbench calibrate: {size} ranks on {nodes.nnodes} node(s), executor {path_name}"
              f"{f' ({reason})' if reason and path_name == 'python' else ''}; "
              f"p2p {len(sizes)} sizes 8 B .. {sizes[-1]} B", flush=True)
    if args.concurrent:   # every rank busy at once, as in a collective step (oversubscription shows)
        by_node: dict[int, list[int]] = {}
        for r in range(size):
            by_node.setdefault(node_of[r], []).append(r)
        intra_pairs = [(ranks[i], ranks[i + 1]) for ranks in by_node.values()
                       for i in range(0, len(ranks) - 1, 2)]
    else:
        intra_pairs = [(0, same[0])] if same else []
    intra = sweep_pairs(comm, executor, intra_pairs, sizes, target, repeats) if same else None
    inter = sweep_pairs(comm, executor, [(0, other[0])], sizes, target, repeats) if other else None
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    for name in dtypes:
        if name not in DTYPES:
            raise UsageError(f"calibrate --dtypes: unknown data type {name!r}")
    lsizes = local_sizes(args.max_bytes)
    reductions = {name: sweep_local(comm, executor, DTYPES[name].numpy, lsizes, True, target, repeats)
                  for name in dtypes}
    copies = sweep_local(comm, executor, np.uint8, lsizes, False, target, repeats)
    library = MPI.Get_library_version().strip().splitlines()
    if rank != 0:
        return 0
    record: dict[str, Any] = {
        "collbench_profile": 1,
        "name": args.name or socket.gethostname(),
        "description": f"calibrated by collbench calibrate on {socket.gethostname()} "
                       f"({size} ranks, executor {path_name})",
        "ranks_per_node": max(nodes.ranks_per_node),
        "nics_per_node": args.nics_per_node,
        "sources": {},
        "fit": {},
        "samples": {},
    }
    for level, data in (("intra", intra), ("inter", inter)):
        if data is None:
            continue
        if args.single_regime:
            fit, large, switch = _fit_sweep(data), None, 0
        else:
            fit, large, switch = fit_regimes(data)
        record[level] = {"alpha_us": fit.intercept * 1e6, "bandwidth_gbps": 1e-9 / fit.slope
                         if fit.slope > 0 else 1e6, "ports": 1}
        record["fit"][level] = fit.record("alpha_us", 1e6, "beta_ns_per_byte", 1e9)
        record["samples"][level] = {str(b): [round(t * 1e6, 4) for t in v] for b, v in data.items()}
        below = f" below {switch} B" if large else ""
        record["sources"][f"{level}.alpha_us"] = (f"collbench calibrate: intercept of t = α + βb over "
                                                  f"{fit.points} exchange sizes{below}")
        record["sources"][f"{level}.bandwidth_gbps"] = "collbench calibrate: 1 / slope of the same fit"
        if large is not None:
            record[level]["large"] = {"from_bytes": switch, "alpha_us": large.intercept * 1e6,
                                      "bandwidth_gbps": 1e-9 / large.slope}
            record["fit"][f"{level}.large"] = large.record("alpha_us", 1e6, "beta_ns_per_byte", 1e9)
            record["sources"][f"{level}.large"] = (f"collbench calibrate: a second line from {switch} B "
                                                   f"on ({large.points} sizes): the MPI library "
                                                   f"switches protocol there")
    if "intra" not in record:   # one rank per node: only inter-node pairs exist
        record["intra"] = dict(record["inter"])
        record["sources"]["intra"] = "no two ranks share a node: copied from inter"
    if "inter" not in record:
        record["inter"] = dict(record["intra"])
        record["sources"]["inter"] = ("single-node job: no inter-node pair was measured; copied "
                                      "from intra (calibrate on two nodes for the network)")
    record["sources"]["nics_per_node"] = "given (--nics-per-node); calibrate cannot count NICs"
    reduce_rates, reduce_fits = {}, {}
    for name, data in reductions.items():
        fit = _fit_sweep(data, min_bytes=65536 if max(data) >= 4 * 65536 else 0)
        reduce_rates[name] = 1e-9 / fit.slope if fit.slope > 0 else 1e6
        reduce_fits[name] = fit.record("call_us", 1e6, "gamma_ns_per_byte", 1e9)
        record["samples"][f"reduce.{name}"] = {str(b): [round(t * 1e6, 4) for t in v]
                                               for b, v in data.items()}
    reduce_rates["default"] = reduce_rates.get("float32", next(iter(reduce_rates.values())))
    record["reduce_gbps"] = reduce_rates
    record["fit"]["reduce"] = reduce_fits
    record["sources"]["reduce_gbps"] = ("collbench calibrate: every rank at once reduces b bytes "
                                        "(sum) with the schedule executor; 1 / slope of t = c + γb "
                                        "over sizes >= 64 KiB")
    cfit = _fit_sweep(copies, min_bytes=65536 if max(copies) >= 4 * 65536 else 0)
    record["copy_gbps"] = 1e-9 / cfit.slope if cfit.slope > 0 else 1e6
    record["fit"]["copy"] = cfit.record("call_us", 1e6, "delta_ns_per_byte", 1e9)
    record["sources"]["copy_gbps"] = "collbench calibrate: the same sweep for a local copy"
    record["metadata"] = {
        "host": socket.gethostname(), "date": now_iso(), "collbench_version": __version__,
        "git_revision": git_revision(), "command": " ".join(argv), "nranks": size,
        "nnodes": nodes.nnodes, "ranks_per_node": nodes.ranks_per_node,
        "mpi_library": library[0] if library else "unknown",
        "thread_level": "single", "executor": path_name, "executor_note": reason,
        "cpu_model": cpu_model(), "env": relevant_environment(),
        "target_seconds": target, "repeats": repeats,
        "intra_pairs": "every rank at once (--concurrent)" if args.concurrent else "rank 0 and one peer",
    }
    out = Path(args.out) if args.out else local_profile_path()
    save_profile(record, out)
    print(format_profile_summary(record), flush=True)
    print(f"# profile written to {out}", flush=True)
    return 0


def format_profile_summary(record: dict[str, Any]) -> str:
    """A few lines: α ± se, bandwidth, γ per dtype, fit quality."""
    lines = []
    for level in ("intra", "intra.large", "inter", "inter.large"):
        fit = record.get("fit", {}).get(level)
        if not fit:
            continue
        if level.endswith(".large"):
            level = f"{level} (from {record[level.split('.')[0]]['large']['from_bytes']} B)"
        a, a_se = fit["alpha_us"]
        b, b_se = fit["beta_ns_per_byte"]
        lines.append(f"{level}: α = {a:.3g} ± {a_se:.2g} us, β = {b:.4g} ± {b_se:.2g} ns/B "
                     f"({1 / b:.3g} GB/s); R² {fit['r2']:.4f}, worst point "
                     f"{fit['max_rel_residual']:+.0%} off, {fit['points']} sizes")
    for name, rate in record.get("reduce_gbps", {}).items():
        if name == "default":
            continue
        fit = record["fit"]["reduce"][name]
        g, g_se = fit["gamma_ns_per_byte"]
        lines.append(f"reduce {name}: γ = {g:.4g} ± {g_se:.2g} ns/B ({rate:.3g} GB/s), "
                     f"R² {fit['r2']:.4f}")
    if "copy_gbps" in record:
        lines.append(f"copy: δ = {1 / record['copy_gbps']:.4g} ns/B ({record['copy_gbps']:.3g} GB/s)")
    return "\n".join(lines)


def calibrate_from_logs(args: Any) -> int:
    """``collbench calibrate --from LOGS...``: fit a profile on imported logs (no MPI, no
    measurement): NCCL realisation factors and link α/β per class, printed with residuals."""
    from .model.fit import calibrate_from, format_residuals
    from .model.profile import load_profile, local_profile_path, save_profile

    base = load_profile(args.profile)
    record, res = calibrate_from(args.from_logs, base, args.name)
    out = Path(args.out) if args.out else local_profile_path()
    save_profile(record, out)
    sys.stdout.write(format_residuals(res, record) + f"\n# profile written to {out}\n")
    return 0


def _is_profile(path: Path) -> bool:
    """Whether ``path`` holds a collbench machine profile (which calibrate may replace)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(record, dict) and "collbench_profile" in record


def check_calibrate_args(args: Any) -> None:
    """Every mistake calibrate would otherwise meet on the ranks or after measuring, as one
    line before anything runs: where the profile goes (a profile is replaced, any other file
    never: a results file there would be lost), and the sweep's sizes and data types."""
    from .model.profile import local_profile_path

    if not getattr(args, "from_logs", None):
        _check_sweep_args(args)
    out = Path(args.out) if args.out else local_profile_path()
    # the directory is made when the profile is written (save_profile), not for a mistake
    check_output_path(out, "--out", "collbench profile", may_replace=_is_profile, create=False)


def _check_sweep_args(args: Any) -> None:
    from ..dtypes import DTYPES

    if args.max_bytes < MIN_MAX_BYTES:
        raise UsageError(f"--max-bytes {args.max_bytes}: calibrate needs at least {MIN_MAX_BYTES // 1024}K "
                         "(two sizes for every local reduction line)")
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    if not dtypes:
        raise UsageError("--dtypes needs at least one data type, e.g. float32")
    for name in dtypes:
        if name not in DTYPES:
            raise UsageError(f"calibrate --dtypes: unknown data type {name!r} (known: {', '.join(DTYPES)})")


def command_calibrate(args: Any, argv: list[str]) -> int:
    """``collbench calibrate``: relaunch under mpiexec outside a job, else measure; with
    ``--from``, fit on imported logs instead."""
    check_calibrate_args(args)
    if getattr(args, "from_logs", None):
        return calibrate_from_logs(args)
    from ..run.launcher import (
        KEEP_SHM_VARIABLE,
        inside_mpi_job,
        oversubscription_environment,
        oversubscription_warning,
        relaunch,
    )

    if not inside_mpi_job():
        if args.nprocs < 2:
            raise UsageError("calibrate needs at least 2 ranks to measure messages (-np 2)")
        warning = oversubscription_warning(args.nprocs)
        if warning:
            sys.stderr.write(f"collbench: {warning}\n")
        extra = oversubscription_environment(args.nprocs)
        if extra:
            sys.stderr.write(f"collbench: oversubscribed: MPICH point-to-point collectives "
                             f"({KEEP_SHM_VARIABLE}=1 keeps its defaults)\n")
        return relaunch(args.nprocs, list(argv), extra)
    return calibrate_in_job(args, argv)
