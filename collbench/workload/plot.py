"""``workload predict --plot FILE``: communication time per step against node count, one line
per plan (matplotlib, imported only here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..errors import UsageError
from .predict import Point

FORMATS = (".png", ".svg", ".pdf")


def plot_predictions(points: Sequence[Point], out: Path, title: str) -> None:
    if out.suffix.lower() not in FORMATS:
        raise UsageError(f"--plot {out}: give a .png, .svg or .pdf file")
    from ..analysis.plot import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.8))
    by_plan: dict[str, list[Point]] = {}
    for p in points:
        by_plan.setdefault(p.plan.label, []).append(p)
    nodes = sorted({p.nodes for p in points})
    compute: dict[int, float] = {}
    for label, plan_points in by_plan.items():
        ok = [p for p in plan_points if p.cost is not None]
        if not ok:
            continue
        ax.plot([p.nodes for p in ok], [p.cost.seconds * 1e3 for p in ok], marker="o",  # type: ignore[union-attr]
                label=label)
        for p in ok:
            if p.compute is not None:
                compute.setdefault(p.nodes, p.compute.seconds * 1e3)
    if compute:
        xs = sorted(compute)
        ax.plot(xs, [compute[x] for x in xs], color="gray", linestyle="--", label="compute (estimate)")
    _axes(ax, nodes)
    ax.set_xlabel("nodes")
    ax.set_ylabel("communication per step (ms)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=130)
    plt.close(fig)


def _axes(ax: Any, nodes: list[int]) -> None:
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    if len(nodes) > 1 and nodes[-1] / max(1, nodes[0]) >= 8:
        ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(FixedLocator(nodes))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


__all__ = ["plot_predictions"]
