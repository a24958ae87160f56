"""csrc/compress.cu's naming contract with collbench/compress/device.py, on the preprocessed
source. (tests/gpu/test_compile.py compiles every .cu, compress.cu included, for sm_80 and
sm_90 with warnings as errors, and its per-dtype modules for sm_90.)"""

from __future__ import annotations

import re
import subprocess

import pytest

from collbench.compress.device import GPU_DTYPES, kernel_names
from collbench.gpu import kernel_sources as _sources

pytestmark = pytest.mark.cuda_compile

SOURCE = _sources.csrc_dir() / "compress.cu"


def _nvcc() -> str:
    import shutil

    from cbtest import IN_CI

    nvcc = shutil.which("nvcc")
    if nvcc is None:
        if IN_CI:
            pytest.fail("CI=true but nvcc is not installed")
        pytest.skip("nvcc not found")
    return nvcc


def _entry_points(*defines: str) -> set[str]:
    proc = subprocess.run([_nvcc(), "-std=c++17", "-E", "-x", "cu", f"-I{_sources.csrc_dir()}", *defines,
                           str(SOURCE)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return set(re.findall(r'extern\s+"C"[^;{]*?\b(compress_\w+)\s*\(', proc.stdout))


def test_every_kernel_python_launches_exists_and_no_other() -> None:
    assert _entry_points() == kernel_names()


def test_per_dtype_module_holds_its_kernels_and_the_dtype_free_ones() -> None:
    assert "bfloat16" in GPU_DTYPES
    info = _sources.dtype_info("bfloat16")
    assert _entry_points(f"-DCOLLBENCH_ONLY_DTYPE={info.dtype_id}") == kernel_names("bfloat16")
