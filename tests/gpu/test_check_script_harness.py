"""The GPU check script's own bookkeeping, run on the CPU on the fake CuPy (tests/gpu/fakecuda).

GPU time is scarce, so a wrong expectation in scripts/gpu_kernels_check.py (a poison window, a
view offset, an in-place convention) must not first show up on the GPU as a false failure.
Here the "device" is an in-process instance of the fake CuPy (tests/gpu/fakecuda: numpy memory
behind fake pointers), the kernels are replaced by the numpy reference, ranks are threads, and the
script's checks must pass; deliberately broken stand-ins must be caught. The real IpcCommunicator
view logic (send/recv views) runs unchanged.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
import pytest
from _gpu_helpers import FakeNode, load_check_script
from fakecuda import fake_cupy  # the one fake CuPy (tests/gpu/fakecuda)

from collbench.gpu import ipc, kernels
from collbench.gpu import kernel_sources as _sources

# -- reduce section ---------------------------------------------------------------------------


check_script = load_check_script()  # the check script's numpy reference, as a module

def _install_fake_reduce(monkeypatch, script, cp, corrupt: str = "") -> None:
    def compute(op, dst, ins, dtype):
        info, n = kernels.validate_elementwise(kernels.describe(dst), [kernels.describe(a) for a in ins], dtype)
        if n == 0:
            return
        res = script.ref_reduce("sum" if op == "avg" else op, info, [a.get() for a in ins])
        if corrupt == "value" and n > 5:
            res = res.copy()
            res.view(np.uint8)[5 * info.itemsize] ^= 0x40
        dst.set(res)
        if corrupt == "overrun":
            cp.HEAP.at(dst.data.ptr + dst.nbytes, 1)[0] ^= 0xFF  # the byte past the result

    def finalize(dst, nranks, *, dtype=None, stream=None):
        info, n = kernels.validate_elementwise(kernels.describe(dst), [kernels.describe(dst)], dtype)
        if n:
            dst.set(script.ref_finalize(info, dst.get(), kernels.validate_nranks(nranks)))

    monkeypatch.setattr(kernels, "reduce", lambda op, d, a, b, *, dtype=None, stream=None: compute(op, d, [a, b], dtype))
    monkeypatch.setattr(kernels, "reduce_many", lambda op, d, ins, *, dtype=None, stream=None: compute(op, d, ins, dtype))
    monkeypatch.setattr(kernels, "finalize_avg", finalize)
    monkeypatch.setattr(script, "reduce_sizes", lambda info: [0, 1, 3, 17, 1000, 4097])


def test_reduce_section_passes_with_correct_kernels(monkeypatch) -> None:
    cp = fake_cupy()
    _install_fake_reduce(monkeypatch, check_script, cp)
    rep = check_script.Report(echo=False)
    check_script.check_reduce(rep, cp, seed=123)
    failed = [c for c in rep.checks if c["status"] != "pass"]
    assert not failed, failed[:3]
    assert len(rep.checks) == 2 * len(_sources.dtypes()) * 5


@pytest.mark.parametrize("corrupt,pattern", [("value", "wrong of"), ("overrun", "guard bytes")])
def test_reduce_section_catches_broken_kernels(monkeypatch, corrupt, pattern) -> None:
    cp = fake_cupy()
    _install_fake_reduce(monkeypatch, check_script, cp, corrupt)
    rep = check_script.Report(echo=False)
    check_script.check_reduce(rep, cp, seed=5)
    failed = [c for c in rep.checks if c["status"] == "fail"]
    assert len(failed) == len(rep.checks)
    assert all(pattern in c["detail"] for c in failed), failed[0]["detail"]


# -- IPC section: ranks as threads --------------------------------------------------------------


def make_comm(cp, rank: int, n: int, max_bytes: int, shared: dict, mode: str) -> ipc.IpcCommunicator:
    comm = object.__new__(ipc.IpcCommunicator)  # the real view logic, fake memory and kernels
    comm._closed, comm._cp, comm._c = False, cp, _sources.header_constants()
    comm.rank, comm.nranks, comm.max_bytes = rank, n, max_bytes
    comm._in, comm._out = cp.cuda.memory.Memory(max_bytes), cp.cuda.memory.Memory(max_bytes)
    comms = shared["comms"]
    comms[rank] = comm
    script = shared["script"]

    def launch(kind, count, dtype, op, *, inplace=False, stream=None):
        if mode == "raise":  # the last rank's kernel timed out; the others' kernels returned
            if rank == n - 1:
                raise ipc.IpcTimeoutError("simulated barrier timeout")
            return
        info = _sources.dtype_info(dtype)
        coll = {"one_shot": "allreduce", "two_shot": "allreduce"}.get(kind, kind)
        shared["barrier"].wait(timeout=20)  # every rank has placed its data
        if kind == "allgather":
            parts = [c.send_view(coll, count, dtype, inplace).get() for c in comms]
            res = np.concatenate(parts) if count else np.empty(0, info.storage)
        else:
            srcs = [c.send_view(coll, count, dtype, inplace).get() for c in comms]
            if kind == "reduce_scatter":
                srcs = [x[rank * count:(rank + 1) * count] for x in srcs]
            res = script.ref_reduce(op, info, srcs, n if op == "avg" else 0)
        shared["barrier"].wait(timeout=20)  # every rank has read
        if count:
            out = comm.recv_view(coll, count, dtype, inplace)
            out.set(res)
            if mode == "overrun" and not inplace:
                cp.HEAP.at(out.data.ptr + out.nbytes, 1)[0] ^= 1
            if mode == "clobber_send" and not inplace:
                cp.HEAP.at(comm.send_view(coll, count, dtype, inplace).data.ptr, 1)[0] ^= 1
        shared["barrier"].wait(timeout=20)

    comm.launch = launch
    comm.check_error = lambda stream=None: None
    return comm


def run_ipc_matrix(script, n: int, mode: str = "") -> list[list]:
    cp = fake_cupy()
    small = lambda kind, itemsize, nranks: [0, 1, 17, 4096 + 3, 1000 + 5, 2048 // nranks + 3]  # noqa: E731
    orig = script.ipc_counts
    script.ipc_counts = small
    try:
        cases = script.ipc_cases(n)
        max_bytes = max(ipc.required_bytes(k, c, _sources.dtype_info(d).itemsize, n) for k, d, _, c, _ in cases) + 4096
        shared = {"n": n, "slots": [None] * n, "barrier": threading.Barrier(n), "comms": [None] * n,
                  "script": script}
        comms = [make_comm(cp, r, n, max_bytes, shared, mode) for r in range(n)]
        results: list[list] = [[] for _ in range(n)]
        stream = cp.cuda.Stream(non_blocking=True)

        def rank_main(r: int) -> None:
            node = FakeNode(r, shared)
            for case_id, (kind, dt, op, count, inplace) in enumerate(cases):
                err, fatal = script.run_ipc_case(cp, comms[r], node, stream, 77, case_id, kind, dt, op, count, inplace)
                results[r].append((kind, dt, op, count, inplace, err))
                if fatal:
                    break

        threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not any(t.is_alive() for t in threads), "ranks hung"
        return results
    finally:
        script.ipc_counts = orig


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_ipc_cases_pass_with_correct_collectives(n) -> None:
    results = run_ipc_matrix(check_script, n)
    errors = [r for rank in results for r in rank if r[-1]]
    assert not errors, errors[:3]
    assert len(results[0]) == len(check_script.ipc_cases(n))


@pytest.mark.parametrize("mode,pattern", [("overrun", "outside the result"),
                                          ("clobber_send", "send buffer was modified")])
def test_ipc_cases_catch_broken_collectives(mode, pattern) -> None:
    results = run_ipc_matrix(check_script, 2, mode)
    bad = [r for r in results[0] if r[-1]]
    assert bad and all(pattern in r[-1] for r in bad), bad[:2]
    assert all(r[-1] for r in results[0] if not r[4] and r[3] > 0)  # every out-of-place case with data


def test_kernel_error_on_one_rank_stops_all_ranks_together() -> None:
    results = run_ipc_matrix(check_script, 3, "raise")
    for _r, rank_results in enumerate(results):
        assert len(rank_results) == 1  # every rank stopped after the first case, none hung
        assert rank_results[0][-1]
    assert "simulated barrier timeout" in results[2][0][-1]
    assert "another rank failed" in results[0][0][-1]


# -- bandwidth section: a simulated device clock ------------------------------------------------


class SimulatedDevice:
    """Device time advances by bytes / bandwidth per operation; events read the clock. The hold
    kernel can be told to end before the launches are queued (overrun) for a number of trials."""

    def __init__(self, l2_bytes: int, overruns: int = 0) -> None:
        self.clock, self.overruns, self.overrun_now = 0.0, overruns, False
        self.copy_gbps, self.reduce_gbps = 4000.0, 3600.0
        self.log: list[tuple] = []
        self.l2_bytes = l2_bytes

    def cupy(self):
        cp = fake_cupy()
        device = self

        class Event:
            def __init__(self) -> None:
                self.time = None
                self.done = False

            def record(self, stream=None) -> None:
                self.time = device.clock
                self.done = device.overrun_now  # complete already: the hold ended too soon
                device.log.append(("record", device.clock))

            def synchronize(self) -> None:
                pass

        def hold(grid, block, args) -> None:
            device.log.append(("hold", int(args[0])))
            device.overrun_now = device.overruns > 0
            device.overruns -= device.overrun_now

        def raw_kernel(source, name):
            assert "globaltimer" in source and name == "collbench_hold"
            return hold

        def memcpy_async(dst, src, n, kind, stream) -> None:
            device.clock += 2 * n / (device.copy_gbps * 1e6)  # milliseconds
            device.log.append(("copy", src, dst))

        def elapsed(start, end) -> float:
            return end.time - start.time

        cp.RawKernel = raw_kernel
        cp.cuda.Event = Event
        cp.cuda.get_elapsed_time = elapsed
        cp.cuda.runtime.memcpyAsync = memcpy_async
        cp.cuda.Device = lambda *a: SimpleNamespace(attributes={"L2CacheSize": device.l2_bytes}, id=0)
        return cp

    def reduce(self, op, c, a, b, *, dtype=None, stream=None) -> None:
        self.clock += 3 * c.size * c.dtype.itemsize / (self.reduce_gbps * 1e6)
        self.log.append(("reduce", a.data.ptr, b.data.ptr, c.data.ptr))


def test_bandwidth_section_times_back_to_back_launches_from_hbm(monkeypatch) -> None:
    MiB = check_script.MiB
    device = SimulatedDevice(l2_bytes=4 * MiB)
    cp = device.cupy()
    monkeypatch.setattr(kernels, "reduce", device.reduce)
    rep = check_script.Report(echo=False)
    perf = check_script.check_bandwidth(rep, cp, strict=False, sizes=(1 * MiB, 2 * MiB), rounds=2)
    # bandwidth from the simulated device time alone: no launch overhead inside the events
    assert perf["copy_gbps_1MiB"] == pytest.approx(4000.0) and perf["copy_gbps_2MiB"] == pytest.approx(4000.0)
    assert perf["float32_ratio_1MiB"] == pytest.approx(0.9) and perf["bfloat16_ratio_2MiB"] == pytest.approx(0.9)
    assert {c["status"] for c in rep.checks} == {"info", "pass"}
    # Rotation past 2 x L2 (8 MiB) between reuses of a buffer. 1 MiB reductions touch 3 MiB:
    # 3 sets, 2 rounds = 6 launches per trial, run 6 times (warm-up and 5 trials). 1 MiB copies
    # touch 2 MiB: 4 sets, 8 launches per trial.
    float32_1mib = [entry for entry in device.log if entry[0] == "reduce"][:36]
    assert len({entry[3] for entry in float32_1mib}) == 3
    assert [entry[3] for entry in float32_1mib[:6]] == [entry[3] for entry in float32_1mib[:3]] * 2
    copies_1mib = [entry for entry in device.log if entry[0] == "copy"][:48]
    assert len({entry[2] for entry in copies_1mib}) == 4
    assert "L2 4 MiB" in rep.checks[0]["detail"] and "over 4 buffer set(s)" in rep.checks[0]["detail"]


def test_bandwidth_section_retries_when_launching_outran_the_hold(monkeypatch) -> None:
    device = SimulatedDevice(l2_bytes=1 << 20, overruns=2)
    cp = device.cupy()
    monkeypatch.setattr(kernels, "reduce", device.reduce)
    ms = check_script.time_back_to_back(cp, [lambda: cp.cuda.runtime.memcpyAsync(0, 0, 1 << 20, 3, 0)], trials=2)
    holds = [entry[1] for entry in device.log if entry[0] == "hold"]
    assert holds == [20_000_000, 80_000_000, 320_000_000, 320_000_000]  # longer after each overrun
    assert ms == pytest.approx(2 * (1 << 20) / 4e9)
