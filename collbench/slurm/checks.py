"""Checks ``collbench slurm`` makes when it writes a script, on the login node, so that mistakes
surface before the queue wait instead of after it: the charge account, the queue's time and node
limits, whether the steps fit the job's time limit, and whether the job's mpi4py runs on the pip
MPICH wheel. Each finding is one line; none stops the script from being written (the login node
may differ from the compute nodes, and the user may know better).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .injob import wheel_mpich_reason
from .profiles import Limit, Profile, site_value

TIME_STEP_S = 300  # an automatic time limit is rounded up to this


UNLIMITED_WORDS = ("-1", "infinite", "unlimited")
"""What Slurm's time parser reads as no limit, in any case, besides zero (src/common/parse_time.c)."""


def no_limit(text: str) -> bool:
    """Whether a Slurm time asks for no time limit: zero (sbatch(1): "A time limit of zero
    requests that no time limit be imposed"), -1, INFINITE or UNLIMITED."""
    return text.strip().lower() in UNLIMITED_WORDS or slurm_seconds(text) == 0


def slurm_seconds(text: str) -> int:
    """Seconds in a Slurm time: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS."""
    days = 0
    if "-" in text:
        day_text, text = text.split("-", 1)
        days = int(day_text)
        parts = [int(p) for p in text.split(":")] + [0, 0]
        hours, minutes, seconds = parts[0], parts[1], parts[2]
    else:
        parts = [int(p) for p in text.split(":")]
        if len(parts) == 1:
            hours, minutes, seconds = 0, parts[0], 0
        elif len(parts) == 2:
            hours, (minutes, seconds) = 0, parts
        else:
            hours, minutes, seconds = parts
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def slurm_time(seconds: int) -> str:
    """A Slurm time for ``seconds``: HH:MM:SS, or D-HH:MM:SS from one day on."""
    days, rest = divmod(seconds, 86400)
    text = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}-{text}" if days else text


def _active_runs(profile: Profile) -> list[str]:
    return [args for name, args in profile.runs if not name.startswith("#")]


def _uses_nccl(profile: Profile) -> bool:
    return any(re.search(r"--backend[ =]nccl", args) for args in _active_runs(profile))


def baseline_pairs(profile: Profile) -> int:
    """How many network-baseline pairs the sweep runs (0 on one node: there is no network)."""
    if max(profile.node_counts) + profile.spare_nodes < 2:
        return 0
    if profile.gpus_per_node and _uses_nccl(profile) and profile.nic_gpus.split():
        return len(profile.nic_gpus.split())
    return 1


@dataclass(frozen=True)
class Budget:
    """The worst case of a sweep: every step and check uses its whole timeout."""

    steps: int
    checks: int
    step_timeout: int
    check_timeout: int

    @property
    def seconds(self) -> int:
        return self.steps * self.step_timeout + self.checks * self.check_timeout

    def describe(self) -> str:
        return (f"{self.steps} step(s) x {self.step_timeout} s + {self.checks} check(s) x "
                f"{self.check_timeout} s = {slurm_time(self.seconds)}")


def worst_case(profile: Profile) -> Budget:
    """Steps (node counts × runs) and checks (preflight, NCCL probe, baseline pairs) of the sweep,
    each at its timeout. Retries of failed steps are not counted: a failure is usually quick."""
    steps = len(profile.node_counts) * len(_active_runs(profile))
    probe = 1 if profile.gpus_per_node and _uses_nccl(profile) else 0
    checks = 1 + probe + baseline_pairs(profile)
    return Budget(steps, checks, profile.step_timeout, profile.check_timeout)


def automatic_time(profile: Profile) -> str:
    """The time limit when none is given: the worst case, rounded up to 5 minutes."""
    seconds = -(-worst_case(profile).seconds // TIME_STEP_S) * TIME_STEP_S
    return slurm_time(seconds)


def queue_limit(profile: Profile) -> Limit | None:
    """The limits of the QOS or partition the job asks for, where the profile knows them."""
    qos = site_value(profile, ("-q ", "--qos"))
    partition = site_value(profile, ("--partition", "-p "))
    for limit in profile.limits:
        if (limit.option == "qos" and limit.name == qos) or (limit.option == "partition" and limit.name == partition):
            return limit
    return None


def fit_time(profile: Profile, explicit: bool) -> tuple[str, list[str]]:
    """The job's time limit and the warnings about it.

    Without -t the limit covers the worst case, clamped to the queue's maximum (with a warning:
    a job over the maximum is rejected or never starts). With -t the user's value stays, with a
    warning when it is over the queue's maximum or shorter than the worst case; ``-t 0`` (or
    UNLIMITED) is Slurm's "no limit", over any queue's maximum and never shorter than the worst
    case.
    """
    warnings: list[str] = []
    limit = queue_limit(profile)
    budget = worst_case(profile)
    time = profile.time or automatic_time(profile)
    where = f"the {limit.name} {'QOS' if limit.option == 'qos' else 'partition'}" if limit else ""
    if explicit and no_limit(time):
        if limit:
            warnings.append(f"-t {time} asks for no time limit, over the {limit.max_time} maximum "
                            f"of {where} ({limit.source}); Slurm will reject or hold the job: "
                            f"give -t a limit or choose another queue")
        return time, warnings
    if limit and slurm_seconds(time) > slurm_seconds(limit.max_time):
        if explicit:
            warnings.append(f"-t {time} is over the {limit.max_time} maximum of {where} ({limit.source}); "
                            f"Slurm will reject or hold the job: lower -t or choose another queue")
        else:
            warnings.append(f"time limit set to {limit.max_time}, the maximum of {where} ({limit.source})")
            time = limit.max_time
    nodes = max(profile.node_counts) + profile.spare_nodes
    if limit and limit.max_nodes is not None and nodes > limit.max_nodes:
        warnings.append(f"{nodes} nodes is over the {limit.max_nodes}-node maximum of {where} "
                        f"({limit.source}); choose fewer --nodes or another queue")
    if budget.seconds > slurm_seconds(time):
        warnings.append(f"the steps may need longer than the job's time limit {time}: worst case "
                        f"{budget.describe()}; a late hang would cut off the rest of the sweep "
                        f"(raise -t, or lower --step-timeout, --nodes or --run)")
    return time, warnings


def account_warning(profile: Profile) -> str | None:
    """A GPU job on Perlmutter must charge the project's GPU allocation, ``<project>_g``."""
    suffix, account = profile.gpu_account_suffix, profile.account
    if not suffix or not account or not profile.gpus_per_node or account.endswith(suffix):
        return None
    return (f"--account {account} does not end in {suffix}: {profile.name} GPU jobs charge the "
            f"project's GPU allocation, {account}{suffix} (the script is written as asked)")


# Run in the job's Python: which MPI library mpi4py loads, without initialising MPI (allowed for
# MPI_Get_library_version), and where the library file lives.
_MPI4PY_PROBE = r"""
import json, re
try:
    import mpi4py
    mpi4py.rc.initialize = False
    mpi4py.rc.finalize = False
    from mpi4py import MPI
    library = MPI.Get_library_version()
except Exception as exc:
    print(json.dumps({"error": type(exc).__name__ + ": " + str(exc).splitlines()[0] if str(exc) else type(exc).__name__}))
else:
    maps = [line for line in open("/proc/self/maps").read().splitlines() if re.search(r"/libmpi", line)]
    print(json.dumps({"library": library, "maps": maps}))
"""


def _venv_default(profile: Profile) -> str | None:
    for line in profile.python_env:
        match = re.match(r"CB_VENV=\$\{CB_VENV:-([^}]*)\}", line)
        if match:
            return match.group(1) or None
    return None


def job_python(profile: Profile, python: str | None, venv: str | None) -> str | None:
    """The Python the job will run, if it can be found from here: ``--python``, else the python of
    the venv the script activates (``--venv`` or the profile's default) where that exists."""
    if python:
        return shutil.which(python) or (python if Path(python).is_file() else None)
    directory = venv or _venv_default(profile)
    if not directory:
        return None
    candidate = Path(os.path.expanduser(os.path.expandvars(directory))) / "bin" / "python"
    if candidate.is_file():
        return str(candidate)
    return None


def mpi4py_warning(profile: Profile, python: str | None, venv: str | None, timeout: float = 60) -> str | None:
    """One line when the job's mpi4py would run on the pip MPICH wheel (or is missing), which the
    in-job preflight would otherwise only find after the queue wait. Nothing when the job's Python
    cannot be found from here."""
    if not profile.forbid_wheel_mpich:
        return None
    executable = job_python(profile, python, venv)
    if executable is None:
        return None
    if Path(executable).resolve() == Path(sys.executable).resolve():
        executable = sys.executable
    try:
        done = subprocess.run([executable, "-c", _MPI4PY_PROBE], capture_output=True, text=True,
                              timeout=timeout, env=dict(os.environ, MPI4PY_RC_INITIALIZE="0"))
        answer = json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError) as exc:
        return f"could not ask {executable} about its mpi4py ({type(exc).__name__}); the job's preflight will"
    if "error" in answer:
        return (f"{executable} cannot load mpi4py's MPI ({answer['error']}): on a login node that may be "
                "expected; otherwise the job's preflight will fail (see the script's Python environment block)")
    reason = wheel_mpich_reason(str(answer.get("library", "")), "\n".join(answer.get("maps", [])))
    if reason is None:
        return None
    return (f"{executable}: mpi4py runs on the pip MPICH wheel ({reason}); on {profile.name} build it "
            "against the system MPI (the script's Python environment block), or the job will stop in "
            "its preflight")
