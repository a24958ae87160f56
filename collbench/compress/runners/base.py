"""What every compressed runner shares: buffers, the communicator, and what its last run sent.

A runner is a :class:`collbench.execute.runner.ScheduleRunner` (``run``/``free``) that the mpi
backend hands the harness through :func:`collbench.execute.runner.prepared_op`. Unlike a
schedule its messages may depend on the data (how many (index, value) pairs survive a merge),
so it cannot be written in the static schedule IR: it is Python over mpi4py, with its buffers
allocated once per size (outside the timed loop) like the schedule executors'.

``sent_bytes`` is what this rank sent in its last run. Runners built on point-to-point count
their own messages exactly; those that call one of MPI's collectives (Allgather, Bcast,
Allreduce, Alltoallv) count the bytes the textbook algorithm named in their docstring sends
per rank, since the library may choose another internally.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...dtypes import DType
from ..options import Options


class CompressedRunner:
    """Base of the six runners.

    Args:
        comm: the measurement communicator (the backend's duplicate).
        input, output: this rank's views (the same array in place).
        dtype: the run's element type.
        options: the parsed ``-O`` options.
    """

    name = ""

    def __init__(self, comm: Any, input: np.ndarray, output: np.ndarray, dtype: DType,
                 options: Options) -> None:
        from mpi4py import MPI

        self.MPI = MPI
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.input = input
        self.output = output
        self.dtype = dtype
        self.count = output.size
        self.options = options
        self.sent_bytes = 0
        self.details: dict[str, Any] = {}   # per-run facts (topk_rd: where it went dense)

    def run(self) -> None:
        raise NotImplementedError

    def free(self) -> None:
        """Nothing to release: numpy scratch goes with the runner."""

    def stages(self) -> tuple[str, ...]:
        """The quantization stages on an element's way, ``partial`` (one partial sum quantized)
        or ``inputs`` (every rank's input quantized separately, then added): see
        :mod:`..bounds`. Empty for runners that do not quantize."""
        return ()

    def facts(self) -> dict[str, Any]:
        """What the row records about this configuration (options in effect, per-run details)."""
        record = self.options.record(self.name, self.count, self.dtype.itemsize)
        record.update(self.details)
        return record
