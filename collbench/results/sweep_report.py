"""The node-count table of a Slurm sweep: busbw per size per node count, per run/collective/algorithm.

A sweep directory (``results/<cluster>/<jobid>/``, written by the scripts of ``collbench slurm``)
holds ``sweep.json`` (the plan), ``steps.ndjson`` (one status record per node count × run) and
``N<k>-<run>.jsonl`` results files. Node counts whose step failed, timed out, was skipped or never
ran are marked in the table instead of silently missing; values from a step that did not finish
cleanly are starred. Formatting functions return strings; printing happens in the CLI.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from tabulate import tabulate

from ..errors import UsageError
from .files import ResultsFile, Row, read_results

PLAN_NAME = "sweep.json"
STEPS_NAME = "steps.ndjson"
PLACEMENT_LABEL = {"out_of_place": "out-of-place", "in_place": "in-place"}


def is_sweep_dir(path: str | Path) -> bool:
    """Whether ``path`` is a sweep directory (it holds the sweep's plan file)."""
    return Path(path).is_dir() and (Path(path) / PLAN_NAME).is_file()


@dataclass
class Cell:
    """One (run, node count): what happened, and the results file if there is one."""

    nodes: int
    status: str                       # ok, failed, timeout, skipped, incomplete, not run, wrong shape, …
    detail: str = ""
    results: ResultsFile | None = None

    @property
    def clean(self) -> bool:
        return self.status == "ok"


@dataclass
class Sweep:
    """A parsed sweep directory."""

    path: Path
    plan: dict[str, Any]
    cells: dict[tuple[str, int], Cell]
    events: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)

    @property
    def node_counts(self) -> list[int]:
        return sorted({int(k) for k in self.plan.get("node_counts", [])})

    @property
    def runs(self) -> list[dict[str, Any]]:
        return list(self.plan.get("runs", []))

    @property
    def ranks_per_node(self) -> int | None:
        value = self.plan.get("ranks_per_node")
        return int(value) if isinstance(value, int) or (isinstance(value, str) and value.isdigit()) else None

    def event(self, kind: str) -> dict[str, Any] | None:
        found = [e for e in self.events if e.get("event") == kind]
        return found[-1] if found else None


def _read_events(path: Path, warnings: list[str]) -> list[dict[str, Any]]:
    if not path.is_file():
        warnings.append(f"{path}: missing (the job has not started its steps)")
        return []
    events = []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            warnings.append(f"{path}:{number}: not valid JSON; ignored")
            continue
        if isinstance(record, dict):
            events.append(record)
    return events


def load_sweep(path: str | Path) -> Sweep:
    """Read a sweep directory: plan, step records and every results file in it.

    Raises:
        UsageError: not a sweep directory, or its plan is unreadable.
    """
    directory = Path(path)
    plan_path = directory / PLAN_NAME
    try:
        plan = json.loads(plan_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{directory} is not a sweep directory (no {PLAN_NAME})") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read {plan_path}: {exc}") from None
    if not isinstance(plan, dict) or plan.get("type") != "collbench-sweep":
        raise UsageError(f"{plan_path}: not a collbench sweep plan")
    if plan.get("schema", 0) > 1:
        raise UsageError(f"{plan_path}: sweep schema {plan.get('schema')} is newer than this collbench "
                         "understands (1); upgrade collbench")
    warnings: list[str] = []
    events = _read_events(directory / STEPS_NAME, warnings)
    sweep = Sweep(directory, plan, {}, events, warnings)
    finished = sweep.event("end") is not None
    steps = {(str(e.get("run")), int(e.get("nodes", 0))): e for e in events if e.get("event") == "step"}
    rpn = sweep.ranks_per_node
    for run in sweep.runs:
        name = str(run.get("name"))
        for k in sweep.node_counts:
            step = steps.get((name, k))
            file = directory / f"N{k}-{name}.jsonl"
            results = None
            if file.is_file():
                try:
                    results = read_results(file)
                except UsageError as exc:
                    warnings.append(str(exc))
            if step is None:
                if results is not None:
                    cell = Cell(k, "incomplete", "the job ended during this step", results)
                else:
                    cell = Cell(k, "missing" if finished else "not run",
                                "the job ended before this step" if not finished else "no record")
            else:
                status = str(step.get("status", "?"))
                detail = ""
                if status in ("failed", "timeout"):
                    detail = f"exit {step.get('rc')} after {step.get('seconds', '?')} s; log {step.get('log', '?')}"
                elif status == "skipped":
                    detail = str(step.get("reason", ""))
                cell = Cell(k, status, detail, results)
                if status == "ok" and results is None:
                    cell = Cell(k, "failed", "no results file")
                elif status == "ok" and results is not None and not results.complete:
                    cell = Cell(k, "incomplete", "results file has no summary", results)
            if cell.results is not None and cell.status == "ok":
                meta = cell.results.metadata
                nnodes, nranks = meta.get("nnodes"), meta.get("nranks")
                if nnodes != k or (rpn and nranks != k * rpn):
                    cell = Cell(k, "wrong shape", f"{nranks} ranks on {nnodes} node(s), expected "
                                f"{k * rpn if rpn else '?'} on {k}", cell.results)
            sweep.cells[(name, k)] = cell
    return sweep


# ------------------------------------------------------------------------------------ tables


@dataclass(frozen=True)
class GroupKey:
    run: str
    backend: str
    collective: str
    algorithm: str
    dtype: str
    op: str | None
    placement: str
    options: str


def _options_text(row: Row) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((row.options or {}).items()))


def groups(sweep: Sweep) -> dict[GroupKey, dict[int, dict[int, Row]]]:
    """(run, backend, collective, algorithm, dtype, op, placement, options) → size → nodes → row."""
    table: dict[GroupKey, dict[int, dict[int, Row]]] = {}
    for (run, k), cell in sorted(sweep.cells.items(), key=lambda item: (item[0][1], item[0][0])):
        if cell.results is None:
            continue
        for row in cell.results.rows:
            key = GroupKey(run, row.backend, row.collective, row.algorithm, row.dtype, row.op,
                           row.placement, _options_text(row))
            table.setdefault(key, {}).setdefault(row.bytes, {})[k] = row
    order = {str(r.get("name")): i for i, r in enumerate(sweep.runs)}
    return dict(sorted(table.items(), key=lambda item: (
        order.get(item[0].run, 99), item[0].collective, item[0].algorithm != "native",
        item[0].algorithm, item[0].dtype, item[0].op or "", item[0].placement, item[0].options)))


def _run_args(sweep: Sweep, name: str) -> str:
    for run in sweep.runs:
        if run.get("name") == name:
            return " ".join(str(a) for a in run.get("args", []))
    return ""


def _cell_text(sweep: Sweep, run: str, k: int, row: Row | None) -> str:
    cell = sweep.cells.get((run, k))
    if row is None:
        if cell is None or cell.clean:
            return "-"
        return cell.status
    text = f"{row.busbw_gbps:.2f}"
    if row.wrong:
        text += "!"
    if cell is not None and not cell.clean:
        text += "*"
    return text


def _title(sweep: Sweep, key: GroupKey) -> str:
    parts = [key.collective, f"algorithm {key.algorithm}" + (f" ({key.options})" if key.options else ""),
             f"run {key.run} [{_run_args(sweep, key.run)}]", f"{key.dtype} {key.op or ''}".strip(),
             PLACEMENT_LABEL.get(key.placement, key.placement)]
    return " · ".join(parts)


def _nranks(sweep: Sweep, run: str, k: int) -> str:
    cell = sweep.cells.get((run, k))
    if cell is not None and cell.results is not None and cell.results.metadata.get("nranks"):
        return str(cell.results.metadata["nranks"])
    rpn = sweep.ranks_per_node
    return str(k * rpn) if rpn else "?"


def _header_lines(sweep: Sweep) -> list[str]:
    plan = sweep.plan
    nodes = plan.get("nodes") or []
    lines = [f"# sweep {sweep.path} · cluster {plan.get('cluster', '?')} · job {plan.get('job_id', '?')} · "
             f"{len(nodes)} node(s) ({','.join(nodes)}) · {plan.get('ranks_per_node', '?')} ranks/node · "
             f"started {plan.get('start_time', '?')}",
             f"# node counts: {' '.join(str(k) for k in sweep.node_counts)} · launcher "
             f"{plan.get('launcher', '?')}" + (f" --mpi={plan['srun_mpi']}" if plan.get("srun_mpi") else "")
             + f" · sizes {' '.join(plan.get('sizes', []))}"
             + (f" · args {' '.join(plan.get('args', []))}" if plan.get("args") else "")]
    for run in sweep.runs:
        lines.append(f"# run {run.get('name')}: collbench run {' '.join(plan.get('collectives', []))} "
                     f"{' '.join(str(a) for a in run.get('args', []))}")
    probe = sweep.event("nccl_probe")
    if probe is not None:
        lines.append(f"# NCCL probe: {probe.get('verdict')}")
    end = sweep.event("end")
    if end is None:
        lines.append("# the job has not finished (or was killed): steps without a record are marked 'not run'")
    return lines


def _status_lines(sweep: Sweep) -> list[str]:
    lines = []
    for run in sweep.runs:
        name = str(run.get("name"))
        parts = []
        for k in sweep.node_counts:
            cell = sweep.cells[(name, k)]
            text = f"N={k} {cell.status}"
            if cell.detail and not cell.clean:
                text += f" ({cell.detail})"
            parts.append(text)
        lines.append(f"# run {name}: " + "; ".join(parts))
        for k in sweep.node_counts:
            cell = sweep.cells[(name, k)]
            if cell.results is not None and cell.results.summary:
                for line in cell.results.summary.get("skipped") or []:
                    lines.append(f"#   N={k} skipped {line}")
    return lines


def _legend(used_star: bool, used_bang: bool) -> list[str]:
    lines = []
    if used_star:
        lines.append("# * from a step that did not finish cleanly (see the run status above)")
    if used_bang:
        lines.append("# ! validation found wrong elements at this size")
    return lines


def _table_rows(sweep: Sweep, key: GroupKey, sizes: dict[int, dict[int, Row]]) -> list[list[str]]:
    rows = []
    for nbytes in sorted(sizes):
        rows.append([str(nbytes)] + [_cell_text(sweep, key.run, k, sizes[nbytes].get(k))
                                     for k in sweep.node_counts])
    return rows


def _markdown_line(line: str) -> str:
    """A ``# …`` comment line of the text report as Markdown (status lines become a list)."""
    text = line.removeprefix("#")
    if text.startswith("   "):
        return "  - " + text.strip()
    if text.strip().startswith("run ") and ": N=" in text:
        return "- " + text.strip()
    return text.strip() + "  "


def render_text(sweep: Sweep, markdown: bool = False) -> str:
    """The node-count tables as text (nccl-tests-like, right-aligned) or Markdown."""
    out = _header_lines(sweep)
    if markdown:
        out = [f"## collbench sweep {sweep.plan.get('cluster', '?')} job {sweep.plan.get('job_id', '?')}", ""] + \
            [_markdown_line(line) for line in out]
    table = groups(sweep)
    star = bang = False
    if not table:
        out.append("" if markdown else "#")
        out.append("(no results in this sweep)" if markdown else "# (no results in this sweep)")
    for key, sizes in table.items():
        body = _table_rows(sweep, key, sizes)
        star = star or any(c.endswith("*") for r in body for c in r)
        bang = bang or any("!" in c for r in body for c in r)
        if markdown:
            out += ["", f"### {_title(sweep, key)}", "",
                    "busbw (GB/s) by node count", ""]
            headers = ["size (B)"] + [f"N={k} ({_nranks(sweep, key.run, k)} ranks)" for k in sweep.node_counts]
            out.append(tabulate(body, headers=headers, tablefmt="github", disable_numparse=True,
                                stralign="right"))
        else:
            out += ["#", f"# {_title(sweep, key)}", "#   busbw (GB/s) by node count"]
            top = ["size"] + [f"N={k}" for k in sweep.node_counts]
            sub = ["(B)"] + [f"{_nranks(sweep, key.run, k)} ranks" for k in sweep.node_counts]
            widths = [max(12, *(len(r[0]) for r in body))] + [
                max(9, len(top[i]), len(sub[i]), *(len(r[i]) for r in body)) for i in range(1, len(top))]
            out.append("#" + "".join(f"{h:>{w + 2}}" for h, w in zip(top, widths))[1:])
            out.append("#" + "".join(f"{h:>{w + 2}}" for h, w in zip(sub, widths))[1:])
            out += ["".join(f"{c:>{w + 2}}" for c, w in zip(r, widths)) for r in body]
    status = _status_lines(sweep) + _legend(star, bang) + [f"# warning: {w}" for w in sweep.warnings]
    if markdown:
        out += [""] + [_markdown_line(line) for line in status]
    else:
        out += ["#"] + status
    return "\n".join(out) + "\n"


RECORD_FIELDS = ("cluster", "job_id", "run", "backend", "collective", "algorithm", "options", "dtype",
                 "op", "placement", "bytes", "nodes", "nranks", "status", "time_us", "algbw_gbps",
                 "busbw_gbps", "wrong")


def records(sweep: Sweep) -> list[dict[str, Any]]:
    """Tidy records: one per group × size × node count, with the node count's status
    (empty numbers where that node count has no result)."""
    out = []
    for key, sizes in groups(sweep).items():
        for nbytes in sorted(sizes):
            for k in sweep.node_counts:
                row = sizes[nbytes].get(k)
                cell = sweep.cells.get((key.run, k))
                status = cell.status if cell else "?"
                if row is None and status == "ok":
                    status = "not measured"
                out.append({
                    "cluster": sweep.plan.get("cluster"), "job_id": sweep.plan.get("job_id"),
                    "run": key.run, "backend": key.backend, "collective": key.collective,
                    "algorithm": key.algorithm, "options": key.options, "dtype": key.dtype, "op": key.op,
                    "placement": key.placement, "bytes": nbytes, "nodes": k,
                    "nranks": row.nranks if row else None, "status": status,
                    "time_us": row.time_us if row else None, "algbw_gbps": row.algbw_gbps if row else None,
                    "busbw_gbps": row.busbw_gbps if row else None, "wrong": row.wrong if row else None})
    measured = {record["run"] for record in out}
    for run in sweep.runs:  # a run with no result at any node count still shows its statuses
        name = str(run.get("name"))
        if name not in measured:
            for k in sweep.node_counts:
                cell = sweep.cells.get((name, k))
                out.append({**dict.fromkeys(RECORD_FIELDS), "cluster": sweep.plan.get("cluster"),
                            "job_id": sweep.plan.get("job_id"), "run": name, "nodes": k,
                            "status": cell.status if cell else "?"})
    return out


def sweep_report(path: str | Path, fmt: str = "text") -> str:
    """The node-count report of one sweep directory in ``fmt`` (text, markdown, csv, json)."""
    sweep = load_sweep(path)
    if fmt == "text":
        return render_text(sweep)
    if fmt == "markdown":
        return render_text(sweep, markdown=True)
    data = records(sweep)
    if fmt == "json":
        return json.dumps(data, indent=1) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(RECORD_FIELDS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(data)
        return buffer.getvalue()
    raise UsageError(f"unknown format {fmt!r} (text, csv, markdown, json)")


def report_paths(paths: Sequence[str], fmt: str) -> str | None:
    """For ``collbench report``: the sweep report when every path is a sweep directory, else None
    (the caller then prints per-file tables)."""
    if not paths or not all(is_sweep_dir(p) for p in paths):
        return None
    return "\n".join(sweep_report(p, fmt) for p in paths)
