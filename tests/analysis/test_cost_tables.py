"""The cost tables in the docstrings of :mod:`collbench.analysis.model.costs`' family modules
are what the code computes.

Every family module's docstring holds its rows of the formula table (one table with a header,
three rules), and :mod:`collbench.analysis.model.costs.hierarchical` the rows that are sums of
them (one table, two rules). Every row is parsed and evaluated; the closed-form phases of the
same algorithm are costed under machines that isolate one term (α only, β only, γ only: one
link class, no NIC sharing, no copy cost) and must give the row's coefficients exactly. A row
the parser does not understand fails the test, a registered form without a row fails it, and a
row in a module other than the one that registers its form fails it, so the tables cannot
drift from the code.
"""

from __future__ import annotations

import math
import re
from types import ModuleType
from typing import NamedTuple

import pytest

from collbench.algorithms import Collective, Layout, Problem
from collbench.algorithms.double_binary_tree import trees
from collbench.analysis.model.cost import Link, Machine, Phase, total
from collbench.analysis.model.costs import hierarchical, registered
from collbench.analysis.model.forms import FAMILIES, phases, regular_count

TERMS = ("alpha", "beta", "gamma")
FLAT_FAMILIES = [m for m in FAMILIES if m is not hierarchical]


class Row(NamedTuple):
    collective: Collective
    algorithm: str
    cells: tuple[str, str, str]    # α, β × n, γ × n formulas
    module: str                    # the family module whose docstring holds the row


class Sum(NamedTuple):
    """A hierarchical row: a sum of (collective, algorithm, ranks, bytes) terms."""

    collective: Collective
    terms: tuple[tuple[Collective, str, str, str], ...]


# -- parsing the docstrings --------------------------------------------------------------------

_RULE = re.compile(r"=+( +=+)+")


def _table_body(doc: str, nrules: int) -> tuple[list[str], list[str]]:
    """(the rule lines, the rows) of the one table in ``doc``: ``nrules`` rules (3 with a
    header, 2 without); a row continued on indented lines is joined."""
    lines = doc.splitlines()
    rules = [i for i, line in enumerate(lines) if _RULE.fullmatch(line)]
    assert len(rules) == nrules, f"expected one {nrules}-rule table, found rules at {rules}"
    rows: list[str] = []
    for line in lines[rules[-2] + 1:rules[-1]]:
        if line.startswith(" ") and rows:
            rows[-1] += " " + line.strip()
        elif line.strip():
            rows.append(line)
    return [lines[i] for i in rules], rows


def _columns(header_rule: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in re.finditer(r"=+", header_rule)]


def module_rows(module: ModuleType) -> list[Row]:
    rules, rows = _table_body(module.__doc__ or "", 3)
    cols = _columns(rules[0])
    assert len(cols) == 4, f"{module.__name__}: the table needs 4 columns"
    out = []
    for line in rows:
        cells = [line[a:(cols[i + 1][0] if i + 1 < len(cols) else len(line))].strip()
                 for i, (a, _) in enumerate(cols)]
        coll, algo = cells[0].split()
        out.append(Row(Collective.parse(coll), algo, (cells[1], cells[2], cells[3]),
                       module.__name__))
    return out


def formula_rows() -> list[Row]:
    return [row for module in FLAT_FAMILIES for row in module_rows(module)]


def sum_rows() -> list[Sum]:
    _, rows = _table_body(hierarchical.__doc__ or "", 2)
    out = []
    for line in rows:
        m = re.fullmatch(r"hierarchical (\w+)\s+(.*)", line)
        assert m, f"cannot read hierarchical row {line!r}"
        terms = []
        for term in m.group(2).split(" + "):
            t = re.fullmatch(r"(\w+) (\w+) \((\w+), ([\w/]+)\)", term.strip())
            assert t, f"cannot read term {term!r} of {line!r}"
            terms.append((Collective.parse(t.group(1)), t.group(2), t.group(3), t.group(4)))
        out.append(Sum(Collective.parse(m.group(1)), tuple(terms)))
    return out


# -- evaluating a formula ------------------------------------------------------------------------

_SYMBOLS = [("⌈lg p⌉", " C "), ("lg p'", " L "), ("p'", " q "), ("m_r", " mr "), ("·", "*")]
_FUNCTIONS = {"max": max, "min": min}
_TOKEN = re.compile(r"\s*(?:(\d+)|([A-Za-z_]\w*)|(.))")


def to_python(formula: str) -> str:
    """The docstring notation as a Python expression: named symbols, ``[+x]`` -> ``+ fold*(x)``,
    implicit multiplication made explicit (``2(p-1)``, ``2 L``, ``2k``)."""
    text = formula
    for sym, name in _SYMBOLS:
        text = text.replace(sym, name)
    text = re.sub(r"\[\+([^\]]*)\]", r"+ fold*(\1)", text)
    tokens = []
    for num, name, op in _TOKEN.findall(text):
        tokens.append(("n", num) if num else ("v", name) if name else ("o", op))
    out: list[str] = []
    prev: tuple[str, str] | None = None
    for kind, tok in tokens:
        if not tok.strip():
            continue
        ends_value = prev is not None and (prev[0] == "n" or prev[1] == ")"
                                           or (prev[0] == "v" and prev[1] not in _FUNCTIONS))
        if ends_value and (kind in ("n", "v") or tok == "("):
            out.append("*")
        out.append(tok)
        prev = (kind, tok)
    return " ".join(out)


def symbols(p: int, k: int = 1, ports: int = 1, **extra: float) -> dict[str, float]:
    q = 1 << (p.bit_length() - 1)
    r = p - q
    L = q.bit_length() - 1
    return {"p": p, "q": q, "L": L, "C": math.ceil(math.log2(p)) if p > 1 else 0,
            "s": sum(min(1 << j, r) for j in range(L)), "fold": 1 if r else 0,
            "k": k, "ports": ports, **extra}


def evaluate(formula: str, values: dict[str, float]) -> float:
    code = to_python(formula)
    names = set(re.findall(r"[A-Za-z_]\w*", code)) - set(_FUNCTIONS)
    unknown = names - set(values)
    assert not unknown, f"formula {formula!r} uses unknown symbols {sorted(unknown)}"
    return float(eval(code, {"__builtins__": {}, **_FUNCTIONS}, dict(values)))  # noqa: S307


# -- the code's side -----------------------------------------------------------------------------

def machines(ports: int, nics: int = 1024) -> dict[str, Machine]:
    """One machine per term; intra and inter links equal, NICs never shared."""
    return {"alpha": Machine(Link(1.0, 0.0, ports), Link(1.0, 0.0), nics=nics),
            "beta": Machine(Link(0.0, 1.0, ports), Link(0.0, 1.0), nics=nics),
            "gamma": Machine(Link(0.0, 0.0, ports), Link(0.0, 0.0), nics=nics, gamma=1.0)}


def largest_buffer(problem: Problem) -> int:
    """n in elements: allgather's output, reduce_scatter's input, the vector otherwise."""
    if problem.collective in (Collective.ALLGATHER, Collective.REDUCE_SCATTER):
        return problem.count * problem.nranks
    return problem.count


def coefficients(ph: list[Phase], n: int, ports: int = 1) -> dict[str, float]:
    """The α count and the β, γ multiples of n (itemsize 1) of the phases."""
    ms = machines(ports)
    return {"alpha": total(ph, ms["alpha"]).total,
            "beta": total(ph, ms["beta"]).total / n,
            "gamma": total(ph, ms["gamma"]).total / n}


def uses(row: Row, name: str) -> bool:
    """Whether a row's formulas use the symbol ``name``."""
    return any(name in re.findall(r"[A-Za-z_]\w*", to_python(cell)) for cell in row.cells)


def code_coefficients(row: Row, p: int, k: int, ports: int) -> tuple[dict[str, float], list[Phase]]:
    """The closed form's coefficients for a row's algorithm at p ranks on one node."""
    chunked = uses(row, "k") or row.algorithm == "double_binary_tree"
    options = {"chunks": k} if chunked else {}
    count = regular_count(p, None, k) * 2
    problem = Problem(row.collective, p, count, root=p // 2)
    ph = phases(row.algorithm, problem, 1, False, options)
    assert ph is not None, f"{row.algorithm} {row.collective.value}: no closed form at p={p}"
    return coefficients(ph, largest_buffer(problem), ports), ph


# -- the tests -----------------------------------------------------------------------------------

ROWS = formula_rows()


def test_the_tables_have_every_row() -> None:
    names = {(r.collective, r.algorithm) for r in ROWS}
    assert len(names) == len(ROWS) == 17
    assert {s.collective for s in sum_rows()} == {Collective.ALLREDUCE, Collective.ALLGATHER,
                                                  Collective.REDUCE_SCATTER}


def test_every_registered_form_has_its_row_beside_it() -> None:
    """Every closed form of a flat algorithm has one row, in the docstring of the module that
    registers it; every hierarchical form one sum row."""
    forms = registered()
    flat = {(coll, algo): form.__module__ for (algo, coll), form in forms.items()
            if algo != "hierarchical"}
    assert {(r.collective, r.algorithm): r.module for r in ROWS} == flat
    assert {s.collective for s in sum_rows()} == {coll for algo, coll in forms
                                                  if algo == "hierarchical"}


def test_parser_notation() -> None:
    assert to_python("2(p-1)") == "2 * ( p - 1 )"
    assert to_python("2 lg p' [+2]") == "2 * L + fold * ( 2 )"
    assert to_python("m/(2k)") == "m / ( 2 * k )"
    assert to_python("max(1, (p-1)/ports)/p") == "max ( 1 , ( p - 1 ) / ports ) / p"
    values = symbols(12)
    assert (values["q"], values["L"], values["s"], values["fold"]) == (8, 3, 7, 1)
    # the two rows that were wrong before: recursive doubling allgather at p = 12 ...
    assert evaluate("(p'-1+s)/p [+(p+1)/p]", values) == pytest.approx(2.25)
    # ... and recursive halving reduce_scatter at p = 3
    assert evaluate("(p'-1+s)/p [+(p+1)/p]", symbols(3)) == pytest.approx(2.0)
    assert evaluate("(p'-1+s)/p [+1]", symbols(3)) == pytest.approx(5 / 3)


def _cases(row: Row) -> list[tuple[int, int, int]]:
    """(p, chunks, ports) to check a row at: more chunks and ports only where it uses them."""
    chunks = (1, 3) if uses(row, "k") else (1,)
    ports = (1, 3) if uses(row, "ports") else (1,)
    return [(p, k, n_ports) for p in range(2, 65) for k in chunks for n_ports in ports]


@pytest.mark.parametrize("row", [r for r in ROWS if r.algorithm != "double_binary_tree"],
                         ids=lambda r: f"{r.collective.value}-{r.algorithm}")
def test_formula_row_equals_the_closed_form(row: Row) -> None:
    for p, k, ports in _cases(row):
        got, _ = code_coefficients(row, p, k, ports)
        values = symbols(p, k, ports)
        for term, cell in zip(TERMS, row.cells):
            want = evaluate(cell, values)
            assert got[term] == pytest.approx(want, rel=1e-12, abs=1e-12), \
                (f"{row.collective.value} {row.algorithm} p={p} k={k} ports={ports}: "
                 f"{term} is {got[term]!r} in the code, the table says {cell} = {want!r}")


def test_double_binary_tree_row() -> None:
    row = next(r for r in ROWS if r.algorithm == "double_binary_tree")
    for p in range(2, 65):
        for k in (1, 3, 8):
            got, ph = code_coefficients(row, p, k, 1)
            height = max(t.height[t.root] for t in trees(p))
            steps = sum(phase.repeat for phase in ph)
            assert steps == k + 2 * height - 1
            m = got["alpha"]
            assert steps <= m <= 4 * steps
            mr = got["gamma"] * 2 * k
            assert 0 < mr <= m and mr == pytest.approx(round(mr))
            values = symbols(p, k, m=m, mr=mr)
            for term, cell in zip(TERMS, row.cells):
                assert got[term] == pytest.approx(evaluate(cell, values), rel=1e-12), (p, k, term)


def _row_coefficients(coll: Collective, algo: str, ranks: int) -> dict[str, float]:
    """A formula row evaluated at ``ranks`` ranks (0 for a single rank: nothing to do)."""
    row = next(r for r in ROWS if r.collective is coll and r.algorithm == algo)
    if ranks == 1:
        return dict.fromkeys(TERMS, 0.0)
    values = symbols(ranks)
    return {term: evaluate(cell, values) for term, cell in zip(TERMS, row.cells)}


@pytest.mark.parametrize("row", sum_rows(), ids=lambda s: s.collective.value)
def test_hierarchical_rows_are_sums_of_rows(row: Sum) -> None:
    for nodes in range(1, 9):
        for per_node in (1, 2, 3, 4):
            p = nodes * per_node
            if p < 2:
                continue
            layout = Layout.blocked(p, per_node)
            count = regular_count(p, layout, 1) * 2
            problem = Problem(row.collective, p, count, layout=layout)
            ph = phases("hierarchical", problem, 1, False, {})
            assert ph is not None
            got = coefficients(ph, largest_buffer(problem))
            want = dict.fromkeys(TERMS, 0.0)
            for coll, algo, ranks, size in row.terms:
                r = {"g": per_node, "P": nodes}[ranks]
                scale = {"n": 1.0, "n/g": 1 / per_node}[size]
                for term, value in _row_coefficients(coll, algo, r).items():
                    want[term] += value * (1.0 if term == "alpha" else scale)  # bytes scale
            for term in TERMS:
                assert got[term] == pytest.approx(want[term], rel=1e-12, abs=1e-12), \
                    (f"hierarchical {row.collective.value} on {nodes} x {per_node}: {term} is "
                     f"{got[term]!r} in the code, the table's sum says {want[term]!r}")
