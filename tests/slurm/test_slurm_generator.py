"""`collbench slurm`: the committed templates are its current output, the cluster facts are in
the scripts it writes, its mistakes are one line; every shell script under scripts/ is shellcheck
clean (no Slurm needed for any of this)."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from collbench.slurm import render as slurm

REPO = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _cli(*args: str) -> subprocess.CompletedProcess:
    """``collbench ARGS`` in this process (a launch costs a second here; these run dozens)."""
    from collbench.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def test_command_line_entry_point(tmp_path):
    result = subprocess.run([sys.executable, "-m", "collbench", "slurm", "--cluster", "generic"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("#!/bin/bash"), result.stderr


@pytest.mark.parametrize("cluster", slurm.TEMPLATE_CLUSTERS)
def test_committed_template_is_current(cluster):
    path = slurm.template_path(cluster)
    assert path.is_file(), f"{path} missing: run `collbench slurm --update-templates`"
    assert path.read_text() == slurm.template_text(cluster), (
        f"{path} is out of date with collbench/slurm/profiles.py or collbench/slurm/sweep-lib.sh: "
        "run `collbench slurm --update-templates`")
    assert os.access(path, os.X_OK)


def _settings(text: str) -> dict[str, str]:
    """CB_X defaults as the script assigns them."""
    return {m.group(1): m.group(2) for m in re.finditer(r'^(CB_[A-Z_]+)=\$\{\1:-"(.*?)"\}', text, re.M | re.S)}


def test_perlmutter_facts():
    text = slurm.template_text("perlmutter")
    header = [line.split("#")[1].removeprefix("SBATCH ").strip() for line in text.splitlines()
              if line.startswith("#SBATCH")]
    for option in ("-A <project>", "-C gpu", "-q regular", "-N 8", "--ntasks-per-node=4", "-c 32",
                   "--gpus-per-node=4", "--gpu-bind=none"):
        assert option in header, option
    assert "module load PrgEnv-gnu cudatoolkit craype-accel-nvidia80 cray-mpich nccl python" in text
    assert "export SRUN_CPUS_PER_TASK=$SLURM_CPUS_PER_TASK" in text
    for env in ("NCCL_SOCKET_IFNAME=hsn", "NCCL_NET_GDR_LEVEL=PHB", "NCCL_CROSS_NIC=1",
                "FI_CXI_DISABLE_HOST_REGISTER=1", "FI_CXI_RDZV_GET_MIN=0",
                "FI_CXI_SAFE_DEVMEM_COPY_THRESHOLD=16777216"):
        assert f"export {env}" in text, env
    assert 'MPICC="cc -shared" pip install --force-reinstall --no-cache-dir --no-binary=mpi4py mpi4py' in text
    settings = _settings(text)
    # NCCL_NET only across nodes (the sweep sets it per step), never exported for the whole job
    assert "export NCCL_NET=" not in text.split("# The sweep:")[0] and settings["CB_NCCL_NET_MULTINODE"] == "AWS Libfabric"
    assert settings["CB_GPU_MAP"] == "3,2,1,0"
    assert "--gpu-bind=none" in settings["CB_SRUN_ARGS"]
    assert settings["CB_FORBID_WHEEL_MPICH"] == "1"
    assert "--nccl-algo Ring" in settings["CB_RUNS"]
    assert settings["CB_NODE_COUNTS"] == "1 2 4 8"


def test_delta_facts():
    text = slurm.template_text("delta")
    for option in ("-A <project>-delta-gpu", "--partition=gpuA100x4", "--exclusive", "--mem=0",
                   "--ntasks-per-node=4", "-c 16", "--gpus-per-node=4", "--gpu-bind=none"):
        assert re.search(rf"^#SBATCH {re.escape(option)}(\s|$)", text, re.M), option
    modules = text.split("# ---- modules")[1].split("# ----")[0]
    assert "module load nccl" in modules and "RH9" in modules
    settings = _settings(text)
    assert settings["CB_NCCL_NET_MULTINODE"] == "AWS Libfabric" and settings["CB_FORBID_WHEEL_MPICH"] == "1"


def test_generated_script_follows_the_options(tmp_path):
    out = tmp_path / "pm.sbatch"
    result = _cli("slurm", "--cluster", "perlmutter", "--nodes", "2,1,16", "-A", "m1234_g", "-q", "debug",
                  "-t", "00:20:00", "--collectives", "allreduce", "-e", "1G",
                  "--run", "ring:--backend nccl --nccl-algo Ring", "-o", str(out))
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert "#SBATCH -A m1234_g" in text and "#SBATCH -N 16" in text and "#SBATCH -q debug" in text
    assert "#SBATCH -q regular" not in text and "#SBATCH -t 00:20:00" in text
    settings = _settings(text)
    assert settings["CB_NODE_COUNTS"] == "1 2 16"
    assert settings["CB_COLLECTIVES"] == "allreduce" and settings["CB_SIZES"] == "-b 8 -e 1G -f 2"
    assert settings["CB_RUNS"].split() == ["ring", "--backend", "nccl", "--nccl-algo", "Ring"]
    assert "--nodes 2,1,16" in text  # the command that wrote it is recorded
    # never overwritten
    again = _cli("slurm", "--cluster", "perlmutter", "-A", "x", "-o", str(out))
    assert again.returncode == 2 and "already exists" in again.stderr


def test_generic_with_gpus_gets_nccl_runs():
    parser_args = ["--cluster", "generic", "--gpus-per-node", "4", "--launcher", "mpiexec"]
    result = _cli("slurm", *parser_args)
    assert result.returncode == 0, result.stderr
    settings = _settings(result.stdout)
    assert "#SBATCH --gpus-per-node=4" in result.stdout and "--gpu-bind=none" in result.stdout
    assert "--backend nccl" in settings["CB_RUNS"] and settings["CB_LAUNCHER"] == "mpiexec"


@pytest.mark.parametrize("args, message", [
    (["--cluster", "perlmutter"], "needs --account"),
    (["--cluster", "delta", "-A", "x", "--nodes", "0,2"], "node counts must be positive"),
    (["--cluster", "generic", "--nodes", "a"], "expected node counts"),
    (["--cluster", "generic", "--collectives", "allsum"], "allsum"),
    (["--cluster", "generic", "-e", "12Q"], "cannot parse -e"),
    (["--cluster", "generic", "--run", "bad name:--backend mpi"], "expected NAME:FLAGS"),
    (["--cluster", "generic", "--run", "x:--algo '$(rm)'"], "not allowed"),
    (["--cluster", "generic", "-t", "soon"], "Slurm time"),
    (["--nodes", "1,2"], "--cluster is required"),
])
def test_mistakes_are_one_line(args, message):
    result = _cli("slurm", *args)
    assert result.returncode == 2
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_default_node_counts_are_powers_of_two_up_to_the_allocation():
    lib = REPO / "collbench" / "slurm" / "sweep-lib.sh"
    for nodes, expected in ((1, "1"), (2, "1 2"), (6, "1 2 4 6"), (8, "1 2 4 8")):
        out = subprocess.run(["bash", "-c", f'source "{lib}"; cb_node_counts {nodes}'],
                             capture_output=True, text=True, env={"PATH": os.environ["PATH"]})
        assert out.stdout.split() == expected.split()
    out = subprocess.run(["bash", "-c", f'CB_NODE_COUNTS="4,1 2 2"; source "{lib}"; cb_node_counts 8'],
                         capture_output=True, text=True)
    assert out.stdout.split() == ["1", "2", "4"]


def _shell_scripts() -> list[Path]:
    found = []
    for path in sorted((REPO / "scripts").rglob("*")):
        if not path.is_file():
            continue
        first = path.read_text(errors="replace").split("\n", 1)[0]
        if path.suffix in (".sh", ".sbatch", ".bash") or re.match(r"#!.*\b(ba)?sh\b", first):
            found.append(path)
    return found


def test_shellcheck_clean(tmp_path):
    if not shutil.which("shellcheck"):
        if IN_CI:
            pytest.fail("CI=true requires shellcheck (apt-get install shellcheck)")
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    scripts = _shell_scripts()
    assert any(p.name == "local-cluster.sh" for p in scripts) and any(p.suffix == ".sbatch" for p in scripts)
    # and what the generator writes for other shapes
    for i, args in enumerate((["--cluster", "local"], ["--cluster", "generic", "--gpus-per-node", "8"],
                              ["--cluster", "delta", "-A", "abcd-delta-gpu", "--venv", "/x/y"])):
        out = tmp_path / f"g{i}.sbatch"
        assert _cli("slurm", *args, "-o", str(out)).returncode == 0
        scripts.append(out)
    result = subprocess.run(["shellcheck", "--severity=style", *map(str, scripts)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
