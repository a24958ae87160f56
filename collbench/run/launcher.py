"""Local launching: re-execute under ``mpiexec -n N`` unless already inside an MPI job."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from .. import plugins
from ..errors import UsageError
from .interrupt import EXIT_INTERRUPTED  # what ranks stopped by Ctrl-C exit with

# Set by process managers for every rank; any one of them means we are already launched.
_RANK_VARIABLES = ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK", "MPI_LOCALRANKID",
                   "PALS_RANKID", "MV2_COMM_WORLD_RANK", "MPIRUN_RANK")
LAUNCHED_MARKER = "COLLBENCH_LAUNCHED"
TTY_MARKER = "COLLBENCH_TTY"
# After Ctrl-C: how long the ranks get to stop by themselves (they keep their rows and exit with
# 130), and how long mpiexec then gets to end them before it is killed.
INTERRUPT_GRACE_S = 3.0
INTERRUPT_KILL_S = 10.0


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


# MPICH's shared-memory ("posix") collectives wait for each other by spinning on flags without
# yielding the core. With more ranks than cores a spinning rank keeps its core for a whole
# scheduler slice, so an 8-byte allreduce on 4 ranks of 2 cores takes ~8 ms and a 2 MiB one ~2 s
# (measured; docs/performance.md). MPICH's point-to-point algorithms ("mpir") do not have this
# problem, so an oversubscribed local run uses them unless the user chose otherwise.
OVERSUBSCRIBED_MPICH_ENV = {f"MPIR_CVAR_{name}_POSIX_INTRA_ALGORITHM": "mpir"
                            for name in ("ALLREDUCE", "BCAST", "REDUCE", "BARRIER", "ALLGATHER",
                                         "ALLGATHERV", "ALLTOALL")}
KEEP_SHM_VARIABLE = "COLLBENCH_KEEP_MPICH_SHM_COLLECTIVES"


def oversubscription_environment(nprocs: int) -> dict[str, str]:
    """MPICH settings for an oversubscribed local run (empty when not oversubscribed, when the
    user asked to keep MPICH's defaults, or for variables the user already set)."""
    if nprocs <= usable_cores() or os.environ.get(KEEP_SHM_VARIABLE) == "1":
        return {}
    return {k: v for k, v in OVERSUBSCRIBED_MPICH_ENV.items() if k not in os.environ}


def relaunch(nprocs: int, argv: list[str], extra_env: dict[str, str] | None = None) -> int:
    """Run ``python -m collbench ARGV`` under ``mpiexec -n NPROCS`` and return its exit status.

    Raises:
        KeyboardInterrupt: Ctrl-C, once the job has ended (the ranks keep the rows they wrote
            and stay silent; cli.main says "collbench: interrupted" once, status 130).
    """
    mpiexec = find_mpiexec()
    env = dict(os.environ)
    env.update(extra_env or {})
    env.update(plugins.environment())  # every rank loads the launcher's plugins (COLLBENCH_PLUGINS)
    env[LAUNCHED_MARKER] = "1"
    if sys.stderr.isatty():
        env[TTY_MARKER] = "1"
    command = [str(mpiexec), "-n", str(nprocs), sys.executable, "-m", "collbench", *argv]
    proc = subprocess.Popen(command, env=env)
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        _stop_after_interrupt(proc)
        raise  # cli.main: "collbench: interrupted", status 130
    if code == EXIT_INTERRUPTED:  # the ranks were interrupted (SIGINT to mpiexec or to them)
        raise KeyboardInterrupt
    return code


def _stop_after_interrupt(proc: subprocess.Popen) -> None:
    """The launcher was interrupted: end the job without losing a written row, and return only
    once it has ended (never a rank left behind, never its output after the shell's prompt).

    Ctrl-C in a terminal reaches mpiexec too (same process group), and mpiexec forwards it to the
    ranks: wait for them. A SIGINT to this process alone reached nobody else: if the job still
    runs after a grace period, forward it once (to an mpiexec that had it already, a second one
    means "force abort"; rank 0 has flushed every finished row by then). Further Ctrl-C while
    waiting are ignored; mpiexec is killed only when it does not end at all."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for action in (None, signal.SIGINT, signal.SIGKILL):
            if action is not None:
                try:
                    proc.send_signal(action)
                except OSError:
                    pass
            try:
                proc.wait(timeout=INTERRUPT_GRACE_S if action is None else INTERRUPT_KILL_S)
                return
            except subprocess.TimeoutExpired:
                continue
    finally:
        signal.signal(signal.SIGINT, previous)
