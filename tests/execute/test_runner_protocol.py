"""Every executor is a ScheduleRunner, and prepared_op hands its methods to the harness unwrapped
(a wrapper would add a Python call to every timed operation)."""

from __future__ import annotations

import numpy as np
import pytest

from cbtest import native_library_or_skip
from collbench.algorithms import Buf, Slice
from collbench.execute import names
from collbench.execute.bind import LoweredProgram, LoweredStep
from collbench.execute.runner import ScheduleRunner, SelfTimedRunner, prepared_op

# one self-exchange of 4 bytes on COMM_SELF: runs in this process, no mpiexec
STEP = LoweredStep(0, ((0, Slice(Buf.INPUT, 0, 4)),), ((0, Slice(Buf.OUTPUT, 0, 4)),), ())
PROGRAM = LoweredProgram((STEP,), 0, None)


@pytest.fixture
def comm():
    from mpi4py import MPI

    comm = MPI.COMM_SELF.Dup()
    yield comm
    comm.Free()


def _buffers() -> dict[Buf, np.ndarray]:
    return {Buf.INPUT: np.arange(4, dtype=np.uint8), Buf.OUTPUT: np.zeros(4, dtype=np.uint8)}


def test_the_python_executor_is_a_runner_timed_by_the_harness(comm):
    from mpi4py import MPI

    from collbench.execute.python_mpi import MpiScheduleRun

    buffers = _buffers()
    runner = MpiScheduleRun(comm, PROGRAM, buffers, MPI.UINT8_T, None, 1)
    assert isinstance(runner, ScheduleRunner) and not isinstance(runner, SelfTimedRunner)
    prepared = prepared_op(runner, buffers[Buf.INPUT], buffers[Buf.OUTPUT], names.ROW_PYTHON)
    assert prepared.run == runner.run and prepared.teardown == runner.free
    assert prepared.batch is None and prepared.per_iteration is None
    assert prepared.executor == "python"
    prepared.run()
    assert buffers[Buf.OUTPUT].tolist() == [0, 1, 2, 3]
    prepared.teardown()


def test_the_c_executor_times_itself(comm):
    from mpi4py import MPI

    from collbench.execute.c_executor import NativeCollective, NativeScheduleRun

    library = native_library_or_skip()
    buffers = _buffers()
    runner = NativeScheduleRun(library, comm, PROGRAM, buffers, MPI.UINT8_T, "uint8", None, 1)
    assert isinstance(runner, SelfTimedRunner)
    prepared = prepared_op(runner, buffers[Buf.INPUT], buffers[Buf.OUTPUT], names.ROW_C)
    assert (prepared.run, prepared.batch, prepared.per_iteration, prepared.teardown) == \
        (runner.run, runner.batch, runner.per_iteration, runner.free)
    assert prepared.executor == "native"
    assert prepared.batch(3) >= 0 and prepared.per_iteration(3).shape == (3,)
    assert buffers[Buf.OUTPUT].tolist() == [0, 1, 2, 3]
    prepared.teardown()

    send, recv = np.ones(2, np.int32), np.zeros(2, np.int32)
    loop = NativeCollective(library, "ALLREDUCE", comm, send, recv, 2, MPI.INT32_T, MPI.SUM, 0, False)
    assert isinstance(loop, SelfTimedRunner)
    prepared = prepared_op(loop, send, recv, names.ROW_LIBRARY_C)
    prepared.run()
    prepared.teardown()  # nothing to free, but callable like every runner's
    assert recv.tolist() == [1, 1] and prepared.executor == "library+native"


def test_the_nccl_executor_has_the_runners_methods():
    """NcclScheduleRun needs CuPy to construct; its class must still offer run() and free()."""
    from collbench.gpu.nccl_executor import NcclScheduleRun

    for method in ("run", "free"):
        assert callable(getattr(NcclScheduleRun, method, None)), method
