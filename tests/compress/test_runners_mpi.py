"""Every compressed runner over real MPI at 1..8 ranks, odd counts (1, 7, 1000, 4099), several
dtypes and option settings, in and out of place, against the numpy references
(runner_driver.py): bit for bit for the top-k, gtopk and quantized runners, within float32
rounding for powersgd. One mpiexec per rank count."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.mpi

DRIVER = Path(__file__).with_name("runner_driver.py")


def _command(nranks: int) -> tuple[list[str], dict[str, str]]:
    """mpiexec of mpi4py's MPI, with the launcher's oversubscription settings (as `run` does)."""
    import os

    from collbench.run.launcher import find_mpiexec, oversubscription_environment

    env = {**os.environ, **oversubscription_environment(nranks)}
    return [str(find_mpiexec()), "-n", str(nranks), sys.executable, str(DRIVER), "1,7,1000,4099"], env


@pytest.mark.parametrize("nranks", [1, 2, 3, 4, 5, 6, 7, 8])
def test_runners_match_the_references(nranks: int) -> None:
    command, env = _command(nranks)
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["cases"] > 200 and result["failures"] == [], result
