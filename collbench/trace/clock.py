"""Clock offsets of every rank against rank 0, so per-rank timestamps share one time axis.

Rank 0 ping-pongs each other rank over the control communicator; per round it notes its send
time t0 and receive time t1, the peer its own time t at the reply. The offset estimate is
``t - (t0 + t1) / 2`` from the round with the smallest round trip (least queueing), with the
bound ``RTT / 2``: the true offset lies within it. Both are recorded in the trace's metadata.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

ROUNDS = 20
_TAG = 0x7E1  # control-communicator tag of the ping-pong (never used by measurements)


@dataclass(frozen=True)
class Offset:
    """``offset_ns``: this rank's clock minus rank 0's; ``bound_ns``: ± uncertainty."""

    offset_ns: int
    bound_ns: int


def estimate(ctrl: Any, rounds: int = ROUNDS) -> list[Offset] | None:
    """Offsets of every rank (rank 0 gets the list, the others None). Collective over ``ctrl``."""
    clock = time.perf_counter_ns  # CLOCK_MONOTONIC, the clock both executors stamp with
    rank, size = ctrl.Get_rank(), ctrl.Get_size()
    if rank != 0:
        for _ in range(rounds):
            ctrl.recv(source=0, tag=_TAG)
            ctrl.send(clock(), dest=0, tag=_TAG)
        return None
    out = [Offset(0, 0)]
    for peer in range(1, size):
        best: tuple[int, int] | None = None  # (rtt, offset)
        for _ in range(rounds):
            t0 = clock()
            ctrl.send(None, dest=peer, tag=_TAG)
            theirs = ctrl.recv(source=peer, tag=_TAG)
            t1 = clock()
            sample = (t1 - t0, theirs - (t0 + t1) // 2)
            if best is None or sample[0] < best[0]:
                best = sample
        assert best is not None
        out.append(Offset(best[1], (best[0] + 1) // 2))
    return out
