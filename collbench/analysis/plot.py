"""``collbench plot FILES -o out.png|svg|pdf [--kind busbw|latency|nodes|model]``.

* ``busbw``   -- bus bandwidth vs message size, one line per algorithm × backend (× file when
  several files are plotted), one panel per collective;
* ``latency`` -- time per operation vs size, log-log;
* ``nodes``   -- bus bandwidth vs node count from Slurm sweep directories (one line per run ×
  algorithm, at ``--size`` or the largest size measured at every node count);
* ``model``   -- measured time (markers) with the cost model's prediction (lines) for the same
  rank count, layout and dtype (``--profile``, default: this host's calibrated profile);
* ``error``   -- time per operation against error (relative L2 to the exact dense sum) of
  compressed algorithms (docs/compression.md), one line per algorithm and setting through its
  sizes; exact algorithms in the same files sit at the left edge.

Sizes are on a log₂ axis with binary ticks (8B, 1K, 1M, 1G); GB/s are 10⁹ B/s, as in the
tables. Titles come from the files' metadata (ranks, nodes, MPI library, dtype/op). matplotlib
is imported only here, only when a plot is drawn (the ``plot`` extra:
``pip install 'collbench[plot]'``); without it this is one error line.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from ..errors import UsageError
from ..results.files import ResultsFile, Row, check_output_path, expand_paths, read_results

KINDS = ("busbw", "latency", "nodes", "model", "error", "timeline")
FORMATS = (".png", ".svg", ".pdf")
_PLACEMENT = {"out_of_place": "out-of-place", "in_place": "in-place"}


def pyplot() -> Any:
    """matplotlib.pyplot with a file-only backend, or a one-line error naming the extra."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        matplotlib.rcParams["svg.fonttype"] = "none"   # SVG text stays text (searchable)
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("plotting needs matplotlib, which is not installed: "
                         "pip install 'collbench[plot]'") from None
    return plt


def size_label(nbytes: float) -> str:
    """Binary short form for ticks: 8B, 512B, 1K, 64K, 1M, 2G."""
    n = int(round(nbytes))
    for unit, factor in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= factor and n % factor == 0:
            return f"{n // factor}{unit}"
    return f"{n}B"


def _size_axis(ax: Any, sizes: Sequence[int]) -> None:
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    ax.set_xscale("log", base=2)
    lo = max(1, min(sizes))
    hi = max(lo, max(sizes))
    first, last = int(math.floor(math.log2(lo))), int(math.ceil(math.log2(hi)))
    step = max(1, math.ceil((last - first + 1) / 10))
    ticks = [2.0 ** e for e in range(first, last + 1, step)]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: size_label(v)))
    ax.set_xlabel("message size (bytes, binary: 1K = 1024)")


def _title(files: Sequence[ResultsFile], what: str) -> str:
    parts = []
    metas = [f.metadata for f in files]
    shapes = sorted({(m.get("nranks"), m.get("nnodes")) for m in metas})
    parts.append(", ".join(f"{r} rank{'s' if r != 1 else ''} on {n} node{'s' if n != 1 else ''}"
                           for r, n in shapes if r is not None))
    libs = sorted({(m.get("mpi") or {}).get("library_version", "") for m in metas} - {""})
    if libs:
        parts.append(" / ".join(" ".join(lib.split(" (")[0].split())[:40] for lib in libs))
    kinds = sorted({f"{r.dtype}{' ' + r.op if r.op else ''}" for f in files for r in f.rows})
    if kinds:
        parts.append(", ".join(kinds[:3]) + (" ..." if len(kinds) > 3 else ""))
    return f"{what}\n" + " · ".join(p for p in parts if p)


def _series(files: Sequence[ResultsFile], placement: str | None) -> dict[str, dict[tuple, list[Row]]]:
    """collective -> (label parts) -> rows sorted by size."""
    out: dict[str, dict[tuple, list[Row]]] = {}
    many_files = len(files) > 1
    placements = {r.placement for f in files for r in f.rows}
    for f in files:
        for r in f.rows:
            if placement and r.placement != placement:
                continue
            label = [r.algorithm]
            if len({x.backend for g in files for x in g.rows}) > 1 or r.backend != "mpi":
                label.append(r.backend)
            if len({(x.dtype, x.op) for g in files for x in g.rows}) > 1:
                label.append(f"{r.dtype}{' ' + r.op if r.op else ''}")
            if not placement and len(placements) > 1:
                label.append(_PLACEMENT.get(r.placement, r.placement))
            if many_files:
                label.append(Path(f.path).stem)
            out.setdefault(r.collective, {}).setdefault(tuple(label), []).append(r)
    for groups in out.values():
        for rows in groups.values():
            rows.sort(key=lambda r: r.bytes)
    return out


def _figure(plt: Any, panels: int) -> tuple[Any, list[Any]]:
    fig, axes = plt.subplots(panels, 1, figsize=(8, 4.6 * panels), squeeze=False)
    return fig, [row[0] for row in axes]


def _save(fig: Any, out: Path) -> None:
    fig.tight_layout()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=130)
    except OSError as exc:
        raise UsageError(f"cannot write the figure to {out}: {exc.strerror or exc}") from None


def plot_sizes(files: Sequence[ResultsFile], out: Path, kind: str, placement: str | None) -> None:
    plt = pyplot()
    series = _series(files, placement)
    if not series:
        raise UsageError("nothing to plot: the files have no rows" +
                         (f" with placement {placement}" if placement else ""))
    def drawable(r: Row) -> bool:  # on log axes: a positive size, and time (or a known busbw)
        return r.bytes > 0 and (r.time_us > 0 if kind == "latency" else r.busbw_gbps is not None)

    if not any(drawable(r) for groups in series.values() for rows in groups.values() for r in rows):
        raise UsageError(f"nothing to plot: no row has a positive size and "
                         f"{'time' if kind == 'latency' else 'a bus bandwidth'}")
    fig, axes = _figure(plt, len(series))
    for ax, (collective, groups) in zip(axes, sorted(series.items())):
        sizes = [r.bytes for rows in groups.values() for r in rows if r.bytes > 0]
        for label, rows in groups.items():
            rows = [r for r in rows if drawable(r)]
            ys = [r.busbw_gbps if kind == "busbw" else r.time_us for r in rows]
            ax.plot([r.bytes for r in rows], ys, marker="o", markersize=3, label=" · ".join(label))
        _size_axis(ax, sizes or [1])
        if kind == "latency":
            ax.set_yscale("log")
            ax.set_ylabel("time per operation (µs)")
        else:
            ax.set_ylabel("bus bandwidth (GB/s, 10⁹ B/s)")
            ax.set_ylim(bottom=0)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)
        what = "bus bandwidth" if kind == "busbw" else "latency"
        ax.set_title(_title(files, f"{collective} {what}"), fontsize=10)
    _save(fig, out)
    plt.close(fig)


def plot_nodes(paths: Sequence[str], out: Path, size: int | None, placement: str | None) -> None:
    from ..results.sweep_report import groups as sweep_groups
    from ..results.sweep_report import is_sweep_dir, load_sweep

    sweeps = [load_sweep(p) for p in paths if is_sweep_dir(p)]
    if not sweeps or len(sweeps) != len(paths):
        bad = [p for p in paths if not is_sweep_dir(p)]
        raise UsageError(f"--kind nodes needs Slurm sweep directories (with sweep.json); "
                         f"not one: {', '.join(bad) or '(none given)'}")
    plt = pyplot()
    fig, axes = _figure(plt, 1)
    ax = axes[0]
    counts: set[int] = set()
    chosen_sizes: set[int] = set()
    for sweep in sweeps:
        for key, by_size in sweep_groups(sweep).items():
            if placement and key.placement != placement:
                continue
            if size is not None:
                at = size if size in by_size else None
            else:   # the largest size measured at every node count this group has
                full = max(len(v) for v in by_size.values())
                at = max((s for s, v in by_size.items() if len(v) == full), default=None)
            if at is None:
                continue
            rows = by_size[at]
            ks = sorted(rows)
            counts.update(ks)
            chosen_sizes.add(at)
            label = f"{key.run}: {key.collective} {key.algorithm}"
            if key.options:
                label += f" ({key.options})"
            if len(sweeps) > 1:
                label += f" [{Path(sweep.path).name}]"
            if size is None:
                from ..sizes import format_bytes

                label += f" @ {format_bytes(at)}"
            ax.plot(ks, [rows[k].busbw_gbps for k in ks], marker="o", label=label)
    if not counts:
        raise UsageError("nothing to plot: no rows at that size" if size else "nothing to plot")
    ax.set_xscale("log", base=2)
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    ax.xaxis.set_major_locator(FixedLocator(sorted(counts)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{int(round(v))}"))
    ax.set_xlabel("nodes")
    ax.set_ylabel("bus bandwidth (GB/s, 10⁹ B/s)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    rpn = sorted({s.ranks_per_node for s in sweeps if s.ranks_per_node})
    at_text = (f" at {', '.join(size_label(s) for s in sorted(chosen_sizes))}"
               if size is not None else "")
    ax.set_title(f"bus bandwidth vs node count{at_text}\n"
                 + " · ".join(f"{s.plan.get('cluster', '?')} job {s.plan.get('job_id', '?')}" for s in sweeps)
                 + (f" · {'/'.join(map(str, rpn))} ranks per node" if rpn else ""), fontsize=10)
    _save(fig, out)
    plt.close(fig)


def plot_model(files: Sequence[ResultsFile], out: Path, profile_spec: str | None,
               placement: str | None) -> None:
    from ..algorithms import Collective
    from ..dtypes import DTYPES
    from .model.check import layout_of
    from .model.predict import Model
    from .model.profile import load_profile

    profile = load_profile(profile_spec)
    model = Model(profile)
    plt = pyplot()
    series = _series(files, placement or "out_of_place")
    if not series:
        raise UsageError("nothing to plot: no rows (the model plot uses out-of-place rows unless "
                         "--placement says otherwise)")
    layouts = {str(f.path): layout_of(f) for f in files}
    fig, axes = _figure(plt, len(series))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (collective, groups) in zip(axes, sorted(series.items())):
        sizes = [r.bytes for rows in groups.values() for r in rows if r.bytes > 0]
        for i, (label, rows) in enumerate(groups.items()):
            rows = [r for r in rows if r.bytes > 0]
            if not rows:
                continue
            color = colors[i % len(colors)]
            ax.plot([r.bytes for r in rows], [r.time_us for r in rows], "o", color=color,
                    markersize=4, label=f"{' · '.join(label)} measured")
            file = next((str(f.path) for f in files if any(x is rows[0] for x in f.rows)), None)
            layout = layouts.get(file) if file else None
            xs, ys = [], []
            for r in rows:
                try:  # as model check: a row the model cannot price (unknown collective, data
                    # type or rank count, as imported logs may leave them) gets no model point
                    cost = model.cost(Collective.parse(r.collective), r.algorithm, r.nranks, r.count,
                                      DTYPES[r.dtype].itemsize, r.dtype, layout,
                                      r.placement == "in_place", r.options or {}, r.root or 0,
                                      exact=True)
                except (ValueError, KeyError):
                    cost = None
                if cost is not None:
                    xs.append(r.bytes)
                    ys.append(cost[0].total * 1e6)
            if xs:
                ax.plot(xs, ys, "-", color=color, label=f"{' · '.join(label)} model")
        _size_axis(ax, sizes or [1])
        ax.set_yscale("log")
        ax.set_ylabel("time per operation (µs)")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7)
        ax.set_title(_title(files, f"{collective}: measured vs model (profile {profile.name})"),
                     fontsize=10)
    _save(fig, out)
    plt.close(fig)


def _setting(row: Row, dtype: bool, placement: bool) -> str:
    """What distinguishes compressed runs of one algorithm: density, format, rank (and the
    dtype and placement when the rows have several)."""
    facts = row.compress or {}
    parts = [f"{k}={facts[k]}" for k in ("density", "format", "rank") if k in facts]
    parts += [row.dtype] if dtype else []
    parts += [_PLACEMENT.get(row.placement, row.placement)] if placement else []
    return f"{row.algorithm} {' '.join(parts)}".strip()


def plot_error(files: Sequence[ResultsFile], out: Path, placement: str | None) -> None:
    """Time against relative L2 error, per algorithm and setting (points: sizes)."""
    rows = [r for f in files for r in f.rows if not placement or r.placement == placement]
    lossy = [r for r in rows if r.err_rel_l2 is not None]
    if not lossy:
        raise UsageError("nothing to plot: --kind error needs rows of compressed algorithms "
                         "(with error columns; docs/compression.md)")
    plt = pyplot()
    fig, axes = _figure(plt, 1)
    ax = axes[0]
    positive = [r.err_rel_l2 for r in lossy if r.err_rel_l2 > 0]
    floor = min(positive) / 10 if positive else 1e-8
    groups: dict[str, list[Row]] = {}
    dtypes, placements = len({r.dtype for r in rows}) > 1, len({r.placement for r in rows}) > 1
    for r in rows:
        if r.err_rel_l2 is None and r.compress is None and r.wrong == 0:
            groups.setdefault(f"{_setting(r, dtypes, placements)} (exact: at the left edge)", []).append(r)
        elif r.err_rel_l2 is not None:
            groups.setdefault(_setting(r, dtypes, placements), []).append(r)
    for label, members in sorted(groups.items()):
        members.sort(key=lambda r: r.bytes)
        xs = [max(r.err_rel_l2 or 0.0, floor) for r in members]
        line = ax.plot(xs, [r.time_us for r in members], marker="o", markersize=4, label=label)[0]
        for x, r in zip(xs, members):
            ax.annotate(size_label(r.bytes), (x, r.time_us), fontsize=6, color=line.get_color(),
                        xytext=(3, 2), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("relative L2 error against the exact dense sum (all ranks)")
    ax.set_ylabel("time per operation (µs)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(_title(files, "allreduce: time vs error (labels: message size)"), fontsize=10)
    _save(fig, out)
    plt.close(fig)


def plot(paths: Sequence[str], out: str, kind: str = "busbw", placement: str | None = None,
         size: int | None = None, profile: str | None = None) -> Path:
    """Draw one figure; returns its path. UsageError for every user mistake."""
    target = Path(out)
    if target.suffix.lower() not in FORMATS:
        raise UsageError(f"-o {out}: the file name must end in {', '.join(FORMATS)} "
                         f"(the format follows the extension)")
    if kind not in KINDS:
        raise UsageError(f"unknown --kind {kind!r} (known: {', '.join(KINDS)})")
    # before reading or drawing anything; a figure is redrawn from its results, so an existing
    # one is replaced
    check_output_path(target, "-o", "figure", may_replace=lambda _: True)
    if kind == "nodes":
        plot_nodes(list(paths), target, size, placement)
        return target
    if kind == "timeline":  # a trace file from `collbench run --trace` (collbench/trace/)
        from ..trace.timeline import plot_timeline

        plot_timeline(list(paths), target, pyplot())
        return target
    files = [read_results(p) for p in expand_paths(paths)]
    if kind == "model":
        plot_model(files, target, profile, placement)
    elif kind == "error":
        plot_error(files, target, placement)
    else:
        plot_sizes(files, target, kind, placement)
    return target
