"""What a workload command needs besides the model and the plan: batch shape, data type,
bucket sizes, routing skew, rank order, GPU memory -- parsed once, shared by show, predict
and run."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from ..cli.argtypes import positive_float
from ..dtypes import DTYPES, parse_dtypes
from ..errors import UsageError
from ..sizes import parse_size
from .buckets import DEFAULT_CAP, DEFAULT_FIRST
from .memory import check_memory
from .model import ModelSpec
from .plan import DEFAULT_ORDER, Parallel, Plan, parse_order, resolve
from .step import Batch, Step, build_step


@dataclass(frozen=True)
class Options:
    dtype: str = "bfloat16"
    micro_batch: int | None = None        # None: the model's default
    seq_len: int | None = None            # None: the model's sequence length
    micro_batches: int | None = None      # None: 1, or 4 × pp with pipeline parallelism
    bucket_cap: int = DEFAULT_CAP
    first_bucket: int = DEFAULT_FIRST
    skew: float = 1.0
    order: tuple[str, ...] = DEFAULT_ORDER
    gpu_memory_gb: float | None = None
    global_batch: int | None = None       # samples per step, all replicas: sets the micro-batch

    @property
    def itemsize(self) -> int:
        return DTYPES[self.dtype].itemsize

    def batch(self, model: ModelSpec, par: Parallel) -> Batch:
        seq = self.seq_len or (model.transformer.seq_len if model.transformer else 1)
        micro = self.micro_batches or (1 if par.pp == 1 else 4 * par.pp)
        if self.global_batch is not None:
            # a fixed global batch: comparing plans or node counts at equal work per step
            per = par.dp * par.ep * micro
            if self.global_batch % per:
                raise UsageError(f"plan {par.label}: the global batch of {self.global_batch} samples does not "
                                 f"split into {par.dp * par.ep} replicas x {micro} micro-batches")
            return Batch(self.global_batch // per, seq, micro)
        return Batch(self.micro_batch or model.micro_batch, seq, micro)

    def step(self, model: ModelSpec, plan: Plan, world: int, ranks_per_node: int) -> Step:
        """Resolve, check (memory too, when given) and build the step: UsageError if impossible."""
        par = resolve(plan, model, world, ranks_per_node, self.order)
        check_memory(model, par, self.itemsize, self.gpu_memory_gb)
        return build_step(model, par, self.batch(model, par), self.dtype, self.itemsize, self.bucket_cap,
                          self.first_bucket, self.skew)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("training step")
    g.add_argument("-d", "--dtype", default="bfloat16",
                   help="data type of gradients, parameters and activations on the wire (default bfloat16: "
                        "mixed precision; float32 for DDP with fp32 gradients)")
    g.add_argument("--micro-batch-size", "--mbs", type=int, default=None, dest="micro_batch",
                   help="samples per micro-batch per data-parallel replica (default: the model's)")
    g.add_argument("--global-batch", type=int, default=None,
                   help="samples per step over all replicas; sets the micro-batch size (compare plans and "
                        "node counts at equal work)")
    g.add_argument("--seq-len", type=int, default=None, help="tokens per sample (default: the model's)")
    g.add_argument("--micro-batches", type=int, default=None,
                   help="micro-batches per step: gradient accumulation, pipeline micro-batches "
                        "(default 1, or 4 × pp with pipeline parallelism)")
    g.add_argument("--bucket-cap", default="25M",
                   help="DDP/ZeRO gradient bucket cap (PyTorch bucket_cap_mb; default 25M)")
    g.add_argument("--first-bucket", default="1M",
                   help="the first bucket's cap (PyTorch's _DEFAULT_FIRST_BUCKET_BYTES; default 1M; 0: same as the others)")
    g.add_argument("--ep-skew", type=positive_float, default=1.0, dest="skew",
                   help="expert parallelism: the busiest rank's routed tokens over the mean (default 1: balanced)")
    g.add_argument("--order", default=None,
                   help="rank order of the grid, fastest first (default tp,ep,dp,pp: TP and EP inside a "
                        "node, DP across nodes)")
    g.add_argument("--gpu-memory", type=positive_float, default=None, metavar="GB",
                   help="refuse plans whose model states do not fit in this many GB per GPU")


def options_from(args: argparse.Namespace) -> Options:
    dtype = parse_dtypes(args.dtype)
    if len(dtype) != 1:
        raise UsageError("--dtype: give one data type")
    if args.global_batch is not None and args.micro_batch is not None:
        raise UsageError("--global-batch sets the micro-batch size: give one of --global-batch and "
                         "--micro-batch-size")
    for name in ("micro_batch", "seq_len", "micro_batches", "global_batch"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    if args.skew < 1:
        raise UsageError("--ep-skew is the busiest rank's load over the mean: at least 1")
    if args.gpu_memory is not None and args.gpu_memory <= 0:
        raise UsageError("--gpu-memory must be positive (GB)")
    cap = parse_size(args.bucket_cap, "--bucket-cap")
    if cap <= 0:
        raise UsageError("--bucket-cap must be positive")
    return Options(dtype[0].name, args.micro_batch, args.seq_len, args.micro_batches, cap,
                   parse_size(args.first_bucket, "--first-bucket"), args.skew, parse_order(args.order),
                   args.gpu_memory, args.global_batch)


__all__ = ["Options", "add_arguments", "options_from"]
