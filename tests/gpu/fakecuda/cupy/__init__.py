"""A CPU stand-in for the parts of CuPy (and its NCCL binding) that collbench's GPU backends use.

It exists so the GPU backends' Python (buffer views, NCCL call sequences, graph capture, event
timing, metadata) runs end to end under the real CLI on a machine without a GPU. Device memory is
numpy; pointers are fake addresses resolved through a heap; streams execute immediately unless
capturing, in which case work is recorded and replayed by the graph. NCCL is world-size 1 only
(collectives are copies), which is also all one GPU can host. Put this directory first on
PYTHONPATH to use it; never install it.
"""

from __future__ import annotations

import sys
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
        stream.captured.append(work)
    else:
        work()


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
    getDeviceProperties=lambda i: {"name": b"Fake GPU", "uuid": b"\x01" * 16, "pciDomainID": 0,
                                   "pciBusID": 7, "pciDeviceID": 0, "totalGlobalMem": 16 << 30,
                                   "major": 9, "minor": 0},
    driverGetVersion=lambda: 13000, runtimeGetVersion=lambda: 13000,
    memcpyAsync=_memcpy_async, memcpyDeviceToDevice=3, CUDARuntimeError=CUDARuntimeError,
)


# -- NCCL, world size 1 -----------------------------------------------------------------------
_NCCL_ITEMSIZE = {0: 1, 1: 1, 2: 4, 3: 4, 4: 8, 5: 8, 6: 2, 7: 4, 8: 8, 9: 2}
NCCL_CALLS: list[tuple] = []   # every NCCL call made, for tests


class NcclCommunicator:
    def __init__(self, ndev: int, uid: Any, rank: int) -> None:
        assert ndev == 1 and rank == 0, "the fake NCCL hosts a single rank (like one GPU)"

    def _copy(self, name: str, send: int, recv: int, count: int, dtype: int, stream: int) -> None:
        NCCL_CALLS.append((name, count, dtype))
        nbytes = count * _NCCL_ITEMSIZE[dtype]
        if send != recv and nbytes:
            _memcpy_async(recv, send, nbytes, 3, stream)

    def allReduce(self, s, r, count, dtype, op, stream):
        self._copy("allReduce", s, r, count, dtype, stream)

    def allGather(self, s, r, count, dtype, stream):
        self._copy("allGather", s, r, count, dtype, stream)

    def reduceScatter(self, s, r, count, dtype, op, stream):
        self._copy("reduceScatter", s, r, count, dtype, stream)

    def broadcast(self, s, r, count, dtype, root, stream):
        self._copy("broadcast", s, r, count, dtype, stream)

    def reduce(self, s, r, count, dtype, op, root, stream):
        self._copy("reduce", s, r, count, dtype, stream)

    def send(self, *args):
        raise AssertionError("no peers at world size 1")

    recv = send

    def destroy(self) -> None:
        pass


nccl = types.ModuleType("cupy.cuda.nccl")
nccl.available = True
nccl.NcclCommunicator = NcclCommunicator
nccl.get_unique_id = lambda: (0,) * 128
nccl.get_version = lambda: 23203
nccl.groupStart = lambda: NCCL_CALLS.append(("groupStart",))
nccl.groupEnd = lambda: NCCL_CALLS.append(("groupEnd",))

cuda = types.ModuleType("cupy.cuda")
cuda.Stream, cuda.Event, cuda.Device, cuda.runtime, cuda.nccl = Stream, Event, _Device, runtime, nccl
cuda.get_elapsed_time = lambda start, end: (end.time - start.time) * 1e3
cuda.get_current_stream = lambda: Stream()
sys.modules["cupy.cuda"] = cuda
sys.modules["cupy.cuda.nccl"] = nccl
sys.modules["cupy.cuda.runtime"] = runtime  # type: ignore[assignment]
