"""alltoallv's count matrix: how many elements each rank sends each other rank.

A :class:`Skew` describes the matrix independently of the size; with a problem's rank count
``p`` and ``count`` it becomes ``counts[src][dst]`` (:func:`of`). ``count`` keeps its alltoall
meaning: the elements one rank sends its busiest destination, so the busiest rank's receive
buffer is ``p * count`` elements, exactly the buffer an alltoall of the same sweep size has
(collective descriptors, ``collbench.metrics``). No rank's send or receive buffer is larger.

Two families:

* **Zipf** (``Skew(exponent=s)``, ``-O skew=<s>``; the default is ``s = 1``): every rank
  routes the same share of its data to each destination, as tokens pick globally popular
  experts in MoE dispatch::

      counts[src][dst] = floor(count / (dst + 1) ** s)

  Rank 0 is the hot expert; ``s = 0`` is the uniform alltoall; ``s = 1`` gives rank ``d``
  ``1/(d+1)`` of rank 0's traffic; a large ``s`` sends (almost) everything to rank 0. Every
  rank sends ``sum_d counts[.][d] <= p * count`` and rank ``d`` receives ``p * counts[.][d]``.
* **A matrix** (``Skew(weights=W)``, ``-O counts=FILE.json``): ``W`` is ``p x p`` non-negative
  numbers, scaled so that the largest row or column sum becomes ``p * count``::

      counts[src][dst] = floor(count * p * W[src][dst] / B),  B = max(row sums, column sums)

Displacements are packed in rank order: rank ``r`` sends ``counts[r][j]`` elements from
``sdispls[r][j] = sum_{j' < j} counts[r][j']`` of its input and receives ``counts[q][r]`` at
``rdispls[r][q] = sum_{q' < q} counts[q'][r]`` of its output (MPI_Alltoallv's arguments).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .schedule import Problem

DEFAULT_EXPONENT = 1.0
"""The Zipf exponent of ``collbench run alltoallv`` without ``-O skew``."""

MAX_EXPONENT = 64.0


@dataclass(frozen=True)
class Skew:
    """A count-matrix family for alltoallv (see the module docstring).

    Attributes:
        exponent: Zipf exponent ``s >= 0`` (ignored when ``weights`` is given).
        weights: A ``p x p`` matrix of non-negative numbers (rows: senders), or None.
        source: Where ``weights`` came from (a file name), for labels.
    """

    exponent: float = DEFAULT_EXPONENT
    weights: tuple[tuple[float, ...], ...] | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        if self.weights is None:
            s = self.exponent
            if isinstance(s, bool) or not isinstance(s, (int, float)) or not (
                    0 <= s <= MAX_EXPONENT):
                raise ValueError(f"skew exponent must be a number from 0 to {MAX_EXPONENT:g} "
                                 f"(got {s!r})")
            return
        rows = self.weights
        p = len(rows)
        if p == 0 or any(len(row) != p for row in rows):
            raise ValueError(f"a count matrix must be square (p rows of p numbers); got "
                             f"{p} rows of lengths {sorted({len(row) for row in rows})}")
        for row in rows:
            for w in row:
                if isinstance(w, bool) or not isinstance(w, (int, float)) or not (
                        0 <= w < math.inf):
                    raise ValueError(f"count matrix entries must be finite non-negative "
                                     f"numbers (got {w!r})")
        if not any(any(row) for row in rows):
            raise ValueError("a count matrix needs at least one positive entry")

    @property
    def label(self) -> str:
        """``zipf:1`` or ``file:NAME``: what results rows record."""
        if self.weights is not None:
            return f"file:{self.source or 'matrix'}"
        return f"zipf:{self.exponent:g}"

    def reason(self, nranks: int) -> str | None:
        """Why this skew cannot describe ``nranks`` ranks, or None."""
        if self.weights is not None and len(self.weights) != nranks:
            return (f"the count matrix {self.source or ''} is {len(self.weights)} x "
                    f"{len(self.weights)} but the job has {nranks} ranks".replace("  ", " "))
        return None


DEFAULT = Skew()


def to_record(skew: Skew | None) -> dict[str, Any] | None:
    """A skew as results and trace files store it (JSON); None for the default."""
    if skew is None:
        return None
    return {"label": skew.label, "exponent": skew.exponent, "weights": skew.weights,
            "source": skew.source}


def from_record(record: Any) -> Skew | None:
    """The skew a results or trace file recorded (:func:`to_record`); None when absent (the
    default). ValueError for a record that is not one."""
    if record is None:
        return None
    if not isinstance(record, dict):
        raise ValueError(f"a recorded count matrix must be an object, not {type(record).__name__}")
    weights = record.get("weights")
    if weights is not None:
        return Skew(weights=tuple(tuple(row) for row in weights), source=record.get("source"))
    return Skew(exponent=record.get("exponent", DEFAULT_EXPONENT))


@dataclass(frozen=True, eq=False)
class Counts:
    """One problem's count matrix and displacements (int64 arrays, read-only).

    Attributes:
        matrix: ``matrix[src, dst]`` elements from ``src`` to ``dst``.
        sdispls: ``sdispls[r, j]``: where rank ``r``'s block for ``j`` starts in its input.
        rdispls: ``rdispls[r, q]``: where the block from ``q`` starts in rank ``r``'s output.
        send_total, recv_total: Each rank's input and output length.
    """

    matrix: np.ndarray
    sdispls: np.ndarray
    rdispls: np.ndarray
    send_total: np.ndarray
    recv_total: np.ndarray


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


@lru_cache(maxsize=128)
def counts(skew: Skew, nranks: int, count: int) -> Counts:
    """The count matrix of ``skew`` for ``nranks`` ranks and ``count`` (see the module
    docstring), with its displacements.

    Raises:
        ValueError: A matrix skew of another rank count.
    """
    reason = skew.reason(nranks)
    if reason:
        raise ValueError(reason)
    p = nranks
    if skew.weights is None:
        s = float(skew.exponent)
        # a division, not a multiplication by (d+1)**-s: exact whenever the quotient is
        # an integer (count / 3 for s = 1 is never 3.999...)
        row = np.array([count if d == 0 else math.floor(count / float(d + 1) ** s)
                        for d in range(p)], dtype=np.int64)
        matrix = np.tile(row, (p, 1))
    else:
        w = np.array(skew.weights, dtype=np.float64)
        bound = max(float(w.sum(axis=1).max()), float(w.sum(axis=0).max()))
        matrix = np.floor(count * p * w / bound).astype(np.int64)
        matrix = np.minimum(matrix, count * p)
    send_total = matrix.sum(axis=1)
    recv_total = matrix.sum(axis=0)
    sdispls = np.cumsum(matrix, axis=1) - matrix
    rdispls = (np.cumsum(matrix, axis=0) - matrix).T.copy()
    return Counts(_frozen(matrix), _frozen(sdispls), _frozen(rdispls), _frozen(send_total),
                  _frozen(recv_total))


def of(problem: "Problem") -> Counts:
    """The count matrix of an alltoallv problem (its ``skew``, else the default)."""
    return counts(problem.skew or DEFAULT, problem.nranks, problem.count)


def count_of_lengths(lengths: list[int], skew: Skew | None = None) -> int:
    """The ``count`` whose matrix gives these input lengths (one per rank), or ValueError.

    Every entry of the matrix is non-decreasing in ``count``, so equal totals mean equal
    matrices: the smallest count with the same total is the answer if there is one.
    """
    skew = skew or DEFAULT
    p, total = len(lengths), sum(lengths)
    lo, hi = 0, max(total, 1)
    while lo < hi:
        mid = (lo + hi) // 2
        if int(counts(skew, p, mid).send_total.sum()) < total:
            lo = mid + 1
        else:
            hi = mid
    if list(counts(skew, p, lo).send_total) != list(lengths):
        raise ValueError(f"no alltoallv count of {skew.label} gives input lengths {lengths}")
    return lo


# -- parsing (-O skew=..., -O counts=FILE) ---------------------------------------------------------

def parse_exponent(text: Any) -> Skew:
    """``-O skew=<s>`` (also ``zipf:<s>``) as a :class:`Skew`; ValueError with the reason."""
    raw = str(text).strip()
    value = raw[5:] if raw.lower().startswith("zipf:") else raw
    try:
        s = float(value)
    except ValueError:
        raise ValueError(f"-O skew={raw}: expected a Zipf exponent from 0 (uniform) to "
                         f"{MAX_EXPONENT:g}, e.g. skew=1.2") from None
    if not 0 <= s <= MAX_EXPONENT:  # also refuses nan
        raise ValueError(f"-O skew={raw}: the Zipf exponent must be from 0 (uniform) to "
                         f"{MAX_EXPONENT:g}")
    return Skew(exponent=s)


def load_matrix(path: str) -> Skew:
    """``-O counts=FILE.json``: a JSON list of p lists of p non-negative numbers (or an object
    whose ``"counts"`` is one); ValueError with the reason."""
    file = Path(path)
    try:
        data = json.loads(file.read_text())
    except OSError as exc:
        raise ValueError(f"-O counts={path}: cannot read it ({exc.strerror or exc})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"-O counts={path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if isinstance(data, dict):
        data = data.get("counts")
    if not isinstance(data, list) or not all(isinstance(row, list) for row in data):
        raise ValueError(f"-O counts={path}: expected a list of rows (p lists of p numbers), "
                         f"or {{\"counts\": [...]}}")
    try:
        return Skew(weights=tuple(tuple(row) for row in data), source=file.name)
    except ValueError as exc:
        raise ValueError(f"-O counts={path}: {exc}") from None
