"""What every executor hands the harness, and the one step from an executor to a ``PreparedOp``.

A backend prepares a schedule in three moves: :func:`collbench.execute.bind.bind` (its buffers),
an executor's constructor (a :class:`ScheduleRunner`), and :func:`prepared_op`. Everything else
about schedules (lowering, in-place binding, timing in C or not) is decided here in ``execute``.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..backends.base import PreparedOp


@runtime_checkable
class ScheduleRunner(Protocol):
    """A program bound to buffers, repeatable without allocation.

    Implemented by :class:`collbench.execute.python_mpi.MpiScheduleRun`,
    :class:`collbench.execute.c_executor.NativeScheduleRun` (and the C executor's
    :class:`~collbench.execute.c_executor.NativeCollective`) and
    ``collbench.gpu.nccl_executor.NcclScheduleRun``. A runner that times itself (a loop in C)
    also has the two methods of :class:`SelfTimedRunner`; the harness then uses them instead of
    its backend's timer.
    """

    def run(self) -> None:
        """One operation (asynchronous on devices: the backend's timer synchronizes)."""

    def free(self) -> None:
        """Release per-size resources (persistent requests, C plans, scratch)."""


@runtime_checkable
class SelfTimedRunner(ScheduleRunner, Protocol):
    """A runner with its own timing loop (the optional part of :class:`ScheduleRunner`)."""

    def batch(self, iterations: int) -> float:
        """Seconds per operation over ``iterations`` back-to-back operations."""

    def per_iteration(self, iterations: int) -> np.ndarray:
        """Seconds of each of ``iterations`` operations (float64)."""


def prepared_op(runner: ScheduleRunner, input: Any, output: Any, executor: str) -> PreparedOp:
    """``runner`` as the harness's ``PreparedOp``.

    Args:
        input, output: where the harness writes the input and reads the result
            (``BoundProgram.input``/``.output`` for a schedule).
        executor: the row's ``executor`` value (one of :mod:`collbench.execute.names`).
    """
    # Bound methods go in as they are: the harness calls them in its timed loop, so no wrapper
    # may add a Python call per operation.
    if isinstance(runner, SelfTimedRunner):
        return PreparedOp(runner.run, input, output, executor=executor, teardown=runner.free,
                          batch=runner.batch, per_iteration=runner.per_iteration)
    return PreparedOp(runner.run, input, output, executor=executor, teardown=runner.free)
