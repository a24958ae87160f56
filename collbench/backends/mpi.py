"""The MPI backend: native MPI collectives on numpy host buffers (mpi4py)."""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from ..algorithms import Collective, Layout, Problem
from ..dtypes import DType
from ..errors import UsageError
from ..execute.bind import lower
from ..execute.c_executor import EXECUTORS, NativeCollective, NativeScheduleRun, NativeUnavailable
from ..execute.c_executor import load_agreed
from ..execute.programs import algorithm_unsupported_reason, build_program
from .base import Backend, Capabilities, OpRequest, Placement, PreparedOp, Timer
from ..execute.python_mpi import MpiScheduleRun, host_buffers

# MPI datatype attribute per dtype; 16-bit floats exist only in MPI 4.1+/MPICH 4+ libraries.
_MPI_TYPE_NAMES = {"int8": "INT8_T", "uint8": "UINT8_T", "int32": "INT32_T", "uint32": "UINT32_T",
                   "int64": "INT64_T", "uint64": "UINT64_T", "float16": "FLOAT16_T",
                   "bfloat16": "BFLOAT16_T", "float32": "FLOAT", "float64": "DOUBLE"}
# Data movement does not care about the type: move 16-bit floats as 16-bit words if need be.
_MOVE_TYPE_NAMES = {1: "UINT8_T", 2: "UINT16_T", 4: "UINT32_T", 8: "UINT64_T"}
_MPI_OP_NAMES = {"sum": "SUM", "prod": "PROD", "max": "MAX", "min": "MIN"}

_ALIGNMENT = 64

CAPABILITIES = Capabilities(
    backend="mpi", needs=("mpi4py",),
    native=frozenset({Collective.ALLREDUCE, Collective.ALLGATHER, Collective.REDUCE_SCATTER,
                      Collective.BROADCAST, Collective.REDUCE}),
    schedules=True,  # every registered schedule, over point-to-point (Python or C executor)
    native_notes={Collective.BROADCAST: "in place only"})


def aligned_bytes(nbytes: int) -> np.ndarray:
    """A zeroed uint8 array whose data starts on a 64-byte boundary (like cudaMalloc/malloc)."""
    raw = np.zeros(nbytes + _ALIGNMENT, dtype=np.uint8)
    start = (-raw.ctypes.data) % _ALIGNMENT
    return raw[start:start + nbytes]


def typed(buffer: np.ndarray, dtype: DType, count: int, offset: int = 0) -> np.ndarray:
    """``count`` elements of ``dtype`` starting at element ``offset`` of a byte buffer."""
    start = offset * dtype.itemsize
    return buffer[start:start + count * dtype.itemsize].view(dtype.numpy)


class HostTimer(Timer):
    """Wall-clock timing of blocking host calls (perf_counter: monotonic, sub-µs resolution)."""

    def batch(self, run: Callable[[], None], iterations: int) -> float:
        start = time.perf_counter()
        for _ in range(iterations):
            run()
        return (time.perf_counter() - start) / iterations

    def per_iteration(self, run: Callable[[], None], iterations: int) -> np.ndarray:
        samples = np.empty(iterations, dtype=np.float64)
        clock = time.perf_counter
        for i in range(iterations):
            start = clock()
            run()
            samples[i] = clock() - start
        return samples


class MpiBackend(Backend):
    """Native MPI collectives (and, through the schedule executor, custom algorithms).

    Args:
        comm: the communicator to measure on; it is duplicated so that collbench's own control
            traffic (iteration broadcasts, timing gathers) never matches a measured message.
        layout: which ranks share a node (hierarchical algorithms); default one node.
        algorithm_options: options for custom algorithms (e.g. hierarchical inner/outer).
        executor: ``python`` (mpi4py calls timed in Python, schedules run by MpiScheduleRun),
            ``native`` (collbench's C loops, collbench/native.py; UsageError when they cannot be
            built) or ``auto`` (native when it builds, else python). Collective over ``comm``.
    """

    name = "mpi"
    capabilities = CAPABILITIES

    def __init__(self, comm: Any, layout: Layout | None = None,
                 algorithm_options: dict[str, str] | None = None, executor: str = "python") -> None:
        from mpi4py import MPI  # imported by the caller after choosing the thread level

        self._mpi = MPI
        self.comm = comm.Dup()
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self.timer = HostTimer()
        self._send = aligned_bytes(0)
        self._recv = aligned_bytes(0)
        self.layout = layout
        self.algorithm_options = dict(algorithm_options or {})
        self.executor_requested = executor
        self.native, self.native_reason = None, None
        if executor in ("auto", "native"):
            self.native, self.native_reason = load_agreed(self.comm)
            if self.native is None and executor == "native":
                raise UsageError(f"--executor native: the native path is unavailable: {self.native_reason}")
        elif executor != "python":
            raise UsageError(f"unknown executor {executor!r} (known: {', '.join(EXECUTORS)})")

    # -- capabilities -------------------------------------------------------------------------

    def _mpi_type(self, dtype: DType, for_reduction: bool) -> Any | None:
        datatype = getattr(self._mpi, _MPI_TYPE_NAMES[dtype.name], self._mpi.DATATYPE_NULL)
        if datatype == self._mpi.DATATYPE_NULL:
            if for_reduction:
                return None
            datatype = getattr(self._mpi, _MOVE_TYPE_NAMES[dtype.itemsize])
        return datatype

    def problem(self, request: OpRequest) -> Problem:
        return Problem(request.collective, self.size, request.count, request.root, self.layout)

    def unsupported_reason(self, request: OpRequest) -> str | None:
        if request.algorithm != "native":
            # custom schedules reduce locally with numpy: every dtype and op works
            return algorithm_unsupported_reason(request.algorithm, self.problem(request), request.op,
                                                self.algorithm_options)
        coll = request.collective
        if coll.reduces:
            if request.op == "avg":
                return "MPI has no native average operator (MPI_SUM then a division is not one collective)"
            if self._mpi_type(request.dtype, for_reduction=True) is None:
                return (f"this MPI library has no {request.dtype.name} datatype "
                        f"(MPI_{_MPI_TYPE_NAMES[request.dtype.name]} is null), so it cannot reduce it")
        if coll is Collective.BROADCAST and request.placement is Placement.OUT_OF_PLACE:
            return "MPI_Bcast works in place only"
        return None

    # -- buffers ------------------------------------------------------------------------------

    def _typed(self, buffer: Any, dtype: DType, count: int, offset: int = 0) -> Any:
        return typed(buffer, dtype, count, offset)

    def reserve(self, max_bytes: int, dtypes: list[DType]) -> None:
        if self._send.nbytes < max_bytes:
            self._send = aligned_bytes(max_bytes)
            self._recv = aligned_bytes(max_bytes)

    def write(self, view: np.ndarray, data: np.ndarray) -> None:
        view[...] = data

    def read(self, view: np.ndarray) -> np.ndarray:
        return np.array(view, copy=True)

    # -- native collectives -------------------------------------------------------------------

    def prepare(self, request: OpRequest) -> PreparedOp:
        self.check_supported(request)
        if request.algorithm != "native":
            return self._prepare_schedule(request)
        MPI = self._mpi
        comm, p, rank = self.comm, self.size, self.rank
        dtype, count, coll = request.dtype, request.count, request.collective
        datatype = self._mpi_type(dtype, for_reduction=coll.reduces)
        op = getattr(MPI, _MPI_OP_NAMES[request.op]) if coll.reduces else None
        in_place = request.placement is Placement.IN_PLACE
        root = request.root

        def spec(view: np.ndarray, n: int | None = None) -> list[Any]:
            return [view, view.size if n is None else n, datatype]

        if coll is Collective.ALLREDUCE:
            recv = self._typed(self._recv, dtype, count)
            send = recv if in_place else self._typed(self._send, dtype, count)
            sspec, rspec = (MPI.IN_PLACE if in_place else spec(send)), spec(recv)
            call = comm.Allreduce
            return self._native_or(PreparedOp(lambda: call(sspec, rspec, op), send, recv), request,
                                   send, recv, count, datatype, op, in_place)
        if coll is Collective.ALLGATHER:
            recv = self._typed(self._recv, dtype, count * p)
            send = self._typed(self._recv, dtype, count, rank * count) if in_place else self._typed(self._send, dtype, count)
            sspec, rspec = (MPI.IN_PLACE if in_place else spec(send)), spec(recv, count)
            call = comm.Allgather
            return self._native_or(PreparedOp(lambda: call(sspec, rspec), send, recv), request,
                                   send, recv, count, datatype, op, in_place)
        if coll is Collective.REDUCE_SCATTER:
            if in_place:  # MPI leaves the result at the start of the receive buffer
                buf = self._typed(self._recv, dtype, count * p)
                sspec, rspec, send, recv = MPI.IN_PLACE, [buf, datatype], buf, buf[:count]
            else:
                send = self._typed(self._send, dtype, count * p)
                recv = self._typed(self._recv, dtype, count)
                sspec, rspec = [send, datatype], [recv, datatype]
            call = comm.Reduce_scatter_block
            return self._native_or(PreparedOp(lambda: call(sspec, rspec, op), send, recv), request,
                                   send, recv, count, datatype, op, in_place)
        if coll is Collective.BROADCAST:  # in place only (checked above)
            buf = self._typed(self._recv, dtype, count)
            bspec = spec(buf)
            call = comm.Bcast
            return self._native_or(PreparedOp(lambda: call(bspec, root), buf, buf), request,
                                   buf, buf, count, datatype, op, False)
        if coll is Collective.REDUCE:
            recv = self._typed(self._recv, dtype, count)
            send = recv if in_place else self._typed(self._send, dtype, count)
            if in_place and rank == root:
                sspec = MPI.IN_PLACE
            else:
                sspec = spec(send)
            rspec = spec(recv)
            call = comm.Reduce
            return self._native_or(PreparedOp(lambda: call(sspec, rspec, op, root), send, recv),
                                   request, send, recv, count, datatype, op, in_place and rank == root)
        raise ValueError(f"unknown collective {coll}")

    def _native_or(self, python: PreparedOp, request: OpRequest, send: np.ndarray, recv: np.ndarray,
                   count: int, datatype: Any, op: Any, mpi_in_place: bool) -> PreparedOp:
        """The same MPI call, made and timed by the C loop when the native path is on.

        ``send``/``recv`` are the buffers mpi4py gets (their data pointers go to C unchanged) and
        ``mpi_in_place`` says where mpi4py passes MPI_IN_PLACE, so both paths make one call.
        """
        if self.native is None:
            return python
        loop = NativeCollective(self.native, request.collective.name, self.comm, send, recv, count,
                                datatype, op, request.root, mpi_in_place)
        return PreparedOp(loop.run, python.input, python.output, executor="library+native",
                          batch=loop.batch, per_iteration=loop.per_iteration)

    def _prepare_schedule(self, request: OpRequest) -> PreparedOp:
        problem = self.problem(request)
        in_place = request.placement is Placement.IN_PLACE
        program = build_program(request.algorithm, problem, self.rank, self.algorithm_options)
        lowered = lower(problem, program, in_place, request.op)
        size = max(problem.input_len(self.rank), problem.output_len(self.rank))
        send = self._typed(self._send, request.dtype, size)
        recv = self._typed(self._recv, request.dtype, size)
        buffers, inp, out = host_buffers(problem, self.rank, in_place, send, recv)
        move_type = getattr(self._mpi, _MOVE_TYPE_NAMES[request.dtype.itemsize])
        if self.native is not None:
            try:
                plan = NativeScheduleRun(self.native, self.comm, lowered, buffers, move_type,
                                         request.dtype.name, request.op, self.size)
            except NativeUnavailable:
                pass  # a program the C executor refuses (see csrc/native_executor.c): Python runs it
            else:
                return PreparedOp(plan.run, inp, out, executor="native", teardown=plan.free,
                                  batch=plan.batch, per_iteration=plan.per_iteration)
        runner = MpiScheduleRun(self.comm, lowered, buffers, move_type, request.op, self.size)
        return PreparedOp(runner.run, inp, out, executor="python", teardown=runner.free)

    def executor_metadata(self) -> dict[str, Any]:
        """Which path produced the rows, and (native) the library, its digest and compiler."""
        path = "native" if self.native is not None else "python"
        record: dict[str, Any] = {"requested": self.executor_requested, "path": path}
        if self.native is not None:
            record.update(self.native.metadata())
            record["summary"] = (f"native (C loops; {self.native.path.name}, built with "
                                 f"{self.native.compiler})")
        else:
            record["summary"] = "python" + (f" (native path unavailable: {self.native_reason})"
                                            if self.native_reason else "")
            if self.native_reason:
                record["unavailable"] = self.native_reason
        return record

    def metadata(self) -> dict[str, Any]:
        return {"backend": self.name, "executor": self.executor_metadata()}

    def close(self) -> None:
        self.comm.Free()
