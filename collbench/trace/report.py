"""The text of ``collbench trace show`` and ``trace compare`` (tables, one per measurement)."""

from __future__ import annotations

from typing import Any, Sequence

from tabulate import tabulate

from .compare import compare
from .document import FINALIZE_STEP, label
from .steps import operation_us, step_stats


def _step_name(index: int) -> str:
    return "finalize" if index == FINALIZE_STEP else str(index)


def _bytes(n: int) -> str:
    from ..sizes import format_bytes

    return format_bytes(n) if n else "0"


def _offsets_line(record: dict[str, Any]) -> str:
    bounds = record.get("offset_bound_ns") or []
    worst = max(bounds, default=0) / 1e3
    return (f"# clocks aligned to rank 0 by min-RTT ping-pong: offsets within ±{worst:.3g} us "
            f"(cross-rank 'late' waits are only as good as that)")


def show_text(record: dict[str, Any], measurements: Sequence[dict[str, Any]]) -> str:
    lines = [_offsets_line(record)]
    for m in measurements:
        stats = step_stats(record, m)
        row = m.get("row_time_us")
        lines.append(f"# {label(m)} · {m['nranks']} ranks · {m['executor']} executor · "
                     f"{m['iterations']} traced operations: {operation_us(record, m):.4g} us each (median)"
                     + (f"; the row measured {row:.4g} us" if row else ""))
        body = [[_step_name(s.index), s.ranks, f"{s.time_us:.4g}", f"{s.median_us:.4g}", f"{s.wait_us:.4g}",
                 f"{s.late_us:.4g}" + (f" (rank {s.late_rank})" if s.late_rank is not None else ""),
                 s.critical_rank, _bytes(s.bytes)] for s in stats]
        lines.append(tabulate(body, headers=["step", "ranks", "max us", "median us", "wait us",
                                             "late-partner us", "critical rank", "bytes sent"],
                              tablefmt="simple", disable_numparse=True))
        lines.append(f"# {len(stats)} steps; 'late-partner': the longest a rank waited for a "
                     f"sender still to post (the straggler in brackets); critical: finished last")
    for s in record.get("skipped", []):
        lines.append(f"# not traced: {s}")
    return "\n".join(lines)


def compare_text(record: dict[str, Any], measurements: Sequence[dict[str, Any]], profile: Any,
                 tolerance: float) -> str:
    lines = [f"# trace compare against profile {profile.label}; per step: measured (max over ranks, "
             f"median over iterations) vs the model's slowest rank (α + β + γ/δ)", _offsets_line(record)]
    for m in measurements:
        c = compare(record, m, profile)
        err = c.error
        lines.append(f"# {label(m)} · {m['nranks']} ranks: measured {c.measured_us or 0:.4g} us (row), "
                     f"traced {c.traced_us:.4g} us, predicted "
                     + ("-" if c.predicted_us is None else f"{c.predicted_us:.4g} us")
                     + ("" if err is None else f", error {err:+.0%}") + f" -> {c.verdict(tolerance)}")
        body = []
        for s in c.steps:
            if s.model_us is None:
                body.append([_step_name(s.stat.index), f"{s.stat.time_us:.4g}", "-", "-", "-", "-", "-"])
                continue
            body.append([_step_name(s.stat.index), f"{s.stat.time_us:.4g}", f"{s.model_us:.4g}",
                         f"{s.alpha_us:.3g}", f"{s.beta_us:.3g}", f"{s.local_us:.3g}",
                         f"{s.ratio:.2f}" if s.ratio else "-"])
        lines.append(tabulate(body, headers=["step", "measured us", "model us", "α us", "β us",
                                             "γ/δ us", "measured/model"],
                              tablefmt="simple", disable_numparse=True))
        worst = c.furthest()
        if worst:
            lines.append("# furthest off: " + ", ".join(
                f"step {_step_name(s.stat.index)} ({s.ratio:.2f}x)" for s in worst))
    return "\n".join(lines)
