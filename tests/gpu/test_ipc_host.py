"""IpcCommunicator's host side without a GPU: setup, handle exchange, agreed failures, launch
arguments, error decoding and close, with ranks as threads on an in-process instance of the fake
CuPy (tests/gpu/fakecuda), whose IPC handles are replaced here by ones that name the pointer."""

from __future__ import annotations

import sys
import threading
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest
from _gpu_helpers import FakeNode
from fakecuda import fake_cupy  # the one fake CuPy (tests/gpu/fakecuda)

from collbench.gpu import ipc
from collbench.gpu import kernel_sources as _sources

MAPPED = 0x100000000000  # fake peer mappings live at own address + MAPPED


def fake_runtime_cupy(log: list, fail_open_on_rank: int = -1, free_bytes: int = 1 << 34) -> ModuleType:
    """The fake CuPy, with IPC handles that carry the owner's pointer: a peer's open logs and
    returns it + MAPPED (or fails on one rank), a close logs; ``cp.local.rank`` is the thread's rank."""
    cp = fake_cupy()
    local = threading.local()

    def ipc_open(handle: bytes, flags: int) -> int:
        if local.rank == fail_open_on_rank:
            raise RuntimeError("cudaErrorPeerAccessUnsupported")
        ptr = int.from_bytes(handle[:8], "little")
        log.append(("open", local.rank, ptr))
        return ptr + MAPPED

    rt = cp.cuda.runtime
    rt.memGetInfo = lambda: (free_bytes, 1 << 35)
    rt.ipcGetMemHandle = lambda ptr: int(ptr).to_bytes(8, "little") + bytes(56)
    rt.ipcOpenMemHandle = ipc_open
    rt.ipcCloseMemHandle = lambda p: log.append(("close", local.rank, p))
    cp.local = local
    return cp


@pytest.fixture
def fake_env(monkeypatch):
    mpi = ModuleType("mpi4py")
    mpi.MPI = SimpleNamespace(Get_processor_name=lambda: "node1")
    monkeypatch.setitem(sys.modules, "mpi4py", mpi)
    monkeypatch.setattr(ipc, "sm_count", lambda: 132)
    monkeypatch.setattr(ipc, "occupancy_per_sm", lambda kernel, threads: 2)
    launches: list = []

    def fake_get_kernel(filename, name, dtype):
        return lambda grid, block, args: launches.append((name, grid, block, args))

    monkeypatch.setattr(ipc, "get_kernel", fake_get_kernel)
    return monkeypatch, launches


def run_ranks(n: int, body, cp) -> list:
    shared = {"n": n, "slots": [None] * n, "barrier": threading.Barrier(n)}
    out: list = [None] * n

    def main(r: int) -> None:
        cp.local.rank = r
        try:
            out[r] = body(r, FakeNode(r, shared))
        except Exception as exc:  # noqa: BLE001
            out[r] = exc

    threads = [threading.Thread(target=main, args=(r,)) for r in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads), "ranks hung"
    return out


def test_setup_exchanges_handles_and_builds_the_descriptor(fake_env) -> None:
    monkeypatch, launches = fake_env
    log: list = []
    cp = fake_runtime_cupy(log)
    monkeypatch.setattr(ipc, "cupy_module", lambda: cp)
    c = _sources.header_constants()

    def body(r, node):
        comm = ipc.IpcCommunicator(node, 1000, timeout_s=2.5, max_blocks=300)
        desc = np.zeros(c["DESC_BYTES"] // 8, np.uint64)
        cp.cuda.runtime.memcpy(desc.ctypes.data, comm._desc.ptr, desc.nbytes, 2)
        own = [comm._in.ptr, comm._out.ptr, comm._scratch.ptr, comm._sig.ptr]
        assert comm.max_blocks == 256  # the request, capped by the flag table (MAX_BLOCKS)
        assert comm.same_device
        assert comm.residency == ipc.Residency(sm_count=132, ranks_per_device=3)
        comm.allreduce_one_shot(17, "bfloat16", "avg", inplace=True)
        comm.allgather(0, "float32")  # nothing to do: no launch
        rec = comm.error_record()
        comm.close()
        return desc, own, rec

    res = run_ranks(3, body, cp)
    for r in res:
        assert not isinstance(r, Exception), r
    m = c["MAX_RANKS"]
    owns = [own for _, own, _ in res]
    for rank, (desc, _own, rec) in enumerate(res):
        assert rec is None
        tail = desc.view(np.int32)
        assert (tail[8 * m], tail[8 * m + 1]) == (rank, 3)
        for i in range(4):  # in, out, scratch, sig: own pointer locally, mapped pointers for peers
            for peer in range(3):
                expected = owns[peer][i] if peer == rank else owns[peer][i] + MAPPED
                assert desc[i * m + peer] == expected
    opens = [e for e in log if e[0] == "open"]
    closes = [e for e in log if e[0] == "close"]
    assert len(opens) == 3 * 2 * 4 and len(closes) == len(opens)
    assert len(launches) == 3
    name, grid, block, args = launches[0]
    assert name == "ipc_one_shot_avg_bfloat16" and grid == (1,) and block == (c["IPC_THREADS"],)
    assert args[1] == np.uint64(17) and args[2] == np.uint64(2_500_000_000) and args[3] == np.int32(1)
    assert args[1].dtype == np.uint64 and args[3].dtype == np.int32  # the C parameter types


def test_setup_failure_on_one_rank_raises_on_every_rank(fake_env) -> None:
    monkeypatch, _ = fake_env
    cp = fake_runtime_cupy([], fail_open_on_rank=1)
    monkeypatch.setattr(ipc, "cupy_module", lambda: cp)
    res = run_ranks(3, lambda r, node: ipc.IpcCommunicator(node, 1000), cp)
    for r in res:
        assert isinstance(r, ipc.IpcError)
        assert "rank 1: cudaIpcOpenMemHandle" in str(r) and "PeerAccessUnsupported" in str(r)


def test_not_enough_memory_is_a_clear_agreed_error(fake_env) -> None:
    monkeypatch, _ = fake_env
    cp = fake_runtime_cupy([], free_bytes=10 << 20)
    monkeypatch.setattr(ipc, "cupy_module", lambda: cp)
    res = run_ranks(2, lambda r, node: ipc.IpcCommunicator(node, 100 << 20), cp)
    assert all(isinstance(r, ipc.IpcError) and "MiB free" in str(r) for r in res)


def test_argument_errors_and_timeout_record(fake_env) -> None:
    monkeypatch, _ = fake_env
    cp = fake_runtime_cupy([])
    monkeypatch.setattr(ipc, "cupy_module", lambda: cp)
    c = _sources.header_constants()

    def body(r, node):
        comm = ipc.IpcCommunicator(node, 64)
        with pytest.raises(ValueError, match="max_bytes=64"):
            comm.allgather(16, "float32")  # 2 ranks x 16 x 4 bytes > 64
        with pytest.raises(ValueError, match="unknown reduction op"):
            comm.reduce_scatter(1, "float32", "xor")
        with pytest.raises(ValueError, match="unknown dtype"):
            comm.allreduce_two_shot(1, "float8", "sum")
        with pytest.raises(ValueError, match="count"):
            comm.allreduce_one_shot(-1, "float32", "sum")
        assert comm.recv_view("reduce_scatter", 4, "int32", inplace=True).data.ptr == comm._in.ptr + 16 * r
        assert comm.send_view("allgather", 4, "int32", inplace=True).data.ptr == comm._out.ptr + 16 * r
        # a kernel's timeout record becomes an IpcTimeoutError naming the peer
        words = np.zeros(c["ERR_WORDS"], np.uint32)
        words[:10] = [c["ERR_TIMEOUT"], c["KID_ONE_SHOT"], 0, 1 - r, 1, 5, 4, r, 2_000_000, 1]
        cp.cuda.runtime.memcpy(comm._sig.ptr + 4 * c["SIG_ERROR_WORD"], words.ctypes.data, words.nbytes, 1)
        with pytest.raises(ipc.IpcTimeoutError, match=f"waiting for rank {1 - r}"):
            comm.check_error()
        comm.close()
        with pytest.raises(ipc.IpcError, match="closed"):
            comm.allgather(1, "int8")
        return True

    assert run_ranks(2, body, cp) == [True, True]


def test_large_launch_grid_is_what_can_be_resident(fake_env) -> None:
    """3 ranks on one GPU, 2 blocks/SM x 132 SMs: 88 blocks each (under MPS the three kernels
    are resident together), not the 132 of an idle GPU, even when max_blocks allows more."""
    monkeypatch, launches = fake_env
    cp = fake_runtime_cupy([])
    monkeypatch.setattr(ipc, "cupy_module", lambda: cp)

    def body(r, node):
        with ipc.IpcCommunicator(node, 1 << 22, max_blocks=256) as comm:
            comm.allreduce_one_shot(1 << 19, "float32", "sum")
            comm.allgather(1 << 18, "float32")
            return comm.grid_cap(None, "ipc_allgather/float32")

    assert run_ranks(3, body, cp) == [88, 88, 88]
    assert {grid for _, grid, _, _ in launches} == {(88,)} and len(launches) == 6


def test_grid_fits_what_can_be_resident_at_once() -> None:
    """Co-residency: the grid is occupancy x usable SMs, shared by the ranks on one GPU."""
    idle = ipc.Residency(sm_count=132, ranks_per_device=1)
    assert idle.blocks(per_sm=2) == 264
    assert ipc.Residency(sm_count=132, ranks_per_device=4).blocks(per_sm=1) == 33
    assert ipc.Residency(sm_count=132, ranks_per_device=1, mps_percent=25).blocks(per_sm=2) == 66
    assert ipc.Residency(sm_count=132, ranks_per_device=1, uniform_arch=False).blocks(per_sm=3) == 132
    assert ipc.Residency(sm_count=2, ranks_per_device=8).blocks(per_sm=1) == 1  # never 0
    agreed = ipc.agree_residency([("0000:19:00.0", 132, "90", 100.0), ("0000:19:00.0", 132, "90", 50.0),
                                  ("0000:2a:00.0", 114, "90", 100.0)])
    assert agreed == ipc.Residency(sm_count=114, ranks_per_device=2, mps_percent=50.0, uniform_arch=True)
    assert not ipc.agree_residency([("a", 132, "90", 100.0), ("b", 108, "80", 100.0)]).uniform_arch


def test_mps_percentage_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE", "30")
    assert ipc.mps_percent() == 30.0
    for bad in ("", "lots", "0", "150"):
        monkeypatch.setenv("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE", bad)
        assert ipc.mps_percent() == 100.0


def test_a_timeout_on_one_rank_is_raised_on_every_rank(fake_env) -> None:
    """The last barrier timed out on rank 1 only; its peers' kernels returned normally. The
    collective check raises on every rank, naming rank 1 (a local check passes on the peers)."""
    monkeypatch, _ = fake_env
    cp = fake_runtime_cupy([])
    monkeypatch.setattr(ipc, "cupy_module", lambda: cp)
    c = _sources.header_constants()

    def body(r, node):
        comm = ipc.IpcCommunicator(node, 64)
        if r == 1:
            words = np.zeros(c["ERR_WORDS"], np.uint32)
            words[:10] = [c["ERR_TIMEOUT"], c["KID_TWO_SHOT"], 3, 2, 2, 9, 8, 1, 20_000_000, 4]
            cp.cuda.runtime.memcpy(comm._sig.ptr + 4 * c["SIG_ERROR_WORD"], words.ctypes.data, words.nbytes, 1)
        local = comm.error_record()
        try:
            comm.check_error_all()
        except ipc.IpcTimeoutError as exc:
            return local, str(exc)
        finally:
            comm.close()
        return local, None

    results = run_ranks(3, body, cp)
    for r, (local, message) in enumerate(results):
        assert (local is None) == (r != 1)  # only rank 1 recorded anything
        assert message is not None, f"rank {r} reported success"
        assert message.startswith("rank 1: two-shot allreduce: flag barrier 2 of block 3/4 timed out")
        assert ("[reported to rank" in message) == (r != 1)


def test_errors_on_several_ranks_are_all_named(fake_env) -> None:
    monkeypatch, _ = fake_env
    cp = fake_runtime_cupy([])
    monkeypatch.setattr(ipc, "cupy_module", lambda: cp)
    c = _sources.header_constants()

    def body(r, node):
        comm = ipc.IpcCommunicator(node, 64)
        if r in (1, 2):
            words = np.zeros(c["ERR_WORDS"], np.uint32)
            words[:10] = [c["ERR_BAD_LAUNCH"], c["KID_ALLGATHER"], 0, 0, 0, 0, 0, r, 0, 999]
            cp.cuda.runtime.memcpy(comm._sig.ptr + 4 * c["SIG_ERROR_WORD"], words.ctypes.data, words.nbytes, 1)
        try:
            comm.check_error_all()
            return None
        except ipc.IpcError as exc:
            return exc
        finally:
            comm.close()

    for exc in run_ranks(3, body, cp):
        assert type(exc) is ipc.IpcError  # not a timeout
        assert str(exc).startswith("rank 1: allgather: invalid launch") and "errors also on rank 2" in str(exc)


def test_check_script_sees_a_one_rank_timeout_on_every_rank(fake_env) -> None:
    """scripts/gpu_kernels_check.py's ipc_error_agreement on the host fake: rank 0's lone kernel
    writes a timeout record (as the real one does after its barrier wait), the peers' none."""
    from _gpu_helpers import load_check_script

    monkeypatch, _ = fake_env
    cp = fake_runtime_cupy([])
    monkeypatch.setattr(ipc, "cupy_module", lambda: cp)
    c = _sources.header_constants()

    def lone_kernel(filename, name, dtype):
        def launch(grid, block, args):
            desc = np.zeros(c["DESC_BYTES"] // 8, np.uint64)
            cp.cuda.runtime.memcpy(desc.ctypes.data, int(args[0]), desc.nbytes, 2)
            m = c["MAX_RANKS"]
            rank = int(desc.view(np.int32)[8 * m])
            words = np.zeros(c["ERR_WORDS"], np.uint32)
            words[:10] = [c["ERR_TIMEOUT"], c["KID_ONE_SHOT"], 0, 1, 1, 1, 0, rank, 1_000_000, grid[0]]
            cp.cuda.runtime.memcpy(int(desc[3 * m + rank]) + 4 * c["SIG_ERROR_WORD"], words.ctypes.data, words.nbytes, 1)
        return launch

    monkeypatch.setattr(ipc, "get_kernel", lone_kernel)
    script = load_check_script()
    reports = [script.Report(echo=False) for _ in range(3)]

    def body(r, node):
        script.ipc_error_agreement(node, reports[r], lambda: ipc.IpcCommunicator(node, 4096, timeout_s=1.0))

    run_ranks(3, body, cp)
    assert [(c_["name"], c_["status"]) for c_ in reports[0].checks] == [("np=3 one-rank timeout", "pass")]
