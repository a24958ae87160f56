"""An algorithm's cost in model-neutral terms, registered beside its generator.

A cost function (``Implementation.cost`` in :mod:`.registry`) says, without building any
program, what every rank does in every step of the schedule: the messages it sends and
receives (peer and elements) and the elements it copies and reduces locally. It knows nothing
of α, β, link classes or NICs: the cost model (``collbench.analysis.model``) turns each
:class:`Traffic` into its own terms with the node layout, exactly as it turns a walked
schedule into them. So the algorithm author writes down the formulas of the schedule they just
wrote (in the same file), and ``tests/analysis`` checks them against the schedule walk.

Why this form and not the model's own phases: ``algorithms/`` must not import the model, and
a cost expressed as "steps × (messages, elements sent/received, elements reduced/copied) per
rank" is a fact about the schedule that any model (α-β-γ, LogGP, a simulator) can price.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence, Union

if TYPE_CHECKING:
    from .schedule import Problem

PerRank = Union[int, Sequence[int]]
"""One number for every rank, or one per rank (a sequence or numpy array of length nranks)."""


@dataclass(frozen=True)
class Shift:
    """Every rank's peer is ``(rank + by) mod nranks``."""

    by: int


@dataclass(frozen=True)
class Xor:
    """Every rank's peer is ``rank xor by`` (nranks a power of two)."""

    by: int


Peers = Union[Sequence[int], Shift, Xor]
"""The peer of every rank: explicit (-1 where a rank has no such message) or a pattern. A pattern
says more than the array it stands for: a model may know that two shifts cost the same on some
layouts without looking at every rank."""

Message = tuple[Peers, PerRank]
"""(peer of every rank; elements)."""


@dataclass(frozen=True)
class Traffic:
    """``repeat`` identical steps of every rank, in elements.

    Attributes:
        sends: One entry per message a rank sends in the step: the peer of every rank and its
            elements. Zero-element messages do not exist (schedules drop them), so they may be
            listed and cost nothing.
        recvs: The same for receives.
        exchange: ``(group of every rank, elements)``: every rank sends ``elements`` to every
            other member of its group and receives as many from each (an all-to-all inside
            each group, the whole communicator when every group is 0). Stands for
            ``group size - 1`` messages each way without listing them; a step with an exchange
            has no other messages.
        copy: Elements each rank copies locally in the step (after lowering: a copy that is a
            no-op in this placement, e.g. an in-place run's own block, is not counted).
        reduce: Elements each rank's reductions write in the step.
        repeat: How many identical steps in a row.
    """

    sends: tuple[Message, ...] = ()
    recvs: tuple[Message, ...] = ()
    exchange: tuple[Sequence[int], int] | None = None
    copy: PerRank = 0
    reduce: PerRank = 0
    repeat: int = 1

    def __post_init__(self) -> None:
        if self.exchange is not None and (self.sends or self.recvs):
            raise ValueError("a Traffic step with an exchange has no other messages")


CostFunction = Callable[["Problem", Mapping[str, Any], bool], "Sequence[Traffic] | None"]
"""``cost(problem, options, in_place)``: the schedule's steps in order, or None where the
function has no formula (the model then walks the schedule)."""
