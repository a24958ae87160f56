"""The node-count table of a Slurm sweep: busbw per size per node count, per run/collective/algorithm.

A sweep directory (``results/<cluster>/<jobid>/``, written by the scripts of ``collbench slurm``)
holds ``sweep.json`` (the plan), ``steps.ndjson`` (one status record per node count × run) and
``N<k>-<run>.jsonl`` results files. Node counts whose step failed, timed out, was skipped or never
ran are marked in the table instead of silently missing; values from a step that did not finish
cleanly are starred, and values from a step retried on other hosts are marked ``r``. The network
baseline (``baseline/``: point-to-point between two nodes, one pair per NIC) is shown above the
tables, and each table says how its peak busbw across nodes compares with it. Formatting
functions return strings; printing happens in the CLI.
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
    attempts: list[dict[str, Any]] = field(default_factory=list)   # its step records, in order

    @property
    def clean(self) -> bool:
        return self.status == "ok"

    @property
    def retried(self) -> bool:
        """Whether the step ran again on other hosts after a failed first attempt."""
        return len(self.attempts) > 1

    @property
    def nodelist(self) -> str:
        return str(self.attempts[-1].get("nodelist", "")) if self.attempts else ""

    def retry_text(self) -> str:
        """``retry on n2,n3 after failed on n1,n2 (exit 7; suspect n1)``, or empty."""
        if not self.retried:
            return ""
        first = self.attempts[0]
        return (f"retry on {self.nodelist} after {first.get('status')} on {first.get('nodelist')} "
                f"(exit {first.get('rc')}; suspect {first.get('suspect') or '?'}; "
                f"log {first.get('log', '?')})")


@dataclass
class Pair:
    """One pair of the network baseline: two nodes, one rank each, one NIC."""

    name: str
    gpu: str
    backend: str
    status: str
    nodelist: str
    attempts: int
    bandwidth_gbps: float | None = None   # peak busbw of the 2-rank allgather = one-way p2p bandwidth
    latency_us: float | None = None       # its time at the smallest size that moves data
    latency_bytes: int | None = None

    def text(self) -> str:
        where = f"{self.name} on {self.nodelist}" + (" (retried)" if self.attempts > 1 else "")
        if self.bandwidth_gbps is None:
            return f"{where}: {self.status}"
        latency = f", {self.latency_us:.2f} us at {self.latency_bytes} B" if self.latency_us is not None else ""
        return f"{where}: {self.bandwidth_gbps:.2f} GB/s{latency}" + ("" if self.status == "ok" else f" ({self.status})")


@dataclass
class Sweep:
    """A parsed sweep directory."""

    path: Path
    plan: dict[str, Any]
    cells: dict[tuple[str, int], Cell]
    events: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)
    baseline: list[Pair] = field(default_factory=list)

    @property
    def wire_gbps(self) -> float | None:
        """What the network allows per node: the sum of the baseline pairs (one per NIC)."""
        measured = [p.bandwidth_gbps for p in self.baseline if p.bandwidth_gbps is not None and p.status == "ok"]
        return sum(measured) if measured else None

    @property
    def node_counts(self) -> list[int]:
        return sorted({int(k) for k in self.plan.get("node_counts") or []})

    @property
    def runs(self) -> list[dict[str, Any]]:
        return list(self.plan.get("runs") or [])

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


def _pair(directory: Path, record: dict[str, Any], attempts: int, warnings: list[str]) -> Pair:
    """A baseline pair from its last step record and its results file."""
    pair = Pair(str(record.get("pair", "?")), str(record.get("gpu", "")), str(record.get("backend", "?")),
                str(record.get("status", "?")), str(record.get("nodelist", "")), attempts)
    file = directory / str(record.get("file") or "")
    if not record.get("file") or not file.is_file():
        return pair
    try:
        rows = [r for r in read_results(file).rows if (r.count or 0) > 0 and r.busbw_gbps is not None]
    except UsageError as exc:
        warnings.append(str(exc))
        return pair
    if rows:
        pair.bandwidth_gbps = max(r.busbw_gbps for r in rows)
        smallest = min(rows, key=lambda r: r.bytes)
        pair.latency_us, pair.latency_bytes = smallest.time_us, smallest.bytes
    return pair


def _baseline(directory: Path, events: list[dict[str, Any]], warnings: list[str]) -> list[Pair]:
    records: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        if event.get("event") == "baseline" and event.get("pair"):
            records.setdefault(str(event["pair"]), []).append(event)
    return [_pair(directory, found[-1], len(found), warnings) for found in records.values()]


def _count(value: Any) -> bool:
    """A node count as plans and step records hold it: a whole number (or its digits)."""
    return (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, str)
                                                                         and value.isdigit())


def _plan_problem(plan: dict[str, Any]) -> str | None:
    """Why a sweep plan cannot be reported (a field of the wrong shape), or None."""
    schema = plan.get("schema")
    if schema is not None and (not isinstance(schema, int) or isinstance(schema, bool)):
        return f"'schema' must be a whole number, not {schema!r}"
    counts = plan.get("node_counts")
    if counts is not None and (not isinstance(counts, list) or not all(_count(k) for k in counts)):
        return f"'node_counts' must be a list of whole numbers, not {counts!r}"
    runs = plan.get("runs")
    if runs is not None and (not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs)):
        return "'runs' must be a list of objects with a name"
    for name in ("nodes", "sizes", "args", "collectives"):
        value = plan.get(name)
        if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
            return f"'{name}' must be a list of text, not {value!r}"
    for run in runs or []:
        args = run.get("args")
        if args is not None and (not isinstance(args, list) or not all(isinstance(v, str) for v in args)):
            return f"run {run.get('name')!r}: 'args' must be a list of text, not {args!r}"
    return None


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
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read {plan_path}: {exc}") from None
    if not isinstance(plan, dict) or plan.get("type") != "collbench-sweep":
        raise UsageError(f"{plan_path}: not a collbench sweep plan")
    problem = _plan_problem(plan)
    if problem:
        raise UsageError(f"{plan_path}: {problem}; is this file damaged?")
    if (plan.get("schema") or 0) > 1:
        raise UsageError(f"{plan_path}: sweep schema {plan.get('schema')} is newer than this collbench "
                         "understands (1); upgrade collbench")
    warnings: list[str] = []
    events = _read_events(directory / STEPS_NAME, warnings)
    sweep = Sweep(directory, plan, {}, events, warnings, _baseline(directory, events, warnings))
    finished = sweep.event("end") is not None
    attempts: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for e in events:
        if e.get("event") == "step":
            nodes = e.get("nodes", 0)
            if not _count(nodes):
                warnings.append(f"{directory / STEPS_NAME}: a step record with nodes {nodes!r}; ignored")
                continue
            attempts.setdefault((str(e.get("run")), int(nodes)), []).append(e)
    steps = {key: found[-1] for key, found in attempts.items()}   # the last attempt decides
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
                cell.attempts = attempts.get((name, k), [])
            if cell.results is not None and cell.status == "ok":
                meta = cell.results.metadata
                nnodes, nranks = meta.get("nnodes"), meta.get("nranks")
                if nnodes != k or (rpn and nranks != k * rpn):
                    cell = Cell(k, "wrong shape", f"{nranks} ranks on {nnodes} node(s), expected "
                                f"{k * rpn if rpn else '?'} on {k}", cell.results, cell.attempts)
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
    if cell is not None and cell.retried:
        text += "r"
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
             + f" · sizes {' '.join(plan.get('sizes') or [])}"
             + (f" · args {' '.join(plan.get('args') or [])}" if plan.get("args") else "")]
    for run in sweep.runs:
        lines.append(f"# run {run.get('name')}: collbench run {' '.join(plan.get('collectives') or [])} "
                     f"{' '.join(str(a) for a in run.get('args') or [])}")
    probe = sweep.event("nccl_probe")
    if probe is not None:
        lines.append(f"# NCCL probe: {probe.get('verdict')}")
    lines += _baseline_lines(sweep)
    end = sweep.event("end")
    if end is not None and end.get("suspect_hosts"):
        lines.append(f"# suspect host(s): {', '.join(end['suspect_hosts'])} (a step failed there and passed "
                     "without it; later steps avoided it)")
    if end is None:
        lines.append("# the job has not finished (or was killed): steps without a record are marked 'not run'")
    return lines


def _baseline_lines(sweep: Sweep) -> list[str]:
    """The network baseline: each pair's point-to-point bandwidth and latency, and their sum."""
    skipped = next((e for e in sweep.events if e.get("event") == "baseline" and e.get("status") == "skipped"), None)
    if skipped is not None:
        return [f"# network baseline: skipped ({skipped.get('reason', '')})"]
    if not sweep.baseline:
        return []
    lines = ["# network baseline (2 nodes x 1 rank; a 2-rank allgather is one point-to-point exchange): "
             + "; ".join(p.text() for p in sweep.baseline)]
    wire = sweep.wire_gbps
    if wire is not None:
        measured = sum(1 for p in sweep.baseline if p.bandwidth_gbps is not None and p.status == "ok")
        how = f"sum of {measured} NIC pairs, each measured alone" if measured > 1 else "one pair"
        lines.append(f"# the wire allows about {wire:.2f} GB/s per node ({how})")
    return lines


def _wire_line(sweep: Sweep, sizes: dict[int, dict[int, Row]]) -> str | None:
    """How the table's peak busbw across nodes compares with the network baseline."""
    wire = sweep.wire_gbps
    best = max(((row.busbw_gbps, k, nbytes) for nbytes, by_nodes in sizes.items()
                for k, row in by_nodes.items() if k >= 2), default=None)
    if wire is None or best is None or wire <= 0:
        return None
    busbw, k, nbytes = best
    return (f"peak busbw across nodes {busbw:.2f} GB/s (N={k}, {nbytes} B) = {100 * busbw / wire:.0f}% of "
            f"what the wire allows ({wire:.2f} GB/s per node)")


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
            if cell.retried:
                text += f" [{cell.retry_text()}]"
            parts.append(text)
        lines.append(f"# run {name}: " + "; ".join(parts))
        for k in sweep.node_counts:
            cell = sweep.cells[(name, k)]
            if cell.results is not None and cell.results.summary:
                for line in cell.results.summary.get("skipped") or []:
                    lines.append(f"#   N={k} skipped {line}")
    return lines


def _legend(used_star: bool, used_bang: bool, used_retry: bool = False) -> list[str]:
    lines = []
    if used_retry:
        lines.append("# r measured on a retry on other hosts, after the first attempt failed (see the run status)")
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
    star = bang = retry = False
    if not table:
        out.append("" if markdown else "#")
        out.append("(no results in this sweep)" if markdown else "# (no results in this sweep)")
    for key, sizes in table.items():
        body = _table_rows(sweep, key, sizes)
        star = star or any(c.rstrip("r").endswith("*") for r in body for c in r[1:])
        bang = bang or any("!" in c for r in body for c in r)
        retry = retry or any(c.endswith("r") and c[:1].isdigit() for r in body for c in r[1:])
        wire = _wire_line(sweep, sizes)
        if markdown:
            out += ["", f"### {_title(sweep, key)}", "",
                    "busbw (GB/s) by node count", ""]
            headers = ["size (B)"] + [f"N={k} ({_nranks(sweep, key.run, k)} ranks)" for k in sweep.node_counts]
            out.append(tabulate(body, headers=headers, tablefmt="github", disable_numparse=True,
                                stralign="right"))
            if wire:
                out += ["", wire]
        else:
            out += ["#", f"# {_title(sweep, key)}", "#   busbw (GB/s) by node count"]
            top = ["size"] + [f"N={k}" for k in sweep.node_counts]
            sub = ["(B)"] + [f"{_nranks(sweep, key.run, k)} ranks" for k in sweep.node_counts]
            widths = [max(12, *(len(r[0]) for r in body))] + [
                max(9, len(top[i]), len(sub[i]), *(len(r[i]) for r in body)) for i in range(1, len(top))]
            out.append("#" + "".join(f"{h:>{w + 2}}" for h, w in zip(top, widths))[1:])
            out.append("#" + "".join(f"{h:>{w + 2}}" for h, w in zip(sub, widths))[1:])
            out += ["".join(f"{c:>{w + 2}}" for c, w in zip(r, widths)) for r in body]
            if wire:
                out.append(f"#   {wire}")
    status = _status_lines(sweep) + _legend(star, bang, retry) + [f"# warning: {w}" for w in sweep.warnings]
    if markdown:
        out += [""] + [_markdown_line(line) for line in status]
    else:
        out += ["#"] + status
    return "\n".join(out) + "\n"


RECORD_FIELDS = ("cluster", "job_id", "run", "backend", "collective", "algorithm", "options", "dtype",
                 "op", "placement", "bytes", "nodes", "nranks", "status", "time_us", "algbw_gbps",
                 "busbw_gbps", "wrong", "nodelist", "attempts", "wire_gbps")


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
                    "busbw_gbps": row.busbw_gbps if row else None, "wrong": row.wrong if row else None,
                    "nodelist": cell.nodelist if cell else None, "attempts": len(cell.attempts) if cell else None,
                    "wire_gbps": sweep.wire_gbps})
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
