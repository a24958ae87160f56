"""Helpers shared by the algorithm tests (imported as a plain module: tests/ has no packages)."""

from __future__ import annotations

from collbench.algorithms import Collective, Problem, Schedule, algorithms
from collbench.algorithms.registry import Algorithm, Implementation


def implementations() -> list[tuple[Algorithm, Implementation]]:
    """Every registered (algorithm, implementation) pair, ``native`` excluded."""
    return [(algo, impl) for algo in algorithms() if not algo.native
            for impl in algo.implementations.values()]


def impl_id(pair: tuple[Algorithm, Implementation]) -> str:
    return f"{pair[0].name}-{pair[1].collective.value}"


IMPLEMENTATIONS = implementations()


def build(name: str, collective: Collective | str, nranks: int, count: int, root: int = 0,
          layout=None, options=None) -> Schedule:
    """The schedule of algorithm ``name``."""
    from collbench.algorithms import get_algorithm

    coll = collective if isinstance(collective, Collective) else Collective.parse(collective)
    return get_algorithm(name).schedule(Problem(coll, nranks, count, root, layout), options)
