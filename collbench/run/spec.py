"""RunSpec: everything a sweep measures, fixed before the first measurement."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from ..algorithms import Collective
from ..algorithms.vcounts import Skew
from ..backends.base import Placement
from ..dtypes import DType


class Aggregation(enum.Enum):
    """How per-rank times become one number (nccl-tests ``-a``)."""

    RANK0 = 0
    MEAN = 1
    MIN = 2
    MAX = 3

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class RunSpec:
    """A sweep: collectives × algorithms × dtypes × ops × sizes × placements on one backend.

    ``iterations`` None means automatic: rank 0 picks a count per size so the timed loop lasts
    about ``target_seconds`` (between ``min_iterations`` and ``max_iterations``) and broadcasts it.
    """

    collectives: tuple[Collective, ...]
    sizes: tuple[int, ...]
    dtypes: tuple[DType, ...]
    ops: tuple[str, ...]
    algorithms: tuple[str, ...] = ("native",)
    backend: str = "mpi"
    placements: tuple[Placement, ...] = (Placement.OUT_OF_PLACE, Placement.IN_PLACE)
    iterations: int | None = None
    warmup: int = 20
    check: int = 1
    aggregation: Aggregation = Aggregation.MAX
    per_iteration: bool = False
    timeout: float = 60.0
    root: int = 0
    target_seconds: float = 0.05
    min_iterations: int = 5
    max_iterations: int = 100000
    # explicit dtype/op names make unsupported combinations an error instead of a skip
    strict_dtypes: bool = False
    strict_ops: bool = False
    algorithm_options: tuple[tuple[str, object], ...] = field(default=())
    graph_replays: int = 0           # -G: CUDA-graph mode (GPU backends)
    device: str = "host"             # where MPI's buffers live: host or cuda
    stage_host: bool = False         # --device cuda with a non-CUDA-aware MPI: copy via the host
    executor: str = "auto"           # mpi on host buffers: auto | native (C loops) | python
    auto_profile: str | None = None  # --algo auto: the model's machine profile (--profile)
    auto_from: str | None = None     # --algo auto: choose from a previous sweep (--auto-from)
    trace: str | None = None         # --trace FILE: per-step timelines (collbench/trace/)
    trace_iterations: int = 3        # --trace-iters: traced operations per row, after validation
    skew: Skew | None = None         # alltoallv's count matrix: -O skew=<s> / -O counts=FILE
    nvtx: bool = False               # --nvtx: NVTX ranges for Nsight (GPU backends; trace/nvtx.py)
    nccl_log: str | None = None      # --nccl-log: directory of NCCL's per-rank INFO logs (trace/nccl_log.py)

    @property
    def max_bytes(self) -> int:
        return max(self.sizes) if self.sizes else 0
