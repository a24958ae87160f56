"""Parallelism plans: how a training step is split over ranks, and which plans are impossible.

A plan is a data-parallel strategy (``ddp``, ``zero1``, ``zero2``, ``zero3``, ``fsdp``) and
degrees: ``tpN`` (Megatron tensor parallelism), ``ppN`` (pipeline stages), ``epN`` (expert
parallelism), ``dpN`` (data parallelism; by default whatever the other degrees leave), ``sp``
(sequence parallelism with TP). Components are joined by ``+`` (``tp4+pp2+zero1``); ``run`` and
``show`` take one plan and also accept commas (``tp4,dp2``); ``predict`` compares several plans
separated by commas (``ddp,zero3,tp4``).

Ranks form a grid ``dp × ep × tp × pp``. By default TP varies fastest (inside a node), then EP,
then DP, then PP (Megatron-LM's order): TP and EP stay inside a node and DP spans nodes unless
``--order`` says otherwise. EP is its own dimension: dense gradients are averaged over
``dp × ep`` ranks, expert gradients over the ``dp`` ranks holding the same experts (DeepSpeed-MoE).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import UsageError
from .model import ModelSpec

STRATEGIES = ("ddp", "zero1", "zero2", "zero3", "fsdp")
DIMS = ("tp", "ep", "dp", "pp")
DEFAULT_ORDER = ("tp", "ep", "dp", "pp")
_DEGREE = re.compile(r"^(tp|pp|ep|dp)(\d+)$")


@dataclass(frozen=True)
class Plan:
    """A plan as written: degrees not given are None (dp) or 1."""

    strategy: str = "ddp"
    dp: int | None = None
    tp: int = 1
    pp: int = 1
    ep: int = 1
    sp: bool = False

    @property
    def label(self) -> str:
        parts = [self.strategy]
        parts += [f"{d}{getattr(self, d)}" for d in ("tp", "pp", "ep") if getattr(self, d) > 1]
        if self.dp is not None:
            parts.append(f"dp{self.dp}")
        if self.sp:
            parts.append("sp")
        return "+".join(parts)

    @property
    def model_parallel(self) -> int:
        return self.tp * self.pp * self.ep


def parse_plan(text: str) -> Plan:
    """One plan from ``tp4+pp2+zero1`` (commas are accepted as ``+``)."""
    words = [w.strip().lower() for w in re.split(r"[+,]", text) if w.strip()]
    if not words:
        raise UsageError("--plan: empty plan (e.g. ddp, zero3, tp4+dp2)")
    strategy: str | None = None
    degrees: dict[str, int] = {}
    sp = False
    for word in words:
        if word in STRATEGIES:
            if strategy and strategy != word:
                raise UsageError(f"--plan {text!r}: two data-parallel strategies ({strategy} and {word}); "
                                 "compare plans with `predict --plan A,B`")
            strategy = word
            continue
        if word == "sp":
            sp = True
            continue
        match = _DEGREE.match(word)
        if not match:
            raise UsageError(f"--plan {text!r}: unknown component {word!r} (known: "
                             f"{', '.join(STRATEGIES)}, tpN, ppN, epN, dpN, sp)")
        dim, value = match.group(1), int(match.group(2))
        if value < 1:
            raise UsageError(f"--plan {text!r}: {dim} must be at least 1")
        if dim in degrees and degrees[dim] != value:
            raise UsageError(f"--plan {text!r}: {dim} given twice")
        degrees[dim] = value
    if sp and degrees.get("tp", 1) == 1:
        raise UsageError(f"--plan {text!r}: sequence parallelism (sp) splits activations over tensor-"
                         "parallel ranks; add tpN with N > 1")
    return Plan(strategy or "ddp", degrees.get("dp"), degrees.get("tp", 1), degrees.get("pp", 1),
                degrees.get("ep", 1), sp)


def parse_plans(text: str) -> list[Plan]:
    """``predict``'s list: commas separate plans, ``+`` joins the components of one."""
    plans = [parse_plan(part) for part in text.split(",") if part.strip()]
    if not plans:
        raise UsageError("--plan: nothing given")
    return plans


def parse_order(text: str | None) -> tuple[str, ...]:
    if not text:
        return DEFAULT_ORDER
    order = tuple(w.strip().lower() for w in text.split(",") if w.strip())
    if sorted(order) != sorted(DIMS):
        raise UsageError(f"--order {text!r}: give each of {', '.join(DIMS)} once, fastest-varying first "
                         f"(default {','.join(DEFAULT_ORDER)})")
    return order


@dataclass(frozen=True)
class Parallel:
    """A plan resolved for a job: every degree known, and the rank order."""

    strategy: str
    dp: int
    tp: int
    pp: int
    ep: int
    sp: bool
    order: tuple[str, ...]
    ranks_per_node: int

    @property
    def world(self) -> int:
        return self.dp * self.tp * self.pp * self.ep

    @property
    def label(self) -> str:
        parts = [self.strategy, f"dp{self.dp}"]
        parts += [f"{d}{getattr(self, d)}" for d in ("tp", "pp", "ep") if getattr(self, d) > 1]
        return "+".join(parts) + ("+sp" if self.sp else "")


def resolve(plan: Plan, model: ModelSpec, world: int, ranks_per_node: int,
            order: tuple[str, ...] = DEFAULT_ORDER) -> Parallel:
    """Fix every degree for ``world`` ranks; an impossible plan is one UsageError line."""
    if world < 1 or ranks_per_node < 1:
        raise UsageError("the job needs at least one rank and one rank per node")
    mp = plan.model_parallel
    if plan.dp is None:
        if world % mp:
            raise UsageError(f"plan {plan.label}: tp·pp·ep = {plan.tp}·{plan.pp}·{plan.ep} = {mp} does not "
                             f"divide the {world} ranks")
        dp = world // mp
    else:
        dp = plan.dp
        if dp * mp != world:
            raise UsageError(f"plan {plan.label}: dp·tp·pp·ep = {dp}·{plan.tp}·{plan.pp}·{plan.ep} = "
                             f"{dp * mp}, not the {world} ranks")
    par = Parallel(plan.strategy, dp, plan.tp, plan.pp, plan.ep, plan.sp, order, ranks_per_node)
    _check_model(par, plan, model)
    return par


def _check_model(par: Parallel, plan: Plan, model: ModelSpec) -> None:
    t = model.transformer
    if par.tp > par.ranks_per_node:
        raise UsageError(f"plan {plan.label}: tp {par.tp} is larger than a node ({par.ranks_per_node} "
                         "ranks per node): tensor parallelism communicates every layer and stays "
                         "inside a node")
    if t is None and (par.tp > 1 or par.pp > 1 or par.ep > 1):
        raise UsageError(f"plan {plan.label}: tensor, pipeline and expert parallelism need a "
                         f"transformer; {model.name} is a layer list (use ddp, zero1-3 or fsdp)")
    if t is None:
        return
    if par.ep > 1 and not t.moe:
        raise UsageError(f"plan {plan.label}: expert parallelism needs a mixture-of-experts model; "
                         f"{model.name} has no experts")
    if par.ep > 1 and (par.ep > t.experts or t.experts % par.ep):
        raise UsageError(f"plan {plan.label}: ep {par.ep} cannot split {model.name}'s {t.experts} experts "
                         f"per layer evenly (ep must divide {t.experts})")
    for what, value in (("heads", t.heads), ("KV heads", t.kv_heads), ("FFN size", t.ffn)):
        if value % par.tp:
            raise UsageError(f"plan {plan.label}: tp {par.tp} does not divide {model.name}'s {value} "
                             f"{what}")
    if par.pp > t.layers:
        raise UsageError(f"plan {plan.label}: pp {par.pp} is more pipeline stages than {model.name}'s "
                         f"{t.layers} layers")


__all__ = ["Plan", "Parallel", "parse_plan", "parse_plans", "parse_order", "resolve", "STRATEGIES",
           "DEFAULT_ORDER"]
