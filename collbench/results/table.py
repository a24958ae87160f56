"""nccl-tests-style text tables. Functions return strings; printing happens in the CLI.

The layout follows nccl-tests (size, count, type, redop, root, then time/algbw/busbw/#wrong for
out-of-place and in-place) so numbers can be read side by side with all_reduce_perf output.
The footer reports the peak bus bandwidth as the headline; nccl-tests' "Avg bus bandwidth" (a
plain mean over every row, dragged down by small sizes) is kept for comparison, labelled as such.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from ..dtypes import DTYPES
from ..sizes import format_bytes
from .files import Row

PLACEMENTS = ("out_of_place", "in_place")
_PRE = (("size", "(B)", 12), ("count", "(elements)", 12), ("type", "", 8), ("redop", "", 6),
        ("root", "", 6))
_HALF = (("time", "(us)", 9), ("algbw", "(GB/s)", 7), ("busbw", "(GB/s)", 7), ("#wrong", "", 6))
_STATS = (("min", "(us)", 8), ("p50", "(us)", 8), ("p99", "(us)", 8), ("max", "(us)", 8),
          ("stdev", "(us)", 8))
# compressed algorithms (collbench/compress) only: bytes each rank sent, dense ring bytes / sent,
# error against the exact dense sum, and the busbw a dense allreduce would need to be as fast
_COMPRESSED = (("sent", "(B)", 10), ("ratio", "(x)", 6), ("relerr", "(L2)", 8),
               ("maxerr", "(abs)", 8), ("densebw", "(GB/s)", 7))


def _fit(value: float | None, width: int) -> str:
    """Like nccl-tests' getFloatStr: as many decimals (2, 1, 0) as fit, then scientific.
    Unknown values (an imported log that lacks them) print as N/A."""
    if value is None:
        return "N/A".rjust(width)
    for decimals in (2, 1, 0):
        text = f"{value:.{decimals}f}"
        if len(text) <= width:
            return text.rjust(width)
    return f"{value:.{max(0, width - 6)}e}".rjust(width)


def _columns(per_iteration: bool, compressed: bool = False) -> list[tuple[str, str, int]]:
    half = list(_HALF) + (list(_STATS) if per_iteration else []) + (list(_COMPRESSED) if compressed else [])
    return list(_PRE) + half + half


def is_compressed(row: Row) -> bool:
    """Whether ``row`` has the compressed algorithms' columns (a table shows them if any does)."""
    return row.sent_bytes is not None or row.err_rel_l2 is not None


def _sci(value: float | None, width: int) -> str:
    return ("N/A" if value is None else f"{value:.1e}").rjust(width)


def header(title: str, per_iteration: bool = False, compressed: bool = False) -> str:
    """The column header of one table, under a ``title`` line (``compressed``: with the
    compressed algorithms' columns)."""
    columns = _columns(per_iteration, compressed)
    pre_width = sum(w + 2 for _, _, w in _PRE)
    half_width = sum(w + 2 for _, _, w in columns[len(_PRE):len(_PRE) + (len(columns) - len(_PRE)) // 2])
    groups = "#" + " " * (pre_width - 1) + "out-of-place".center(half_width) + "in-place".center(half_width)
    names = "#" + "".join(f"  {name:>{w}}" for name, _, w in columns)[1:]
    units = "#" + "".join(f"  {unit:>{w}}" for _, unit, w in columns)[1:]
    return "\n".join([f"# {title}", groups.rstrip(), names.rstrip(), units.rstrip()])


def _half(row: Row | None, per_iteration: bool, compressed: bool = False) -> str:
    widths = ([w for _, _, w in _HALF] + ([w for _, _, w in _STATS] if per_iteration else [])
              + ([w for _, _, w in _COMPRESSED] if compressed else []))
    if row is None:
        return "".join(f"  {'N/A':>{w}}" for w in widths)
    wrong = "N/A" if row.wrong is None else str(row.wrong)
    cells = [_fit(row.time_us, 9), _fit(row.algbw_gbps, 7), _fit(row.busbw_gbps, 7), f"{wrong:>6}"]
    if per_iteration:
        stats = row.stats_us or {}
        cells += [_fit(stats[k], 8) if k in stats else f"{'N/A':>8}" for k in ("min", "p50", "p99", "max", "stdev")]
    if compressed:
        sent = "N/A" if row.sent_bytes is None else str(row.sent_bytes)
        cells += [f"{sent:>10}", _fit(row.compression, 6), _sci(row.err_rel_l2, 8),
                  _sci(row.err_max_abs, 8), _fit(row.dense_busbw_gbps, 7)]
    return "".join(f"  {c}" for c in cells)


def line(rows: dict[str, Row], per_iteration: bool = False, compressed: bool | None = None) -> str:
    """One table line from the rows of one size, keyed by placement value (``compressed``
    None: the compressed columns when a row has them)."""
    first = next(iter(rows.values()))
    dtype = DTYPES[first.dtype].nccl_tests_name if first.dtype in DTYPES else (first.dtype or "N/A")
    root = str(first.root) if first.root is not None else "-1"
    size = "N/A" if first.bytes is None else first.bytes
    count = "N/A" if first.count is None else first.count
    pre = (f"  {size:>12}  {count:>12}  {dtype:>8}  {first.op or 'none':>6}"
           f"  {root:>6}")
    if compressed is None:
        compressed = any(is_compressed(r) for r in rows.values())
    return pre + "".join(_half(rows.get(p), per_iteration, compressed) for p in PLACEMENTS)


def footer(rows: Iterable[Row]) -> str:
    """Out-of-bounds status, peak busbw (with where it was reached) and nccl-tests' average."""
    rows = list(rows)
    checked = [r for r in rows if r.wrong is not None]
    wrong = sum(r.wrong or 0 for r in checked)
    if not checked:
        status = "N/A (validation off)"
    else:
        status = f"{wrong} {'OK' if wrong == 0 else 'FAILED'}"
    lines = [f"# Out of bounds values : {status}"]
    rows = [r for r in rows if r.busbw_gbps is not None]  # imported rows may lack a bandwidth
    if rows:
        peak = max(rows, key=lambda r: r.busbw_gbps)
        where = f"{format_bytes(peak.bytes)} {peak.placement.replace('_', '-')}"
        if len({(r.dtype, r.op) for r in rows}) > 1:
            where += f" {peak.dtype}{' ' + peak.op if peak.op else ''}"
        mean = sum(r.busbw_gbps for r in rows) / len(rows)
        lines.append(f"# Peak bus bandwidth   : {peak.busbw_gbps:.2f} GB/s at {where}")
        lines.append(f"# Avg bus bandwidth    : {mean:.4f} GB/s (nccl-tests' mean over all {len(rows)} "
                     "rows; small sizes pull it down)")
    return "\n".join(lines)


def table_title(row: Row, nnodes: int | None = None) -> str:
    nodes = f" on {nnodes} node{'s' if nnodes != 1 else ''}" if nnodes else ""
    executor = f" ({row.executor} executor)" if row.executor not in ("library",) else ""
    ranks = f"{row.nranks} rank{'s' if row.nranks != 1 else ''}" if row.nranks else "unknown rank count"
    return (f"{row.collective} · algorithm {row.algorithm}{executor} · backend {row.backend} · "
            f"{ranks}{nodes} · time = {row.aggregation or 'unknown'} over ranks, "
            f"{row.timing or 'unknown'} timing")


def render(rows: Sequence[Row], nnodes: int | None = None) -> str:
    """Whole tables (one per collective × algorithm × backend) from rows, e.g. from a file."""
    out: list[str] = []
    for _key, group in group_rows(rows).items():
        per_iteration = any(r.stats_us for r in group)
        compressed = any(is_compressed(r) for r in group)
        out.append(header(table_title(group[0], nnodes), per_iteration, compressed))
        for by_placement in lines_of(group):
            out.append(line(by_placement, per_iteration, compressed))
        out.append(footer(group))
        out.append("#")
    return "\n".join(out)


def group_rows(rows: Sequence[Row]) -> dict[tuple[Any, ...], list[Row]]:
    groups: dict[tuple[Any, ...], list[Row]] = {}
    for row in rows:
        key = (row.collective, row.algorithm, row.backend, row.nranks, row.executor)
        groups.setdefault(key, []).append(row)
    return groups


def lines_of(rows: Sequence[Row]) -> list[dict[str, Row]]:
    """Pair out-of-place and in-place rows of the same dtype/op/size, keeping file order."""
    lines: dict[tuple[Any, ...], dict[str, Row]] = {}
    for row in rows:
        lines.setdefault((row.dtype, row.op, row.root, row.bytes, row.count), {})[row.placement] = row
    return list(lines.values())
