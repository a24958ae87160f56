"""NVTX ranges (collbench/trace/nvtx.py) without a GPU: names, nesting in the NCCL schedule's
call list, and nothing at all added while ``--nvtx`` is off. The end-to-end run through the
CLI on the fake CuPy is in tests/gpu/test_trace_gpu_fake.py."""

from __future__ import annotations

import sys

import pytest
from gpu.fakecuda import fake_cupy  # the one fake CuPy (tests/gpu/fakecuda)

from collbench.algorithms import Collective, Problem
from collbench.backends.base import OpRequest, Placement
from collbench.dtypes import parse_dtypes
from collbench.errors import UsageError
from collbench.execute.bind import lower, nccl_calls
from collbench.execute.programs import build_program
from collbench.gpu.nccl_executor import schedule_calls
from collbench.trace import nvtx

FLOAT32 = parse_dtypes("float32")[0]


def _install_fake_cupy(monkeypatch):
    """A fresh fake CuPy as `cupy` for the test (its NVTX binding records pushes and pops)."""
    cp = fake_cupy()
    monkeypatch.setitem(sys.modules, "cupy", cp)
    monkeypatch.setitem(sys.modules, "cupy.cuda", cp.cuda)
    return cp


@pytest.fixture
def recorded(monkeypatch):
    """The fake CuPy's NVTX events; ranges on for the test, off after."""
    cp = _install_fake_cupy(monkeypatch)
    nvtx.configure(True)
    yield cp.NVTX_EVENTS
    nvtx.configure(False)


def _request(collective=Collective.ALLREDUCE, algorithm="ring", count=1 << 18, op="sum"):
    return OpRequest(collective, algorithm, FLOAT32, op, count, Placement.OUT_OF_PLACE)


def _lowered(op="avg", algorithm="ring", nranks=4, rank=1):
    problem = Problem(Collective.ALLREDUCE, nranks, 16, 0, None)
    return lower(problem, build_program(algorithm, problem, rank, {}), False, op)


def test_off_adds_nothing():
    nvtx.configure(False)
    assert not nvtx.enabled()

    def run() -> None:
        pass

    assert nvtx.collective(run, _request(), 4) is run          # the timed loop calls run itself
    assert nvtx.span("warm-up") is nvtx.span("validation")     # one shared no-op context
    lowered = _lowered()
    assert schedule_calls(lowered, None) == nccl_calls(lowered)  # no range calls in the list
    with pytest.raises(RuntimeError, match="off"):
        nvtx.push_pop()


def test_names_read_without_a_legend():
    request = _request()
    assert nvtx.collective_name(request, 4) == "allreduce ring 1 MiB"
    assert nvtx.measurement_name(request, 4) == "measure allreduce ring 1 MiB float32 sum out-of-place"
    gather = _request(Collective.ALLGATHER, "native", count=3, op=None)  # count per rank: 4 x 12 B
    assert nvtx.measurement_name(gather, 4) == "measure allgather native 48 B float32 out-of-place"
    assert nvtx.step_name("allreduce ring 1 MiB", 3) == "allreduce ring 1 MiB · step 3"
    assert nvtx.step_name("allreduce ring 1 MiB", "finalize avg") == "allreduce ring 1 MiB · finalize avg"


def test_each_step_is_bracketed_and_the_calls_are_unchanged():
    lowered = _lowered(op="avg")
    calls = schedule_calls(lowered, "allreduce ring 64 B")
    pushes = [c[1] for c in calls if c[0] == "range_push"]
    assert pushes == [f"allreduce ring 64 B · step {s.index}" for s in lowered.steps] + \
        ["allreduce ring 64 B · finalize avg"]
    depth = 0
    for call in calls:  # balanced, never nested within a step, nothing outside a step
        depth += {"range_push": 1, "range_pop": -1}.get(call[0], 0)
        assert depth in (0, 1) and (depth == 1 or call[0] in ("range_push", "range_pop"))
    assert depth == 0
    assert [c for c in calls if not c[0].startswith("range_")] == nccl_calls(lowered)


def test_collective_and_span_nest(recorded):
    ran = []
    run = nvtx.collective(lambda: ran.append(1), _request(count=2), 2)
    with nvtx.span("measure x"):
        run()
        with pytest.raises(ZeroDivisionError), nvtx.span("validation"):
            nvtx.collective(lambda: 1 / 0, _request(count=2), 2)()  # a failing op still pops
    assert ran == [1]
    assert recorded == [("push", "measure x"), ("push", "allreduce ring 8 B"), ("pop", None),
                        ("push", "validation"), ("push", "allreduce ring 8 B"), ("pop", None), ("pop", None),
                        ("pop", None)]


def test_configure_refuses_a_cupy_without_nvtx(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy raises ImportError
    monkeypatch.delitem(sys.modules, "cupy.cuda", raising=False)
    with pytest.raises(UsageError, match="--nvtx needs CuPy"):
        nvtx.configure(True)
    assert not nvtx.enabled()
    cp = _install_fake_cupy(monkeypatch)
    cp.cuda.nvtx.available = False  # a CuPy built without NVTX
    with pytest.raises(UsageError, match="without NVTX"):
        nvtx.configure(True)
    assert not nvtx.enabled()
