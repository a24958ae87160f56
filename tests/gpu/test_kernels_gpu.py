"""The kernels on a real device against numpy (skipped without a CUDA device).

A quick subset of scripts/gpu_kernels_check.py (which is the full check), reusing its numpy
reference so the two cannot disagree about the expected arithmetic.
"""

from __future__ import annotations

import numpy as np
import pytest
from _gpu_helpers import gpu_skip_reason, load_check_script

from collbench.gpu import kernel_sources as _sources
from collbench.gpu import kernels

check_script = load_check_script()  # the check script's numpy reference, as a module

_REASON = gpu_skip_reason()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(_REASON is not None, reason=str(_REASON))]

SIZES = [0, 1, 15, 17, 4097, 100_003]


@pytest.mark.parametrize("dtype", list(_sources.dtypes()))
@pytest.mark.parametrize("op", ["sum", "prod", "max", "min", "avg"])
def test_reduce_matches_numpy(dtype, op) -> None:
    cp = kernels.cupy_module()
    info = _sources.dtype_info(dtype)
    rng = np.random.default_rng()
    dt = "bfloat16" if dtype == "bfloat16" else None
    for n in SIZES:
        for offset in (0, 1):
            a, b = check_script.random_data(rng, info, n), check_script.random_data(rng, info, n)
            da = cp.asarray(np.concatenate([np.zeros(offset, info.storage), a]))[offset:]
            db = cp.asarray(np.concatenate([np.zeros(offset, info.storage), b]))[offset:]
            out = cp.empty(n + offset, info.storage)[offset:]
            out.view(cp.uint8).fill(0xA5)
            kernels.reduce(op, out, da, db, dtype=dt)
            ref = check_script.ref_reduce(op, info, [a, b])
            if op == "avg":
                kernels.finalize_avg(out, 2, dtype=dt)
                ref = check_script.ref_finalize(info, ref, 2)
            got = out.get()
            bad = check_script.mismatches(info, op, got, ref)
            assert not bad.any(), f"n={n} offset={offset}: " + check_script.describe_mismatch(info, bad, got, ref)


@pytest.mark.parametrize("dtype", ["int8", "float16", "bfloat16", "float32", "float64"])
def test_reduce_many_matches_numpy(dtype) -> None:
    cp = kernels.cupy_module()
    info = _sources.dtype_info(dtype)
    rng = np.random.default_rng()
    dt = "bfloat16" if dtype == "bfloat16" else None
    for nin in (1, 3, 8):
        hosts = [check_script.random_data(rng, info, 4099) for _ in range(nin)]
        out = cp.empty(4099, info.storage)
        kernels.reduce_many("sum", out, [cp.asarray(h) for h in hosts], dtype=dt)
        ref = check_script.ref_reduce("sum", info, hosts)
        got = out.get()
        assert not check_script.mismatches(info, "sum", got, ref).any()


def test_in_place_reduce() -> None:
    cp = kernels.cupy_module()
    a = cp.arange(1000, dtype=cp.float32)
    b = cp.ones(1000, dtype=cp.float32)
    kernels.reduce("sum", a, a, b)
    assert np.array_equal(a.get(), np.arange(1000, dtype=np.float32) + 1)
