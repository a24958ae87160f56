"""MPI on CuPy device buffers (``--backend mpi --device cuda``).

With a CUDA-aware MPI the device pointers go straight to MPI. Otherwise the user must opt into
``--stage-host``: every operation copies its input to host memory, calls MPI there and copies
the result back, and the copies are part of the measured time (the row's executor says
``staged-host``), which is what an application without CUDA-aware MPI pays.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
from typing import Any

from ..algorithms import Layout
from ..dtypes import DType
from ..errors import UsageError
from ..gpu import device as gpu_device
from .base import OpRequest, PreparedOp
from .mpi import MpiBackend, aligned_bytes, typed

_RTLD_NOLOAD = 4


def mpi_cuda_support() -> tuple[bool, str]:
    """(CUDA-aware?, how we know) for the MPI library this process has loaded."""
    if os.environ.get("MPICH_GPU_SUPPORT_ENABLED") == "1":
        return True, "MPICH_GPU_SUPPORT_ENABLED=1 (Cray MPICH)"
    paths = sorted({line.split()[-1] for line in open("/proc/self/maps") if "libmpi" in line
                    and line.split()[-1].startswith("/")})
    for path in paths:
        try:
            library = ctypes.CDLL(path, mode=_RTLD_NOLOAD)
        except OSError:
            continue
        query = getattr(library, "MPIX_Query_cuda_support", None)
        if query is not None:
            return bool(query()), f"MPIX_Query_cuda_support() = {query()} in {path}"
    return False, "the MPI library offers no MPIX_Query_cuda_support()"


class MpiCudaBackend(MpiBackend):
    name = "mpi"
    # native MPI collectives on device buffers; custom schedules on device buffers run on nccl
    capabilities = dataclasses.replace(MpiBackend.capabilities, needs=("mpi4py", "cupy", "gpu"),
                                       schedules=False)

    def __init__(self, comm: Any, layout: Layout | None = None,
                 algorithm_options: dict[str, str] | None = None, stage_host: bool = False,
                 gpu_map: tuple[int, ...] | None = None) -> None:
        super().__init__(comm, layout, algorithm_options)
        from mpi4py import MPI

        try:
            import cupy
        except ImportError as exc:
            raise UsageError(f"--device cuda needs CuPy: pip install 'collbench[cuda12]' ({exc})") from None
        self._cupy = cupy
        aware, evidence = mpi_cuda_support()
        self.cuda_aware, self.evidence, self.stage_host = aware, evidence, stage_host
        error = None
        if not aware and not stage_host:
            error = (f"this MPI is not CUDA-aware ({evidence}); rerun with --stage-host to copy "
                     "through host memory (timed), or use an MPI built with CUDA support")
        local = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.Get_rank())
        try:
            self.device = gpu_device.choose_device(local.Get_rank(), cupy.cuda.runtime.getDeviceCount(), gpu_map)
        except (UsageError, cupy.cuda.runtime.CUDARuntimeError) as exc:
            error = error or str(exc)
        local.Free()
        errors = [e for e in comm.allgather(error) if e]
        if errors:
            raise UsageError(errors[0])
        cupy.cuda.Device(self.device).use()
        self._dev_send = cupy.empty(0, dtype=cupy.uint8)
        self._dev_recv = cupy.empty(0, dtype=cupy.uint8)

    def reserve(self, max_bytes: int, dtypes: list[DType]) -> None:
        cupy = self._cupy
        free, _ = cupy.cuda.runtime.memGetInfo()
        if 2 * max_bytes > free - (1 << 30):
            raise UsageError(f"maxbytes {max_bytes} needs {2 * max_bytes / 2**30:.1f} GiB on GPU "
                             f"{self.device} but {free / 2**30:.1f} GiB is free; lower -e/--maxbytes")
        if self._dev_send.nbytes < max_bytes:
            self._dev_send = cupy.empty(max_bytes, dtype=cupy.uint8)
            self._dev_recv = cupy.empty(max_bytes, dtype=cupy.uint8)
            if self.stage_host:
                self._send, self._recv = aligned_bytes(max_bytes), aligned_bytes(max_bytes)
            else:  # the base class's host views become device views (see _typed)
                self._send, self._recv = self._dev_send, self._dev_recv

    def _typed(self, buffer: Any, dtype: DType, count: int, offset: int = 0) -> Any:
        if isinstance(buffer, self._cupy.ndarray):
            start = offset * dtype.itemsize
            return buffer[start:start + count * dtype.itemsize].view(
                "uint16" if dtype.name == "bfloat16" else dtype.numpy.str)
        return typed(buffer, dtype, count, offset)

    def unsupported_reason(self, request: OpRequest) -> str | None:
        if request.algorithm != "native":
            return "custom schedules on device buffers run on --backend nccl"
        return super().unsupported_reason(request)

    def prepare(self, request: OpRequest) -> PreparedOp:
        host = super().prepare(request)
        if not self.stage_host:
            return host  # device views passed to a CUDA-aware MPI
        cupy = self._cupy
        device_dtype = "uint16" if request.dtype.name == "bfloat16" else request.dtype.numpy.str

        def mirror(view: Any) -> Any:
            """The device range at the same offset as a host view of the staging buffers."""
            base, dev = ((self._send, self._dev_send) if _within(view, self._send)
                         else (self._recv, self._dev_recv))
            offset = view.ctypes.data - base.ctypes.data
            return dev[offset:offset + view.nbytes].view(device_dtype)

        dev_in, dev_out = mirror(host.input), mirror(host.output)
        host_in, host_out = host.input, host.output

        def staged() -> None:
            dev_in.get(out=host_in.view(dev_in.dtype))
            host.run()
            dev_out.set(host_out.view(dev_out.dtype))
            cupy.cuda.get_current_stream().synchronize()

        return PreparedOp(staged, dev_in, dev_out, executor="staged-host")

    def write(self, view: Any, data: Any) -> None:
        if isinstance(view, self._cupy.ndarray):
            view.set(data.view(view.dtype))
            self._cupy.cuda.get_current_stream().synchronize()
        else:
            super().write(view, data)

    def read(self, view: Any) -> Any:
        if isinstance(view, self._cupy.ndarray):
            return gpu_device.host_view(view.get())
        return super().read(view)

    def metadata(self) -> dict[str, Any]:
        devices = self.comm.gather(gpu_device.device_facts(self.device), root=0)
        return {"backend": "mpi", "device": "cuda", "cuda_aware": self.cuda_aware,
                "cuda_aware_evidence": self.evidence, "stage_host": self.stage_host,
                "cuda": gpu_device.runtime_facts(), "devices": devices}


def _within(view: Any, base: Any) -> bool:
    start, end = base.ctypes.data, base.ctypes.data + base.nbytes
    return start <= view.ctypes.data < end or (view.nbytes == 0 and view.ctypes.data == end)
