#!/usr/bin/env python3
"""GPU check of collbench's CUDA kernels: correctness against numpy, bandwidth, IPC collectives.

Run on a machine with a CUDA GPU, CuPy and NVRTC (one process; it starts the MPI runs itself):

    python3 scripts/gpu_kernels_check.py --out results/gpu_kernels_check.json

Sections (one output line per check, a summary table last, exit status 1 on any failure):
  compile    NVRTC-compile every kernel module for this GPU (cached by CuPy on disk).
  reduce     reduce / reduce_many / finalize_avg vs numpy on fresh random data, every dtype and op,
             sizes 0 .. 64 MiB, aligned, misaligned (all pointers +1 element: vector path with a
             scalar head; one pointer +1: scalar path) and in place; outputs poisoned, guard
             elements around every output checked.
  bandwidth  sum of two float32 / bfloat16 inputs (3 x size bytes) vs a device-to-device
             cudaMemcpy (2 x size bytes) at 16 and 256 MiB: launches back to back between CUDA
             events (queued behind a hold kernel, so Python's launch cost is not timed), buffer
             sets rotated past twice the L2 size so every launch reads HBM; median of 5.
  ipc        `mpiexec -n N` (N = 1, 2, 4; all ranks on GPU 0) running this script with
             --ipc-worker: every IPC collective vs numpy, in and out of place, and CUDA-graph mode
             (N captured launches of an 8-byte one-shot allreduce, replayed; per-op microseconds), and
             a barrier timeout on rank 0 alone, which every rank must report (np > 1).
  interp     the schedule interpreter (csrc/interp.cu; collbench/gpu/interp_check.py): every
             registered allreduce/allgather/reduce_scatter schedule at 2, 3, 4 and 8 ranks as
             concurrent streams of this process, exact vs the numpy simulator in and out of place,
             chains, graph replays; time per operation and per step next to one-shot/two-shot.
Float results must match bit for bit (NaN matches NaN; +0 matches -0 for max/min only): the
kernels compute in the same arithmetic as the numpy reference (16-bit types: float32 math,
one rounding).

Options: --mpiexec PATH (default: $MPIEXEC, then mpiexec on PATH or next to python),
--ranks 1,2,4, --skip-ipc, --skip-bandwidth, --ipc-timeout S (kernel barrier timeout),
--ipc-budget S (per MPI run; cases left over are reported as skipped), --strict-perf,
--skip-interp, --interp-ranks 2,3,4,8, --interp-budget S.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
try:
    import collbench.gpu  # noqa: F401 - only probing whether the package is importable
except ImportError:  # a plain checkout: make the package importable
    sys.path.insert(0, str(REPO))

from collbench.gpu import kernel_sources as _sources  # noqa: E402
from collbench.gpu import kernels  # noqa: E402

MiB = 1 << 20
REDUCE_OPS = ("sum", "prod", "max", "min", "avg")
POISON = 0xA5
GUARD = 16  # elements of poison before and after every output

# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------


class Report:
    """Collects checks; prints one line per check as it goes."""

    def __init__(self, prefix: str = "", echo: bool = True) -> None:
        self.checks: list[dict[str, Any]] = []
        self.prefix = prefix
        self.echo = echo

    def add(self, section: str, name: str, status: str, detail: str = "", **metrics: Any) -> None:
        rec = {"section": section, "name": name, "status": status, "detail": detail, "metrics": metrics}
        self.checks.append(rec)
        if self.echo:
            line = f"{self.prefix}{status.upper():5s} {section:9s} {name}"
            if detail:
                line += f" -- {detail}"
            print(line, flush=True)

    def failed(self) -> bool:
        return any(c["status"] == "fail" for c in self.checks)


# ---------------------------------------------------------------------------------------------
# numpy reference arithmetic (the same arithmetic the kernels do)
# ---------------------------------------------------------------------------------------------


def f32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns, round to nearest even (as cvt.rn.bf16.f32); NaN stays NaN."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    r = ((u + np.uint32(0x7FFF) + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    r[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
    return r


def bf16_bits_to_f32(b: np.ndarray) -> np.ndarray:
    return (b.astype(np.uint32) << 16).view(np.float32)


def to_work(info: _sources.DTypeInfo, x: np.ndarray) -> np.ndarray:
    """Storage -> arithmetic type (exact)."""
    if info.name == "bfloat16":
        return bf16_bits_to_f32(x)
    if info.name == "float16":
        return x.astype(np.float32)
    return x


def from_work(info: _sources.DTypeInfo, x: np.ndarray) -> np.ndarray:
    """Arithmetic type -> storage, one rounding."""
    if info.name == "bfloat16":
        return f32_to_bf16_bits(x)
    return x.astype(info.storage)


def trunc_div(x: np.ndarray, n: int) -> np.ndarray:
    """Integer division truncating toward zero (C semantics), safe for the most negative value."""
    q = x // x.dtype.type(n)
    if x.dtype.kind == "i":
        fix = (q * x.dtype.type(n) != x) & (x < 0)
        q = q + fix.astype(x.dtype)
    return q


def ref_reduce(op: str, info: _sources.DTypeInfo, inputs: list[np.ndarray], divide_by: int = 0) -> np.ndarray:
    """inputs[0] op inputs[1] op ... in order; divide_by > 0 divides the accumulator before rounding."""
    with np.errstate(all="ignore"):
        acc = to_work(info, inputs[0]).copy()
        for x in inputs[1:]:
            w = to_work(info, x)
            if op in ("sum", "avg"):
                acc = acc + w
            elif op == "prod":
                acc = acc * w
            elif op == "max":
                acc = np.maximum(acc, w)
            elif op == "min":
                acc = np.minimum(acc, w)
            else:
                raise ValueError(op)
        if divide_by:
            if info.kind == "float":
                acc = acc / acc.dtype.type(divide_by)
            else:
                acc = trunc_div(acc, divide_by)
        return from_work(info, acc)


def ref_finalize(info: _sources.DTypeInfo, x: np.ndarray, n: int) -> np.ndarray:
    """What finalize_avg does to a stored sum."""
    with np.errstate(all="ignore"):
        w = to_work(info, x)
        return from_work(info, w / w.dtype.type(n) if info.kind == "float" else trunc_div(w, n))


def mismatches(info: _sources.DTypeInfo, op: str, got: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Boolean mask of wrong elements (bitwise, NaN==NaN, and +0==-0 for max/min)."""
    if info.kind != "float":
        return got != ref
    if op == "copy":  # data movement must be bit-exact, NaN payloads included
        g = got.view(np.uint8).reshape(got.size, info.itemsize)
        r = ref.view(np.uint8).reshape(ref.size, info.itemsize)
        return (g != r).any(axis=1)
    ubits = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[info.itemsize]
    ok = got.view(ubits) == ref.view(ubits)
    gf, rf = to_work(info, got), to_work(info, ref)
    ok |= np.isnan(gf) & np.isnan(rf)
    if op in ("max", "min"):
        ok |= (gf == 0) & (rf == 0)
    return ~ok


def describe_mismatch(info: _sources.DTypeInfo, bad: np.ndarray, got: np.ndarray, ref: np.ndarray) -> str:
    idx = np.flatnonzero(bad)
    i = int(idx[0])
    return f"{idx.size} wrong of {got.size}, first at {i}: got {got[i]!r} expected {ref[i]!r}"


def random_data(rng: np.random.Generator, info: _sources.DTypeInfo, n: int) -> np.ndarray:
    """Fresh random values: full-range integers; floats mostly N(0, 4^2) with 1 in 16 replaced by
    random bit patterns (NaN, inf, subnormals, extremes)."""
    if info.kind in ("int", "uint"):
        ii = np.iinfo(info.storage)
        return rng.integers(ii.min, ii.max, size=n, dtype=info.storage, endpoint=True)
    work = np.float64 if info.name == "float64" else np.float32
    vals = (rng.standard_normal(n, dtype=work) * 4).astype(work)
    out = f32_to_bf16_bits(vals) if info.name == "bfloat16" else vals.astype(info.storage)
    ubits = {2: np.uint16, 4: np.uint32, 8: np.uint64}[info.itemsize]
    special = rng.random(n, dtype=np.float32) < (1 / 16)
    k = int(special.sum())
    if k:
        bits = rng.integers(0, np.iinfo(ubits).max, size=k, dtype=ubits, endpoint=True)
        out.view(ubits)[special] = bits
    return out


# ---------------------------------------------------------------------------------------------
# compile
# ---------------------------------------------------------------------------------------------


def _compile_one(job: tuple[str, str]) -> Optional[str]:
    """Compile one (file, dtype) module into CuPy's disk cache (runs in a worker process)."""
    try:
        kernels.precompile((job[0],), [job[1]])
        return None
    except Exception as exc:  # noqa: BLE001
        return f"{job[0]} {job[1]}: {type(exc).__name__}: {exc}"


def check_compile(rep: Report, jobs: int) -> bool:
    """Compile every module: first in parallel worker processes (NVRTC is single-threaded and
    CuPy's disk cache is shared), then load them here, where any error is reported."""
    files = ("reduce.cu", "ipc_collectives.cu")
    if jobs > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        t0 = time.perf_counter()
        work = [(f, d) for f in files for d in _sources.dtypes()]
        try:
            with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as ex:
                errors = [e for e in ex.map(_compile_one, work) if e]
            detail = f"{len(work)} modules in {time.perf_counter() - t0:.1f} s with {jobs} processes"
            if errors:
                detail += f"; {len(errors)} failed (details follow): {errors[0][:300]}"
            rep.add("compile", "parallel precompile", "info", detail)
        except Exception as exc:  # noqa: BLE001 - fall back to compiling here
            rep.add("compile", "parallel precompile", "info", f"not used ({type(exc).__name__}: {exc})")
    ok = True
    for filename in files:
        t0 = time.perf_counter()
        try:
            kernels.precompile((filename,))
        except Exception as exc:  # noqa: BLE001
            rep.add("compile", filename, "fail", f"{type(exc).__name__}: {exc}")
            ok = False
            continue
        rep.add("compile", filename, "pass", f"loaded for all dtypes in {time.perf_counter() - t0:.1f} s",
                seconds=time.perf_counter() - t0)
    return ok


# ---------------------------------------------------------------------------------------------
# reduce kernels
# ---------------------------------------------------------------------------------------------


def reduce_sizes(info: _sources.DTypeInfo) -> list[int]:
    return [0, 1, 3, 7, 15, 16, 17, 1000, 4097, (1 << 20) + 5, (64 * MiB) // info.itemsize]


def reduce_many_sizes(nin: int) -> list[int]:
    return [0, 17, 4097, (1 << 20) + 5] if nin == 3 else [0, 17, 4097]


class DeviceCase:
    """Device buffers with poison guards around every array view."""

    def __init__(self, cp: Any, info: _sources.DTypeInfo, n: int, offset: int) -> None:
        self.cp, self.info, self.n, self.offset = cp, info, n, offset
        self.total = n + 2 * GUARD + 1

    def alloc(self, host: Optional[np.ndarray]) -> Any:
        cp = self.cp
        buf = cp.empty(self.total, dtype=self.info.storage)
        buf.view(cp.uint8).fill(POISON)
        view = buf[GUARD + self.offset: GUARD + self.offset + self.n]
        if host is not None and self.n:
            view.set(host)
        return buf, view

    def check_guards(self, buf: Any) -> Optional[str]:
        lo = GUARD + self.offset
        hi = lo + self.n
        guards = np.concatenate([buf[:lo].get().view(np.uint8), buf[hi:].get().view(np.uint8)])
        bad = np.flatnonzero(guards != POISON)
        if bad.size:
            return f"{bad.size} guard bytes around the output were overwritten"
        return None


def run_reduce_case(cp: Any, rng: np.random.Generator, kind: str, op: str, info: _sources.DTypeInfo, n: int,
                    variant: str, nin: int, inputs_cache: Optional[list[np.ndarray]]) -> Optional[str]:
    """One reduce/reduce_many case; returns an error string or None."""
    hosts = inputs_cache if inputs_cache is not None else [random_data(rng, info, n) for _ in range(nin)]
    offs = {"aligned": [0] * (nin + 1), "all+1": [1] * (nin + 1), "one+1": [0] + [1] + [0] * (nin - 1),
            "inplace": [0] * (nin + 1)}[variant]
    ins = []
    bufs = []
    for i in range(nin):
        case = DeviceCase(cp, info, n, offs[i + 1])
        buf, view = case.alloc(hosts[i])
        bufs.append(buf)
        ins.append(view)
    out_case = DeviceCase(cp, info, n, offs[0])
    if variant == "inplace":
        out_buf, out = bufs[0], ins[0]
    else:
        out_buf, out = out_case.alloc(None)
    dt = info.name if info.name == "bfloat16" else None
    if kind == "reduce":
        kernels.reduce(op, out, ins[0], ins[1], dtype=dt)
        if op == "avg":
            kernels.finalize_avg(out, 2, dtype=dt)
        ref = ref_reduce(op, info, hosts)
        if op == "avg":
            ref = ref_finalize(info, ref, 2)
    else:
        kernels.reduce_many(op, out, ins, dtype=dt)
        if op == "avg":
            kernels.finalize_avg(out, nin, dtype=dt)
        ref = ref_reduce(op, info, hosts)
        if op == "avg":
            ref = ref_finalize(info, ref, nin)
    cp.cuda.get_current_stream().synchronize()
    got = out.get() if n else np.empty(0, info.storage)
    if n:
        bad = mismatches(info, op, got, ref)
        if bad.any():
            return describe_mismatch(info, bad, got, ref)
    guard_err = out_case.check_guards(out_buf)
    if guard_err:
        return guard_err
    if variant != "inplace" and inputs_cache is None:  # (skipped for the shared 64 MiB inputs: time)
        for i in range(nin):
            if n and not np.array_equal(ins[i].get().view(np.uint8), hosts[i].view(np.uint8)):
                return f"input {i} was modified"
    return None


def check_reduce(rep: Report, cp: Any, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for info in _sources.dtypes().values():
        sizes = reduce_sizes(info)
        big = sizes[-1]
        # The 64 MiB inputs are drawn once per dtype (fresh for this run) and shared by the ops;
        # everything smaller is drawn fresh for every case.
        big_inputs = [random_data(rng, info, big) for _ in range(2)]
        for op in REDUCE_OPS:
            t0 = time.perf_counter()
            errors, ncases = [], 0
            for n in sizes:
                variants = ["aligned"]
                if n in (1, 3, 17, 1000, 4097, (1 << 20) + 5):
                    variants.append("all+1")
                if n in (17, 4097):
                    variants += ["one+1", "inplace"]
                for v in variants:
                    ncases += 1
                    try:
                        err = run_reduce_case(cp, rng, "reduce", op, info, n, v, 2,
                                              big_inputs if n == big else None)
                    except Exception as exc:  # noqa: BLE001
                        err = f"{type(exc).__name__}: {exc}"
                    if err:
                        errors.append(f"n={n} {v}: {err}")
            name = f"reduce {op} {info.name}"
            if errors:
                rep.add("reduce", name, "fail", f"{len(errors)}/{ncases} cases failed; " + " | ".join(errors[:3]))
            else:
                rep.add("reduce", name, "pass", f"{ncases} cases, sizes 0..{big}, {time.perf_counter() - t0:.2f} s")
        del big_inputs
        # reduce_many: 1, 3 and 8 inputs
        for op in REDUCE_OPS:
            errors, ncases = [], 0
            for nin in (1, 3, 8):
                for n in reduce_many_sizes(nin):
                    for v in (["aligned", "all+1"] if n == 4097 else ["aligned"]):
                        ncases += 1
                        try:
                            err = run_reduce_case(cp, rng, "many", op, info, n, v, nin, None)
                        except Exception as exc:  # noqa: BLE001
                            err = f"{type(exc).__name__}: {exc}"
                        if err:
                            errors.append(f"nin={nin} n={n} {v}: {err}")
            name = f"reduce_many {op} {info.name}"
            if errors:
                rep.add("reduce", name, "fail", f"{len(errors)}/{ncases} cases failed; " + " | ".join(errors[:3]))
            else:
                rep.add("reduce", name, "pass", f"{ncases} cases (1, 3, 8 inputs)")
        cp.get_default_memory_pool().free_all_blocks()


# ---------------------------------------------------------------------------------------------
# bandwidth
# ---------------------------------------------------------------------------------------------


# A spin kernel that holds the stream while the timed launches are queued behind it, so the timed
# region holds the kernels back to back however slowly Python launches them (kernels.reduce costs
# tens of microseconds of Python; a 16 MiB reduction on an H200 takes about ten).
HOLD_SOURCE = r"""
extern "C" __global__ void collbench_hold(unsigned long long ns) {
  unsigned long long t0, t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  do { asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t)); } while (t - t0 < ns);
}
"""
BANDWIDTH_SIZES = (16 * MiB, 256 * MiB)
DEFAULT_L2_BYTES = 64 * MiB  # when the device does not report L2CacheSize


def rotation_sets(bytes_per_set: int, l2_bytes: int) -> int:
    """Buffer sets to rotate over so that consecutive launches touch more than twice the L2
    cache: each launch then reads from HBM (what the row claims to measure), not from L2."""
    return max(1, -(-2 * l2_bytes // max(1, bytes_per_set)))


def time_back_to_back(cp: Any, launches: list[Callable[[], None]], trials: int = 5, hold_ms: float = 20.0) -> float:
    """Median over trials of milliseconds per launch for ``launches`` run back to back.

    Each trial: a hold kernel, start event, every launch, end event. The launches queue behind
    the hold, so the events bracket device time only, not Python's launch overhead. If the hold
    ended before the last launch was queued (the start event already completed), the trial is
    repeated with a longer hold.
    """
    stream = cp.cuda.get_current_stream()
    hold = cp.RawKernel(HOLD_SOURCE, "collbench_hold")
    for launch in launches:  # warm-up: module loads, first-touch, clocks up
        launch()
    stream.synchronize()
    times: list[float] = []
    while len(times) < trials:
        start, end = cp.cuda.Event(), cp.cuda.Event()
        hold((1,), (1,), (np.uint64(int(hold_ms * 1e6)),))
        start.record(stream)
        for launch in launches:
            launch()
        overran = start.done  # the GPU started timing before everything was queued
        end.record(stream)
        end.synchronize()
        if overran:
            if hold_ms >= 2000:
                raise RuntimeError("launching is too slow to queue the timed kernels behind a 2 s hold")
            hold_ms *= 4
            continue
        times.append(cp.cuda.get_elapsed_time(start, end) / len(launches))
    return float(np.median(times))


def l2_bytes(cp: Any) -> int:
    try:
        return int(cp.cuda.Device().attributes["L2CacheSize"]) or DEFAULT_L2_BYTES
    except Exception:  # noqa: BLE001 - attribute missing on an odd CuPy: assume a large L2
        return DEFAULT_L2_BYTES


def copy_launches(cp: Any, size: int, sets: int, rounds: int) -> tuple[list[Callable[[], None]], list[Any]]:
    """Device-to-device copies of ``size`` bytes, rotating over ``sets`` (src, dst) pairs."""
    rt = cp.cuda.runtime
    stream = cp.cuda.get_current_stream()
    pairs = [(cp.empty(size, dtype=cp.uint8), cp.empty(size, dtype=cp.uint8)) for _ in range(sets)]
    for src, _ in pairs:
        src.fill(1)

    def copy(src: Any, dst: Any) -> Callable[[], None]:
        return lambda: rt.memcpyAsync(dst.data.ptr, src.data.ptr, size, rt.memcpyDeviceToDevice, stream.ptr)

    return [copy(*pairs[i % sets]) for i in range(rounds * sets)], pairs


def reduce_launches(cp: Any, info: _sources.DTypeInfo, size: int, sets: int,
                    rounds: int) -> tuple[list[Callable[[], None]], list[Any]]:
    """``c = a + b`` over ``size`` bytes each, rotating over ``sets`` (a, b, c) triples."""
    n = size // info.itemsize
    triples = [(cp.ones(n, dtype=info.storage), cp.ones(n, dtype=info.storage), cp.empty(n, dtype=info.storage))
               for _ in range(sets)]
    dt = "bfloat16" if info.name == "bfloat16" else None

    def add(a: Any, b: Any, c: Any) -> Callable[[], None]:
        return lambda: kernels.reduce("sum", c, a, b, dtype=dt)

    return [add(*triples[i % sets]) for i in range(rounds * sets)], triples


def check_bandwidth(rep: Report, cp: Any, strict: bool, sizes: tuple[int, ...] = BANDWIDTH_SIZES,
                    rounds: int = 4) -> dict[str, float]:
    """Reduction bandwidth (3 x size bytes per sum) against a device-to-device copy (2 x size) at
    each size, both measured back to back from HBM (buffer sets rotated past twice the L2)."""
    l2 = l2_bytes(cp)
    out: dict[str, float] = {"l2_bytes": float(l2)}
    for size in sizes:
        label = f"{size // MiB} MiB"
        suffix = "" if size == 256 * MiB else f"_{size // MiB}MiB"  # 256 MiB keeps the old keys
        sets = rotation_sets(2 * size, l2)
        launches, keep = copy_launches(cp, size, sets, rounds)
        copy_ms = time_back_to_back(cp, launches)
        del launches, keep
        copy_bw = 2 * size / copy_ms / 1e6  # GB/s
        rep.add("bandwidth", f"d2d copy {label}", "info",
                f"{copy_bw:.1f} GB/s (2 x size / time; {rounds * sets} back-to-back "
                f"copies over {sets} buffer set(s), L2 {l2 / MiB:.0f} MiB; median of 5)", gbps=copy_bw, ms=copy_ms)
        out[f"copy_gbps{suffix}"] = copy_bw
        for name in ("float32", "bfloat16"):
            info = _sources.dtype_info(name)
            sets = rotation_sets(3 * size, l2)
            launches, keep = reduce_launches(cp, info, size, sets, rounds)
            ms = time_back_to_back(cp, launches)
            del launches, keep
            bw = 3 * size / ms / 1e6
            ratio = bw / copy_bw
            status = "pass" if ratio >= 0.85 else ("fail" if strict else "warn")
            rep.add("bandwidth", f"reduce sum {name} {label}", status,
                    f"{bw:.1f} GB/s (3 x size / time; {rounds * sets} back-to-back launches over {sets} buffer "
                    f"set(s)) = {100 * ratio:.1f}% of copy (target >= 85%)", gbps=bw, ms=ms, ratio=ratio)
            out[f"{name}_ratio{suffix}"] = ratio
        cp.get_default_memory_pool().free_all_blocks()
    return out


# ---------------------------------------------------------------------------------------------
# IPC worker (runs under mpiexec)
# ---------------------------------------------------------------------------------------------

IPC_COMBOS = [("float32", "sum"), ("bfloat16", "sum"), ("float16", "avg"), ("int32", "max"),
              ("uint8", "prod"), ("float64", "min"), ("int64", "avg"), ("int8", "avg")]
AG_DTYPES = ["int8", "float16", "float32", "float64"]


def ipc_counts(kind: str, itemsize: int, nranks: int) -> list[int]:
    big = (16 * MiB) // itemsize
    if kind in ("allgather", "reduce_scatter"):
        big = big // nranks + 3  # per-rank count; total stays about 16 MiB, not a multiple of 16 B
    return [0, 1, 17, 4096 + 3, MiB // itemsize + 5, big]


def ipc_cases(nranks: int) -> list[tuple[str, str, Optional[str], int, bool]]:
    """(kind, dtype, op, count, inplace), small sizes of every kind first."""
    cases = []
    for size_idx in range(6):
        for kind in ("one_shot", "two_shot", "reduce_scatter", "allgather"):
            if kind == "allgather":
                combos = [(d, None) for d in AG_DTYPES]
            else:
                combos = IPC_COMBOS if size_idx < 5 else IPC_COMBOS[:2]
            for dt, op in combos:
                count = ipc_counts(kind, _sources.dtype_info(dt).itemsize, nranks)[size_idx]
                for inplace in (False, True):
                    cases.append((kind, dt, op, count, inplace))
    return cases


def ipc_worker(args: argparse.Namespace) -> int:
    from mpi4py import MPI

    from collbench.gpu.ipc import IpcCommunicator, required_bytes

    world = MPI.COMM_WORLD
    node = world.Split_type(MPI.COMM_TYPE_SHARED)
    rank, nranks = node.Get_rank(), node.Get_size()
    rep = Report(prefix=f"[np={nranks}] ", echo=(rank == 0))
    cp = kernels.cupy_module()
    cp.cuda.Device(rank % cp.cuda.runtime.getDeviceCount()).use()
    seed = node.bcast(secrets.randbits(62) if rank == 0 else None, root=0)
    cases = ipc_cases(nranks)
    max_bytes = max(required_bytes(k, c, _sources.dtype_info(d).itemsize, nranks) for k, d, _, c, _ in cases)
    max_bytes += 4096  # room for the guard window after the largest result
    t_start = time.perf_counter()
    try:
        comm = IpcCommunicator(node, max_bytes, timeout_s=args.ipc_timeout)
    except Exception as exc:  # noqa: BLE001 - setup errors are agreed on by all ranks
        rep.add("ipc", f"np={nranks} setup", "fail", f"{type(exc).__name__}: {exc}")
        return finish_worker(args, rep, node)
    if rank == 0:
        # the occupancy query must work on a GPU (1 is also its fallback when CuPy lacks it)
        one_shot = kernels.get_kernel("ipc_collectives.cu", "ipc_one_shot_sum_float32", "float32")
        per_sm = kernels.occupancy_per_sm(one_shot, comm.threads)
        rep.add("ipc", f"np={nranks} setup", "info",
                f"max_bytes={max_bytes}, max_blocks={comm.max_blocks}, same_device={comm.same_device}, "
                f"{comm.residency}, one-shot f32: {per_sm} blocks/SM -> grid cap "
                f"{comm.grid_cap(one_shot, 'ipc_one_shot_sum_float32/float32')}")
    stream = cp.cuda.Stream(non_blocking=True)
    groups: dict[str, dict[str, Any]] = {}
    fatal = False
    skipped = 0
    for case_id, (kind, dt, op, count, inplace) in enumerate(cases):
        go = node.bcast(time.perf_counter() - t_start < args.ipc_budget if rank == 0 else None, root=0)
        if not go:
            skipped = len(cases) - case_id
            break
        try:
            err, fatal = run_ipc_case(cp, comm, node, stream, seed, case_id, kind, dt, op, count, inplace)
        except Exception as exc:  # noqa: BLE001 - only local verification can raise here
            err = f"{type(exc).__name__}: {exc}"
        all_errs = node.gather(err, root=0)
        key = f"np={nranks} {kind} {dt}" + (f" {op}" if op else "")
        if rank == 0:
            g = groups.setdefault(key, {"n": 0, "errors": [], "counts": []})
            g["n"] += 1
            g["counts"].append(count)
            for r, e in enumerate(all_errs):
                if e:
                    g["errors"].append(f"rank {r} count={count} inplace={inplace}: {e}")
        if fatal:  # agreed inside run_ipc_case: every rank stops here together
            if rank == 0:
                rep.add("ipc", f"np={nranks} aborted", "fail", "a kernel reported an error; the communicator is unusable")
            skipped = len(cases) - case_id - 1
            break
    if rank == 0:
        for key, g in groups.items():
            if g["errors"]:
                rep.add("ipc", key, "fail", f"{len(g['errors'])} failures in {g['n']} cases; " + " | ".join(g["errors"][:3]))
            else:
                rep.add("ipc", key, "pass", f"{g['n']} cases, counts {min(g['counts'])}..{max(g['counts'])}, in/out of place")
        if skipped:
            why = "after the kernel error" if fatal else f"time budget {args.ipc_budget} s"
            rep.add("ipc", f"np={nranks} not run", "skip", f"{skipped} cases not run ({why})")
    if not fatal:
        ipc_graph(cp, comm, node, rep, args)
    try:
        comm.close()
    except Exception as exc:  # noqa: BLE001
        rep.add("ipc", f"np={nranks} close", "fail", str(exc))
    if nranks > 1:
        ipc_error_agreement(node, rep, lambda: IpcCommunicator(node, 4096, timeout_s=1.0))
    return finish_worker(args, rep, node)


def ipc_error_agreement(node: Any, rep: Report, make_comm: Callable[[], Any]) -> None:
    """A barrier that times out on one rank must be reported by every rank, naming it. Rank 0
    launches a one-shot allreduce alone on a fresh communicator (1 s barrier timeout); its peers
    launch nothing, so their local check is clean and only check_error_all can tell them."""
    rank = node.Get_rank()
    outcome: str | None = "no error raised"
    try:
        comm = make_comm()  # setup errors are agreed: every rank lands in the except below
    except Exception as exc:  # noqa: BLE001
        comm, outcome = None, f"setup: {type(exc).__name__}: {exc}"
    if comm is not None:
        try:
            if rank == 0:
                comm.allreduce_one_shot(2, "float32", "sum")
            comm.check_error_all()
        except Exception as exc:  # noqa: BLE001 - IpcTimeoutError expected
            text = f"{type(exc).__name__}: {exc}"
            outcome = None if (type(exc).__name__ == "IpcTimeoutError" and "rank 0:" in text) else text
        finally:
            try:
                comm.close()
            except Exception:  # noqa: BLE001,S110 - the communicator is dead by design here
                pass
    outcomes = node.gather(outcome, root=0)
    if rank == 0:
        bad = [f"rank {r}: {o}" for r, o in enumerate(outcomes) if o]
        rep.add("ipc", f"np={node.Get_size()} one-rank timeout", "fail" if bad else "pass",
                "; ".join(bad) if bad else "a barrier timeout on rank 0 alone was raised on every rank, naming it")


def finish_worker(args: argparse.Namespace, rep: Report, node: Any) -> int:
    if node.Get_rank() == 0 and args.out:
        Path(args.out).write_text(json.dumps({"checks": rep.checks}, indent=1, default=str))
    node.Barrier()
    return 1 if rep.failed() else 0


class Agreed:
    """Runs local steps on every rank and agrees after each: every rank makes the same MPI calls
    whatever fails where, so a failure on one rank cannot leave the others waiting."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self.error: Optional[str] = None

    def step(self, fn: Callable[[], Any]) -> bool:
        """Run fn unless a step already failed somewhere; True while every rank is fine."""
        fatal = False
        if self.error is None:
            try:
                fn()
            except Exception as exc:  # noqa: BLE001
                self.error = f"{type(exc).__name__}: {exc}"
                fatal = "Ipc" in type(exc).__name__  # a kernel error: the communicator is dead
        flags = self.node.allgather((self.error is not None, fatal))
        self.fatal_any = any(f for _, f in flags)
        if any(e for e, _ in flags) and self.error is None:
            self.error = "skipped: another rank failed"
        return self.error is None


def run_ipc_case(cp: Any, comm: Any, node: Any, stream: Any, seed: int, case_id: int, kind: str, dt: str,
                 op: Optional[str], count: int, inplace: bool) -> tuple[Optional[str], bool]:
    """Run one collective on every rank and check this rank's result.

    Returns (error or None, whether any rank's communicator is now unusable).
    """
    info = _sources.dtype_info(dt)
    rank, n = comm.rank, comm.nranks
    coll = {"one_shot": "allreduce", "two_shot": "allreduce"}.get(kind, kind)
    send_count = n * count if kind == "reduce_scatter" else count
    st: dict[str, Any] = {}

    def prepare() -> None:
        # Every rank derives every rank's input from (seed, case, rank): no messages needed.
        inputs = [random_data(np.random.default_rng([seed, case_id, k]), info, send_count) for k in range(n)]
        rt = cp.cuda.runtime
        # Poison both whole buffers, then place this rank's contribution.
        rt.memset(comm.input_view(comm.max_bytes, "uint8").data.ptr, POISON, comm.max_bytes)
        rt.memset(comm.output_view(comm.max_bytes, "uint8").data.ptr, POISON, comm.max_bytes)
        send = comm.send_view(coll, count, dt, inplace)
        if send_count:
            send.set(inputs[rank])
        divide = n if op == "avg" else 0
        if kind in ("one_shot", "two_shot"):
            ref, res_offset = ref_reduce(op, info, inputs, divide), 0
        elif kind == "reduce_scatter":
            ref = ref_reduce(op, info, [x[rank * count:(rank + 1) * count] for x in inputs], divide)
            res_offset = rank * count if inplace else 0
        else:
            ref, res_offset = (np.concatenate(inputs) if count else np.empty(0, info.storage)), 0
        # The buffer holding the result as it must look afterwards, up to a guard window past the
        # result: poison, or this rank's own data around an in-place result.
        holder = "input" if (inplace and kind != "allgather") else "output"
        window_bytes = min((res_offset + ref.size + GUARD) * info.itemsize, comm.max_bytes)
        expect = np.full(window_bytes, POISON, dtype=np.uint8)
        if holder == "input":
            sb = inputs[rank].view(np.uint8)[:window_bytes]
            expect[:sb.size] = sb
        rb = ref.view(np.uint8)
        lo = res_offset * info.itemsize
        expect[lo:lo + rb.size] = rb
        st.update(inputs=inputs, send=send, ref=ref, holder=holder, window_bytes=window_bytes, expect=expect,
                  lo=lo, hi=lo + rb.size)
        stream.synchronize()
        cp.cuda.Device().synchronize()  # poison and data in place before any peer can read them

    def launch() -> None:
        comm.launch(kind, count, dt, op, inplace=inplace, stream=stream)
        comm.check_error(stream)  # raises IpcTimeoutError: fatal for the communicator

    agreed = Agreed(node)
    if not agreed.step(prepare):  # the allgather in step() is also the start line for the launch
        return agreed.error, agreed.fatal_any
    if not agreed.step(launch):
        return agreed.error, agreed.fatal_any
    view = comm.input_view if st["holder"] == "input" else comm.output_view
    got_bytes = view(st["window_bytes"], "uint8").get()
    lo, hi, ref = st["lo"], st["hi"], st["ref"]
    got = got_bytes[lo:hi].view(info.storage)
    if ref.size:
        bad = mismatches(info, op or "copy", got, ref)
        if bad.any():
            return describe_mismatch(info, bad, got, ref), False
    expect = st["expect"]
    other = np.flatnonzero(np.concatenate([got_bytes[:lo], got_bytes[hi:]]) != np.concatenate([expect[:lo], expect[hi:]]))
    if other.size:
        return f"{other.size} bytes outside the result changed (guards or neighbouring data)", False
    if not inplace and send_count:
        if not np.array_equal(st["send"].get().view(np.uint8), st["inputs"][rank].view(np.uint8)):
            return "the send buffer was modified by an out-of-place collective", False
    return None, False


def ipc_graph(cp: Any, comm: Any, node: Any, rep: Report, args: argparse.Namespace) -> None:
    """Graph mode: capture N launches of an 8-byte one-shot allreduce, replay, time, verify."""
    n = comm.nranks
    n_ops = args.graph_ops if n == 1 else max(1, args.graph_ops // 50)
    replays = 10 if n == 1 else 2
    s = cp.cuda.Stream(non_blocking=True)
    expect = np.array([n * (n + 1) / 2, n * (n + 1)], dtype=np.float32)
    st: dict[str, Any] = {}
    agreed = Agreed(node)

    def setup() -> None:
        comm.send_view("allreduce", 2, "float32").set(np.array([comm.rank + 1, 2 * (comm.rank + 1)], np.float32))
        cp.cuda.Device().synchronize()

    def warmup() -> None:
        comm.allreduce_one_shot(2, "float32", "sum", stream=s)  # module loaded, epochs in step
        comm.check_error(s)

    def eager() -> None:  # Python launch overhead included, for comparison
        start, end = cp.cuda.Event(), cp.cuda.Event()
        start.record(s)
        for _ in range(n_ops):
            comm.allreduce_one_shot(2, "float32", "sum", stream=s)
        end.record(s)
        end.synchronize()
        st["eager_us"] = cp.cuda.get_elapsed_time(start, end) * 1e3 / n_ops
        comm.check_error(s)

    def capture() -> None:
        with s:
            s.begin_capture()
            try:
                for _ in range(n_ops):
                    comm.allreduce_one_shot(2, "float32", "sum", stream=s)
            finally:
                st["graph"] = s.end_capture()
        st["graph"].upload(s)
        s.synchronize()

    def warm_replay() -> None:
        st["graph"].launch(s)
        s.synchronize()
        comm.check_error(s)

    def timed_replays() -> None:
        start, end = cp.cuda.Event(), cp.cuda.Event()
        start.record(s)
        for _ in range(replays):
            st["graph"].launch(s)
        end.record(s)
        end.synchronize()
        st["graph_us"] = cp.cuda.get_elapsed_time(start, end) * 1e3 / (n_ops * replays)
        comm.check_error(s)
        got = comm.recv_view("allreduce", 2, "float32").get()
        if not np.array_equal(got, expect):
            raise AssertionError(f"wrong result after replays: got {got}, expected {expect}")

    for fn in (setup, warmup, eager, capture, warm_replay, timed_replays):
        if not agreed.step(fn):
            break
    results = node.gather((agreed.error, st.get("eager_us"), st.get("graph_us")), root=0)
    if comm.rank != 0:
        return
    name = f"np={n} one_shot 8 B graph"
    errors = [f"rank {r}: {e}" for r, (e, _, _) in enumerate(results) if e and not e.startswith("skipped")]
    if errors or any(e for e, _, _ in results):
        rep.add("graph", name, "fail", "; ".join(errors) or "failed")
        return
    graph_us = max(g for _, _, g in results)
    eager_us = max(e for _, e, _ in results)
    detail = f"{graph_us:.2f} us/op in graphs ({n_ops} ops x {replays} replays; max over ranks), eager {eager_us:.2f} us/op"
    status = "pass"
    if n == 1:
        detail += " (target < 10 us)"
        if graph_us >= 10:
            status = "fail" if args.strict_perf else "warn"
    else:
        detail += "; the ranks share one GPU (time-sliced contexts): not a latency measurement"
    rep.add("graph", name, status, detail, graph_us=graph_us, eager_us=eager_us, ops=n_ops, replays=replays)


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------


def find_mpiexec(explicit: Optional[str]) -> Optional[str]:
    for cand in (explicit, os.environ.get("MPIEXEC")):
        if cand:
            return cand
    for name in ("mpiexec", "mpirun"):
        p = shutil.which(name)
        if p:
            return p
    p = Path(sys.executable).parent / "mpiexec"
    return str(p) if p.exists() else None


def run_ipc_launch(rep: Report, args: argparse.Namespace, mpiexec: str, nranks: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "worker.json"
        # `python -m mpi4py` turns an unhandled exception on any rank into MPI_Abort (no hang).
        cmd = [mpiexec, "-n", str(nranks), *args.mpiexec_arg, sys.executable, "-m", "mpi4py",
               str(Path(__file__).resolve()),
               "--ipc-worker", "--out", str(out), "--ipc-timeout", str(args.ipc_timeout),
               "--ipc-budget", str(args.ipc_budget), "--graph-ops", str(args.graph_ops)]
        if args.strict_perf:
            cmd.append("--strict-perf")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        limit = args.ipc_budget + args.ipc_timeout + 90
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                start_new_session=True)
        tail: list[str] = []

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                print(line, end="", flush=True)
                tail.append(line)
                del tail[:-30]

        th = threading.Thread(target=pump, daemon=True)
        th.start()
        try:
            rc = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            th.join(5)
            rep.add("ipc", f"np={nranks} run", "fail", f"mpiexec run killed after {limit:.0f} s; last output: "
                    + "".join(tail[-5:]).strip().replace("\n", " | "))
            return
        th.join(5)
        secs = time.perf_counter() - t0
        if out.exists():
            for c in json.loads(out.read_text())["checks"]:
                c["printed"] = True  # already echoed by the worker
                rep.checks.append(c)
        if rc != 0 and not any(c["status"] == "fail" for c in rep.checks if c["name"].startswith(f"np={nranks}")):
            rep.add("ipc", f"np={nranks} run", "fail", f"exit status {rc} after {secs:.0f} s; last output: "
                    + "".join(tail[-8:]).strip().replace("\n", " | "))
        else:
            rep.add("ipc", f"np={nranks} run", "info", f"mpiexec -n {nranks}: {secs:.1f} s, exit status {rc}")


def environment(cp: Any) -> dict[str, Any]:
    rt = cp.cuda.runtime
    dev = cp.cuda.Device()
    props = rt.getDeviceProperties(dev.id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    try:
        nvrtc = ".".join(map(str, cp.cuda.nvrtc.getVersion()))
    except Exception as exc:  # noqa: BLE001
        nvrtc = f"unavailable ({exc})"
    return {
        "gpu": name,
        "compute_capability": f"{props['major']}.{props['minor']}",
        "sm_count": props["multiProcessorCount"],
        "pci_bus_id": dev.pci_bus_id,
        "driver_version": rt.driverGetVersion(),
        "runtime_version": rt.runtimeGetVersion(),
        "cupy": cp.__version__,
        "nvrtc": nvrtc,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "host": platform.node(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }


def summary_table(rep: Report, perf: dict[str, Any], seconds: float) -> str:
    rows = []
    for section in ("compile", "reduce", "bandwidth", "ipc", "graph", "interp"):
        cs = [c for c in rep.checks if c["section"] == section]
        if not cs:
            continue
        counts = {s: sum(1 for c in cs if c["status"] == s) for s in ("pass", "fail", "warn", "skip", "info")}
        rows.append((section, counts["pass"], counts["fail"], counts["warn"], counts["skip"]))
    lines = ["", "SUMMARY", f"{'section':10s} {'pass':>5s} {'fail':>5s} {'warn':>5s} {'skip':>5s}"]
    lines += [f"{s:10s} {p:5d} {f:5d} {w:5d} {k:5d}" for s, p, f, w, k in rows]
    for key, label in (("float32_ratio", "reduce f32 / copy, 256 MiB"), ("bfloat16_ratio", "reduce bf16 / copy, 256 MiB"),
                       ("float32_ratio_16MiB", "reduce f32 / copy, 16 MiB"),
                       ("bfloat16_ratio_16MiB", "reduce bf16 / copy, 16 MiB")):
        if key in perf:
            lines.append(f"{label:32s} {100 * perf[key]:6.1f} %  (target >= 85 %)")
    for c in rep.checks:
        if c["section"] == "graph" and "graph_us" in c["metrics"]:
            lines.append(f"{c['name']:32s} {c['metrics']['graph_us']:8.2f} us/op")
        if c["section"] == "interp" and c["name"].startswith("time np="):
            lines.append(f"interp {c['name']}: {c['detail'][:160]}")
    failed = [c for c in rep.checks if c["status"] == "fail"]
    lines.append(f"{'result':32s} {'FAIL' if failed else 'PASS'} ({len(failed)} failed checks, {seconds:.0f} s)")
    for c in failed[:10]:
        lines.append(f"  FAIL {c['section']} {c['name']}: {c['detail'][:200]}")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="JSON results file")
    ap.add_argument("--mpiexec", help="MPI launcher for the IPC runs")
    ap.add_argument("--mpiexec-arg", action="append", default=[], help="extra launcher argument (repeatable)")
    ap.add_argument("--ranks", default="1,2,4", help="process counts for the IPC runs")
    ap.add_argument("--skip-ipc", action="store_true")
    ap.add_argument("--skip-bandwidth", action="store_true")
    ap.add_argument("--skip-reduce", action="store_true")
    ap.add_argument("--ipc-timeout", type=float, default=10.0, help="barrier timeout inside kernels (s)")
    ap.add_argument("--ipc-budget", type=float, default=25.0, help="seconds of IPC cases per MPI run")
    ap.add_argument("--graph-ops", type=int, default=1000, help="launches per captured graph (np=1; /50 for np>1)")
    ap.add_argument("--compile-jobs", type=int, default=min(8, os.cpu_count() or 1),
                    help="processes compiling kernel modules in parallel before the checks")
    ap.add_argument("--strict-perf", action="store_true", help="missed performance targets fail")
    ap.add_argument("--ipc-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--skip-interp", action="store_true")
    ap.add_argument("--interp-ranks", default="2,3,4,8", help="rank counts (streams) for the interpreter section")
    ap.add_argument("--interp-budget", type=float, default=90.0, help="seconds of interpreter cases")
    args = ap.parse_args(argv)
    if args.ipc_worker:
        return ipc_worker(args)

    t0 = time.perf_counter()
    rep = Report()
    ok, why = kernels.gpu_status()
    if not ok:
        rep.add("compile", "device", "fail", why)
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps({"meta": {}, "checks": rep.checks}, indent=1))
        print(summary_table(rep, {}, time.perf_counter() - t0))
        return 1
    cp = kernels.cupy_module()
    meta = environment(cp)
    meta["command"] = " ".join([sys.executable, *sys.argv])
    rep.add("compile", "environment", "info", f"{meta['gpu']} (sm_{meta['compute_capability'].replace('.', '')}), "
            f"driver {meta['driver_version']}, runtime {meta['runtime_version']}, cupy {meta['cupy']}, nvrtc {meta['nvrtc']}")
    perf: dict[str, Any] = {}
    if check_compile(rep, args.compile_jobs):
        seed = secrets.randbits(62)
        meta["seed"] = seed
        if not args.skip_reduce:
            check_reduce(rep, cp, seed)
        if not args.skip_bandwidth:
            try:
                perf.update(check_bandwidth(rep, cp, args.strict_perf))
            except Exception as exc:  # noqa: BLE001
                rep.add("bandwidth", "measurement", "fail", f"{type(exc).__name__}: {exc}")
        if not args.skip_ipc:
            mpiexec = find_mpiexec(args.mpiexec)
            if mpiexec is None:
                rep.add("ipc", "mpiexec", "fail", "no MPI launcher found (pass --mpiexec or set MPIEXEC; "
                        "the mpich wheel installs one next to python)")
            else:
                for nranks in [int(x) for x in args.ranks.split(",") if x.strip()]:
                    run_ipc_launch(rep, args, mpiexec, nranks)
        if not args.skip_interp:
            from collbench.gpu.interp_check import check_interpreter

            try:
                perf["interp"] = check_interpreter(rep.add, cp, budget_s=args.interp_budget,
                                                   ranks=[int(x) for x in args.interp_ranks.split(",") if x.strip()])
            except Exception as exc:  # noqa: BLE001
                rep.add("interp", "section", "fail", f"{type(exc).__name__}: {exc}")
    seconds = time.perf_counter() - t0
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"meta": meta, "perf": perf, "seconds": seconds, "checks": rep.checks},
                                             indent=1, default=str))
        print(f"results written to {args.out}", flush=True)
    print(summary_table(rep, perf, seconds), flush=True)
    return 1 if rep.failed() else 0


if __name__ == "__main__":
    sys.exit(main())
