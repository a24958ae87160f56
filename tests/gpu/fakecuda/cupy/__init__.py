"""A CPU stand-in for the parts of CuPy (and its NCCL binding) that collbench's GPU backends use.

It exists so the GPU backends' Python (buffer views, NCCL call sequences, graph capture, event
timing, metadata) runs end to end under the real CLI on a machine without a GPU. Device memory is
numpy; pointers are fake addresses resolved through a heap; streams execute immediately unless
capturing, in which case work is recorded and replayed by the graph. Put this directory first on
PYTHONPATH to use it; never install it.

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
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import types
from typing import Any, Callable

import numpy as np

__version__ = "0.0-fake"
uint8, uint16, uint64, float16, float32 = np.uint8, np.uint16, np.uint64, np.float16, np.float32

_HEAP: dict[int, np.ndarray] = {}
_NEXT = [0x10000000]
_STREAMS: dict[int, "Stream"] = {}


def _alloc(nbytes: int) -> int:
    base = _NEXT[0]
    _HEAP[base] = np.zeros(max(nbytes, 1), np.uint8)
    _NEXT[0] += (max(nbytes, 1) + 1023) // 512 * 512
    return base


def _bytes_at(ptr: int, nbytes: int) -> np.ndarray:
    for base, buf in _HEAP.items():
        if base <= ptr and ptr + nbytes <= base + buf.size:
            return buf[ptr - base:ptr - base + nbytes]
    raise AssertionError(f"fake cupy: {nbytes} bytes at {ptr:#x} are outside every allocation")


class ndarray:
    def __init__(self, base: int, offset: int, size: int, dtype: Any) -> None:
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


def empty(n: int, dtype: Any = np.float32) -> ndarray:
    return ndarray(_alloc(n * np.dtype(dtype).itemsize), 0, n, dtype)


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
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


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

    def use(self) -> None:
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
        world = pending[0][1]._world()
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

cuda = types.ModuleType("cupy.cuda")
cuda.Stream, cuda.Event, cuda.Device, cuda.runtime, cuda.nccl = Stream, Event, _Device, runtime, nccl
cuda.get_elapsed_time = lambda start, end: (end.time - start.time) * 1e3
cuda.get_current_stream = lambda: Stream()
sys.modules["cupy.cuda"] = cuda
sys.modules["cupy.cuda.nccl"] = nccl
sys.modules["cupy.cuda.runtime"] = runtime  # type: ignore[assignment]
