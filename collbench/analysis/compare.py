"""``collbench compare A.jsonl B.jsonl``: B relative to A, row by row, with significance.

Rows are matched on (collective, algorithm, backend, dtype, op, placement, bytes). For each
match: the time ratio B/A (above 1: B is slower), the busbw ratio B/A, and -- when both rows
carry per-iteration samples (``run -I``) -- a two-sided **Mann-Whitney U test** on the samples:
``scipy.stats.mannwhitneyu`` when scipy is installed, otherwise the same test with the normal
approximation and tie correction computed with numpy (:func:`mann_whitney_u`). Batch rows
(one clock around the loop) have no samples, so they get no test: the mark says so instead of
pretending. Marks: ``*`` significant at ``--alpha`` (default 0.05), ``~`` not significant,
``n/a`` no samples. With many rows some ``*`` are expected by chance (1 in 20 at 0.05).

The summary is the geometric mean of the time ratios (and of the busbw ratios) over the
matched rows, overall and per collective × algorithm.

``--fail-above 5%`` (CI regression check) makes the exit status 1 when B is slower than A by
more than 5 % in the geometric mean, or in any single row where the difference is significant.

Runs that measured different things are refused with one line listing every difference
(rank count, node shape, backend, dtypes/ops, MPI library and thread level, GPUs, schema,
timing method, executor path) unless ``--force``, which compares anyway and prints the same
line as a warning.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from tabulate import tabulate

from ..errors import UsageError
from ..results.files import ResultsFile, Row, read_results
from ..sizes import format_bytes

Key = tuple[str, str, str, str, str | None, str, int]


def row_key(row: Row) -> Key:
    return (row.collective, row.algorithm, row.backend, row.dtype, row.op, row.placement, row.bytes)


# -- significance ------------------------------------------------------------------------------------

def mann_whitney_u(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Two-sided Mann-Whitney U test with the normal approximation (tie-corrected, continuity
    corrected). Returns (U of ``a``, p-value). Pure numpy: the fallback when scipy is missing."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        return math.nan, math.nan
    both = np.concatenate([x, y])
    order = np.argsort(both, kind="mergesort")
    ranks = np.empty(len(both), dtype=float)
    sorted_vals = both[order]
    # average ranks over ties
    i = 0
    tie_term = 0.0
    while i < len(both):
        j = i
        while j + 1 < len(both) and sorted_vals[j + 1] == sorted_vals[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        t = j - i + 1
        tie_term += t ** 3 - t
        i = j + 1
    u1 = float(ranks[:n1].sum() - n1 * (n1 + 1) / 2.0)
    mu = n1 * n2 / 2.0
    n = n1 + n2
    var = n1 * n2 / 12.0 * ((n + 1) - tie_term / (n * (n - 1))) if n > 1 else 0.0
    if var <= 0:
        return u1, 1.0
    z = (abs(u1 - mu) - 0.5) / math.sqrt(var)
    p = math.erfc(max(z, 0.0) / math.sqrt(2.0))
    return u1, min(1.0, p)


def significance_test() -> tuple[str, Callable[[Sequence[float], Sequence[float]], float]]:
    """(name, p-value function) of the test in use."""
    try:
        from scipy.stats import mannwhitneyu  # type: ignore[import-not-found]

        def test(a: Sequence[float], b: Sequence[float]) -> float:
            return float(mannwhitneyu(a, b, alternative="two-sided").pvalue)

        return "Mann-Whitney U, two-sided (scipy.stats.mannwhitneyu)", test
    except ImportError:
        return ("Mann-Whitney U, two-sided, normal approximation with tie correction (numpy; "
                "scipy not installed)"), lambda a, b: mann_whitney_u(a, b)[1]


# -- comparability --------------------------------------------------------------------------------

def _gpus(meta: dict[str, Any]) -> Any:
    devices = (meta.get("backend") or {}).get("devices") or []
    names = sorted({d.get("name") for d in devices if isinstance(d, dict) and d.get("name")})
    return ", ".join(names) or None


def _set(rows: list[Row], attr: str) -> Any:
    values = sorted({str(getattr(r, attr)) for r in rows})
    return ",".join(values) or None


CHECKS: list[tuple[str, Callable[[ResultsFile], Any]]] = [
    ("ranks", lambda f: f.metadata.get("nranks")),
    ("nodes", lambda f: f.metadata.get("nnodes")),
    ("ranks per node", lambda f: tuple(f.metadata.get("ranks_per_node") or ())),
    ("backend", lambda f: (f.metadata.get("spec") or {}).get("backend") or _set(f.rows, "backend")),
    ("dtypes", lambda f: _set(f.rows, "dtype")),
    ("ops", lambda f: _set(f.rows, "op")),
    ("MPI library", lambda f: (f.metadata.get("mpi") or {}).get("library_version")),
    ("MPI thread level", lambda f: (f.metadata.get("mpi") or {}).get("thread_level")),
    ("GPU", lambda f: _gpus(f.metadata)),
    ("schema", lambda f: f.metadata.get("schema")),
    ("timing", lambda f: _set(f.rows, "timing")),
    ("aggregation", lambda f: _set(f.rows, "aggregation")),
    ("executor", lambda f: _set([r for r in f.rows if r.algorithm != "native"], "executor")),
]


def differences(a: ResultsFile, b: ResultsFile) -> list[str]:
    """What makes two runs incomparable, as short phrases (empty when comparable)."""
    out = []
    for label, get in CHECKS:
        va, vb = get(a), get(b)
        if va != vb:
            out.append(f"{label} {_shown(va)} vs {_shown(vb)}")
    return out


# -- comparison -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Pair:
    a: Row
    b: Row
    p_value: float | None          # None: no samples on one side

    @property
    def time_ratio(self) -> float:
        return self.b.time_us / self.a.time_us if self.a.time_us > 0 else math.inf

    @property
    def busbw_ratio(self) -> float | None:
        a, b = self.a.busbw_gbps, self.b.busbw_gbps  # None: an imported log without bandwidth
        return b / a if a is not None and b is not None and a > 0 else None

    def mark(self, alpha: float) -> str:
        if self.p_value is None:
            return "n/a"
        return "*" if self.p_value < alpha else "~"


@dataclass
class Comparison:
    a: ResultsFile
    b: ResultsFile
    pairs: list[Pair]
    only_a: list[Row]
    only_b: list[Row]
    test_name: str
    differences: list[str]
    duplicates: int = 0

    def geomean(self, pairs: list[Pair] | None = None, busbw: bool = False) -> float | None:
        values = [(p.busbw_ratio if busbw else p.time_ratio) for p in (self.pairs if pairs is None else pairs)]
        values = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
        if not values:
            return None
        return math.exp(sum(math.log(v) for v in values) / len(values))

    def regressions(self, threshold: float, alpha: float) -> list[str]:
        """Why ``--fail-above threshold`` fails (empty: it passes)."""
        why = []
        g = self.geomean()
        if g is not None and g > 1 + threshold:
            why.append(f"geometric-mean time ratio {g:.3f} is more than {threshold:.1%} slower")
        for p in self.pairs:
            if p.time_ratio > 1 + threshold and p.p_value is not None and p.p_value < alpha:
                why.append(f"{_label(p.b)}: {p.time_ratio:.3f}x slower (p = {p.p_value:.2g})")
        return why


def _label(r: Row) -> str:
    return (f"{r.collective} {r.algorithm} {r.dtype}{' ' + r.op if r.op else ''} "
            f"{r.placement.replace('_', '-')} {format_bytes(r.bytes)}")


def compare(path_a: str, path_b: str, force: bool = False) -> Comparison:
    """Match the rows of two results files and test each pair.

    Raises:
        UsageError: the runs are not comparable (unless ``force``), or nothing matches.
    """
    a, b = read_results(Path(path_a)), read_results(Path(path_b))
    diffs = differences(a, b)
    if diffs and not force:
        raise UsageError(f"{path_a} and {path_b} are not comparable: {'; '.join(diffs)} "
                         f"(--force compares them anyway)")
    name, test = significance_test()
    index_b: dict[Key, Row] = {}
    duplicates = 0
    for row in b.rows:
        if row_key(row) in index_b:
            duplicates += 1
            continue
        index_b[row_key(row)] = row
    pairs, only_a, seen = [], [], set()
    for row in a.rows:
        key = row_key(row)
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        other = index_b.get(key)
        if other is None:
            only_a.append(row)
            continue
        p = None
        if row.samples_us and other.samples_us and len(row.samples_us) > 1 and len(other.samples_us) > 1:
            p = test(row.samples_us, other.samples_us)
        pairs.append(Pair(row, other, p))
    only_b = [r for k, r in index_b.items() if k not in seen]
    if not pairs:
        raise UsageError(f"no rows of {path_a} and {path_b} match on collective, algorithm, backend, "
                         f"dtype, op, placement and size")
    return Comparison(a, b, pairs, only_a, only_b, name, diffs, duplicates)


def format_comparison(c: Comparison, alpha: float = 0.05, fmt: str = "text") -> str:
    if fmt == "json":
        return json.dumps({
            "a": str(c.a.path), "b": str(c.b.path), "test": c.test_name, "alpha": alpha,
            "differences": c.differences,
            "geomean_time_ratio": c.geomean(), "geomean_busbw_ratio": c.geomean(busbw=True),
            "rows": [{"collective": p.a.collective, "algorithm": p.a.algorithm, "backend": p.a.backend,
                      "dtype": p.a.dtype, "op": p.a.op, "placement": p.a.placement, "bytes": p.a.bytes,
                      "time_us_a": p.a.time_us, "time_us_b": p.b.time_us, "time_ratio": p.time_ratio,
                      "busbw_ratio": p.busbw_ratio, "p_value": p.p_value, "mark": p.mark(alpha)}
                     for p in c.pairs],
            "only_a": len(c.only_a), "only_b": len(c.only_b)}, indent=1)
    headers = ["collective", "algorithm", "dtype", "op", "placement", "size", "A time (us)",
               "B time (us)", "time B/A", "busbw B/A", "p", "sig"]
    body = []
    for p in c.pairs:
        r = p.a
        body.append([r.collective, r.algorithm, r.dtype, r.op or "-", r.placement.replace("_", "-"),
                     format_bytes(r.bytes), f"{p.a.time_us:.4g}", f"{p.b.time_us:.4g}",
                     f"{p.time_ratio:.3f}", "-" if p.busbw_ratio is None else f"{p.busbw_ratio:.3f}",
                     "-" if p.p_value is None else f"{p.p_value:.2g}", p.mark(alpha)])
    if fmt == "csv":
        import csv
        import io

        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(headers)
        writer.writerows(body)
        return buffer.getvalue()
    lines = [f"# A = {c.a.path}", f"# B = {c.b.path}",
             f"# time B/A > 1: B is slower; significance: {c.test_name} on per-iteration samples, "
             f"'*' p < {alpha:g}, '~' not significant, 'n/a' no samples (batch timing: run with -I)"]
    if c.differences:
        lines.append(f"# warning (--force): not comparable: {'; '.join(c.differences)}")
    lines += [f"# warning: {w}" for w in c.a.warnings + c.b.warnings]
    lines.append(tabulate(body, headers=headers, tablefmt="github" if fmt == "markdown" else "simple",
                          disable_numparse=True))
    groups: dict[tuple[str, str], list[Pair]] = {}
    for p in c.pairs:
        groups.setdefault((p.a.collective, p.a.algorithm), []).append(p)
    g, gb = c.geomean(), c.geomean(busbw=True)
    lines.append(f"# geometric mean over {len(c.pairs)} rows: time B/A {_ratio(g)}"
                 + (f", busbw B/A {gb:.3f}" if gb else ""))
    if len(groups) > 1:
        for (coll, algo), items in groups.items():
            lines.append(f"#   {coll} {algo}: time B/A {_ratio(c.geomean(items))} ({len(items)} rows)")
    tested = [p for p in c.pairs if p.p_value is not None]
    if tested:
        sig = [p for p in tested if p.p_value < alpha]
        slower = sum(1 for p in sig if p.time_ratio > 1)
        lines.append(f"# significant: {len(sig)} of {len(tested)} tested rows ({slower} slower, "
                     f"{len(sig) - slower} faster)")
    else:
        lines.append("# no row has per-iteration samples on both sides: ratios only, no significance")
    if c.only_a or c.only_b:
        lines.append(f"# unmatched: {len(c.only_a)} rows only in A, {len(c.only_b)} only in B")
    if c.duplicates:
        lines.append(f"# {c.duplicates} duplicate rows ignored (the first of each key is compared)")
    return "\n".join(lines)


def parse_fraction(text: str, flag: str = "--fail-above") -> float:
    """``5%`` or ``0.05`` -> 0.05 (``flag`` names the option in the error)."""
    t = text.strip()
    try:
        value = float(t[:-1]) / 100.0 if t.endswith("%") else float(t)
    except ValueError:
        raise UsageError(f"{flag}: expected a percentage like 5% or a fraction like 0.05, "
                         f"got {text!r}") from None
    if not math.isfinite(value):
        raise UsageError(f"{flag}: expected a finite percentage or fraction, got {text!r}")
    if value < 0:
        raise UsageError(f"{flag}: must not be negative, got {text!r}")
    return value


def _ratio(value: float | None) -> str:
    """A geometric mean for the text table; None when no row had a positive time on both sides."""
    return "n/a (no row has a positive time in both files)" if value is None else f"{value:.3f}"


def _shown(value: object) -> str:
    """A metadata value for a mismatch message (tuples as a/b/c)."""
    return "/".join(map(str, value)) if isinstance(value, tuple) else str(value)
