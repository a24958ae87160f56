"""Traced iterations inside the MPI job (the harness calls :class:`Tracer` after validation).

Tracing never touches the timed loop: the runner's separate ``trace(n)`` method (C executor:
``cb_plan_trace``; Python executor: a stamped copy of its loop) runs ``n`` extra operations
after the row's measurement and validation, and rank 0 gathers every rank's stamps and writes
the trace file (created exclusively when the :class:`Tracer` is made, never over an existing
file, then rewritten after each measurement, so a crash keeps what was traced).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..algorithms import Copy, vcounts
from ..errors import UsageError
from . import clock
from .document import FINALIZE_STEP, create, write


def runner_of(prepared: Any) -> Any | None:
    """The schedule runner behind a prepared op, if it can trace (``prepared.run`` is its bound
    ``run`` method, handed over as is so the timed loop pays no wrapper); None otherwise."""
    runner = getattr(prepared.run, "__self__", None)
    if runner is None or not callable(getattr(runner, "trace", None)) or not hasattr(runner, "lowered"):
        return None
    return runner


def describe_steps(lowered: Any, itemsize: int) -> list[dict[str, Any]]:
    """What each executed step of a lowered program moves, in the order the runners stamp them
    (avg's division is a last step of its own, index ``FINALIZE_STEP``)."""
    out = []
    for step in lowered.steps:
        reduce_bytes = copy_bytes = 0
        for item in step.local:
            if isinstance(item, Copy):
                copy_bytes += item.dst.length * itemsize
            else:
                reduce_bytes += item.dst.length * itemsize
        out.append({"index": step.index,
                    "sends": [[peer, s.length * itemsize] for peer, s in step.sends],
                    "recvs": [[peer, s.length * itemsize] for peer, s in step.recvs],
                    "reduce_bytes": reduce_bytes, "copy_bytes": copy_bytes})
    if lowered.finalize is not None:
        out.append({"index": FINALIZE_STEP, "sends": [], "recvs": [], "reduce_bytes": 0,
                    "copy_bytes": 0, "finalize_bytes": lowered.finalize.length * itemsize})
    return out


class Tracer:
    """Collects traced iterations of every measurement and keeps the trace file current.

    Collective: every rank makes it. Rank 0 creates the file at once, exclusively.

    Args:
        path: the trace file (written by rank 0; must not exist).
        iterations: traced operations per measurement.
        ctrl: the control communicator (never the measured one).
        node_of_rank: node index of every rank (for the model's layout), or None.
    """

    def __init__(self, path: str | Path, iterations: int, ctrl: Any,
                 node_of_rank: list[int] | None = None) -> None:
        self.path = Path(path)
        self.iterations = iterations
        self.ctrl = ctrl
        self.rank = ctrl.Get_rank()
        self.node_of_rank = node_of_rank
        self.offsets: list[clock.Offset] | None = None
        self._estimated = False
        self.measurements: list[dict[str, Any]] = []
        self.skipped: list[str] = []
        self._pending: dict[str, Any] | None = None
        # rank 0 creates the file now, exclusively (never over an existing one); every rank
        # learns the outcome, so a refusal is one line from rank 0 and the same error everywhere
        error = None
        if self.rank == 0:
            try:
                create(self.path, self._record())
            except UsageError as exc:
                error = str(exc)
        error = ctrl.bcast(error, root=0)
        if error:
            raise UsageError(error)

    def capture(self, request: Any, prepared: Any, nbytes: int, backend: str) -> None:
        """Trace ``prepared`` (collective over ``ctrl``: every rank calls it for every row)."""
        runner = runner_of(prepared)
        what = f"{request.collective.value} {request.algorithm} {nbytes} B {request.placement.value}"
        if not self.ctrl.allreduce(int(runner is not None), op=_min()):
            # the library's own collective, NCCL, our CUDA kernels: no steps to stamp
            if self.rank == 0:
                self.skipped.append(f"{what}: executor {prepared.executor} has no traced steps")
            self._pending = None
            return
        if not self._estimated:  # once per job: offsets drift little over a sweep
            self.offsets = clock.estimate(self.ctrl)
            self._estimated = True
        itemsize = request.dtype.itemsize
        self.ctrl.Barrier()  # everyone starts together, as in the timed loop
        stamps: np.ndarray = runner.trace(self.iterations)
        mine = {"steps": describe_steps(runner.lowered, itemsize), "stamps_ns": stamps.tolist()}
        everyone = self.ctrl.gather(mine, root=0)
        if self.rank != 0:
            return
        self._pending = {
            "collective": request.collective.value, "algorithm": request.algorithm,
            "backend": backend, "executor": prepared.executor, "dtype": request.dtype.name,
            "op": request.op, "placement": request.placement.value, "root": request.root,
            "nranks": self.ctrl.Get_size(), "bytes": nbytes, "count": request.count,
            "itemsize": itemsize, "iterations": self.iterations, "row_time_us": None,
            "skew": vcounts.to_record(request.skew),  # alltoallv's count matrix
            "ranks": [dict(rank=r, **entry) for r, entry in enumerate(everyone)]}

    def finish(self, row: Any | None, options: dict[str, Any] | None = None) -> None:
        """Rank 0: attach the measured row's time and options, then rewrite the file."""
        if self.rank != 0:
            return
        if self._pending is not None:
            self._pending["row_time_us"] = row.time_us if row is not None else None
            self._pending["options"] = options or {}
            self.measurements.append(self._pending)
            self._pending = None
        self.write()

    def write(self) -> None:
        write(self.path, self._record())

    def _record(self) -> dict[str, Any]:
        offsets = self.offsets or []
        return {"nranks": self.ctrl.Get_size(),
                "offsets_ns": [o.offset_ns for o in offsets],
                "offset_bound_ns": [o.bound_ns for o in offsets],
                "node_of_rank": self.node_of_rank, "measurements": self.measurements,
                "skipped": self.skipped}


def _min() -> Any:
    from mpi4py import MPI

    return MPI.MIN
