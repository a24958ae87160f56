"""NCCL as a library, without a GPU: found, loaded, versioned; tables cover every dtype/op."""

import pytest

from cbtest import IN_CI
from collbench.dtypes import DTYPES, OPS
from collbench.gpu import nccl_lib


def _loaded():
    try:
        return nccl_lib.load()
    except OSError as exc:
        if IN_CI:
            raise  # the test extras install nvidia-nccl-cu13: CI must find it
        pytest.skip(f"libnccl not installed here: {exc}")


def test_libnccl_loads_and_reports_its_version():
    _, path = _loaded()
    code = nccl_lib.version_code()
    assert code >= 21000, f"{path} reports NCCL {code}; collbench needs 2.10+ (bfloat16, avg)"
    text = nccl_lib.version_string(code)
    major, minor, patch = (int(x) for x in text.split("."))
    assert major * 10000 + minor * 100 + patch == code


def test_version_string_formats():
    assert nccl_lib.version_string(22703) == "2.27.3"
    assert nccl_lib.version_string(2708) == "2.7.8"


def test_tables_cover_every_collbench_dtype_and_op():
    assert set(nccl_lib.NCCL_DTYPES) == set(DTYPES)
    assert set(nccl_lib.NCCL_OPS) == set(OPS)
    assert len(set(nccl_lib.NCCL_DTYPES.values())) == len(DTYPES)


def test_missing_library_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(nccl_lib, "library_candidates", lambda: [nccl_lib.Path("/nonexistent/libnccl.so.2")])
    nccl_lib.load.cache_clear()
    try:
        with pytest.raises(OSError, match="libnccl not found; install collbench\\[cuda12\\]"):
            nccl_lib.load()
    finally:
        nccl_lib.load.cache_clear()
