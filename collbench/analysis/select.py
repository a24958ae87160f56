"""``--algo auto``: pick, per size, the algorithm the cost model (or an earlier sweep) says is fastest.

Two sources of truth:

* the **model** (default): every registered algorithm that the backend can run for the request
  (preconditions and ``-O`` options included) is costed with a machine profile -- ``--profile``,
  else this host's calibrated profile (``collbench calibrate``), else the built-in ``generic``
  one -- for this job's rank count, node layout and dtype; the cheapest wins (ties: registry
  order). The library's own collective (``native``) has no model and is never picked this way.
* a **previous sweep** (``--auto-from FILE``): the algorithm with the lowest measured time at
  this size (same collective and rank count; same dtype/op when the file has them, else any;
  the nearest measured size when this one was not measured). ``native`` can win here.

Every rank must run the same algorithm: rank 0 decides and broadcasts the choice (with any
error, so a failure stops every rank at once). The row records the chosen ``algorithm`` and
``selected_by`` (``model:<profile>`` or ``results:<file>``).

Variants: :meth:`Selector.choose_variant` searches each candidate's options too (ring channels,
pipeline chunks, the hierarchical algorithm's inner and outer levels; see
:func:`~.model.predict.variants`) and returns the winner with its options -- at 256 Perlmutter
nodes and 1 GiB the hierarchical allreduce with ``outer=rabenseifner`` is several times faster
than with its default outer level. :meth:`Selector.choose` compares the algorithms with the
options the run will use (``-O``), since those are what gets measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..algorithms import Collective, Layout
from ..algorithms.registry import algorithms_for
from ..errors import UsageError
from ..results.files import Row, read_results

AUTO = "auto"


def check_auto(auto_profile: str | None, auto_from: str | None) -> None:
    """Fail early (on every rank, before anything runs) when the profile or file is unusable."""
    if auto_from:
        results = read_results(Path(auto_from))
        if not results.rows:
            raise UsageError(f"--auto-from {auto_from}: the file has no rows to choose from")
    else:
        from .model.profile import load_profile

        load_profile(auto_profile)


@dataclass
class Selector:
    """Chooses an algorithm per (collective, size, dtype, op) for one job."""

    nranks: int
    layout: Layout | None
    runnable: Callable[[Collective, str, str, str | None], bool]   # (coll, algo, dtype, op)
    auto_profile: str | None = None
    auto_from: str | None = None
    algorithm_options: dict[str, Any] | None = None
    skew: Any = None  # alltoallv's count matrix (algorithms.vcounts.Skew): the model prices it

    def __post_init__(self) -> None:
        self._model = None
        self._rows: list[Row] | None = None
        self._cache: dict[tuple, tuple[str, str]] = {}

    @property
    def source(self) -> str:
        if self.auto_from:
            return f"results:{Path(self.auto_from).name}"
        return f"model:{self._get_model().profile.name}"

    def _get_model(self) -> Any:
        if self._model is None:
            from .model.predict import Model
            from .model.profile import load_profile

            self._model = Model(load_profile(self.auto_profile), self.skew)
        return self._model

    def candidates(self, collective: Collective, dtype: str, op: str | None) -> list[str]:
        names = [a.name for a in algorithms_for(collective, include_native=False)]
        return [n for n in names if self.runnable(collective, n, dtype, op)]

    def choose(self, collective: Collective, size: int, dtype: str, op: str | None,
               in_place: bool = False) -> tuple[str, str]:
        """(algorithm, selected_by) for one size."""
        key = (collective, size, dtype, op, in_place)
        if key not in self._cache:
            if self.auto_from:
                self._cache[key] = (self._from_results(collective, size, dtype, op), self.source)
            else:
                self._cache[key] = (self._from_model(collective, size, dtype, op, in_place),
                                    self.source)
        return self._cache[key]

    def _from_model(self, collective: Collective, size: int, dtype: str, op: str | None,
                    in_place: bool) -> str:
        model = self._get_model()
        best, best_time = None, math.inf
        for name in self.candidates(collective, dtype, op):
            pred = model.predict(collective, name, self.nranks, size, dtype, self.layout, in_place,
                                 self.algorithm_options)
            if pred is not None and pred.cost.total < best_time:
                best, best_time = name, pred.cost.total
        if best is None:
            raise UsageError(f"--algo auto: the model has no algorithm for {collective.value} at "
                             f"{self.nranks} ranks that this backend can run")
        return best

    def choose_variant(self, collective: Collective, size: int, dtype: str, op: str | None,
                       in_place: bool = False) -> tuple[str, dict[str, Any], str]:
        """(algorithm, options, selected_by): the fastest variant of every runnable algorithm
        by the model (options the user fixed with ``-O`` are kept, not searched)."""
        from .model.predict import variants

        model = self._get_model()
        fixed = dict(self.algorithm_options or {})
        best: tuple[float, str, dict[str, Any]] | None = None
        for name in self.candidates(collective, dtype, op):
            for opts in ([fixed] if fixed else variants(collective, name, self.nranks, self.layout)):
                pred = model.predict(collective, name, self.nranks, size, dtype, self.layout,
                                     in_place, opts or None)
                if pred is not None and (best is None or pred.cost.total < best[0]):
                    best = (pred.cost.total, name, dict(opts))
        if best is None:
            raise UsageError(f"--algo auto: the model has no algorithm for {collective.value} at "
                             f"{self.nranks} ranks that this backend can run")
        return best[1], best[2], self.source

    def _from_results(self, collective: Collective, size: int, dtype: str, op: str | None) -> str:
        if self._rows is None:
            self._rows = read_results(Path(self.auto_from)).rows  # type: ignore[arg-type]
        rows = [r for r in self._rows if r.collective == collective.value and r.nranks == self.nranks
                and self.runnable(collective, r.algorithm, dtype, op)]
        if not rows:
            raise UsageError(f"--auto-from {self.auto_from}: no {collective.value} rows at "
                             f"{self.nranks} ranks for an algorithm this backend can run")
        same = [r for r in rows if r.dtype == dtype and r.op == op]
        rows = same or rows
        nearest = min({r.bytes for r in rows}, key=lambda b: (abs(math.log2(max(b, 1)) -
                                                                   math.log2(max(size, 1))), b))
        at = [r for r in rows if r.bytes == nearest]
        return min(at, key=lambda r: r.time_us).algorithm


def _agreed(ctrl: Any, decide: Any) -> Any:
    """Rank 0 decides, everyone gets the same answer (or the same error)."""
    choice, error = None, None
    if ctrl.Get_rank() == 0:
        try:
            choice = decide()
        except UsageError as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - reported on every rank, not only rank 0
            error = f"--algo auto failed: {type(exc).__name__}: {exc}"
    choice, error = ctrl.bcast((choice, error), root=0)
    if error:
        raise UsageError(error)
    return choice


def agreed_choice(ctrl: Any, selector: Selector | None, collective: Collective, size: int,
                  dtype: str, op: str | None, in_place: bool = False) -> tuple[str, str]:
    """(algorithm, selected_by), the same on every rank."""
    return _agreed(ctrl, lambda: selector.choose(collective, size, dtype, op, in_place))  # type: ignore[union-attr]


def agreed_variant(ctrl: Any, selector: Selector | None, collective: Collective, size: int,
                   dtype: str, op: str | None, in_place: bool = False
                   ) -> tuple[str, dict[str, Any], str]:
    """Like :func:`agreed_choice`, with the winning variant's options: (algorithm, options,
    selected_by). Choosing from a results file (--auto-from) keeps the run's options."""
    def decide() -> tuple[str, dict[str, Any], str]:
        assert selector is not None
        if selector.auto_from:
            name, source = selector.choose(collective, size, dtype, op, in_place)
            return name, {}, source
        return selector.choose_variant(collective, size, dtype, op, in_place)

    return _agreed(ctrl, decide)


__all__ = ["AUTO", "Selector", "agreed_choice", "agreed_variant", "check_auto"]
