"""Intra-node collectives over CUDA IPC peer pointers (csrc/ipc_collectives.cu).

:class:`IpcCommunicator` owns four device buffers per rank (input, output and scratch of
``max_bytes`` each, plus a small signal buffer for the flag barriers), shares them with the other
ranks of an intra-node MPI communicator through CUDA IPC handles, and launches exactly one kernel
per collective. The harness copies data into :meth:`IpcCommunicator.send_view` (or
``input_view``) and reads :meth:`IpcCommunicator.recv_view` (or ``output_view``).

CUDA graphs. Each collective is a single kernel launch with constant arguments; the barrier
epochs live on the device (one counter per block, incremented by the kernel), so replaying a
captured launch is correct. Every rank must capture and replay the same sequence::

    s = cupy.cuda.Stream(non_blocking=True)
    comm.allreduce_one_shot(count, "float32", "sum", stream=s)   # warm-up: compiles and loads
    s.synchronize()
    with s:
        s.begin_capture()
        for _ in range(n_ops):
            comm.allreduce_one_shot(count, "float32", "sum", stream=s)
        graph = s.end_capture()
    graph.upload(s)
    mpi_comm.Barrier()
    graph.launch(s)            # n_ops collectives; replay as often as needed, same count on all ranks
    s.synchronize()
    comm.check_error_all()     # collective: raises on every rank if a barrier timed out on any

Use one stream at a time per communicator: collectives on one communicator must not overlap.
After an error (a barrier timeout) the communicator is unusable; close it.

Where the ranks share one GPU (the CI setup: 2 or 4 processes on one H100), their contexts are
time-sliced, so every barrier waits for context switches: correct but slow, not a performance
measurement. The barrier timeout (``timeout_s``) bounds every wait in the kernel.

Co-residency. The barriers need every block of a launch resident at once, so the grid is capped
by occupancy x SM count (divided among ranks sharing a GPU and scaled by an MPS client's
CUDA_MPS_ACTIVE_THREAD_PERCENTAGE; see :class:`Residency`). Work of other processes on the same
GPU under MPS still takes SMs we cannot see: blocks that do not fit wait, their peers spin, and
the launch ends in a barrier timeout, not a hang (docs/gpu.md).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from collbench.gpu.kernel_sources import DTypeInfo, check_op, dtype_info, header_constants
from collbench.gpu.kernels import cupy_module, get_kernel, occupancy_per_sm, sm_count

COLLECTIVES = ("allreduce", "allgather", "reduce_scatter")
#: Kernel families (``collective`` plus the allreduce algorithm).
KINDS = ("one_shot", "two_shot", "allgather", "reduce_scatter")
#: Default block cap. vLLM found 36 blocks best for NVLink reads on A100-class parts (more
#: contend on the links); tune with ``max_blocks``.
DEFAULT_MAX_BLOCKS = 36
ALIGN = 256


class IpcError(RuntimeError):
    """An IPC communicator could not be set up, or a kernel reported an error."""


class IpcTimeoutError(IpcError):
    """A flag barrier in an IPC kernel timed out (a peer never arrived)."""


_KERNEL_NAMES = {1: "one-shot allreduce", 2: "two-shot allreduce", 3: "allgather", 4: "reduce_scatter"}


@dataclass(frozen=True)
class IpcErrorRecord:
    """The error record a kernel writes into its rank's signal buffer (see ipc_collectives.cu)."""

    code: int
    kernel_id: int
    block: int
    peer: int
    barrier: int
    expected: int
    seen: int
    rank: int
    waited_us: int
    grid: int

    def message(self) -> str:
        """One line for the user."""
        c = header_constants()
        kernel = _KERNEL_NAMES.get(self.kernel_id, f"kernel {self.kernel_id}")
        if self.code == c["ERR_TIMEOUT"]:
            return (
                f"rank {self.rank}: {kernel}: flag barrier {self.barrier} of block {self.block}/{self.grid} "
                f"timed out after {self.waited_us / 1e6:.3f} s waiting for rank {self.peer} "
                f"(expected epoch {self.expected}, saw {self.seen}); a peer did not launch the same "
                "collective, or crashed. The communicator is unusable: close it."
            )
        if self.code == c["ERR_BAD_LAUNCH"]:
            return f"rank {self.rank}: {kernel}: invalid launch (grid {self.grid}); this is a collbench bug"
        return f"rank {self.rank}: {kernel}: error code {self.code}"


def decode_error(words: Sequence[int]) -> Optional[IpcErrorRecord]:
    """Decode the error words of a signal buffer; None when no error was recorded."""
    w = [int(x) for x in words]
    if w[0] == 0:
        return None
    return IpcErrorRecord(*w[:10])


def pack_desc(ins: Sequence[int], outs: Sequence[int], scratches: Sequence[int], sigs: Sequence[int],
              rank: int, nranks: int) -> np.ndarray:
    """The CommDesc bytes (struct in ipc_collectives.cu): 4 x MAX_RANKS u64 pointers, rank, nranks."""
    c = header_constants()
    m = c["MAX_RANKS"]
    if not 1 <= nranks <= m or not 0 <= rank < nranks:
        raise ValueError(f"bad rank/nranks {rank}/{nranks} (at most {m} ranks)")
    for lst in (ins, outs, scratches, sigs):
        if len(lst) != nranks:
            raise ValueError("one pointer per rank expected")
    words = np.zeros(c["DESC_BYTES"] // 8, dtype=np.uint64)
    for i, lst in enumerate((ins, outs, scratches, sigs)):
        words[i * m:i * m + nranks] = np.asarray(lst, dtype=np.uint64)
    tail = words.view(np.int32)
    tail[8 * m] = rank
    tail[8 * m + 1] = nranks
    return words


def required_bytes(kind: str, count: int, itemsize: int, nranks: int) -> int:
    """Bytes of the largest registered buffer region a collective touches."""
    if kind in ("one_shot", "two_shot"):
        return count * itemsize
    if kind in ("allgather", "reduce_scatter"):
        return nranks * count * itemsize
    raise ValueError(f"unknown IPC collective {kind!r}; expected one of {', '.join(KINDS)}")


def plan_grid(kind: str, count: int, itemsize: int, nranks: int, max_blocks: int, threads: int) -> int:
    """Blocks for one launch: enough 16-byte packs per thread, at most max_blocks.

    Depends only on its arguments, which every rank passes identically: the kernels need the
    same grid on every rank (block b waits for block b of the peers).
    """
    packs = -(-count * itemsize // 16)
    if kind == "two_shot":
        packs = -(-packs // nranks)  # each rank reduces one chunk, then copies chunk-sized pieces
    elif kind not in KINDS:
        raise ValueError(f"unknown IPC collective {kind!r}")
    return max(1, min(max_blocks, -(-packs // threads)))


@dataclass(frozen=True)
class Residency:
    """What bounds the blocks of one launch that can all be resident at once (agreed by all ranks).

    The flag barriers need every block of a launch resident: a block spinning on an SM waits for
    block b of the peers, and if that block cannot get an SM (they are all taken by spinning
    blocks, ours or another process's) it never arrives and the barrier times out.

    Attributes:
        sm_count: the smallest SM count among the ranks' GPUs.
        ranks_per_device: the most ranks sharing one GPU. Under MPS their kernels run at the same
            time and share the SMs; time-sliced contexts do not, and then this is only cautious.
        mps_percent: CUDA_MPS_ACTIVE_THREAD_PERCENTAGE (the share of SMs an MPS client may use),
            the smallest among the ranks; 100 without MPS.
        uniform_arch: all GPUs have the same compute capability, so a kernel's occupancy (and
            with it the grid) is the same on every rank; otherwise one block per SM is assumed.
    """

    sm_count: int
    ranks_per_device: int
    mps_percent: float = 100.0
    uniform_arch: bool = True

    def blocks(self, per_sm: int) -> int:
        """Blocks one rank may launch: occupancy x usable SMs, shared by the ranks of a GPU."""
        per_sm = per_sm if self.uniform_arch else 1
        usable_sms = max(1, math.floor(self.sm_count * min(self.mps_percent, 100.0) / 100.0))
        return max(1, per_sm * usable_sms // max(1, self.ranks_per_device))


def mps_percent() -> float:
    """This process's CUDA_MPS_ACTIVE_THREAD_PERCENTAGE (100 when unset or unreadable)."""
    try:
        value = float(os.environ.get("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE", "100"))
    except ValueError:
        return 100.0
    return value if 0 < value <= 100 else 100.0


def agree_residency(info: Sequence[tuple[str, int, str, float]]) -> Residency:
    """The Residency of a communicator from every rank's (PCI bus id, SMs, compute capability,
    MPS percentage): the most constrained values, so every rank plans the same grid."""
    per_device: dict[str, int] = {}
    for pci, _, _, _ in info:
        per_device[pci] = per_device.get(pci, 0) + 1
    return Residency(sm_count=min(s for _, s, _, _ in info), ranks_per_device=max(per_device.values()),
                     mps_percent=min(m for _, _, _, m in info),
                     uniform_arch=len({cc for _, _, cc, _ in info}) == 1)


def _round_up(n: int, a: int = ALIGN) -> int:
    return max(a, -(-n // a) * a)


class IpcCommunicator:
    """One-shot/two-shot allreduce, allgather and reduce_scatter over CUDA IPC (one node).

    Construction and :meth:`close` are collective over ``comm``; errors during setup are agreed
    on by all ranks (every rank raises), so a failure on one rank cannot leave the others waiting.

    Args:
        comm: mpi4py intra-node communicator (passed explicitly; never COMM_WORLD implicitly).
            Each rank must have selected its CUDA device (``cupy.cuda.Device(i).use()``) before.
        max_bytes: capacity of each of the input, output and scratch buffers. Allgather needs
            ``nranks * count * itemsize`` of output, reduce_scatter as much input.
        max_blocks: cap on blocks per launch (also capped by the kernels' flag table,
            COLLBENCH_MAX_BLOCKS, and per kernel by what can be resident at once: occupancy x SMs,
            divided among the ranks that share a GPU; see :class:`Residency`).
        timeout_s: bound on every barrier wait inside a kernel; on expiry the kernel records an
            error, returns, and :meth:`check_error` raises :class:`IpcTimeoutError`.
    """

    def __init__(self, comm: Any, max_bytes: int, *, max_blocks: int = DEFAULT_MAX_BLOCKS,
                 timeout_s: float = 20.0) -> None:
        self._closed = True  # until fully set up; close() is then a no-op
        cp = cupy_module()
        self._cp = cp
        c = header_constants()
        self._c = c
        for attr in ("allgather", "Barrier", "Get_rank", "Get_size"):
            if not hasattr(comm, attr):
                raise TypeError(f"comm must be an mpi4py communicator (missing {attr})")
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer)) or max_bytes < 0:
            raise ValueError(f"max_bytes must be a non-negative int, got {max_bytes!r}")
        if not (isinstance(timeout_s, (int, float)) and timeout_s > 0):
            raise ValueError(f"timeout_s must be a positive number, got {timeout_s!r}")
        if isinstance(max_blocks, bool) or not isinstance(max_blocks, int) or max_blocks < 1:
            raise ValueError(f"max_blocks must be a positive int, got {max_blocks!r}")
        self.comm = comm
        self.rank = comm.Get_rank()
        self.nranks = comm.Get_size()
        self.max_bytes = int(max_bytes)
        self.timeout_ns = int(timeout_s * 1e9)
        self.threads = c["IPC_THREADS"]
        if self.nranks > c["MAX_RANKS"]:
            raise IpcError(f"IPC collectives support at most {c['MAX_RANKS']} ranks, comm has {self.nranks}")

        from mpi4py import MPI  # noqa: PLC0415 - mpi4py only where MPI is actually used

        hosts = comm.allgather(MPI.Get_processor_name())
        if len(set(hosts)) != 1:
            raise IpcError(f"IPC collectives need all ranks on one node; comm spans {sorted(set(hosts))}")

        rt = cp.cuda.runtime
        self.device_id = cp.cuda.Device().id
        # Every rank must launch the same grid (block b waits for block b of the peers): agree on
        # the requested block cap and on what bounds residency (all blocks resident at once).
        device = cp.cuda.Device()
        info = comm.allgather(((device.pci_bus_id, sm_count(), str(getattr(device, "compute_capability", "?")),
                                mps_percent()), max_blocks))
        self.pci_bus_ids = [facts[0] for facts, _ in info]
        self.same_device = len(set(self.pci_bus_ids)) == 1
        self.max_blocks = min(c["MAX_BLOCKS"], min(b for _, b in info))
        self.residency = agree_residency([facts for facts, _ in info])
        self._grid_caps: dict[str, int] = {}

        self._buf_bytes = _round_up(self.max_bytes)
        need = 3 * self._buf_bytes + c["SIG_BYTES"] + c["DESC_BYTES"]
        err = None
        try:
            free, total = rt.memGetInfo()
            if free < need + (64 << 20):
                err = (f"needs {need / 2**20:.1f} MiB of device memory for IPC buffers "
                       f"(max_bytes={self.max_bytes}), {free / 2**20:.1f} MiB free of {total / 2**20:.1f}")
        except Exception as exc:  # noqa: BLE001 - reported collectively below
            err = f"cudaMemGetInfo failed: {exc}"
        self._agree(err, "checking free device memory")

        self._mem: list[Any] = []
        self._peer_ptrs: list[int] = []  # opened with ipcOpenMemHandle, to close
        err = None
        try:
            mem = cp.cuda.memory
            self._in = mem.Memory(self._buf_bytes)
            self._out = mem.Memory(self._buf_bytes)
            self._scratch = mem.Memory(self._buf_bytes)
            self._sig = mem.Memory(c["SIG_BYTES"])
            self._desc = mem.Memory(_round_up(c["DESC_BYTES"]))
            self._mem = [self._in, self._out, self._scratch, self._sig, self._desc]
            for m in self._mem:
                rt.memset(m.ptr, 0, m.size)
            # Zeroed signals must be in place before any peer can open them and signal.
            rt.deviceSynchronize()
            handles = [bytes(rt.ipcGetMemHandle(m.ptr)) for m in (self._in, self._out, self._scratch, self._sig)]
        except Exception as exc:  # noqa: BLE001
            err, handles = f"allocating IPC buffers failed: {exc}", None
        self._agree(err, "allocating buffers")

        all_handles = comm.allgather(handles)
        ptrs: list[list[int]] = [[0] * self.nranks for _ in range(4)]
        own = [self._in.ptr, self._out.ptr, self._scratch.ptr, self._sig.ptr]
        err = None
        for peer in range(self.nranks):
            for i in range(4):
                if peer == self.rank:
                    ptrs[i][peer] = own[i]  # a process cannot open its own handle
                    continue
                try:
                    p = int(rt.ipcOpenMemHandle(all_handles[peer][i], rt.cudaIpcMemLazyEnablePeerAccess))
                except Exception as exc:  # noqa: BLE001
                    err = (f"cudaIpcOpenMemHandle of rank {peer}'s buffer {i} failed: {exc} "
                           f"(this rank on {self.pci_bus_ids[self.rank]}, peer on {self.pci_bus_ids[peer]}; "
                           "peer access between these GPUs may be unsupported)")
                    break
                self._peer_ptrs.append(p)
                ptrs[i][peer] = p
            if err:
                break
        if err is None:
            try:
                desc = pack_desc(ptrs[0], ptrs[1], ptrs[2], ptrs[3], self.rank, self.nranks)
                rt.memcpy(self._desc.ptr, desc.ctypes.data, desc.nbytes, rt.memcpyHostToDevice)
            except Exception as exc:  # noqa: BLE001
                err = f"writing the descriptor failed: {exc}"
        if err is not None:
            self._release()
        self._agree(err, "opening peer IPC handles")
        comm.Barrier()
        self._closed = False

    # -- setup helpers ---------------------------------------------------------------------
    def _agree(self, local_error: Optional[str], what: str) -> None:
        """Every rank learns every rank's error; all raise if any failed (no rank is left waiting)."""
        errors = self.comm.allgather(local_error)
        bad = [(r, e) for r, e in enumerate(errors) if e]
        if bad:
            self._release()
            detail = "; ".join(f"rank {r}: {e}" for r, e in bad)
            raise IpcError(f"IpcCommunicator setup failed while {what}: {detail}")

    def _release(self) -> None:
        """Close opened peer handles and free own buffers (local only)."""
        rt = self._cp.cuda.runtime
        for p in getattr(self, "_peer_ptrs", []):
            try:
                rt.ipcCloseMemHandle(p)
            except Exception:  # noqa: BLE001,S110 - best effort while failing or closing
                pass
        self._peer_ptrs = []
        # Memory objects call cudaFree when the last reference goes.
        self._mem = []
        self._in = self._out = self._scratch = self._sig = self._desc = None

    # -- buffers ---------------------------------------------------------------------------
    def _view(self, mem: Any, count: int, dtype: str, offset_elems: int = 0) -> Any:
        self._check_open()
        info = dtype_info(dtype)
        count = _check_count(count)
        end = (offset_elems + count) * info.itemsize
        if end > self.max_bytes:
            raise ValueError(f"{end} bytes needed, the communicator was built with max_bytes={self.max_bytes}")
        ptr = self._cp.cuda.MemoryPointer(mem, offset_elems * info.itemsize)
        return self._cp.ndarray((count,), dtype=info.storage, memptr=ptr)

    def input_view(self, count: int, dtype: str) -> Any:
        """The first ``count`` elements of this rank's input buffer (a CuPy array)."""
        return self._view(self._in, count, dtype)

    def output_view(self, count: int, dtype: str) -> Any:
        """The first ``count`` elements of this rank's output buffer."""
        return self._view(self._out, count, dtype)

    def send_view(self, collective: str, count: int, dtype: str, inplace: bool = False) -> Any:
        """Where this rank's contribution goes (NCCL conventions; count as in :meth:`launch`)."""
        n = self.nranks
        if collective == "allreduce":
            return self._view(self._in, count, dtype)
        if collective == "allgather":
            return self._view(self._out, count, dtype, self.rank * count) if inplace else self._view(self._in, count, dtype)
        if collective == "reduce_scatter":
            return self._view(self._in, n * count, dtype)
        raise ValueError(f"unknown collective {collective!r}; expected one of {', '.join(COLLECTIVES)}")

    def recv_view(self, collective: str, count: int, dtype: str, inplace: bool = False) -> Any:
        """Where the result appears (NCCL conventions; count as in :meth:`launch`)."""
        if collective == "allreduce":
            return self._view(self._in if inplace else self._out, count, dtype)
        if collective == "allgather":
            return self._view(self._out, self.nranks * count, dtype)
        if collective == "reduce_scatter":
            return self._view(self._in, count, dtype, self.rank * count) if inplace else self._view(self._out, count, dtype)
        raise ValueError(f"unknown collective {collective!r}; expected one of {', '.join(COLLECTIVES)}")

    # -- collectives -----------------------------------------------------------------------
    def allreduce_one_shot(self, count: int, dtype: str, op: str, *, inplace: bool = False, stream: Any = None) -> None:
        """Allreduce of ``count`` elements: every rank reads every input (latency-optimal)."""
        self.launch("one_shot", count, dtype, op, inplace=inplace, stream=stream)

    def allreduce_two_shot(self, count: int, dtype: str, op: str, *, inplace: bool = False, stream: Any = None) -> None:
        """Allreduce of ``count`` elements: reduce-scatter by reads, then allgather by reads."""
        self.launch("two_shot", count, dtype, op, inplace=inplace, stream=stream)

    def allgather(self, count: int, dtype: str, *, inplace: bool = False, stream: Any = None) -> None:
        """Allgather of ``count`` elements per rank into ``nranks * count`` outputs."""
        self.launch("allgather", count, dtype, None, inplace=inplace, stream=stream)

    def reduce_scatter(self, count: int, dtype: str, op: str, *, inplace: bool = False, stream: Any = None) -> None:
        """Reduce-scatter of ``nranks * count`` inputs into ``count`` outputs per rank."""
        self.launch("reduce_scatter", count, dtype, op, inplace=inplace, stream=stream)

    def launch(self, kind: str, count: int, dtype: str, op: Optional[str], *, inplace: bool = False,
               stream: Any = None) -> None:
        """Launch one collective kernel on ``stream`` (default: current); capturable.

        ``kind`` is one of one_shot, two_shot, allgather, reduce_scatter; ``count`` is the element
        count of the allreduce, or per rank for allgather/reduce_scatter. count 0 launches nothing
        (identically on all ranks). ``op`` is ignored for allgather.
        """
        self._check_open()
        kernel, grid, args = self._prepare(kind, count, dtype, op, inplace)
        if kernel is None:
            return
        if stream is None:
            kernel((grid,), (self.threads,), args)
        else:
            with stream:
                kernel((grid,), (self.threads,), args)

    def _prepare(self, kind: str, count: int, dtype: str, op: Optional[str], inplace: bool) -> tuple[Any, int, tuple]:
        info: DTypeInfo = dtype_info(dtype)
        count = _check_count(count)
        if kind not in KINDS:
            raise ValueError(f"unknown IPC collective {kind!r}; expected one of {', '.join(KINDS)}")
        if kind != "allgather":
            check_op(op or "")
        need = required_bytes(kind, count, info.itemsize, self.nranks)
        if need > self.max_bytes:
            raise ValueError(f"{kind} of {count} x {dtype} needs {need} bytes per buffer; "
                             f"the communicator was built with max_bytes={self.max_bytes}")
        if count == 0:
            return None, 0, ()
        if kind == "allgather":
            name, n = "ipc_allgather", count * info.itemsize
        else:
            name, n = f"ipc_{kind}_{op}_{info.name}", count
        kernel = get_kernel("ipc_collectives.cu", name, info.name)
        cap = self.grid_cap(kernel, f"{name}/{info.name}")
        grid = plan_grid(kind, count, info.itemsize, self.nranks, cap, self.threads)
        args = (np.uint64(self._desc.ptr), np.uint64(n), np.uint64(self.timeout_ns), np.int32(1 if inplace else 0))
        return kernel, grid, args

    def grid_cap(self, kernel: Any, key: str) -> int:
        """Most blocks one launch of ``kernel`` (cached under ``key``) may use: max_blocks, and
        no more than can be resident at once on a GPU shared by the ranks placed on it."""
        cap = self._grid_caps.get(key)
        if cap is None:
            cap = min(self.max_blocks, self.residency.blocks(occupancy_per_sm(kernel, self.threads)))
            self._grid_caps[key] = cap
        return cap

    # -- errors and teardown ---------------------------------------------------------------
    def error_record(self, stream: Any = None) -> Optional[IpcErrorRecord]:
        """Synchronize (``stream``, or the whole device) and read this rank's error record."""
        self._check_open()
        cp = self._cp
        if stream is not None:
            stream.synchronize()
        else:
            cp.cuda.runtime.deviceSynchronize()
        c = self._c
        words = np.zeros(c["ERR_WORDS"], dtype=np.uint32)
        cp.cuda.runtime.memcpy(words.ctypes.data, self._sig.ptr + 4 * c["SIG_ERROR_WORD"], words.nbytes,
                               cp.cuda.runtime.memcpyDeviceToHost)
        return decode_error(words)

    def check_error(self, stream: Any = None) -> None:
        """Raise :class:`IpcTimeoutError` / :class:`IpcError` if a kernel recorded an error on
        this rank (local: a peer whose kernels finished sees nothing; see :meth:`check_error_all`)."""
        rec = self.error_record(stream)
        if rec is None:
            return
        cls = IpcTimeoutError if rec.code == self._c["ERR_TIMEOUT"] else IpcError
        raise cls(rec.message())

    def check_error_all(self, stream: Any = None) -> None:
        """Collective over the communicator: raise on every rank if a kernel recorded an error on
        any rank, naming the rank. A barrier can time out on one rank only (its peers passed it,
        their kernels returned normally): a local check would leave them reporting success."""
        records = self.comm.allgather(self.error_record(stream))
        failed = [(r, rec) for r, rec in enumerate(records) if rec is not None]
        if not failed:
            return
        rank, rec = failed[0]
        message = rec.message()
        if rank != self.rank:
            message += f" [reported to rank {self.rank}]"
        if len(failed) > 1:
            message += f" (errors also on rank{'s' if len(failed) > 2 else ''} {', '.join(str(r) for r, _ in failed[1:])})"
        timeout = any(rec.code == self._c["ERR_TIMEOUT"] for _, rec in failed)
        raise (IpcTimeoutError if timeout else IpcError)(message)

    def _check_open(self) -> None:
        if self._closed:
            raise IpcError("the IpcCommunicator is closed")

    def close(self) -> None:
        """Collective: wait for this rank's work, close peer handles, free buffers."""
        if self._closed:
            return
        self._closed = True
        rt = self._cp.cuda.runtime
        try:
            rt.deviceSynchronize()
        finally:
            # Nobody unmaps or frees while a peer may still be reading its buffers.
            self.comm.Barrier()
            peer_ptrs, self._peer_ptrs = self._peer_ptrs, []
            failures = []
            for p in peer_ptrs:
                try:
                    rt.ipcCloseMemHandle(p)
                except Exception as exc:  # noqa: BLE001
                    failures.append(str(exc))
            self.comm.Barrier()  # every peer has unmapped our buffers before we free them
            self._release()
        if failures:
            raise IpcError(f"rank {self.rank}: closing peer handles failed: {failures[0]}")

    def __enter__(self) -> "IpcCommunicator":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _check_count(count: Any) -> int:
    if isinstance(count, (bool, np.bool_)) or not isinstance(count, (int, np.integer)) or count < 0:
        raise ValueError(f"count must be a non-negative int, got {count!r}")
    return int(count)
