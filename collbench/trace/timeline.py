"""``collbench plot --kind timeline TRACE -o t.png``: the first traced operation of each
measurement as a static figure (one row per rank, coloured phases, an arrow per message)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..errors import UsageError
from .document import FINALIZE_STEP, aligned, label, local_phase, read

COLOURS = {"post": "#bbbbbb", "wait": "#e8a33d", "reduce": "#3b7dd8", "copy": "#5bb36b", "finalize": "#9467bd"}
MAX_PANELS = 8  # a sweep can trace many rows; the figure shows the first ones


def plot_timeline(paths: Sequence[str], out: Path, plt: Any) -> None:
    if len(paths) != 1:
        raise UsageError("--kind timeline takes one trace file (from `collbench run --trace FILE`)")
    record = read(paths[0])
    measurements = record["measurements"][:MAX_PANELS]
    if not measurements:
        raise UsageError(f"{paths[0]}: no traced measurements to draw")
    fig, axes = plt.subplots(len(measurements), 1, figsize=(10, 0.5 + 0.45 * record["nranks"] * len(measurements) + 0.6),
                             squeeze=False)
    for ax, m in zip((row[0] for row in axes), measurements):
        _panel(ax, record, m)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in COLOURS.values()]
    fig.legend(handles, list(COLOURS), loc="upper right", fontsize=7, ncol=len(COLOURS))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(out, dpi=130)
    plt.close(fig)


def _panel(ax: Any, record: dict[str, Any], m: dict[str, Any]) -> None:
    desc = {entry["rank"]: entry["steps"] for entry in m["ranks"]}
    first = {rank: stamps for rank, i, stamps in aligned(record, m) if i == 0 and stamps}
    t0 = min(s[0][0] for s in first.values())
    us = lambda ns: (ns - t0) / 1e3  # noqa: E731
    for rank, stamps in first.items():
        for step, (a, b, c, d) in zip(desc[rank], stamps):
            bars = [("post", a, b), ("wait", b, c), (local_phase(step), c, d)]
            for name, start, end in bars:
                if end > start:
                    ax.broken_barh([(us(start), us(end) - us(start))], (rank - 0.35, 0.7), color=COLOURS[name])
            if step["index"] != FINALIZE_STEP:
                ax.text(us(a), rank + 0.38, str(step["index"]), fontsize=6, va="bottom")
            for peer, _ in step["sends"]:
                theirs = next((s for st, s in zip(desc.get(peer, []), first.get(peer, []))
                               if st["index"] == step["index"]), None)
                if theirs is not None:
                    ax.annotate("", xy=(us(theirs[2]), peer), xytext=(us(a), rank),
                                arrowprops={"arrowstyle": "->", "lw": 0.5, "alpha": 0.5})
    ax.set_yticks(sorted(first))
    ax.set_yticklabels([f"rank {r}" for r in sorted(first)], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("µs (rank 0's clock; step numbers above the bars)")
    ax.set_title(f"{label(m)} · {m['nranks']} ranks · {m['executor']} executor · first traced operation",
                 fontsize=9)
    ax.grid(True, axis="x", alpha=0.3)
