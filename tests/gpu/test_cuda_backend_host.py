"""The cuda backend's host side without a GPU: the hierarchical allreduce's buffer plan on the real
IpcCommunicator views, on an in-process instance of the fake CuPy (tests/gpu/fakecuda: its memory,
streams and one-rank NCCL), with numpy stand-ins for the IPC kernels, ranks as threads."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from fakecuda import fake_cupy  # the one fake CuPy (tests/gpu/fakecuda)

from collbench.algorithms import Collective
from collbench.backends.base import OpRequest, Placement
from collbench.backends.cuda import CudaIpcBackend
from collbench.dtypes import DTYPES
from collbench.gpu import ipc
from collbench.gpu import kernel_sources as _sources


def fake_ipc(cp: Any, rank: int, shared: dict) -> ipc.IpcCommunicator:
    """An IpcCommunicator with the real view logic on fake memory; launch() does in numpy what
    the kernels do, with the same conventions (views), synchronising the ranks like barriers."""
    comm = object.__new__(ipc.IpcCommunicator)
    comm._closed, comm._cp, comm._c = False, cp, _sources.header_constants()
    comm.rank, comm.nranks, comm.max_bytes = rank, shared["n"], shared["max_bytes"]
    comm._in, comm._out = cp.cuda.memory.Memory(comm.max_bytes), cp.cuda.memory.Memory(comm.max_bytes)
    shared["comms"][rank] = comm
    barrier = shared["barrier"]

    def launch(kind: str, count: int, dtype: str, op: str | None, *, inplace: bool = False, stream: Any = None) -> None:
        comms = shared["comms"]
        shared["launches"].append((rank, kind, inplace))
        barrier.wait(timeout=20)  # start barrier: every rank's data is in place
        if kind == "reduce_scatter":
            parts = [c.send_view(kind, count, dtype, inplace).get()[rank * count:(rank + 1) * count] for c in comms]
            result = np.sum(parts, axis=0, dtype=parts[0].dtype)
        elif kind == "allgather":
            result = np.concatenate([c.send_view(kind, count, dtype, inplace).get() for c in comms])
        else:
            raise AssertionError(f"hierarchical does not launch {kind}")
        barrier.wait(timeout=20)  # every rank has read
        comm.recv_view(kind, count, dtype, inplace).set(result)
        barrier.wait(timeout=20)  # end barrier

    comm.launch = launch
    return comm


def make_backend(cp: Any, rank: int, shared: dict) -> CudaIpcBackend:
    backend = object.__new__(CudaIpcBackend)
    backend._cupy, backend.rank, backend.size = cp, rank, shared["n"]
    backend.local_rank, backend.local_size, backend.uniform = rank, shared["n"], True
    backend.stream = cp.cuda.Stream(non_blocking=True)
    backend.ipc = fake_ipc(cp, rank, shared)
    # NCCL among the ranks with this local index: one node, so the fake's one-rank NCCL (a copy
    # when out of place)
    backend._nccl_cross = cp.cuda.nccl.NcclCommunicator(1, cp.cuda.nccl.get_unique_id(), 0)
    return backend


@pytest.mark.parametrize("nranks", [2, 3])
def test_hierarchical_out_of_place_keeps_its_input(nranks: int) -> None:
    """Out of place, the input is never written: every timed iteration must see the same data.
    (Reducing in place on the input compounded the data from one iteration to the next.)"""
    cp = fake_cupy()
    count = 4 * nranks
    shared = {"n": nranks, "barrier": threading.Barrier(nranks), "comms": [None] * nranks,
              "max_bytes": 4 * count, "launches": []}
    backends = [make_backend(cp, r, shared) for r in range(nranks)]
    request = OpRequest(Collective.ALLREDUCE, "ipc_hierarchical", DTYPES["float32"], "sum", count, Placement.OUT_OF_PLACE)
    inputs = [np.arange(count, dtype=np.float32) * (r + 1) + r for r in range(nranks)]
    expected = np.sum(inputs, axis=0, dtype=np.float32)
    results: list[Any] = [None] * nranks

    def rank_main(r: int) -> None:
        try:
            prepared = backends[r]._prepare_hierarchical(request)
            prepared.input.set(inputs[r])
            outputs = []
            for _ in range(3):  # timed iterations run back to back on the same input
                prepared.run()
                outputs.append(prepared.output.get())
            results[r] = (prepared.input.get(), outputs)
        except Exception as exc:  # noqa: BLE001
            results[r] = exc
            shared["barrier"].abort()

    threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(nranks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "ranks hung"
    for r, result in enumerate(results):
        assert not isinstance(result, Exception), result
        final_input, outputs = result
        np.testing.assert_array_equal(final_input, inputs[r], err_msg=f"rank {r}: the input was modified")
        for i, out in enumerate(outputs):
            np.testing.assert_array_equal(out, expected, err_msg=f"rank {r}, iteration {i}")
    assert {(kind, inplace) for _, kind, inplace in shared["launches"]} == {("reduce_scatter", False),
                                                                            ("allgather", True)}
    cross = [call for call in cp.NCCL_CALLS if call[0] == "allReduce"]
    assert cross and all(dtype == 7 for _, _, dtype in cross), "the test runs float32"
