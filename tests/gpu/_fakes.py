"""Stand-ins for CuPy device memory and mpi4py communicators, for testing GPU-side Python on the CPU."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import numpy as np


class Heap:
    """Fake device memory: numpy byte arrays at fake 256-aligned addresses."""

    def __init__(self) -> None:
        self.blocks: dict[int, np.ndarray] = {}
        self.next = 0x7F0000000000
        self.lock = threading.Lock()

    def alloc(self, nbytes: int) -> tuple[int, np.ndarray]:
        with self.lock:
            base = self.next
            self.next += (max(nbytes, 1) + 511) // 256 * 256
            buf = np.zeros(max(nbytes, 1), np.uint8)
            self.blocks[base] = buf
            return base, buf

    def find(self, ptr: int) -> tuple[np.ndarray, int]:
        for base, buf in self.blocks.items():
            if base <= ptr < base + buf.size:
                return buf, ptr - base
        raise AssertionError(f"bad fake pointer {ptr:#x}")


class FakeArray:
    def __init__(self, base: int, buf: np.ndarray, offset: int, n: int, dtype: Any) -> None:
        self.base, self.buf, self.offset, self.size, self.dtype = base, buf, offset, n, np.dtype(dtype)
        self.data = SimpleNamespace(ptr=base + offset)
        self.flags = SimpleNamespace(c_contiguous=True)
        self.device = SimpleNamespace(id=0)

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    @property
    def np(self) -> np.ndarray:
        return self.buf[self.offset:self.offset + self.size * self.dtype.itemsize].view(self.dtype)

    def view(self, dtype: Any) -> "FakeArray":
        return FakeArray(self.base, self.buf, self.offset, self.size * self.dtype.itemsize // np.dtype(dtype).itemsize, dtype)

    def fill(self, v: Any) -> None:
        self.np.fill(v)

    def __getitem__(self, sl: slice) -> "FakeArray":
        start, stop, step = sl.indices(self.size)
        assert step == 1
        return FakeArray(self.base, self.buf, self.offset + start * self.dtype.itemsize, max(0, stop - start), self.dtype)

    def set(self, host: np.ndarray, stream: Any = None) -> None:
        assert host.dtype == self.dtype and host.size == self.size
        self.np[...] = host

    def get(self) -> np.ndarray:
        return self.np.copy()


def fake_cupy(heap: Heap) -> SimpleNamespace:
    def empty(n: int, dtype: Any = np.float32) -> FakeArray:
        base, buf = heap.alloc(n * np.dtype(dtype).itemsize)
        return FakeArray(base, buf, 0, n, dtype)

    def memset(ptr: int, value: int, n: int) -> None:
        buf, off = heap.find(ptr)
        buf[off:off + n] = value

    def memcpy_async(dst: int, src: int, n: int, kind: int, stream: int) -> None:
        dbuf, doff = heap.find(dst)
        sbuf, soff = heap.find(src)
        dbuf[doff:doff + n] = sbuf[soff:soff + n]

    stream = SimpleNamespace(synchronize=lambda: None, ptr=0)
    return SimpleNamespace(
        empty=empty, uint8=np.uint8, uint64=np.uint64,
        get_default_memory_pool=lambda: SimpleNamespace(free_all_blocks=lambda: None),
        ndarray=lambda shape, dtype, memptr: FakeArray(memptr.mem.base, memptr.mem.buf, memptr.off, shape[0], dtype),
        cuda=SimpleNamespace(
            get_current_stream=lambda: stream,
            Device=lambda *a: SimpleNamespace(synchronize=lambda: None, id=0),
            MemoryPointer=lambda mem, off: SimpleNamespace(mem=mem, off=off),
            runtime=SimpleNamespace(memset=memset, memcpyAsync=memcpy_async, memcpyDeviceToDevice=3),
        ),
    )


class FakeNode:
    """The mpi4py calls the script makes, for ranks that are threads."""

    def __init__(self, rank: int, shared: dict) -> None:
        self.rank, self.shared = rank, shared

    def Get_rank(self) -> int:
        return self.rank

    def Get_size(self) -> int:
        return self.shared["n"]

    def allgather(self, x: Any) -> list:
        sh = self.shared
        sh["slots"][self.rank] = x
        sh["barrier"].wait(timeout=20)
        out = list(sh["slots"])
        sh["barrier"].wait(timeout=20)
        return out

    def gather(self, x: Any, root: int = 0):
        out = self.allgather(x)
        return out if self.rank == root else None

    def Barrier(self) -> None:
        self.allgather(None)


