"""Host side of the schedule interpreter (csrc/interp.cu): compile, upload, launch, decode errors.

:class:`InterpOp` is one prepared operation: this rank's device program
(:mod:`collbench.gpu.interp_program`) uploaded next to an :class:`~collbench.gpu.ipc.IpcCommunicator`
(whose in/out/scratch buffers, descriptor and signal buffers it uses: every peer's memory through
the IPC pointers the hand-written kernels already use), and one kernel launch per operation on the
caller's stream, capturable into a CUDA graph (its epochs live on the device).

Buffers follow :func:`collbench.execute.bind.regions`: out of place the input is the
communicator's ``in`` buffer and the output its ``out`` buffer; in place both live in ``out``
(the MPI/NCCL aliasing conventions). The schedule's scratch, and a staging area behind it, is the
communicator's ``scratch`` buffer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from ..algorithms import Buf, Problem, Schedule
from ..execute.bind import Memory, regions
from ..execute.names import ROW_CUDA_INTERP
from .interp_program import DeviceProgram, compile_rank, constants
from .ipc import IpcError, IpcTimeoutError, decode_error
from .kernel_sources import dtype_info, header_constants

SOURCE = "interp.cu"
#: the ``executor`` of a row the interpreter produced
EXECUTOR = ROW_CUDA_INTERP

#: The interpreter's fixed cost per schedule step, in microseconds: a flag round trip between a
#: pair of ranks (``st.release.sys`` of the ready, seen by the peer's ``ld.acquire.sys`` spin,
#: and the done back), plus a grid barrier of the rank when its grid has more than one block.
#: The ``interp`` section of scripts/gpu_kernels_check.py measures it (microseconds per step at 8
#: bytes, next to one-shot and two-shot). On one H200, with the ranks as streams of one process
#: (results/gpu/h200-2026-11-30/), the median over schedules was 7.4 us per step at 2 ranks and
#: 16 us at 8: those ranks share one GPU's SMs and L2 and cross no NVLink, so the figure is no
#: A100 node's constant and no shipped profile carries it. A profile measured on a multi-GPU node
#: may carry it as ``"interp": {"step_us": ..., "source": ...}`` (:func:`step_cost_us`); then
#: ``collbench model predict`` shows ``<algorithm>@interp`` next to each schedule on NCCL p2p
#: (analysis/model/predict.py ``interp_model``: a step inside a node costs this instead of the
#: intra α).
STEP_US: Optional[float] = None


def step_cost_us(profile_record: Optional[dict] = None) -> Optional[float]:
    """The per-step constant: a profile's ``interp.step_us`` when it has one, else :data:`STEP_US`
    (None: not measured)."""
    section = (profile_record or {}).get("interp") or {}
    value = section.get("step_us") if isinstance(section, dict) else None
    return float(value) if value is not None else STEP_US


def kernel_name(op: Optional[str], dtype: str) -> str:
    """The entry point for a run's op and dtype (avg: the sum kernel; the program divides)."""
    kop = "sum" if op in (None, "avg") else op
    return f"interp_{kop}_{dtype}"


def plan_grid(program: DeviceProgram, itemsize: int, max_blocks: int, threads: int) -> int:
    """Blocks for one launch: one thread per 16-byte pack of the largest data instruction, at most
    ``max_blocks`` (one block for small messages: its grid barriers are then a __syncthreads)."""
    c = constants()
    data = np.isin(program.instrs["op"], [c["OP_COPY"], c["OP_REDUCE"], c["OP_DIVIDE"]])
    longest = int(program.instrs["len"][data].max()) if data.any() else 0
    packs = -(-longest * itemsize // 16)
    return max(1, min(max_blocks, -(-packs // threads)))


def scratch_bytes(program: DeviceProgram, itemsize: int) -> int:
    """Bytes of the largest of in/out/scratch the program touches (the communicator's max_bytes)."""
    return max(program.memory_len) * itemsize


def build_program(schedule: Schedule, rank: int, in_place: bool, op: Optional[str]) -> DeviceProgram:
    return compile_rank(schedule, rank, in_place, op)


@dataclass(frozen=True)
class InterpErrorRecord:
    """The interpreter's error record (the IPC record plus what a timed-out wait waited for)."""

    code: int
    block: int
    peer: int
    instruction: int
    expected: int
    seen: int
    rank: int
    waited_us: int
    grid: int
    what: int

    def message(self) -> str:
        c, h = constants(), header_constants()
        if self.code == h["ERR_TIMEOUT"]:
            what = {c["OP_WAIT_READY"]: f"rank {self.peer}'s ready (its buffers holding what this step reads)",
                    c["OP_WAIT_DONE"]: f"rank {self.peer}'s done (its reads of this rank's buffers)",
                    c["WAIT_GRID"]: "the other blocks of this rank (grid barrier: are all blocks resident?)",
                    }.get(self.what, f"rank {self.peer}")
            return (f"rank {self.rank}: schedule interpreter: instruction {self.instruction} of block "
                    f"{self.block}/{self.grid} timed out after {self.waited_us / 1e6:.3f} s waiting for {what} "
                    f"(expected {self.expected}, saw {self.seen}); a peer did not launch the same operation, "
                    "or crashed. The communicator is unusable: close it.")
        if self.code == h["ERR_BAD_LAUNCH"]:
            return (f"rank {self.rank}: schedule interpreter: the program does not match the launch "
                    f"(instruction {self.instruction}); this is a collbench bug")
        return f"rank {self.rank}: schedule interpreter: error code {self.code}"


def decode(words: Sequence[int] | np.ndarray) -> Optional[InterpErrorRecord]:
    """The interpreter's record, or None when the words hold no error or another kernel's."""
    w = [int(x) for x in words]
    if w[0] == 0 or w[1] != constants()["KID"]:
        return None
    return InterpErrorRecord(w[0], w[2], w[3], w[4], w[5], w[6], w[7], w[8], w[9], w[10])


def error_words(ipc: Any, stream: Any = None) -> np.ndarray:
    """Synchronize and read this rank's error record words."""
    cp = ipc._cp
    if stream is not None:
        stream.synchronize()
    else:
        cp.cuda.runtime.deviceSynchronize()
    h = header_constants()
    words = np.zeros(h["ERR_WORDS"], dtype=np.uint32)
    cp.cuda.runtime.memcpy(words.ctypes.data, ipc._sig.ptr + 4 * h["SIG_ERROR_WORD"], words.nbytes,
                           cp.cuda.runtime.memcpyDeviceToHost)
    return words


def _message(words: np.ndarray) -> tuple[str, bool]:
    rec = decode(words)
    if rec is not None:
        return rec.message(), rec.code == header_constants()["ERR_TIMEOUT"]
    ipc_rec = decode_error([int(w) for w in words])
    assert ipc_rec is not None
    return ipc_rec.message(), ipc_rec.code == header_constants()["ERR_TIMEOUT"]


def check_error(ipc: Any, stream: Any = None) -> None:
    """Raise if a kernel (the interpreter or an IPC kernel) recorded an error on this rank."""
    words = error_words(ipc, stream)
    if words[0]:
        message, timeout = _message(words)
        raise (IpcTimeoutError if timeout else IpcError)(message)


def check_error_all(ipc: Any, stream: Any = None) -> None:
    """Collective: raise on every rank if a kernel recorded an error on any rank, naming it
    (:meth:`IpcCommunicator.check_error_all`, decoding the interpreter's records too)."""
    words = error_words(ipc, stream)
    everyone = ipc.comm.allgather(words if words[0] else None)
    failed = [(r, w) for r, w in enumerate(everyone) if w is not None]
    if not failed:
        return
    rank, first = failed[0]
    message, timeout = _message(first)
    if rank != ipc.rank:
        message += f" [reported to rank {ipc.rank}]"
    if len(failed) > 1:
        message += f" (errors also on rank{'s' if len(failed) > 2 else ''} {', '.join(str(r) for r, _ in failed[1:])})"
    timeout = timeout or any(_message(w)[1] for _, w in failed[1:])
    raise (IpcTimeoutError if timeout else IpcError)(message)


class InterpOp:
    """One operation of a schedule on the interpreter, prepared: the program compiled for this
    rank and uploaded, the views the harness fills and reads, and the bound launch.

    Args:
        ipc: the node's :class:`~collbench.gpu.ipc.IpcCommunicator` (every rank of the schedule is
            one of its ranks), or anything with its buffer interface (the GPU check's LocalComm).
        schedule: every rank's program (this rank reads its peers' send sources).
        in_place: the placement.
        dtype, op: the run's (op None for collectives that do not reduce).
        program: this rank's program, if the caller compiled it already.
    """

    def __init__(self, ipc: Any, schedule: Schedule, in_place: bool, dtype: str,
                 op: Optional[str], program: Optional[DeviceProgram] = None) -> None:
        cp = ipc._cp
        problem: Problem = schedule.problem
        if problem.nranks != ipc.nranks:
            raise ValueError(f"a schedule for {problem.nranks} ranks on a communicator of {ipc.nranks}")
        info = dtype_info(dtype)
        self.ipc, self.rank = ipc, ipc.rank
        self.program = program if program is not None else build_program(schedule, ipc.rank, in_place, op)
        need = scratch_bytes(self.program, info.itemsize)
        if need > ipc.max_bytes:
            raise ValueError(f"the interpreter needs {need} bytes per buffer; the communicator holds {ipc.max_bytes}")
        raw = self.program.to_bytes(ipc.max_bytes, info.itemsize)
        self._device_program = cp.empty(raw.size, dtype=cp.uint8)
        self._device_program.set(raw)
        where = regions(problem, ipc.rank, in_place, self.program.scratch_len)
        self.input = self._view(where[Buf.INPUT].memory, where[Buf.INPUT].offset, where[Buf.INPUT].length, dtype)
        self.output = self._view(where[Buf.OUTPUT].memory, where[Buf.OUTPUT].offset, where[Buf.OUTPUT].length, dtype)
        name = kernel_name(op, dtype)
        self.kernel = _kernel(name, dtype)
        cap = ipc.grid_cap(self.kernel, f"{name}/{dtype}")
        self.grid = plan_grid(self.program, info.itemsize, cap, ipc.threads)
        self._args = (np.uint64(ipc._desc.ptr), np.uint64(self._device_program.data.ptr), np.uint64(ipc.timeout_ns))
        self.threads = ipc.threads

    def _view(self, memory: Memory, offset: int, length: int, dtype: str) -> Any:
        full = (self.ipc.input_view if memory is Memory.SEND else self.ipc.output_view)(offset + length, dtype)
        return full[offset:offset + length]

    def launch(self, stream: Any = None) -> None:
        """One operation on ``stream`` (default: the current one); capturable."""
        if stream is None:
            self.kernel((self.grid,), (self.threads,), self._args)
        else:
            with stream:
                self.kernel((self.grid,), (self.threads,), self._args)

    def free(self) -> None:
        self._device_program = None


class ProgramLaunch:
    """One uploaded device program and its bound launch, on an IPC communicator whose ranks are
    the program's (the multi-node composition's parts, :mod:`collbench.gpu.interp_nccl`)."""

    def __init__(self, ipc: Any, program: DeviceProgram, dtype: str, op: Optional[str]) -> None:
        cp = ipc._cp
        if program.nranks != ipc.nranks or program.rank != ipc.rank:
            raise ValueError(f"a program of rank {program.rank}/{program.nranks} on IPC rank {ipc.rank}/{ipc.nranks}")
        info = dtype_info(dtype)
        self.program = program
        raw = program.to_bytes(ipc.max_bytes, info.itemsize)
        self._device_program = cp.empty(raw.size, dtype=cp.uint8)
        self._device_program.set(raw)
        name = kernel_name(op, dtype)
        self.kernel = _kernel(name, dtype)
        self.grid = plan_grid(program, info.itemsize, ipc.grid_cap(self.kernel, f"{name}/{dtype}"), ipc.threads)
        self.threads = ipc.threads
        self._args = (np.uint64(ipc._desc.ptr), np.uint64(self._device_program.data.ptr), np.uint64(ipc.timeout_ns))

    def launch(self, stream: Any) -> None:
        with stream:
            self.kernel((self.grid,), (self.threads,), self._args)

    def free(self) -> None:
        self._device_program = None


def _kernel(name: str, dtype: str) -> Any:
    from .kernels import get_kernel

    return get_kernel(SOURCE, name, dtype)
