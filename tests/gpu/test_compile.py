"""Every CUDA source compiles for A100 (sm_80) and H100 (sm_90); no device needed.

nvcc is required when CI=true (CI is expected to have it); elsewhere the tests skip with the
reason when nvcc is absent. Warnings are errors. The two-input reduce kernels must also be
spill-free (they are the bandwidth-bound ones the performance target is about). Elsewhere ptxas
may keep a few bytes on the stack (e.g. convergence-barrier state around __syncthreads in the IPC
kernels), so other spills are reported, not failed.

The run-time path compiles with NVRTC through CuPy, so an NVRTC compile with CuPy's options
(including the -ftz=true CuPy always adds) is checked too, where NVRTC is importable.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from cbtest import IN_CI
from collbench.gpu import kernel_sources as _sources
from collbench.gpu.kernels import compile_options

NVCC = shutil.which("nvcc") or ("/usr/local/bin/nvcc" if Path("/usr/local/bin/nvcc").exists() else None)
CU_FILES = _sources.kernel_files()
ARCHS = ("sm_80", "sm_90")

pytestmark = pytest.mark.cuda_compile


def _nvcc() -> str:
    if NVCC is None:
        if IN_CI:
            pytest.fail("CI=true but nvcc is not installed: the CUDA compile checks are required in CI")
        pytest.skip("nvcc not found (install the CUDA toolkit to run the compile checks)")
    return NVCC


def _run(cmd: list[str], show_stdout: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    out = ((proc.stdout if show_stdout else "") + proc.stderr).strip()
    if out:
        print(out)  # warnings are shown even when the compile succeeds
    return proc


def test_sources_found() -> None:
    names = [p.name for p in CU_FILES]
    assert {"reduce.cu", "ipc_collectives.cu", "interp.cu"} <= set(names), names


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("cu", CU_FILES, ids=lambda p: p.name)
def test_nvcc_compiles(cu: Path, arch: str, tmp_path: Path) -> None:
    nvcc = _nvcc()
    cmd = [nvcc, "-std=c++17", f"-arch={arch}", "--cubin", "-o", str(tmp_path / "out.cubin"),
           f"-I{_sources.csrc_dir()}", "-Werror", "all-warnings", "-Xptxas", "-v"]
    proc = subprocess.run(cmd + [str(cu)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"nvcc failed for {cu.name} ({arch}):\n{proc.stdout}\n{proc.stderr}"
    assert (tmp_path / "out.cubin").stat().st_size > 0
    spills = _spills(proc.stdout + proc.stderr)
    if spills:
        print(f"{cu.name} ({arch}) kernels with stack/spills: {sorted(spills.items())[:10]} ...")
    hot = {k: v for k, v in spills.items() if re.fullmatch(r"reduce_(sum|prod|max|min)_\w+", k)}
    assert not hot, f"bandwidth-critical kernels spill registers: {hot}"


def _spills(ptxas_log: str) -> dict[str, int]:
    """Kernel name -> spill store bytes, from ptxas -v output (non-zero only)."""
    out, current = {}, None
    for line in ptxas_log.splitlines():
        m = re.search(r"Compiling entry function '(\w+)'", line)
        if m:
            current = m.group(1)
            continue
        m = re.search(r"(\d+) bytes spill stores", line)
        if m and current and int(m.group(1)):
            out[current] = int(m.group(1))
    return out


@pytest.mark.parametrize("cu", CU_FILES, ids=lambda p: p.name)
def test_single_dtype_module_compiles(cu: Path, tmp_path: Path) -> None:
    """The per-dtype modules the loader builds (-DCOLLBENCH_ONLY_DTYPE) compile on their own."""
    nvcc = _nvcc()
    info = _sources.dtype_info("bfloat16")
    proc = _run([nvcc, "-std=c++17", "-arch=sm_90", "--cubin", "-o", str(tmp_path / "one.cubin"),
                 f"-I{_sources.csrc_dir()}", "-Werror", "all-warnings",
                 f"-DCOLLBENCH_ONLY_DTYPE={info.dtype_id}", str(cu)])
    assert proc.returncode == 0, proc.stderr


def _entry_points(cu: Path, defines: tuple[str, ...] = ()) -> set[str]:
    """Kernel names after preprocessing (macro-generated extern "C" entry points)."""
    proc = _run([_nvcc(), "-std=c++17", "-E", "-x", "cu", f"-I{_sources.csrc_dir()}", *defines, str(cu)],
                show_stdout=False)
    assert proc.returncode == 0, proc.stderr
    # After preprocessing: extern "C" __attribute__((global)) void __attribute__((launch_bounds(512))) NAME(
    return set(re.findall(r'extern\s+"C"[^;{]*?\b((?:reduce|finalize|ipc|interp)_\w+)\s*\(', proc.stdout))


def test_kernel_names_match_python_tables() -> None:
    """Every name Python asks for exists, for every dtype and op (the naming contract)."""
    names = _entry_points(_sources.csrc_dir() / "reduce.cu") | _entry_points(_sources.csrc_dir() / "ipc_collectives.cu")
    expected = {"ipc_allgather"}
    for dt in _sources.dtypes():
        expected.add(f"finalize_avg_{dt}")
        for op in ("sum", "prod", "max", "min"):
            expected |= {f"reduce_{op}_{dt}", f"reduce_many_{op}_{dt}"}
        for op in _sources.OPS:
            expected |= {f"ipc_one_shot_{op}_{dt}", f"ipc_two_shot_{op}_{dt}", f"ipc_reduce_scatter_{op}_{dt}"}
    assert expected - names == set()
    assert names - expected == set(), "kernels nobody calls"


def test_interpreter_kernel_names_match_python() -> None:
    """The interpreter: one entry point per reduction op and dtype, named as interp.py asks."""
    from collbench.gpu.interp import kernel_name

    names = _entry_points(_sources.csrc_dir() / "interp.cu")
    expected = {kernel_name(op, dt) for dt in _sources.dtypes() for op in _sources.OPS}
    assert names == expected
    one = _entry_points(_sources.csrc_dir() / "interp.cu", (f"-DCOLLBENCH_ONLY_DTYPE={_sources.dtype_info('int8').dtype_id}",))
    assert one == {kernel_name(op, "int8") for op in _sources.OPS}


def test_single_dtype_module_holds_only_its_dtype() -> None:
    info = _sources.dtype_info("float16")
    names = _entry_points(_sources.csrc_dir() / "reduce.cu", (f"-DCOLLBENCH_ONLY_DTYPE={info.dtype_id}",))
    assert names == {f"reduce_{op}_float16" for op in ("sum", "prod", "max", "min")} | {
        f"reduce_many_{op}_float16" for op in ("sum", "prod", "max", "min")} | {"finalize_avg_float16"}


def test_sources_include_nothing_but_the_common_header() -> None:
    """NVRTC gets no system include paths from us: the kernels must not need any header."""
    for path in _sources.csrc_dir().glob("*.cu*"):
        for line in path.read_text().splitlines():
            if line.strip().startswith("#include"):
                assert '"collbench_common.cuh"' in line, f"{path.name}: {line.strip()}"


def _nvrtc():
    try:
        from cupy.cuda import nvrtc

        nvrtc.getVersion()
    except Exception as exc:  # noqa: BLE001 - CuPy or libnvrtc missing
        pytest.skip(f"NVRTC not available through CuPy: {exc}")
    return nvrtc


@pytest.mark.parametrize("cu,dtype", [("reduce.cu", "float32"), ("reduce.cu", "bfloat16"),
                                      ("ipc_collectives.cu", "float16"), ("ipc_collectives.cu", "int64"),
                                      ("interp.cu", "bfloat16"), ("interp.cu", "uint8")])
def test_nvrtc_compiles_with_cupy_options(cu: str, dtype: str) -> None:
    nvrtc = _nvrtc()
    src = (_sources.csrc_dir() / cu).read_text()
    opts = compile_options(_sources.dtype_info(dtype)) + ("-ftz=true", "-arch=sm_90")
    prog = nvrtc.createProgram(src, cu, (), ())
    try:
        try:
            nvrtc.compileProgram(prog, opts)
        except Exception as exc:  # noqa: BLE001
            pytest.fail(f"NVRTC failed on {cu}: {exc}\n{nvrtc.getProgramLog(prog)}")
        log = nvrtc.getProgramLog(prog).strip()
        assert not log or "warning" not in log.lower(), log
    finally:
        nvrtc.destroyProgram(prog)
