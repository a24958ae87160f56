"""What every backend offers the harness: buffers, prepared collective calls, a timer, metadata.

All measurement logic lives in the harness; a backend only knows how to call its library.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from ..algorithms import Collective
from ..algorithms.vcounts import Skew
from ..dtypes import DType


class Placement(enum.Enum):
    """Out-of-place (separate send and receive buffers) or in-place (aliased, MPI_IN_PLACE)."""

    OUT_OF_PLACE = "out_of_place"
    IN_PLACE = "in_place"

    @property
    def label(self) -> str:
        return self.value.replace("_", "-")


@dataclass(frozen=True)
class OpRequest:
    """One measurable configuration: everything needed to prepare a collective call."""

    collective: Collective
    algorithm: str
    dtype: DType
    op: str | None          # None for collectives that do not reduce
    count: int              # nccl-tests convention (per rank for allgather/reduce_scatter)
    placement: Placement
    root: int = 0
    # algorithm options for this request only (--algo auto's winning variant); empty: the
    # run's -O options, which the backend holds
    options: tuple[tuple[str, Any], ...] = ()
    # alltoallv's count matrix (-O skew=/counts=; collbench.algorithms.vcounts); None: default
    skew: Skew | None = None


@dataclass
class PreparedOp:
    """A collective call bound to its buffers, ready to be repeated without allocation.

    Attributes:
        run: performs one collective (asynchronously on devices; the timer synchronizes).
        input: where the harness writes this rank's input (a view into the backend's buffers).
        output: where this rank's result is read after ``run``.
        executor: which code path runs it (``library`` for a native collective called from
            Python, ``library+native`` for one called and timed by collbench's C loop,
            ``python`` or ``native`` for schedule executors), recorded in every row.
        teardown: releases per-size resources (scratch, persistent requests), if any.
        batch: when set, times ``iterations`` operations itself (a loop in C) and returns
            seconds per operation; the harness then uses it instead of its timer's loop.
        per_iteration: likewise, the seconds of each of ``iterations`` operations.
    """

    run: Callable[[], None]
    input: Any
    output: Any
    executor: str = "library"
    teardown: Callable[[], None] | None = None
    batch: Callable[[int], float] | None = None
    per_iteration: Callable[[int], np.ndarray] | None = None


@dataclass(frozen=True)
class Capabilities:
    """What a backend can run, declared once: ``run``, ``list``, the plan and ``--algo auto``
    all read this (and :meth:`Backend.reason` for what depends on the live library).

    Attributes:
        backend: the backend's name.
        needs: what must be present: ``mpi4py``, ``cupy``, ``gpu``, ``nccl``.
        native: collectives its library runs as one call (algorithm ``native``).
        schedules: whether it runs every registered schedule (collbench.algorithms).
        own_algorithms: algorithm names only this backend has, per collective.
        native_notes: a caveat ``list`` shows beside a native collective (e.g. in place only).
    """

    backend: str
    needs: tuple[str, ...]
    native: frozenset[Collective]
    schedules: bool
    own_algorithms: Mapping[Collective, tuple[str, ...]] = field(default_factory=dict)
    native_notes: Mapping[Collective, str] = field(default_factory=dict)

    def algorithm_names(self, collective: Collective) -> list[str]:
        """What ``--algo all`` means on this backend: native, its own, then the registry's."""
        names = ["native"] if collective in self.native else []
        names += list(self.own_algorithms.get(collective, ()))
        if self.schedules:
            from ..execute.programs import algorithm_names

            names += [n for n in algorithm_names(collective) if n != "native"]
        return list(dict.fromkeys(names))

    def implements(self, algorithm: str, collective: Collective) -> bool:
        """Whether ``algorithm`` exists for ``collective`` here (else the plan skips it)."""
        if algorithm == "native" or algorithm in self.own_algorithms.get(collective, ()):
            return algorithm != "native" or collective in self.native
        if not self.schedules:
            return False
        from ..execute.programs import implements

        return implements(algorithm, collective)


class Timer(abc.ABC):
    """Times repetitions of a prepared op; implementations synchronize their device."""

    @abc.abstractmethod
    def batch(self, run: Callable[[], None], iterations: int) -> float:
        """Seconds per operation over ``iterations`` back-to-back calls."""

    @abc.abstractmethod
    def per_iteration(self, run: Callable[[], None], iterations: int) -> np.ndarray:
        """Seconds of each of ``iterations`` calls (float64 array)."""

    def once(self, run: Callable[[], None]) -> None:
        """One call, completed (validation; in graph mode, captured as a one-operation graph and replayed)."""
        self.batch(run, 1)


class Backend(abc.ABC):
    """A communication library (MPI, NCCL, our CUDA kernels) seen through one interface."""

    name: str
    #: what this backend can run (each backend module declares it once)
    capabilities: Capabilities

    @abc.abstractmethod
    def unsupported_reason(self, request: OpRequest) -> str | None:
        """Why this backend cannot run ``request`` (placement included), or None if it can.
        Callers use :meth:`reason`, which evaluates this once per request."""

    def reason(self, request: OpRequest) -> str | None:
        """:meth:`unsupported_reason`, evaluated once per distinct request (preconditions build
        and inspect schedules: the plan, the size loop and prepare must not redo it)."""
        cache: dict[OpRequest, str | None] = self.__dict__.setdefault("_reasons", {})
        if request not in cache:
            if not self.capabilities.implements(request.algorithm, request.collective):
                names = ", ".join(self.capabilities.algorithm_names(request.collective)) or "nothing"
                cache[request] = (f"backend {self.name} has no {request.algorithm} "
                                  f"{request.collective.value} (it has: {names})")
            else:
                cache[request] = self.unsupported_reason(request)
        return cache[request]

    @abc.abstractmethod
    def prepare(self, request: OpRequest) -> PreparedOp:
        """Bind ``request`` to buffers; called once per size and placement, outside timing."""

    @abc.abstractmethod
    def write(self, view: Any, data: np.ndarray) -> None:
        """Copy host ``data`` into a buffer view returned by ``prepare``."""

    @abc.abstractmethod
    def read(self, view: Any) -> np.ndarray:
        """Copy a buffer view to a host numpy array."""

    #: the timer matching this backend's execution model (set by each backend's __init__)
    timer: Timer

    def options_for(self, request: OpRequest) -> dict[str, Any]:
        """The algorithm options of ``request``: its own, else the run's (``-O``)."""
        if request.options:
            return dict(request.options)
        return dict(getattr(self, "algorithm_options", {}) or {})

    def check_supported(self, request: OpRequest) -> None:
        """Refuse a request the plan should never have produced (a bug, not a user error)."""
        reason = self.reason(request)
        if reason:
            raise ValueError(reason)

    @abc.abstractmethod
    def reserve(self, max_bytes: int, dtypes: list[DType]) -> None:
        """Allocate the largest buffers the sweep needs once, before any measurement."""

    def algorithm_names(self, collective: Collective) -> list[str]:
        """What ``--algo all`` means here (from the declared capabilities)."""
        return self.capabilities.algorithm_names(collective)

    def implements(self, algorithm: str, collective: Collective) -> bool:
        """Whether ``algorithm`` exists for ``collective`` on this backend (else it is skipped)."""
        return self.capabilities.implements(algorithm, collective)

    def metadata(self) -> dict[str, Any]:
        """Backend-specific facts for the results file (library versions, devices, env)."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook: most backends have nothing to free
        """Release communicators and buffers."""
