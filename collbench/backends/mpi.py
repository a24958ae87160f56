"""The MPI backend: native MPI collectives on numpy host buffers (mpi4py)."""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from ..algorithms import Collective, Layout, Problem, vcounts
from ..compress.names import is_compressed
from ..dtypes import DType
from ..errors import UsageError
from ..execute.bind import bind, views_of
from ..execute.c_build import NativeUnavailable, load_agreed
from ..execute.c_executor import NativeAlltoallv, NativeCollective, NativeScheduleRun
from ..execute.names import EXECUTOR_CHOICES as EXECUTORS
from ..execute.names import ROW_C, ROW_LIBRARY_C, ROW_PYTHON
from ..execute.programs import algorithm_unsupported_reason, build_program
from ..execute.python_mpi import MpiScheduleRun
from ..execute.runner import prepared_op
from .base import Backend, Capabilities, OpRequest, Placement, PreparedOp, Timer

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
                      Collective.BROADCAST, Collective.REDUCE, Collective.ALLTOALL,
                      Collective.ALLTOALLV}),
    schedules=True,  # every registered schedule, over point-to-point (Python or C executor)
    native_notes={Collective.BROADCAST: "in place only", Collective.ALLTOALLV: "out of place only"})


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


# -- native calls: one entry per collective --------------------------------------------------------
# Each returns (call, send view, receive view, whether mpi4py passes MPI_IN_PLACE): the views are
# what the harness fills and reads, and what the C loop gets (their data pointers) for the same call.
NativeCall = tuple[Callable[[], Any], np.ndarray, np.ndarray, bool]


def _spec(view: np.ndarray, datatype: Any, n: int | None = None) -> list[Any]:
    return [view, view.size if n is None else n, datatype]


def _allreduce(b: "MpiBackend", req: OpRequest, datatype: Any, op: Any) -> NativeCall:
    in_place = req.placement is Placement.IN_PLACE
    recv = b._typed(b._recv, req.dtype, req.count)
    send = recv if in_place else b._typed(b._send, req.dtype, req.count)
    sspec, rspec = (b._mpi.IN_PLACE if in_place else _spec(send, datatype)), _spec(recv, datatype)
    return (lambda: b.comm.Allreduce(sspec, rspec, op)), send, recv, in_place


def _allgather(b: "MpiBackend", req: OpRequest, datatype: Any, op: Any) -> NativeCall:
    in_place, count = req.placement is Placement.IN_PLACE, req.count
    recv = b._typed(b._recv, req.dtype, count * b.size)
    send = (b._typed(b._recv, req.dtype, count, b.rank * count) if in_place
            else b._typed(b._send, req.dtype, count))
    sspec = b._mpi.IN_PLACE if in_place else _spec(send, datatype)
    rspec = _spec(recv, datatype, count)
    return (lambda: b.comm.Allgather(sspec, rspec)), send, recv, in_place


def _reduce_scatter(b: "MpiBackend", req: OpRequest, datatype: Any, op: Any) -> NativeCall:
    in_place, count = req.placement is Placement.IN_PLACE, req.count
    if in_place:  # MPI leaves the result at the start of the receive buffer
        buf = b._typed(b._recv, req.dtype, count * b.size)
        sspec, rspec, send, recv = b._mpi.IN_PLACE, [buf, datatype], buf, buf[:count]
    else:
        send = b._typed(b._send, req.dtype, count * b.size)
        recv = b._typed(b._recv, req.dtype, count)
        sspec, rspec = [send, datatype], [recv, datatype]
    return (lambda: b.comm.Reduce_scatter_block(sspec, rspec, op)), send, recv, in_place


def _broadcast(b: "MpiBackend", req: OpRequest, datatype: Any, op: Any) -> NativeCall:
    buf = b._typed(b._recv, req.dtype, req.count)  # in place only (unsupported_reason)
    bspec, root = _spec(buf, datatype), req.root
    return (lambda: b.comm.Bcast(bspec, root)), buf, buf, False


def _reduce(b: "MpiBackend", req: OpRequest, datatype: Any, op: Any) -> NativeCall:
    in_place, root = req.placement is Placement.IN_PLACE, req.root
    recv = b._typed(b._recv, req.dtype, req.count)
    send = recv if in_place else b._typed(b._send, req.dtype, req.count)
    mpi_in_place = in_place and b.rank == root  # only the root may pass MPI_IN_PLACE
    sspec = b._mpi.IN_PLACE if mpi_in_place else _spec(send, datatype)
    rspec = _spec(recv, datatype)
    return (lambda: b.comm.Reduce(sspec, rspec, op, root)), send, recv, mpi_in_place


def _alltoall(b: "MpiBackend", req: OpRequest, datatype: Any, op: Any) -> NativeCall:
    """MPI_Alltoall with ``count`` elements per peer; in place the one buffer is both."""
    in_place, count = req.placement is Placement.IN_PLACE, req.count
    recv = b._typed(b._recv, req.dtype, count * b.size)
    send = recv if in_place else b._typed(b._send, req.dtype, count * b.size)
    sspec = b._mpi.IN_PLACE if in_place else _spec(send, datatype, count)
    rspec = _spec(recv, datatype, count)
    return (lambda: b.comm.Alltoall(sspec, rspec)), send, recv, in_place


def _alltoallv(b: "MpiBackend", req: OpRequest, datatype: Any, op: Any) -> NativeCall:
    """MPI_Alltoallv with the problem's count matrix and packed displacements (out of place
    only: MPI_IN_PLACE would need a symmetric matrix)."""
    c = vcounts.of(b.problem(req))
    r = b.rank
    send = b._typed(b._send, req.dtype, int(c.send_total[r]))
    recv = b._typed(b._recv, req.dtype, int(c.recv_total[r]))
    layout = [np.ascontiguousarray(a, dtype=np.int32) for a in
              (c.matrix[r], c.sdispls[r], c.matrix[:, r], c.rdispls[r])]
    sspec = [send, (layout[0], layout[1]), datatype]
    rspec = [recv, (layout[2], layout[3]), datatype]
    b._alltoallv_layout = layout  # the C loop gets the same arrays
    return (lambda: b.comm.Alltoallv(sspec, rspec)), send, recv, False


_NATIVE_CALLS: dict[Collective, Callable[["MpiBackend", OpRequest, Any, Any], NativeCall]] = {
    Collective.ALLREDUCE: _allreduce, Collective.ALLGATHER: _allgather,
    Collective.REDUCE_SCATTER: _reduce_scatter, Collective.BROADCAST: _broadcast,
    Collective.REDUCE: _reduce, Collective.ALLTOALL: _alltoall, Collective.ALLTOALLV: _alltoallv,
}


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
        self._alltoallv_layout: list[np.ndarray] = []  # the last native alltoallv's counts (for C)
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
        return Problem(request.collective, self.size, request.count, request.root, self.layout,
                       request.skew)

    def unsupported_reason(self, request: OpRequest) -> str | None:
        if is_compressed(request.algorithm):  # a runner over mpi4py, not a schedule (compress/)
            from ..compress.backend import unsupported_reason as compressed_reason

            return compressed_reason(request, self.options_for(request))
        if request.algorithm != "native":
            # custom schedules reduce locally with numpy: every dtype and op works
            return algorithm_unsupported_reason(request.algorithm, self.problem(request), request.op,
                                                self.options_for(request))
        coll = request.collective
        if coll.reduces:
            if request.op == "avg":
                return "MPI has no native average operator (MPI_SUM then a division is not one collective)"
            if self._mpi_type(request.dtype, for_reduction=True) is None:
                return (f"this MPI library has no {request.dtype.name} datatype "
                        f"(MPI_{_MPI_TYPE_NAMES[request.dtype.name]} is null), so it cannot reduce it")
        if coll is Collective.BROADCAST and request.placement is Placement.OUT_OF_PLACE:
            return "MPI_Bcast works in place only"
        if coll is Collective.ALLTOALLV and request.placement is Placement.IN_PLACE:
            return "MPI_Alltoallv in place needs a symmetric count matrix: native alltoallv runs out of place only"
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
        if is_compressed(request.algorithm):  # a runner over mpi4py, not a schedule (compress/)
            from ..compress.backend import prepare as prepare_compressed

            return prepare_compressed(request, self.comm, self._send, self._recv, self.options_for(request))
        if request.algorithm != "native":
            return self._prepare_schedule(request)
        coll = request.collective
        datatype = self._mpi_type(request.dtype, for_reduction=coll.reduces)
        op = getattr(self._mpi, _MPI_OP_NAMES[request.op]) if coll.reduces else None
        call, send, recv, mpi_in_place = _NATIVE_CALLS[coll](self, request, datatype, op)
        return self._native_or(PreparedOp(call, send, recv), request, send, recv, request.count,
                               datatype, op, mpi_in_place)

    def _native_or(self, python: PreparedOp, request: OpRequest, send: np.ndarray, recv: np.ndarray,
                   count: int, datatype: Any, op: Any, mpi_in_place: bool) -> PreparedOp:
        """The same MPI call, made and timed by the C executor when it is on.

        ``send``/``recv`` are the buffers mpi4py gets (their data pointers go to C unchanged) and
        ``mpi_in_place`` says where mpi4py passes MPI_IN_PLACE, so both paths make one call.
        """
        if self.native is None:
            return python
        if request.collective is Collective.ALLTOALLV:  # counts per peer: a loop of its own
            loop: Any = NativeAlltoallv(self.native, self.comm, send, recv, self._alltoallv_layout, datatype)
        else:
            loop = NativeCollective(self.native, request.collective.name, self.comm, send, recv, count,
                                    datatype, op, request.root, mpi_in_place)
        return prepared_op(loop, python.input, python.output, ROW_LIBRARY_C)

    def _prepare_schedule(self, request: OpRequest) -> PreparedOp:
        problem = self.problem(request)
        program = build_program(request.algorithm, problem, self.rank, self.options_for(request))
        bound = bind(problem, program, request.placement is Placement.IN_PLACE, request.op,
                     views_of(self._send, self._recv, request.dtype, self._typed))
        move_type = getattr(self._mpi, _MOVE_TYPE_NAMES[request.dtype.itemsize])
        if self.native is not None:
            try:
                plan = NativeScheduleRun(self.native, self.comm, bound.lowered, bound.buffers, move_type,
                                         request.dtype.name, request.op, self.size)
            except NativeUnavailable:
                pass  # a program the C executor refuses (see csrc/native_executor.c): Python runs it
            else:
                return prepared_op(plan, bound.input, bound.output, ROW_C)
        runner = MpiScheduleRun(self.comm, bound.lowered, bound.buffers, move_type, request.op, self.size)
        return prepared_op(runner, bound.input, bound.output, ROW_PYTHON)

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
