"""Profiles from published logs: ``collbench calibrate --from LOGS...``.

Imported nccl-tests logs (``collbench import nccl-tests``) time NCCL's own collective on a real
machine. Given a base profile that describes the machine's hardware (its ``nccl`` section says
what NCCL's topology search finds there), this module fits, per link class -- ``intra`` from
one-node logs, ``inter`` from multi-node ones -- how NCCL's estimate turns into measured time:

* **NCCL realisation factors** (:class:`.nccl.Realisation`): for every row NCCL's choice of
  algorithm and protocol is known from the model, so the measured time is
  ``lat_scale[p] × NCCL latency + bytes / (bw_scale[p] × NCCL bandwidth on the launched
  channels) + aggregate[p] × bytes / NCCL bandwidth on all channels``: linear in ``lat_scale``,
  ``1 / bw_scale`` and ``aggregate``, fitted per protocol by non-negative least squares on
  relative errors (every row counts the same whatever its size). ``aggregate`` is fitted only
  for a protocol with rows where NCCL launched fewer channels (elsewhere its column is the
  launched channels' column again);
* **link α/β** of the schedules' model: the ring's per-hop latency and the bus bandwidth
  ``t ≈ α·steps + bytes·2(p-1)/p / B`` fitted on the rows of at least 1 MiB (where NCCL runs
  bandwidth-bound protocols); one-node logs give ``intra``, multi-node logs ``inter`` (per NIC:
  the bus bandwidth over the node's NICs).

Every fitted factor records the files it was fitted on (``fitted_on``): ``model check`` warns
when a file is judged with factors fitted on it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ...algorithms import Collective
from ...errors import UsageError
from ...metrics import bytes_for_count
from ...results.files import ResultsFile, Row, expand_paths, file_digest, read_results
from . import nccl
from .check import gpus_per_process, nccl_env_of
from .profile import Profile

MIB = 1 << 20


@dataclass(frozen=True)
class Sample:
    """One measured row with what NCCL's model says about it."""

    file: str
    nranks: int
    nnodes: int
    nbytes: int
    measured_us: float
    choice: nccl.Choice
    share: float          # channels launched / channels of the graph's duplicated rings
    gpus_per_process: int = 1   # nccl-tests -g N: one process (thread) drives N GPUs

    @property
    def link_class(self) -> str:
        return "intra" if self.nnodes <= 1 else "inter"

    @property
    def bandwidth_us(self) -> float:
        """NCCL's bandwidth term on the launched channels, in us."""
        return self.nbytes / (1000.0 * self.choice.algbw_gbps * self.share)

    @property
    def aggregate_us(self) -> float:
        """NCCL's bandwidth term on all its channels, in us (what the launched ones share)."""
        return self.nbytes / (1000.0 * self.choice.algbw_gbps)


def _nodes(results: ResultsFile) -> int:
    nodes = results.metadata.get("node_of_rank")
    if nodes:
        return len(set(nodes))
    return int(results.metadata.get("nnodes") or 1)


#: why a usable NCCL row was left out of the fit -> the summary line's words
SKIP_REASONS = {"zero_bytes": "rows of 0 bytes (a count of 0 per rank: nccl-tests times an empty "
                              "launch there, which no latency or bandwidth term describes)"}


def samples(paths: Sequence[str], system: nccl.NcclSystem,
            skipped: dict[str, int] | None = None) -> list[Sample]:
    """NCCL native rows of ``paths`` with NCCL's choice for each (other rows are skipped).

    Rows of 0 bytes (nccl-tests' allgather and reduce_scatter below one element per rank) are
    left out: their time is a bare launch, and fitting them drives the LL latency factor to
    nearly 0. ``skipped`` (reason -> count, :data:`SKIP_REASONS`) counts them when given."""
    out = []
    for path in expand_paths(paths):
        results = read_results(path)
        nnodes = _nodes(results)
        per_process = gpus_per_process(results)
        run_system = nccl.with_env(system, nccl_env_of(results))   # what NCCL could choose there
        for row in results.rows:
            if not _usable(row, nnodes):
                continue
            coll = Collective.parse(row.collective)
            nbytes = bytes_for_count(coll, row.count, _itemsize(row), row.nranks)
            if nbytes <= 0 or row.bytes <= 0:
                if skipped is not None:
                    skipped["zero_bytes"] = skipped.get("zero_bytes", 0) + 1
                continue
            try:
                choice = nccl.choose(run_system, coll, row.nranks, nnodes, nbytes)
            except ValueError:       # an NCCL_ALGO/NCCL_PROTO NCCL itself would refuse
                choice = None
            if choice is None:
                continue
            share = nccl.channel_share(system, choice, row.nranks, nnodes)
            out.append(Sample(str(path), row.nranks, nnodes, nbytes, row.time_us, choice, share,
                              per_process))
    return out


def _usable(row: Row, nnodes: int) -> bool:
    return (row.algorithm == "native" and row.backend == "nccl" and row.time_us > 0
            and row.nranks > 1 and row.nranks % max(1, nnodes) == 0)


def _itemsize(row: Row) -> int:
    from ...dtypes import DTYPES

    return DTYPES[row.dtype].itemsize


def _nonneg_lstsq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Least squares with x >= 0 (Lawson-Hanson active set, for a handful of unknowns)."""
    n = a.shape[1]
    free = list(range(n))
    x = np.zeros(n)
    for _ in range(2 * n + 1):
        x = np.zeros(n)
        if free:
            sol, *_ = np.linalg.lstsq(a[:, free], b, rcond=None)
            x[free] = sol
        negative = [j for j in free if x[j] < 0]
        if not negative:
            return x
        free = [j for j in free if j not in negative]
    return np.clip(x, 0, None)


#: a protocol's latency factor is fitted only where NCCL's latency is at least this share of a
#: measured time: below it, every row is bandwidth and the factor is noise
LATENCY_VISIBLE = 0.05


def fit_realisation(rows: Sequence[Sample]) -> nccl.Realisation:
    """Per-protocol latency and bandwidth factors, and the launch cost of every extra GPU one
    process drives, that minimise the rows' relative errors (one non-negative least-squares
    problem). A protocol seen at a single size, or whose latency is under
    :data:`LATENCY_VISIBLE` of every row's time (two rows of 1 and 10 GiB cannot tell a latency
    from noise), keeps NCCL's latency (only its bandwidth is fitted); a factor the data cannot
    pin down stays 1, the launch cost and the aggregate terms 0."""
    protos = [p for p in nccl.PROTOCOLS if any(s.choice.protocol == p for s in rows)]
    mine = {p: [s for s in rows if s.choice.protocol == p] for p in protos}
    one_size = {p for p in protos if len({s.nbytes for s in mine[p]}) < 2}
    latency_hidden = one_size | {p for p in protos if all(
        s.choice.latency_us < LATENCY_VISIBLE * s.measured_us for s in mine[p])}
    extra = any(s.gpus_per_process > 1 for s in rows) and any(s.gpus_per_process == 1 for s in rows)
    cols: list[tuple[str, str]] = [(p, k) for p in protos for k in ("lat", "bw")
                                   if not (k == "lat" and p in latency_hidden)]
    cols += [(p, "agg") for p in protos
             if p not in one_size and any(s.share < 1 for s in mine[p])]
    if extra:
        cols.append(("*", "launch"))
    t = np.array([s.measured_us for s in rows])
    a = np.zeros((len(rows), len(cols)))
    fixed = np.zeros(len(rows))      # latency kept at NCCL's where it is not fitted
    for i, s in enumerate(rows):
        for j, (p, k) in enumerate(cols):
            if k == "launch":
                a[i, j] = s.gpus_per_process - 1
            elif p == s.choice.protocol:
                a[i, j] = (s.choice.latency_us if k == "lat" else s.bandwidth_us if k == "bw"
                           else s.aggregate_us)
        if s.choice.protocol in latency_hidden:
            fixed[i] = s.choice.latency_us
    x = _nonneg_lstsq(a / t[:, None], 1.0 - fixed / t)
    value = dict(zip(cols, x.tolist()))
    lat = {p: (value.get((p, "lat"), 1.0) or 1.0) for p in protos}
    bw = {p: (1.0 / value[(p, "bw")] if value.get((p, "bw"), 0) > 0 else 1.0) for p in protos}
    files = tuple(sorted({s.file for s in rows}))
    agg = {p: value[(p, "agg")] for p in protos if (p, "agg") in value}
    return nccl.Realisation(lat, bw, files, float(value.get(("*", "launch"), 0.0)), aggregate=agg)


def fit_link(rows: Sequence[Sample]) -> tuple[float, float] | None:
    """(α us per ring step, bus bandwidth GB/s) from rows of at least 1 MiB: ``t = α·steps +
    busbytes / B`` with busbytes the bytes one rank moves in a ring allreduce."""
    big = [s for s in rows if s.nbytes >= MIB]
    if len(big) < 3:
        return None
    t = np.array([s.measured_us for s in big])
    steps = np.array([2.0 * (s.nranks - 1) for s in big])
    bus = np.array([s.nbytes * 2.0 * (s.nranks - 1) / s.nranks for s in big])
    a = np.stack([steps, bus / 1000.0], axis=1) / t[:, None]
    x = _nonneg_lstsq(a, np.ones(len(big)))
    if x[1] <= 0:
        return None
    return float(x[0]), 1.0 / float(x[1])


@dataclass(frozen=True)
class Residual:
    sample: Sample
    predicted_us: float

    @property
    def error(self) -> float:
        return (self.predicted_us - self.sample.measured_us) / self.sample.measured_us


def residuals(rows: Sequence[Sample], real: nccl.Realisation) -> list[Residual]:
    return [Residual(s, sum(real.parts_us(s.choice, s.share, s.gpus_per_process))) for s in rows]


def calibrate_from(paths: Sequence[str], base: Profile, name: str | None = None
                   ) -> tuple[dict[str, Any], list[Residual]]:
    """(profile record, residuals): ``base`` with NCCL realisation factors and link α/β fitted
    on ``paths``, per link class present in them."""
    if base.nccl is None:
        raise UsageError(f"calibrate --from: profile {base.label} has no 'nccl' section saying what "
                         f"NCCL's topology search finds on the machine; give --profile one that has")
    skipped: dict[str, int] = {}
    rows = samples(paths, base.nccl, skipped)
    if not rows:
        what = "".join(f"; {n} {SKIP_REASONS[why]} skipped" for why, n in sorted(skipped.items()))
        raise UsageError("calibrate --from: no NCCL native rows (backend nccl, algorithm native) in "
                         f"{', '.join(paths)}{what}; import nccl-tests logs with "
                         "`collbench import nccl-tests`")
    record = copy.deepcopy(base.record)
    record["name"] = name or f"{base.name}-fit"
    record["description"] = (f"{base.description.split(';')[0]}; NCCL realisation and link α/β fitted "
                             f"by `collbench calibrate --from` on {len({s.file for s in rows})} file(s)")
    section = record.setdefault("nccl", {})
    realisation = dict(section.get("realisation") or {})
    fit: dict[str, Any] = {}
    out: list[Residual] = []
    for cls in ("intra", "inter"):
        mine = [s for s in rows if s.link_class == cls]
        if not mine:
            continue
        real = fit_realisation(mine)
        realisation[cls] = {"lat_scale": real.lat_scale, "bw_scale": real.bw_scale,
                            "launch_per_gpu_us": real.launch_per_gpu_us,
                            "aggregate": real.aggregate,
                            "fitted_on": list(real.fitted_on),
                            "fitted_sha256": [file_digest(f) for f in real.fitted_on]}
        res = residuals(mine, real)
        out += res
        errors = [abs(r.error) for r in res]
        fit[f"nccl.{cls}"] = {"rows": len(mine), "median_abs_error": float(np.median(errors)),
                              "max_abs_error": float(max(errors)), "files": list(real.fitted_on)}
        link = fit_link(mine)
        if link is not None:
            alpha, busbw = link
            level = record.setdefault(cls, {})
            level["alpha_us"] = round(alpha, 4)
            if cls == "intra":
                level["bandwidth_gbps"] = round(busbw, 3)
            else:   # the bus bandwidth is spread over the node's NICs (ring channels, one each)
                level["bandwidth_gbps"] = round(busbw / max(1, base.nics_per_node), 3)
            fit[cls] = {"alpha_us_per_step": alpha, "busbw_gbps": busbw,
                        "points": sum(1 for s in mine if s.nbytes >= MIB)}
    section["realisation"] = realisation
    record["fit"] = {**(record.get("fit") or {}), **fit}
    record["fit"].pop("skipped", None)     # a base profile's own fit says nothing about these logs
    if skipped:
        record["fit"]["skipped"] = dict(sorted(skipped.items()))
    record.setdefault("metadata", {})
    record["metadata"] = {**record["metadata"], "calibrated_from": sorted({s.file for s in rows}),
                          "base_profile": base.name}
    # the fitted numbers are the sources of the fitted constants
    sources = record.setdefault("sources", {})
    for cls in fit:
        sources[f"fit.{cls}"] = "collbench calibrate --from " + " ".join(sorted({s.file for s in rows}))
    return record, out


def format_residuals(res: Sequence[Residual], record: dict[str, Any]) -> str:
    """A residual table per file and the fitted factors."""
    from tabulate import tabulate

    from ...sizes import format_bytes

    lines = [f"# calibrate --from: profile {record['name']} (base {record['metadata']['base_profile']})"]
    for cls, real in (record.get("nccl", {}).get("realisation") or {}).items():
        lines.append(f"# {cls}: lat_scale " + ", ".join(f"{p} {v:.3g}" for p, v in real["lat_scale"].items())
                     + "; bw_scale " + ", ".join(f"{p} {v:.3g}" for p, v in real["bw_scale"].items())
                     + "".join(f"; aggregate {p} {v:.3g}" for p, v in (real.get("aggregate") or {}).items()))
    for cls in ("intra", "inter"):
        f = record.get("fit", {}).get(cls)
        if f:
            lines.append(f"# {cls} link: α {f['alpha_us_per_step']:.3g} us per ring step, bus bandwidth "
                         f"{f['busbw_gbps']:.4g} GB/s ({f['points']} rows >= 1 MiB)")
    body = [[Path(r.sample.file).name, r.sample.nranks, r.sample.nnodes, format_bytes(r.sample.nbytes),
             r.sample.choice.label, f"{r.sample.measured_us:.4g}", f"{r.predicted_us:.4g}",
             f"{r.error:+.0%}"] for r in res]
    lines.append(tabulate(body, headers=["file", "ranks", "nodes", "size", "nccl", "measured us",
                                         "fitted us", "residual"], disable_numparse=True))
    if res:
        errs = [abs(r.error) for r in res]
        lines.append(f"# residuals: median |error| {np.median(errs):.0%}, worst {max(errs):.0%} over "
                     f"{len(res)} rows (fitted on these rows: not a validation)")
    for why, n in (record.get("fit", {}).get("skipped") or {}).items():
        lines.append(f"# skipped {n} {SKIP_REASONS.get(why, why)}: not fitted, not in the table")
    return "\n".join(lines)


__all__ = ["SKIP_REASONS", "Sample", "samples", "fit_realisation", "fit_link", "calibrate_from", "residuals",
           "format_residuals"]
