"""Test helpers importable from every test directory (tests/ is on pytest's pythonpath):
run the real CLI as a user would, and read what it wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def run_cli(args: list[str], timeout: float = 120, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m collbench ARGS`` as a user would (it launches mpiexec itself)."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("PMI_RANK", "PMIX_RANK",
                                                                   "COLLBENCH_LAUNCHED")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "collbench", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=cwd)


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
