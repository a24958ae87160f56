"""Does the model fit? Model-state memory per rank, as in Rajbhandari et al. 2020 (ZeRO) §3.

Mixed-precision Adam keeps, per parameter, the 16-bit weight and gradient (2 + 2 bytes) and
K = 12 bytes of fp32 optimizer state (master weight, momentum, variance); in float32 training
the weight and gradient take 4 + 4 bytes and Adam's two moments K = 8. ZeRO-1 partitions the
optimizer state over the data-parallel ranks, ZeRO-2 also the gradients, ZeRO-3/FSDP also the
weights. Activations, buffers and fragmentation are not counted: a plan refused here cannot
fit; one accepted may still not.
"""

from __future__ import annotations

from ..errors import UsageError
from .model import ModelSpec
from .plan import Parallel
from .shard import rank_tensors


def state_bytes(weights: int, item: int, shards: int, strategy: str) -> float:
    """Bytes of model state for ``weights`` parameters partitioned over ``shards`` ranks."""
    k = 12 if item < 4 else 8
    if strategy == "ddp":
        return weights * (2 * item + k)
    if strategy == "zero1":
        return weights * (2 * item + k / shards)
    if strategy == "zero2":
        return weights * (item + (item + k) / shards)
    return weights * (2 * item + k) / shards            # zero3, fsdp


def model_state_per_rank(model: ModelSpec, par: Parallel, item: int) -> tuple[float, int]:
    """(bytes, stage) for the pipeline stage whose ranks need the most."""
    best, where = 0.0, 0
    for stage in range(par.pp):
        tensors = rank_tensors(model, par, stage)
        dense = sum(t.numel for t in tensors if not t.expert)
        expert = sum(t.numel for t in tensors if t.expert)
        total = (state_bytes(dense, item, par.dp * par.ep, par.strategy)
                 + state_bytes(expert, item, par.dp, par.strategy))
        if total > best:
            best, where = total, stage
    return best, where


def check_memory(model: ModelSpec, par: Parallel, item: int, gpu_memory_gb: float | None) -> None:
    """UsageError when the model states alone exceed a GPU's memory (when it is given)."""
    if gpu_memory_gb is None:
        return
    need, stage = model_state_per_rank(model, par, item)
    if need > gpu_memory_gb * 1e9:
        where = f" on pipeline stage {stage}" if par.pp > 1 else ""
        raise UsageError(f"plan {par.label}: {model.name} does not fit: its model states need "
                         f"{need / 1e9:.1f} GB per rank{where}: weights, gradients and Adam state, "
                         f"ZeRO paper's accounting, activations not counted; but a GPU has "
                         f"{gpu_memory_gb:g} GB; shard more (zero3/fsdp, tp, pp) or add ranks")


__all__ = ["state_bytes", "model_state_per_rank", "check_memory"]
