"""The optional compute estimate, and how much gradient synchronisation hides behind backward.

Training FLOPs per step are 6 · parameters · tokens (Kaplan et al. 2020: 2 in forward, 4 in
backward; active parameters for a mixture of experts), or 3 × the forward FLOPs per sample for
models given as layer lists (ResNet-50). They are spread evenly over the ranks and run at a
stated fraction (``--mfu``) of the GPU's peak; that fraction absorbs everything the estimate
does not model (pipeline bubbles, kernel efficiency, recomputation).

Overlap: backward is 2/3 of the compute. Gradient buckets (DDP allreduce, ZeRO/FSDP
reduce-scatter) become ready as backward walks the layers in reverse, in proportion to the
parameters done (:func:`.step.readiness`); each starts when it is ready and the previous one has
finished (one communication stream). What runs past the end of backward is exposed. Only the
last micro-batch is simulated; other traffic (TP, PP, EP, parameter gathers) is counted as
exposed.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError
from .cost import StageCost
from .model import ModelSpec
from .plan import Parallel
from .step import Batch

# Dense tensor-core peak per GPU, TFLOP/s: NVIDIA A100 datasheet (SXM: 312 bf16/fp16, 156 TF32).
PEAK_TFLOPS = {"perlmutter": {"bfloat16": 312.0, "float16": 312.0, "float32": 156.0},
               "delta": {"bfloat16": 312.0, "float16": 312.0, "float32": 156.0}}


def peak_for(profile_name: str, dtype: str, given: float | None) -> float:
    if given is not None:
        if given <= 0:
            raise UsageError("--peak-tflops must be positive")
        return given
    peak = PEAK_TFLOPS.get(profile_name, {}).get(dtype)
    if peak is None:
        raise UsageError(f"--mfu needs the GPU's peak: profile {profile_name!r} has no known peak for "
                         f"{dtype}; give --peak-tflops")
    return peak


def step_flops(model: ModelSpec, par: Parallel, batch: Batch) -> float:
    """Training FLOPs of one step, all ranks together."""
    replicas = par.dp * par.ep
    samples = batch.micro_batch * batch.micro_batches * replicas
    if model.transformer is not None:
        return 6.0 * model.active_params * samples * batch.seq_len
    if model.forward_flops_per_sample is None:
        raise UsageError(f"model {model.name}: the compute estimate needs forward_flops_per_sample "
                         "in its model file")
    return 3.0 * model.forward_flops_per_sample * samples


@dataclass(frozen=True)
class Compute:
    peak_tflops: float
    mfu: float
    seconds: float          # per step, per rank

    @property
    def backward(self) -> float:
        return self.seconds * 2 / 3

    def describe(self) -> str:
        return (f"compute: 6 · params · tokens FLOPs per step at {self.mfu:.0%} of "
                f"{self.peak_tflops:g} TFLOP/s peak per GPU")


def estimate(model: ModelSpec, par: Parallel, batch: Batch, peak_tflops: float, mfu: float) -> Compute:
    if not 0 < mfu <= 1:
        raise UsageError(f"--mfu {mfu}: give the fraction of peak, between 0 and 1 (e.g. 0.4)")
    flops = step_flops(model, par, batch) / par.world
    return Compute(peak_tflops, mfu, flops / (peak_tflops * 1e12 * mfu))


@dataclass(frozen=True)
class Overlap:
    sync_seconds: float      # gradient-sync ops of the last micro-batch, back to back
    exposed_seconds: float   # what runs past the end of backward

    @property
    def hidden_fraction(self) -> float:
        if self.sync_seconds <= 0:
            return 1.0
        return 1.0 - self.exposed_seconds / self.sync_seconds


def overlap(stage: StageCost, compute: Compute, micro_batches: int) -> Overlap:
    backward = compute.backward / max(1, micro_batches)
    syncs = sorted((c for c in stage.ops if c.op.ready is not None and c.op.phase == "backward"),
                   key=lambda c: c.op.ready or 0.0)
    clock = 0.0
    busy = 0.0
    for c in syncs:
        start = max(clock, (c.op.ready or 0.0) * backward)
        clock = start + c.seconds
        busy += c.seconds
    return Overlap(busy, max(0.0, clock - backward) if syncs else 0.0)


__all__ = ["Compute", "Overlap", "estimate", "overlap", "peak_for", "step_flops", "PEAK_TFLOPS"]
