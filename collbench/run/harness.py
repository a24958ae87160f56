"""The measurement loop, written once for every backend.

For each collective × algorithm × dtype × op × size × placement: meet (checked rendezvous),
prepare buffers, warm up, let rank 0 choose the iteration count and broadcast it (ranks must
never disagree, or they deadlock), time the loop, aggregate across ranks, then validate outside
the timed region and sum the wrong elements over ranks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator

import numpy as np

from .. import validation
from ..algorithms import Collective, vcounts
from ..backends.base import Backend, OpRequest, Placement, PreparedOp
from ..compress import names as compressed
from ..dtypes import DType
from ..errors import UnsupportedError, UsageError
from ..metrics import bandwidths, bytes_for_count, count_for_size
from ..results.files import Row
from ..trace import nvtx
from . import faults
from .spec import Aggregation, RunSpec
from .watchdog import Activity, Watchdog

_POISON_BYTE = 0xA5  # written to outputs before a check, so unwritten elements count as wrong


@dataclass(frozen=True)
class Group:
    """Rows that share one table: a collective × algorithm × dtype × op on one backend."""

    collective: Collective
    algorithm: str
    dtype: DType
    op: str | None
    placements: tuple[Placement, ...]   # the ones the backend can run; others print N/A


@dataclass(frozen=True)
class Plan:
    groups: tuple[Group, ...]
    skipped: tuple[str, ...]             # human lines: what was skipped and why

    @property
    def measurements(self) -> int:
        return sum(len(g.placements) for g in self.groups)


def make_plan(spec: RunSpec, backend: Backend) -> Plan:
    """Decide what runs; unsupported combinations are errors when named, skips under ``all``.

    Raises:
        UnsupportedError: an explicitly named dtype/op cannot run, or nothing can run at all.
    """
    groups: list[Group] = []
    skipped: dict[str, list[str]] = {}
    every_algorithm = "all" in spec.algorithms
    # all-compressed is `all` for the compressed family: what does not apply is skipped
    family = compressed.ALL_COMPRESSED in spec.algorithms
    if family or any(compressed.is_compressed(a) for a in spec.algorithms):
        from ..compress.options import check_sweep  # bad options: one error before anything runs

        check_sweep(compressed.expand(spec.algorithms), dict(spec.algorithm_options), spec.sizes,
                    spec.dtypes)
    if "auto" in spec.algorithms:  # the profile or --auto-from file must be usable everywhere
        from ..analysis.select import check_auto

        check_auto(spec.auto_profile, spec.auto_from)
    if spec.skew is not None and spec.skew.reason(backend_size(backend)):
        raise UsageError(f"-O counts: {spec.skew.reason(backend_size(backend))}")
    for collective in spec.collectives:
        ops: tuple[str | None, ...] = spec.ops if collective.reduces else (None,)
        algorithms = backend.algorithm_names(collective) if every_algorithm else list(spec.algorithms)
        algorithms = compressed.expand(algorithms + ([compressed.ALL_COMPRESSED] if family else []))
        for algorithm in algorithms:
            if algorithm == "auto":  # --algo auto: chosen per size in run_group (analysis/select.py)
                groups += [Group(collective, algorithm, dtype, op, spec.placements)
                           for dtype in spec.dtypes for op in ops]
                continue
            if not backend.implements(algorithm, collective):
                skipped.setdefault("no schedule for this collective", []).append(
                    f"{algorithm} ({collective.value})")
                continue
            for dtype in spec.dtypes:
                for op in ops:
                    runnable: list[Placement] = []
                    reasons: list[str] = []
                    for placement in spec.placements:
                        # count 0: what the backend supports at all; size-dependent limits are
                        # checked per size in run_group
                        request = OpRequest(collective, algorithm, dtype, op, 0, placement, spec.root,
                                            skew=skew_of(spec, collective))
                        reason = backend.reason(request)
                        if reason:
                            reasons.append(reason)
                        else:
                            runnable.append(placement)
                    if runnable:
                        groups.append(Group(collective, algorithm, dtype, op, tuple(runnable)))
                        continue
                    what = f"{collective.value} {algorithm} {dtype.name}{' ' + op if op else ''}"
                    named = (not every_algorithm and (spec.strict_dtypes or not collective.reduces)
                             and (spec.strict_ops or op is None)
                             and not (family and compressed.is_compressed(algorithm)))
                    if named:
                        raise UnsupportedError(f"backend {backend.name} cannot run {what}: {reasons[0]}")
                    skipped.setdefault(reasons[0], []).append(what)
    if not groups:
        raise UnsupportedError("nothing to run: every requested combination is unsupported by backend "
                               f"{backend.name} ({'; '.join(skipped) or 'no combinations'})")
    lines = tuple(f"{reason}: {', '.join(whats)}" for reason, whats in skipped.items())
    return Plan(tuple(groups), lines)


class Harness:
    """Runs a :class:`Plan` on one backend; rank 0 receives finished rows through ``on_row``.

    Args:
        spec: what to measure.
        backend: the library under test.
        ctrl: communicator for collbench's own control traffic (never the measured one).
        watchdog: deadline thread and checked rendezvous.
        activity: shared description of the current work (error messages).
        on_progress: called on rank 0 before each measurement with (done, total, activity).
    """

    def __init__(self, spec: RunSpec, backend: Backend, ctrl: Any, watchdog: Watchdog,
                 activity: Activity, on_progress: Callable[[int, int, Activity], None] | None = None) -> None:
        from mpi4py import MPI

        self._mpi = MPI
        self.spec = spec
        self.backend = backend
        self.ctrl = ctrl
        self.rank = ctrl.Get_rank()
        self.nranks = ctrl.Get_size()
        self.watchdog = watchdog
        self.activity = activity
        self.on_progress = on_progress
        self._done = 0
        self._selector: Any = None  # --algo auto (analysis/select.py), built on rank 0 when needed
        self._expected_cache: dict[tuple, np.ndarray | None] = {}
        self._fault = faults.from_environment()
        self.size_skips: dict[str, list[str]] = {}  # reason -> what it skipped, for the summary
        nvtx.configure(spec.nvtx)  # --nvtx: ranges on or off for the whole sweep (trace/nvtx.py)
        # --trace (collbench/trace/capture.py): its file is created now, before any row is
        # measured, and never over an existing file (a UsageError on every rank)
        self._tracer: Any = self._make_tracer() if spec.trace else None

    # -- sweep --------------------------------------------------------------------------------

    def run_group(self, group: Group, total: int) -> Iterator[tuple[int, dict[Placement, Row]]]:
        """Measure one group over all sizes; yields (size, rows by placement) per size."""
        spec = self.spec
        for size in spec.sizes:
            count = count_for_size(group.collective, size, group.dtype.itemsize, self.nranks)
            self._expected_cache.clear()
            rows: dict[Placement, Row] = {}
            options: tuple[tuple[str, Any], ...] = ()
            algorithm, selected_by = group.algorithm, None
            if algorithm == "auto":
                algorithm, chosen, selected_by = self._auto_choice(group, size, count)
                options = tuple(sorted(chosen.items()))  # the winning variant, this size only
            for placement in group.placements:
                request = OpRequest(group.collective, algorithm, group.dtype, group.op,
                                    count, placement, spec.root, options,
                                    skew=skew_of(spec, group.collective))
                if self.on_progress is not None and self.rank == 0:
                    self.on_progress(self._done, total, self.activity)
                reason = self.backend.reason(request)
                if reason:  # a limit of this size only (e.g. an uneven split): N/A in the table
                    self.size_skips.setdefault(reason, []).append(
                        f"{group.collective.value} {group.algorithm} {size} B {placement.label}")
                    self._done += 1
                    continue
                row = self.measure(request)
                self._done += 1
                if row is not None:
                    rows[placement] = row if selected_by is None else replace(row, selected_by=selected_by)
            yield size, rows

    def _auto_choice(self, group: Group, size: int, count: int) -> tuple[str, dict[str, Any], str]:
        """--algo auto: the algorithm and its options for this size, the fastest variant by the
        model (rank 0 decides, every rank gets it)."""
        from ..analysis.select import Selector, agreed_variant

        self._auto_at = (group, count)  # what `runnable` checks the backend against
        if self._selector is None and self.rank == 0:
            def runnable(coll: Collective, name: str, dtype: str, op: str | None) -> bool:
                at, n = self._auto_at
                return all(self.backend.reason(OpRequest(
                    coll, name, at.dtype, op, n, p, self.spec.root)) is None for p in at.placements)

            self._selector = Selector(self.nranks, getattr(self.backend, "layout", None), runnable,
                                      self.spec.auto_profile, self.spec.auto_from,
                                      dict(self.spec.algorithm_options), skew=self.spec.skew)
        return agreed_variant(self.ctrl, self._selector, group.collective, size, group.dtype.name,
                              group.op, group.placements == (Placement.IN_PLACE,))

    # -- one measurement ------------------------------------------------------------------------

    def measure(self, request: OpRequest) -> Row | None:
        """Time and validate one request; returns the row on rank 0 (None elsewhere)."""
        if not nvtx.enabled():
            return self._measure(request)
        with nvtx.span(nvtx.measurement_name(request, self.nranks)):  # --nvtx: one range per row
            return self._measure(request)

    def _measure(self, request: OpRequest) -> Row | None:
        act = self.activity
        nbytes = bytes_for_count(request.collective, request.count, request.dtype.itemsize, self.nranks)
        act.collective, act.algorithm = request.collective.value, request.algorithm
        act.size, act.dtype, act.op = nbytes, request.dtype.name, request.op
        act.placement, act.phase = request.placement.label, "rendezvous"
        fault = self._fault if self._fault and self._fault.matches(self.rank, nbytes) else None
        if fault and fault.kind in ("absent", "raise"):
            fault.trigger()
        self.watchdog.rendezvous()

        act.phase = "buffer preparation"
        prepared = self.backend.prepare(request)
        if fault:
            prepared = fault.wrap(prepared)
        lossy = None  # compressed algorithms bring their own inputs, validation and columns
        if compressed.is_compressed(request.algorithm):
            from ..compress.check import CompressedCheck

            lossy = CompressedCheck(request, prepared, self.backend, self.ctrl, self.spec.check,
                                    self.watchdog, self.spec.timeout)
        try:
            if lossy:
                lossy.fill(seed=0)
            else:
                self._fill_input(request, prepared, seed=0)
            act.phase = "warm-up"
            with nvtx.span(act.phase):  # --nvtx: the phases inside the row's range (no-op when off)
                per_op_estimate = self._warm_up(prepared)
            iterations = self._decide_iterations(per_op_estimate)
            act.phase = f"timed loop ({iterations} iterations)"
            with nvtx.span(act.phase):
                times = self._time(prepared, iterations, per_op_estimate)
            act.phase = "validation"
            with nvtx.span(act.phase):
                wrong = lossy.validate() if lossy else self._validate(request, prepared)
            if self.spec.trace:  # extra traced operations, after the row's timing and validation
                act.phase = "trace"
                self._trace(request, prepared, nbytes, per_op_estimate)
        finally:
            if prepared.teardown is not None:
                prepared.teardown()
        row = self._row(request, prepared, nbytes, iterations, times, wrong)
        if self.spec.trace and self._tracer is not None:
            self._tracer.finish(row, self.backend.options_for(request))
        return lossy.extend(row) if lossy else row

    def _make_tracer(self) -> Any:
        from ..trace.capture import Tracer

        layout = getattr(self.backend, "layout", None)
        nodes = None
        if layout is not None:
            nodes = [0] * self.nranks
            for k, members in enumerate(layout.nodes):
                for r in members:
                    nodes[r] = k
        assert self.spec.trace is not None
        return Tracer(self.spec.trace, self.spec.trace_iterations, self.ctrl, nodes)

    def _trace(self, request: OpRequest, prepared: PreparedOp, nbytes: int, per_op_estimate: float) -> None:
        self.watchdog.arm(self.spec.timeout + 4 * self.spec.trace_iterations * per_op_estimate)
        self._tracer.capture(request, prepared, nbytes, self.backend.name)
        self.watchdog.disarm()

    def _fill_input(self, request: OpRequest, prepared: PreparedOp, seed: int) -> np.ndarray | None:
        """Write this rank's input for ``seed``; returns what was written (None: nothing)."""
        length = int(np.prod(np.shape(prepared.input))) if prepared.input is not None else 0
        if request.collective is Collective.BROADCAST and self.rank != request.root:
            return None
        data = validation.make_input(request.collective, request.dtype, request.op, self.nranks,
                                     self.rank, length, seed)
        self.backend.write(prepared.input, data)
        return data

    def _warm_up(self, prepared: PreparedOp) -> float:
        """Run the warm-up under the per-operation deadline; returns seconds per op (max over
        ranks is not needed: the slowest rank's waiting shows up in everyone's time)."""
        timeout = self.spec.timeout
        warmup = max(1, self.spec.warmup)  # at least one: it also estimates the op time
        elapsed = 0.0
        for _ in range(warmup):
            self.watchdog.arm(timeout)
            elapsed += self._batch(prepared, 1)
        self.watchdog.disarm()
        return elapsed / warmup

    def _decide_iterations(self, per_op_estimate: float) -> int:
        spec = self.spec
        if spec.iterations is not None:
            return spec.iterations
        iterations = None
        if self.rank == 0:
            wanted = spec.target_seconds / max(per_op_estimate, 1e-9)
            iterations = int(min(spec.max_iterations, max(spec.min_iterations, math.ceil(wanted))))
        return self.ctrl.bcast(iterations, root=0)

    def _batch(self, prepared: PreparedOp, iterations: int) -> float:
        """Seconds per op: the prepared op's own (C) loop when it has one, else the timer's."""
        if prepared.batch is not None:
            return prepared.batch(iterations)
        return self.backend.timer.batch(prepared.run, iterations)

    def _per_iteration(self, prepared: PreparedOp, iterations: int) -> np.ndarray:
        if prepared.per_iteration is not None:
            return prepared.per_iteration(iterations)
        return self.backend.timer.per_iteration(prepared.run, iterations)

    def _time(self, prepared: PreparedOp, iterations: int, per_op_estimate: float) -> dict[str, Any]:
        spec = self.spec
        self.ctrl.Barrier()
        # A hang shows up as no completion long after the expected loop time: allow the -T limit
        # on top of four times the loop's estimated length.
        self.watchdog.arm(spec.timeout + 4 * iterations * per_op_estimate)
        if spec.per_iteration:
            samples = self._per_iteration(prepared, iterations)
            mine = float(samples.mean())
        else:
            samples = None
            mine = self._batch(prepared, iterations)
        self.watchdog.disarm()
        return {"mine": mine, "samples": samples}

    def _validate(self, request: OpRequest, prepared: PreparedOp) -> int | None:
        if self.spec.check <= 0:
            return None
        wrong = 0
        for check in range(self.spec.check):
            seed = check + 1
            poison = np.full(np.shape(prepared.output), 0, dtype=request.dtype.numpy)
            poison.view(np.uint8)[...] = _POISON_BYTE
            self.backend.write(prepared.output, poison)
            written = self._fill_input(request, prepared, seed)
            self.watchdog.arm(self.spec.timeout)
            self.backend.timer.once(prepared.run)
            self.watchdog.disarm()
            expected = self._expected(request, seed)
            if expected is not None:
                wrong += validation.count_wrong(self.backend.read(prepared.output), expected,
                                                request.dtype, request.op)
            if written is not None and request.placement is Placement.OUT_OF_PLACE:
                # an out-of-place collective must leave its input alone: one that scribbles on it
                # times later iterations on compounding data. Changed inputs count as wrong.
                wrong += validation.count_wrong(self.backend.read(prepared.input), written,
                                                request.dtype, None)
            if self.ctrl.allreduce(wrong, op=self._mpi.SUM) > 0:
                break  # like nccl-tests: stop checking at the first failing round
        return self.ctrl.reduce(wrong, op=self._mpi.SUM, root=0)

    def _expected(self, request: OpRequest, seed: int) -> np.ndarray | None:
        key = (request.collective, request.dtype.name, request.op, request.count, seed, request.root,
               request.skew)
        if key not in self._expected_cache:
            self._expected_cache[key] = validation.expected_output(
                request.collective, request.dtype, request.op, self.nranks, self.rank,
                request.count, seed, request.root, skew=request.skew)
        return self._expected_cache[key]

    # -- aggregation ----------------------------------------------------------------------------

    def _row(self, request: OpRequest, prepared: PreparedOp, nbytes: int, iterations: int,
             times: dict[str, Any], wrong: int | None) -> Row | None:
        spec, MPI = self.spec, self._mpi
        per_rank = self.ctrl.gather(times["mine"], root=0)
        samples = times["samples"]
        aggregated_samples = None
        if samples is not None:
            how = spec.aggregation
            if how is Aggregation.RANK0:
                aggregated_samples = samples if self.rank == 0 else None
            else:
                out = np.empty_like(samples) if self.rank == 0 else None
                mpi_op = {Aggregation.MEAN: MPI.SUM, Aggregation.MIN: MPI.MIN, Aggregation.MAX: MPI.MAX}[how]
                self.ctrl.Reduce(samples, out, op=mpi_op, root=0)
                aggregated_samples = out / self.nranks if how is Aggregation.MEAN and out is not None else out
        if self.rank != 0:
            return None
        if aggregated_samples is not None:
            seconds = float(aggregated_samples.mean())
            stats = sample_stats(aggregated_samples)
            samples_us = [round(float(s) * 1e6, 4) for s in aggregated_samples]
        else:
            seconds = aggregate(per_rank, spec.aggregation)
            stats, samples_us = None, None
        algbw, busbw = bandwidths(request.collective, nbytes, seconds, self.nranks)
        return Row(
            collective=request.collective.value, algorithm=request.algorithm,
            backend=self.backend.name, executor=prepared.executor, dtype=request.dtype.name,
            op=request.op, root=request.root if request.collective.rooted else None,
            placement=request.placement.value, nranks=self.nranks, bytes=nbytes,
            count=request.count, iterations=iterations, warmup=max(1, spec.warmup),
            timing="per_iteration" if spec.per_iteration else "batch",
            aggregation=spec.aggregation.label, time_us=seconds * 1e6,
            time_us_min_rank=min(per_rank) * 1e6, time_us_max_rank=max(per_rank) * 1e6,
            algbw_gbps=algbw, busbw_gbps=busbw, wrong=wrong, stats_us=stats, samples_us=samples_us,
            options=(self.backend.options_for(request) or None) if request.algorithm != "native" else None,
            skew=(request.skew or vcounts.DEFAULT).label if request.collective is Collective.ALLTOALLV else None)


def skew_of(spec: RunSpec, collective: Collective) -> vcounts.Skew | None:
    """The count matrix of ``collective`` in this sweep (alltoallv only; None: the default)."""
    return spec.skew if collective is Collective.ALLTOALLV else None


def backend_size(backend: Backend) -> int:
    """The backend's rank count (every backend keeps its communicator's size as ``size``)."""
    return int(getattr(backend, "size", 0))


def aggregate(per_rank: list[float], how: Aggregation) -> float:
    """Combine per-rank seconds per op (nccl-tests ``-a``)."""
    if how is Aggregation.RANK0:
        return per_rank[0]
    if how is Aggregation.MEAN:
        return sum(per_rank) / len(per_rank)
    if how is Aggregation.MIN:
        return min(per_rank)
    return max(per_rank)


def sample_stats(samples: np.ndarray) -> dict[str, float]:
    """min/p50/p99/max/mean/stdev in µs; percentiles by nearest rank (as nccl-tests -I)."""
    us = samples * 1e6
    return {
        "min": float(us.min()),
        "p50": float(np.percentile(us, 50, method="inverted_cdf")),
        "p99": float(np.percentile(us, 99, method="inverted_cdf")),
        "max": float(us.max()),
        "mean": float(us.mean()),
        "stdev": float(us.std()),
    }
