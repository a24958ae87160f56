"""The native execution path: collbench's C loops (csrc/native_executor.c), built at first use.

Two things run in C instead of Python when this path is on (``--executor native``, or ``auto``
where it builds):

* the timed loop of a native MPI collective (:class:`NativeCollective`): the same MPI call
  that mpi4py makes, repeated and timed in C, so small messages are not measured with
  Python's per-call cost in them (rows say ``executor: library+native``);
* a whole custom schedule (:class:`NativeScheduleRun`): the lowered program is flattened once
  (:func:`flatten`) into integer tables, bound to pointers and reduction functions in C, and
  each run posts every step's messages with MPI_Irecv/MPI_Isend + MPI_Waitall and runs the
  local copies and reductions in C (rows say ``executor: native``).

The shared library is built with the MPI compiler wrapper that belongs to mpi4py's MPI
(:func:`find_compiler`) into a cache keyed by the sources, the compiler and the MPI library
(``$XDG_CACHE_HOME/collbench/native``, default ``~/.cache/collbench/native``). Ranks on a node
take a file lock, so one of them compiles while the others sleep; the result is renamed into
place atomically, so concurrent jobs and nodes sharing a home directory never see a partial
file. :func:`load_agreed` makes every rank agree: if any rank cannot load the library, none
uses it, and the reason is reported once.
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import hashlib
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..algorithms import Buf, Copy
# tags as the Python executor uses them, so both executors put the same messages on the wire
from .python_mpi import _TAG_BASE, _TAG_SPAN
from ..gpu._layout import csrc_dir  # where every C/CUDA source lives ($COLLBENCH_CSRC honoured)
from .bind import LoweredProgram

SOURCE = "native_executor.c"
HEADER = "native_executor.h"
# -fno-trapping-math lets the compiler evaluate both sides of the branch-free 16-bit float
# conversions (so those loops vectorize); it changes no result, only which FP flags may be raised.
CFLAGS = ("-O3", "-fPIC", "-shared", "-fno-fast-math", "-ffp-contract=off", "-fno-trapping-math")
# extra flags (part of the cache key), e.g. -DCB_NO_TARGET_CLONES to build only the baseline loops
CFLAGS_ENV = "COLLBENCH_NATIVE_CFLAGS"
BUILD_TIMEOUT_S = 300
EXECUTORS = ("auto", "native", "python")


class NativeUnavailable(Exception):
    """The native path cannot be used here; the message says why (one line)."""


# -- constants shared with C ---------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def constants() -> dict[str, int]:
    """Every ``#define CB_<NAME> <int>`` of csrc/native_executor.h, without the ``CB_`` prefix."""
    text = (csrc_dir() / HEADER).read_text()
    return {m.group(1): int(m.group(2)) for m in
            re.finditer(r"^#define CB_([A-Z0-9_]+) \(?(-?\d+)\)?\s*$", text, re.MULTILINE)}


def dtype_code(name: str) -> int:
    return constants()[f"DT_{name.upper()}"]


def reduction_code(op: str | None) -> int:
    """avg reduces with sum (the division is a FINALIZE op); None: a schedule without reductions."""
    if op is None:
        return constants()["RED_NONE"]
    return constants()[f"RED_{'SUM' if op == 'avg' else op.upper()}"]


# -- flattening ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlatProgram:
    """A lowered program as the C executor reads it (layout in csrc/native_executor.h).

    Attributes:
        steps: int64 (nsteps, STEP_FIELDS): tag, first_op, nrecv, nsend, nlocal.
        ops: int64 (nops, OP_FIELDS): kind, peer, length, buf0, off0, buf1, off1, buf2, off2.
    """

    steps: np.ndarray
    ops: np.ndarray


def flatten(lowered: LoweredProgram) -> FlatProgram:
    """Flatten ``lowered`` once, outside any timed loop: per step its receives, its sends (both in
    schedule order, so messages between one pair match as in the Python executor), then its
    local ops; an avg result becomes a last step holding one FINALIZE op."""
    c = constants()
    buf_id = {Buf.INPUT: c["BUF_INPUT"], Buf.OUTPUT: c["BUF_OUTPUT"], Buf.SCRATCH: c["BUF_SCRATCH"]}
    steps: list[list[int]] = []
    ops: list[list[int]] = []

    def add(kind: str, peer: int, length: int, *slices) -> None:
        row = [c[f"OP_{kind}"], peer, length]
        for s in slices:
            row += [buf_id[s.buf], s.offset]
        ops.append(row + [-1, 0] * (3 - len(slices)))

    for step in lowered.steps:
        first = len(ops)
        for peer, s in step.recvs:
            add("RECV", peer, s.length, s)
        for peer, s in step.sends:
            add("SEND", peer, s.length, s)
        for item in step.local:
            if isinstance(item, Copy):
                add("COPY", 0, item.dst.length, item.dst, item.src)
            else:
                add("REDUCE", 0, item.dst.length, item.dst, item.a, item.b)
        steps.append([_TAG_BASE + step.index % _TAG_SPAN, first, len(step.recvs), len(step.sends),
                      len(step.local)])
    if lowered.finalize is not None:
        steps.append([_TAG_BASE, len(ops), 0, 0, 1])
        add("FINALIZE", 0, lowered.finalize.length, lowered.finalize)
    step_array = np.array(steps, dtype=np.int64).reshape(len(steps), c["STEP_FIELDS"])
    op_array = np.array(ops, dtype=np.int64).reshape(len(ops), c["OP_FIELDS"])
    return FlatProgram(step_array, op_array)


# -- finding the compiler, building, loading --------------------------------------------------------


def _mpi4py_flavour() -> str:
    """Which MPI ABI mpi4py's extension was built for (``mpich``, ``openmpi``, ``abi``, ...)."""
    from mpi4py import MPI

    parts = Path(MPI.__file__).name.split(".")
    return parts[1] if len(parts) > 3 else ""


def find_compiler() -> tuple[str, str]:
    """(compiler command, where it came from) for building against mpi4py's MPI.

    Order: ``$MPICC``; ``mpicc`` beside the Python executable (the MPICH/Open MPI wheels install
    it there; ``mpicc_abi`` first when mpi4py uses the MPI standard ABI); mpi4py's build
    configuration; ``cc`` on Cray (the Programming Environment's MPI wrapper); ``mpicc`` on PATH.

    Raises:
        NativeUnavailable: none of these exists.
    """
    env = os.environ.get("MPICC")
    if env:
        return env, "$MPICC"
    beside = Path(sys.executable).parent
    names = ("mpicc_abi", "mpicc") if _mpi4py_flavour() == "abi" else ("mpicc",)
    for name in names:
        if (beside / name).is_file():
            return str(beside / name), "beside the Python executable"
    try:
        import mpi4py

        configured = (mpi4py.get_config() or {}).get("mpicc")
    except Exception:  # noqa: BLE001 - an odd mpi4py build must not stop the fallback search
        configured = None
    if configured:
        return configured, "mpi4py's build configuration"
    if (os.environ.get("CRAYPE_VERSION") or os.environ.get("PE_ENV")) and shutil.which("cc"):
        return shutil.which("cc") or "cc", "Cray compiler wrapper"
    on_path = shutil.which("mpicc")
    if on_path:
        return on_path, "PATH"
    raise NativeUnavailable("no MPI compiler wrapper found (set MPICC, or install the MPI's mpicc)")


def loaded_mpi_libraries() -> set[str]:
    """Paths of the MPI libraries mapped into this process (Linux; empty elsewhere)."""
    try:
        with open("/proc/self/maps") as maps:
            return {line.split()[-1] for line in maps
                    if re.search(r"/libmpi[^/]*\.so", line) and line.split()[-1].startswith("/")}
    except OSError:
        return set()


def cflags() -> list[str]:
    return [*CFLAGS, *shlex.split(os.environ.get(CFLAGS_ENV, ""))]


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "collbench" / "native"


def _digest(compiler: str) -> str:
    """Key of a build: sources, flags, the compiler (path and file) and the MPI library."""
    from mpi4py import MPI

    h = hashlib.sha256()
    for name in (SOURCE, HEADER):
        h.update((csrc_dir() / name).read_bytes())
    h.update(" ".join(cflags()).encode())
    words = shlex.split(compiler)
    resolved = shutil.which(words[0]) if words else None
    h.update(compiler.encode())
    if resolved:
        stat = os.stat(resolved)
        h.update(f"{os.path.realpath(resolved)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    h.update(MPI.Get_library_version().encode())
    for path in sorted(loaded_mpi_libraries()):
        stat = os.stat(path)
        h.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return h.hexdigest()


def _build(compiler: str, origin: str, target: Path) -> bool:
    """Compile into ``target`` unless it exists; True when this process compiled it.

    Ranks of one node (and jobs sharing the cache) serialize on a lock file: the first compiles,
    the others sleep in the kernel (no MPI spinning that would starve the compiler) and then
    find the file. The library is written under a temporary name and renamed into place, so no
    one ever loads a partial file, even where the filesystem ignores locks.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_suffix(".lock"), "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
        except OSError:
            pass  # e.g. NFS without lock support: the atomic rename alone keeps it safe
        if target.is_file():
            return False
        tmp = target.with_name(f".{target.name}.{socket.gethostname()}.{os.getpid()}.tmp")
        command = [*shlex.split(compiler), *cflags(), "-I", str(csrc_dir()), "-o", str(tmp),
                   str(csrc_dir() / SOURCE)]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
        except FileNotFoundError:
            raise NativeUnavailable(f"MPI compiler {compiler!r} ({origin}) not found") from None
        except PermissionError:
            raise NativeUnavailable(f"MPI compiler {compiler!r} ({origin}) is not executable") from None
        except subprocess.TimeoutExpired:
            raise NativeUnavailable(f"{compiler} ({origin}) did not finish within {BUILD_TIMEOUT_S} s") from None
        if result.returncode != 0 or not tmp.is_file():
            tmp.unlink(missing_ok=True)
            lines = [ln for ln in (result.stderr or result.stdout).splitlines() if ln.strip()]
            detail = next((ln for ln in lines if "error" in ln.lower()), lines[-1] if lines else "no output")
            raise NativeUnavailable(f"building {SOURCE} with {compiler} ({origin}) failed: {detail.strip()}")
        os.replace(tmp, target)
        return True


def _handle_type(cls: Any) -> Any:
    """ctypes type of an MPI handle: int for MPICH, a pointer for Open MPI and the MPI ABI."""
    from mpi4py import MPI

    size = MPI._sizeof(cls)
    if size == ctypes.sizeof(ctypes.c_void_p):
        return ctypes.c_void_p
    return {4: ctypes.c_int32, 8: ctypes.c_int64}[size]


_double_p = ctypes.POINTER(ctypes.c_double)
_int64_p = ctypes.POINTER(ctypes.c_int64)


@dataclass
class NativeLibrary:
    """The loaded shared library and what produced it (recorded in every results file)."""

    path: Path
    digest: str
    compiler: str
    compiler_origin: str
    built_now: bool
    lib: ctypes.CDLL = field(repr=False)

    def __post_init__(self) -> None:
        from mpi4py import MPI

        self._mpi = MPI
        lib = self.lib
        comm_t, type_t, op_t = _handle_type(MPI.Comm), _handle_type(MPI.Datatype), _handle_type(MPI.Op)
        self.comm_t, self.type_t, self.op_t = comm_t, type_t, op_t
        lib.cb_abi_version.restype = ctypes.c_int
        lib.cb_collective_loop.restype = ctypes.c_int
        lib.cb_collective_loop.argtypes = [ctypes.c_int, comm_t, ctypes.c_void_p, ctypes.c_void_p,
                                           ctypes.c_longlong, type_t, op_t, ctypes.c_int, ctypes.c_int,
                                           ctypes.c_longlong, _double_p, _double_p]
        lib.cb_plan_create.restype = ctypes.c_void_p
        lib.cb_plan_create.argtypes = [comm_t, type_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                       ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                       ctypes.c_longlong, _int64_p, ctypes.c_longlong, _int64_p,
                                       ctypes.c_char_p, ctypes.c_int]
        lib.cb_plan_run.restype = ctypes.c_int
        lib.cb_plan_run.argtypes = [ctypes.c_void_p, ctypes.c_longlong, _double_p, _double_p]
        lib.cb_plan_free.restype = None
        lib.cb_plan_free.argtypes = [ctypes.c_void_p]
        lib.cb_reduce.restype = ctypes.c_int
        lib.cb_reduce.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                  ctypes.c_void_p, ctypes.c_longlong]
        lib.cb_finalize_avg.restype = ctypes.c_int
        lib.cb_finalize_avg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_longlong, ctypes.c_int]

    def handle(self, obj: Any) -> int:
        """The C handle of an mpi4py object (communicator, datatype, op)."""
        return self._mpi._handleof(obj)

    def check(self, rc: int, what: str) -> None:
        if rc == 0:
            return
        if rc < 0:
            raise RuntimeError(f"native executor: {what}: invalid arguments (code {rc})")
        raise RuntimeError(f"native executor: {what}: {self._mpi.Get_error_string(rc)}")

    def metadata(self) -> dict[str, Any]:
        return {"library": str(self.path), "digest": self.digest, "compiler": self.compiler,
                "compiler_origin": self.compiler_origin, "cflags": cflags()}

    # the local arithmetic alone (tests compare it with numpy)

    def reduce(self, op: str, dst: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
        """``dst[:] = a (op) b`` in C; like collbench.algorithms.reduction.reduce_into."""
        self.check(self.lib.cb_reduce(dtype_code(dst.dtype.name), reduction_code(op), dst.ctypes.data,
                                      a.ctypes.data, b.ctypes.data, dst.size), "reduce")

    def finalize_avg(self, out: np.ndarray, nranks: int) -> None:
        """Like collbench.algorithms.reduction.finalize_avg, in C."""
        self.check(self.lib.cb_finalize_avg(dtype_code(out.dtype.name), out.ctypes.data, out.size,
                                            nranks), "finalize")


@functools.lru_cache(maxsize=1)
def load() -> NativeLibrary:
    """Build (or find in the cache) and load the native library for mpi4py's MPI.

    Raises:
        NativeUnavailable: no compiler, a failed build, or a library that does not belong to
            the MPI this process uses.
    """
    compiler, origin = find_compiler()
    digest = _digest(compiler)
    target = cache_dir() / f"libcollbench_native-{digest[:20]}.so"
    try:
        built = _build(compiler, origin, target) if not target.is_file() else False
    except OSError as exc:  # unwritable cache directory and the like
        raise NativeUnavailable(f"cannot build into {target.parent}: {exc}") from None
    before = loaded_mpi_libraries()
    try:
        lib = ctypes.CDLL(str(target))
    except OSError as exc:
        raise NativeUnavailable(f"cannot load {target}: {exc}") from None
    foreign = loaded_mpi_libraries() - before
    if before and foreign:
        raise NativeUnavailable(f"{compiler} ({origin}) links {', '.join(sorted(foreign))}, not the "
                                f"MPI library mpi4py uses ({', '.join(sorted(before))}); set MPICC")
    version = lib.cb_abi_version()
    if version != constants()["ABI_VERSION"]:
        raise NativeUnavailable(f"{target} has ABI {version}, expected {constants()['ABI_VERSION']}")
    return NativeLibrary(target, digest, compiler, origin, built, lib)


def load_agreed(comm: Any) -> tuple[NativeLibrary | None, str | None]:
    """Collective over ``comm``: (library, None) when every rank loaded it, else (None, reason).

    Ranks must never disagree about the path (a native rank and a Python rank would still
    interoperate on the wire, but rows would describe a mix), so one failing rank turns the
    native path off everywhere and its reason is what every rank reports.
    """
    try:
        library, reason = load(), None
    except NativeUnavailable as exc:
        library, reason = None, str(exc)
    reasons = comm.allgather(reason)
    failed = [rank for rank, r in enumerate(reasons) if r]
    if not failed:
        return library, None
    where = "" if len(failed) == len(reasons) else f" (on rank {', '.join(map(str, failed))})"
    return None, reasons[failed[0]] + where


# -- the two native runners -------------------------------------------------------------------------


class _Timed:
    """``batch``/``per_iteration``/``run`` over a C function ``call(iterations, samples, elapsed)``."""

    def _call(self, iterations: int, samples: Any, elapsed: Any) -> int:
        raise NotImplementedError

    def _loop(self, iterations: int, samples: np.ndarray | None) -> float:
        elapsed = ctypes.c_double(0.0)
        pointer = samples.ctypes.data_as(_double_p) if samples is not None else None
        self._native.check(self._call(iterations, pointer, ctypes.byref(elapsed)), self._what)
        return elapsed.value

    def run(self) -> None:
        """One operation (validation, and the Python timing loop if the harness uses it)."""
        self._loop(1, None)

    def batch(self, iterations: int) -> float:
        """Seconds per operation over ``iterations`` back-to-back operations, timed in C."""
        return self._loop(iterations, None) / max(iterations, 1)

    def per_iteration(self, iterations: int) -> np.ndarray:
        """Seconds of each of ``iterations`` operations, timed in C."""
        samples = np.empty(iterations, dtype=np.float64)
        self._loop(iterations, samples)
        return samples


class NativeCollective(_Timed):
    """One native MPI collective, called and timed in C.

    Args:
        native: the loaded library.
        collective: a ``COLL_*`` name (``ALLREDUCE``, ...).
        comm, datatype, op: mpi4py objects (``op`` None for data movement).
        send, recv: numpy arrays whose data pointers MPI gets (``send`` is ignored in place).
        count: MPI's count (per rank for allgather and reduce_scatter_block).
        in_place: pass MPI_IN_PLACE as the send buffer.
    """

    def __init__(self, native: NativeLibrary, collective: str, comm: Any, send: np.ndarray,
                 recv: np.ndarray, count: int, datatype: Any, op: Any, root: int, in_place: bool) -> None:
        from mpi4py import MPI

        self._native = native
        self._what = f"MPI {collective.lower()}"
        self._keep = (send, recv)
        fn = native.lib.cb_collective_loop
        args = (constants()[f"COLL_{collective}"], native.handle(comm), send.ctypes.data,
                recv.ctypes.data, count, native.handle(datatype), native.handle(op if op is not None else MPI.OP_NULL),
                root, int(in_place))
        self._call = lambda iterations, samples, elapsed: fn(*args, iterations, samples, elapsed)


class NativeScheduleRun(_Timed):
    """A lowered program executed in C (the ``native`` executor); the counterpart of
    :class:`collbench.execute.python_mpi.MpiScheduleRun`, with the same arguments.

    Raises:
        NativeUnavailable: the program needs something the C executor does not do (a reduction
            whose output partly overlaps an input); the caller runs it in Python instead.
    """

    def __init__(self, native: NativeLibrary, comm: Any, lowered: LoweredProgram,
                 buffers: dict[Buf, np.ndarray], move_type: Any, dtype_name: str, op: str | None,
                 nranks: int) -> None:
        self._native = native
        self._what = "schedule"
        flat = flatten(lowered)
        dtype = next(iter(buffers.values())).dtype
        scratch = np.empty(max(lowered.scratch_len, 1), dtype=dtype)
        self._keep = (flat, scratch, dict(buffers))
        error = ctypes.create_string_buffer(256)
        plan = native.lib.cb_plan_create(
            native.handle(comm), native.handle(move_type), dtype_code(dtype_name), reduction_code(op),
            nranks, buffers[Buf.INPUT].ctypes.data, buffers[Buf.OUTPUT].ctypes.data, scratch.ctypes.data,
            len(flat.steps), flat.steps.ctypes.data_as(_int64_p), len(flat.ops),
            flat.ops.ctypes.data_as(_int64_p), error, len(error))
        if not plan:
            raise NativeUnavailable(error.value.decode(errors="replace"))
        self._plan = ctypes.c_void_p(plan)
        fn = native.lib.cb_plan_run
        self._call = lambda iterations, samples, elapsed: fn(self._plan, iterations, samples, elapsed)

    def free(self) -> None:
        if self._plan:
            self._native.lib.cb_plan_free(self._plan)
            self._plan = ctypes.c_void_p(None)
