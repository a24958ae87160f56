"""Helpers shared by the GPU tests (a plain module, not a conftest.py: the repository's test
modules import `conftest` by name, so a second conftest.py here would shadow theirs). The fake
CuPy is not here: it is tests/gpu/fakecuda (``from fakecuda import FAKECUDA, fake_cupy``)."""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

from cbtest import REPO


def gpu_skip_reason() -> str | None:
    """None when a CUDA device is usable, else why not (never raises)."""
    from collbench.gpu.kernels import gpu_status

    ok, why = gpu_status()
    return None if ok else f"no CUDA device: {why}"


def load_check_script():
    """scripts/gpu_kernels_check.py imported as a module (its numpy reference helpers)."""
    if "gpu_kernels_check" in sys.modules:
        return sys.modules["gpu_kernels_check"]
    path = REPO / "scripts" / "gpu_kernels_check.py"
    spec = importlib.util.spec_from_file_location("gpu_kernels_check", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_kernels_check"] = mod
    spec.loader.exec_module(mod)
    return mod


class FakeNode:
    """The mpi4py communicator calls the host-side GPU code makes, for ranks that are threads
    (``shared``: ``n`` ranks, a ``slots`` list of n and a ``threading.Barrier(n)``)."""

    def __init__(self, rank: int, shared: dict) -> None:
        self.rank, self.shared = rank, shared

    def Get_rank(self) -> int:
        return self.rank

    def Get_size(self) -> int:
        return self.shared["n"]

    def allgather(self, x: Any) -> list:
        sh = self.shared
        sh["slots"][self.rank] = x
        sh["barrier"].wait(timeout=20)
        out = list(sh["slots"])
        sh["barrier"].wait(timeout=20)
        return out

    def gather(self, x: Any, root: int = 0) -> list | None:
        out = self.allgather(x)
        return out if self.rank == root else None

    def Barrier(self) -> None:
        self.allgather(None)
