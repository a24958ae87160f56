"""The contract between Python and the C executor (csrc/native_executor.h) and its ctypes binding.

* the constants (every ``#define CB_<NAME> <int>`` of the header: dtype, reduction, buffer and
  op codes, table layouts), read from the header so the two sides cannot disagree;
* :func:`flatten`: a lowered program as the two integer tables the C executor reads;
* :class:`NativeLibrary`: the loaded library with every function's ctypes signature declared
  once, so no call converts arguments by guesswork.

Building and loading the library is :mod:`.c_build`'s job; the executors are in :mod:`.c_executor`.
"""

from __future__ import annotations

import ctypes
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..algorithms import Buf, Copy, Slice
from ..gpu.kernel_sources import (
    csrc_dir,  # where every C/CUDA source lives ($COLLBENCH_CSRC honoured)
)
from .bind import LoweredProgram
from .tags import TAG_BASE, step_tag

HEADER = "native_executor.h"


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

    def add(kind: str, peer: int, length: int, *slices: Slice) -> None:
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
        steps.append([step_tag(step.index), first, len(step.recvs), len(step.sends), len(step.local)])
    if lowered.finalize is not None:
        steps.append([TAG_BASE, len(ops), 0, 0, 1])  # no messages: the tag is never used
        add("FINALIZE", 0, lowered.finalize.length, lowered.finalize)
    step_array = np.array(steps, dtype=np.int64).reshape(len(steps), c["STEP_FIELDS"])
    op_array = np.array(ops, dtype=np.int64).reshape(len(ops), c["OP_FIELDS"])
    return FlatProgram(step_array, op_array)


# -- the ctypes binding ------------------------------------------------------------------------------


def _handle_type(cls: Any) -> Any:
    """ctypes type of an MPI handle: int for MPICH, a pointer for Open MPI and the MPI ABI."""
    from mpi4py import MPI

    size = MPI._sizeof(cls)
    if size == ctypes.sizeof(ctypes.c_void_p):
        return ctypes.c_void_p
    return {4: ctypes.c_int32, 8: ctypes.c_int64}[size]


# pointer types of the tables and timing outputs (the executors pass arrays as these)
DOUBLE_P = ctypes.POINTER(ctypes.c_double)
INT64_P = ctypes.POINTER(ctypes.c_int64)


@dataclass
class NativeLibrary:
    """The C executor's loaded shared library, its functions typed for ctypes, and what produced
    it (recorded in every results file); :func:`collbench.execute.c_build.load` makes one."""

    path: Path
    digest: str
    compiler: str
    compiler_origin: str
    built_now: bool
    cflags: tuple[str, ...]
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
                                           ctypes.c_longlong, DOUBLE_P, DOUBLE_P]
        lib.cb_alltoallv_loop.restype = ctypes.c_int
        lib.cb_alltoallv_loop.argtypes = [comm_t, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                          ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, type_t,
                                          ctypes.c_longlong, DOUBLE_P, DOUBLE_P]
        lib.cb_plan_create.restype = ctypes.c_void_p
        lib.cb_plan_create.argtypes = [comm_t, type_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                       ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                       ctypes.c_longlong, INT64_P, ctypes.c_longlong, INT64_P,
                                       ctypes.c_char_p, ctypes.c_int]
        lib.cb_plan_run.restype = ctypes.c_int
        lib.cb_plan_run.argtypes = [ctypes.c_void_p, ctypes.c_longlong, DOUBLE_P, DOUBLE_P]
        lib.cb_plan_trace.restype = ctypes.c_int   # collbench trace: per-step timestamps
        lib.cb_plan_trace.argtypes = [ctypes.c_void_p, ctypes.c_longlong, INT64_P]
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
            raise RuntimeError(f"C executor: {what}: invalid arguments (code {rc})")
        raise RuntimeError(f"C executor: {what}: {self._mpi.Get_error_string(rc)}")

    def metadata(self) -> dict[str, Any]:
        return {"library": str(self.path), "digest": self.digest, "compiler": self.compiler,
                "compiler_origin": self.compiler_origin, "cflags": list(self.cflags)}

    # the local arithmetic alone (tests compare it with numpy)

    def reduce(self, op: str, dst: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
        """``dst[:] = a (op) b`` in C; like collbench.algorithms.reduction.reduce_into."""
        self.check(self.lib.cb_reduce(dtype_code(dst.dtype.name), reduction_code(op), dst.ctypes.data,
                                      a.ctypes.data, b.ctypes.data, dst.size), "reduce")

    def finalize_avg(self, out: np.ndarray, nranks: int) -> None:
        """Like collbench.algorithms.reduction.finalize_avg, in C."""
        self.check(self.lib.cb_finalize_avg(dtype_code(out.dtype.name), out.ctypes.data, out.size,
                                            nranks), "finalize")
