"""``workload check RESULTS --profile P``: a measured step against its prediction.

Every row is costed by the α-β-γ model for what was actually run -- its algorithm, group size,
the group's node layout (from the file's ``node_of_rank``), dtype, placement and bytes -- with
NIC sharing between concurrent groups as in ``predict``. The predicted step is Σ calls × time on
the busiest pipeline stage, compared with (a) the same sum over measured rows and (b) the step
measured end to end. The verdict uses (b) when the file has it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tabulate import tabulate

from ..analysis.model.profile import Profile
from ..errors import UsageError
from .cost import Coster
from .execute import step_sums
from .grid import Group
from .step import CommOp


def read_workload(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any] | None]:
    """(metadata, row records with their workload fields, workload_step record)."""
    from ..results.files import read_results

    results = read_results(path)                    # validates the file and its schema
    meta = results.metadata
    if "workload" not in meta:
        raise UsageError(f"{path} is not a `collbench workload run` results file (no workload metadata)")
    rows, step = [], None
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("type") == "row" and "workload" in record:
            rows.append(record)
        elif record.get("type") == "workload_step":
            step = record
    if not rows:
        raise UsageError(f"{path}: no measured rows")
    return meta, rows, step


@dataclass(frozen=True)
class CheckedRow:
    record: dict[str, Any]
    predicted_us: float | None       # None: the model has nothing to say (native, ...)

    @property
    def error(self) -> float | None:
        measured = self.record["time_us"]
        if self.predicted_us is None or measured <= 0:
            return None
        return (self.predicted_us - measured) / measured


def _group(meta: dict[str, Any], rec: dict[str, Any]) -> tuple[Group, int]:
    """The measured group on the job's real nodes, and how many ranks of a node cross nodes at
    once in groups of that kind (they share its NICs)."""
    node_of = meta["node_of_rank"]
    ranks = tuple(rec["workload"]["group_ranks"])
    rpn = max(meta["ranks_per_node"]) if meta.get("ranks_per_node") else 1
    group = Group(rec["workload"]["group"], ranks, rpn, tuple(node_of[r] for r in ranks))
    sharers: dict[int, int] = {}
    for g in meta["workload"]["groups"].get(rec["workload"]["group"], []):
        if len({node_of[r] for r in g}) > 1:
            for r in g:
                sharers[node_of[r]] = sharers.get(node_of[r], 0) + 1
    return group, max(sharers.values(), default=0)


def check(path: Path, profile: Profile) -> tuple[list[CheckedRow], dict[str, Any], dict[str, Any], dict[str, Any] | None]:
    meta, rows, step = read_workload(path)
    dtype = meta["workload"]["dtype"]
    coster = Coster(profile, None, dtype)
    checked = []
    for rec in rows:
        w = rec["workload"]
        group, sharers = _group(meta, rec)
        collective = "alltoall" if w["collective"] == "alltoall" else rec["collective"]
        op = CommOp(w["kind"], w["group"], collective, rec["bytes"], 1, w["phase"], w["what"], "",
                    root=rec.get("root") or 0, skew=w.get("skew", 1.0))
        try:
            cost = coster.cost(op, group, sharers, in_place=rec["placement"] == "in_place",
                               algorithm=rec["algorithm"], exact=True)
            checked.append(CheckedRow(rec, cost.seconds * 1e6))
        except UsageError:
            checked.append(CheckedRow(rec, None))
    pp = int(meta["workload"]["parallel"]["pp"])
    modelled = [c for c in checked if c.predicted_us is not None]
    predicted = step_sums([{**c.record, "time_us": c.predicted_us} for c in modelled], pp)
    measured = step_sums([c.record for c in modelled], pp)
    return checked, predicted, measured, step


def format_check(path: Path, profile: Profile, tolerance: float) -> tuple[str, bool]:
    checked, predicted, measured, step = check(path, profile)
    meta = read_workload(path)[0]
    w = meta["workload"]
    lines = [f"# {path}: {w['model']} plan {w['plan']} on {meta['nranks']} ranks ({meta['nnodes']} node(s)), "
             f"{w['dtype']}, bytes scaled by {w['scale']:g}",
             f"# profile {profile.label}; tolerance ±{tolerance:.0%}"]
    body = []
    for c in checked:
        rec, wl = c.record, c.record["workload"]
        calls = max(wl["calls_by_stage"].values(), default=0)
        body.append([wl["kind"], wl["group"], wl["collective"], str(rec["bytes"]), rec["algorithm"], str(calls),
                     f"{rec['time_us']:.1f}", "no model" if c.predicted_us is None else f"{c.predicted_us:.1f}",
                     "-" if c.error is None else f"{c.error:+.0%}"])
    lines.append(tabulate(body, headers=["kind", "group", "collective", "bytes", "algorithm", "calls",
                                         "measured us", "predicted us", "error"],
                          tablefmt="github", disable_numparse=True))
    pred = predicted["us"]
    lines.append(f"\nper step (busiest stage): predicted {pred / 1e3:.3f} ms; sum of measured rows "
                 f"{measured['us'] / 1e3:.3f} ms ({_err(pred, measured['us'])})")
    reference = measured["us"]
    what = "the sum of measured rows"
    missing = [c for c in checked if c.predicted_us is None]
    if missing:
        lines.append(f"{len(missing)} row(s) have no model (e.g. {missing[0].record['algorithm']}): left out of "
                     "both sums, and no end-to-end verdict")
    elif step and "measured_step" in step:
        m = step["measured_step"]
        # the median: a step that another process on the machine interrupted is an outlier
        reference = m.get("median_us", m["mean_us"])
        what = "the median step measured end to end"
        lines.append(f"measured end to end: median {reference / 1e3:.3f} ms of {m['repeats']} (mean "
                     f"{m['mean_us'] / 1e3:.3f} ms, min {m['min_us'] / 1e3:.3f} ms; {_err(pred, reference)})")
    ok = reference > 0 and abs(pred - reference) / reference <= tolerance
    lines.append(f"verdict: {'ok' if ok else 'outside'} ±{tolerance:.0%} against {what}")
    return "\n".join(lines), ok


def _err(pred: float, measured: float) -> str:
    if measured <= 0:
        return "no time measured"
    return f"prediction {(pred - measured) / measured:+.1%}"


__all__ = ["check", "format_check", "read_workload"]
