"""``collbench model check``: predicted vs measured time for every row of results files.

Each row is costed exactly for its collective, algorithm, rank count, node layout (from the
file's ``node_of_rank``), dtype, placement and options. The error is (predicted - measured) /
measured; the verdict is ``ok`` within the tolerance (default ±25 %), ``under``/``over``
beyond it, ``no model`` for the library's own collective (``native``) and schedules the model
cannot cost. The summary also checks *ranking*: for every size where two modelled algorithms
differ by more than ``--rank-margin`` (20 %) in measured time, does the model put them in the
same order?
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from tabulate import tabulate

from ...algorithms import Collective, Layout, vcounts
from ...dtypes import DTYPES
from ...results.files import ResultsFile, Row, expand_paths, file_digest, read_results
from ...sizes import format_bytes
from . import nccl
from .predict import Model
from .profile import Profile


@dataclass(frozen=True)
class Checked:
    file: str
    row: Row
    predicted_us: float | None
    method: str | None

    @property
    def error(self) -> float | None:
        if self.predicted_us is None or self.row.time_us <= 0:
            return None
        return (self.predicted_us - self.row.time_us) / self.row.time_us

    def verdict(self, tolerance: float) -> str:
        err = self.error
        if err is None:
            return "no model"
        if abs(err) <= tolerance:
            return "ok"
        return "over" if err > 0 else "under"


def layout_of(results: ResultsFile) -> Layout | None:
    """The node layout a results file was measured on (None: one node)."""
    nodes = results.metadata.get("node_of_rank")
    if not nodes or len(set(nodes)) <= 1:
        return None
    groups: dict[int, list[int]] = {}
    for rank, node in enumerate(nodes):
        groups.setdefault(int(node), []).append(rank)
    return Layout(tuple(tuple(groups[k]) for k in sorted(groups)))


def gpus_per_process(results: ResultsFile) -> int:
    """GPUs one process drives (nccl-tests ``-g N``): ranks that share a host and a pid."""
    procs = results.metadata.get("processes") or []
    keys = [(p.get("host"), p.get("pid")) for p in procs if isinstance(p, dict)]
    if not keys or any(k[1] is None for k in keys):
        return 1
    return max(keys.count(k) for k in set(keys))


def nccl_env_of(results: ResultsFile) -> dict[str, str]:
    """The run's NCCL_ALGO and NCCL_PROTO, from the environment its metadata recorded (collbench
    run records NCCL_*; an imported log, what NCCL's INFO lines said was set)."""
    env = results.metadata.get("env")
    if not isinstance(env, dict):
        return {}
    return {k: str(env[k]) for k in nccl.ENV_VARIABLES if env.get(k) is not None}


def check_rows(model: Model, results: ResultsFile,
               nccl_env: Mapping[str, str] | None = None) -> list[Checked]:
    """Every row of ``results`` with the model's prediction; ``nccl_env`` (NCCL_ALGO /
    NCCL_PROTO) replaces what the run recorded, to judge a log as if it had run with them."""
    layout = layout_of(results)
    per_process = gpus_per_process(results)
    try:  # alltoallv rows are priced with the count matrix the run used
        skew = vcounts.from_record((results.metadata.get("spec") or {}).get("skew"))
    except (ValueError, TypeError):
        skew = None
    # NCCL chose among what the run's environment allowed
    nccl_env = dict(nccl_env) if nccl_env is not None else nccl_env_of(results)
    if skew is not None or nccl_env != model.nccl_env:
        model = Model(model.profile, skew if skew is not None else model.skew, nccl_env)
    out = []
    for row in results.rows:
        predicted, method = None, None
        try:
            coll = Collective.parse(row.collective)
            item = DTYPES[row.dtype].itemsize
            result = model.cost(coll, row.algorithm, row.nranks, row.count, item, row.dtype,
                                layout, row.placement == "in_place", row.options or {},
                                row.root or 0, exact=True, backend=row.backend,
                                gpus_per_process=per_process)
        except (ValueError, KeyError):
            result = None
        if result is not None:
            predicted, method = result[0].total * 1e6, result[1]
        out.append(Checked(str(results.path), row, predicted, method))
    return out


def ranking(checked: Sequence[Checked], margin: float) -> tuple[int, int, list[str]]:
    """(pairs ordered like the measurement, pairs compared, disagreements as text)."""
    groups: dict[tuple, list[Checked]] = {}
    for c in checked:
        if c.predicted_us is None:
            continue
        r = c.row
        groups.setdefault((c.file, r.collective, r.dtype, r.op, r.placement, r.nranks, r.bytes),
                          []).append(c)
    agree = total = 0
    bad = []
    for key, items in sorted(groups.items(), key=lambda kv: kv[0][-1]):
        for i, a in enumerate(items):
            for b in items[i + 1:]:
                fast, slow = (a, b) if a.row.time_us <= b.row.time_us else (b, a)
                if slow.row.time_us <= fast.row.time_us * (1 + margin):
                    continue   # within the margin: no order to get right
                total += 1
                if fast.predicted_us <= slow.predicted_us:
                    agree += 1
                else:
                    bad.append(f"{key[1]} {format_bytes(key[-1])} {key[5]} ranks {key[4]}: measured "
                               f"{fast.row.algorithm} {fast.row.time_us:.4g} us < {slow.row.algorithm} "
                               f"{slow.row.time_us:.4g} us, model says {fast.predicted_us:.4g} > "
                               f"{slow.predicted_us:.4g} us")
    return agree, total, bad


LATENCY_BAND = (8, 64 << 10)        # bytes: where a collective's time is mostly latency
BANDWIDTH_FROM = 1 << 20            # bytes: where it is mostly bandwidth
LATENCY_TOLERANCE = 0.5


def bands(modelled: Sequence[Checked], tolerance: float) -> list[str]:
    """Scores by size band: bandwidth (>= 1 MiB, ±tolerance) and latency (8 B - 64 KiB, ±50 %),
    the two criteria of issue 11's validation against published logs."""
    out = []
    big = [c for c in modelled if c.row.bytes >= BANDWIDTH_FROM]
    small = [c for c in modelled if LATENCY_BAND[0] <= c.row.bytes <= LATENCY_BAND[1]]
    if big:
        ok = sum(1 for c in big if abs(c.error or 0.0) <= tolerance)
        out.append(f"# from 1 MiB: {ok} of {len(big)} rows ({ok / len(big):.0%}) within ±{tolerance:.0%}")
    if small:
        ok = sum(1 for c in small if abs(c.error or 0.0) <= LATENCY_TOLERANCE)
        out.append(f"# 8 B - 64 KiB: {ok} of {len(small)} rows ({ok / len(small):.0%}) within "
                   f"±{LATENCY_TOLERANCE:.0%}")
    return out


def _fitted_on(profile: Profile) -> tuple[set[str], set[str]]:
    """(names, content digests) of the files the profile's NCCL factors were fitted on; a
    profile written before digests were recorded has names only."""
    if profile.nccl is None:
        return set(), set()
    reals = profile.nccl.realisation.values()
    return ({Path(f).name for real in reals for f in real.fitted_on},
            {d for real in reals for d in real.fitted_sha256})


def check(paths: Sequence[str], profile: Profile, tolerance: float = 0.25, margin: float = 0.2,
          min_bytes: int = 0, fmt: str = "text",
          nccl_env: Mapping[str, str] | None = None) -> tuple[str, list[Checked]]:
    """The report text and the checked rows (``nccl_env``: see :func:`check_rows`)."""
    model = Model(profile)
    checked: list[Checked] = []
    notes: list[str] = []
    restricted: list[str] = []   # files whose native rows NCCL_ALGO/NCCL_PROTO restrict
    names, digests = _fitted_on(profile)
    for path in expand_paths(paths):
        results = read_results(path)
        notes += results.warnings
        if file_digest(path) in digests if digests else Path(path).name in names:
            what = "this file" if digests else "a file of this name"
            notes.append(f"{path}: the profile's NCCL factors were fitted on {what} -- "
                         f"judging a file with factors fitted on it is not a validation")
        used = dict(nccl_env) if nccl_env is not None else nccl_env_of(results)
        if used:
            how = "given" if nccl_env is not None else "recorded by the run"
            restricted.append(f"{path}: NCCL's choice restricted by "
                              + ", ".join(f"{k}={v}" for k, v in sorted(used.items())) + f" ({how})")
        checked += [c for c in check_rows(model, results, used) if c.row.bytes >= min_bytes]
    if fmt == "json":
        return json.dumps([{"file": c.file, "collective": c.row.collective,
                            "algorithm": c.row.algorithm, "nranks": c.row.nranks,
                            "bytes": c.row.bytes, "dtype": c.row.dtype, "placement": c.row.placement,
                            "measured_us": c.row.time_us, "predicted_us": c.predicted_us,
                            "error": c.error, "verdict": c.verdict(tolerance), "method": c.method}
                           for c in checked], indent=1), checked
    tablefmt = "github" if fmt == "markdown" else "simple"
    body = []
    for c in checked:
        r = c.row
        algorithm = r.algorithm
        if c.method and c.method.startswith("nccl "):      # NCCL's own choice, as modelled
            algorithm += f" ({c.method[5:]})"
        body.append([r.collective, algorithm, r.nranks, format_bytes(r.bytes), r.dtype,
                     r.placement.replace("_", "-"), f"{r.time_us:.4g}",
                     "-" if c.predicted_us is None else f"{c.predicted_us:.4g}",
                     "-" if c.error is None else f"{c.error:+.0%}", c.verdict(tolerance)])
    lines = [f"# model check against profile {profile.label}; error = (predicted - measured) / "
             f"measured; ok within ±{tolerance:.0%}"]
    calibrated = (profile.record.get("metadata") or {}).get("executor")
    measured_with = sorted({c.row.executor for c in checked if c.predicted_us is not None})
    if calibrated and measured_with and measured_with != [calibrated]:
        notes.append(f"the profile was calibrated with the {calibrated} executor, the rows ran on "
                     f"{', '.join(measured_with)}: per-step costs differ between executors")
    lines += [f"# note: {n}" for n in restricted]
    lines += [f"# warning: {n}" for n in notes]
    lines.append(tabulate(body, headers=["collective", "algorithm", "ranks", "size", "dtype",
                                         "placement", "measured us", "predicted us", "error",
                                         "verdict"], tablefmt=tablefmt, disable_numparse=True))
    modelled = [c for c in checked if c.error is not None]
    if modelled:
        errors = [abs(c.error) for c in modelled]  # type: ignore[arg-type]
        ok = sum(1 for e in errors if e <= tolerance)
        lines.append(f"# {ok} of {len(modelled)} modelled rows within ±{tolerance:.0%}; median |error| "
                     f"{statistics.median(errors):.0%}, worst {max(errors):.0%}")
    lines += bands(modelled, tolerance)
    skipped = len(checked) - len(modelled)
    if skipped:
        lines.append(f"# {skipped} rows have no model (an MPI library's native collective, NCCL's "
                     f"without an nccl section in the profile, or schedules the model cannot cost)")
    agree, total, bad = ranking(checked, margin)
    if total:
        lines.append(f"# ranking: {agree} of {total} algorithm pairs that differ by more than "
                     f"{margin:.0%} in measured time are in the measured order")
        lines += [f"#   disagrees: {b}" for b in bad]
    return "\n".join(lines), checked


__all__ = ["check", "check_rows", "ranking", "layout_of", "Checked"]
