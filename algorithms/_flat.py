"""Whole-communicator generators built from a family's core functions.

Each family (ring, direct, recursive doubling, ...) writes its algorithm once as a *core* that
works on any group of ranks, so hierarchical algorithms can run it on sub-groups. The generator
the registry calls is that core applied to all ranks; these factories build it, so a family
module only says ``allreduce = flat_allreduce(allreduce_core)``.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from ._build import INPUT, OUTPUT, Builder, Partition, Units, world
from .schedule import Problem, Program

Generator = Callable[[Problem, int, Mapping[str, Any]], Program]


def flat_units(lo: int, hi: int) -> Units:
    """Member ``i`` owns exactly block ``i``."""
    return ((lo, hi),)


def flat_allreduce(core: Callable[..., None]) -> Generator:
    """Allreduce of the whole input into the whole output over every rank."""
    def allreduce(problem: Problem, rank: int, options: Mapping[str, Any]) -> Program:
        b = Builder(rank)
        core(b, world(problem.nranks, rank), INPUT, OUTPUT, problem.count, 0, 0, options)
        return b.build()
    allreduce.__doc__ = f"Flat allreduce by {core.__module__}.{core.__name__}."
    return allreduce


def flat_allgather(core: Callable[..., None]) -> Generator:
    """Allgather: block ``r`` of the output is rank ``r``'s input."""
    def allgather(problem: Problem, rank: int, options: Mapping[str, Any]) -> Program:
        p, count = problem.nranks, problem.count
        b = Builder(rank)
        core(b, world(p, rank), Partition(count * p, p), OUTPUT, flat_units, INPUT.at(0, count), 0)
        return b.build()
    allgather.__doc__ = f"Flat allgather by {core.__module__}.{core.__name__}."
    return allgather


def flat_reduce_scatter(core: Callable[..., None]) -> Generator:
    """Reduce-scatter: rank ``r`` gets block ``r`` of everyone's input, reduced."""
    def reduce_scatter(problem: Problem, rank: int, options: Mapping[str, Any]) -> Program:
        p, count = problem.nranks, problem.count
        b = Builder(rank)
        core(b, world(p, rank), Partition(count * p, p), INPUT, OUTPUT, False, 0, 0)
        return b.build()
    reduce_scatter.__doc__ = f"Flat reduce-scatter by {core.__module__}.{core.__name__}."
    return reduce_scatter
