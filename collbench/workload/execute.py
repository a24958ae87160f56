"""``workload run`` inside the MPI job: the step's collectives, in order, on the right groups.

Every rank runs this. The world is split into one communicator per process group (``tp``,
``dp``, ``dp×ep``, ``ep``, each pipeline boundary, the tied-embedding pair); each group gets its
own backend (mpi, or nccl through the same interface) and :class:`~collbench.run.harness.Harness`.
Then, in step order, every distinct collective (same group kind, collective, bytes) is measured
once by the harness on every group of its kind at the same time -- as in training, where all
data-parallel groups reduce together -- and validated (#wrong summed over every group). Rank 0
keeps the slowest group's row. A pipeline boundary's point-to-point transfer is measured as a
broadcast on the two-rank communicator: exactly one message from the sending stage.

Finally the whole step runs back to back ``--step-repeats`` times (each op its number of calls
per step, no barriers between ops, so groups overlap as they would in training) and the slowest
rank's time is the measured step. Rows, a ``workload_step`` record and the summary go to the
results file as they complete (collbench's JSON Lines schema; nothing is overwritten).
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..algorithms import Collective, Layout
from ..backends import Backend, make_backend
from ..backends.base import OpRequest, Placement, PreparedOp
from ..dtypes import DTYPES
from ..errors import UsageError
from ..metrics import count_for_size
from ..results.files import ResultsWriter, Row
from ..results.metadata import collect, now_iso
from ..run.harness import Harness
from ..run.interrupt import Interrupts, start_mpi
from ..run.job import guarded
from ..run.spec import RunSpec
from ..run.topology import NodeMap, discover, emulated
from ..run.watchdog import Activity, Watchdog
from .cost import AUTO
from .grid import Grid, Group
from .model import ModelSpec
from .options import Options
from .plan import Plan
from .step import ALLREDUCE, ALLTOALL, P2P, CommOp, Step, distinct, scaled

EXIT_WRONG = 1


@dataclass(frozen=True)
class RunConfig:
    """The measurement knobs of ``workload run`` (the rest is the model, plan and Options)."""

    backend: str = "mpi"
    algos: dict[str, str] = field(default_factory=dict)
    profile: str | None = None          # the model's profile for --algo auto
    scale: float = 1.0
    iterations: int | None = None
    warmup: int = 20
    check: int = 1
    timeout: float = 60.0
    target_seconds: float = 0.05
    executor: str = "auto"
    step_repeats: int = 5
    ranks_per_node: int | None = None   # emulated nodes
    thread_level: str = "single"
    gpu_map: tuple[int, ...] | None = None


def alltoall_problem(backend: str) -> str | None:
    """Why expert parallelism cannot be measured on ``backend`` yet (None: it can)."""
    from ..backends.capabilities import declared

    if declared(backend).algorithm_names(Collective.ALLTOALL):
        return None
    return (f"expert parallelism's alltoall cannot be measured: backend {backend} has no alltoall yet "
            "(collbench's Collective.ALLTOALL has no implementation in this install); `workload show` "
            "and `predict` cost it with collbench workload's own pairwise formula")


def run_collective(op: CommOp) -> Collective:
    """What the backend runs for ``op``: point-to-point is a two-rank broadcast (one message)."""
    return Collective.BROADCAST if op.collective == P2P else Collective.parse(op.collective)


def placement_for(op: CommOp) -> Placement:
    # DDP reduces its buckets in place; a broadcast is in place (MPI_Bcast only works so); ZeRO,
    # FSDP and MoE gather, scatter and exchange into other buffers
    if op.collective in (ALLREDUCE, P2P):
        return Placement.IN_PLACE
    return Placement.OUT_OF_PLACE


class GroupRunner:
    """This rank's group of one kind: communicator, backend, harness (created collectively)."""

    def __init__(self, kind: str, group: Group, comm: Any, nodes: NodeMap, spec: RunSpec,
                 cfg: RunConfig, max_bytes: int, activity: Activity, thread_multiple: bool) -> None:
        self.kind, self.group, self.comm = kind, group, comm
        node_of = [nodes.node_of_rank[r] for r in group.ranks]
        by_node: dict[int, list[int]] = {}
        for i, n in enumerate(node_of):
            by_node.setdefault(n, []).append(i)
        self.layout = Layout(tuple(tuple(v) for v in by_node.values()))
        self.ctrl = comm.Dup()
        self.backend: Backend = make_backend(
            spec.backend, comm, layout=self.layout, algorithm_options={}, gpu_map=_gpu_map(cfg, comm, nodes),
            executor=spec.executor)
        self.backend.reserve(max_bytes, list(spec.dtypes))
        self.watchdog = Watchdog(self.ctrl.Dup(), spec.timeout, activity, thread_multiple)
        self.harness = Harness(spec, self.backend, self.ctrl, self.watchdog, activity)
        self._selector: Any = None
        self.spec = spec

    def choose(self, op: CommOp, wanted: str, nbytes: int, dtype: str, reduce_op: str | None,
               placement: Placement) -> str:
        """The algorithm to run (the group's rank 0 decides --algo auto, everyone gets it)."""
        collective = run_collective(op)
        if wanted != AUTO:
            return wanted
        from ..analysis.select import Selector, agreed_choice

        if self._selector is None and self.ctrl.Get_rank() == 0:
            def runnable(coll: Collective, name: str, dt: str, rop: str | None) -> bool:
                count = count_for_size(coll, nbytes, DTYPES[dt].itemsize, self.group.size)
                return self.backend.reason(OpRequest(coll, name, DTYPES[dt], rop, count, placement,
                                                     op.root)) is None
            self._selector = Selector(self.group.size, self.layout, runnable, self.spec.auto_profile)
        try:
            return agreed_choice(self.ctrl, self._selector, collective, nbytes, dtype, reduce_op,
                                 placement is Placement.IN_PLACE)[0]
        except UsageError:
            if op.collective == ALLTOALL and self.backend.implements("native", collective):
                return "native"
            raise

    def close(self) -> None:
        self.watchdog.close()
        self.backend.close()


def _gpu_map(cfg: RunConfig, comm: Any, nodes: NodeMap) -> tuple[int, ...] | None:
    """GPU backends pick a device by local rank *in the communicator they get*; a sub-group's
    local rank is not the node-local rank, so give each rank a map that resolves to the device of
    its node-local rank in the world (or the user's --gpu-map entry for it)."""
    if cfg.backend == "mpi":
        return None
    from mpi4py import MPI

    world_rank = MPI.COMM_WORLD.Get_rank()
    node = nodes.node_of_rank[world_rank]
    world_local = sum(1 for r in range(world_rank) if nodes.node_of_rank[r] == node)
    if cfg.gpu_map:
        device = cfg.gpu_map[world_local] if world_local < len(cfg.gpu_map) else -1
    else:   # as the backends choose without a map: local rank modulo the visible devices
        import cupy

        device = world_local % max(1, cupy.cuda.runtime.getDeviceCount())
    if device < 0:
        raise UsageError(f"--gpu-map lists {len(cfg.gpu_map or ())} devices but this node runs local rank "
                         f"{world_local}")
    local = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.Get_rank())
    sub_local = local.Get_rank()
    local.Free()
    # every entry is this rank's device: whatever index the backend computes, it lands on it
    return tuple([device] * (sub_local + 1))


def run_in_job(model: ModelSpec, plan: Plan, options: Options, cfg: RunConfig, argv: list[str],
               out_path: Path | None) -> int:
    # Ctrl-C from here on, MPI's start included, ends every rank as `collbench run`'s do
    # (run/interrupt.py): the records written stay, one line, status 130, no MPI_Abort
    interrupts, MPI, world, ctrl = start_mpi(cfg.thread_level)
    activity = Activity(rank=world.Get_rank())
    thread_multiple = MPI.Query_thread() == MPI.THREAD_MULTIPLE
    return guarded(lambda: _run(model, plan, options, cfg, argv, out_path, world, ctrl, activity,
                                thread_multiple, interrupts),
                   world, activity, thread_multiple, interrupts)


def _agree(ctrl: Any, action: Any) -> Any:
    from ..run.session import agree

    return agree(ctrl, action)


def _spec(step: Step, cfg: RunConfig, options: Options) -> RunSpec:
    collectives = tuple(dict.fromkeys(run_collective(op) for op in step.ops))
    algos = tuple(dict.fromkeys(cfg.algos.values())) or (AUTO,)
    return RunSpec(collectives=collectives, sizes=tuple(sorted({op.nbytes for op in step.ops})),
                   dtypes=(DTYPES[options.dtype],), ops=("sum",), algorithms=algos, backend=cfg.backend,
                   placements=(Placement.OUT_OF_PLACE, Placement.IN_PLACE), iterations=cfg.iterations,
                   warmup=cfg.warmup, check=cfg.check, timeout=cfg.timeout, target_seconds=cfg.target_seconds,
                   executor=cfg.executor, auto_profile=cfg.profile)


def _run(model: ModelSpec, plan: Plan, options: Options, cfg: RunConfig, argv: list[str],
         out_path: Path | None, world: Any, ctrl: Any, activity: Activity, thread_multiple: bool,
         interrupts: Interrupts) -> int:
    from mpi4py import MPI

    rank, nranks = ctrl.Get_rank(), ctrl.Get_size()
    real = discover(ctrl)
    nodes = emulated(nranks, cfg.ranks_per_node) if cfg.ranks_per_node else real
    rpn = max(nodes.ranks_per_node)
    full = _agree(ctrl, lambda: options.step(model, plan, nranks, rpn))
    grid = Grid(full.par)
    sizes = {op.group: grid.representative(op.group, op.stages[0] if op.stages else 0).size for op in full.ops}
    step = scaled(full, cfg.scale, sizes) if cfg.scale != 1 else full
    if any(op.collective == ALLTOALL for op in step.ops):
        _agree(ctrl, lambda: _check_ep(cfg, options))
    spec = _spec(step, cfg, options)
    my_stage = grid.coords(rank)["pp"]

    # one communicator and backend per group kind this rank belongs to
    runners: dict[str, GroupRunner] = {}
    for kind in dict.fromkeys(op.group for op in step.ops):
        mine = grid.group_of(kind, rank)
        groups = grid.groups(kind)
        color = next(i for i, g in enumerate(groups) if g.ranks == mine.ranks) if mine else MPI.UNDEFINED
        sub = world.Split(color, mine.ranks.index(rank) if mine else 0)
        if mine is None:
            continue
        largest = max(op.nbytes for op in step.ops if op.group == kind)
        activity.phase = f"{cfg.backend} backend initialization for group {kind}"
        runners[kind] = GroupRunner(kind, mine, sub, nodes, spec, cfg, largest, activity, thread_multiple)

    writer = ResultsWriter(out_path) if (rank == 0 and out_path is not None) else None
    _agree(ctrl, lambda: writer.open() if writer else None)
    interrupts.writer = writer   # records go through interrupts.write: Ctrl-C never cuts one
    meta_backend = next((r.backend for k, r in runners.items() if k in ("dp", "tp", "ep", "dp×ep")), None)
    backend_meta = meta_backend.metadata() if meta_backend is not None else {"backend": cfg.backend}
    metadata = collect(ctrl, spec, argv, cfg.thread_level, nodes, backend_meta)
    metadata["workload"] = _workload_metadata(step, grid, cfg, options)
    if writer:
        interrupts.write(metadata)
        print(_preamble(step, grid, cfg, out_path), flush=True)

    measured: dict[tuple, dict[str, Any]] = {}      # merge key -> row record (rank 0)
    prepared: dict[tuple, tuple[GroupRunner, OpRequest]] = {}
    wrong_total = 0
    for index, (key, ops) in enumerate(distinct(step.ops).items()):
        op = ops[0]
        stages = None if any(o.stages is None for o in ops) else {s for o in ops for s in (o.stages or ())}
        runner = runners.get(op.group)
        takes_part = runner is not None and (stages is None or my_stage in stages)
        row, error = None, None
        try:
            if takes_part:
                assert runner is not None
                request = _request(runner, op, cfg, options)
                prepared[key] = (runner, request)
                row = runner.harness.measure(request)
        except UsageError as exc:
            error = str(exc)
        errors = [e for e in ctrl.allgather(error) if e]
        if errors:
            raise UsageError(errors[0])
        rows = ctrl.gather(row, root=0)
        if rank == 0:
            record = _merge_rows([r for r in rows if r is not None], ops, index, step, grid, full)
            measured[key] = record
            wrong_total += record["wrong"] or 0
            if writer:
                interrupts.write(record)
            print(_line(record), flush=True)

    step_times = _time_steps(step, runners, prepared, my_stage, cfg, ctrl, activity)
    for runner in runners.values():
        runner.close()
    if rank == 0:
        summary = _step_record(step, measured, step_times, wrong_total)
        if writer:
            interrupts.write(summary)
            interrupts.write({"type": "summary", "end_time": now_iso(), "rows": len(measured),
                              "wrong_total": wrong_total, "skipped": [], "status": "complete"})
            with interrupts.lock:
                writer.close()
        print(_footer(summary, out_path), flush=True)
        if wrong_total:
            sys.stderr.write(f"collbench: {wrong_total} wrong values in total (see #wrong)\n")
    failed = ctrl.bcast(wrong_total > 0 if rank == 0 else None, root=0)
    return EXIT_WRONG if failed else 0


def _check_ep(cfg: RunConfig, options: Options) -> None:
    if options.skew != 1:
        raise UsageError("--ep-skew: a skewed alltoall (alltoallv) cannot be measured yet; run measures "
                         "balanced routing only (predict and show model the skew)")
    if cfg.algos.get("ep", AUTO) in (AUTO, "native"):
        problem = alltoall_problem(cfg.backend)
        if problem:
            raise UsageError(problem)


def _request(runner: GroupRunner, op: CommOp, cfg: RunConfig, options: Options) -> OpRequest:
    collective = run_collective(op)
    dtype = DTYPES[options.dtype]
    reduce_op = "sum" if collective.reduces else None
    placement = placement_for(op)
    algorithm = runner.choose(op, cfg.algos.get(op.kind, AUTO), op.nbytes, dtype.name, reduce_op, placement)
    count = count_for_size(collective, op.nbytes, dtype.itemsize, runner.group.size)
    request = OpRequest(collective, algorithm, dtype, reduce_op, count, placement, op.root)
    reason = runner.backend.reason(request)
    if reason:
        raise UsageError(f"{op.kind} {op.collective} of {op.nbytes} B on group {op.group}: {reason}")
    return request


def _calls_by_stage(ops: list[CommOp], pp: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in range(pp):
        calls = sum(o.calls for o in ops if o.involves(s))
        if calls:
            out[str(s)] = calls
    return out


def _merge_rows(rows: list[Row], ops: list[CommOp], index: int, step: Step, grid: Grid, full: Step) -> dict[str, Any]:
    """One record for a measurement made on every group of a kind: the slowest group's row,
    #wrong summed over all groups, and what the step needs to add it up."""
    slowest = max(rows, key=lambda r: r.time_us)
    wrong = None if all(r.wrong is None for r in rows) else sum(r.wrong or 0 for r in rows)
    op = ops[0]
    group = grid.representative(op.group, op.stages[0] if op.stages else 0)
    record = slowest.to_record()
    record["wrong"] = wrong
    record["workload"] = {
        "index": index, "kind": op.kind, "group": op.group, "group_size": group.size,
        "group_ranks": list(group.ranks), "groups_measured": len(rows), "collective": op.collective,
        "phase": op.phase, "what": op.what if len(ops) == 1 else f"{op.section} ({len(ops)} ops)",
        "calls_by_stage": _calls_by_stage(ops, step.par.pp),
        "unscaled_bytes": _unscaled(op, ops, step, full), "skew": op.skew,
        "times_us_by_group": [round(r.time_us, 3) for r in rows]}
    return record


def _unscaled(op: CommOp, ops: list[CommOp], step: Step, full: Step) -> int | None:
    if step.scale == 1:
        return op.nbytes
    position = {id(o): i for i, o in enumerate(step.ops)}
    i = position.get(id(ops[0]))
    return full.ops[i].nbytes if i is not None else None


def _time_steps(step: Step, runners: dict[str, GroupRunner], prepared: dict[tuple, tuple[GroupRunner, OpRequest]],
                my_stage: int, cfg: RunConfig, ctrl: Any, activity: Activity) -> list[float]:
    """The whole step, back to back, ``step_repeats`` times (after one untimed step): the
    slowest rank's seconds per step."""
    from .step import merge_key

    if cfg.step_repeats <= 0:
        return []
    ops: list[tuple[PreparedOp, GroupRunner, int]] = []
    bound: dict[tuple, PreparedOp] = {}
    activity.phase = "whole-step buffer preparation"
    for key, (runner, request) in prepared.items():
        bound[key] = runner.backend.prepare(request)
    for op in step.ops:
        key = merge_key(op)
        if key in bound and op.involves(my_stage):
            ops.append((bound[key], prepared[key][0], op.calls))
    watchdog = next(iter(runners.values())).watchdog if runners else None
    times = []
    try:
        for repeat in range(cfg.step_repeats + 1):
            activity.phase = f"whole step {repeat} of {cfg.step_repeats}"
            ctrl.Barrier()
            if watchdog:
                watchdog.arm(cfg.timeout * max(1, len(ops)))
            start = time.perf_counter()
            for prep, runner, calls in ops:
                if prep.batch is not None:
                    prep.batch(calls)
                else:
                    runner.backend.timer.batch(prep.run, calls)
            mine = time.perf_counter() - start
            if watchdog:
                watchdog.disarm()
            slowest = ctrl.allreduce(mine, op=_max())
            if repeat:
                times.append(slowest)
    finally:
        for prep in bound.values():
            if prep.teardown is not None:
                prep.teardown()
    return times


def _max() -> Any:
    from mpi4py import MPI

    return MPI.MAX


def _workload_metadata(step: Step, grid: Grid, cfg: RunConfig, options: Options) -> dict[str, Any]:
    par = step.par
    return {"model": step.model.name, "model_file": step.model.path, "params": step.model.params,
            "plan": par.label,
            "parallel": {"strategy": par.strategy, "dp": par.dp, "tp": par.tp, "pp": par.pp, "ep": par.ep,
                         "sp": par.sp, "order": list(par.order), "ranks_per_node": par.ranks_per_node},
            "scale": step.scale, "dtype": step.dtype, "micro_batch": step.batch.micro_batch,
            "seq_len": step.batch.seq_len, "micro_batches": step.batch.micro_batches,
            "bucket_cap": step.bucket_cap, "first_bucket": step.first_bucket, "skew": options.skew,
            "algorithms": dict(cfg.algos), "auto_profile": cfg.profile, "step_repeats": cfg.step_repeats,
            "groups": {kind: [list(g.ranks) for g in grid.groups(kind)]
                       for kind in dict.fromkeys(op.group for op in step.ops)}}


def step_sums(records: list[dict[str, Any]], pp: int) -> dict[str, Any]:
    """Σ calls × time per stage and per kind, from row records (the busiest stage wins)."""
    per_stage = {str(s): 0.0 for s in range(pp)}
    by_kind: dict[str, dict[str, float]] = {str(s): {} for s in range(pp)}
    for rec in records:
        w = rec["workload"]
        for s, calls in w["calls_by_stage"].items():
            t = calls * rec["time_us"]
            per_stage[s] += t
            by_kind[s][w["kind"]] = by_kind[s].get(w["kind"], 0.0) + t
    busiest = max(per_stage, key=per_stage.get)  # type: ignore[arg-type]
    return {"per_stage_us": per_stage, "busiest_stage": int(busiest), "us": per_stage[busiest],
            "by_kind_us": by_kind[busiest]}


def _step_record(step: Step, measured: dict[tuple, dict[str, Any]], step_times: list[float],
                 wrong_total: int) -> dict[str, Any]:
    sums = step_sums(list(measured.values()), step.par.pp)
    record: dict[str, Any] = {"type": "workload_step", "model": step.model.name, "plan": step.par.label,
                              "ranks": step.par.world, "scale": step.scale, "rows": len(measured),
                              "wrong_total": wrong_total, "sum_of_rows": sums}
    if step_times:
        us = [t * 1e6 for t in step_times]
        record["measured_step"] = {"repeats": len(us), "median_us": statistics.median(us),
                                   "mean_us": sum(us) / len(us), "min_us": min(us),
                                   "max_us": max(us), "samples_us": [round(u, 3) for u in us],
                                   "how": "the step's collectives back to back on every rank, each its "
                                          "calls per step, no barriers between them; slowest rank"}
    return record


def _preamble(step: Step, grid: Grid, cfg: RunConfig, out_path: Path | None) -> str:
    par = step.par
    kinds = dict.fromkeys(op.group for op in step.ops)
    lines = [f"# collbench workload run · {step.model.name} · plan {par.label} · {par.world} ranks "
             f"({par.ranks_per_node} per node) · backend {cfg.backend} · {step.dtype}"
             + (f" · bytes scaled by {step.scale:g}" if step.scale != 1 else ""),
             "# groups: " + "; ".join(f"{k}: {len(grid.groups(k))} x {grid.representative(k, _stage(step, k)).describe()}"
                                      for k in kinds),
             "# each row: one distinct collective, measured on every group of its kind at once (slowest "
             "group shown, #wrong summed)"]
    if out_path is not None:
        lines.append(f"# results file: {out_path}")
    lines.append(f"# {'kind':>4} {'group':>9} {'collective':>14} {'bytes':>10} {'algorithm':>18} "
                 f"{'time_us':>10} {'calls':>6} {'#wrong':>6}  what")
    return "\n".join(lines)


def _stage(step: Step, kind: str) -> int:
    for op in step.ops:
        if op.group == kind:
            return op.stages[0] if op.stages else 0
    return 0


def _line(record: dict[str, Any]) -> str:
    w = record["workload"]
    calls = max(w["calls_by_stage"].values(), default=0)
    wrong = "N/A" if record["wrong"] is None else str(record["wrong"])
    return (f"  {w['kind']:>4} {w['group']:>9} {w['collective']:>14} {record['bytes']:>10} "
            f"{record['algorithm']:>18} {record['time_us']:>10.1f} {calls:>6} {wrong:>6}  {w['what']}")


def _footer(summary: dict[str, Any], out_path: Path | None) -> str:
    sums = summary["sum_of_rows"]
    lines = [f"# step: sum of rows × calls = {sums['us'] / 1e3:.3f} ms"
             + (f" (busiest stage {sums['busiest_stage']})" if len(sums["per_stage_us"]) > 1 else "")
             + "; by kind: " + ", ".join(f"{k} {v / 1e3:.3f} ms" for k, v in sums["by_kind_us"].items())]
    if "measured_step" in summary:
        m = summary["measured_step"]
        lines.append(f"# step measured end to end: median {m['median_us'] / 1e3:.3f} ms of {m['repeats']} "
                     f"(mean {m['mean_us'] / 1e3:.3f}, min {m['min_us'] / 1e3:.3f}, max {m['max_us'] / 1e3:.3f} ms)")
    lines.append(f"# #wrong total: {summary['wrong_total']}")
    if out_path is not None:
        lines.append(f"# results written to {out_path}")
    return "\n".join(lines)


__all__ = ["RunConfig", "run_in_job", "alltoall_problem", "step_sums", "run_collective", "placement_for"]
