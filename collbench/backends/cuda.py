"""The ``cuda`` backend: our own intra-node kernels over CUDA IPC peer pointers.

Algorithms (``--algo``): allreduce ``one_shot`` (every rank reads every input; latency-optimal)
and ``two_shot`` (reduce-scatter by reads, barrier, allgather by reads; bandwidth-optimal);
allgather and reduce_scatter ``direct`` (each rank reads its blocks from every peer);
``native`` picks one_shot / ipc_direct. ``ipc_hierarchical`` allreduce runs the IPC reduce-scatter
inside each node (out of place: the input stays intact), NCCL allreduce among the ranks with the
same local index across nodes, and the IPC allgather inside the node. Each is one kernel launch
(plus NCCL for hierarchical) on the backend's stream, so it can be captured in a CUDA graph
(``-G``).

Every registered schedule (``--algo ring,recursive_doubling,rabenseifner,...``, any collective)
runs on the schedule interpreter (csrc/interp.cu, :mod:`collbench.gpu.interp`): the schedule is
compiled into a per-rank device program and executed by one kernel launch per operation over the
same IPC buffers, with per-peer-pair flags between steps; rows say ``executor: cuda-interp``. The
hand-written kernels above stay, as the baselines to beat.

Across nodes (several nodes, or ``--ranks-per-node`` emulating them), a registered schedule runs
composed (:mod:`collbench.gpu.interp_nccl`): its messages between ranks of one node on the
interpreter (one IPC communicator per node), its messages between nodes over NCCL send/recv (a
world communicator), in step order on one stream; rows say ``executor: cuda-interp+nccl``.
"""

from __future__ import annotations

from typing import Any, Callable

from ..algorithms import Collective, Layout, Problem
from ..algorithms.registry import get_algorithm
from ..dtypes import DType
from ..errors import UsageError
from ..gpu import device as gpu_device
from ..trace import nvtx
from .base import Backend, Capabilities, OpRequest, Placement, PreparedOp

# --algo name -> IPC kernel family, per collective
KERNEL_ALGORITHMS = {
    Collective.ALLREDUCE: {"native": "one_shot", "one_shot": "one_shot", "two_shot": "two_shot"},
    Collective.ALLGATHER: {"native": "allgather", "ipc_direct": "allgather"},
    Collective.REDUCE_SCATTER: {"native": "reduce_scatter", "ipc_direct": "reduce_scatter"},
}
# This backend's own algorithms. They are not the registry's schedules of similar names: the
# registry's `direct` and `hierarchical` are point-to-point schedules any backend can run,
# these are our IPC kernels (and, for ipc_hierarchical, IPC inside nodes plus NCCL across).
HIERARCHICAL = "ipc_hierarchical"
BACKEND_ALGORITHMS = ("one_shot", "two_shot", "ipc_direct", HIERARCHICAL)

CAPABILITIES = Capabilities(
    backend="cuda", needs=("mpi4py", "cupy", "gpu"),
    native=frozenset(KERNEL_ALGORITHMS),  # "native" is the one-shot / direct kernel
    schedules=True,  # every registered schedule, on the interpreter kernel (csrc/interp.cu)
    own_algorithms={coll: tuple(n for n in names if n != "native")
                    + ((HIERARCHICAL,) if coll is Collective.ALLREDUCE else ())
                    for coll, names in KERNEL_ALGORITHMS.items()})


#: ranks of one IPC communicator (COLLBENCH_MAX_RANKS of csrc/collbench_common.cuh)
MAX_IPC_RANKS = 8


def _on_interpreter(collective: Collective, algorithm: str) -> bool:
    return algorithm != "native" and algorithm not in CAPABILITIES.own_algorithms.get(collective, ())


def static_reason(collective: Collective, algorithm: str, nranks: int, layout: Layout | None) -> str | None:
    """Why the interpreter cannot run a registered schedule at this rank count and layout, before
    any GPU is seen: ``collbench list`` and the backend's own :meth:`~CudaIpcBackend.unsupported_reason`
    both ask this, so they agree. None for the backend's own algorithms (they have their reasons).
    ``layout``: the nodes whose ranks share memory (one IPC communicator each; None: one node)."""
    if not _on_interpreter(collective, algorithm):
        return None
    nodes = layout.nodes if layout is not None else (tuple(range(nranks)),)
    if len(nodes) > 1:
        if max(len(node) for node in nodes) > MAX_IPC_RANKS:
            return (f"the schedule interpreter runs at most {MAX_IPC_RANKS} ranks per node (one IPC communicator "
                    "per node, NCCL across)")
        return None
    if nranks > MAX_IPC_RANKS:
        return f"the schedule interpreter runs at most {MAX_IPC_RANKS} ranks (one IPC communicator)"
    return None


def static_executor(collective: Collective, algorithm: str, nranks: int, layout: Layout | None) -> str | None:
    """The ``executor`` rows will carry where :func:`static_reason` says yes, for ``collbench list``
    (``cuda-interp+nccl`` across nodes); None for the backend's own algorithms."""
    if not _on_interpreter(collective, algorithm):
        return None
    from ..gpu.interp import EXECUTOR as INTERP
    from ..gpu.interp_nccl import EXECUTOR as COMPOSED

    return COMPOSED if layout is not None and len(layout.nodes) > 1 else INTERP


class CudaIpcBackend(Backend):
    name = "cuda"
    capabilities = CAPABILITIES

    def __init__(self, comm: Any, layout: Layout | None = None,
                 algorithm_options: dict[str, Any] | None = None, graph_replays: int = 0,
                 gpu_map: tuple[int, ...] | None = None) -> None:
        from mpi4py import MPI

        try:
            import cupy
        except ImportError as exc:
            raise UsageError(f"the cuda backend needs CuPy: pip install 'collbench[cuda12]' ({exc})") from None
        from ..gpu.timer import CudaEventTimer

        self._cupy = cupy
        self.layout = layout
        self.algorithm_options = dict(algorithm_options or {})
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.node_comm = comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank, self.local_size = self.node_comm.Get_rank(), self.node_comm.Get_size()
        # ranks with the same local index on every node: the inter-node stage of hierarchical
        self.cross_comm = comm.Split(self.local_rank, self.rank)
        error = None
        try:
            self.device = gpu_device.choose_device(self.local_rank, cupy.cuda.runtime.getDeviceCount(), gpu_map)
        except (UsageError, cupy.cuda.runtime.CUDARuntimeError) as exc:
            error, self.device = str(exc), -1
        sizes = comm.allgather((self.local_size, error))
        errors = [e for _, e in sizes if e]
        if errors:
            raise UsageError(errors[0])
        self.uniform = len({s for s, _ in sizes}) == 1
        # the interpreter's groups: ranks sharing memory (the real node) and, with --ranks-per-node,
        # the same emulated node; one IPC communicator each, NCCL between them (gpu/interp_nccl.py)
        from ..gpu.interp_nccl import groups_of

        leader = self.node_comm.allgather(self.rank)[0]
        lnode = layout.node_of(self.rank) if layout is not None else 0
        self.groups = groups_of(comm.allgather((leader, lnode)))
        self.group_comm: Any = None
        if len(self.groups) > 1:
            index = next(i for i, g in enumerate(self.groups) if self.rank in g)
            self.group_comm = comm.Split(index, self.rank)
        self.group_ipc: Any = None  # IpcCommunicator of the group, made by the first composed schedule
        self._nccl_world: Any = None
        cupy.cuda.Device(self.device).use()
        self.stream = cupy.cuda.Stream(non_blocking=True)
        # barrier: ranks lined up before a graph's timed replays; after: a barrier timeout inside
        # a kernel on one rank is raised on every rank of the node, naming it (check_error_all)
        self.timer = CudaEventTimer(self.stream, graph_replays, barrier=comm.Barrier, after=self._agree_kernel_errors)
        self.graph_replays = graph_replays
        self.ipc: Any = None  # IpcCommunicator, made by reserve()
        self._nccl_cross = None

    # -- capabilities -------------------------------------------------------------------------

    def problem(self, request: OpRequest) -> Problem:
        return Problem(request.collective, self.size, request.count, request.root, self.layout, request.skew)

    def _runs_on_interpreter(self, request: OpRequest) -> bool:
        return _on_interpreter(request.collective, request.algorithm)

    def _composed(self) -> bool:
        """Whether schedules run as the interpreter inside nodes plus NCCL across."""
        return len(self.groups) > 1

    def unsupported_reason(self, request: OpRequest) -> str | None:
        coll, algo = request.collective, request.algorithm
        if self._runs_on_interpreter(request):
            from ..execute.programs import algorithm_unsupported_reason

            reason = static_reason(coll, algo, self.size, Layout(self.groups))
            if reason:
                return reason
            return algorithm_unsupported_reason(algo, self.problem(request), request.op, self.options_for(request))
        if coll not in KERNEL_ALGORITHMS:
            return f"the cuda backend has no kernels for {coll.value} (allreduce, allgather, reduce_scatter)"
        if algo == HIERARCHICAL:
            if coll is not Collective.ALLREDUCE:
                return f"{HIERARCHICAL} is an allreduce"
            if request.placement is Placement.IN_PLACE:
                return f"{HIERARCHICAL} runs out of place only"
            if not self.uniform:
                return f"{HIERARCHICAL} needs the same number of ranks on every node"
            if request.count % self.local_size:
                return (f"{HIERARCHICAL} splits the buffer evenly over the {self.local_size} ranks of a node; "
                        f"count {request.count} is not a multiple")
            return None
        if algo not in KERNEL_ALGORITHMS[coll]:
            known = ", ".join(sorted(set(KERNEL_ALGORITHMS[coll]) | {HIERARCHICAL}))
            return f"the cuda backend runs {coll.value} with: {known}"
        if self.size != self.local_size:
            return f"IPC kernels work inside one node; use {HIERARCHICAL} (allreduce) or the nccl backend across nodes"
        return None

    def reserve(self, max_bytes: int, dtypes: list[DType]) -> None:
        from ..gpu.ipc import IpcCommunicator, IpcError

        if self.ipc is None or self.ipc.max_bytes < max_bytes:
            if self.ipc is not None:
                self.ipc.close()
            try:
                self.ipc = IpcCommunicator(self.node_comm, max(max_bytes, 256))
            except IpcError as exc:
                raise UsageError(str(exc)) from None

    def _cross_nccl(self) -> Any:
        """NCCL among the ranks with the same local index (created on first hierarchical use;
        with a deadline, and a failure on one rank raised on all: see gpu/nccl_init.py)."""
        if self._nccl_cross is None:
            from cupy.cuda import nccl

            from ..gpu.nccl_init import create_communicator, init_timeout

            cupy, device = self._cupy, self.device
            size, rank = self.cross_comm.Get_size(), self.cross_comm.Get_rank()

            def init_rank(uid: Any) -> Any:
                cupy.cuda.Device(device).use()  # the init thread's current device (per thread)
                return nccl.NcclCommunicator(size, uid, rank)

            self._nccl_cross = create_communicator(self.cross_comm, init_rank, nccl.get_unique_id, init_timeout())
        return self._nccl_cross

    def _world_nccl(self) -> Any:
        """NCCL over every rank: the cross-node messages of composed schedules (made on first use,
        with the deadline of gpu/nccl_init.py)."""
        if self._nccl_world is None:
            from cupy.cuda import nccl

            from ..gpu.nccl_init import create_communicator, init_timeout

            cupy, device, size, rank = self._cupy, self.device, self.size, self.rank

            def init_rank(uid: Any) -> Any:
                cupy.cuda.Device(device).use()  # the init thread's current device (per thread)
                return nccl.NcclCommunicator(size, uid, rank)

            self._nccl_world = create_communicator(self.comm, init_rank, nccl.get_unique_id, init_timeout())
        return self._nccl_world

    def _agree_kernel_errors(self) -> None:
        """The timer's after-hook: every rank of the node raises if a kernel failed on any (the
        interpreter's records decoded too)."""
        from ..gpu import interp

        if self.ipc is not None:
            interp.check_error_all(self.ipc, self.stream)
        if self.group_ipc is not None:
            interp.check_error_all(self.group_ipc, self.stream)

    # -- data -----------------------------------------------------------------------------------

    def write(self, view: Any, data: Any) -> None:
        gpu_device.copy_to_device(view, data, self.stream)

    def read(self, view: Any) -> Any:
        from ..gpu import interp

        interp.check_error(self.ipc, self.stream)  # a barrier timeout inside a kernel becomes an error here
        if self.group_ipc is not None:
            interp.check_error(self.group_ipc, self.stream)
        return gpu_device.copy_to_host(view, self.stream)

    # -- operations -----------------------------------------------------------------------------

    def prepare(self, request: OpRequest) -> PreparedOp:
        self.check_supported(request)
        if request.algorithm == HIERARCHICAL:
            return self._prepare_hierarchical(request)
        if self._runs_on_interpreter(request):
            return self._prepare_interp(request)
        ipc, stream = self.ipc, self.stream
        coll, count, dtype, op = request.collective, request.count, request.dtype.name, request.op
        kind = KERNEL_ALGORITHMS[coll][request.algorithm]
        in_place = request.placement is Placement.IN_PLACE
        inp = ipc.send_view(coll.value, count, dtype, in_place)
        out = ipc.recv_view(coll.value, count, dtype, in_place)
        launch = ipc.launch

        def run() -> None:
            launch(kind, count, dtype, op, inplace=in_place, stream=stream)

        run = nvtx.collective(run, request, self.size)  # --nvtx: a named range (else run itself)
        return PreparedOp(run, inp, out, executor="cuda-ipc", teardown=lambda: ipc.check_error(stream))

    def _prepare_interp(self, request: OpRequest) -> PreparedOp:
        """A registered schedule on the interpreter kernel: every rank's program compiled (a rank
        reads its peers' send sources), this rank's uploaded, one launch per operation."""
        if self._composed():
            return self._prepare_composed(request)
        from ..gpu import interp
        from ..gpu.interp_program import compile_rank, memory_lengths

        schedule = get_algorithm(request.algorithm).schedule(self.problem(request), self.options_for(request))
        in_place = request.placement is Placement.IN_PLACE
        program = compile_rank(schedule, self.rank, in_place, request.op)
        # the schedule's scratch (and staging) may need more than the sweep's largest buffer:
        # grow the communicator, collectively, to what the hungriest rank needs
        need = max(memory_lengths(schedule.problem, self.rank, in_place, program.scratch_len)) * request.dtype.itemsize
        need = max(self.node_comm.allgather(need))
        if self.ipc is None or self.ipc.max_bytes < need:
            self.reserve(need, [request.dtype])
        ipc, stream = self.ipc, self.stream
        op = interp.InterpOp(ipc, schedule, in_place, request.dtype.name, request.op, program)
        launch = op.launch

        def run() -> None:
            launch(stream)

        run = nvtx.collective(run, request, self.size)  # --nvtx: a named range (else run itself)

        def teardown() -> None:
            op.free()
            interp.check_error(ipc, stream)

        return PreparedOp(run, op.input, op.output, executor=interp.EXECUTOR, teardown=teardown)

    def _prepare_composed(self, request: OpRequest) -> PreparedOp:
        """A registered schedule across nodes: in-node messages on the interpreter (the group's IPC
        communicator), cross-node messages over NCCL send/recv, in step order on the stream."""
        from ..gpu import interp, interp_nccl
        from ..gpu.ipc import IpcCommunicator, IpcError

        schedule = get_algorithm(request.algorithm).schedule(self.problem(request), self.options_for(request))
        in_place = request.placement is Placement.IN_PLACE
        plans = interp_nccl.plan_all(schedule, self.groups, in_place, request.op)
        programs = interp_nccl.compile_parts(schedule.problem, plans, self.rank, in_place)
        need = interp_nccl.memory_need(schedule.problem, plans[self.rank], programs, in_place) * request.dtype.itemsize
        need = max(self.group_comm.allgather(max(need, 256)))
        if self.group_ipc is None or self.group_ipc.max_bytes < need:
            if self.group_ipc is not None:
                self.group_ipc.close()
                self.group_ipc = None
            try:
                self.group_ipc = IpcCommunicator(self.group_comm, need)
            except IpcError as exc:
                raise UsageError(str(exc)) from None
        ipc, stream = self.group_ipc, self.stream
        runner = interp_nccl.ComposedRun(ipc, self._world_nccl(), stream, schedule.problem, plans[self.rank],
                                         programs, in_place, request.dtype.name, request.op)
        run = nvtx.collective(runner.run, request, self.size)  # --nvtx: a named range (else run itself)

        def teardown() -> None:
            runner.free()
            interp.check_error(ipc, stream)

        return PreparedOp(run, runner.input, runner.output, executor=interp_nccl.EXECUTOR, teardown=teardown)

    def _prepare_hierarchical(self, request: OpRequest) -> PreparedOp:
        from ..gpu.nccl_lib import NCCL_DTYPES, NCCL_OPS

        ipc, stream, g = self.ipc, self.stream, self.local_size
        count, dtype, op = request.count, request.dtype.name, request.op
        chunk = count // g
        # Out of place means the input is never written: timed iterations must all see the same
        # data. So the node's reduce-scatter runs out of place (in[0:count] -> out[0:chunk]) and
        # the cross-node allreduce moves the shard to its allgather slot out[rank*chunk] (the
        # same place on rank 0, disjoint elsewhere), where the in-place allgather expects it.
        inp = ipc.send_view("allreduce", count, dtype)                  # in[0:count], read only
        shard = ipc.recv_view("reduce_scatter", chunk, dtype, False)    # out[0:chunk]
        slot = ipc.send_view("allgather", chunk, dtype, True)           # out[rank*chunk]
        out = ipc.recv_view("allgather", chunk, dtype, True)            # out[0:count]
        cross = self._cross_nccl()
        nccl_dtype, nccl_op = NCCL_DTYPES[dtype], NCCL_OPS["sum" if op == "avg" else op]
        launch, sptr = ipc.launch, stream.ptr
        # avg cannot be composed stage by stage (each stage would divide by its own rank count):
        # sum through every stage and divide by the total rank count once at the end.
        finalize: Callable[[], None] | None = None
        if op == "avg":
            from ..gpu import kernels

            def divide_by_ranks() -> None:
                kernels.finalize_avg(out, self.size, dtype=dtype, stream=stream)

            finalize = divide_by_ranks
        inner_op = "sum" if op == "avg" else op

        def run() -> None:
            if chunk == 0:
                return
            launch("reduce_scatter", chunk, dtype, inner_op, inplace=False, stream=stream)
            cross.allReduce(shard.data.ptr, slot.data.ptr, chunk, nccl_dtype, nccl_op, sptr)
            launch("allgather", chunk, dtype, None, inplace=True, stream=stream)
            if finalize is not None:
                finalize()

        run = nvtx.collective(run, request, self.size)  # --nvtx: holds the three stages' kernels
        return PreparedOp(run, inp, out, executor="cuda-ipc+nccl", teardown=lambda: ipc.check_error(stream))

    def metadata(self) -> dict[str, Any]:
        devices = self.comm.gather(gpu_device.device_facts(self.device) | {"local_rank": self.local_rank},
                                   root=0)
        shared = self.ipc.same_device if self.ipc is not None else None
        return {"backend": self.name, "cuda": gpu_device.runtime_facts(), "devices": devices,
                "graph_replays": self.graph_replays, "ranks_share_one_gpu": shared,
                "note": "ranks sharing one GPU are time-sliced: correctness only, not performance"
                if shared and self.local_size > 1 else None}

    def close(self) -> None:
        self.stream.synchronize()
        if self.ipc is not None:
            self.ipc.close()
        if self.group_ipc is not None:
            self.group_ipc.close()
        if self.group_comm is not None:
            self.group_comm.Free()
        if self._nccl_cross is not None:
            self._nccl_cross.destroy()
        if self._nccl_world is not None:
            self._nccl_world.destroy()
