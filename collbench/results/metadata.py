"""The metadata record that makes a results file self-describing and comparable."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..algorithms import vcounts
from ..run.spec import RunSpec
from ..run.topology import NodeMap
from ..trace import nccl_log
from .files import SCHEMA_VERSION

# Environment worth keeping: it changes what the libraries do. Never the whole environment.
_ENV_PREFIXES = ("NCCL_", "MPICH_", "MPIR_CVAR_", "FI_", "SLURM_", "UCX_", "OMPI_MCA_", "CUDA_",
                 "COLLBENCH_", "OMP_", "I_MPI_", "HYDRA_")
_ENV_EXACT = ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "LD_PRELOAD")

THREAD_LEVEL_NAMES = {0: "single", 1: "funneled", 2: "serialized", 3: "multiple"}


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def git_revision() -> str | None:
    """The checkout's commit (with ``-dirty`` when modified), or None outside a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def relevant_environment() -> dict[str, str]:
    return {k: v for k, v in sorted(os.environ.items())
            if k.startswith(_ENV_PREFIXES) or k in _ENV_EXACT}


def spec_record(spec: RunSpec) -> dict[str, Any]:
    return {
        "collectives": [c.value for c in spec.collectives],
        "algorithms": list(spec.algorithms),
        "algorithm_options": dict(spec.algorithm_options),
        "backend": spec.backend,
        "dtypes": [d.name for d in spec.dtypes],
        "ops": list(spec.ops),
        "sizes": list(spec.sizes),
        "placements": [p.value for p in spec.placements],
        "iterations": spec.iterations if spec.iterations is not None else "auto",
        "target_seconds": spec.target_seconds,
        "warmup": spec.warmup,
        "check": spec.check,
        "aggregation": spec.aggregation.label,
        "per_iteration": spec.per_iteration,
        "timeout": spec.timeout,
        "root": spec.root,
        "graph_replays": spec.graph_replays,
        "device": spec.device,
        "stage_host": spec.stage_host,
        "executor": spec.executor,
        # rows measured with --trace: traced operations ran after each row's timed loop
        "trace": ({"file": spec.trace, "iterations": spec.trace_iterations} if spec.trace else None),
        # --nvtx: NVTX ranges were pushed inside the timed loops (collbench/trace/nvtx.py)
        "nvtx": spec.nvtx,
        "nccl_log": spec.nccl_log,  # --nccl-log: the directory of NCCL's per-rank INFO logs
        # alltoallv's count matrix (-O skew= / -O counts=; null: the default zipf:1), the file's
        # weights included so that the run can be repeated without it
        "skew": vcounts.to_record(spec.skew),
    }


def collect(comm: Any, spec: RunSpec, argv: list[str], thread_level_requested: str,
            nodes: NodeMap, backend_metadata: dict[str, Any]) -> dict[str, Any]:
    """Build the metadata record (collective; meaningful on rank 0 only)."""
    import mpi4py
    from mpi4py import MPI

    library = MPI.Get_library_version().strip().splitlines()
    hosts = comm.gather(node_name_and_pid(), root=0)
    vendor = MPI.get_vendor()
    return {
        "type": "metadata",
        "schema": SCHEMA_VERSION,
        "collbench_version": __version__,
        "git_revision": git_revision() if comm.Get_rank() == 0 else None,
        "command": " ".join(shlex.quote(a) for a in argv),
        "argv": list(argv),
        "start_time": now_iso(),
        "nranks": comm.Get_size(),
        "nnodes": nodes.nnodes,
        "nodes": list(nodes.node_names),
        "ranks_per_node": nodes.ranks_per_node,
        "node_of_rank": list(nodes.node_of_rank),
        "processes": hosts,
        "mpi": {
            "library_version": library[0] if library else "unknown",
            "library_version_full": "\n".join(library),
            "vendor": f"{vendor[0]} {'.'.join(map(str, vendor[1]))}",
            "standard": ".".join(map(str, MPI.Get_version())),
            "thread_level": THREAD_LEVEL_NAMES.get(MPI.Query_thread(), str(MPI.Query_thread())),
            "thread_level_requested": thread_level_requested,
        },
        "software": {
            "python": sys.version.split()[0],
            "mpi4py": mpi4py.__version__,
            "numpy": np.__version__,
            "platform": platform.platform(),
        },
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "env": relevant_environment(),
        "spec": spec_record(spec),
        "backend": backend_metadata,
        # --nccl-log: what NCCL's logs say so far (version, network, transports; trace/nccl_log.py)
        "nccl_log": nccl_log.collect(comm, spec.nccl_log),
        # --plugin / COLLBENCH_PLUGINS: the user code loaded in this job (file and its sha256)
        "plugins": plugins_record(comm),
    }


def plugins_record(comm: Any) -> list[dict[str, Any]]:
    """Rank 0's plugins (collbench/plugins.py), each with the ranks whose file differs (by
    sha256) or that did not load it, under ``differs_on_ranks`` when there are any
    (collective)."""
    from .. import plugins

    mine = plugins.records()
    seen = comm.gather({r["module"] if r["path"] is None else r["path"]: r["sha256"] for r in mine}
                       if comm.Get_rank() else None, root=0)
    if comm.Get_rank() != 0:
        return mine
    for record in mine:
        key = record["module"] if record["path"] is None else record["path"]
        differs = [rank for rank, other in enumerate(seen) if rank and other.get(key, "") != record["sha256"]]
        if differs:
            record["differs_on_ranks"] = differs
    return mine


def node_name_and_pid() -> dict[str, Any]:
    from ..run.topology import node_name

    return {"host": node_name(), "pid": os.getpid()}
