"""The bridge between the harness and collbench.algorithms: names, preconditions, programs."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from ..algorithms import Collective, Problem, Program
from ..algorithms.registry import algorithms_for, get_algorithm
from ..compress import names as compressed
from ..errors import UsageError


def algorithm_unsupported_reason(name: str, problem: Problem, op: str | None,
                                 options: Mapping[str, Any] | None = None) -> str | None:
    """Why algorithm ``name`` cannot run ``problem`` (unknown name, wrong collective, a
    precondition), or None when it can."""
    if compressed.is_compressed(name):  # the mpi backend asks collbench.compress instead
        from ..compress.backend import elsewhere_reason

        return elsewhere_reason(name)
    try:
        algorithm = get_algorithm(name)
    except ValueError as exc:
        return str(exc)
    return algorithm.precondition(problem, op=op, options=compressed.strip_options(dict(options or {})))


def build_program(name: str, problem: Problem, rank: int,
                  options: Mapping[str, Any] | None = None) -> Program:
    return get_algorithm(name).program(problem, rank,
                                       options=compressed.strip_options(dict(options or {})))


def implements(name: str, collective: Collective) -> bool:
    """Whether ``name`` (native, a registered or a compressed algorithm) exists for ``collective``."""
    if compressed.is_compressed(name):
        return collective is compressed.COLLECTIVE
    try:
        return get_algorithm(name).implements(collective)
    except ValueError:
        return False


def algorithm_names(collective: Collective) -> list[str]:
    """``native`` first, then every registered algorithm implementing ``collective``."""
    return ["native"] + [a.name for a in algorithms_for(collective, include_native=False)]


def check_algorithm_names(names: Iterable[str], backend_names: Iterable[str] = ()) -> tuple[str, ...]:
    """Canonical names (aliases resolved); UsageError for one that is neither registered, nor
    compressed (``all-compressed`` names them all), nor one of the backend's own
    (``backend_names``, e.g. the cuda backend's one_shot)."""
    canonical = []
    extra = set(backend_names)
    for name in names:
        if name in ("all", compressed.ALL_COMPRESSED) or name in extra:
            canonical.append(name)
            continue
        alias = compressed.canonical(name)
        if alias:  # compressed names, and dense_ring (the registry's ring)
            canonical.append(alias)
            continue
        try:
            canonical.append(get_algorithm(name).name)
        except ValueError as exc:
            raise UsageError(f"{exc}; compressed allreduce: {', '.join(compressed.ALGORITHMS)}, "
                             f"{compressed.ALL_COMPRESSED}") from None
    return tuple(dict.fromkeys(canonical))


def parse_option_value(text: str) -> Any:
    """Option values from the command line: integers become ints, the rest stays text."""
    try:
        return int(text)
    except ValueError:
        return text
