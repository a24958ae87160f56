"""Measured vs modelled, step by step (``collbench trace compare``).

The whole operation is costed exactly as ``collbench model check`` costs a row
(:meth:`Model.cost` with ``exact=True``, the same profile, layout, placement and options) and
judged against the same measured time (the row's, recorded in the trace), so the verdict is
``model check``'s. Each step is priced from the schedule's own per-step signatures
(:func:`~collbench.analysis.model.walk.step_signatures`: the slowest rank's α, β and γ/δ
terms), beside the traced step time (max over ranks, median over iterations).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..algorithms import Collective, Layout, Problem, vcounts
from ..analysis.model.cost import Phase
from ..analysis.model.predict import Model
from ..analysis.model.profile import Profile
from ..analysis.model.walk import step_signatures
from .steps import StepStat, operation_us, step_stats


@dataclass(frozen=True)
class StepCompare:
    stat: StepStat
    alpha_us: float | None   # None: the model has no such step (avg's division)
    beta_us: float | None
    local_us: float | None

    @property
    def model_us(self) -> float | None:
        if self.alpha_us is None:
            return None
        return self.alpha_us + (self.beta_us or 0.0) + (self.local_us or 0.0)

    @property
    def ratio(self) -> float | None:
        """measured / modelled."""
        model = self.model_us
        return self.stat.time_us / model if model else None


@dataclass(frozen=True)
class OperationCompare:
    measured_us: float | None    # the row's time (what model check judges)
    traced_us: float
    predicted_us: float | None
    method: str | None
    steps: list[StepCompare]

    @property
    def error(self) -> float | None:
        if self.predicted_us is None or not self.measured_us:
            return None
        return (self.predicted_us - self.measured_us) / self.measured_us

    def verdict(self, tolerance: float) -> str:
        """model check's verdict (collbench/analysis/model/check.py Checked.verdict)."""
        err = self.error
        if err is None:
            return "no model"
        if abs(err) <= tolerance:
            return "ok"
        return "over" if err > 0 else "under"

    def furthest(self, n: int = 3) -> list[StepCompare]:
        """The steps whose measured/modelled ratio is furthest from 1 (either way)."""
        priced = [s for s in self.steps if s.ratio]
        return sorted(priced, key=lambda s: -abs(math.log(s.ratio)))[:n]  # type: ignore[arg-type]


def layout_of(node_of_rank: list[int] | None) -> Layout | None:
    if not node_of_rank or len(set(node_of_rank)) <= 1:
        return None
    groups: dict[int, list[int]] = {}
    for rank, node in enumerate(node_of_rank):
        groups.setdefault(int(node), []).append(rank)
    return Layout(tuple(tuple(groups[k]) for k in sorted(groups)))


def compare(record: dict[str, Any], m: dict[str, Any], profile: Profile) -> OperationCompare:
    collective = Collective.parse(m["collective"])
    layout = layout_of(record.get("node_of_rank"))
    in_place = m["placement"] == "in_place"
    options = m.get("options") or {}
    root = (m.get("root") or 0) if collective.rooted else 0  # as a row records it
    machine = profile.machine(m["dtype"])
    stats = step_stats(record, m)
    priced: dict[int, tuple[float, float, float]] = {}
    predicted = method = None
    try:
        skew = vcounts.from_record(m.get("skew"))  # alltoallv's count matrix; None elsewhere
        problem = Problem(collective, m["nranks"], m["count"], root, layout, skew)
        for index, sigs in step_signatures(m["algorithm"], problem, m["itemsize"], in_place, options):
            priced[index] = Phase(1, sigs).parts(machine)
        result = Model(profile, skew).cost(collective, m["algorithm"], m["nranks"], m["count"], m["itemsize"],
                                     m["dtype"], layout, in_place, options, root, exact=True,
                                     backend=m.get("backend"))
        if result is not None:
            predicted, method = result[0].total * 1e6, result[1]
    except (ValueError, KeyError):
        pass  # as model check: a schedule the model cannot cost is "no model"
    steps = []
    for stat in stats:
        parts = priced.get(stat.index)
        steps.append(StepCompare(stat, *(p * 1e6 for p in parts)) if parts else StepCompare(stat, None, None, None))
    return OperationCompare(m.get("row_time_us"), operation_us(record, m), predicted, method, steps)
