"""Test helpers importable from every test directory (tests/ is on pytest's pythonpath):
run the real CLI as a user would, and read what it wrote."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# pytest-xdist runs the suite on every core. MPI jobs must not overlap: MPICH busy-polls, so two
# oversubscribed jobs on 2 cores would each crawl and their timeouts would fire. Every test that
# launches a job (the mpi- and slurm-marked ones, see conftest.py, and every run_cli call) holds
# one lock file shared by the workers; the CPU-only tests run beside it on the other cores.
_JOB_LOCK = Path(tempfile.gettempdir()) / f"collbench-tests-{os.getuid()}.lock"
_job_depth = 0
_HELD = "COLLBENCH_TEST_JOB_LOCK_HELD"


@contextmanager
def one_job_at_a_time() -> Iterator[None]:
    """Hold the suite's job lock (re-entrant within one process; free without xdist)."""
    global _job_depth
    # _HELD in the environment: an ancestor process holds the lock (a subprocess inherits it)
    if _job_depth or "PYTEST_XDIST_WORKER" not in os.environ or os.environ.get(_HELD):
        _job_depth += 1
        try:
            yield
        finally:
            _job_depth -= 1
        return
    with open(_JOB_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        _job_depth = 1
        os.environ[_HELD] = "1"
        try:
            yield
        finally:
            _job_depth = 0
            del os.environ[_HELD]


def run_cli(args: list[str], timeout: float = 120, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m collbench ARGS`` as a user would (it launches mpiexec itself)."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("PMI_RANK", "PMIX_RANK",
                                                                   "COLLBENCH_LAUNCHED")}
    full_env.update(env or {})
    with one_job_at_a_time():
        return subprocess.run([sys.executable, "-m", "collbench", *args], capture_output=True,
                              text=True, timeout=timeout, env=full_env, cwd=cwd)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def native_library_or_skip():
    """collbench's native path (collbench/native.py), built or found in the cache; the test is
    skipped where it cannot be built, except on CI, which must be able to build it."""
    import pytest

    from collbench.execute import c_executor as native

    try:
        return native.load()
    except native.NativeUnavailable as exc:
        if IN_CI:
            raise
        pytest.skip(f"native path unavailable here: {exc}")
