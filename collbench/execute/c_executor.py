"""The C executor: collbench's C loops (csrc/native_executor.c) running what Python prepared.

Two runners (both :class:`collbench.execute.runner.ScheduleRunner`, timing themselves in C):

* :class:`NativeCollective`: the timed loop of a library MPI collective, the same MPI call that
  mpi4py makes, repeated and timed in C, so small messages are not measured with Python's
  per-call cost in them (rows say ``executor: library+native``);
* :class:`NativeScheduleRun`: a whole bound schedule. The lowered program is flattened once
  (:func:`.c_binding.flatten`) into integer tables, bound to pointers and reduction functions in
  C, and each run posts every step's messages with MPI_Irecv/MPI_Isend + MPI_Waitall and runs the
  local copies and reductions in C (rows say ``executor: native``).

The library comes from :func:`.c_build.load` / :func:`.c_build.load_agreed`.
"""

from __future__ import annotations

import ctypes
from typing import Any, Callable, Mapping

import numpy as np

from ..algorithms import Buf
from .bind import LoweredProgram
from .c_binding import DOUBLE_P, INT64_P, NativeLibrary, constants, dtype_code, flatten, reduction_code

# Re-exported so callers that load the library and run it import one module (tests/cbtest.py,
# collbench/analysis/calibrate.py).
from .c_build import NativeUnavailable, load, load_agreed

__all__ = ["NativeAlltoallv", "NativeCollective", "NativeScheduleRun", "NativeUnavailable", "load",
           "load_agreed"]


class _Timed:
    """``run``/``batch``/``per_iteration``/``free`` over a C function ``call(iterations, samples,
    elapsed)`` that runs and times ``iterations`` operations."""

    _native: NativeLibrary
    _what: str
    _call: Callable[[int, Any, Any], int]

    def _loop(self, iterations: int, samples: np.ndarray | None) -> float:
        elapsed = ctypes.c_double(0.0)
        pointer = samples.ctypes.data_as(DOUBLE_P) if samples is not None else None
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

    def free(self) -> None:
        """Nothing to release unless the runner holds C state (see NativeScheduleRun)."""


class NativeCollective(_Timed):
    """One library MPI collective, called and timed by the C executor.

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


class NativeAlltoallv(_Timed):
    """MPI_Alltoallv called and timed by the C executor (out of place).

    Args:
        native: the loaded library.
        comm, datatype: mpi4py objects.
        send, recv: numpy arrays whose data pointers MPI gets.
        layout: int32 arrays (send counts, send displacements, receive counts, receive
            displacements), in elements, exactly what mpi4py's Alltoallv passes.
    """

    def __init__(self, native: NativeLibrary, comm: Any, send: np.ndarray, recv: np.ndarray,
                 layout: tuple[np.ndarray, ...] | list[np.ndarray], datatype: Any) -> None:
        self._native = native
        self._what = "MPI alltoallv"
        arrays = [np.ascontiguousarray(a, dtype=np.int32) for a in layout]
        self._keep = (send, recv, arrays)
        fn = native.lib.cb_alltoallv_loop
        args = (native.handle(comm), send.ctypes.data, arrays[0].ctypes.data, arrays[1].ctypes.data,
                recv.ctypes.data, arrays[2].ctypes.data, arrays[3].ctypes.data, native.handle(datatype))
        self._call = lambda iterations, samples, elapsed: fn(*args, iterations, samples, elapsed)


class NativeScheduleRun(_Timed):
    """A lowered program executed by the C executor (rows say ``native``); the counterpart of
    :class:`collbench.execute.python_mpi.MpiScheduleRun`, with the same arguments.

    Raises:
        NativeUnavailable: the program needs something the C executor does not do (a reduction
            whose output partly overlaps an input); the caller runs it in Python instead.
    """

    def __init__(self, native: NativeLibrary, comm: Any, lowered: LoweredProgram,
                 buffers: Mapping[Buf, np.ndarray], move_type: Any, dtype_name: str, op: str | None,
                 nranks: int) -> None:
        self._native = native
        self._what = "schedule"
        self.lowered = lowered  # what collbench.trace labels each traced step with
        flat = flatten(lowered)
        dtype = next(iter(buffers.values())).dtype
        scratch = np.empty(max(lowered.scratch_len, 1), dtype=dtype)
        self._keep = (flat, scratch, dict(buffers))
        error = ctypes.create_string_buffer(256)
        plan = native.lib.cb_plan_create(
            native.handle(comm), native.handle(move_type), dtype_code(dtype_name), reduction_code(op),
            nranks, buffers[Buf.INPUT].ctypes.data, buffers[Buf.OUTPUT].ctypes.data, scratch.ctypes.data,
            len(flat.steps), flat.steps.ctypes.data_as(INT64_P), len(flat.ops),
            flat.ops.ctypes.data_as(INT64_P), error, len(error))
        if not plan:
            raise NativeUnavailable(error.value.decode(errors="replace"))
        self._plan = ctypes.c_void_p(plan)
        fn = native.lib.cb_plan_run
        self._call = lambda iterations, samples, elapsed: fn(self._plan, iterations, samples, elapsed)

    def trace(self, iterations: int) -> np.ndarray:
        """``iterations`` runs with per-step CLOCK_MONOTONIC nanoseconds, int64 (iterations,
        steps, 4): post, posted, completed, local done (steps include avg's finalize). A
        separate C function, so the timed loops carry no tracing cost."""
        nsteps = len(self.lowered.steps) + (self.lowered.finalize is not None)
        stamps = np.zeros((iterations, nsteps, 4), dtype=np.int64)
        self._native.check(self._native.lib.cb_plan_trace(
            self._plan, iterations, stamps.ctypes.data_as(INT64_P)), "traced schedule")
        return stamps

    def free(self) -> None:
        if self._plan:
            self._native.lib.cb_plan_free(self._plan)
            self._plan = ctypes.c_void_p(None)
