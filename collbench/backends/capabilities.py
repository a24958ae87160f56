"""``collbench list``: which collective × algorithm × backend combinations this install can run,
and for the others, why not (missing GPU, NCCL, CuPy, a precondition at this rank count)."""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

from tabulate import tabulate

from ..algorithms import Collective, Layout, Problem
from .base import Capabilities

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


def declared(backend: str) -> Capabilities:
    """The capabilities a backend module declares (importing it needs no GPU stack)."""
    module = importlib.import_module(f"{__package__}.{backend}")
    return module.CAPABILITIES


def _missing(caps: Capabilities, env: Environment) -> str | None:
    """Why the machine lacks what the backend needs (None: it has everything)."""
    for need in caps.needs:
        reason = {"mpi4py": env.mpi, "cupy": env.cupy, "gpu": env.gpu, "nccl": env.nccl}[need]
        if reason:
            return reason
    return None


def capability_rows(nranks: int, ranks_per_node: int | None, env: Environment) -> list[tuple[str, str, str, str]]:
    """(collective, algorithm, backend, 'yes' or the reason) for every combination."""
    layout = Layout.blocked(nranks, ranks_per_node) if ranks_per_node else None
    caps = {backend: declared(backend) for backend in BACKEND_ORDER}
    rows = []
    for collective in Collective:
        names = [n for c in caps.values() for n in c.algorithm_names(collective)]
        for name in dict.fromkeys(["native", *names]):
            for backend, cap in caps.items():
                rows.append((collective.value, name, backend,
                             _status(collective, name, cap, nranks, layout, env)))
    return rows


def _status(collective: Collective, name: str, caps: Capabilities, nranks: int, layout: Layout | None,
            env: Environment) -> str:
    if not caps.implements(name, collective):
        owners = [b for b in BACKEND_ORDER if name in declared(b).own_algorithms.get(collective, ())]
        return f"{'/'.join(owners)} backend only" if owners else f"not on the {caps.backend} backend"
    reason = _missing(caps, env)
    if reason:
        return reason
    # a backend module may say what it cannot run before any device is seen (the cuda backend's
    # interpreter: one node, at most 8 ranks); its backend asks the same function, so they agree
    static = getattr(importlib.import_module(f"{__package__}.{caps.backend}"), "static_reason", None)
    reason = static(collective, name, nranks, layout) if static is not None else None
    if reason:
        return reason
    if name != "native" and name not in caps.own_algorithms.get(collective, ()):
        from ..execute.programs import algorithm_unsupported_reason

        problem = Problem(collective, nranks, 1024, 0, layout)
        reason = algorithm_unsupported_reason(name, problem, "sum")
        if reason:
            return reason
    note = caps.native_notes.get(collective) if name == "native" else None
    # where the executor differs from the backend's usual one (the cuda backend's schedules across
    # nodes: cuda-interp+nccl), the module says so; the backend's rows carry the same value
    executor = getattr(importlib.import_module(f"{__package__}.{caps.backend}"), "static_executor", None)
    composed = executor(collective, name, nranks, layout) if executor is not None else None
    if composed is not None and "+" in composed:
        note = f"executor {composed}"
    return f"yes ({note})" if note else "yes"


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
