"""Fake CUDA IPC for the fake CuPy: device allocations other processes can map.

``cupy.cuda.memory.Memory`` allocations live in files (under FAKECUDA_IPC_DIR, else the temp
directory) mapped shared, so ``cudaIpcGetMemHandle`` is the file's name and ``cudaIpcOpenMemHandle``
maps the same pages into the peer process at a new fake address: the cuda backend's
IpcCommunicator (descriptor, peer pointers, signal buffers) works across ranks that are processes.
Host pointers (``numpy_array.ctypes.data``) in ``cudaMemcpy`` are real addresses.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import tempfile

import numpy as np

from . import HEAP, _bytes_at

_PATHS: dict[int, str] = {}   # base address -> file of this process's own allocations
_OWN: list[str] = []


def _map(path: str, nbytes: int) -> int:
    return HEAP.add(np.memmap(path, dtype=np.uint8, mode="r+", shape=(nbytes,)))


class Memory:
    """cupy.cuda.memory.Memory: ``size`` bytes at ``ptr``, zero-filled, shareable."""

    def __init__(self, nbytes: int) -> None:
        n = max(int(nbytes), 1)
        fd, path = tempfile.mkstemp(prefix="fakecuda-ipc-", dir=os.environ.get("FAKECUDA_IPC_DIR") or None)
        os.ftruncate(fd, n)
        os.close(fd)
        _OWN.append(path)
        self.size = int(nbytes)
        self.ptr = _map(path, n)
        _PATHS[self.ptr] = path


class MemoryPointer:
    def __init__(self, mem: Memory, offset: int) -> None:
        self.mem, self.off = mem, int(offset)
        self.ptr = mem.ptr + self.off


def ipc_get_mem_handle(ptr: int) -> bytes:
    path = _PATHS[ptr]
    return f"{path}\0{HEAP.blocks[ptr].size}".encode()


def ipc_open_mem_handle(handle: bytes, flags: int = 0) -> int:
    path, size = bytes(handle).decode().split("\0")
    return _map(path, int(size))


def ipc_close_mem_handle(ptr: int) -> None:
    HEAP.free(ptr)


def memset(ptr: int, value: int, nbytes: int) -> None:
    _bytes_at(ptr, nbytes)[...] = value


def _host(address: int, nbytes: int) -> np.ndarray:
    return np.ctypeslib.as_array((ctypes.c_ubyte * nbytes).from_address(address))


def memcpy(dst: int, src: int, nbytes: int, kind: int) -> None:
    """cudaMemcpy (synchronous); kinds 1 host to device, 2 device to host, 3 device to device."""
    if nbytes == 0:
        return
    if kind == 1:
        _bytes_at(dst, nbytes)[...] = _host(src, nbytes)
    elif kind == 2:
        _host(dst, nbytes)[...] = _bytes_at(src, nbytes)
    else:
        _bytes_at(dst, nbytes)[...] = _bytes_at(src, nbytes)


@atexit.register
def _remove_files() -> None:
    for path in _OWN:
        try:
            os.unlink(path)
        except OSError:
            pass
