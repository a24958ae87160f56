"""The variables that steer the native build ($COLLBENCH_NATIVE_CFLAGS, $COLLBENCH_CSRC): a bad
value is one line naming the variable (a NativeUnavailable reason for the library, a UsageError
for the CLI's check before launching), never a ValueError or FileNotFoundError from deep inside."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from cbtest import REPO
from collbench.errors import UsageError
from collbench.execute import c_binding, c_build
from collbench.gpu import kernel_sources
from collbench.run.job import check_build_variables
from collbench.run.session import make_spec


def test_unbalanced_quote_in_cflags_names_the_variable(monkeypatch):
    monkeypatch.setenv(c_build.CFLAGS_ENV, '-O2 -DNAME="x')
    with pytest.raises(c_build.NativeUnavailable,
                       match=r"^\$COLLBENCH_NATIVE_CFLAGS='-O2 -DNAME=\"x': no closing quotation"):
        c_build.cflags()
    assert c_build.environment_problem().startswith("$COLLBENCH_NATIVE_CFLAGS=")


def test_cflags_split_as_a_shell_would(monkeypatch):
    monkeypatch.setenv(c_build.CFLAGS_ENV, "-DA='two words' -DB")
    assert c_build.cflags()[-2:] == ["-DA=two words", "-DB"]
    assert c_build.environment_problem() is None


@pytest.mark.parametrize("layout, message", [
    ("empty", "$COLLBENCH_CSRC={d}: no native_executor.c, native_executor.h there"),
    ("missing", "$COLLBENCH_CSRC={d}/missing: no such directory"),
    ("file", "$COLLBENCH_CSRC={d}/file: not a directory"),
])
def test_csrc_without_the_sources_names_the_variable(layout, message, tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    where = {"empty": tmp_path, "missing": tmp_path / "missing", "file": tmp_path / "file"}[layout]
    monkeypatch.setenv(kernel_sources.CSRC_ENV, str(where))
    assert c_build.environment_problem().startswith(message.format(d=tmp_path))


def test_csrc_with_the_native_sources_only_is_enough_for_the_native_build(tmp_path, monkeypatch):
    for name in (c_build.SOURCE, c_binding.HEADER):
        (tmp_path / name).write_text((kernel_sources.csrc_dir() / name).read_text())
    monkeypatch.setenv(kernel_sources.CSRC_ENV, str(tmp_path))
    assert c_build.environment_problem() is None
    check_build_variables(make_spec("allreduce", [8]))  # mpi backend, host buffers: no GPU kernels
    with pytest.raises(UsageError, match=r"no collbench_common.cuh there"):
        check_build_variables(make_spec("allreduce", [8], backend="nccl"))


def test_the_python_executor_needs_no_build_variables(monkeypatch):
    monkeypatch.setenv(c_build.CFLAGS_ENV, '"')
    check_build_variables(make_spec("allreduce", [8], executor="python"))
    with pytest.raises(UsageError, match=r"^\$COLLBENCH_NATIVE_CFLAGS="):
        check_build_variables(make_spec("allreduce", [8]))


def test_load_reports_missing_sources_as_a_reason(tmp_path):
    """--executor auto falls back to Python with this reason; --executor native turns it into
    one error line (backends/mpi.py)."""
    script = textwrap.dedent("""
        from collbench.execute import c_build
        try:
            c_build.load()
        except c_build.NativeUnavailable as exc:
            print("UNAVAILABLE", exc)
    """)
    env = {**os.environ, "COLLBENCH_CSRC": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    for key in ("PMI_RANK", "PMIX_RANK", "COLLBENCH_LAUNCHED"):
        env.pop(key, None)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                            timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    if "no MPI compiler wrapper" in result.stdout:
        pytest.skip("no MPI compiler here")
    assert result.stdout.startswith(f"UNAVAILABLE $COLLBENCH_CSRC={tmp_path}: no native_executor.c"), result.stdout
