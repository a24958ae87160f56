"""Which parameters one rank holds: its pipeline stage's layers, split by tensor and expert
parallelism.

Pipeline stages take whole layers: transformer blocks as evenly as possible (earlier stages
take one more when they do not divide), the embedding with the first stage and the head with
the last. Megatron splits ``col``/``row`` tensors by TP and pads the vocabulary to a multiple
of TP; a rank holds ``experts / ep`` experts of each MoE layer. With tied embeddings and more
than one stage, the last stage keeps its own copy of the token embedding for the LM head
(Megatron), whose gradient is summed with the first stage's every step.
"""

from __future__ import annotations

from dataclasses import dataclass

from .model import Layer, ModelSpec
from .plan import Parallel


@dataclass(frozen=True)
class RankTensor:
    """One parameter tensor as one rank holds it."""

    name: str
    layer: str
    numel: int
    expert: bool


def stage_layers(model: ModelSpec, pp: int) -> list[list[Layer]]:
    """The layers of each pipeline stage, in model order."""
    blocks = [layer for layer in model.layers if layer.block]
    if pp == 1 or not blocks:
        return [list(model.layers)]
    base, extra = divmod(len(blocks), pp)
    counts = [base + (1 if s < extra else 0) for s in range(pp)]
    stages: list[list[Layer]] = [[] for _ in range(pp)]
    k = 0
    for s, count in enumerate(counts):
        stages[s] = blocks[k:k + count]
        k += count
    first = model.layers[0]
    last = model.layers[-1]
    if not first.block:
        stages[0].insert(0, first)
    if not last.block:
        stages[-1].append(last)
    return stages


def _local_numel(numel: int, shape: tuple[int, ...], shard: str | None, tp: int) -> int:
    if tp == 1 or shard is None:
        return numel
    if shard == "vocab":        # rows padded to a multiple of tp, then split
        rows = -(-shape[0] // tp)
        return rows * (numel // shape[0])
    return numel // tp          # col/row: heads, KV heads and FFN divide by tp (checked)


def rank_tensors(model: ModelSpec, par: Parallel, stage: int) -> list[RankTensor]:
    """The tensors a rank of ``stage`` holds, in model order."""
    experts_here = None
    t = model.transformer
    if t is not None and t.moe:
        experts_here = t.experts // par.ep
    out: list[RankTensor] = []
    for layer in stage_layers(model, par.pp)[stage]:
        for tensor in layer.tensors:
            if tensor.expert is not None and experts_here is not None and tensor.expert >= experts_here:
                continue        # another EP rank holds this expert (rank 0's share stands for all)
            out.append(RankTensor(tensor.name, layer.name,
                                  _local_numel(tensor.numel, tensor.shape, tensor.shard, par.tp),
                                  tensor.expert is not None))
    if par.pp > 1 and stage == par.pp - 1 and t is not None and t.vocab and t.tie_embeddings:
        embed = model.layers[0].tensors[0]
        out.append(RankTensor(embed.name + " (copy for the LM head)", model.layers[-1].name,
                              _local_numel(embed.numel, embed.shape, embed.shard, par.tp), False))
    return out


def stage_block_counts(model: ModelSpec, pp: int) -> list[tuple[int, int]]:
    """(blocks, MoE blocks) per stage."""
    return [(sum(1 for layer in s if layer.block), sum(1 for layer in s if layer.moe))
            for s in stage_layers(model, pp)]


__all__ = ["RankTensor", "stage_layers", "rank_tensors", "stage_block_counts"]
