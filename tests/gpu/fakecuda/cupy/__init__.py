"""A CPU stand-in for the parts of CuPy (and its NCCL binding) that collbench's GPU backends use.

It exists so the GPU backends' Python (buffer views, NCCL call sequences, graph capture, event
timing, metadata) runs end to end under the real CLI on a machine without a GPU. Device memory is
numpy; pointers are fake addresses resolved through a heap; streams execute immediately unless
capturing, in which case work is recorded and replayed by the graph. Put this directory first on
PYTHONPATH to use it (subprocesses, MPI ranks); never install it. In the test process,
``fakecuda.fake_cupy()`` (tests/gpu/fakecuda/__init__.py) gives a fresh instance of this package
with its own heap, streams and logs, and leaves ``import cupy`` alone: only the package imported
as ``cupy`` registers ``cupy.cuda`` and friends in sys.modules.

NCCL: at world size 1 collectives are copies. At world size > 1 (one process per rank, launched
by mpiexec) init meets the peers through files in FAKECUDA_NCCL_DIR (like NCCL's bootstrap, it
waits for every rank, so a missing rank is a hang) and collectives exchange data over MPI on the
main thread; grouped send/recv is not supported there.

Knobs (environment), for tests that need a GPU setup this machine does not have:
  FAKECUDA_UUID=per-rank          every rank's device 0 is a different GPU (per-task GPU binding);
                                  default: one GPU, the same UUID everywhere
  FAKECUDA_NCCL_INIT_FAIL_RANK=r  ncclCommInitRank raises on rank r (the others wait for it)
  FAKECUDA_NCCL_INIT_HANG_RANK=r  ncclCommInitRank never returns on rank r (cannot reach the
                                  bootstrap), so every rank waits
  FAKECUDA_NCCL_BOOTSTRAP_TIMEOUT=s  how long the fake's "forever" is (default 600 s)
  FAKECUDA_NCCL_DIR=path          where the bootstrap files go (default: the temp directory)
  FAKECUDA_GRAPH_DROPS_WORK=1     stream capture records nothing: a graph replays as a no-op
                                  (an operation that is wrong only when captured)
  FAKECUDA_IPC_DIR=path           where device allocations live as shared files, so CUDA IPC
                                  works between ranks that are processes (default: temp directory);
                                  the interpreter kernel (csrc/interp.cu) runs as the reference
                                  interpreter on them (_interp_kernel.py)
"""

from __future__ import annotations

import bisect
import os
import sys
import tempfile
import threading
import time
import types
from typing import Any, Callable

import numpy as np

__version__ = "0.0-fake"
uint8, uint16, uint64, float16, float32 = np.uint8, np.uint16, np.uint64, np.float16, np.float32


class Heap:
    """Fake device memory: numpy byte buffers at fake addresses, 512-aligned with a gap between
    allocations (an overrun past one is never inside the next). Thread-safe: in-process tests run
    ranks as threads on one instance."""

    def __init__(self, start: int = 0x10000000) -> None:
        self.blocks: dict[int, np.ndarray] = {}
        self._bases: list[int] = []
        self._next = start
        self._lock = threading.Lock()

    def add(self, buf: np.ndarray) -> int:
        """Place a byte buffer (zeros, or a shared mapping) at a new address; returns it."""
        with self._lock:
            base = self._next
            self.blocks[base] = buf
            self._bases.append(base)
            self._next += (buf.size + 1023) // 512 * 512
            return base

    def alloc(self, nbytes: int) -> int:
        return self.add(np.zeros(max(int(nbytes), 1), np.uint8))

    def free(self, base: int) -> None:
        with self._lock:
            del self.blocks[base]
            self._bases.remove(base)

    def at(self, ptr: int, nbytes: int) -> np.ndarray:
        """The ``nbytes`` bytes at ``ptr`` as a writable numpy view (all in one allocation)."""
        with self._lock:
            i = bisect.bisect_right(self._bases, ptr) - 1
            if i >= 0:
                base = self._bases[i]
                buf = self.blocks[base]
                if ptr + nbytes <= base + buf.size:
                    return buf[ptr - base:ptr - base + nbytes]
        raise AssertionError(f"fake cupy: {nbytes} bytes at {ptr:#x} are outside every allocation")


HEAP = Heap()  # this instance's device memory (every array, stream and IPC mapping lives here)
_STREAMS: dict[int, "Stream"] = {}


def _alloc(nbytes: int) -> int:
    return HEAP.alloc(nbytes)


def _bytes_at(ptr: int, nbytes: int) -> np.ndarray:
    return HEAP.at(ptr, nbytes)


class ndarray:
    """A 1-D device array: ``size`` elements of ``dtype`` at ``data.ptr`` in HEAP."""

    flags = types.SimpleNamespace(c_contiguous=True)  # only contiguous arrays exist here
    device = types.SimpleNamespace(id=0)

    def __init__(self, base: Any, offset: int = 0, size: int = 0, dtype: Any = None, memptr: Any = None) -> None:
        if memptr is not None:  # cupy.ndarray(shape, dtype=..., memptr=MemoryPointer): the IPC views
            shape = base if isinstance(base, tuple) else (base,)
            base, offset, size = memptr.mem.ptr, memptr.off, int(np.prod(shape))
        self._base, self._offset, self.size, self.dtype = base, offset, size, np.dtype(dtype)
        self.data = types.SimpleNamespace(ptr=base + offset)

    @property
    def shape(self) -> tuple[int]:
        return (self.size,)

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def _np(self) -> np.ndarray:
        return _bytes_at(self.data.ptr, self.nbytes).view(self.dtype)

    def __getitem__(self, item: slice) -> "ndarray":
        start, stop, step = item.indices(self.size)
        assert step == 1, "fake cupy supports contiguous slices only"
        return ndarray(self._base, self._offset + start * self.dtype.itemsize, max(0, stop - start), self.dtype)

    def view(self, dtype: Any) -> "ndarray":
        dtype = np.dtype(dtype)
        assert self.nbytes % dtype.itemsize == 0
        return ndarray(self._base, self._offset, self.nbytes // dtype.itemsize, dtype)

    def set(self, host: np.ndarray, stream: Any = None) -> None:
        assert host.dtype == self.dtype and host.size == self.size, (host.dtype, self.dtype, host.size, self.size)
        self._np()[...] = host

    def get(self, stream: Any = None, out: np.ndarray | None = None) -> np.ndarray:
        if out is not None:
            out[...] = self._np()
            return out
        return self._np().copy()

    def fill(self, value: Any) -> None:
        self._np().fill(value)


def empty(n: int, dtype: Any = np.float32) -> ndarray:
    return ndarray(_alloc(n * np.dtype(dtype).itemsize), 0, n, dtype)


def zeros(n: int, dtype: Any = np.float32) -> ndarray:
    return empty(n, dtype)  # fresh allocations are zero


def ones(n: int, dtype: Any = np.float32) -> ndarray:
    out = empty(n, dtype)
    out.fill(1)
    return out


class _MemoryPool:
    def free_all_blocks(self) -> None:
        pass


_POOL = _MemoryPool()


def get_default_memory_pool() -> _MemoryPool:
    return _POOL


class Stream:
    def __init__(self, non_blocking: bool = False) -> None:
        self.ptr = _alloc(8)
        self.captured: list[Callable[[], None]] | None = None
        _STREAMS[self.ptr] = self

    def synchronize(self) -> None:
        pass

    def begin_capture(self, mode: Any = None) -> None:
        assert self.captured is None, "already capturing"
        self.captured = []

    def end_capture(self) -> "Graph":
        work, self.captured = self.captured, None
        return Graph(work or [])

    def __enter__(self) -> "Stream":
        _CURRENT.append(self)  # kernels launched inside `with stream:` go to it (graph capture)
        return self

    def __exit__(self, *exc: Any) -> None:
        _CURRENT.pop()


_CURRENT: list[Stream] = []


class Graph:
    def __init__(self, work: list[Callable[[], None]]) -> None:
        self.work = work

    def upload(self, stream: Stream) -> None:
        pass

    def launch(self, stream: Stream | None = None) -> None:
        for item in self.work:
            item()


def _on_stream(stream_ptr: int, work: Callable[[], None]) -> None:
    """Run now, or record when the stream is being captured (what CUDA graph capture does)."""
    stream = _STREAMS.get(stream_ptr)
    if stream is not None and stream.captured is not None:
        if os.environ.get("FAKECUDA_GRAPH_DROPS_WORK") != "1":
            stream.captured.append(work)
    else:
        work()


def _process_rank() -> int:
    """This process's rank as the launcher set it (the fake must not initialise MPI itself)."""
    for name in ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK", "SLURM_PROCID"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


def _device_properties(index: int) -> dict[str, Any]:
    uuid = bytes([1] * 15 + [_process_rank() + 2]) if os.environ.get("FAKECUDA_UUID") == "per-rank" else b"\x01" * 16
    return {"name": b"Fake GPU", "uuid": uuid, "pciDomainID": 0, "pciBusID": 7, "pciDeviceID": 0,
            "totalGlobalMem": 16 << 30, "major": 9, "minor": 0}


class Event:
    done = True  # work runs when enqueued: a recorded event is complete at once

    def __init__(self) -> None:
        self.time = 0.0

    def record(self, stream: Stream | None = None) -> None:
        def stamp() -> None:
            self.time = time.perf_counter()
        stamp()

    def synchronize(self) -> None:
        pass


class _Device:
    def __init__(self, index: int = 0) -> None:
        self.id = index
        self.pci_bus_id = "0000:00:00.0"
        self.compute_capability = "90"
        self.attributes = {"MultiProcessorCount": 132}

    def use(self) -> None:
        pass

    def synchronize(self) -> None:
        pass


class CUDARuntimeError(RuntimeError):
    pass


def _memcpy_async(dst: int, src: int, nbytes: int, kind: int, stream: int) -> None:
    def copy() -> None:
        _bytes_at(dst, nbytes)[...] = _bytes_at(src, nbytes)
    _on_stream(stream, copy)


runtime = types.SimpleNamespace(
    getDeviceCount=lambda: 1,
    memGetInfo=lambda: (8 << 30, 16 << 30),
    getDeviceProperties=_device_properties,
    driverGetVersion=lambda: 13000, runtimeGetVersion=lambda: 13000,
    memcpyAsync=_memcpy_async, memcpyDeviceToDevice=3, CUDARuntimeError=CUDARuntimeError,
)


# -- NCCL ------------------------------------------------------------------------------------
_NCCL_ITEMSIZE = {0: 1, 1: 1, 2: 4, 3: 4, 4: 8, 5: 8, 6: 2, 7: 4, 8: 8, 9: 2}
NCCL_CALLS: list[tuple] = []   # every NCCL call made, for tests

def _bootstrap_timeout() -> float:
    """Real NCCL has none; the default is a hang in any test, and ends stray processes."""
    return float(os.environ.get("FAKECUDA_NCCL_BOOTSTRAP_TIMEOUT", "600"))


class NcclError(RuntimeError):
    def __init__(self, status: int, text: str) -> None:
        self.status = status
        super().__init__(text)


def _numpy_dtype(code: int) -> np.dtype:
    if code == 9:
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype({0: np.int8, 1: np.uint8, 2: np.int32, 3: np.uint32, 4: np.int64, 5: np.uint64,
                     6: np.float16, 7: np.float32, 8: np.float64}[code])


def _reduce(parts: list[np.ndarray], op: int, dtype: np.dtype) -> np.ndarray:
    """NCCL's sum/prod/max/min/avg over the ranks' contributions (exact for validation's data)."""
    wide = np.float64 if dtype.kind == "f" or dtype.name == "bfloat16" else np.int64
    stack = np.stack([p.astype(wide) for p in parts])
    if op in (0, 4):
        out = stack.sum(axis=0)
    elif op == 1:
        out = stack.prod(axis=0)
    elif op == 2:
        out = stack.max(axis=0)
    else:
        out = stack.min(axis=0)
    if op == 4:
        n = len(parts)
        out = out / n if wide is np.float64 else np.sign(out) * (np.abs(out) // n)
    return out.astype(dtype)


def _bootstrap(uid: Any, ndev: int, rank: int) -> None:
    """Wait until every rank has arrived (a file each), as NCCL's bootstrap does: without a peer,
    forever (here: a long time)."""
    token = bytes(int(x) & 0xFF for x in uid[:16]).hex()
    directory = os.path.join(os.environ.get("FAKECUDA_NCCL_DIR", tempfile.gettempdir()), f"fakenccl-{token}")
    os.makedirs(directory, exist_ok=True)
    open(os.path.join(directory, str(rank)), "w").close()
    deadline = time.monotonic() + _bootstrap_timeout()
    while len(os.listdir(directory)) < ndev:
        if time.monotonic() > deadline:
            raise NcclError(2, "ncclSystemError: bootstrap timed out (fake)")
        time.sleep(0.01)


class NcclCommunicator:
    def __init__(self, ndev: int, uid: Any, rank: int) -> None:
        assert 0 <= rank < ndev
        if os.environ.get("FAKECUDA_NCCL_INIT_FAIL_RANK") == str(rank):
            raise NcclError(2, f"NCCL_ERROR_SYSTEM_ERROR: fake init failure on rank {rank}")
        if os.environ.get("FAKECUDA_NCCL_INIT_HANG_RANK") == str(rank):
            time.sleep(_bootstrap_timeout())
            raise NcclError(2, "ncclSystemError: bootstrap timed out (fake)")
        self.ndev, self.rank, self._mpi = ndev, rank, None
        if ndev > 1:
            _bootstrap(uid, ndev, rank)
        _write_nccl_log(ndev, rank)  # NCCL_DEBUG=INFO + NCCL_DEBUG_FILE, as NCCL would (run --nccl-log)

    def _world(self) -> Any:
        """The peers: a duplicate of MPI's world, made on first use (the main thread, where the
        collectives run; init may run in another thread)."""
        if self._mpi is None:
            from mpi4py import MPI

            assert MPI.COMM_WORLD.Get_size() == self.ndev, "the fake NCCL spans MPI's world only"
            self._mpi = MPI.COMM_WORLD.Dup()
        return self._mpi

    def _collective(self, name: str, send: int, recv: int, count: int, dtype: int, stream: int,
                    op: int = 0, root: int = -1) -> None:
        NCCL_CALLS.append((name, count, dtype))
        itemsize = _NCCL_ITEMSIZE[dtype]
        if self.ndev == 1:
            if send != recv and count:
                _memcpy_async(recv, send, count * itemsize, 3, stream)
            return
        in_count = count * self.ndev if name == "reduceScatter" else count

        def exchange() -> None:
            np_dtype = _numpy_dtype(dtype)
            mine = _bytes_at(send, in_count * itemsize).view(np_dtype).copy()
            parts = self._world().allgather(mine)
            if name == "allReduce":
                result = _reduce(parts, op, np_dtype)
            elif name == "reduce":
                if self.rank != root:
                    return
                result = _reduce(parts, op, np_dtype)
            elif name == "reduceScatter":
                result = _reduce(parts, op, np_dtype)[self.rank * count:(self.rank + 1) * count]
            elif name == "allGather":
                result = np.concatenate(parts)
            else:  # broadcast
                result = parts[root]
            _bytes_at(recv, result.nbytes)[...] = result.view(np.uint8)

        _on_stream(stream, exchange)

    def allReduce(self, s, r, count, dtype, op, stream):
        self._collective("allReduce", s, r, count, dtype, stream, op)

    def allGather(self, s, r, count, dtype, stream):
        self._collective("allGather", s, r, count, dtype, stream)

    def reduceScatter(self, s, r, count, dtype, op, stream):
        self._collective("reduceScatter", s, r, count, dtype, stream, op)

    def broadcast(self, s, r, count, dtype, root, stream):
        self._collective("broadcast", s, r, count, dtype, stream, root=root)

    def reduce(self, s, r, count, dtype, op, root, stream):
        self._collective("reduce", s, r, count, dtype, stream, op, root)

    def send(self, ptr: int, count: int, dtype: int, peer: int, stream: int) -> None:
        self._p2p("send", ptr, count, dtype, peer, stream)

    def recv(self, ptr: int, count: int, dtype: int, peer: int, stream: int) -> None:
        self._p2p("recv", ptr, count, dtype, peer, stream)

    def _p2p(self, kind: str, ptr: int, count: int, dtype: int, peer: int, stream: int) -> None:
        """ncclSend/ncclRecv: queued until the group ends (NCCL progresses a group together)."""
        NCCL_CALLS.append((kind, count, dtype, peer))
        assert 0 <= peer < self.ndev, f"peer {peer} outside the communicator"
        _P2P_PENDING.append((kind, self, ptr, count * _NCCL_ITEMSIZE[dtype], peer, stream))
        if not _P2P_DEPTH[0]:
            _p2p_flush()

    def abort(self) -> None:
        NCCL_CALLS.append(("abort",))

    def destroy(self) -> None:
        if self._mpi is not None:
            self._mpi.Free()
            self._mpi = None


nccl = types.ModuleType("cupy.cuda.nccl")
nccl.available = True
nccl.NcclCommunicator = NcclCommunicator
nccl.NcclError = NcclError
nccl.get_unique_id = lambda: tuple(os.urandom(128))
nccl.get_version = lambda: 23203


# Grouped ncclSend/ncclRecv: the group's messages go over MPI point to point when the group ends
# (on the stream, so a graph capture records them), sends first and non-blocking, as NCCL
# progresses them together; messages between one pair match in order, as in NCCL.
_P2P_PENDING: list[tuple] = []
_P2P_DEPTH = [0]
_P2P_TAG = 7411


def _p2p_flush() -> None:
    pending = list(_P2P_PENDING)
    _P2P_PENDING.clear()
    if not pending:
        return

    def exchange() -> None:
        # MPI's world itself, not the communicator's duplicate: making that is collective, and
        # with the interpreter inside nodes and NCCL across (gpu/interp_nccl.py) a rank reaches
        # its first send/recv while its node's peers still spin in an interpreter launch (the
        # tag keeps these messages apart from collbench's own)
        from mpi4py import MPI

        world = MPI.COMM_WORLD
        assert world.Get_size() == pending[0][1].ndev, "the fake NCCL spans MPI's world only"
        requests = [world.isend(_bytes_at(ptr, n).copy(), dest=peer, tag=_P2P_TAG)
                    for kind, _, ptr, n, peer, _ in pending if kind == "send"]
        for kind, _, ptr, n, peer, _ in pending:
            if kind == "recv":
                data = world.recv(source=peer, tag=_P2P_TAG)
                assert data.size == n, f"recv of {n} bytes from {peer}, which sent {data.size}"
                _bytes_at(ptr, n)[...] = data
        for request in requests:
            request.wait()

    _on_stream(pending[0][5], exchange)


def _group_start() -> None:
    NCCL_CALLS.append(("groupStart",))
    _P2P_DEPTH[0] += 1


def _group_end() -> None:
    NCCL_CALLS.append(("groupEnd",))
    _P2P_DEPTH[0] -= 1
    if not _P2P_DEPTH[0]:
        _p2p_flush()


nccl.groupStart = _group_start
nccl.groupEnd = _group_end

# -- RawModule: csrc/compress.cu's kernels as numpy transliterations (_compress_kernels.py) ----
class CompileException(RuntimeError):
    pass


class RawModule:
    """Holds the source; get_function gives a kernel only for an extern "C" name the source
    defines (directly or through compress.cu's macros) and that _compress_kernels can run."""

    def __init__(self, code: str = "", options: tuple = (), **_: Any) -> None:
        self.code, self.options = code, options

    def get_function(self, name: str) -> "RawKernel":
        import re

        if name.startswith("interp_") and "interp_##OPNAME" in self.code:  # csrc/interp.cu
            return RawKernel(self.code, name)
        if name.startswith(("reduce_", "finalize_avg_")) and not name.startswith("reduce_many_") \
                and "finalize_avg_##" in self.code:  # csrc/reduce.cu (not reduce_many)
            return RawKernel(self.code, name)

        stems = set(re.findall(r"\b(compress_\w+?)(?:##|\()", self.code))
        if not any(name == s or name.startswith(s.rstrip("_") + "_") for s in stems):
            raise CompileException(f"fake cupy: kernel {name} is not defined by the module's source")
        return RawKernel(self.code, name)


class RawKernel:
    """cupy.RawKernel(code, name): runs the compress kernels' and the interpreter's stand-ins."""

    def __init__(self, code: str, name: str, options: tuple = (), **_: Any) -> None:
        self.code, self.name, self.options = code, name, options

    def __call__(self, grid: tuple, block: tuple, args: tuple, **_: Any) -> None:
        if self.name.startswith("interp_"):  # the interpreter: on the current stream (capturable)
            stream = _CURRENT[-1].ptr if _CURRENT else 0
            _on_stream(stream, lambda: _interp_kernel.launch(self.name, int(grid[0]), tuple(args)))
            return
        if self.name.startswith(("reduce_", "finalize_avg_")):  # reduce.cu: on the current stream
            stream = _CURRENT[-1].ptr if _CURRENT else 0
            _on_stream(stream, lambda: _reduce_kernel(self.name, tuple(args)))
            return
        _compress_kernels.launch(self.name, int(grid[0]), tuple(args))


def _reduce_kernel(name: str, args: tuple) -> None:
    """csrc/reduce.cu's reduce_<op>_<dtype>(dst, a, b, n) and finalize_avg_<dtype>(dst, n, nranks),
    with the numpy simulator's arithmetic (collbench.algorithms.reduction)."""
    import ml_dtypes

    from collbench.algorithms.reduction import finalize_avg, reduce_into
    from collbench.gpu.kernel_sources import dtype_info

    def typed(x: Any, n: int, dtype: str) -> np.ndarray:
        info = dtype_info(dtype)
        arith = np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else info.storage
        return _bytes_at(int(x.data.ptr), n * info.itemsize).view(arith)

    if name.startswith("finalize_avg_"):
        dst, n, nranks = args
        finalize_avg(typed(dst, int(n), name[len("finalize_avg_"):]), int(nranks))
        return
    _, op, dtype = name.split("_", 2)
    dst, a, b, n = args
    reduce_into(op, *(typed(x, int(n), dtype) for x in (dst, a, b)))


cuda = types.ModuleType("cupy.cuda")
cuda.Stream, cuda.Event, cuda.Device, cuda.runtime, cuda.nccl = Stream, Event, _Device, runtime, nccl
cuda.get_elapsed_time = lambda start, end: (end.time - start.time) * 1e3
cuda.get_current_stream = lambda: Stream()
cuda.compiler = types.SimpleNamespace(CompileException=CompileException)

# -- the submodules: imported now, so that an instance loaded under another name (fake_cupy())
# needs no sys.modules entry afterwards -------------------------------------------------------
from . import _compress_kernels, _interp_kernel, _ipc  # noqa: E402

# -- IPC (the cuda backend's IpcCommunicator): shared-file allocations, see _ipc.py -------------

cuda.memory = types.SimpleNamespace(Memory=_ipc.Memory)
cuda.MemoryPointer = _ipc.MemoryPointer
runtime.memset, runtime.memcpy, runtime.deviceSynchronize = _ipc.memset, _ipc.memcpy, lambda: None
runtime.ipcGetMemHandle, runtime.ipcOpenMemHandle = _ipc.ipc_get_mem_handle, _ipc.ipc_open_mem_handle
runtime.ipcCloseMemHandle, runtime.cudaIpcMemLazyEnablePeerAccess = _ipc.ipc_close_mem_handle, 1
runtime.memcpyHostToDevice, runtime.memcpyDeviceToHost = 1, 2


# -- NVTX (collbench run --nvtx) and NCCL's INFO log (run --nccl-log) ---------------------------
# FAKECUDA_NVTX_DIR=path: every RangePush/RangePop is also appended to path/nvtx.<rank>.log
# ("push\t<name>" / "pop"), so a test can check names and nesting across processes.
# FAKECUDA_NCCL_NO_LOG=1: NCCL writes no log even when asked to (an absent log).
NVTX_EVENTS: list[tuple[str, str | None]] = []   # ("push", name) / ("pop", None), in order
_NVTX_FILE: list[Any] = []


def _nvtx_record(kind: str, name: str | None) -> None:
    NVTX_EVENTS.append((kind, name))
    directory = os.environ.get("FAKECUDA_NVTX_DIR")
    if directory:
        if not _NVTX_FILE:
            _NVTX_FILE.append(open(os.path.join(directory, f"nvtx.{_process_rank()}.log"), "a", buffering=1))
        _NVTX_FILE[0].write(f"push\t{name}\n" if kind == "push" else "pop\n")


nvtx = types.ModuleType("cupy.cuda.nvtx")
nvtx.available = True
nvtx.RangePush = lambda message, id_color=-1: _nvtx_record("push", message)
nvtx.RangePop = lambda: _nvtx_record("pop", None)
cuda.nvtx = nvtx

if __name__ == "cupy":  # the fake is CuPy in this process (first on PYTHONPATH): `import cupy.cuda...`
    sys.modules.update({"cupy.cuda": cuda, "cupy.cuda.nccl": nccl, "cupy.cuda.runtime": runtime,  # type: ignore[dict-item]
                        "cupy.cuda.nvtx": nvtx})


def _write_nccl_log(ndev: int, rank: int) -> None:
    """The INFO lines a real NCCL 2.x writes at init, in its formats (src/debug.cc, p2p.cc,
    graph/search.cc), to NCCL_DEBUG_FILE with %h/%p expanded, when NCCL_DEBUG is INFO or TRACE."""
    pattern = os.environ.get("NCCL_DEBUG_FILE")
    if (os.environ.get("NCCL_DEBUG", "").upper() not in ("INFO", "TRACE") or not pattern
            or os.environ.get("FAKECUDA_NCCL_NO_LOG") == "1"):
        return
    import socket

    host, pid = socket.gethostname().split(".")[0], os.getpid()
    path = pattern.replace("%h", host).replace("%p", str(pid)).replace("%%", "%")
    head = f"{host}:{pid}:{pid} [0] NCCL INFO "
    lines = (["NCCL version 2.32.3+cuda13.0"] if rank == 0 else []) + [
        "NET/Socket : Using [0]lo:127.0.0.1<0>", "Using network Socket",
        "Pattern 4, crossNic 0, nChannels 2, bw 40.000000/40.000000, type NVL/PIX, sameChannels 1"]
    lines += [f"Channel {c:02d}/0 : {rank}[0] -> {(rank + 1) % ndev}[0] via P2P/CUMEM/read"
              for c in range(2) if ndev > 1]
    with open(path, "w") as log:
        log.writelines(head + line + "\n" for line in lines)
