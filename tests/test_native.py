"""The C executor without mpiexec: building (and not building) its library, the flattening of
lowered programs, and the C arithmetic against numpy bit for bit (csrc/native_executor.c)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings

import ml_dtypes
import numpy as np
import pytest

from cbtest import REPO, native_library_or_skip
from collbench.algorithms import Buf, Collective, Copy, Layout, Problem, Reduce
from collbench.algorithms.reduction import OPS, finalize_avg, reduce_into
from collbench.algorithms.registry import algorithms_for
from collbench.dtypes import DTYPES
from collbench.execute import c_binding, c_build
from collbench.execute.bind import lower
from collbench.execute.tags import TAG_BASE, TAG_SPAN
from collbench.gpu.kernel_sources import csrc_dir


@pytest.fixture(scope="module")
def lib():
    return native_library_or_skip()


# -- flattening ------------------------------------------------------------------------------------

CASES = [(c, a.name) for c in Collective for a in algorithms_for(c, include_native=False)]


def _unflatten(flat: c_binding.FlatProgram):
    """Read the tables back as (tag, recvs, sends, local) per step, with Slices."""
    from collbench.algorithms import Slice

    c = c_binding.constants()
    bufs = {c["BUF_INPUT"]: Buf.INPUT, c["BUF_OUTPUT"]: Buf.OUTPUT, c["BUF_SCRATCH"]: Buf.SCRATCH}
    steps = []
    for tag, first, nrecv, nsend, nlocal in flat.steps.tolist():
        rows = flat.ops[first:first + nrecv + nsend + nlocal].tolist()
        decoded = []
        for kind, peer, length, b0, o0, b1, o1, b2, o2 in rows:
            s = [Slice(bufs[b], o, length) if b >= 0 else None for b, o in ((b0, o0), (b1, o1), (b2, o2))]
            decoded.append((kind, peer, s))
        recvs = [(peer, s[0]) for kind, peer, s in decoded[:nrecv] if kind == c["OP_RECV"]]
        sends = [(peer, s[0]) for kind, peer, s in decoded[nrecv:nrecv + nsend] if kind == c["OP_SEND"]]
        local = []
        for kind, _, s in decoded[nrecv + nsend:]:
            local.append({c["OP_COPY"]: lambda s: Copy(s[1], s[0]), c["OP_REDUCE"]: lambda s: Reduce(*s),
                          c["OP_FINALIZE"]: lambda s: ("finalize", s[0])}[kind](s))
        assert len(recvs) == nrecv and len(sends) == nsend
        steps.append((tag, recvs, sends, local))
    return steps


@pytest.mark.parametrize("collective, name", CASES, ids=[f"{c.value}-{n}" for c, n in CASES])
def test_flattening_reproduces_the_lowered_program(collective, name):
    from collbench.algorithms.registry import get_algorithm

    for nranks, count in ((1, 5), (4, 37), (6, 64)):
        layout = Layout.blocked(nranks, 2) if name == "hierarchical" and nranks % 2 == 0 else None
        if name == "hierarchical" and layout is None:
            continue
        problem = Problem(collective, nranks, count, root=nranks - 1 if collective.rooted else 0, layout=layout)
        algorithm = get_algorithm(name)
        op = "avg" if collective.reduces else None
        if algorithm.precondition(problem, op=op) is not None:
            continue
        for rank in range(nranks):
            for in_place in (False, True):
                lowered = lower(problem, algorithm.program(problem, rank), in_place, op)
                flat = c_binding.flatten(lowered)
                assert flat.steps.dtype == np.int64 and flat.ops.dtype == np.int64
                decoded = _unflatten(flat)
                expected = [(TAG_BASE + s.index % TAG_SPAN, list(s.recvs), list(s.sends), list(s.local))
                            for s in lowered.steps]
                if lowered.finalize is not None:
                    expected.append((TAG_BASE, [], [], [("finalize", lowered.finalize)]))
                assert decoded == expected
                assert sum(row[2] + row[3] + row[4] for row in flat.steps.tolist()) == len(flat.ops)


def test_no_schedule_needs_a_partially_overlapping_reduction():
    """The C executor refuses a reduction whose output partly overlaps an input (numpy would
    buffer it); no built-in schedule has one, so the C executor runs every algorithm."""
    from collbench.algorithms.registry import get_algorithm

    for collective, name in CASES:
        for nranks in (2, 3, 4, 5, 8):
            layout = Layout.blocked(nranks, 2) if name == "hierarchical" and nranks % 2 == 0 else None
            problem = Problem(collective, nranks, 29, root=0, layout=layout)
            algorithm = get_algorithm(name)
            if algorithm.precondition(problem, op="sum") is not None:
                continue
            for rank in range(nranks):
                for in_place in (False, True):
                    for step in lower(problem, algorithm.program(problem, rank), in_place, "sum").steps:
                        for item in step.local:
                            if isinstance(item, Reduce):
                                for src in (item.a, item.b):
                                    same = src == item.dst
                                    apart = (src.buf != item.dst.buf or src.end <= item.dst.offset
                                             or item.dst.end <= src.offset)
                                    assert same or apart, (name, nranks, rank, in_place, item)


# -- building --------------------------------------------------------------------------------------


def test_the_library_is_cached(lib, tmp_path):
    assert lib.path.is_file() and lib.digest in c_build.build_digest(lib.compiler)
    assert lib.path.name == f"libcollbench_native-{lib.digest[:20]}.so"
    assert not c_build.build_library(lib.compiler, lib.compiler_origin, lib.path)  # present: not rebuilt


def test_a_missing_compiler_is_a_reason_not_a_crash(tmp_path):
    script = textwrap.dedent("""
        from collbench.execute import c_build
        try:
            c_build.load()
        except c_build.NativeUnavailable as exc:
            print("UNAVAILABLE", exc)
    """)
    env = {**os.environ, "MPICC": "/nonexistent/mpicc", "XDG_CACHE_HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                            timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "UNAVAILABLE MPI compiler '/nonexistent/mpicc' ($MPICC) not found" in result.stdout


def test_a_compile_error_is_a_reason(tmp_path, lib):
    csrc = tmp_path / "csrc"
    csrc.mkdir()
    (csrc / c_binding.HEADER).write_text((csrc_dir() / c_binding.HEADER).read_text())
    (csrc / c_build.SOURCE).write_text("#include <mpi.h>\nthis is not C;\n")
    script = textwrap.dedent("""
        from collbench.execute import c_build
        try:
            c_build.load()
        except c_build.NativeUnavailable as exc:
            print("UNAVAILABLE", exc)
    """)
    env = {**os.environ, "COLLBENCH_CSRC": str(csrc), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                            timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "UNAVAILABLE building native_executor.c with" in result.stdout and "failed:" in result.stdout
    assert not list((tmp_path / "cache").rglob("*.so")), "a failed build must leave nothing to load"


def test_concurrent_builds_compile_once(tmp_path, lib):
    """Four processes (ranks of one node) start cold at once: one compiles, all load it."""
    script = textwrap.dedent("""
        from collbench.execute import c_build
        library = c_build.load()
        print("BUILT" if library.built_now else "FOUND", library.path)
    """)
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env, cwd=REPO) for _ in range(4)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outputs]
    lines = [o.split() for o, _ in outputs]
    assert sorted(word for word, _ in lines) == ["BUILT", "FOUND", "FOUND", "FOUND"]
    assert len({path for _, path in lines}) == 1
    assert [p.name for p in (tmp_path / "collbench" / "native").iterdir() if p.suffix == ".so"] == \
        [lines[0][1].rsplit("/", 1)[1]]


# -- arithmetic against numpy ------------------------------------------------------------------------


def _edge_values(dtype: np.dtype) -> np.ndarray:
    """Values where arithmetic goes wrong first: limits, zeros of both signs, subnormals,
    infinities, NaNs with payloads and signs, rounding ties of the 16-bit types."""
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        values = [0, 1, 2, 3, 7, info.max, info.max - 1, info.max // 2 + 1, 100 % (info.max + 1)]
        if dtype.kind == "i":
            values += [-1, -2, -7, info.min, info.min + 1, info.min // 2]
        return np.array(values, dtype=dtype)
    bits = {2: np.uint16, 4: np.uint32, 8: np.uint64}[dtype.itemsize]
    finfo = ml_dtypes.finfo(dtype) if dtype.name == "bfloat16" else np.finfo(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = [0.0, -0.0, 1.0, -1.0, 2.0, 3.0, 0.5, 1.5, 2.5, -2.5, 7.0, 1 / 3, float(finfo.eps),
                  1 + float(finfo.eps), 1 + float(finfo.eps) / 2, float(finfo.max), -float(finfo.max),
                  float(finfo.tiny), float(finfo.smallest_subnormal), -float(finfo.smallest_subnormal),
                  np.inf, -np.inf, np.nan, 255.0, 256.0, 257.0, 2049.0, 65504.0, 1e-5]
        array = np.array(values, dtype=np.float64).astype(dtype)
    # NaNs with payloads and both signs, a signalling NaN, the largest subnormal
    total = dtype.itemsize * 8
    mant = {2: 10 if dtype.name == "float16" else 7, 4: 23, 8: 52}[dtype.itemsize]
    exp_all = ((1 << (total - 1 - mant)) - 1) << mant
    extra = [exp_all | (1 << (mant - 1)) | 5, (1 << (total - 1)) | exp_all | (1 << (mant - 1)) | 3,
             exp_all | 1, (1 << mant) - 1]
    return np.concatenate([array, np.array(extra, dtype=bits).view(dtype)])


def _random_values(dtype: np.dtype, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    bits = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[dtype.itemsize]
    return rng.integers(0, np.iinfo(bits).max, size=n, dtype=bits, endpoint=True).view(dtype)


def _pairs(dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    edge = _edge_values(dtype)
    a, b = np.repeat(edge, len(edge)), np.tile(edge, len(edge))
    ra, rb = _random_values(dtype, 20000, 1), _random_values(dtype, 20000, 2)
    # float16/bfloat16: every value against a few partners, so every rounding case shows up
    if dtype.itemsize == 2 and dtype.kind != "u":
        every = np.arange(1 << 16, dtype=np.uint16).view(dtype)
        partners = np.array([0x3C00, 0x0001, 0x8401, 0x7BFF, 0x3555] if dtype.name == "float16"
                            else [0x3F80, 0x0001, 0x8081, 0x7F7F, 0x3EAB], dtype=np.uint16).view(dtype)
        ra = np.concatenate([ra, np.tile(every, len(partners))])
        rb = np.concatenate([rb, np.repeat(partners, len(every))])
    return np.concatenate([a, ra]), np.concatenate([b, rb])


def _assert_same_bits(got: np.ndarray, expected: np.ndarray, a: np.ndarray, b: np.ndarray, op: str) -> None:
    bits = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[got.dtype.itemsize]
    differ = got.view(bits) != expected.view(bits)
    if got.dtype.kind not in "iu" and op in ("sum", "prod", "avg"):
        # two NaN operands: which payload survives is the hardware's choice (see the C file)
        with np.errstate(invalid="ignore"):  # ml_dtypes warns on signalling NaNs
            both_nan = np.isnan(a) & np.isnan(b)
            assert np.isnan(got[both_nan]).all()
        differ &= ~both_nan
    if differ.any():
        i = np.flatnonzero(differ)[:5]
        raise AssertionError(f"{got.dtype} {op}: a={a[i].view(bits)} b={b[i].view(bits)} "
                             f"C={got[i].view(bits)} numpy={expected[i].view(bits)}")


@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("op", OPS)
def test_reductions_match_numpy_bit_for_bit(lib, dtype_name, op):
    dtype = DTYPES[dtype_name].numpy
    a, b = _pairs(dtype)
    expected = np.empty_like(a)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reduce_into(op, expected, a, b)
    got = np.empty_like(a)
    lib.reduce(op, got, a, b)
    _assert_same_bits(got, expected, a, b, op)
    # dst aliasing a, dst aliasing b, everything the same buffer (the loops C picks for them)
    got = a.copy()
    lib.reduce(op, got, got, b)
    _assert_same_bits(got, expected, a, b, op)
    got = b.copy()
    lib.reduce(op, got, a, got)
    _assert_same_bits(got, expected, a, b, op)
    same = a.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        twice = np.empty_like(a)
        reduce_into(op, twice, a, a)
    lib.reduce(op, same, same, same)
    _assert_same_bits(same, twice, a, a, op)


def test_a_partly_overlapping_reduction_is_refused(lib):
    x = np.arange(8, dtype=np.int32)
    with pytest.raises(RuntimeError, match="invalid arguments"):
        lib.reduce("sum", x[1:5], x[0:4], x[4:8])


@pytest.mark.parametrize("dtype_name", list(DTYPES))
def test_avg_division_matches_numpy(lib, dtype_name):
    dtype = DTYPES[dtype_name].numpy
    values = np.concatenate([_edge_values(dtype), _random_values(dtype, 5000, 3)])
    for nranks in (1, 2, 3, 7, 8, 127, 128, 200, 255, 256, 257, 2049, 3000, 70000):
        expected = values.copy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            finalize_avg(expected, nranks)
        got = values.copy()
        lib.finalize_avg(got, nranks)
        _assert_same_bits(got, expected, values, np.zeros_like(values), f"avg/{nranks}")


def test_the_baseline_loops_match_numpy_too(lib, tmp_path):
    """The library clones its loops for AVX2 and AVX-512 and this CPU runs the best clone; build
    the baseline-only variant (what other CPUs and compilers get) and compare it the same way."""
    env = {**os.environ, c_build.CFLAGS_ENV: "-DCB_NO_TARGET_CLONES", "XDG_CACHE_HOME": str(tmp_path)}
    tests = [f"{__file__}::{name}" for name in ("test_reductions_match_numpy_bit_for_bit",
                                                "test_avg_division_matches_numpy",
                                                "test_a_partly_overlapping_reduction_is_refused")]
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "-n", "0", *tests],
                            capture_output=True, text=True, env=env, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout
    assert len(list((tmp_path / "collbench" / "native").glob("*.so"))) == 1


@pytest.mark.parametrize("op", ["sum", "max"])
@pytest.mark.parametrize("dtype_name", ["int32", "float32", "float64", "float16", "bfloat16"])
def test_bench_native_reduce(benchmark, lib, dtype_name, op):
    """The C reduction loop alone on 2^18 elements, in the same groups as
    tests/algorithms/test_bench_algorithms.py's numpy ones (docs/performance.md §7):
    `pytest tests/algorithms/test_bench_algorithms.py tests/test_native.py -k bench_
    --benchmark-enable --benchmark-only`."""
    dtype = DTYPES[dtype_name].numpy
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 3, 1 << 18).astype(dtype), rng.integers(0, 3, 1 << 18).astype(dtype)
    out = np.empty_like(a)
    benchmark.group = f"reduce {np.dtype(dtype).name}"
    args = (c_binding.dtype_code(dtype_name), c_binding.reduction_code(op), out.ctypes.data, a.ctypes.data,
            b.ctypes.data, out.size)
    benchmark(lib.lib.cb_reduce, *args)   # the bare C call: no per-call argument conversion in Python
    expected = np.empty_like(a)
    reduce_into(op, expected, a, b)
    assert np.array_equal(out.view(np.uint8), expected.view(np.uint8))
