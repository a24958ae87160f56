"""Per-step statistics of one traced measurement (what ``collbench trace show`` prints).

For every step index and traced iteration: each rank's step duration (its own clock, so no
alignment error), its wait, and how long it waited on a *late partner*: the time from its own
posting to the moment the latest of its senders posted (rank 0's clock, within the offset
bound), capped at the wait. Over iterations the median is kept, so one preempted iteration on
a loaded machine does not decide the table.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from .document import aligned


@dataclass(frozen=True)
class StepStat:
    index: int
    time_us: float          # max over ranks of the step's duration (median over iterations)
    median_us: float        # median over ranks
    wait_us: float          # max over ranks of the wait for the step's messages
    late_us: float          # the longest wait on a late partner
    late_rank: int | None   # ... and that partner (the straggler)
    critical_rank: int      # the rank finishing the step last (most often over iterations)
    bytes: int              # bytes sent by all ranks in the step
    ranks: int              # ranks that take part


def step_stats(record: dict[str, Any], m: dict[str, Any]) -> list[StepStat]:
    desc = {entry["rank"]: entry["steps"] for entry in m["ranks"]}
    # (iteration, step index) -> rank -> [post, posted, completed, done]
    at: dict[tuple[int, int], dict[int, list[int]]] = defaultdict(dict)
    for rank, i, stamps in aligned(record, m):
        for step, stamp in zip(desc[rank], stamps):
            at[(i, step["index"])][rank] = stamp
    order = list(dict.fromkeys(s["index"] for rank in sorted(desc) for s in desc[rank]))
    order.sort(key=lambda k: (k < 0, k))  # avg's finalize (-1) last
    out = []
    for index in order:
        per_iter: list[tuple[float, float, float, float, int | None, int]] = []
        for i in sorted({i for (i, k) in at if k == index}):
            ranks = at[(i, index)]
            durations = {r: (s[3] - s[0]) / 1e3 for r, s in ranks.items()}
            waits = {r: (s[2] - s[1]) / 1e3 for r, s in ranks.items()}
            late, late_rank = 0.0, None
            for r, s in ranks.items():
                step = next(x for x in desc[r] if x["index"] == index)
                for peer, _ in step["recvs"]:
                    theirs = ranks.get(peer)
                    if theirs is None:
                        continue
                    lag = min(max(0.0, (theirs[0] - s[1]) / 1e3), waits[r])
                    if lag > late:
                        late, late_rank = lag, peer
            critical = max(ranks, key=lambda r: ranks[r][3])
            per_iter.append((max(durations.values()), statistics.median(durations.values()),
                             max(waits.values()), late, late_rank, critical))
        sent = sum(n for r in desc for s in desc[r] if s["index"] == index for _, n in s["sends"])
        participants = sum(1 for r in desc if any(s["index"] == index for s in desc[r]))
        lates = [p[4] for p in per_iter if p[4] is not None]
        out.append(StepStat(
            index, statistics.median(p[0] for p in per_iter), statistics.median(p[1] for p in per_iter),
            statistics.median(p[2] for p in per_iter), statistics.median(p[3] for p in per_iter),
            Counter(lates).most_common(1)[0][0] if lates else None,
            Counter(p[5] for p in per_iter).most_common(1)[0][0], sent, participants))
    return out


def operation_us(record: dict[str, Any], m: dict[str, Any]) -> float:
    """The traced operation's time: first post to last completion over all ranks (rank 0's
    clock), median over the traced iterations."""
    spans: dict[int, list[int]] = defaultdict(list)
    for _, i, stamps in aligned(record, m):
        if stamps:
            spans[i] += [stamps[0][0], stamps[-1][3]]
    return statistics.median((max(v) - min(v)) / 1e3 for v in spans.values()) if spans else 0.0
