"""The algorithm registry: names, aliases, preconditions and schedule generators.

An :class:`Algorithm` is a name (``ring``) with one :class:`Implementation` per collective it
implements. Executors only ever need::

    algo = get_algorithm("ring")                  # aliases resolve; unknown -> ValueError
    reason = algo.precondition(problem, op="sum", options=opts)   # None when it can run
    program = algo.program(problem, rank, opts)   # this rank's steps, O(its own steps)

The name ``native`` is reserved for the library's own collective (``MPI_Allreduce``,
``ncclAllReduce``): it is registered, applies to every collective, and has no schedule.

Adding an algorithm takes one new module with a generator ``f(problem, rank, options) ->
Program`` (:class:`._build.Builder` drops empty messages and sizes scratch; the family modules
export reusable cores over groups, e.g. :func:`.ring.reduce_scatter_core`) and one
:func:`register` call, either at the end of :func:`_register_builtins` or from user code::

    register("my_ring", Collective.ALLREDUCE, my_module.allreduce,
             description="my ring allreduce")

An algorithm with O(p^2) messages can instead give ``rows=f(problem, ranks, options) ->
Rows``, its schedule for many ranks at once as arrays (:mod:`.rows`, e.g. :mod:`.ring_rows`):
the verifier then proves the arrays without building a Python object per message, and the
per-rank generator is derived from the same function.

A user module that calls :func:`register` is loaded into every command and rank with
``collbench run --plugin my_algo.py`` (or ``COLLBENCH_PLUGINS``; collbench/plugins.py); it may
only add new names.

Everything registered is swept by :func:`~.verify.verify_all` (and the test suite).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from . import reduction
from ._build import chunks_problem
from .rows import Rows, RowsEmitter, per_rank
from .schedule import Collective, Layout, Problem, Program, Schedule
from .traffic import CostFunction

Generator = Callable[[Problem, int, Mapping[str, Any]], Program]
Check = Callable[[Problem, Mapping[str, Any]], "str | None"]

NATIVE = "native"


def _normalize(name: str) -> str:
    return name.strip().lower().replace("-", "_")


@dataclass(frozen=True)
class Implementation:
    """One algorithm for one collective.

    Attributes:
        collective: The collective it computes.
        generator: ``generator(problem, rank, options)`` builds rank ``rank``'s program; options
            arrive with the defaults filled in.
        description: One line about this implementation.
        defaults: Every option it accepts, with its default value.
        check: Extra precondition ``check(problem, options) -> reason | None``.
        verify_options: Option sets :func:`~.verify.verify_all` checks (defaults included).
        verify_layouts: Node layouts to verify at a rank count (None: just the default layout).
        log_steps: Whether its step count grows like ``log p`` (checked at large rank counts).
        commutative_only: Whether it reorders contributions (every built-in one does).
        cost: ``cost(problem, options, in_place)``: the schedule's steps as model-neutral
            :class:`~.traffic.Traffic` (messages and local work per rank), written beside the
            generator; the cost model prices it (None: the model has its own formula or walks
            the schedule).
        rows: ``rows(problem, ranks, options)``: the schedule of many ranks at once as arrays
            (:mod:`.rows`); when set, ``generator`` is derived from it, so the rows the
            verifier proves and the programs executors run are one schedule.
    """

    collective: Collective
    generator: Generator
    description: str = ""
    defaults: Mapping[str, Any] = field(default_factory=dict)
    check: Check | None = None
    verify_options: tuple[Mapping[str, Any], ...] = ({},)
    verify_layouts: Callable[[int], Sequence[Layout | None]] | None = None
    log_steps: bool = False
    commutative_only: bool = True
    cost: CostFunction | None = None
    rows: RowsEmitter | None = None


@dataclass(frozen=True)
class Algorithm:
    """A named algorithm and its implementations, one per collective.

    Attributes:
        name: Canonical CLI name.
        description: One line for ``collbench list``.
        implementations: Collective -> :class:`Implementation`.
        aliases: Other accepted names.
        native: True only for the reserved ``native`` entry (no schedule).
    """

    name: str
    description: str
    implementations: Mapping[Collective, Implementation] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    native: bool = False

    @property
    def collectives(self) -> tuple[Collective, ...]:
        """The collectives it implements (every one for ``native``)."""
        if self.native:
            return tuple(Collective)
        return tuple(c for c in Collective if c in self.implementations)

    def implements(self, collective: Collective) -> bool:
        return self.native or collective in self.implementations

    def options(self, collective: Collective) -> Mapping[str, Any]:
        """The options accepted for ``collective``, with their defaults."""
        impl = self.implementations.get(collective)
        return dict(impl.defaults) if impl else {}

    def precondition(self, problem: Problem, op: str | None = "sum",
                     options: Mapping[str, Any] | None = None) -> str | None:
        """Why this algorithm cannot run ``problem`` with ``op`` and ``options``, or None.

        Args:
            problem: The collective, rank count, count, root and layout.
            op: The reduction operator (ignored for collectives that do not reduce; None skips
                the operator check).
            options: Algorithm options; unknown names are refused.

        Returns:
            A one-line human reason, or None when it can run.
        """
        coll = problem.collective
        if self.native:
            return None
        impl = self.implementations.get(coll)
        if impl is None:
            have = ", ".join(c.value for c in self.collectives) or "nothing"
            return f"{self.name} does not implement {coll.value} (it implements {have})"
        if op is not None and coll.reduces:
            if op not in reduction.OPS:
                return f"unknown reduction op {op!r} (known: {', '.join(reduction.OPS)})"
            if impl.commutative_only and not reduction.is_commutative(op):
                return (f"{self.name} {coll.value} combines contributions out of rank order and "
                        f"needs a commutative op; {op} is not")
        try:
            merged = self._merge(impl, options)
        except ValueError as exc:
            return str(exc)
        if impl.check is not None:
            return impl.check(problem, merged)
        return None

    def _merge(self, impl: Implementation, options: Mapping[str, Any] | None) -> dict[str, Any]:
        merged = dict(impl.defaults)
        for key, value in (options or {}).items():
            if key not in impl.defaults:
                known = ", ".join(impl.defaults) or "none"
                raise ValueError(f"{self.name} {impl.collective.value}: unknown option {key!r} "
                                 f"(accepted: {known})")
            merged[key] = value
        return merged

    def _ready(self, problem: Problem, options: Mapping[str, Any] | None) -> tuple:
        if self.native:
            raise ValueError(f"'{NATIVE}' is the library's own collective and has no schedule")
        reason = self.precondition(problem, op=None, options=options)
        if reason is not None:
            raise ValueError(reason)
        impl = self.implementations[problem.collective]
        return impl, self._merge(impl, options)

    def program(self, problem: Problem, rank: int,
                options: Mapping[str, Any] | None = None) -> Program:
        """The program of one rank (costs only that rank's steps).

        Raises:
            ValueError: The precondition fails (message = the reason), the algorithm is
                ``native``, or ``rank`` is out of range.
        """
        if not 0 <= rank < problem.nranks:
            raise ValueError(f"rank {rank} is outside 0..{problem.nranks - 1}")
        impl, merged = self._ready(problem, options)
        return impl.generator(problem, rank, merged)

    def schedule(self, problem: Problem, options: Mapping[str, Any] | None = None) -> Schedule:
        """The programs of every rank.

        Raises:
            ValueError: As for :meth:`program`.
        """
        impl, merged = self._ready(problem, options)
        p = problem.nranks
        if impl.rows is not None:
            return Schedule(self.name, problem, impl.rows(problem, np.arange(p), merged).programs(p))
        gen = impl.generator
        return Schedule(self.name, problem, tuple(gen(problem, r, merged) for r in range(p)))

    def rows(self, problem: Problem, options: Mapping[str, Any] | None = None,
             ranks: Sequence[int] | None = None) -> Rows | None:
        """The schedule of ``ranks`` (default: every rank) as rows (:mod:`.rows`), or None when
        the implementation writes programs only.

        Raises:
            ValueError: As for :meth:`program`.
        """
        impl, merged = self._ready(problem, options)
        if impl.rows is None:
            return None
        which = np.arange(problem.nranks) if ranks is None else np.asarray(ranks, dtype=np.int64)
        return impl.rows(problem, which, merged)


_REGISTRY: dict[str, Algorithm] = {}
_ALIASES: dict[str, str] = {}
# Names (and aliases) that register() refuses to extend or replace: set by collbench's plugin
# loader (collbench/plugins.py) while a user module is imported, so that a plugin cannot change
# an algorithm that was there before it.
_SEALED: frozenset[str] = frozenset()


class NameTaken(ValueError):
    """A sealed name was registered again (a plugin reusing a built-in or earlier plugin's name)."""

    def __init__(self, name: str):
        super().__init__(f"algorithm name {name!r} is already registered")
        self.name = name


def register(name: str, collective: Collective, generator: Generator | None = None, *,
             description: str,
             aliases: Sequence[str] = (), defaults: Mapping[str, Any] | None = None,
             check: Check | None = None,
             verify_options: Sequence[Mapping[str, Any]] = ({},),
             verify_layouts: Callable[[int], Sequence[Layout | None]] | None = None,
             log_steps: bool = False, replace: bool = False,
             cost: CostFunction | None = None, rows: RowsEmitter | None = None) -> Algorithm:
    """Register ``generator`` as algorithm ``name`` for ``collective``.

    Registering a second collective under an existing name extends that algorithm (its first
    description stays the algorithm's; each implementation keeps its own).

    Args:
        name: CLI name (lower case, underscores).
        collective: What the generator computes.
        generator: ``generator(problem, rank, options) -> Program``.
        rows: Instead of ``generator``: ``rows(problem, ranks, options) -> Rows``, the
            schedule of many ranks at once (:mod:`.rows`); the generator is derived from it.
        description: One line.
        aliases: Extra names for the algorithm.
        defaults: Accepted options with their defaults.
        check: Extra precondition ``check(problem, options) -> reason | None``.
        verify_options: Option sets the verifier sweeps.
        verify_layouts: Layouts the verifier sweeps at a rank count.
        log_steps: Whether the step count is logarithmic (verified at 128 and 1000 ranks too).
        replace: Allow replacing an existing implementation of ``collective``.
        cost: Model-neutral cost function (see :attr:`Implementation.cost`).

    Returns:
        The updated :class:`Algorithm`.

    Raises:
        NameTaken: While a plugin loads, the name or an alias existed before it.
        ValueError: The name is reserved or taken by an alias, the collective is already
            registered under this name and ``replace`` is False, or not exactly one of
            ``generator`` and ``rows`` is given.
    """
    if (generator is None) == (rows is None):
        raise ValueError(f"register {name!r}: give a generator or rows, exactly one of them")
    if rows is not None:
        generator = per_rank(rows)
    assert generator is not None
    key = _normalize(name)
    if key == NATIVE:
        raise ValueError(f"the name '{NATIVE}' is reserved for the library's own collective")
    for taken in (key, *(_normalize(a) for a in aliases)):
        if taken in _SEALED:
            raise NameTaken(taken)
    if key in _ALIASES and _ALIASES[key] != key:
        raise ValueError(f"{key!r} is already an alias of {_ALIASES[key]!r}")
    impl = Implementation(collective, generator, description, dict(defaults or {}), check,
                          tuple(verify_options), verify_layouts, log_steps, cost=cost, rows=rows)
    old = _REGISTRY.get(key)
    if old is None:
        algo = Algorithm(key, description, {collective: impl}, tuple(_normalize(a) for a in aliases))
    else:
        if collective in old.implementations and not replace:
            raise ValueError(f"{key} already implements {collective.value} "
                             f"(pass replace=True to override)")
        new_aliases = old.aliases + tuple(_normalize(a) for a in aliases
                                          if _normalize(a) not in old.aliases)
        algo = Algorithm(key, old.description, {**old.implementations, collective: impl},
                         new_aliases)
    for alias in algo.aliases:
        if alias in _REGISTRY or alias == NATIVE or _ALIASES.get(alias, key) != key:
            raise ValueError(f"alias {alias!r} of {key!r} is already a name")
    _REGISTRY[key] = algo
    _ALIASES[key] = key
    for alias in algo.aliases:
        _ALIASES[alias] = key
    return algo


@contextmanager
def sealed() -> Iterator[None]:
    """While inside, :func:`register` refuses every name and alias registered now (NameTaken);
    if the block raises, the registry is put back as it was before it (collbench/plugins.py
    imports each user module inside one)."""
    global _SEALED
    saved = dict(_REGISTRY), dict(_ALIASES), _SEALED
    _SEALED = frozenset(_REGISTRY) | frozenset(_ALIASES)
    try:
        yield
    except BaseException:
        _REGISTRY.clear()
        _REGISTRY.update(saved[0])
        _ALIASES.clear()
        _ALIASES.update(saved[1])
        raise
    finally:
        _SEALED = saved[2]


def unregister(name: str) -> None:
    """Remove an algorithm and its aliases (for tests and interactive experiments)."""
    key = _ALIASES.get(_normalize(name))
    if key is None or key == NATIVE:
        raise ValueError(f"cannot unregister {name!r}")
    algo = _REGISTRY.pop(key)
    for alias in (key, *algo.aliases):
        _ALIASES.pop(alias, None)


def known_names() -> list[str]:
    """Every canonical name, registration order, ``native`` last."""
    return [n for n in _REGISTRY if n != NATIVE] + [NATIVE]


def get_algorithm(name: str) -> Algorithm:
    """The algorithm called ``name`` (or one of its aliases).

    Raises:
        ValueError: No such algorithm; the message lists the known names.
    """
    key = _ALIASES.get(_normalize(name))
    if key is None:
        aliases = ", ".join(f"{a} -> {n}" for a, n in _ALIASES.items() if a != n)
        raise ValueError(f"unknown algorithm {name!r} (known: {', '.join(known_names())}; "
                         f"aliases: {aliases})")
    return _REGISTRY[key]


def algorithms() -> list[Algorithm]:
    """Every registered algorithm, ``native`` last."""
    return [_REGISTRY[n] for n in known_names()]


def algorithms_for(collective: Collective | str, include_native: bool = True) -> list[Algorithm]:
    """The algorithms implementing ``collective`` (``native`` last, if included)."""
    coll = collective if isinstance(collective, Collective) else Collective.parse(collective)
    return [a for a in algorithms()
            if a.implements(coll) and (include_native or not a.native)]


# -- built-in algorithms -----------------------------------------------------------------------

def _check_chunks(problem: Problem, options: Mapping[str, Any]) -> str | None:
    return chunks_problem(options)


def _hierarchical_layouts(p: int) -> list[Layout | None]:
    """Layouts the sweep checks hierarchical algorithms with: about sqrt(p) ranks on each of
    about sqrt(p) nodes, numbered by node (blocked) and node-cyclically (round robin); for a
    prime p one rank per node, and (for small p) a single node."""
    divisors = [d for d in range(2, p) if p % d == 0]
    if not divisors:
        return [Layout.blocked(p, 1)] + ([None] if p <= 16 else [])
    g = min(divisors, key=lambda d: (abs(d * d - p), d))
    return [Layout.blocked(p, g), Layout.round_robin(p, p // g)]


def _register_builtins() -> None:
    from . import (
        bruck,
        direct_rows,
        double_binary_tree,
        halving_doubling,
        hierarchical,
        recursive_doubling,
        ring,
        ring_rows,
        tree,
    )

    A, G, RS = Collective.ALLREDUCE, Collective.ALLGATHER, Collective.REDUCE_SCATTER
    B, R = Collective.BROADCAST, Collective.REDUCE
    chunked = dict(defaults={"chunks": None}, check=_check_chunks,
                   verify_options=({}, {"chunks": 3}))

    # channels: K rings (trees) in distinct orders, one part of the data each (ring.py,
    # tree.py; issue 11)
    channels = dict(defaults={"channels": 1}, check=ring.check_channels,
                    verify_options=({}, {"channels": 2}, {"channels": 3}, {"channels": 4}))
    # written as rows over all ranks (ring_rows.py): O(p^2) messages, built as arrays
    register("ring", A, rows=ring_rows.allreduce_rows, **channels,
             description="ring: reduce-scatter then allgather around the ring, 2(p-1) steps")
    register("ring", G, rows=ring_rows.allgather_rows, **channels,
             description="ring allgather, p-1 steps")
    register("ring", RS, rows=ring_rows.reduce_scatter_rows, **channels,
             description="ring reduce-scatter, p-1 steps")
    register("ring", B, ring.broadcast, **chunked,
             description="pipelined chain from the root along the ring, p-2+chunks steps")
    register("ring", R, ring.reduce, **chunked,
             description="pipelined chain to the root along the ring, p-2+chunks steps")
    register("recursive_doubling", A, recursive_doubling.allreduce, log_steps=True,
             description="recursive doubling: exchange whole vectors with rank xor 2^k, "
                         "lg p steps (+2 for non-powers of two)")
    register("recursive_doubling", G, recursive_doubling.allgather, log_steps=True,
             description="recursive-doubling allgather, lg p steps (+2 for non-powers of two)")
    register("rabenseifner", A, halving_doubling.allreduce, aliases=("halving_doubling",),
             log_steps=True,
             description="Rabenseifner: recursive-halving reduce-scatter + recursive-doubling "
                         "allgather, 2 lg p steps (+2 for non-powers of two)")
    register("recursive_halving", RS, halving_doubling.reduce_scatter, log_steps=True,
             description="recursive-halving reduce-scatter, lg p steps (+2 for non-powers "
                         "of two)")
    register("tree", A, tree.allreduce, aliases=("binomial",), log_steps=True, **channels,
             description="binomial tree: reduce to rank 0 then broadcast, 2 ceil(lg p) steps")
    register("tree", B, tree.broadcast, log_steps=True,
             description="binomial-tree broadcast, ceil(lg p) steps")
    register("tree", R, tree.reduce, log_steps=True,
             description="binomial-tree reduce, ceil(lg p) steps")
    # channels: K pairs of trees over differently ordered ranks (NCCL's 2 trees x channels)
    register("double_binary_tree", A, double_binary_tree.allreduce, log_steps=True,
             defaults={"chunks": None, "channels": 1}, check=double_binary_tree.check_options,
             verify_options=({}, {"chunks": 1}, {"chunks": 4}, {"channels": 2},
                             {"channels": 3, "chunks": 2}, {"channels": 4}),
             description="two complementary binary trees over ranks (the idea behind NCCL's "
                         "double binary tree, which NCCL builds over nodes with intra-node "
                         "chains), one half of the data each, pipelined in chunks")
    # not "pairwise": pairwise exchange is a different algorithm (direct's reduce-scatter is
    # one), and the name is kept free for an alltoall
    # no "one_shot" alias: that name is the cuda backend's IPC kernel, and `list` showed it as
    # runnable on mpi (meaning this schedule)
    register("direct", A, rows=direct_rows.allreduce_rows,
             description="one-shot: everyone sends its whole input to everyone, 1 step")
    register("direct", G, rows=direct_rows.allgather_rows, description="everyone sends its block to everyone, "
                                                         "1 step")
    register("direct", RS, rows=direct_rows.reduce_scatter_rows,
             description="pairwise exchange: step s sends block i+s to rank i+s, p-1 steps")
    register("bruck", G, bruck.allgather, log_steps=True,
             description="Bruck allgather through a rotated scratch copy: ceil(lg p) steps and "
                         "messages for any p")
    hier = dict(check=hierarchical.precondition, verify_layouts=_hierarchical_layouts)
    register("hierarchical", A, hierarchical.allreduce,
             defaults=hierarchical.DEFAULTS[A], **hier,
             verify_options=({}, {"inner": "direct", "outer": "ring"},
                             {"inner": "halving_doubling", "outer": "rabenseifner",
                              "inner_allgather": "bruck"},
                             {"outer": "double_binary_tree", "outer_options": {"chunks": 2}},
                             {"outer": "tree"}, {"outer": "direct"}),
             description="intra-node reduce-scatter, inter-node allreduce per shard, intra-node "
                         "allgather")
    register("hierarchical", G, hierarchical.allgather,
             defaults=hierarchical.DEFAULTS[G], **hier,
             verify_options=({}, {"inner": "direct", "outer": "ring"},
                             {"inner_allgather": "bruck", "outer": "bruck"},
                             {"inner": "halving_doubling", "outer": "direct"}),
             description="inter-node allgather per local index, then intra-node allgather")
    register("hierarchical", RS, hierarchical.reduce_scatter,
             defaults=hierarchical.DEFAULTS[RS], **hier,
             verify_options=({}, {"inner": "direct", "outer": "ring"},
                             {"inner": "halving_doubling", "outer": "direct"}),
             description="intra-node reduce-scatter, then inter-node reduce-scatter")
    _register_alltoall()
    _register_alltoallv()
    _REGISTRY[NATIVE] = Algorithm(NATIVE, "the library's own collective (MPI_Allreduce, "
                                          "ncclAllReduce, ...); no schedule", native=True)
    _ALIASES[NATIVE] = NATIVE


def _register_alltoall() -> None:
    from . import alltoall

    X = Collective.ALLTOALL
    register("pairwise", X, rows=alltoall.pairwise_rows, cost=alltoall.pairwise_cost,
             description="pairwise exchange: p-1 steps, one block each way (partner rank xor s "
                         "for a power of two, else send to r+s and receive from r-s)")
    register("direct", X, rows=alltoall.direct_rows, cost=alltoall.direct_cost,
             description="every block to its rank in one step, p-1 messages each way")
    # not log_steps: its O(p) local copies per step make a symbolic sweep at 1000 ranks slow
    register("bruck", X, rows=alltoall.bruck_rows, cost=alltoall.bruck_cost,
             description="Bruck index algorithm: ceil(lg p) steps, the blocks with bit k of "
                         "their rotated index packed into one message to r+2^k")
    register("hierarchical", X, rows=alltoall.hierarchical_rows, cost=alltoall.hierarchical_cost,
             check=alltoall.precondition, verify_layouts=_hierarchical_layouts,
             description="intra-node transpose, then one node-sized message per other node "
                         "along the rail (PXN)")


def _register_alltoallv() -> None:
    from . import alltoallv

    V = Collective.ALLTOALLV
    register("pairwise", V, rows=alltoallv.pairwise_rows, cost=alltoallv.pairwise_cost,
             description="pairwise exchange of each pair's block: p-1 steps (partner rank xor s "
                         "for a power of two, else send to r+s and receive from r-s)")
    register("direct", V, rows=alltoallv.direct_rows, cost=alltoallv.direct_cost,
             description="every non-empty block to its rank in one step")
    register("hierarchical", V, rows=alltoallv.hierarchical_rows, cost=alltoallv.hierarchical_cost,
             check=alltoallv.precondition, verify_layouts=_hierarchical_layouts,
             description="intra-node transpose, then one message per other node along the rail "
                         "(PXN), per-pair counts")


_register_builtins()
