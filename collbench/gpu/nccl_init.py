"""NCCL communicator creation with a deadline, an abort, and an agreed verdict naming the rank
that failed.

``ncclCommInitRank`` is collective: when one rank fails (a bad device, no memory, a network
error) the others wait in it for a peer that never comes, with no timeout. CuPy exposes neither
``ncclCommInitRankConfig`` (non-blocking init) nor ``ncclCommGetAsyncError`` on a communicator
still being created, but it releases the GIL inside ``ncclCommInitRank``. So each rank
initialises in a thread while its main thread watches three things: its own result, a failure
notice from another rank (a point-to-point MPI message), and the deadline. Then every rank meets
in one allgather of (outcome, message), so all ranks agree on one verdict and raise together.

A rank whose init is still blocked cannot abort that communicator (NCCL has not returned it
yet): its thread is abandoned, and aborts the communicator itself if init ever returns. Ranks
whose init succeeded abort theirs (``ncclCommAbort``, which never waits for peers).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError

#: Seconds ncclCommInitRank may take on any rank (COLLBENCH_NCCL_INIT_TIMEOUT overrides).
#: Generous: init on thousands of GPUs takes tens of seconds.
DEFAULT_INIT_TIMEOUT = 300.0
_NOTICE_TAG = 0x4E43  # "NC": the failure notice, on a private duplicate of the communicator
_POLL_S = 0.005


def init_timeout(explicit: float | None = None) -> float:
    """The deadline in seconds: the argument, else COLLBENCH_NCCL_INIT_TIMEOUT, else the default."""
    if explicit is not None:
        return float(explicit)
    text = os.environ.get("COLLBENCH_NCCL_INIT_TIMEOUT")
    if not text:
        return DEFAULT_INIT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"COLLBENCH_NCCL_INIT_TIMEOUT={text!r}: expected seconds") from None
    if value <= 0:
        raise UsageError("COLLBENCH_NCCL_INIT_TIMEOUT must be positive")
    return value


class _Attempt:
    """One ncclCommInitRank running in a daemon thread (the call releases the GIL)."""

    def __init__(self, create: Callable[[], Any]) -> None:
        self.communicator: Any = None
        self.error: str | None = None
        self.done = threading.Event()
        self._abandoned = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, args=(create,), name="nccl-init", daemon=True)
        self._thread.start()

    def _run(self, create: Callable[[], Any]) -> None:
        try:
            communicator = create()
        except Exception as exc:  # noqa: BLE001 - any failure is reported to every rank
            self.error = _one_line(exc)
            communicator = None
        with self._lock:
            self.communicator = communicator
            self.done.set()
            late = self._abandoned
        if late and communicator is not None:  # the verdict went out without us: release it
            _abort(communicator)

    def abandon(self) -> Any:
        """Stop caring about the result; returns the communicator if init already returned one
        (the caller aborts it), else None (the thread aborts it if init ever returns)."""
        with self._lock:
            self._abandoned = True
            return self.communicator


@dataclass(frozen=True)
class _Outcome:
    state: str        # "ok", "failed" (init raised), "stopped" (another rank failed), "timeout"
    message: str = ""


def create_communicator(comm: Any, create: Callable[[Any], Any], unique_id: Callable[[], Any],
                        timeout_s: float) -> Any:
    """Create this rank's NCCL communicator, or raise :class:`UsageError` on every rank.

    Args:
        comm: the mpi4py communicator whose ranks become the NCCL ranks (collective over it).
        create: ``create(uid)`` calls ``NcclCommunicator(size, uid, rank)`` for this rank.
        unique_id: makes the NCCL unique id (called on rank 0 only).
        timeout_s: how long any rank may wait for its init before the ranks give up together.
    """
    rank = comm.Get_rank()
    uid = _shared_unique_id(comm, unique_id)
    private = comm.Dup()  # notices and the verdict never mix with the caller's messages
    try:
        attempt = _Attempt(lambda: create(uid))
        outcome, notices = _wait(private, attempt, time.monotonic() + timeout_s, timeout_s)
        outcomes = private.allgather(outcome)
        _settle_notices(private, rank, outcomes, notices)
    finally:
        private.Free()
    if all(o.state == "ok" for o in outcomes):
        return attempt.communicator
    mine = attempt.abandon()
    if mine is not None:
        _abort(mine)
    raise UsageError(verdict(outcomes, timeout_s))


def _shared_unique_id(comm: Any, unique_id: Callable[[], Any]) -> Any:
    """Rank 0's unique id on every rank; a failure there is raised everywhere (not a hang)."""
    uid = error = None
    if comm.Get_rank() == 0:
        try:
            uid = unique_id()
        except Exception as exc:  # noqa: BLE001
            error = _one_line(exc)
    uid, error = comm.bcast((uid, error), root=0)
    if error:
        raise UsageError(f"NCCL initialisation failed on rank 0 (ncclGetUniqueId): {error}")
    return uid


def _wait(private: Any, attempt: _Attempt, deadline: float, timeout_s: float) -> tuple[_Outcome, list[Any]]:
    """Wait for this rank's init, a failure notice from a peer, or the deadline.

    A rank whose init failed tells every peer at once (non-blocking sends), so ranks blocked in
    NCCL's bootstrap stop waiting now rather than at the deadline. Returns the outcome and the
    send requests to complete after the verdict.
    """
    rank, size = private.Get_rank(), private.Get_size()
    while not attempt.done.wait(_POLL_S):
        if private.Iprobe(tag=_NOTICE_TAG):
            return _Outcome("stopped"), []
        if time.monotonic() >= deadline:
            return _Outcome("timeout", f"ncclCommInitRank did not return within {timeout_s:g} s"), []
    if attempt.error is None:
        return _Outcome("ok"), []
    notices = [private.isend(rank, dest=peer, tag=_NOTICE_TAG) for peer in range(size) if peer != rank]
    return _Outcome("failed", attempt.error), notices


def _settle_notices(private: Any, rank: int, outcomes: list[_Outcome], sent: list[Any]) -> None:
    """Receive the notice of every rank that failed (each sent one to every peer), and complete
    our own sends, so no message is left behind on the communicator we free."""
    for peer, outcome in enumerate(outcomes):
        if outcome.state == "failed" and peer != rank:
            private.recv(source=peer, tag=_NOTICE_TAG)
    for request in sent:
        request.wait()


def verdict(outcomes: list[_Outcome], timeout_s: float) -> str:
    """One line for the user: which rank failed and why, or which ranks never finished."""
    failed = [(r, o.message) for r, o in enumerate(outcomes) if o.state == "failed"]
    if failed:
        first_rank, first_message = failed[0]
        others = f" (also on rank{'s' if len(failed) > 2 else ''} {_ranks([r for r, _ in failed[1:]])})" \
            if len(failed) > 1 else ""
        return f"NCCL initialisation failed on rank {first_rank}: {first_message}{others}; every rank stopped"
    late = [r for r, o in enumerate(outcomes) if o.state == "timeout"]
    if not late:  # cannot happen ("stopped" follows a failure), but never print an empty verdict
        return "NCCL initialisation was abandoned on every rank: " + ", ".join(o.state for o in outcomes)
    where = "every rank" if len(late) == len(outcomes) else f"rank{'s' if len(late) > 1 else ''} {_ranks(late)}"
    return (f"NCCL initialisation did not finish within {timeout_s:g} s on {where} (a rank that cannot reach "
            "the others, or a slow bootstrap: check NCCL_SOCKET_IFNAME, or raise COLLBENCH_NCCL_INIT_TIMEOUT)")


def _ranks(ranks: list[int]) -> str:
    return ", ".join(map(str, ranks))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _abort(communicator: Any) -> None:
    """ncclCommAbort (never waits for peers, unlike ncclCommDestroy); best effort."""
    try:
        communicator.abort()
    except Exception:  # noqa: BLE001,S110 - we are already failing; nothing better to do
        pass
