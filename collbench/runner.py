"""``collbench run`` inside the MPI job: every rank runs this; only rank 0 prints and writes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

from . import __version__, table
from .backends import make_backend
from .errors import UsageError
from .harness import Harness, make_plan
from .metadata import THREAD_LEVEL_NAMES, collect, now_iso
from .progress import Progress
from .resources import memory_problem
from .results import ResultsWriter, Row
from .sizes import format_bytes
from .spec import RunSpec
from .topology import NodeMap, discover, emulated
from .watchdog import EXIT_ERROR, Activity, Watchdog, abort_job

EXIT_WRONG = 1
EXIT_USAGE = 2


def agree(comm: Any, action: Callable[[], Any]) -> Any:
    """Run ``action`` on every rank; if it raises UsageError anywhere, raise it everywhere.

    Checks that only some ranks can make (rank 0's file, one node's memory) must not leave the
    other ranks waiting in a collective: they all learn the first error and exit together.
    """
    try:
        result, error = action(), None
    except UsageError as exc:
        result, error = None, str(exc)
    errors = [e for e in comm.allgather(error) if e]
    if errors:
        raise UsageError(errors[0])
    return result


def run_in_job(spec: RunSpec, argv: list[str], out_path: Path | None, thread_level: str,
               ranks_per_node: int | None, gpu_map: tuple[int, ...] | None = None) -> int:
    """Entry point of every rank. Returns the process exit status."""
    import mpi4py

    mpi4py.rc.thread_level = thread_level
    from mpi4py import MPI

    world = MPI.COMM_WORLD
    ctrl = world.Dup()
    activity = Activity(rank=world.Get_rank())
    thread_multiple = MPI.Query_thread() == MPI.THREAD_MULTIPLE
    try:
        return _run(spec, argv, out_path, thread_level, ranks_per_node, gpu_map, world, ctrl,
                    activity, thread_multiple)
    except UsageError as exc:  # raised on every rank through agree()
        if world.Get_rank() == 0:
            sys.stderr.write(f"collbench: error: {exc}\n")
        return EXIT_USAGE
    except BaseException as exc:  # noqa: BLE001 - any failure on any rank must end the whole job
        name = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
        abort_job(world, f"error on rank {world.Get_rank()} during {activity.describe()}: {name}",
                  EXIT_ERROR, from_thread=False, thread_multiple=thread_multiple)
        return EXIT_ERROR  # not reached


def _run(spec: RunSpec, argv: list[str], out_path: Path | None, thread_level: str,
         ranks_per_node: int | None, gpu_map: tuple[int, ...] | None, world: Any, ctrl: Any,
         activity: Activity, thread_multiple: bool) -> int:
    rank, nranks = ctrl.Get_rank(), ctrl.Get_size()
    if ranks_per_node is not None:
        # the last emulated node may be smaller; algorithms that need uniform nodes say so
        nodes: NodeMap = emulated(nranks, ranks_per_node)
    else:
        nodes = discover(ctrl)
    local_ranks = nodes.ranks_per_node[nodes.node_of_rank[rank]]
    if spec.root >= nranks:
        raise UsageError(f"root {spec.root} is not a rank of this {nranks}-rank job")
    agree(ctrl, lambda: _check_memory(spec, local_ranks))

    activity.phase = f"{spec.backend} backend initialization"
    backend = make_backend(spec.backend, world, layout=nodes.layout(),
                           algorithm_options=dict(spec.algorithm_options),
                           graph_replays=spec.graph_replays, gpu_map=gpu_map, device=spec.device,
                           stage_host=spec.stage_host)
    plan = agree(ctrl, lambda: make_plan(spec, backend))
    writer = ResultsWriter(out_path) if (rank == 0 and out_path is not None) else None
    agree(ctrl, lambda: writer.open() if writer else None)

    watchdog = Watchdog(ctrl.Dup(), spec.timeout, activity, thread_multiple)
    activity.phase = "buffer allocation"
    agree(ctrl, lambda: backend.reserve(spec.max_bytes, list(spec.dtypes)))
    metadata = collect(ctrl, spec, argv, thread_level, nodes, backend.metadata())
    progress = Progress() if rank == 0 else None
    if rank == 0:
        if writer:
            writer.write(metadata)
        print(_preamble(spec, metadata, plan.skipped, out_path), flush=True)

    harness = Harness(spec, backend, ctrl, watchdog, activity,
                      on_progress=progress.update if progress else None)
    wrong_total, row_count = 0, 0
    table_rows: list[Row] = []
    current_table: tuple[str, str] | None = None

    def finish_table() -> None:
        if rank == 0 and table_rows:
            progress.clear()
            print(table.footer(table_rows) + "\n#", flush=True)
        table_rows.clear()

    for group in plan.groups:
        key = (group.collective.value, group.algorithm)
        if key != current_table:
            finish_table()
            current_table = key
            printed_header = False
        for _size, rows in harness.run_group(group, plan.measurements):
            if rank != 0 or not rows:
                continue
            for row in rows.values():
                writer and writer.write(row.to_record())
                wrong_total += row.wrong or 0
                row_count += 1
            table_rows.extend(rows.values())
            progress.clear()
            per_iteration = spec.per_iteration
            if not printed_header:
                first = next(iter(rows.values()))
                print(table.header(table.table_title(first, nodes.nnodes), per_iteration), flush=True)
                printed_header = True
            print(table.line({p.value: r for p, r in rows.items()}, per_iteration), flush=True)
    finish_table()

    watchdog.close()
    backend.close()
    if rank == 0:
        for reason, whats in harness.size_skips.items():
            print(f"# N/A above ({reason}): {', '.join(whats)}", flush=True)
        if writer:
            size_skips = [f"{reason}: {', '.join(whats)}" for reason, whats in harness.size_skips.items()]
            writer.write({"type": "summary", "end_time": now_iso(), "rows": row_count,
                          "wrong_total": wrong_total, "skipped": list(plan.skipped) + size_skips,
                          "status": "complete"})
            writer.close()
            print(f"# results written to {out_path}", flush=True)
        if wrong_total:
            sys.stderr.write(f"collbench: {wrong_total} wrong values in total (see #wrong)\n")
    failed = ctrl.bcast(wrong_total > 0 if rank == 0 else None, root=0)
    return EXIT_WRONG if failed else 0


def _check_memory(spec: RunSpec, local_ranks: int) -> None:
    problem = memory_problem(spec.max_bytes, spec.check > 0, local_ranks)
    if problem:
        raise UsageError(problem)


def _preamble(spec: RunSpec, metadata: dict[str, Any], skipped: tuple[str, ...],
              out_path: Path | None) -> str:
    mpi = metadata["mpi"]
    nodes = metadata["nnodes"]
    per_node = sorted(set(metadata["ranks_per_node"]))
    sizes = spec.sizes
    iterations = (f"{spec.iterations}" if spec.iterations is not None
                  else f"auto (~{spec.target_seconds * 1e3:g} ms per size, {spec.min_iterations}..{spec.max_iterations})")
    lines = [
        f"# collbench {__version__} · backend {spec.backend} · {metadata['nranks']} ranks on {nodes} "
        f"node{'s' if nodes != 1 else ''} ({'/'.join(map(str, per_node))} per node)",
        f"# {mpi['library_version']} · MPI thread level {mpi['thread_level']} "
        f"(requested {mpi['thread_level_requested']})",
        f"# sizes {format_bytes(sizes[0])} .. {format_bytes(sizes[-1])} ({len(sizes)} sizes) · warm-up "
        f"{max(1, spec.warmup)} · iterations {iterations} · check {spec.check} · "
        f"time = {spec.aggregation.label} over ranks · timeout {spec.timeout:g} s",
    ]
    processes = metadata["processes"]
    if processes and len(processes) <= 64:
        lines += [f"#  Rank {r:2d} Pid {p['pid']:7d} on {p['host']:>12}" for r, p in enumerate(processes)]
    for line in skipped:
        lines.append(f"# skipped (backend {spec.backend}): {line}")
    if out_path is not None:
        lines.append(f"# results file: {out_path}")
    lines.append("#")
    return "\n".join(lines)


__all__ = ["run_in_job", "THREAD_LEVEL_NAMES"]
