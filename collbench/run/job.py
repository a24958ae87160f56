"""``collbench run`` inside the MPI job: every rank runs this; only rank 0 prints and writes.

The measuring itself is a :class:`~.session.Session`; this module adds what the command line
shows around it: the preamble, the tables as rows arrive, the results file and the exit status.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any, Callable

from .. import __version__
from ..errors import UsageError
from ..results import table
from ..results.files import ResultsWriter, Row, check_output_path
from ..results.metadata import collect, now_iso
from ..sizes import format_bytes
from .interrupt import Interrupts, start_mpi
from .progress import Progress
from .resources import memory_problem
from .session import Session, agree
from .spec import RunSpec
from .topology import NodeMap, discover, emulated
from .watchdog import EXIT_ERROR, Activity, abort_job

EXIT_WRONG = 1
EXIT_USAGE = 2


def run_in_job(spec: RunSpec, argv: list[str], out_path: Path | None, thread_level: str,
               ranks_per_node: int | None, gpu_map: tuple[int, ...] | None = None) -> int:
    """Entry point of every rank. Returns the process exit status."""
    # Ctrl-C from here on, MPI's start included, is handled as run/interrupt.py describes
    interrupts, MPI, world, ctrl = start_mpi(thread_level)
    activity = Activity(rank=world.Get_rank())
    thread_multiple = MPI.Query_thread() == MPI.THREAD_MULTIPLE
    return guarded(lambda: _run(spec, argv, out_path, thread_level, ranks_per_node, gpu_map, world,
                                ctrl, activity, thread_multiple, interrupts),
                   world, activity, thread_multiple, interrupts)


def guarded(body: Callable[[], int], world: Any, activity: Activity, thread_multiple: bool,
            interrupts: Interrupts) -> int:
    """``body()``'s exit status, and how every rank of a job ends otherwise: a UsageError (raised
    on every rank through agree()) is one line from rank 0, status 2; Ctrl-C keeps the rows, one
    line, 130 (run/interrupt.py); anything else on any rank ends the whole job (MPI_Abort)."""
    try:
        return body()
    except UsageError as exc:
        if world.Get_rank() == 0:
            sys.stderr.write(f"collbench: error: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        interrupts.stop()
    except BaseException as exc:  # noqa: BLE001 - any failure on any rank must end the whole job
        abort_job(world, f"error on rank {world.Get_rank()} during {activity.describe()}: "
                  f"{type(exc).__name__}: {exc}", EXIT_ERROR, from_thread=False,
                  thread_multiple=thread_multiple)
        return EXIT_ERROR  # not reached
    finally:
        interrupts.close()


def _run(spec: RunSpec, argv: list[str], out_path: Path | None, thread_level: str,
         ranks_per_node: int | None, gpu_map: tuple[int, ...] | None, world: Any, ctrl: Any,
         activity: Activity, thread_multiple: bool, interrupts: Interrupts) -> int:
    rank, nranks = ctrl.Get_rank(), ctrl.Get_size()
    real_nodes = discover(ctrl)
    # emulated nodes (the last may be smaller; algorithms that need uniform nodes say so) shape
    # the algorithms; memory is still shared by the ranks of the real node
    nodes: NodeMap = emulated(nranks, ranks_per_node) if ranks_per_node is not None else real_nodes
    local_ranks = real_nodes.ranks_per_node[real_nodes.node_of_rank[rank]]
    if spec.root >= nranks:
        raise UsageError(f"root {spec.root} is not a rank of this {nranks}-rank job")
    agree(ctrl, lambda: _check_memory(spec, local_ranks))

    # the output files, before anything is created: ranks started by mpiexec or srun directly
    # never went through the launcher's checks (cli/run.py); creating each one exclusively
    # (ResultsWriter.open, the Tracer) then closes the gap to another run making it meanwhile
    agree(ctrl, lambda: check_outputs(out_path, spec.trace) if rank == 0 else None)
    agree(ctrl, lambda: check_build_variables(spec))  # every rank: each has its own environment
    session = Session(world, spec, nodes.layout(), gpu_map, thread_multiple, activity, ctrl)
    writer = ResultsWriter(out_path) if (rank == 0 and out_path is not None) else None
    agree(ctrl, lambda: writer.open() if writer else None)
    interrupts.writer = writer
    session.reserve()
    metadata = collect(ctrl, spec, argv, thread_level, nodes, session.backend.metadata())
    progress = interrupts.progress = Progress() if rank == 0 else None
    if rank == 0:
        if writer:
            interrupts.write(metadata)
        print(_preamble(spec, metadata, session.plan.skipped, out_path), flush=True)

    output = Rank0Output(writer, progress, spec.per_iteration, nodes.nnodes, interrupts.lock) if rank == 0 else None
    for group, sizes in session.groups(on_progress=progress.update if progress else None):
        if output:
            output.start_group(group.collective.value, group.algorithm)
        for _size, rows in sizes:
            if output and rows:
                output.add(rows)
    session.close()
    wrong_total = output.finish(session.plan.skipped, session.size_skips, out_path) if output else 0
    failed = ctrl.bcast(wrong_total > 0 if rank == 0 else None, root=0)
    return EXIT_WRONG if failed else 0


def check_outputs(out_path: Path | None, trace: str | None) -> None:
    """The results file (--out) and the trace file (--trace) can be created: new files, distinct,
    in writable directories. One UsageError line naming the option otherwise."""
    if out_path is not None:
        ResultsWriter.check_path(out_path)
    if trace:
        if out_path is not None and Path(trace).resolve() == Path(out_path).resolve():
            raise UsageError(f"--trace {trace} is the results file (--out); give the trace its own file")
        check_output_path(trace, "--trace", "trace file")


def check_build_variables(spec: RunSpec) -> None:
    """The variables that steer what the ranks compile, checked once before anything runs:
    ``$COLLBENCH_NATIVE_CFLAGS`` and ``$COLLBENCH_CSRC`` when the run may build the native
    executor (mpi backend on host buffers, --executor auto or native), ``$COLLBENCH_CSRC``
    when it runs GPU kernels. One UsageError line naming the variable otherwise."""
    if spec.backend == "mpi" and spec.device == "host" and spec.executor != "python":
        from ..execute.c_build import environment_problem

        problem = environment_problem()
        if problem:
            raise UsageError(problem)
    if spec.backend != "mpi" or spec.device != "host":
        from ..gpu.kernel_sources import COMMON_HEADER, sources_problem

        problem = sources_problem((COMMON_HEADER,))
        if problem:
            raise UsageError(problem)


class Rank0Output:
    """Rank 0's side of a sweep: stream each size's rows to the file and the table as they
    complete, close a table with its footer, and write the summary at the end."""

    def __init__(self, writer: ResultsWriter | None, progress: Progress | None, per_iteration: bool,
                 nnodes: int, lock: Any = None) -> None:
        self.writer, self.progress = writer, progress
        # held while a record is written (the Ctrl-C watcher closes the file only between records)
        self.lock = lock if lock is not None else contextlib.nullcontext()
        self.per_iteration, self.nnodes = per_iteration, nnodes
        self.table_rows: list[Row] = []
        self.current: tuple[str, str] | None = None
        self.header_printed = False
        self.wrong_total = self.row_count = 0

    def start_group(self, collective: str, algorithm: str) -> None:
        """One table per collective × algorithm; groups of other dtypes/ops extend it."""
        if (collective, algorithm) != self.current:
            self._close_table()
            self.current, self.header_printed = (collective, algorithm), False

    def add(self, rows: dict[Any, Row]) -> None:
        for row in rows.values():
            if self.writer:
                with self.lock:
                    self.writer.write(row.to_record())
            self.wrong_total += row.wrong or 0
            self.row_count += 1
        self.table_rows.extend(rows.values())
        self._clear_progress()
        first = next(iter(rows.values()))
        if not self.header_printed:
            title = table.table_title(first, self.nnodes)
            if first.selected_by:  # --algo auto: say so; each line ends with the algorithm chosen
                title = title.replace(f"algorithm {first.algorithm}",
                                      f"algorithm auto ({first.selected_by}; choice ends each line)")
            print(table.header(title, self.per_iteration, table.is_compressed(first)), flush=True)
            self.header_printed = True
        text = table.line({p.value: r for p, r in rows.items()}, self.per_iteration)
        print(text + (f"  {_variant(first)}" if first.selected_by else ""), flush=True)

    def finish(self, skipped: tuple[str, ...], size_skips: dict[str, list[str]],
               out_path: Path | None) -> int:
        """Close the last table and the file; returns the total of wrong elements."""
        self._close_table()
        size_lines = [f"{reason}: {', '.join(whats)}" for reason, whats in size_skips.items()]
        for line in size_lines:
            print(f"# N/A above ({line})", flush=True)
        if self.writer:
            with self.lock:
                self.writer.write({"type": "summary", "end_time": now_iso(), "rows": self.row_count,
                                   "wrong_total": self.wrong_total, "skipped": list(skipped) + size_lines,
                                   "status": "complete"})
                self.writer.close()
            print(f"# results written to {out_path}", flush=True)
        if self.wrong_total:
            sys.stderr.write(f"collbench: {self.wrong_total} wrong values in total (see #wrong)\n")
        return self.wrong_total

    def _close_table(self) -> None:
        if self.table_rows:
            self._clear_progress()
            print(table.footer(self.table_rows) + "\n#", flush=True)
        self.table_rows = []

    def _clear_progress(self) -> None:
        if self.progress:
            self.progress.clear()


def _variant(row: Row) -> str:
    """--algo auto's choice for a line: the algorithm and the options of the winning variant."""
    options = " ".join(f"{k}={v}" for k, v in sorted((row.options or {}).items()))
    return f"{row.algorithm} {options}".rstrip()


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
    executor = metadata["backend"].get("executor")
    if executor:  # which path times the rows (and why not native, when it is unavailable)
        lines.append(f"# executor: {executor['summary']}")
    processes = metadata["processes"]
    if processes and len(processes) <= 64:
        lines += [f"#  Rank {r:2d} Pid {p['pid']:7d} on {p['host']:>12}" for r, p in enumerate(processes)]
    for line in skipped:
        lines.append(f"# skipped (backend {spec.backend}): {line}")
    if out_path is not None:
        lines.append(f"# results file: {out_path}")
    lines.append("#")
    return "\n".join(lines)

