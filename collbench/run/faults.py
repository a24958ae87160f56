"""Fault injection for testing the failure paths (watchdog, abort) with real MPI jobs.

``COLLBENCH_INJECT_FAULT=KIND:RANK[:BYTES]`` makes rank RANK misbehave at its first measurement
(or the first one of BYTES bytes):
  * ``absent``: never arrive at the measurement (the rendezvous must name this rank);
  * ``stall``:  arrive, then get stuck inside the operation (the deadline thread must fire);
  * ``raise``:  raise an exception (every rank must be aborted, none may hang);
  * ``corrupt``: run the operation, then damage one output element (validation must count it,
    and the exit status must say so);
  * ``scribble``: run the operation, then damage one *input* element, as an out-of-place
    implementation that uses its input as scratch would (validation must count it).
It is read once; an unset variable costs nothing.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ..errors import UsageError

if TYPE_CHECKING:
    from ..backends.base import PreparedOp

ENV = "COLLBENCH_INJECT_FAULT"
KINDS = ("absent", "stall", "raise", "corrupt", "scribble")


@dataclass(frozen=True)
class Fault:
    kind: str
    rank: int
    nbytes: int | None = None

    def matches(self, rank: int, nbytes: int) -> bool:
        return rank == self.rank and (self.nbytes is None or nbytes == self.nbytes)

    @staticmethod
    def corrupting(run: Callable[[], None], buffer: Any) -> Callable[[], None]:
        """``run`` followed by flipping the bits of the first element of ``buffer`` (host buffers)."""
        def damaged() -> None:
            run()
            if buffer.size:
                raw = buffer[:1].view("u1")
                raw ^= 0xFF
        return damaged

    def wrap(self, prepared: "PreparedOp") -> "PreparedOp":
        """The prepared op as this fault makes it behave (a wrapper: the timed path is untouched
        when no fault is injected)."""
        if self.kind == "stall":  # this rank's operation never completes
            # a self-timing (C) loop would never reach the stall: time this rank's run instead
            return dataclasses.replace(prepared, run=self.trigger, batch=None, per_iteration=None)
        if self.kind == "corrupt":
            return dataclasses.replace(prepared, run=self.corrupting(prepared.run, prepared.output))
        if self.kind == "scribble":
            return dataclasses.replace(prepared, run=self.corrupting(prepared.run, prepared.input))
        return prepared

    def trigger(self) -> None:
        if self.kind == "raise":
            raise RuntimeError(f"fault injected by {ENV}")
        while True:  # absent / stall: never return
            time.sleep(3600)


def from_environment() -> Fault | None:
    text = os.environ.get(ENV)
    if not text:
        return None
    parts = text.split(":")
    try:
        kind, rank = parts[0], int(parts[1])
        nbytes = int(parts[2]) if len(parts) > 2 else None
    except (IndexError, ValueError):
        raise UsageError(f"{ENV}={text!r}: expected KIND:RANK[:BYTES] with KIND in {', '.join(KINDS)}") from None
    if kind not in KINDS:
        raise UsageError(f"{ENV}: unknown fault kind {kind!r} (known: {', '.join(KINDS)})")
    return Fault(kind, rank, nbytes)
