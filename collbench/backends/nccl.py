"""The NCCL backend: NCCL's collectives, and custom schedules over grouped NCCL send/recv, on
device buffers. One rank per GPU; NCCL is bootstrapped over MPI (rank 0 creates the unique id
and broadcasts it). CuPy is imported here only, never on the CPU path."""

from __future__ import annotations

import os
from typing import Any

from ..algorithms import Buf, Collective, Layout, Problem, inplace_input_offset, vcounts
from ..compress.names import is_compressed
from ..dtypes import DType
from ..errors import UsageError
from ..execute.bind import lower
from ..execute.programs import algorithm_unsupported_reason, build_program
from ..gpu import device as gpu_device
from ..gpu.nccl_lib import NCCL_DTYPES, NCCL_OPS, version_string
from ..trace import nvtx
from .base import Backend, Capabilities, OpRequest, Placement, PreparedOp

# NCCL's own knobs that collbench passes through and records (--nccl-algo, --nccl-proto).
NCCL_ENV_PREFIX = "NCCL_"


def device_bytes_needed(max_bytes: int) -> int:
    """Send + receive buffers of the largest size (scratch is at most one more)."""
    return 3 * max_bytes


class CudaBuffers:
    """Two device byte buffers sized for the largest message, and typed views into them."""

    def __init__(self, cupy: Any) -> None:
        self.cupy = cupy
        self.send = cupy.empty(0, dtype=cupy.uint8)
        self.recv = cupy.empty(0, dtype=cupy.uint8)

    def reserve(self, max_bytes: int, device: int) -> None:
        cupy = self.cupy
        free, total = cupy.cuda.runtime.memGetInfo()
        need = device_bytes_needed(max_bytes)
        # keep 1 GiB for NCCL's channels, CUDA graphs and the context
        if need > free - (1 << 30):
            raise UsageError(f"maxbytes {max_bytes} needs about {need / 2**30:.1f} GiB on GPU {device} "
                             f"but {free / 2**30:.1f} GiB of {total / 2**30:.1f} GiB is free; lower -e/--maxbytes")
        if self.send.nbytes < max_bytes:
            self.send = cupy.empty(max_bytes, dtype=cupy.uint8)
            self.recv = cupy.empty(max_bytes, dtype=cupy.uint8)

    @staticmethod
    def device_dtype(dtype: DType) -> str:
        """CuPy has no bfloat16: such buffers are uint16 on the device, bfloat16 on the host."""
        return "uint16" if dtype.name == "bfloat16" else dtype.numpy.str

    def typed(self, buffer: Any, dtype: DType, count: int, offset: int = 0) -> Any:
        start = offset * dtype.itemsize
        return buffer[start:start + count * dtype.itemsize].view(self.device_dtype(dtype))


def _refuse_shared_gpus(devices: list[tuple[str, int, str, Any]]) -> None:
    """NCCL cannot run two ranks on one GPU. Ranks are compared by physical device (UUID or PCI
    id), never by index: with per-task GPU binding every rank's GPU is its device 0."""
    groups = gpu_device.shared_devices([identity for _, _, identity, _ in devices])
    if groups:
        ranks = groups[0]
        host, index, identity, _ = devices[ranks[0]]
        raise UsageError(f"NCCL needs one GPU per rank, but ranks {', '.join(map(str, ranks))} would share "
                         f"GPU {index} on {host} ({identity}); use as many ranks per node as GPUs")


CAPABILITIES = Capabilities(
    backend="nccl", needs=("mpi4py", "cupy", "gpu", "nccl"),
    native=frozenset({Collective.ALLREDUCE, Collective.ALLGATHER, Collective.REDUCE_SCATTER,
                      Collective.BROADCAST, Collective.REDUCE, Collective.ALLTOALL,
                      Collective.ALLTOALLV}),
    schedules=True,  # every registered schedule, over grouped ncclSend/ncclRecv
    native_notes={Collective.ALLTOALL: "grouped send/recv, out of place only",
                  Collective.ALLTOALLV: "grouped send/recv, per-peer counts, out of place only"})


def _alltoallv_call(cupy: Any, nccl: Any, comm: Any, sptr: int, rptr: int, counts: vcounts.Counts,
                    nccl_dtype: int, itemsize: int, rank: int, stream: int) -> Any:
    """Alltoallv as one group of ncclSend/ncclRecv with per-peer counts and packed displacements
    (what PyTorch's all_to_all_single does on NCCL); empty blocks post nothing; the own block is
    a device copy on the same stream."""
    p = counts.matrix.shape[0]
    sends = [(j, sptr + int(counts.sdispls[rank, j]) * itemsize, int(counts.matrix[rank, j]))
             for j in range(p) if j != rank and counts.matrix[rank, j]]
    recvs = [(q, rptr + int(counts.rdispls[rank, q]) * itemsize, int(counts.matrix[q, rank]))
             for q in range(p) if q != rank and counts.matrix[q, rank]]
    nbytes = int(counts.matrix[rank, rank]) * itemsize
    own = (rptr + int(counts.rdispls[rank, rank]) * itemsize,
           sptr + int(counts.sdispls[rank, rank]) * itemsize, nbytes,
           cupy.cuda.runtime.memcpyDeviceToDevice, stream)

    def run() -> None:
        if nbytes:
            cupy.cuda.runtime.memcpyAsync(*own)
        if not sends and not recvs:
            return
        nccl.groupStart()
        for peer, ptr, n in sends:
            comm.send(ptr, n, nccl_dtype, peer, stream)
        for peer, ptr, n in recvs:
            comm.recv(ptr, n, nccl_dtype, peer, stream)
        nccl.groupEnd()
    return run


def _alltoall_call(cupy: Any, nccl: Any, comm: Any, sptr: int, rptr: int, count: int, nccl_dtype: int,
                   itemsize: int, p: int, rank: int, stream: int) -> Any:
    """Alltoall as nccl-tests does it: one group of ncclSend/ncclRecv with every peer (block
    ``j`` of the send buffer to rank ``j``, block ``j`` of the receive buffer from it); the own
    block is a device copy on the same stream. Pointers are computed once, not per call."""
    block = count * itemsize
    peers = [(j, sptr + j * block, rptr + j * block) for j in range(p) if j != rank]
    own = (rptr + rank * block, sptr + rank * block, block, cupy.cuda.runtime.memcpyDeviceToDevice, stream)

    def run() -> None:
        if block:
            cupy.cuda.runtime.memcpyAsync(*own)
        if not peers or not count:
            return
        nccl.groupStart()
        for peer, send, recv in peers:
            comm.send(send, count, nccl_dtype, peer, stream)
            comm.recv(recv, count, nccl_dtype, peer, stream)
        nccl.groupEnd()
    return run


class NcclBackend(Backend):
    """NCCL collectives on CuPy buffers.

    Args:
        comm: MPI communicator for bootstrap (its ranks become NCCL ranks).
        layout: node structure for hierarchical schedules.
        algorithm_options: options for custom algorithms.
        graph_replays: CUDA-graph mode (``-G``): replay the captured loop this many times.
        gpu_map: device index per local rank (default: local rank modulo visible devices).
        init_timeout: seconds NCCL initialisation may take on any rank before every rank gives
            up together (default: COLLBENCH_NCCL_INIT_TIMEOUT, else 300).
    """

    name = "nccl"
    capabilities = CAPABILITIES

    def __init__(self, comm: Any, layout: Layout | None = None,
                 algorithm_options: dict[str, str] | None = None, graph_replays: int = 0,
                 gpu_map: tuple[int, ...] | None = None, init_timeout: float | None = None) -> None:
        from mpi4py import MPI

        try:
            import cupy
            from cupy.cuda import nccl
        except ImportError as exc:
            raise UsageError(f"the nccl backend needs CuPy and NCCL: pip install 'collbench[cuda12]' "
                             f"(or [cuda13]) ({exc})") from None
        if not nccl.available:
            raise UsageError("CuPy cannot load NCCL: install nvidia-nccl-cu12/-cu13, or put the directory "
                             "holding libnccl.so.2 on LD_LIBRARY_PATH (e.g. `module load nccl`)")
        from ..gpu.nccl_init import create_communicator
        from ..gpu.nccl_init import init_timeout as resolve_init_timeout
        from ..gpu.timer import CudaEventTimer

        self._cupy, self._nccl = cupy, nccl
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        local = comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank = local.Get_rank()
        local.Free()
        # Device choice can fail on one rank only (a bad --gpu-map on one node): decide it
        # everywhere first and share the verdict, so no rank is left waiting in a collective.
        error = identity = None
        try:
            timeout = resolve_init_timeout(init_timeout)
            visible = cupy.cuda.runtime.getDeviceCount()
            self.device = gpu_device.choose_device(self.local_rank, visible, gpu_map)
            identity = gpu_device.device_identity(self.device)
        except (UsageError, cupy.cuda.runtime.CUDARuntimeError) as exc:
            error, self.device = str(exc), -1
        devices = comm.allgather((gpu_device.node_name_for_map(), self.device, identity, error))
        errors = [e for *_, e in devices if e]
        if errors:
            raise UsageError(errors[0])
        _refuse_shared_gpus(devices)
        cupy.cuda.Device(self.device).use()
        size, rank, device = self.size, self.rank, self.device

        def init_rank(uid: Any) -> Any:
            # runs in create_communicator's thread: the current CUDA device is per thread, and
            # ncclCommInitRank binds the communicator to the calling thread's device
            cupy.cuda.Device(device).use()
            return nccl.NcclCommunicator(size, uid, rank)

        self.nccl_comm = create_communicator(comm, init_rank, nccl.get_unique_id, timeout)
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self.buffers = CudaBuffers(cupy)
        # the barrier lines the ranks up before a graph's timed replays (see CudaEventTimer)
        self.timer = CudaEventTimer(self.stream, graph_replays, barrier=comm.Barrier)
        self.layout = layout
        self.algorithm_options = dict(algorithm_options or {})
        self.graph_replays = graph_replays

    # -- capabilities -------------------------------------------------------------------------

    def problem(self, request: OpRequest) -> Problem:
        return Problem(request.collective, self.size, request.count, request.root, self.layout,
                       request.skew)

    def unsupported_reason(self, request: OpRequest) -> str | None:
        if is_compressed(request.algorithm):  # runners with compress.cu's kernels (compress/)
            from ..compress.backend import nccl_unsupported_reason

            return nccl_unsupported_reason(request, self.options_for(request), self.graph_replays)
        if request.algorithm != "native":
            return algorithm_unsupported_reason(request.algorithm, self.problem(request), request.op,
                                                self.options_for(request))
        if request.op == "avg" and self._nccl.get_version() < 21000:
            return "ncclAvg needs NCCL 2.10 or newer"
        if (request.collective in (Collective.ALLTOALL, Collective.ALLTOALLV)
                and request.placement is Placement.IN_PLACE):
            # nccl-tests times it but prints #wrong N/A: sends and receives race on one buffer
            return f"NCCL {request.collective.value} (grouped send/recv) runs out of place only"
        return None

    def reserve(self, max_bytes: int, dtypes: list[DType]) -> None:
        self.buffers.reserve(max_bytes, self.device)

    def write(self, view: Any, data: Any) -> None:
        gpu_device.copy_to_device(view, data, self.stream)

    def read(self, view: Any) -> Any:
        return gpu_device.copy_to_host(view, self.stream)

    # -- native collectives ---------------------------------------------------------------------

    def prepare(self, request: OpRequest) -> PreparedOp:
        self.check_supported(request)
        if is_compressed(request.algorithm):
            from ..compress.backend import prepare_nccl

            return prepare_nccl(request, self)
        if request.algorithm != "native":
            return self._prepare_schedule(request)
        comm, p, rank, stream = self.nccl_comm, self.size, self.rank, self.stream.ptr
        dtype, count, coll = request.dtype, request.count, request.collective
        nccl_dtype = NCCL_DTYPES[dtype.name]
        op = NCCL_OPS[request.op] if coll.reduces else None
        in_place = request.placement is Placement.IN_PLACE
        buffers, root = self.buffers, request.root
        problem = self.problem(request)  # lengths and in-place aliasing: the collective's descriptor
        n_in, n_out = problem.input_len(rank), problem.output_len(rank)
        if in_place:
            host, offset = inplace_input_offset(problem, rank)
            if host is Buf.OUTPUT:
                out = buffers.typed(buffers.recv, dtype, n_out)
                inp = buffers.typed(buffers.recv, dtype, n_in, offset)
            else:
                inp = buffers.typed(buffers.recv, dtype, n_in)
                out = buffers.typed(buffers.recv, dtype, n_out, offset)
        else:
            inp = buffers.typed(buffers.send, dtype, n_in)
            out = buffers.typed(buffers.recv, dtype, n_out)
        sptr, rptr = inp.data.ptr, out.data.ptr
        calls = {  # one NCCL call per collective
            Collective.ALLREDUCE: lambda: comm.allReduce(sptr, rptr, count, nccl_dtype, op, stream),
            Collective.ALLGATHER: lambda: comm.allGather(sptr, rptr, count, nccl_dtype, stream),
            Collective.REDUCE_SCATTER: lambda: comm.reduceScatter(sptr, rptr, count, nccl_dtype, op, stream),
            Collective.BROADCAST: lambda: comm.broadcast(sptr, rptr, count, nccl_dtype, root, stream),
            Collective.REDUCE: lambda: comm.reduce(sptr, rptr, count, nccl_dtype, op, root, stream),
            # NCCL has no alltoall call: grouped send/recv, as nccl-tests does (O(p) to build)
            Collective.ALLTOALL: _alltoall_call(self._cupy, self._nccl, comm, sptr, rptr, count,
                                                nccl_dtype, dtype.itemsize, p, rank, stream),
        }
        if coll is Collective.ALLTOALLV:  # per-peer counts from the problem's count matrix
            calls[coll] = _alltoallv_call(self._cupy, self._nccl, comm, sptr, rptr, vcounts.of(problem),
                                          nccl_dtype, dtype.itemsize, rank, stream)
        return PreparedOp(nvtx.collective(calls[coll], request, p), inp, out)  # --nvtx: a named range

    # -- custom schedules over NCCL send/recv -------------------------------------------------

    def _prepare_schedule(self, request: OpRequest) -> PreparedOp:
        from ..gpu.nccl_executor import NcclScheduleRun, schedule_calls

        problem = self.problem(request)
        in_place = request.placement is Placement.IN_PLACE
        program = build_program(request.algorithm, problem, self.rank, self.options_for(request))
        lowered = lower(problem, program, in_place, request.op)
        buffers = self.buffers
        n_in, n_out = problem.input_len(self.rank), problem.output_len(self.rank)
        if not in_place:
            inp = buffers.typed(buffers.send, request.dtype, n_in)
            out = buffers.typed(buffers.recv, request.dtype, n_out)
            bufs = {Buf.INPUT: inp, Buf.OUTPUT: out}
        else:
            from ..algorithms import inplace_input_offset

            host, offset = inplace_input_offset(problem, self.rank)
            if host is Buf.OUTPUT:
                out = buffers.typed(buffers.recv, request.dtype, n_out)
                inp = out[offset:offset + n_in]
                bufs = {Buf.OUTPUT: out}
            else:
                inp = buffers.typed(buffers.recv, request.dtype, n_in)
                out = inp[offset:offset + n_out]
                bufs = {Buf.INPUT: inp}
        # --nvtx: a range per step inside the collective's range (nothing added otherwise)
        name = nvtx.collective_name(request, self.size) if nvtx.enabled() else None
        runner = NcclScheduleRun(self.nccl_comm, self.stream, schedule_calls(lowered, name), bufs,
                                 lowered.scratch_len, request.dtype, request.op, self.size)
        return PreparedOp(nvtx.collective(runner.run, request, self.size), inp, out, executor="nccl-p2p",
                          teardown=runner.free)

    # -- metadata -------------------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        code = self._nccl.get_version()
        devices = self.comm.gather(gpu_device.device_facts(self.device) | {"local_rank": self.local_rank,
                                                                              "host": gpu_device.node_name_for_map()},
                                   root=0)
        return {
            "backend": self.name,
            "nccl_version": version_string(code),
            "nccl_version_code": code,
            "cuda": gpu_device.runtime_facts(),
            "devices": devices,
            "graph_replays": self.graph_replays,
            "nccl_env": {k: v for k, v in os.environ.items() if k.startswith(NCCL_ENV_PREFIX)},
            # what CuPy really loaded (the loader's choice, not collbench's search), and the
            # network plugin NCCL mapped once a communicator existed (aws-ofi-nccl, …)
            "nccl_library": gpu_device.loaded_library(r"^libnccl\.so"),
            "nccl_net_plugin": gpu_device.loaded_library(r"^libnccl-net.*\.so"),
        }

    def close(self) -> None:
        self.stream.synchronize()
        self.nccl_comm.destroy()
