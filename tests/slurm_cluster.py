"""The Slurm test fixture: a real local cluster (scripts/slurm/local-cluster.sh), started once per
session in its own state directory on free ports and stopped with ``down``; helpers to submit.
tests/conftest.py registers it for the whole suite, so tests/slurm and the labs share one cluster.

`slurm`-marked tests need root and Debian's slurm-wlm + munge. Elsewhere they skip with the
reason; with CI=true a missing prerequisite is an error (CI is expected to have them).
"""

from __future__ import annotations

import os
import random
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from cbtest import IN_CI, REPO

LOCAL_CLUSTER = REPO / "scripts" / "slurm" / "local-cluster.sh"
NODES = 2


def _missing() -> str | None:
    """Why the local Slurm cluster cannot be started here (None when it can)."""
    if sys.platform != "linux":
        return "the local Slurm cluster needs Linux"
    if os.geteuid() != 0:
        return "the local Slurm cluster needs root (slurmd starts job steps as the submitting user)"
    missing = [name for name in ("slurmctld", "slurmd", "sbatch", "munged") if not shutil.which(name)]
    if missing and not shutil.which("apt-get"):
        return f"Slurm is not installed (missing {', '.join(missing)}; apt-get install slurm-wlm munge)"
    return None


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true requires the local Slurm cluster: {reason}")
    pytest.skip(reason)


def _free_port_block(count: int) -> int:
    """A base port with ``count`` free ports after it (others may run their own cluster)."""
    for _ in range(50):
        base = random.randrange(20000, 40000, 10)
        sockets = []
        try:
            for port in range(base, base + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(s)
                s.bind(("0.0.0.0", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free port block found")


@dataclass
class Job:
    job_id: str
    returncode: int
    output: str          # the job's stdout/stderr file (-o %x-%j.out), then sbatch's stderr
    results: Path        # results/<cluster>/<jobid>


@dataclass
class Cluster:
    state_dir: Path
    env: dict[str, str]

    def run(self, args: list[str], **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(args, env=self.env, capture_output=True, text=True, **kwargs)

    def logs(self) -> str:
        """The daemons' log tails, for failure messages."""
        text = []
        for log in sorted((self.state_dir / "log").glob("*.log")):
            lines = log.read_text(errors="replace").splitlines()[-15:]
            text.append(f"--- {log.name}\n" + "\n".join(lines))
        return "\n".join(text)

    def generate(self, workdir: Path, *args: str) -> Path:
        """``collbench slurm --cluster local ARGS`` into workdir/job.sbatch."""
        script = workdir / "job.sbatch"
        result = self.run([sys.executable, "-m", "collbench", "slurm", "--cluster", "local",
                           "--python", sys.executable, *args, "-o", str(script)], timeout=60)
        assert result.returncode == 0, result.stderr
        return script

    def submit_and_wait(self, script: Path, env: dict[str, str] | None = None,
                        timeout: float = 100) -> Job:
        """``sbatch --wait`` from the script's directory (the submit dir gets results/ and the log)."""
        result = subprocess.run(["sbatch", "--wait", "--parsable", script.name], cwd=script.parent,
                                env=dict(self.env, **(env or {})), capture_output=True, text=True,
                                timeout=timeout)
        lines = result.stdout.split()
        job_id = lines[0].split(";")[0] if lines else ""
        assert job_id.isdigit(), f"sbatch failed:\n{result.stdout}{result.stderr}\n{self.logs()}"
        outputs = list(script.parent.glob(f"*-{job_id}.out"))
        output = outputs[0].read_text(errors="replace") if outputs else "(no job output file)"
        output += f"\n[sbatch --wait exit {result.returncode}] {result.stderr.strip()}"
        results = script.parent / "results" / "local" / job_id
        assert (results / "sweep.json").is_file(), f"job {job_id} wrote no sweep.json:\n{output}\n{self.logs()}"
        return Job(job_id, result.returncode, output, results)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory):
    """A running local cluster of NODES nodes (n1..nN on this host)."""
    reason = _missing()
    if reason:
        _unavailable(reason)
    state = tmp_path_factory.mktemp("slurm")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "PMI_", "PMIX_")) and k != "COLLBENCH_LAUNCHED"}
    env.update(COLLBENCH_SLURM_DIR=str(state), COLLBENCH_SLURM_PORT=str(_free_port_block(NODES + 1)))
    up = subprocess.run([str(LOCAL_CLUSTER), "up", str(NODES)], env=env, capture_output=True, text=True,
                        timeout=300)
    cluster = Cluster(state, env)
    if up.returncode != 0:
        subprocess.run([str(LOCAL_CLUSTER), "down"], env=env, capture_output=True, timeout=60)
        message = f"local-cluster.sh up {NODES} failed:\n{up.stdout}{up.stderr}\n{cluster.logs()}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    match = re.search(r"export SLURM_CONF=(\S+)", up.stdout)
    assert match, up.stdout
    env["SLURM_CONF"] = match.group(1)
    try:
        yield cluster
    finally:
        subprocess.run([str(LOCAL_CLUSTER), "down"], env=env, capture_output=True, timeout=60)


