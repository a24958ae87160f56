"""Text for people: ``workload list``, ``show``'s table of a step's collectives and
``predict``'s table per plan (markdown), plus JSON for scripts."""

from __future__ import annotations

import json
import re
from typing import Any, Sequence

from tabulate import tabulate

from .cost import describe_profile
from .grid import Grid
from .model import ModelSpec
from .predict import Point
from .step import CommOp, Step, volume


def fmt_bytes(n: float) -> str:
    """Three significant digits in binary units (sizes on the wire)."""
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor:
            return f"{n / factor:.3g} {unit}"
    return f"{n:.0f} B"


def fmt_count(n: float) -> str:
    for unit, factor in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= factor:
            return f"{n / factor:.3g}{unit}"
    return f"{n:.0f}"


def fmt_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.3g} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} us"


# -- list ------------------------------------------------------------------------------------------


def format_list(models: Sequence[ModelSpec]) -> str:
    rows = []
    for m in models:
        t = m.transformer
        shape = (f"{t.layers} layers, h {t.hidden}, {t.heads} heads"
                 + (f" ({t.kv_heads} KV)" if t.kv_heads != t.heads else "")
                 + f", ffn {t.ffn}" + (f", vocab {t.vocab}" if t.vocab else "") + f", seq {t.seq_len}"
                 + (f", {t.experts} experts top-{t.top_k}" if t.moe else "")) if t else f"{len(m.layers)} layers"
        active = f" ({fmt_count(m.active_params)} active)" if m.active_params != m.params else ""
        published = (f"{fmt_count(m.published_params)}" if m.published_params else "-")
        rows.append([m.name, f"{fmt_count(m.params)}{active}", published, m.kind, shape,
                     m.path or "shipped"])
    return tabulate(rows, headers=["model", "parameters", "published", "kind", "shape", "file"],
                    tablefmt="github", disable_numparse=True)


# -- show ------------------------------------------------------------------------------------------


def _group_sizes(step: Step, grid: Grid) -> dict[str, Any]:
    return {op.group: grid.representative(op.group, op.stages[0] if op.stages else 0) for op in step.ops}


def _rows(step: Step, grid: Grid, detail: bool) -> list[list[str]]:
    groups = _group_sizes(step, grid)
    pp = step.par.pp > 1
    merged: dict[tuple, list[CommOp]] = {}
    for op in step.ops:
        key = (id(op),) if detail else (op.phase, op.kind, op.collective, op.group, op.section, op.stages)
        merged.setdefault(key, []).append(op)
    rows = []
    for ops in merged.values():
        op = ops[0]
        sizes = sorted({o.nbytes for o in ops})
        size = fmt_bytes(sizes[0]) if len(sizes) == 1 else f"{fmt_bytes(sizes[0])} .. {fmt_bytes(sizes[-1])}"
        calls = sum(o.calls for o in ops)
        g = groups[op.group]
        vol = sum(volume(o, g.size)[0] * o.calls for o in ops)
        what = op.what if detail or len(ops) == 1 else f"{op.section} ({len(ops)} ops)"
        row = [op.phase, op.kind, op.collective, f"{op.group} ({g.size})", what, size, str(calls),
               fmt_bytes(vol)]
        if pp:
            row.insert(4, ",".join(map(str, op.stages)) if op.stages else "all")
        rows.append(row)
    return rows


def rank_totals(step: Step, grid: Grid, stage: int) -> dict[str, tuple[float, float]]:
    """(paper volume, ring wire bytes) one rank of ``stage`` sends per step, by kind."""
    groups = _group_sizes(step, grid)
    out: dict[str, tuple[float, float]] = {}
    for op in step.stage_ops(stage):
        size = groups[op.group].size
        v, w = volume(op, size)
        if op.collective == "p2p":          # only the sender sends
            me = op.stages.index(stage) if op.stages else 0
            v = w = v if me == op.root else 0.0
        a, b = out.get(op.kind, (0.0, 0.0))
        out[op.kind] = (a + v * op.calls, b + w * op.calls)
    return out


def param_bytes(step: Step, stage: int) -> int:
    from .shard import rank_tensors

    return sum(t.numel for t in rank_tensors(step.model, step.par, stage)) * step.itemsize


def format_show(step: Step, detail: bool = False) -> str:
    par, b, m = step.par, step.batch, step.model
    grid = Grid(par)
    nodes = -(-par.world // par.ranks_per_node)
    lines = [f"# {m.name}: {fmt_count(m.params)} parameters ({m.params:,}"
             + (f"; {fmt_count(m.active_params)} active per token" if m.active_params != m.params else "")
             + f"), {len(m.layers)} layers",
             f"# plan {par.label} on {par.world} ranks ({nodes} node{'s' if nodes != 1 else ''} x "
             f"{par.ranks_per_node}), rank order {','.join(par.order)} (fastest first), {step.dtype}",
             f"# batch: {b.micro_batch} sample(s)"
             + (f" x {b.seq_len} tokens" if m.transformer is not None else "") + f" per micro-batch, {b.micro_batches} "
             f"micro-batch(es) per step" + (f"; buckets {fmt_bytes(step.bucket_cap)} (first "
                                           f"{fmt_bytes(step.first_bucket)})" if par.strategy != "fsdp" else "")]
    if step.scale != 1:
        lines.append(f"# byte counts scaled by {step.scale:g}")
    kinds = sorted({op.group for op in step.ops})
    if kinds:
        lines.append("# groups: " + "; ".join(
            f"{k}: {grid.representative(k, _first_stage(step, k)).describe()}" for k in kinds))
    lines.append("")
    headers = ["phase", "kind", "collective", "group (ranks)", "what", "bytes per call", "calls/step",
               "volume/rank"]
    if par.pp > 1:
        headers.insert(4, "stages")
    lines.append(tabulate(_rows(step, grid, detail), headers=headers, tablefmt="github", disable_numparse=True)
                 if step.ops else "(no communication: one rank)")
    lines.append("")
    lines.append("# per rank and step: volume = allreduce 2n, allgather/reduce-scatter/alltoall n, "
                 "point-to-point n sent (Rajbhandari et al. 2020); wire = ring algorithms' (p-1)/p share")
    for stage in range(par.pp):
        psi = param_bytes(step, stage)
        totals = rank_totals(step, grid, stage)
        where = f"stage {stage}: " if par.pp > 1 else ""
        parts = [f"{k} {fmt_bytes(v)} (wire {fmt_bytes(w)}{f'; {v / psi:.3g} Ψ' if k == 'dp' and psi else ''})"
                 for k, (v, w) in sorted(totals.items())]
        total_v = sum(v for v, _ in totals.values())
        lines.append(f"# {where}Ψ = {fmt_bytes(psi)} of parameters per rank; sent per step: "
                     + ("; ".join(parts) if parts else "nothing") + f"; total {fmt_bytes(total_v)}")
    return "\n".join(lines)


def _first_stage(step: Step, group: str) -> int:
    for op in step.ops:
        if op.group == group:
            return op.stages[0] if op.stages else 0
    return 0


def show_json(step: Step) -> str:
    grid = Grid(step.par)
    groups = _group_sizes(step, grid)
    record = {"model": step.model.name, "params": step.model.params, "plan": step.par.label,
              "ranks": step.par.world, "ranks_per_node": step.par.ranks_per_node, "dtype": step.dtype,
              "micro_batch": step.batch.micro_batch, "seq_len": step.batch.seq_len,
              "micro_batches": step.batch.micro_batches,
              "ops": [{"kind": o.kind, "group": o.group, "group_size": groups[o.group].size,
                       "collective": o.collective, "bytes": o.nbytes, "calls": o.calls, "phase": o.phase,
                       "what": o.what, "stages": list(o.stages) if o.stages else None, "ready": o.ready}
                      for o in step.ops],
              "per_rank": {str(s): {"param_bytes": param_bytes(step, s),
                                    "volume": {k: v for k, (v, _) in rank_totals(step, grid, s).items()},
                                    "wire": {k: w for k, (_, w) in rank_totals(step, grid, s).items()}}
                           for s in range(step.par.pp)}}
    return json.dumps(record, indent=1)


# -- predict ---------------------------------------------------------------------------------------


def format_predict(points: Sequence[Point], model: ModelSpec, profile: Any, fmt: str = "markdown") -> str:
    if fmt == "json":
        return predict_json(points, model, profile)
    lines = [f"# {model.name} ({fmt_count(model.params)} parameters): communication per training step",
             f"# {describe_profile(profile)}"]
    steps = [p.cost.step for p in points if p.cost]
    micro_sizes = {st.batch.micro_batch for st in steps}
    vary = len(micro_sizes) > 1
    if steps:
        b = steps[0].batch
        what = ("micro-batch per replica: see mbs" if vary
                else f"{b.micro_batch} sample(s) per micro-batch per replica")
        tokens = f"{b.seq_len} tokens per sample, " if model.transformer is not None else ""
        lines.append(f"# {steps[0].dtype}; {tokens}{what}; times: sum of the step's "
                     "collectives on the busiest pipeline stage, none overlapped")
    compute = next((p.compute for p in points if p.compute), None)
    if compute is not None:
        lines.append(f"# {compute.describe()}; 'grad sync hidden': the share of the gradient buckets' "
                     "reduction that can run during backward (2/3 of compute)")
    by_plan: dict[str, list[Point]] = {}
    for p in points:
        by_plan.setdefault(p.plan.label, []).append(p)
    for label, plan_points in by_plan.items():
        lines.append(f"\n## {label}\n")
        kinds = [k for k in ("dp", "tp", "pp", "ep")
                 if any(p.cost and k in p.cost.by_kind() for p in plan_points)]
        headers = ["nodes", "ranks", "plan", *(["mbs"] if vary else []), "comm/step", *kinds, "bound by"]
        if compute is not None:
            headers += ["compute/step", "comm/compute", "grad sync hidden"]
        rows = []
        notes: dict[str, int] = {}
        for p in plan_points:
            if p.cost is None:
                # one note per reason, whatever the node count (drop the resolved plan's label)
                reason = re.sub(r"^plan \S+: ", "", p.error or "")
                number = notes.setdefault(reason, len(notes) + 1)
                rows.append([str(p.nodes), str(p.ranks), "impossible", *(["-"] if vary else []), "-",
                             *["-"] * len(kinds),
                             f"note {number}"] + (["-"] * 3 if compute is not None else []))
                continue
            by_kind = p.cost.by_kind()
            row = [str(p.nodes), str(p.ranks), p.label,
                   *([str(p.cost.step.batch.micro_batch)] if vary else []), fmt_time(p.cost.seconds),
                   *[fmt_time(by_kind[k]) if k in by_kind else "-" for k in kinds], p.cost.bound()]
            if compute is not None:
                if p.compute is not None and p.overlap is not None:
                    row += [fmt_time(p.compute.seconds), f"{p.cost.seconds / p.compute.seconds:.2f}",
                            f"{p.overlap.hidden_fraction:.0%}" if p.overlap.sync_seconds else "-"]
                else:
                    row += ["-", "-", "-"]
            rows.append(row)
        lines.append(tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True))
        for error, number in notes.items():
            lines.append(f"\nnote {number}: {error}")
    return "\n".join(lines)


def predict_json(points: Sequence[Point], model: ModelSpec, profile: Any) -> str:
    out = []
    for p in points:
        record: dict[str, Any] = {"model": model.name, "plan": p.plan.label, "nodes": p.nodes,
                                  "ranks": p.ranks, "profile": profile.name}
        if p.cost is None:
            record["error"] = p.error
        else:
            record.update({"resolved": p.label, "comm_s": p.cost.seconds, "by_kind_s": p.cost.by_kind(),
                           "bound": p.cost.bound(), "busiest_stage": p.cost.busiest.stage})
            if p.compute is not None and p.overlap is not None:
                record.update({"compute_s": p.compute.seconds, "mfu": p.compute.mfu,
                               "peak_tflops": p.compute.peak_tflops,
                               "grad_sync_s": p.overlap.sync_seconds,
                               "grad_sync_exposed_s": p.overlap.exposed_seconds})
        out.append(record)
    return json.dumps(out, indent=1)


__all__ = ["format_list", "format_show", "show_json", "format_predict", "predict_json", "fmt_bytes",
           "fmt_time", "rank_totals", "param_bytes"]
