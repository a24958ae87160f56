"""Helpers shared by the GPU tests (a plain module, not a conftest.py: the repository's test
modules import `conftest` by name, so a second conftest.py here would shadow theirs)."""

from __future__ import annotations

import importlib.util
import sys

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
