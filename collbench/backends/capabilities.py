"""``collbench list``: which collective × algorithm × backend combinations this install can run,
and for the others, why not (missing GPU, NCCL, CuPy, a precondition at this rank count)."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from tabulate import tabulate

from ..algorithms import Collective, Layout, Problem
from ..algorithms.registry import algorithms_for

BACKEND_ORDER = ("mpi", "nccl", "cuda")


@dataclass(frozen=True)
class Environment:
    """What this machine offers; each field is None when available, else the reason."""

    mpi: str | None
    cupy: str | None
    gpu: str | None
    nccl: str | None
    details: tuple[str, ...]


def probe_environment() -> Environment:
    details = []
    mpi = None if importlib.util.find_spec("mpi4py") else "mpi4py is not installed"
    cupy_reason = gpu = nccl = None
    try:
        import cupy

        details.append(f"CuPy {cupy.__version__}")
        try:
            count = cupy.cuda.runtime.getDeviceCount()
            gpu = None if count > 0 else "no CUDA device visible"
            details.append(f"{count} CUDA device(s)")
        except Exception as exc:  # noqa: BLE001 - any CUDA failure means "no usable GPU"
            gpu = f"no usable CUDA device ({str(exc).split(':')[0]})"
    except ImportError:
        cupy_reason = gpu = "CuPy is not installed (pip install 'collbench[cuda12]' or [cuda13])"
    try:
        from ..gpu.nccl_lib import load, version_code, version_string

        _, path = load()
        details.append(f"NCCL {version_string(version_code())} ({path})")
    except OSError as exc:
        nccl = str(exc).split(";")[0]
    return Environment(mpi, cupy_reason, gpu, nccl, tuple(details))


def _backend_reason(backend: str, env: Environment) -> str | None:
    if env.mpi:
        return env.mpi
    if backend == "mpi":
        return None
    if env.cupy:
        return env.cupy
    if backend == "nccl" and env.nccl:
        return env.nccl
    return env.gpu


def capability_rows(nranks: int, ranks_per_node: int | None, env: Environment) -> list[tuple[str, str, str, str]]:
    """(collective, algorithm, backend, 'yes' or the reason) for every combination."""
    from .cuda import KERNEL_ALGORITHMS

    layout = Layout.blocked(nranks, ranks_per_node) if ranks_per_node else None
    rows = []
    for collective in Collective:
        names = ["native"] + [a.name for a in algorithms_for(collective, include_native=False)]
        cuda_names = list(dict.fromkeys(KERNEL_ALGORITHMS.get(collective, {})))
        if collective is Collective.ALLREDUCE:
            cuda_names.append("hierarchical")
        for name in dict.fromkeys(names + cuda_names):
            for backend in BACKEND_ORDER:
                rows.append((collective.value, name, backend,
                             _status(collective, name, backend, nranks, layout, env, cuda_names)))
    return rows


def _status(collective: Collective, name: str, backend: str, nranks: int, layout: Layout | None,
            env: Environment, cuda_names: list[str]) -> str:
    if backend == "cuda" and name not in cuda_names:
        return "no kernel"
    if backend != "cuda" and name in ("one_shot", "two_shot"):
        return "cuda backend only"
    reason = _backend_reason(backend, env)
    if reason:
        return reason
    if name != "native" and backend != "cuda":
        from ..execute.programs import algorithm_unsupported_reason

        problem = Problem(collective, nranks, 1024, 0, layout)
        reason = algorithm_unsupported_reason(name, problem, "sum")
        if reason:
            return reason
    if backend == "mpi" and name == "native" and collective is Collective.BROADCAST:
        return "yes (in place only)"
    return "yes"


def format_capabilities(nranks: int, ranks_per_node: int | None) -> str:
    """A grid of yes / no (n), with the numbered reasons below it."""
    env = probe_environment()
    reasons: dict[str, int] = {}
    table: dict[tuple[str, str], dict[str, str]] = {}
    for collective, name, backend, status in capability_rows(nranks, ranks_per_node, env):
        if not status.startswith("yes"):
            status = f"no ({reasons.setdefault(status, len(reasons) + 1)})"
        table.setdefault((collective, name), {})[backend] = status
    body = [[c, a, *(cells[b] for b in BACKEND_ORDER)] for (c, a), cells in table.items()]
    layout = f", {ranks_per_node} ranks per node" if ranks_per_node else ", one node"
    lines = [f"# what this install can run at {nranks} ranks{layout} (change with --ranks / --ranks-per-node)",
             f"# found: {', '.join(env.details) or 'no GPU stack'}",
             tabulate(body, headers=["collective", "algorithm", *BACKEND_ORDER], tablefmt="simple"),
             ""]
    lines += [f"({number}) {reason}" for reason, number in reasons.items()]
    return "\n".join(lines)
