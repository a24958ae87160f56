"""Every collective of one training step, for a model and a plan.

Data parallelism (per pipeline stage, over the ``dp`` group -- or ``dp×ep`` for dense
parameters when experts are split):

* ``ddp``: one allreduce per gradient bucket (:mod:`.buckets`), once per step (gradient
  accumulation skips the sync until the last micro-batch) -- 2Ψ per rank, Ψ the rank's
  parameter bytes, counting a ring allreduce as 2Ψ (Rajbhandari et al. 2020, §7);
* ``zero1``: reduce-scatter of the gradient buckets once per step, then allgather of the
  updated parameters: Ψ + Ψ = 2Ψ;
* ``zero2``: the same, but gradients are partitioned, so the reduce-scatter runs every
  micro-batch;
* ``zero3`` (DeepSpeed): parameters allgathered per layer in forward and again in backward,
  gradients reduce-scattered in buckets: 3Ψ per micro-batch;
* ``fsdp`` (FULL_SHARD, one unit per layer): the same with one reduce-scatter per unit.

Reduce-scatter and allgather buffers are padded so each rank's shard is a whole number of 16-byte
words (what ZeRO/FSDP flat buffers do too); allgather sizes are the whole gathered buffer and
reduce-scatter sizes the whole input, as in nccl-tests.

Tensor parallelism (Megatron-LM, Shoeybi et al. 2019, §3): each transformer layer allreduces
activations of b·s·h elements twice in forward (after attention, after the MLP) and twice in
backward -- 4 per layer per micro-batch; the vocabulary-parallel embedding adds one in forward,
the LM head one in backward and the parallel cross-entropy three small fp32 ones (b·s each). With
sequence parallelism (Korthikanti et al. 2022, §4.2.2) every allreduce becomes an allgather
plus a reduce-scatter of the same b·s·h buffer.

Pipeline parallelism: per micro-batch, each stage boundary carries the activations forward and
their gradients backward (b·s·h elements; /tp with sequence parallelism), point to point. With
tied embeddings the first and last stages sum their embedding gradients once per step.

Expert parallelism: per MoE layer per micro-batch an alltoall dispatches each rank's b·s tokens
to their top-k experts and another combines the results, both again in backward: 4 alltoalls of
b·s·k·h elements (whole send buffer). ``skew`` is the busiest rank's received tokens over the
mean (1 = balanced routing).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable

from .buckets import DEFAULT_CAP, DEFAULT_FIRST, assign_buckets
from .grid import DENSE_DP
from .model import ModelSpec
from .plan import Parallel
from .shard import RankTensor, rank_tensors, stage_block_counts, stage_layers

ALLREDUCE, ALLGATHER, REDUCE_SCATTER, ALLTOALL, P2P = ("allreduce", "allgather", "reduce_scatter",
                                                     "alltoall", "p2p")
LOSS_STAT_BYTES = 4     # Megatron's cross-entropy statistics are fp32


@dataclass(frozen=True)
class Batch:
    """Samples per micro-batch per data-parallel replica, sequence length, micro-batches per step."""

    micro_batch: int
    seq_len: int
    micro_batches: int = 1


@dataclass(frozen=True)
class CommOp:
    """One collective of the step, as every rank of one group runs it.

    Attributes:
        kind: what it is for: dp, tp, pp, ep.
        group: the process group (grid kind): dp, dp×ep, tp, ep, "pp s-s+1", embedding.
        collective: allreduce, allgather, reduce_scatter, alltoall or p2p.
        nbytes: bytes per call, nccl-tests convention (allgather: output; reduce_scatter: input;
            alltoall: one rank's whole send buffer; p2p: the message).
        calls: how many times per step.
        phase: forward, backward or optimizer.
        what: what it carries.
        section: a heading that groups similar ops in summaries.
        stages: pipeline stages whose ranks take part (None: every stage).
        ready: for gradient syncs, the fraction of the stage's backward done when it can start.
        root: p2p only: the sending rank's index in the pair.
        skew: alltoall only: busiest receiver over the mean.
    """

    kind: str
    group: str
    collective: str
    nbytes: int
    calls: int
    phase: str
    what: str
    section: str
    stages: tuple[int, ...] | None = None
    ready: float | None = None
    root: int = 0
    skew: float = 1.0

    def involves(self, stage: int) -> bool:
        return self.stages is None or stage in self.stages


@dataclass(frozen=True)
class Step:
    model: ModelSpec
    par: Parallel
    batch: Batch
    dtype: str
    itemsize: int
    ops: tuple[CommOp, ...]
    bucket_cap: int
    first_bucket: int
    scale: float = 1.0        # run --scale: byte counts were multiplied by this

    def stage_ops(self, stage: int) -> list[CommOp]:
        return [op for op in self.ops if op.involves(stage)]


def padded(nbytes: int, ranks: int) -> int:
    """A reduce-scatter/allgather buffer: each rank's shard a whole number of 16-byte words."""
    shard = -(-nbytes // ranks)
    return -(-shard // 16) * 16 * ranks


# -- data parallelism ---------------------------------------------------------------------------------


def _dp_groups(par: Parallel) -> list[tuple[bool, str, int]]:
    """(expert tensors?, group, size) for the data-parallel syncs that exist."""
    out = []
    dense_group, dense_size = (DENSE_DP, par.dp * par.ep) if par.ep > 1 else ("dp", par.dp)
    if dense_size > 1:
        out.append((False, dense_group, dense_size))
    if par.ep > 1 and par.dp > 1:
        out.append((True, "dp", par.dp))
    return out


def readiness(tensors: list[RankTensor]) -> dict[str, float]:
    """Fraction of the stage's backward done when each tensor's gradient is ready, taking
    backward as reverse model order with time proportional to parameters (an approximation:
    attention's compute does not scale with its parameters)."""
    total = sum(t.numel for t in tensors) or 1
    out, done = {}, 0
    for t in reversed(tensors):
        done += t.numel
        out[t.name] = done / total
    return out


def _bucket_ops(tensors: list[RankTensor], item: int, group: str, size: int, collective: str,
                calls: int, cap: int, first: int, ready: dict[str, float], label: str,
                stages: tuple[int, ...] | None) -> list[CommOp]:
    """One op per gradient bucket, buckets in backward (reverse) order."""
    order = list(reversed(tensors))
    ops = []
    for k, b in enumerate(assign_buckets([t.numel * item for t in order], cap, first)):
        done = max(ready[t.name] for t in order[b.first:b.last + 1])
        nbytes = b.nbytes if collective == ALLREDUCE else padded(b.nbytes, size)
        span = order[b.first].layer if order[b.first].layer == order[b.last].layer else \
            f"{order[b.last].layer}..{order[b.first].layer}"
        ops.append(CommOp("dp", group, collective, nbytes, calls, "backward",
                          f"{label} bucket {k + 1} ({b.last - b.first + 1} tensors, {span})",
                          f"{label} buckets", stages, done))
    return ops


def _units(tensors: list[RankTensor]) -> list[tuple[str, int]]:
    """(layer, elements) per FSDP/ZeRO-3 unit, in model order."""
    units: dict[str, int] = {}
    for t in tensors:
        units[t.layer] = units.get(t.layer, 0) + t.numel
    return list(units.items())


def dp_ops(model: ModelSpec, par: Parallel, batch: Batch, item: int, cap: int, first: int) -> list[CommOp]:
    ops: list[CommOp] = []
    m = batch.micro_batches
    for stage in range(par.pp):
        stages = (stage,) if par.pp > 1 else None
        tensors = rank_tensors(model, par, stage)
        ready = readiness(tensors)
        for experts, group, size in _dp_groups(par):
            mine = [t for t in tensors if t.expert == experts]
            if not mine:
                continue
            label = "expert gradient" if experts else "gradient"
            s = par.strategy
            if s == "ddp":
                ops += _bucket_ops(mine, item, group, size, ALLREDUCE, 1, cap, first, ready, label, stages)
            elif s in ("zero1", "zero2"):
                ops += _bucket_ops(mine, item, group, size, REDUCE_SCATTER, 1 if s == "zero1" else m,
                                   cap, first, ready, label, stages)
                for k, b in enumerate(assign_buckets([t.numel * item for t in reversed(mine)], cap, first)):
                    ops.append(CommOp("dp", group, ALLGATHER, padded(b.nbytes, size), 1, "optimizer",
                                      f"updated {'expert ' if experts else ''}parameters, bucket {k + 1}",
                                      f"{'expert ' if experts else ''}parameter allgather", stages))
            else:  # zero3, fsdp: gather each layer's parameters when it runs, forward and backward
                units = _units(mine)
                what = "expert parameters" if experts else "parameters"
                for layer, numel in units:
                    ops.append(CommOp("dp", group, ALLGATHER, padded(numel * item, size), m, "forward",
                                      f"{layer} {what}", f"forward {what} allgather (per layer)", stages))
                for layer, numel in reversed(units):
                    done = max(ready[t.name] for t in mine if t.layer == layer)
                    ops.append(CommOp("dp", group, ALLGATHER, padded(numel * item, size), m, "backward",
                                      f"{layer} {what}", f"backward {what} allgather (per layer)", stages))
                    if s == "fsdp":
                        ops.append(CommOp("dp", group, REDUCE_SCATTER, padded(numel * item, size), m,
                                          "backward", f"{layer} {label}s", f"{label} reduce-scatter (per layer)",
                                          stages, done))
                if s == "zero3":
                    ops += _bucket_ops(mine, item, group, size, REDUCE_SCATTER, m, cap, first, ready,
                                       label, stages)
    return ops


# -- tensor, pipeline and expert parallelism ----------------------------------------------------------


def tp_ops(model: ModelSpec, par: Parallel, batch: Batch, item: int) -> list[CommOp]:
    t = model.transformer
    if t is None or par.tp == 1:
        return []
    m = batch.micro_batches
    act = batch.micro_batch * batch.seq_len * t.hidden * item
    ops: list[CommOp] = []

    def reduce_ops(calls: int, phase: str, what: str, section: str, stages: tuple[int, ...] | None) -> None:
        if calls <= 0:
            return
        if par.sp:   # allreduce = reduce-scatter (to sequence shards) + allgather (back)
            ops.append(CommOp("tp", "tp", ALLGATHER, act, calls, phase, what + " (sequence-parallel gather)",
                              section, stages))
            ops.append(CommOp("tp", "tp", REDUCE_SCATTER, act, calls, phase, what + " (sequence-parallel "
                              "reduce-scatter)", section, stages))
        else:
            ops.append(CommOp("tp", "tp", ALLREDUCE, act, calls, phase, what, section, stages))

    counts = stage_block_counts(model, par.pp)
    for stage, (blocks, _) in enumerate(counts):
        stages = (stage,) if par.pp > 1 else None
        reduce_ops(2 * blocks * m, "forward", "layer outputs (after attention, after MLP)",
                   "transformer layers", stages)
        reduce_ops(2 * blocks * m, "backward", "layer input gradients (before attention, before MLP)",
                   "transformer layers", stages)
    if t.vocab:
        first = (0,) if par.pp > 1 else None
        last = (par.pp - 1,) if par.pp > 1 else None
        if par.sp:
            ops.append(CommOp("tp", "tp", REDUCE_SCATTER, act, m, "forward", "vocabulary-parallel embedding "
                              "output", "embedding and LM head", first))
            ops.append(CommOp("tp", "tp", ALLGATHER, act, m, "forward", "LM head input", "embedding and LM head", last))
            ops.append(CommOp("tp", "tp", REDUCE_SCATTER, act, m, "backward", "LM head input gradient",
                              "embedding and LM head", last))
        else:
            ops.append(CommOp("tp", "tp", ALLREDUCE, act, m, "forward", "vocabulary-parallel embedding output",
                              "embedding and LM head", first))
            ops.append(CommOp("tp", "tp", ALLREDUCE, act, m, "backward", "LM head input gradient",
                              "embedding and LM head", last))
        stat = batch.micro_batch * batch.seq_len * LOSS_STAT_BYTES
        ops.append(CommOp("tp", "tp", ALLREDUCE, stat, 3 * m, "forward", "cross-entropy statistics (max, "
                          "target logit, sum of exponentials; fp32)", "embedding and LM head", last))
    return ops


def pp_ops(model: ModelSpec, par: Parallel, batch: Batch, item: int) -> list[CommOp]:
    t = model.transformer
    if t is None or par.pp == 1:
        return []
    m = batch.micro_batches
    act = batch.micro_batch * batch.seq_len * t.hidden * item // (par.tp if par.sp else 1)
    ops: list[CommOp] = []
    for s in range(par.pp - 1):
        group = f"pp {s}-{s + 1}"
        ops.append(CommOp("pp", group, P2P, act, m, "forward", f"activations, stage {s} to {s + 1}",
                          "stage boundaries", (s, s + 1), root=0))
        ops.append(CommOp("pp", group, P2P, act, m, "backward", f"activation gradients, stage {s + 1} to {s}",
                          "stage boundaries", (s, s + 1), root=1))
    if t.vocab and t.tie_embeddings:
        embed = model.layers[0].tensors[0]
        rows = -(-embed.shape[0] // par.tp)
        ops.append(CommOp("pp", "embedding", ALLREDUCE, rows * embed.shape[1] * item, 1, "optimizer",
                          "tied embedding gradients (first and last stage)", "tied embeddings",
                          (0, par.pp - 1)))
    return ops


def ep_ops(model: ModelSpec, par: Parallel, batch: Batch, item: int, skew: float) -> list[CommOp]:
    t = model.transformer
    if t is None or par.ep == 1:
        return []
    m = batch.micro_batches
    tokens = batch.micro_batch * batch.seq_len // (par.tp if par.sp else 1)
    nbytes = tokens * t.top_k * t.hidden * item
    ops: list[CommOp] = []
    for stage, (_, moe) in enumerate(stage_block_counts(model, par.pp)):
        stages = (stage,) if par.pp > 1 else None
        if moe:
            for phase in ("forward", "backward"):
                ops.append(CommOp("ep", "ep", ALLTOALL, nbytes, 2 * moe * m, phase,
                                  f"token {'dispatch and combine' if phase == 'forward' else 'gradients'} "
                                  f"(top-{t.top_k} of {t.experts} experts)", "MoE layers", stages, skew=skew))
    return ops


def build_step(model: ModelSpec, par: Parallel, batch: Batch, dtype: str, itemsize: int,
               bucket_cap: int = DEFAULT_CAP, first_bucket: int = DEFAULT_FIRST, skew: float = 1.0) -> Step:
    """The step's collectives by phase -- forward, backward, optimizer -- and within a phase by
    kind (DP, TP, PP, EP), each kind in layer order. Real frameworks interleave the kinds layer by
    layer; the sums are the same, and ``run`` keeps every group's own order."""
    ops = (dp_ops(model, par, batch, itemsize, bucket_cap, first_bucket) + tp_ops(model, par, batch, itemsize)
           + pp_ops(model, par, batch, itemsize) + ep_ops(model, par, batch, itemsize, skew))
    rank = {"forward": 0, "backward": 1, "optimizer": 2}
    ops.sort(key=lambda op: rank[op.phase])     # stable: each phase keeps its own order
    return Step(model, par, batch, dtype, itemsize, tuple(ops), bucket_cap, first_bucket)


# -- per-rank volumes ---------------------------------------------------------------------------------


def volume(op: CommOp, group_size: int) -> tuple[float, float]:
    """(paper volume, ring wire bytes) one rank sends for one call.

    Paper volume: allreduce 2n, allgather/reduce-scatter/alltoall n, p2p n for the sender
    (the ZeRO paper's accounting); wire: what ring algorithms send, the (p-1)/p factors included.
    """
    n, p = op.nbytes, group_size
    if op.collective == ALLREDUCE:
        return 2.0 * n, 2.0 * n * (p - 1) / p
    if op.collective == P2P:
        return float(n), float(n)
    return float(n), n * (p - 1) / p


def scaled(step: Step, factor: float, group_sizes: dict[str, int]) -> Step:
    """The step with byte counts multiplied by ``factor`` (run --scale), kept valid for each
    collective: whole elements, and whole 16-byte words per rank for allgather, reduce-scatter
    and alltoall."""
    item = step.itemsize
    out = []
    for op in step.ops:
        n = op.nbytes * factor
        if op.collective in (ALLGATHER, REDUCE_SCATTER, ALLTOALL):
            p = group_sizes[op.group]
            n = max(1, round(n / (16 * p))) * 16 * p
        else:
            n = max(1, round(n / item)) * item
        out.append(replace(op, nbytes=int(n)))
    return replace(step, ops=tuple(out), scale=factor)


def merge_key(op: CommOp) -> tuple:
    """Ops that are the same measurement: same group, collective, bytes and root."""
    return (op.kind, op.group, op.collective, op.nbytes, op.root, op.skew)


def distinct(ops: Iterable[CommOp]) -> dict[tuple, list[CommOp]]:
    """Ops grouped by :func:`merge_key`, in first-appearance order."""
    out: dict[tuple, list[CommOp]] = {}
    for op in ops:
        out.setdefault(merge_key(op), []).append(op)
    return out


__all__ = ["Batch", "CommOp", "Step", "build_step", "volume", "scaled", "distinct", "padded", "stage_layers",
           "ALLREDUCE", "ALLGATHER", "REDUCE_SCATTER", "ALLTOALL", "P2P"]
