"""Never hang silently: a per-operation deadline, checked rendezvous and job-wide abort.

Two mechanisms cover the two ways a benchmark hangs:
  * a rank never arrives at a measurement (it crashed, is stuck elsewhere, or takes another
    path): before every measurement the ranks meet in a *checked rendezvous* on point-to-point
    messages, so rank 0 knows exactly which ranks did not arrive within the timeout;
  * an operation starts everywhere but never completes (deadlock in an algorithm, a lost
    message): a watchdog thread holds a deadline for the operation(s) in flight.
Either way the job is aborted with one message naming the collective, size, algorithm and the
ranks concerned. The thread never calls MPI unless the thread level is MPI_THREAD_MULTIPLE; at
lower levels it exits the process, which makes mpiexec/srun tear the job down.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

EXIT_ERROR = 1
EXIT_TIMEOUT = 4  # nccl-tests' testTimeout code

_TAG_ARRIVE = 31001
_TAG_RELEASE = 31002


@dataclass
class Activity:
    """What this rank is doing right now, for error messages from any thread."""

    rank: int = 0
    collective: str = "-"
    algorithm: str = "-"
    size: int | None = None
    dtype: str = "-"
    op: str | None = None
    placement: str = "-"
    phase: str = "startup"
    extra: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        if self.size is None:
            return f"{self.phase}"
        op = f" {self.op}" if self.op else ""
        return (f"{self.collective} algorithm={self.algorithm} size={self.size} B "
                f"{self.dtype}{op} {self.placement}, during {self.phase}")


ABORT_GRACE_S = 0.3  # seconds between the error line and MPI_Abort


def abort_job(comm: Any, message: str, code: int, from_thread: bool, thread_multiple: bool) -> None:
    """Print ``message`` once from this rank and bring the whole job down."""
    sys.stdout.flush()
    sys.stderr.write(f"collbench: {message}\n")
    sys.stderr.flush()
    if comm is not None and (not from_thread or thread_multiple):
        # MPI_Abort makes the launcher tear the job down at once, and it can do so before it has
        # forwarded the line just written (seen: a run that failed with empty stderr): give it a
        # moment to drain the rank's output first
        time.sleep(ABORT_GRACE_S)
        comm.Abort(code)
    os._exit(code)


class Watchdog:
    """Deadline thread plus checked rendezvous for one communicator.

    Args:
        comm: a communicator reserved for collbench's control messages.
        timeout: seconds an operation (or an arrival) may take before the job is aborted;
            0 disables the deadline thread (the rendezvous then waits forever, like MPI).
        activity: the shared description of the current work.
        thread_multiple: whether MPI was initialized with MPI_THREAD_MULTIPLE.
    """

    def __init__(self, comm: Any, timeout: float, activity: Activity, thread_multiple: bool) -> None:
        self.comm = comm
        self.timeout = timeout
        self.activity = activity
        self.thread_multiple = thread_multiple
        self._deadline: float | None = None
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        if timeout > 0:
            self._thread = threading.Thread(target=self._watch, name="collbench-watchdog", daemon=True)
            self._thread.start()

    # -- deadline thread ----------------------------------------------------------------------

    def arm(self, seconds: float) -> None:
        """Abort the job unless :meth:`disarm` is called within ``seconds``."""
        if self._thread is None:
            return
        with self._cond:
            self._deadline = time.monotonic() + seconds
            self._cond.notify()

    def disarm(self) -> None:
        if self._thread is None:
            return
        with self._cond:
            self._deadline = None

    def _watch(self) -> None:
        with self._cond:
            while not self._closed:
                if self._deadline is None:
                    self._cond.wait()
                    continue
                remaining = self._deadline - time.monotonic()
                if remaining > 0:
                    self._cond.wait(remaining)
                    continue
                abort_job(self.comm,
                          f"timeout on rank {self.activity.rank}: {self.activity.describe()} did not "
                          f"complete within the -T limit ({self.timeout:g} s); every rank had arrived "
                          "at this measurement, so the operation itself is stuck",
                          EXIT_TIMEOUT, from_thread=True, thread_multiple=self.thread_multiple)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    # -- checked rendezvous -------------------------------------------------------------------

    def rendezvous(self) -> None:
        """Meet all ranks; abort naming the missing ones if they do not arrive in time."""
        comm = self.comm
        size, rank = comm.Get_size(), comm.Get_rank()
        if size == 1:
            return
        if rank == 0:
            requests = [comm.irecv(source=r, tag=_TAG_ARRIVE) for r in range(1, size)]
            self._wait(requests, lambda pending: (
                f"timeout: rank(s) {_ranks(pending)} did not arrive at {self.activity.describe()} "
                f"within {self.timeout:g} s (rank 0 waited; they are stuck, dead or on another path)"))
            for r in range(1, size):
                comm.send(None, dest=r, tag=_TAG_RELEASE)
        else:
            comm.send(None, dest=0, tag=_TAG_ARRIVE)
            request = comm.irecv(source=0, tag=_TAG_RELEASE)
            # Wait twice as long as rank 0 does, so that rank 0, which knows who is missing,
            # reports first.
            self._wait([request], timeout_factor=2.0, message=lambda pending: (
                f"timeout on rank {rank}: rank 0 did not release {self.activity.describe()} within "
                f"{self.timeout:g} s (rank 0 is stuck or waiting for another rank)"))

    def _wait(self, requests: list[Any], message: Any, timeout_factor: float = 1.0) -> None:
        """Poll requests until all complete; back off from spinning so oversubscribed ranks yield."""
        pending = dict(enumerate(requests, start=1))
        deadline = time.monotonic() + timeout_factor * self.timeout if self.timeout > 0 else None
        spins = 0
        while pending:
            for key in [k for k, req in pending.items() if req.test()[0]]:
                del pending[key]
            if not pending:
                return
            if deadline is not None and time.monotonic() > deadline:
                abort_job(self.comm, message(sorted(pending)), EXIT_TIMEOUT,
                          from_thread=False, thread_multiple=self.thread_multiple)
            spins += 1
            if spins > 1000:
                time.sleep(0.0005)


def _ranks(ranks: list[int]) -> str:
    return ", ".join(str(r) for r in ranks)
