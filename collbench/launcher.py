"""Local launching: re-execute under ``mpiexec -n N`` unless already inside an MPI job."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from .errors import UsageError

# Set by process managers for every rank; any one of them means we are already launched.
_RANK_VARIABLES = ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK", "MPI_LOCALRANKID",
                   "PALS_RANKID", "MV2_COMM_WORLD_RANK", "MPIRUN_RANK")
LAUNCHED_MARKER = "COLLBENCH_LAUNCHED"
TTY_MARKER = "COLLBENCH_TTY"


def inside_mpi_job() -> bool:
    """True under mpiexec/mpirun/srun (a job step), False in a plain shell or a batch script."""
    env = os.environ
    if env.get(LAUNCHED_MARKER) == "1" or any(v in env for v in _RANK_VARIABLES):
        return True
    # srun sets SLURM_STEP_ID for its tasks; a batch script's own step has no task rank count.
    return "SLURM_STEP_ID" in env and "SLURM_STEP_NUM_TASKS" in env and "SLURM_PROCID" in env


def env_rank() -> int:
    """This process's rank as the process manager announced it (0 when unknown)."""
    for name in (*_RANK_VARIABLES, "SLURM_PROCID"):
        value = os.environ.get(name)
        if value and value.isdigit():
            return int(value)
    return 0


def find_mpiexec() -> Path:
    """The mpiexec that belongs to mpi4py's MPI: the one beside this Python first (the MPICH
    wheel installs it there), then MPI4PY's configured MPI, then PATH."""
    candidates = [Path(sys.executable).parent / "mpiexec"]
    try:
        import mpi4py

        config = mpi4py.get_config()
        if config.get("mpicc"):
            candidates.append(Path(config["mpicc"]).parent / "mpiexec")
    except Exception:  # noqa: BLE001 - any failure here just means "not configured"
        pass
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("mpiexec") or shutil.which("mpirun")
    if found:
        return Path(found)
    raise UsageError("no mpiexec found: install the bundled MPICH with `pip install 'collbench[mpich]'`, "
                     "or run collbench under your MPI's launcher (mpiexec, srun)")


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def oversubscription_warning(nprocs: int) -> str | None:
    cores = usable_cores()
    if nprocs > cores:
        return (f"warning: {nprocs} ranks on {cores} cores: ranks share cores and MPI busy-polls, "
                "so times measure oversubscription as much as the collective")
    return None


def relaunch(nprocs: int, argv: list[str]) -> int:
    """Run ``python -m collbench ARGV`` under ``mpiexec -n NPROCS`` and return its exit status."""
    mpiexec = find_mpiexec()
    env = dict(os.environ)
    env[LAUNCHED_MARKER] = "1"
    if sys.stderr.isatty():
        env[TTY_MARKER] = "1"
    command = [str(mpiexec), "-n", str(nprocs), sys.executable, "-m", "collbench", *argv]
    try:
        return subprocess.run(command, env=env, check=False).returncode
    except KeyboardInterrupt:
        return 130
