"""The interpreter's GPU check: every registered allreduce/allgather/reduce_scatter schedule at 2, 3, 4
and 8 ranks on ONE GPU, the ranks as concurrent streams of one process.

Each rank has its own in/out/scratch/signal buffers on the device and a descriptor holding every
rank's addresses (in one process they are plain device pointers: no IPC handles), and launches the
interpreter on its own non-blocking stream, from its own host thread (on a GPU the launches return
at once; on the CPU fake of CuPy a launch runs the rank's program and blocks, so the ranks need
threads to make progress together). What it checks, each against the numpy simulator, bit for bit:

* **exact results**: odd counts, in and out of place, float32/bfloat16/int32, sum (avg and max on
  a subset); the output poisoned before; an out-of-place input unchanged;
* **chains**: several launches back to back per stream with no host synchronisation (a fast rank
  starts the next operation while others finish this one), in place where the result feeds the
  next operation;
* **graph replays**: a chain captured per stream, replayed several times (epochs on the device);
* **time per step**: interpreter time per operation divided by the schedule's steps, next to the
  hand-written one-shot/two-shot IPC kernels run the same way (allreduce), at a few sizes.

Every rank's grid is capped so all ranks' blocks are resident together (SMs / ranks). A kernel
error (a timeout) is reported with the decoded record, and the signal buffers are reset.
"""

from __future__ import annotations

import gc
import threading
import time
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ..algorithms import Collective, Problem
from ..algorithms.registry import algorithms_for, get_algorithm
from ..algorithms.simulate import simulate
from .interp import InterpOp, decode, error_words
from .ipc import pack_desc, plan_grid
from .kernel_sources import dtype_info, header_constants

Report = Callable[..., None]  # report(section, name, status, detail="", **metrics)
COLLECTIVES = (Collective.ALLREDUCE, Collective.ALLGATHER, Collective.REDUCE_SCATTER)
POISON = 0xA5


class _Mem:
    def __init__(self, cp: Any, nbytes: int) -> None:
        self.mem = cp.cuda.memory.Memory(nbytes)
        self.ptr, self.size = self.mem.ptr, nbytes


class LocalComm:
    """One rank of a :class:`LocalGroup`, with the parts of IpcCommunicator's interface that
    :class:`~collbench.gpu.interp.InterpOp` and the error helpers use."""

    def __init__(self, group: "LocalGroup", rank: int) -> None:
        self._cp, self.group, self.rank, self.nranks = group.cp, group, rank, group.nranks
        self.max_bytes, self.threads, self.timeout_ns = group.max_bytes, group.threads, group.timeout_ns
        self._in, self._out, self._scratch, self._sig = group.buffers[rank]
        self._desc = group.descs[rank]

    def _view(self, mem: _Mem, count: int, dtype: str) -> Any:
        info = dtype_info(dtype)
        ptr = self._cp.cuda.MemoryPointer(mem.mem, 0)
        return self._cp.ndarray((count,), dtype=info.storage, memptr=ptr)

    def input_view(self, count: int, dtype: str) -> Any:
        return self._view(self._in, count, dtype)

    def output_view(self, count: int, dtype: str) -> Any:
        return self._view(self._out, count, dtype)

    def grid_cap(self, kernel: Any, key: str) -> int:
        return self.group.grid_cap


class LocalGroup:
    """``nranks`` ranks on the current GPU in this process: buffers, descriptors, streams."""

    def __init__(self, cp: Any, nranks: int, max_bytes: int, *, timeout_s: float = 5.0, max_blocks: int = 36) -> None:
        from .kernels import sm_count

        h = header_constants()
        self.cp, self.nranks, self.max_bytes = cp, nranks, max_bytes
        self.threads, self.timeout_ns = h["IPC_THREADS"], int(timeout_s * 1e9)
        # every block of every rank resident at once: one block per SM at most, shared by the ranks
        self.grid_cap = max(1, min(max_blocks, sm_count() // nranks))
        rt = cp.cuda.runtime
        self.buffers = [[_Mem(cp, max_bytes), _Mem(cp, max_bytes), _Mem(cp, max_bytes), _Mem(cp, h["SIG_BYTES"])]
                        for _ in range(nranks)]
        for bufs in self.buffers:
            rt.memset(bufs[3].ptr, 0, bufs[3].size)
        ptrs = [[bufs[i].ptr for bufs in self.buffers] for i in range(4)]
        self.descs = []
        for r in range(nranks):
            desc = pack_desc(ptrs[0], ptrs[1], ptrs[2], ptrs[3], r, nranks)
            dev = _Mem(cp, h["DESC_BYTES"] + 8)
            rt.memcpy(dev.ptr, desc.ctypes.data, desc.nbytes, rt.memcpyHostToDevice)
            self.descs.append(dev)
        rt.deviceSynchronize()
        self.streams = [cp.cuda.Stream(non_blocking=True) for _ in range(nranks)]
        self.comms = [LocalComm(self, r) for r in range(nranks)]

    def poison(self) -> None:
        rt = self.cp.cuda.runtime
        for bufs in self.buffers:
            for mem in bufs[:3]:
                rt.memset(mem.ptr, POISON, mem.size)
        rt.deviceSynchronize()

    def reset_signals(self) -> None:
        """After an error (every kernel has returned): zero every signal buffer, epochs included."""
        rt = self.cp.cuda.runtime
        rt.deviceSynchronize()
        for bufs in self.buffers:
            rt.memset(bufs[3].ptr, 0, bufs[3].size)
        rt.deviceSynchronize()

    def errors(self) -> list[str]:
        out = []
        for comm, stream in zip(self.comms, self.streams):
            words = error_words(comm, stream)
            if words[0]:
                rec = decode(words)
                out.append(rec.message() if rec is not None else f"rank {comm.rank}: kernel error {list(words[:10])}")
        return out

    def synchronize(self) -> None:
        for s in self.streams:
            s.synchronize()


def _repeat(fn: Callable[[], None], n: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(n):
            fn()
    return run


def _bind(f: Callable[..., Any], *args: Any) -> Callable[[], None]:
    def run() -> None:
        f(*args)
    return run


def together(fns: Sequence[Callable[[], None]]) -> list[tuple[float, float]]:
    """Call each function in its own thread (one per rank) and wait for all; re-raise the first
    error. Returns each call's (start, duration) in seconds, the start counted from the first
    thread's start: a rank whose host launch came late or blocked shows here."""
    errors: list[BaseException] = []
    spans: list[tuple[float, float]] = [(0.0, 0.0)] * len(fns)
    origin = time.perf_counter()

    def wrap(i: int, fn: Callable[[], None]) -> None:
        t0 = time.perf_counter()
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)
        spans[i] = (t0 - origin, time.perf_counter() - t0)

    # The ranks' kernels spin on each other, so every launch must reach the GPU while the others
    # wait. A garbage collection in this window can run a finalizer that synchronizes the device
    # while holding the GIL: the unlaunched ranks then start only when the launched ones time out
    # (seen on an H200: threads 1-3 started 5.0 s late, the same case failing in 4 of 7 sweeps,
    # with CUDA_MODULE_LOADING=EAGER as well). So no collection until every rank has launched.
    collecting = gc.isenabled()
    gc.disable()
    try:
        threads = [threading.Thread(target=wrap, args=(i, fn)) for i, fn in enumerate(fns)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        if collecting:
            gc.enable()
    if errors:
        raise errors[0]
    return spans


def _describe_spans(spans: Sequence[tuple[float, float]]) -> str:
    return "host launches (start+duration ms): " + ", ".join(
        f"rank {r} +{start * 1e3:.1f}/{took * 1e3:.1f}" for r, (start, took) in enumerate(spans))


def _inputs(problem: Problem, dtype: str, seed: int) -> list[np.ndarray]:
    import ml_dtypes

    rng = np.random.default_rng(seed)
    work = np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else dtype_info(dtype).storage
    return [rng.integers(0, 4, problem.input_len(r)).astype(work) for r in range(problem.nranks)]


def _storage(x: np.ndarray, dtype: str) -> np.ndarray:
    return np.ascontiguousarray(x).view(dtype_info(dtype).storage)


def run_case(group: LocalGroup, name: str, problem: Problem, dtype: str, op: Optional[str], in_place: bool,
             launches: int = 1, graph_replays: int = 0, seed: int = 0) -> Optional[str]:
    """One schedule, validated; None when right, else what went wrong. ``launches`` operations
    back to back per stream (captured into a graph and replayed ``graph_replays`` times when > 0)."""
    cp = group.cp
    schedule = get_algorithm(name).schedule(problem)
    sim_op = op or "sum"
    inputs = _inputs(problem, dtype, seed)
    total = launches * max(1, graph_replays)
    want = simulate(schedule, inputs, sim_op, in_place=in_place)
    if in_place and problem.collective is Collective.ALLREDUCE:
        for _ in range(total - 1):
            want = simulate(schedule, want, sim_op, in_place=True)
    elif in_place and total > 1 and problem.collective is Collective.REDUCE_SCATTER:
        return None  # the input holds the previous result: not a chain of the same operation
    group.poison()
    ops = [InterpOp(comm, schedule, in_place, dtype, op) for comm in group.comms]
    for r, o in enumerate(ops):
        o.input.set(_storage(inputs[r], dtype))
    cp.cuda.runtime.deviceSynchronize()
    if graph_replays:
        graphs = []
        for o, s in zip(ops, group.streams):
            s.begin_capture()
            for _ in range(launches):
                o.launch(s)
            graphs.append(s.end_capture())
        for g, s in zip(graphs, group.streams):
            g.upload(s)
        spans = together([_repeat(_bind(g.launch, s), graph_replays) for g, s in zip(graphs, group.streams)])
    else:
        spans = together([_repeat(_bind(o.launch, s), launches) for o, s in zip(ops, group.streams)])
    group.synchronize()
    errors = group.errors()
    if errors:  # every rank's record and the host launches: a lost signal or a late launch
        group.reset_signals()
        return " | ".join([*errors, _describe_spans(spans)])
    for r, o in enumerate(ops):
        got = o.output.get()
        expected = _storage(want[r], dtype)
        if got.tobytes() != expected.tobytes():
            bad = int(np.count_nonzero(got.view(np.uint8) != expected.view(np.uint8)))
            return f"rank {r}: {bad} wrong bytes of {expected.nbytes} (first got {got[:4]}, want {expected[:4]})"
        if not in_place and o.input.get().tobytes() != _storage(inputs[r], dtype).tobytes():
            return f"rank {r}: the out-of-place input was modified"
    for o in ops:
        o.free()
    return None


def time_interp(group: LocalGroup, name: str, problem: Problem, ops_per_graph: int = 20, replays: int = 5) -> tuple[float, int]:
    """Seconds per operation (float32 sum, out of place) and the schedule's step count."""
    schedule = get_algorithm(name).schedule(problem)
    ops = [InterpOp(comm, schedule, False, "float32", "sum") for comm in group.comms]
    return _time(group, [_bind(o.launch, s) for o, s in zip(ops, group.streams)],
                 ops_per_graph, replays), max(o.program.steps for o in ops)


def time_baseline(group: LocalGroup, kind: str, count: int, ops_per_graph: int = 20, replays: int = 5) -> float:
    """Seconds per operation of the hand-written ``one_shot``/``two_shot`` kernel, run the same way."""
    from .kernels import get_kernel

    kernel = get_kernel("ipc_collectives.cu", f"ipc_{kind}_sum_float32", "float32")
    grid = plan_grid(kind, count, 4, group.nranks, group.grid_cap, group.threads)

    def launcher(r: int) -> Callable[[], None]:
        args = (np.uint64(group.descs[r].ptr), np.uint64(count), np.uint64(group.timeout_ns), np.int32(0))
        stream = group.streams[r]

        def launch() -> None:
            with stream:
                kernel((grid,), (group.threads,), args)
        return launch

    return _time(group, [launcher(r) for r in range(group.nranks)], ops_per_graph, replays)


def _time(group: LocalGroup, launches: Sequence[Callable[[], None]], ops_per_graph: int, replays: int) -> float:
    graphs = []
    together(launches)  # warm-up (loads the module); every rank at once: they wait for each other
    group.synchronize()
    for launch, s in zip(launches, group.streams):
        s.begin_capture()
        for _ in range(ops_per_graph):
            launch()
        graphs.append(s.end_capture())
    for g, s in zip(graphs, group.streams):
        g.upload(s)
    together([_bind(g.launch, s) for g, s in zip(graphs, group.streams)])  # warm replay
    group.synchronize()
    t0 = time.perf_counter()
    together([_repeat(_bind(g.launch, s), replays) for g, s in zip(graphs, group.streams)])
    group.synchronize()
    errors = group.errors()
    if errors:
        group.reset_signals()
        raise RuntimeError(errors[0])
    return (time.perf_counter() - t0) / (ops_per_graph * replays)


def check_interpreter(report: Report, cp: Any, *, ranks: Sequence[int] = (2, 3, 4, 8),
                      counts: Callable[[int], Sequence[int]] = lambda p: (1, 2 * p + 1, 1000 * p + 7, (1 << 16) + 3),
                      dtypes: Sequence[str] = ("float32", "bfloat16", "int32"),
                      time_sizes: Sequence[int] = (8, 64 << 10, 1 << 20), budget_s: float = 120.0,
                      collectives: Sequence[Collective] = COLLECTIVES) -> dict[str, Any]:
    """The whole interpreter section; returns the timings (us per op and per step)."""
    from .interp import SOURCE, kernel_name
    from .kernels import get_kernel

    start = time.perf_counter()
    perf: dict[str, Any] = {}
    for dt in dict.fromkeys([*dtypes, "float32", "int32"]):
        t0 = time.perf_counter()
        try:
            for op in ("sum", "max"):
                get_kernel(SOURCE, kernel_name(op, dt), dt)
        except Exception as exc:  # noqa: BLE001
            report("interp", f"compile {SOURCE} {dt}", "fail", f"{type(exc).__name__}: {exc}")
            return perf
        report("interp", f"compile {SOURCE} {dt}", "pass", f"{time.perf_counter() - t0:.1f} s")
    for p in ranks:
        max_elems = max(max(counts(p)) * p * 2, max(time_sizes, default=0) // 4 * 2, 1 << 12)
        try:
            group = LocalGroup(cp, p, max_elems * 8)
        except Exception as exc:  # noqa: BLE001
            report("interp", f"setup np={p}", "fail", f"{type(exc).__name__}: {exc}")
            continue
        for coll in collectives:
            for algo in algorithms_for(coll, include_native=False):
                for count in counts(p):
                    if time.perf_counter() - start > budget_s:
                        report("interp", "budget", "info", f"stopped after {budget_s:.0f} s")
                        return perf
                    problem = Problem(coll, p, count)
                    if algo.precondition(problem, op="sum"):
                        continue
                    name = f"{coll.value} {algo.name} np={p} n={count}"
                    failures = []
                    cases = [(dt, "sum", ip, 1, 0) for dt in dtypes for ip in (False, True)]
                    cases += [("float32", "avg", False, 1, 0), ("int32", "max", True, 1, 0),
                              ("int32", "sum", False, 4, 0), ("float32", "sum", True, 3, 0),
                              ("int32", "sum", False, 3, 2)]
                    for dt, op, ip, launches, replays in cases:
                        try:
                            err = run_case(group, algo.name, problem, dt, op if coll.reduces else None, ip,
                                           launches, replays, seed=p * 7919 + count)
                        except Exception as exc:  # noqa: BLE001
                            err = f"{type(exc).__name__}: {exc}"
                        if err:
                            failures.append(f"{dt} {op} {'in' if ip else 'out-of'}-place x{launches}"
                                            f"{f' graph x{replays}' if replays else ''}: {err}")
                    report("interp", name, "fail" if failures else "pass", "; ".join(failures[:2]), cases=len(cases))
        perf.update(_timings(report, group, p, time_sizes))
    return perf


def _timings(report: Report, group: LocalGroup, p: int, sizes: Sequence[int]) -> dict[str, Any]:
    perf: dict[str, Any] = {}
    for nbytes in sizes:
        count = max(1, nbytes // 4)
        problem = Problem(Collective.ALLREDUCE, p, count)
        row: dict[str, Any] = {}
        for kind in ("one_shot", "two_shot"):
            try:
                row[kind] = time_baseline(group, kind, count) * 1e6
            except Exception as exc:  # noqa: BLE001 - e.g. the CPU fake has no IPC kernels
                report("interp", f"time {kind} np={p} {nbytes} B", "info", f"not timed: {type(exc).__name__}: {exc}")
        for algo in algorithms_for(Collective.ALLREDUCE, include_native=False):
            if algo.precondition(problem, op="sum"):
                continue
            try:
                seconds, steps = time_interp(group, algo.name, problem)
            except Exception as exc:  # noqa: BLE001
                report("interp", f"time {algo.name} np={p} {nbytes} B", "fail", f"{type(exc).__name__}: {exc}")
                continue
            row[algo.name] = seconds * 1e6
            row[f"{algo.name}_per_step"] = seconds * 1e6 / max(1, steps)
        base = min((row[k] for k in ("one_shot", "two_shot") if k in row), default=None)
        best = min(((v, k) for k, v in row.items() if k not in ("one_shot", "two_shot") and not k.endswith("_per_step")),
                   default=None)
        detail = ", ".join(f"{k} {v:.1f}" for k, v in row.items() if not k.endswith("_per_step"))
        if best is not None and base is not None:
            detail += f"; best schedule {best[1]} {best[0] / base:.2f}x the hand-written kernels"
        report("interp", f"time np={p} {nbytes} B (us/op)", "info", detail, **row)
        perf[f"np{p}_{nbytes}B"] = row
    return perf
