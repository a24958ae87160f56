"""GPU side of collbench: CUDA reduction kernels and intra-node IPC collectives.

Importing this package needs only numpy; CuPy (and mpi4py for :mod:`collbench.gpu.ipc`) are
imported when a kernel is first used. Kernel sources live in ``csrc/`` (the data package
``collbench.csrc``) and are compiled with NVRTC through CuPy at first use.

Public API:
    :func:`collbench.gpu.kernels.reduce`, :func:`~collbench.gpu.kernels.reduce_many`,
    :func:`~collbench.gpu.kernels.finalize_avg`, :func:`~collbench.gpu.kernels.precompile`,
    :func:`~collbench.gpu.kernels.gpu_status`, :class:`collbench.gpu.ipc.IpcCommunicator`,
    the dtype table :func:`collbench.gpu.kernel_sources.dtypes`.
"""

from collbench.gpu.ipc import IpcCommunicator, IpcError, IpcTimeoutError
from collbench.gpu.kernel_sources import OPS, DTypeInfo, dtype_info, dtypes
from collbench.gpu.kernels import (
    GpuUnavailableError,
    KernelCompileError,
    finalize_avg,
    gpu_status,
    precompile,
    reduce,
    reduce_many,
)

__all__ = [
    "OPS",
    "DTypeInfo",
    "GpuUnavailableError",
    "IpcCommunicator",
    "IpcError",
    "IpcTimeoutError",
    "KernelCompileError",
    "dtype_info",
    "dtypes",
    "finalize_avg",
    "gpu_status",
    "precompile",
    "reduce",
    "reduce_many",
]
