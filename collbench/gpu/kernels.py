"""Local reduction kernels (csrc/reduce.cu) loaded with CuPy's RawModule.

How Python picks a kernel: every entry point is ``extern "C"`` with a predictable name,
``reduce_<op>_<dtype>``, ``reduce_many_<op>_<dtype>`` and ``finalize_avg_<dtype>`` (see the top of
``csrc/reduce.cu``). A source file is compiled once per (file, dtype, device) with
``-DCOLLBENCH_ONLY_DTYPE=<id>``, so the first use of a dtype compiles only its few kernels (about a
second with NVRTC), and CuPy caches the binary on disk (``~/.cupy/kernel_cache``) for later
processes. The options carry a digest of every source file, because CuPy's cache key covers the
main source text and options but not included headers.

CuPy is imported lazily: importing this module needs only numpy. Buffers are CuPy arrays;
bfloat16 data lives in ``uint16`` arrays and must be named with ``dtype="bfloat16"``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from collbench.gpu.kernel_sources import (
    DTypeInfo,
    check_op,
    csrc_dir,
    dtype_info,
    dtypes,
    sources_digest,
)

#: Threads per block of the reduce kernels (their __launch_bounds__).
REDUCE_THREADS = 512
#: Grid-stride kernels: at most this many blocks per SM (more only queue).
BLOCKS_PER_SM = 4


class GpuUnavailableError(RuntimeError):
    """CuPy, a CUDA driver/device or NVRTC is missing; the message says which and what to do."""


class KernelCompileError(RuntimeError):
    """A kernel source failed to compile; the message carries the compiler log."""


def cupy_module() -> Any:
    """Import CuPy, or raise :class:`GpuUnavailableError` saying how to get it."""
    try:
        import cupy  # noqa: PLC0415 - lazy on purpose: the CPU path must not need CuPy
    except ImportError as exc:
        raise GpuUnavailableError(
            "collbench's CUDA kernels need CuPy: install collbench[cuda12] or collbench[cuda13] "
            f"(cupy-cuda12x / cupy-cuda13x) to match the CUDA driver ({exc})"
        ) from exc
    return cupy


def gpu_status() -> tuple[bool, str]:
    """Whether a CUDA device is usable here, and why not. Never raises."""
    try:
        cp = cupy_module()
    except GpuUnavailableError as exc:
        return False, str(exc)
    try:
        n = cp.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError: no driver, insufficient driver, ...
        return False, f"no usable CUDA driver/device: {exc}"
    if n < 1:
        return False, "no CUDA device visible (check CUDA_VISIBLE_DEVICES)"
    return True, f"{n} CUDA device(s)"


def compile_options(info: Optional[DTypeInfo]) -> tuple[str, ...]:
    """NVRTC options for one per-dtype module (``info=None``: every dtype)."""
    dtype_id = 0 if info is None else info.dtype_id
    return (
        "-std=c++17",
        f"-I{csrc_dir()}",
        f"-DCOLLBENCH_ONLY_DTYPE={dtype_id}",
        f"-DCOLLBENCH_SOURCES_DIGEST=0x{sources_digest()}",
    )


@functools.lru_cache(maxsize=None)
def _module(filename: str, dtype_name: str, device_id: int) -> Any:
    cp = cupy_module()
    path = csrc_dir() / filename
    code = path.read_text()
    return cp.RawModule(code=code, options=compile_options(dtype_info(dtype_name)))


@functools.lru_cache(maxsize=None)
def _function(filename: str, name: str, dtype_name: str, device_id: int) -> Any:
    cp = cupy_module()
    module = _module(filename, dtype_name, device_id)
    try:
        return module.get_function(name)
    except cp.cuda.compiler.CompileException as exc:
        raise KernelCompileError(f"compiling {filename} for dtype {dtype_name} failed:\n{exc}") from exc
    except (OSError, RuntimeError) as exc:
        text = str(exc)
        if "nvrtc" in text.lower():
            raise GpuUnavailableError(
                "compiling collbench kernels needs NVRTC: install the CUDA toolkit or the "
                f"nvidia-cuda-nvrtc wheel matching CuPy's CUDA version ({text})"
            ) from exc
        raise


def get_kernel(filename: str, name: str, dtype: str) -> Any:
    """The ``RawKernel`` ``name`` of ``csrc/<filename>`` compiled for ``dtype`` on the current device."""
    cp = cupy_module()
    return _function(filename, name, dtype, cp.cuda.Device().id)


def precompile(filenames: Sequence[str] = ("reduce.cu", "ipc_collectives.cu"),
               dtype_names: Optional[Sequence[str]] = None) -> None:
    """Compile and load modules now (e.g. before timing, or before starting ranks that share a
    disk cache), instead of at first use."""
    first = {"reduce.cu": "reduce_sum_{}", "ipc_collectives.cu": "ipc_one_shot_sum_{}"}
    for filename in filenames:
        for name in dtype_names or list(dtypes()):
            get_kernel(filename, first[filename].format(name), name)


@functools.lru_cache(maxsize=None)
def _sm_count(device_id: int) -> int:
    cp = cupy_module()
    return int(cp.cuda.Device(device_id).attributes["MultiProcessorCount"])


def sm_count() -> int:
    """Streaming multiprocessors of the current device."""
    cp = cupy_module()
    return _sm_count(cp.cuda.Device().id)


def occupancy_per_sm(kernel: Any, threads: int, dynamic_smem: int = 0) -> int:
    """Blocks of ``kernel`` one SM holds at once (cuOccupancyMaxActiveBlocksPerMultiprocessor),
    at least 1. Falls back to 1, which the kernels' __launch_bounds__ guarantee, when CuPy does
    not expose the query or the kernel object has no function handle."""
    function = getattr(kernel, "kernel", None)  # RawKernel -> cupy.cuda.function.Function
    pointer = getattr(function, "ptr", None)
    if pointer is None:
        return 1
    query = getattr(getattr(cupy_module().cuda, "driver", None), "occupancyMaxActiveBlocksPerMultiprocessor", None)
    if query is None:
        return 1
    try:
        return max(1, int(query(pointer, threads, dynamic_smem)))
    except Exception:  # noqa: BLE001 - CUDADriverError on an odd driver: the safe lower bound
        return 1


def grid_for(n: int, itemsize: int, max_blocks: int, threads: int = REDUCE_THREADS) -> int:
    """Blocks for a grid-stride kernel over n elements handled 16 bytes per thread-iteration."""
    packs = max(1, -(-n * itemsize // 16))
    return max(1, min(max_blocks, -(-packs // threads)))


# ---------------------------------------------------------------------------------------------
# Argument validation (pure: testable without a device)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArrayDesc:
    """What validation needs to know about a device array."""

    ptr: int
    size: int
    dtype: np.dtype
    contiguous: bool
    device: int

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize


def describe(x: Any, what: str = "array") -> ArrayDesc:
    """Describe a CuPy array (duck-typed, so this needs no CuPy import)."""
    if isinstance(x, np.ndarray):
        raise TypeError(f"{what} is a host numpy array; the kernels need a cupy.ndarray on the device")
    data = getattr(x, "data", None)
    if data is None or not hasattr(data, "ptr") or not hasattr(x, "dtype") or not hasattr(x, "size"):
        raise TypeError(f"{what} must be a cupy.ndarray, got {type(x).__name__}")
    device = getattr(getattr(x, "device", None), "id", -1)
    return ArrayDesc(int(data.ptr), int(x.size), np.dtype(x.dtype), bool(x.flags.c_contiguous), int(device))


def resolve_dtype(storage: np.dtype, dtype: Optional[str]) -> DTypeInfo:
    """The collbench dtype of buffers whose storage dtype is ``storage``.

    ``dtype`` names it explicitly (required for bfloat16, whose buffers are ``uint16``).
    """
    if dtype is not None:
        info = dtype_info(dtype)
        if info.storage != storage:
            raise TypeError(f"dtype {dtype!r} needs {info.storage} buffers, got {storage}")
        return info
    if storage == np.dtype(np.uint16):
        raise TypeError("uint16 buffers are only accepted as bfloat16 storage: pass dtype='bfloat16'")
    for info in dtypes().values():
        if info.storage == storage and info.name != "bfloat16":
            return info
    raise TypeError(f"unsupported buffer dtype {storage}; supported: {', '.join(dtypes())}")


def validate_elementwise(dst: ArrayDesc, inputs: Sequence[ArrayDesc], dtype: Optional[str]) -> tuple[DTypeInfo, int]:
    """Check an elementwise reduction's arguments; return (dtype info, element count).

    Rules: at least one input; every array contiguous, of the same storage dtype and size, on one
    device; ``dst`` may be exactly one of the inputs (in place) but must not partially overlap any.
    """
    if not inputs:
        raise ValueError("at least one input array is needed")
    arrays = [("dst", dst)] + [(f"input {i}", a) for i, a in enumerate(inputs)]
    for name, a in arrays:
        if not a.contiguous:
            raise ValueError(f"{name} is not contiguous; pass a contiguous array (e.g. cupy.ascontiguousarray)")
        if a.dtype != dst.dtype:
            raise TypeError(f"{name} has dtype {a.dtype}, dst has {dst.dtype}; all arrays must match")
        if a.size != dst.size:
            raise ValueError(f"{name} has {a.size} elements, dst has {dst.size}; all arrays must match")
        if a.device != dst.device:
            raise ValueError(f"{name} is on device {a.device}, dst on device {dst.device}")
    info = resolve_dtype(dst.dtype, dtype)
    if dst.nbytes:
        for i, a in enumerate(inputs):
            overlap = a.ptr < dst.ptr + dst.nbytes and dst.ptr < a.ptr + a.nbytes
            if overlap and a.ptr != dst.ptr:
                raise ValueError(f"dst partially overlaps input {i}; it may only be exactly an input (in place)")
    return info, dst.size


def validate_nranks(nranks: Any) -> int:
    """Rank count for avg: a positive int (bool rejected)."""
    if isinstance(nranks, (bool, np.bool_)) or not isinstance(nranks, (int, np.integer)):
        raise TypeError(f"nranks must be an int, got {type(nranks).__name__}")
    if nranks < 1 or nranks > 2**31 - 1:
        raise ValueError(f"nranks must be in [1, 2**31-1], got {nranks}")
    return int(nranks)


# ---------------------------------------------------------------------------------------------
# Launch wrappers
# ---------------------------------------------------------------------------------------------


def _check_device(device: int) -> None:
    current = cupy_module().cuda.Device().id
    if device != current:
        raise ValueError(f"the arrays are on device {device} but the current device is {current}; "
                         "launch under `with cupy.cuda.Device(...)`")


def _launch(kernel: Any, grid: int, args: tuple, stream: Any) -> None:
    # RawKernel launches on the current stream; make `stream` current for the launch only.
    if stream is None:
        kernel((grid,), (REDUCE_THREADS,), args)
    else:
        with stream:
            kernel((grid,), (REDUCE_THREADS,), args)


def reduce(op: str, dst: Any, a: Any, b: Any, *, dtype: Optional[str] = None, stream: Any = None) -> None:
    """``dst = a op b`` elementwise on the device.

    Args:
        op: sum, prod, max, min, or avg (reduced as sum: call :func:`finalize_avg` once at the end).
        dst, a, b: contiguous CuPy arrays of one dtype and size; ``dst`` may be ``a`` or ``b``.
        dtype: collbench dtype name; needed only for bfloat16 (``uint16`` storage).
        stream: CuPy stream to launch on (default: the current stream). Capturable in a graph.
    """
    check_op(op)
    d = describe(dst, "dst")
    info, n = validate_elementwise(d, [describe(a, "a"), describe(b, "b")], dtype)
    if n == 0:
        return
    _check_device(d.device)
    kop = "sum" if op == "avg" else op
    kernel = get_kernel("reduce.cu", f"reduce_{kop}_{info.name}", info.name)
    grid = grid_for(n, info.itemsize, sm_count() * BLOCKS_PER_SM)
    _launch(kernel, grid, (dst, a, b, np.uint64(n)), stream)


def reduce_many(op: str, dst: Any, inputs: Sequence[Any], *, dtype: Optional[str] = None,
                stream: Any = None) -> None:
    """``dst = inputs[0] op inputs[1] op ... op inputs[-1]`` in that order, one rounding at the end.

    16-bit floats accumulate in float32 over all inputs. The input pointers travel in a small
    device array copied from the host on ``stream``, so this call is not graph-capturable (use
    :func:`reduce` repeatedly inside graphs). ``dst`` may be one of the inputs.
    """
    check_op(op)
    descs = [describe(x, f"input {i}") for i, x in enumerate(inputs)]
    d = describe(dst, "dst")
    info, n = validate_elementwise(d, descs, dtype)
    if n == 0:
        return
    _check_device(d.device)
    cp = cupy_module()
    kop = "sum" if op == "avg" else op
    kernel = get_kernel("reduce.cu", f"reduce_many_{kop}_{info.name}", info.name)
    grid = grid_for(n, info.itemsize, sm_count() * BLOCKS_PER_SM)
    host = np.array([d.ptr for d in descs], dtype=np.uint64)
    s = stream if stream is not None else cp.cuda.get_current_stream()
    with s:
        # Allocated and filled on the launch stream, so the pool cannot hand it out again before
        # the kernel has read it.
        table = cp.empty(len(descs), dtype=cp.uint64)
        table.set(host, stream=s)
    _launch(kernel, grid, (dst, table, np.int32(len(descs)), np.uint64(n)), s)


def finalize_avg(dst: Any, nranks: int, *, dtype: Optional[str] = None, stream: Any = None) -> None:
    """``dst = dst / nranks`` in place: the end of an avg reduction.

    Integers truncate toward zero; float16/bfloat16 divide in float32 and round once.
    """
    nranks = validate_nranks(nranks)
    d = describe(dst, "dst")
    info, n = validate_elementwise(d, [d], dtype)
    if n == 0:
        return
    _check_device(d.device)
    kernel = get_kernel("reduce.cu", f"finalize_avg_{info.name}", info.name)
    grid = grid_for(n, info.itemsize, sm_count() * BLOCKS_PER_SM)
    _launch(kernel, grid, (dst, np.uint64(n), np.int32(nranks)), stream)
