"""GPU-side Python that needs no device: tables, layouts, argument validation, reference math."""

from __future__ import annotations

import re
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from _gpu_helpers import load_check_script

from collbench.gpu import ipc, kernels
from collbench.gpu import kernel_sources as _sources

# -- dtype / op tables ----------------------------------------------------------------------


check_script = load_check_script()  # the check script's numpy reference, as a module

def test_dtype_table_is_complete_and_consistent() -> None:
    table = _sources.dtypes()
    assert list(table) == ["int8", "uint8", "int32", "uint32", "int64", "uint64", "float16", "bfloat16",
                           "float32", "float64"]
    assert table["bfloat16"].storage == np.dtype(np.uint16)  # CuPy has no bfloat16
    assert table["float16"].storage == np.dtype(np.float16)
    assert {i.itemsize for i in table.values()} == {1, 2, 4, 8}
    ids = [i.dtype_id for i in table.values()]
    assert len(set(ids)) == len(ids) and 0 not in ids  # 0 means "every dtype" to the kernels
    assert _sources.dtypes() is table  # built once


def test_unknown_dtype_and_op_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="unknown dtype 'float8'"):
        _sources.dtype_info("float8")
    with pytest.raises(ValueError, match="unknown reduction op 'xor'"):
        _sources.check_op("xor")


def test_header_constants_match_the_kernel_structs() -> None:
    c = _sources.header_constants()
    assert c["SIG_COUNTERS_WORD"] >= c["MAX_BLOCKS"] * c["MAX_RANKS"]
    assert (c["SIG_ERROR_WORD"] + c["ERR_WORDS"]) * 4 <= c["SIG_BYTES"]
    assert c["DESC_BYTES"] == 4 * c["MAX_RANKS"] * 8 + 8
    # Kernel ids the Python error messages name are the ones the kernels write.
    assert set(ipc._KERNEL_NAMES) == {c["KID_ONE_SHOT"], c["KID_TWO_SHOT"], c["KID_ALLGATHER"], c["KID_REDUCE_SCATTER"]}


def test_sources_digest_changes_with_any_source(tmp_path, monkeypatch) -> None:
    for p in _sources.csrc_dir().glob("*.cu*"):
        (tmp_path / p.name).write_bytes(p.read_bytes())
    monkeypatch.setenv("COLLBENCH_CSRC", str(tmp_path))
    _sources.sources_digest.cache_clear()
    before = _sources.sources_digest()
    (tmp_path / "collbench_common.cuh").write_text((tmp_path / "collbench_common.cuh").read_text() + "\n// edit\n")
    _sources.sources_digest.cache_clear()
    assert _sources.sources_digest() != before
    monkeypatch.delenv("COLLBENCH_CSRC")
    _sources.sources_digest.cache_clear()


def test_compile_options_select_one_dtype() -> None:
    opts = kernels.compile_options(_sources.dtype_info("bfloat16"))
    assert "-std=c++17" in opts
    assert f"-DCOLLBENCH_ONLY_DTYPE={_sources.dtype_info('bfloat16').dtype_id}" in opts
    assert any(o.startswith("-I") and o.endswith("csrc") for o in opts)
    assert any(o.startswith("-DCOLLBENCH_SOURCES_DIGEST=0x") for o in opts)


def test_importing_the_gpu_package_needs_no_cupy() -> None:
    code = ("import sys; import collbench.gpu, collbench.gpu.ipc, collbench.gpu.kernels; "
            "assert 'cupy' not in sys.modules and 'mpi4py' not in sys.modules, 'eager import'")
    subprocess.run([sys.executable, "-c", code], check=True)


# -- argument validation ----------------------------------------------------------------------


def desc(ptr: int = 0x10000, size: int = 100, dtype: str = "float32", contiguous: bool = True, device: int = 0):
    return kernels.ArrayDesc(ptr, size, np.dtype(dtype), contiguous, device)


def test_validate_accepts_matching_arrays_and_exact_aliasing() -> None:
    info, n = kernels.validate_elementwise(desc(0x10000), [desc(0x20000), desc(0x30000)], None)
    assert (info.name, n) == ("float32", 100)
    # dst may be exactly an input (in place)
    kernels.validate_elementwise(desc(0x10000), [desc(0x10000), desc(0x30000)], None)


@pytest.mark.parametrize("dst,inputs,dtype,exc,pattern", [
    (desc(), [], None, ValueError, "at least one input"),
    (desc(), [desc(size=99)], None, ValueError, "99 elements"),
    (desc(), [desc(dtype="float64")], None, TypeError, "dtype float64"),
    (desc(), [desc(contiguous=False)], None, ValueError, "not contiguous"),
    (desc(), [desc(device=1)], None, ValueError, "device 1"),
    (desc(0x10000), [desc(0x10000 + 8)], None, ValueError, "partially overlaps"),
    (desc(dtype="uint16"), [desc(dtype="uint16")], None, TypeError, "dtype='bfloat16'"),
    (desc(dtype="int16"), [desc(dtype="int16")], None, TypeError, "unsupported buffer dtype int16"),
    (desc(), [desc()], "bfloat16", TypeError, "needs uint16 buffers"),
])
def test_validate_rejects(dst, inputs, dtype, exc, pattern) -> None:
    with pytest.raises(exc, match=pattern):
        kernels.validate_elementwise(dst, inputs, dtype)


def test_bfloat16_needs_its_name_and_uint16_storage() -> None:
    info, _ = kernels.validate_elementwise(desc(dtype="uint16"), [desc(0x20000, dtype="uint16")], "bfloat16")
    assert info.name == "bfloat16"


def test_zero_size_arrays_never_overlap() -> None:
    kernels.validate_elementwise(desc(0, size=0), [desc(0, size=0)] * 2, None)


def test_describe_rejects_host_arrays_and_odd_objects() -> None:
    with pytest.raises(TypeError, match="host numpy array"):
        kernels.describe(np.zeros(3))
    with pytest.raises(TypeError, match="must be a cupy.ndarray"):
        kernels.describe([1, 2, 3])
    fake = SimpleNamespace(data=SimpleNamespace(ptr=0x1234), dtype=np.dtype("int8"), size=5,
                           flags=SimpleNamespace(c_contiguous=True), device=SimpleNamespace(id=2))
    assert kernels.describe(fake) == kernels.ArrayDesc(0x1234, 5, np.dtype("int8"), True, 2)


@pytest.mark.parametrize("bad", [0, -1, True, 2.0, "2"])
def test_validate_nranks(bad) -> None:
    with pytest.raises((TypeError, ValueError)):
        kernels.validate_nranks(bad)
    assert kernels.validate_nranks(np.int64(3)) == 3


def test_wrappers_validate_before_touching_cupy() -> None:
    """Argument errors surface without a device (validation runs first)."""
    with pytest.raises(ValueError, match="unknown reduction op"):
        kernels.reduce("xor", None, None, None)
    with pytest.raises(TypeError, match="host numpy array"):
        kernels.reduce("sum", np.zeros(2), np.zeros(2), np.zeros(2))
    with pytest.raises(TypeError, match="nranks"):
        kernels.finalize_avg(None, "2")


def test_grid_for() -> None:
    assert kernels.grid_for(0, 4, 100) == 1
    assert kernels.grid_for(1, 4, 100) == 1
    assert kernels.grid_for(512 * 4 * 10, 4, 100) == 10
    assert kernels.grid_for(1 << 30, 4, 528) == 528


# -- IPC layouts and planning ---------------------------------------------------------------


def test_pack_desc_layout() -> None:
    c = _sources.header_constants()
    m = c["MAX_RANKS"]
    d = ipc.pack_desc([1, 2], [3, 4], [5, 6], [7, 8], rank=1, nranks=2)
    assert d.nbytes == c["DESC_BYTES"]
    assert list(d[0:2]) == [1, 2] and list(d[m:m + 2]) == [3, 4]
    assert list(d[2 * m:2 * m + 2]) == [5, 6] and list(d[3 * m:3 * m + 2]) == [7, 8]
    assert d[2] == 0  # unused slots stay null
    tail = d.view(np.int32)
    assert (tail[8 * m], tail[8 * m + 1]) == (1, 2)
    with pytest.raises(ValueError):
        ipc.pack_desc([1], [1], [1], [1], rank=1, nranks=1)
    with pytest.raises(ValueError):
        ipc.pack_desc([1] * 9, [1] * 9, [1] * 9, [1] * 9, rank=0, nranks=9)


def test_desc_layout_matches_the_struct_in_the_kernel_source() -> None:
    src = (_sources.csrc_dir() / "collbench_common.cuh").read_text()
    body = re.search(r"struct CommDesc \{(.*?)\};", src, re.S).group(1)
    fields = re.findall(r"(\w+)\s+(\w+)(\[COLLBENCH_MAX_RANKS\])?;", body)
    assert [(t, n, bool(a)) for t, n, a in fields] == [
        ("u64", "in", True), ("u64", "out", True), ("u64", "scratch", True), ("u64", "sig", True),
        ("i32", "rank", False), ("i32", "nranks", False)]


def test_decode_error() -> None:
    assert ipc.decode_error([0] * 16) is None
    c = _sources.header_constants()
    rec = ipc.decode_error([c["ERR_TIMEOUT"], c["KID_TWO_SHOT"], 3, 1, 2, 10, 9, 0, 5_000_000, 36, 0, 0, 0, 0, 0, 0])
    msg = rec.message()
    assert "rank 0" in msg and "two-shot" in msg and "block 3/36" in msg and "rank 1" in msg
    assert "5.000 s" in msg and "expected epoch 10, saw 9" in msg


@pytest.mark.parametrize("kind", ipc.KINDS)
def test_plan_grid_is_bounded_and_deterministic(kind) -> None:
    for count in (0, 1, 17, 4099, 1 << 20, 1 << 26):
        g = ipc.plan_grid(kind, count, 4, 4, 36, 512)
        assert 1 <= g <= 36
        assert g == ipc.plan_grid(kind, count, 4, 4, 36, 512)
    assert ipc.plan_grid("one_shot", 1 << 26, 4, 4, 36, 512) == 36
    with pytest.raises(ValueError):
        ipc.plan_grid("ring", 1, 4, 4, 36, 512)


def test_required_bytes() -> None:
    assert ipc.required_bytes("one_shot", 10, 4, 4) == 40
    assert ipc.required_bytes("allgather", 10, 4, 4) == 160
    assert ipc.required_bytes("reduce_scatter", 10, 2, 3) == 60


# -- the check script's numpy reference (what the kernels are compared with) ------------------


def test_bf16_rounding_matches_ml_dtypes() -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(10000).astype(np.float32),
                        rng.integers(0, 2**32 - 1, 10000, dtype=np.uint32).view(np.float32),
                        np.array([0.0, -0.0, np.inf, -np.inf, 1e-40, 3.4e38], dtype=np.float32)])
    ours = check_script.f32_to_bf16_bits(x)
    with np.errstate(invalid="ignore"):
        ref = x.astype(ml_dtypes.bfloat16).view(np.uint16)
    nan = np.isnan(x)
    assert np.array_equal(ours[~nan], ref[~nan])
    assert np.isnan(check_script.bf16_bits_to_f32(ours[nan])).all()


def test_trunc_div() -> None:
    x = np.array([-128, -7, -1, 0, 1, 7, 127], dtype=np.int8)
    assert list(check_script.trunc_div(x, 2)) == [-64, -3, 0, 0, 0, 3, 63]
    m = np.array([np.iinfo(np.int64).min], dtype=np.int64)
    assert check_script.trunc_div(m, 3)[0] == -(2**63 // 3)
    assert list(check_script.trunc_div(np.array([7, 255], np.uint8), 2)) == [3, 127]


def test_ref_reduce_wraps_and_rounds_once() -> None:
    i8 = _sources.dtype_info("int8")
    a = np.array([127, -128], np.int8)
    assert list(check_script.ref_reduce("sum", i8, [a, a])) == [-2, 0]
    # 3 * 127 wraps to 125, 3 * -128 wraps to -128; then C division truncates toward zero
    assert list(check_script.ref_reduce("avg", i8, [a, a, a], divide_by=3)) == [41, -42]
    f16 = _sources.dtype_info("float16")
    big = np.array([65504.0], np.float16)
    # float32 accumulation: 65504 + 65504 - 65504 rounds once at the end (no inf on the way)
    r = check_script.ref_reduce("sum", f16, [big, big, np.array([-65504.0], np.float16)])
    assert r[0] == np.float16(65504.0)


def test_mismatch_rules() -> None:
    f32 = _sources.dtype_info("float32")
    nan1 = np.array([np.nan], np.float32)
    nan2 = np.array([0x7FC00001], np.uint32).view(np.float32)
    assert not check_script.mismatches(f32, "sum", nan1, nan2).any()  # NaN payloads may differ
    assert check_script.mismatches(f32, "copy", nan1, nan2).any()  # ...but not in a copy
    z, nz = np.array([0.0], np.float32), np.array([-0.0], np.float32)
    assert not check_script.mismatches(f32, "max", z, nz).any()
    assert check_script.mismatches(f32, "sum", z, nz).any()


def test_random_data_covers_specials() -> None:
    rng = np.random.default_rng(1)
    x = check_script.random_data(rng, _sources.dtype_info("float32"), 100000)
    assert x.dtype == np.float32 and np.isnan(x).any() and (np.abs(x[np.isfinite(x)]) > 1e30).any()
    assert (np.abs(x[np.isfinite(x)]) < np.finfo(np.float32).tiny).any()  # subnormals (or zeros)
    y = check_script.random_data(rng, _sources.dtype_info("bfloat16"), 1000)
    assert y.dtype == np.uint16
    z = check_script.random_data(rng, _sources.dtype_info("uint64"), 1000)
    assert z.dtype == np.uint64 and z.max() > 2**62


def test_ipc_case_matrix_fits() -> None:
    for n in (1, 2, 4):
        cases = check_script.ipc_cases(n)
        kinds = {k for k, *_ in cases}
        assert kinds == {"one_shot", "two_shot", "reduce_scatter", "allgather"}
        assert any(c == 0 for *_, c, _ in cases)
        for kind, dt, op, count, _ in cases:
            assert (op is None) == (kind == "allgather")
            assert ipc.required_bytes(kind, count, _sources.dtype_info(dt).itemsize, n) <= 16 * 2**20 + 1024


def test_device_identity_is_the_physical_gpu(monkeypatch) -> None:
    """Ranks are told apart by UUID (per-task binding makes every index 0); an all-zero or
    missing UUID falls back to host and PCI bus id."""
    from collbench.gpu import device

    facts = {"uuid": "GPU-" + "ab" * 16, "pci": "0000:19:00"}
    monkeypatch.setattr(device, "device_facts", lambda index: dict(facts))
    monkeypatch.setattr(device, "node_name_for_map", lambda: "node7")
    assert device.device_identity(0) == "GPU-" + "ab" * 16
    for missing in ("GPU-" + "00" * 16, None):
        facts["uuid"] = missing
        assert device.device_identity(0) == "node7/pci:0000:19:00"
    assert device.shared_devices(["a", "b", "a", "c", "b"]) == [[0, 2], [1, 4]]
    assert device.shared_devices(["GPU-1", "GPU-2"]) == []
