"""Ctrl-C inside the MPI job: every rank stops at once and keeps what rank 0 wrote; one line, 130.

mpiexec and srun forward SIGINT to every rank. Python raises KeyboardInterrupt in a rank's main
thread only between bytecodes, so a rank sitting in a C call (an MPI wait for a rank that has
already left, a long native timed loop) would never see it, and a rank that left first makes the
process manager kill the others, perhaps before rank 0 said anything. So the signal also wakes a
watcher thread (:func:`signal.set_wakeup_fd`): if the main thread has not stopped the rank within
:data:`GRACE_S`, the watcher does. Either way the rank stops the same way, once (:meth:`stop`):

* rank 0 closes the results file (every row written so far stays, never a torn line; there is
  no summary record, so readers say the run did not finish);
* the line ``collbench: interrupted`` comes from rank 0 when the ranks were started by mpiexec
  or srun directly, and from collbench's launcher otherwise (``quiet``); the other ranks are
  silent, and wait :data:`PEER_DELAY_S` before leaving so that rank 0 can say it;
* the process ends with status 130 without MPI_Abort (which prints lines of its own and makes
  the job's status 1) and without MPI_Finalize (which could wait for a rank that is gone).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from typing import Any, NoReturn

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a process Ctrl-C ended
GRACE_S = 0.2           # the main thread's own KeyboardInterrupt first, when Python can raise it
PEER_DELAY_S = 0.5      # ranks other than 0 leave this much later when rank 0 says the line
STOP_LIMIT_S = 5.0      # the longest stopping may take (closing the file, flushing the streams)


class Interrupts:
    """One rank's Ctrl-C handling (see the module docstring).

    Args:
        rank: this rank.
        quiet: True when collbench's launcher reports the interrupt (rank 0 then says nothing).
    """

    def __init__(self, rank: int, quiet: bool) -> None:
        self.rank = rank
        self.quiet = quiet
        self.writer: Any = None     # rank 0's ResultsWriter, once open
        self.progress: Any = None   # rank 0's progress line
        # held while rank 0 writes a record, so that the watcher never closes the file mid-line
        self.lock = threading.Lock()
        self._stopping = threading.Lock()
        self._fds: tuple[int, int] | None = None
        self._previous_fd = -1

    def start(self) -> None:
        """Watch for SIGINT (main thread only; elsewhere the main thread's handling alone)."""
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        try:
            self._previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        except ValueError:  # not the main thread
            os.close(read_fd)
            os.close(write_fd)
            return
        self._fds = (read_fd, write_fd)
        threading.Thread(target=self._watch, args=(read_fd,), name="collbench-interrupt", daemon=True).start()

    def close(self) -> None:
        """Stop watching (the run ended normally); the watcher thread ends with its pipe."""
        if self._fds is None:
            return
        with contextlib.suppress(ValueError):
            signal.set_wakeup_fd(self._previous_fd)
        read_fd, write_fd = self._fds
        self._fds = None
        os.close(write_fd)  # the watcher reads end-of-file and returns (it closes its end)

    def _watch(self, read_fd: int) -> None:
        try:
            while True:
                try:
                    data = os.read(read_fd, 64)
                except InterruptedError:
                    continue
                if not data:
                    return
                if signal.SIGINT in data:  # the byte is the signal's number
                    time.sleep(GRACE_S)    # the main thread stops the rank itself, when it can
                    self.stop(from_main_thread=False)
        except OSError:
            return
        finally:
            with contextlib.suppress(OSError):
                os.close(read_fd)

    def write(self, record: dict[str, Any]) -> None:
        """Rank 0: one record into the results file, never cut by :meth:`stop`."""
        with self.lock:
            self.writer.write(record)

    def stop(self, from_main_thread: bool = True) -> NoReturn:
        """End this rank after Ctrl-C: keep the rows, one line (rank 0, unless quiet), status 130.
        The first caller does it; a second (the other thread) waits for the process to end."""
        if from_main_thread:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut this short
        self._stopping.acquire()
        # never a hang, even if a stream below is stuck (a launcher no longer reading it)
        deadline = threading.Timer(STOP_LIMIT_S, os._exit, args=(EXIT_INTERRUPTED,))
        deadline.daemon = True
        deadline.start()
        try:
            if self.rank == 0:
                locked = self.lock.acquire(timeout=2.0)  # a record being written is finished first
                if self.writer is not None and locked:
                    self.writer.close()  # no summary record: readers say the run did not finish
                if self.progress is not None:
                    self.progress.clear()
                sys.stdout.flush()
                if not self.quiet:
                    sys.stderr.write("collbench: interrupted\n")
                sys.stderr.flush()
            else:
                sys.stdout.flush()
                sys.stderr.flush()
                if not self.quiet:
                    time.sleep(PEER_DELAY_S)
        finally:
            os._exit(EXIT_INTERRUPTED)


def start_mpi(thread_level: str) -> tuple[Interrupts, Any, Any, Any]:
    r"""Watch for Ctrl-C, then start MPI: (interrupts, the MPI module, COMM_WORLD, a duplicate of
    it for collbench's own messages). Ctrl-C while MPI starts already stops the rank this way.
    The caller :meth:`~Interrupts.close`\ s the watch when its job ends."""
    from .launcher import LAUNCHED_MARKER, env_rank  # (the launcher imports this module)

    interrupts = Interrupts(env_rank(), quiet=os.environ.get(LAUNCHED_MARKER) == "1")
    interrupts.start()
    try:
        import mpi4py

        mpi4py.rc.thread_level = thread_level
        from mpi4py import MPI

        world = MPI.COMM_WORLD
        interrupts.rank = world.Get_rank()
        ctrl = world.Dup()
    except KeyboardInterrupt:
        interrupts.stop()
    except BaseException:
        interrupts.close()
        raise
    return interrupts, MPI, world, ctrl
