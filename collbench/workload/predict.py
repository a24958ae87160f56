"""``workload predict``: each plan at each node count -- communication per step by kind, the
busiest group and what bounds it, and (with ``--mfu``) compute, comm/compute and overlap."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..analysis.model.profile import Profile
from ..errors import UsageError
from .compute import Compute, Overlap, estimate, overlap
from .cost import Coster, StepCost, cost_step
from .model import ModelSpec
from .options import Options
from .plan import Plan


@dataclass
class Point:
    """One plan at one node count (``error``: why it is impossible there)."""

    plan: Plan
    nodes: int
    ranks: int
    error: str | None = None
    cost: StepCost | None = None
    compute: Compute | None = None
    overlap: Overlap | None = None

    @property
    def label(self) -> str:
        return self.cost.step.par.label if self.cost else self.plan.label


def predict(model: ModelSpec, plans: Sequence[Plan], node_counts: Sequence[int], ranks_per_node: int,
            profile: Profile, options: Options, algos: dict[str, str],
            mfu: float | None = None, peak_tflops: float | None = None) -> list[Point]:
    coster = Coster(profile, algos, options.dtype)
    points = []
    for plan in plans:
        for nodes in node_counts:
            ranks = nodes * ranks_per_node
            point = Point(plan, nodes, ranks)
            try:
                step = options.step(model, plan, ranks, ranks_per_node)
            except UsageError as exc:
                point.error = str(exc)
                points.append(point)
                continue
            point.cost = cost_step(step, coster)
            if mfu is not None and peak_tflops is not None:
                point.compute = estimate(model, step.par, step.batch, peak_tflops, mfu)
                point.overlap = overlap(point.cost.busiest, point.compute, step.batch.micro_batches)
            points.append(point)
    return points


__all__ = ["Point", "predict"]
