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

from cbtest import IN_CI, REPO
from collbench.slurm import render as slurm


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
    for option in ("-A <project>_g", "-C gpu", "-q regular", "-N 8", "--ntasks-per-node=4", "-c 32",
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
    assert settings["CB_NIC_GPUS"] == "0 1 2 3"  # 4 NICs, one per GPU: one baseline pair each


def test_delta_facts():
    text = slurm.template_text("delta")
    for option in ("-A <project>-delta-gpu", "--partition=gpuA100x4", "--exclusive", "--mem=0",
                   "--ntasks-per-node=4", "-c 16", "--gpus-per-node=4", "--gpu-bind=none"):
        assert re.search(rf"^#SBATCH {re.escape(option)}(\s|$)", text, re.M), option
    modules = text.split("# ---- modules")[1].split("# ----")[0]
    assert "module load nccl" in modules and "RH9" in modules
    # the OS python3 is too old for collbench: the module block loads a Python
    assert re.search(r"^module load nccl openmpi/\S+ python \|\|", modules, re.M)
    assert "cupy-cuda12x[ctk]" in text and "525" in text  # CUDA 12 libraries and driver, said plainly
    settings = _settings(text)
    assert settings["CB_NCCL_NET_MULTINODE"] == "AWS Libfabric" and settings["CB_FORBID_WHEEL_MPICH"] == "1"
    assert settings["CB_NIC_GPUS"] == "3"  # one NIC, PHB to GPU3


def test_generated_script_follows_the_options(tmp_path):
    out = tmp_path / "pm.sbatch"
    result = _cli("slurm", "--cluster", "perlmutter", "--nodes", "2,1,16", "-A", "m1234_g", "-q", "debug",
                  "-t", "00:20:00", "--collectives", "allreduce", "-e", "1G", "--step-timeout", "60",
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


# ------------------------------------------------------------------ checks at generation time

def _warnings(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if "warning:" in line]


def test_perlmutter_gpu_account_needs_the_g_suffix(tmp_path):
    out = tmp_path / "pm.sbatch"
    result = _cli("slurm", "--cluster", "perlmutter", "-A", "m1234", "-o", str(out))
    assert result.returncode == 0 and out.is_file(), result.stderr  # written anyway
    assert "#SBATCH -A m1234 " in out.read_text()
    warnings = _warnings(result)
    assert len(warnings) == 1 and "m1234 does not end in _g" in warnings[0] and "m1234_g" in warnings[0]
    assert not _warnings(_cli("slurm", "--cluster", "perlmutter", "-A", "m1234_g"))
    # a CPU-only run charges the CPU allocation: no suffix wanted
    cpu = _cli("slurm", "--cluster", "perlmutter", "-A", "m1234", "--gpus-per-node", "0",
               "--run", "mpi:--backend mpi")
    assert not any("_g" in w for w in _warnings(cpu))


def test_debug_qos_clamps_the_default_time_and_warns_about_an_explicit_one():
    clamped = _cli("slurm", "--cluster", "perlmutter", "-A", "m1_g", "-q", "debug")
    assert "#SBATCH -t 00:30:00" in clamped.stdout
    assert any("00:30:00, the maximum of the debug QOS" in w for w in _warnings(clamped))
    kept = _cli("slurm", "--cluster", "perlmutter", "-A", "m1_g", "-q", "debug", "-t", "01:00:00", "--nodes", "1,2")
    assert "#SBATCH -t 01:00:00" in kept.stdout
    assert any("-t 01:00:00 is over the 00:30:00 maximum of the debug QOS" in w for w in _warnings(kept))
    big = _cli("slurm", "--cluster", "perlmutter", "-A", "m1_g", "-q", "debug", "--nodes", "1,16")
    assert any("16 nodes is over the 8-node maximum" in w for w in _warnings(big))
    # Delta has no debug QOS: its short queue is the interactive partition (1 h, 4 nodes)
    delta = _cli("slurm", "--cluster", "delta", "-A", "x-delta-gpu", "-p", "gpuA100x4-interactive")
    assert "#SBATCH -t 01:00:00" in delta.stdout
    assert any("gpuA100x4-interactive partition" in w for w in _warnings(delta))


def test_steps_times_timeout_must_fit_the_time_limit():
    from collbench.slurm.checks import worst_case
    from collbench.slurm.profiles import PROFILES

    # 4 node counts x 3 runs; preflight + NCCL probe + 4 baseline pairs (one per NIC)
    budget = worst_case(PROFILES["perlmutter"])
    assert (budget.steps, budget.checks) == (12, 6)
    assert budget.seconds == 12 * 600 + 6 * 180
    # without -t the limit covers the worst case: no warning
    default = _cli("slurm", "--cluster", "perlmutter", "-A", "m1_g")
    assert not _warnings(default) and "#SBATCH -t 02:20:00" in default.stdout
    short = _cli("slurm", "--cluster", "perlmutter", "-A", "m1_g", "-t", "01:00:00")
    warnings = _warnings(short)
    assert len(warnings) == 1 and "12 step(s) x 600 s + 6 check(s) x 180 s = 02:18:00" in warnings[0]
    assert "time limit 01:00:00" in warnings[0]
    assert not _warnings(_cli("slurm", "--cluster", "perlmutter", "-A", "m1_g", "-t", "01:00:00",
                              "--step-timeout", "200"))


def test_time_zero_is_no_limit():
    # sbatch(1): "A time limit of zero requests that no time limit be imposed": never shorter
    # than the steps (the local cluster has no queue maximum), but over a queue's maximum
    for zero in ("0", "00:00:00", "0-0", "UNLIMITED", "infinite", "-1"):
        unlimited = _cli("slurm", "--cluster", "local", "-t", zero)
        assert unlimited.returncode == 0 and f"#SBATCH -t {zero}\n" in unlimited.stdout
        assert not _warnings(unlimited), unlimited.stderr
    assert _warnings(_cli("slurm", "--cluster", "local", "-t", "00:00:01"))  # a real limit: too short
    debug = _cli("slurm", "--cluster", "perlmutter", "-A", "m1_g", "-q", "debug", "-t", "0", "--nodes", "1,2")
    warnings = _warnings(debug)
    assert len(warnings) == 1 and "-t 0 asks for no time limit, over the 00:30:00 maximum" in warnings[0]


@pytest.mark.parametrize("text, seconds", [("30", 1800), ("05:00", 300), ("01:30:00", 5400),
                                           ("2-00:00:00", 172800), ("1-12", 129600), ("1-00:30", 88200)])
def test_slurm_time_parsing(text, seconds):
    from collbench.slurm.checks import slurm_seconds, slurm_time

    assert slurm_seconds(text) == seconds
    assert slurm_seconds(slurm_time(seconds)) == seconds


def test_spare_nodes_enlarge_the_allocation_only():
    result = _cli("slurm", "--cluster", "generic", "--nodes", "1,2,4", "--spare-nodes", "1")
    assert "#SBATCH -N 5 " in result.stdout and _settings(result.stdout)["CB_NODE_COUNTS"] == "1 2 4"
    assert _cli("slurm", "--cluster", "generic", "--spare-nodes", "-1").returncode == 2


def _fake_python(tmp_path: Path, answer: str) -> Path:
    """A 'python' that answers the mpi4py question the way a given MPI would."""
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/sh\ncat <<'EOF'\n{answer}\nEOF\n")
    fake.chmod(0o755)
    return fake


def test_generation_checks_the_job_pythons_mpi4py(tmp_path):
    wheel = _fake_python(tmp_path, '{"library": "MPICH Version: 4.3.0 (https://pypi.org/p/mpich)", "maps": []}')
    result = _cli("slurm", "--cluster", "delta", "-A", "x-delta-gpu", "--python", str(wheel))
    assert result.returncode == 0
    warnings = _warnings(result)
    assert len(warnings) == 1 and "pip MPICH wheel" in warnings[0] and str(wheel) in warnings[0]
    loaded = tmp_path / "site"
    loaded.mkdir()
    in_site = _fake_python(loaded, '{"library": "MPICH Version: 4.2", "maps": '
                           '["7f00 r-xp 0 0:0 1 /v/lib/python3.11/site-packages/mpich/lib/libmpi.so.12"]}')
    assert "libmpi is loaded from a Python package" in _warnings(
        _cli("slurm", "--cluster", "perlmutter", "-A", "m_g", "--python", str(in_site)))[0]
    cray = tmp_path / "cray"
    cray.mkdir()
    system = _fake_python(cray, '{"library": "MPI VERSION : CRAY MPICH version 8.1.28", '
                          '"maps": ["7f00 r-xp 0 0:0 1 /opt/cray/pe/lib64/libmpi_gnu_123.so.12"]}')
    assert not _warnings(_cli("slurm", "--cluster", "perlmutter", "-A", "m_g", "--python", str(system)))
    # the venv the script activates is the job's Python too
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    _fake_python(venv / "bin", '{"library": "x pypi.org/p/mpich", "maps": []}')
    assert _warnings(_cli("slurm", "--cluster", "perlmutter", "-A", "m_g", "--venv", str(venv)))
    # the local test cluster runs on the wheel on purpose
    assert not _warnings(_cli("slurm", "--cluster", "local", "--python", str(wheel)))


def test_generation_checks_this_pythons_mpi4py_for_real():
    """This environment's mpi4py runs on the pip MPICH wheel (the tests install it)."""
    result = _cli("slurm", "--cluster", "perlmutter", "-A", "m_g", "--python", sys.executable)
    assert any("pip MPICH wheel" in w for w in _warnings(result)), result.stderr


def _module_block(cluster: str) -> str:
    text = slurm.template_text(cluster)
    return text.split("# ---- modules")[1].split("\n", 1)[1].split("# ----")[0]


@pytest.mark.parametrize("cluster", ["perlmutter", "delta"])
def test_a_failed_module_load_stops_the_job_with_one_line(cluster, tmp_path):
    block = _module_block(cluster)
    assert "module load" in block
    # Lmod's `module load` exits non-zero when it cannot load a module
    failing = subprocess.run(["bash", "-c", "module() { return 1; }\n" + block + "\necho SWEEP RAN"],
                             capture_output=True, text=True)
    assert failing.returncode == 1 and "SWEEP RAN" not in failing.stdout
    lines = failing.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("collbench: 'module load ") and "failed" in lines[0]
    working = subprocess.run(["bash", "-c", "module() { return 0; }\n" + block + "\necho SWEEP RAN"],
                             capture_output=True, text=True)
    assert working.returncode == 0 and "SWEEP RAN" in working.stdout


def _lib(script: str) -> subprocess.CompletedProcess:
    lib = REPO / "collbench" / "slurm" / "sweep-lib.sh"
    return subprocess.run(["bash", "-c", f'source "{lib}"\n{script}'], capture_output=True, text=True)


def test_retry_host_choice():
    hosts = "CB_HOSTS=(n1 n2 n3 n4); CB_SUSPECTS=()\n"
    # srun blamed n1: hosts the attempt did not use come first
    assert _lib(hosts + "cb_retry_hosts 2 n1,n2 n1").stdout.split() == ["n3,n4"]
    assert _lib(hosts + "cb_retry_hosts 3 n1,n2,n3 n2").stdout.split() == ["n4,n1,n3"]
    # nobody blamed: avoid the attempt's first host, which every node count shares
    assert _lib(hosts + "cb_retry_hosts 4 n1,n2,n3,n4 ''").returncode != 0
    assert _lib(hosts + "cb_retry_hosts 3 n1,n2,n3 ''").stdout.split() == ["n4,n2,n3"]
    # later steps start on the hosts that never failed
    assert _lib(hosts + "CB_SUSPECTS=(n1); cb_pick_hosts 2; cb_pick_hosts 4").stdout.split() == [
        "n2,n3", "n2,n3,n4,n1"]


def test_the_failing_host_is_the_one_srun_names_first(tmp_path):
    log = tmp_path / "step.out"
    log.write_text("collbench: rank 3 raised\n"
                   "srun: error: n1: tasks 0-1: Killed\n"
                   "srun: error: n3: task 5: Exited with exit code 7\n"
                   "srun: error: n2: tasks 2-3: Exited with exit code 1\n")
    assert _lib(f'cb_failed_host "{log}"').stdout.strip() == "n3"
    log.write_text("srun: error: n2: tasks 2-3: Terminated\n")
    assert _lib(f'cb_failed_host "{log}"').stdout.strip() == ""


@pytest.mark.parametrize("driver, runtime, expected", [
    (12020, 12040, None),             # minor-version compatibility: a 12.2 driver runs 12.4
    (11080, 12020, "CuPy was built for CUDA 12.2 but the driver supports CUDA 11.8"),
    (0, 12020, "no CUDA driver found"),
])
def test_cuda_driver_against_cupys_runtime(driver, runtime, expected):
    from collbench.slurm.injob import cuda_mismatch

    found = cuda_mismatch(driver, runtime)
    assert found == expected if expected is None else expected in found


# ------------------------------------------------------------------ refused at generation time

@pytest.mark.parametrize("args, message", [
    # every run is parsed with `collbench run`'s own parser and checks
    (["-b", "1G", "-e", "1K"], "larger than maxbytes"),
    (["--args", "-n abc"], "argument -n/--iters: expected a whole number, got 'abc'"),
    (["--run", "x:--algo nosuch"], "run 'x' would fail in the job: unknown algorithm 'nosuch'"),
    (["--run", "x:--backend mpi -d float8"], "unknown datatype 'float8'"),
    (["--run", "x:--bogus"], "unrecognized arguments: --bogus"),
    (["--run", "x:-h"], "-h/--help"),
    (["--run", "x:--out f.jsonl"], "the sweep names each run's results file"),
    (["--run", "x:-np 8"], "-np 8: in the job the ranks are"),
    (["--run", "x:--trace t.json"], "would write this one file"),
    (["--run", "x:--algo auto --profile nosuch"], "no such profile 'nosuch'"),
    # the registry: options, implementations, preconditions at the sweep's rank counts
    (["--run", "h:--algo hierarchical -O inner=bogus"], "unknown inner algorithm 'bogus'"),
    (["--run", "r:--algo ring,hierarchical -O inner=ring"], "ring allreduce: unknown option 'inner'"),
    (["--run", "c:--algo topk_rd -O ratio=2", "--collectives", "allreduce"], "-O ratio: unknown option"),
    (["--run", "b:--algo bruck", "--collectives", "allreduce"], "nothing to run"),
    (["--run", "r:-r 100", "--collectives", "broadcast"], "-r/--root 100 is not a rank of any step"),
    (["--run", "i:--backend cuda --algo ring", "--gpus-per-node", "8", "--ranks-per-node", "16"],
     "the schedule interpreter runs at most 8 ranks"),
    # the job's shape against what a run needs
    (["--run", "g:--backend nccl"], "--backend nccl needs GPUs, and the job asks for none"),
    (["--run", "g:--backend nccl", "--gpus-per-node", "2"], "NCCL needs one GPU per rank"),
    # the values written into the script
    (["--collectives", ""], "--collectives '': name at least one"),
    (["--collectives", ","], "name at least one"),
    (["-J", "a b"], "-J/--job-name 'a b'"),
    (["-J", "x/y"], "-J/--job-name"),
    (["--python", ""], "--python '': give the Python"),
    (["--python", "$(rm -rf x)"], "command substitution"),
    (["--python", "~/venv/bin/python"], "write $HOME instead"),
    (["--results", ""], "--results '': give a directory"),
    (["--results", 'a"b'], "quotes"),
    (["--venv", "/a b"], "blanks"),
    (["-A", "a b"], "-A/--account 'a b'"),
    (["-q", ""], "-q/--qos ''"),
    (["-p", "x\ny"], "-p/--partition"),
    (["-C", 'gpu"'], "-C/--constraint"),
    (["--srun-mpi", "pmi 2"], "--srun-mpi 'pmi 2'"),
    (["--run", "x:--algo ring #comment"], "# would start a comment"),
    (["--args", "-O counts=*.json"], "expanded by the shell"),
    (["--run", "a:--backend mpi", "--run", "a:--algo ring"], "--run a: the name appears twice"),
])
def test_runs_and_values_that_can_only_fail_in_the_job_are_refused(args, message, tmp_path):
    out = tmp_path / "job.sbatch"
    result = _cli("slurm", "--cluster", "generic", *args, "-o", str(out))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("collbench: error: ") and not out.exists()


@pytest.mark.parametrize("cluster, args, message", [
    ("perlmutter", ["--ranks-per-node", "8"], "--gpu-map 3,2,1,0 names 4 device(s) for 8 ranks per node"),
    ("perlmutter", ["--gpus-per-node", "2"], "--gpu-map 3,2,1,0 uses device 3"),
    ("perlmutter", ["--gpus-per-node", "0"], "--backend nccl needs GPUs"),
    ("perlmutter", ["--venv", ""], "always activates a venv"),
    ("local", ["--venv", "/x"], "the local profile activates no virtual environment"),
    ("delta", ["--run", "m:--backend mpi -e 256M", "-b", "1G"], "run 'm' would fail in the job"),
])
def test_profile_shapes_that_can_only_fail_in_the_job_are_refused(cluster, args, message):
    result = _cli("slurm", "--cluster", cluster, "-A", "acct_g", *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not result.stdout


def test_every_profile_and_the_documented_runs_pass_the_generation_checks():
    from collbench.slurm.profiles import PROFILES
    from collbench.slurm.validate import check_runs

    for profile in PROFILES.values():
        assert check_runs(profile) == [], profile.name
    # the runs docs/slurm.md and the labs show
    for args in (["--cluster", "perlmutter", "-A", "m1_g", "--run", "algos:--backend nccl --algo ring,hierarchical"],
                 ["--cluster", "perlmutter", "-A", "m1_g", "--run",
                  "mpi-cuda:MPICH_GPU_SUPPORT_ENABLED=1 --backend mpi --device cuda"],
                 ["--cluster", "delta", "-A", "bbka-delta-gpu", "--run", "ring:--backend nccl --nccl-algo Ring"],
                 ["--cluster", "perlmutter", "--nodes", "1,2,4", "-A", "m1234_g", "-q", "regular", "-t", "00:45:00",
                  "--step-timeout", "120", "--collectives", "allreduce", "-e", "1G"],
                 ["--cluster", "generic", "--nodes", "1,2,4", "--gpus-per-node", "4", "--srun-mpi", "pmix",
                  "-J", "my-sweep.v2", "--results", "$SCRATCH/results", "--venv", "$HOME/venvs/x",
                  "-C", "gpu&hbm80g", "-p", "gpu,gpu-debug"],
                 ["--cluster", "generic", "--collectives", "allreduce,alltoallv",
                  "--run", "skew:--algo native,direct -O skew=1.5"]):
        result = _cli("slurm", *args)
        assert result.returncode == 0 and not _warnings(result), (args, result.stderr)


def test_a_run_that_fails_at_some_node_counts_is_written_with_a_warning():
    # root 6 is a rank at 2 and 4 nodes (8, 16 ranks), not at 1 node (4 ranks)
    result = _cli("slurm", "--cluster", "generic", "--nodes", "1,2,4", "--collectives", "broadcast",
                  "--run", "rooted:-r 6")
    assert result.returncode == 0 and result.stdout.startswith("#!/bin/bash")
    [warning] = _warnings(result)
    assert "run 'rooted' will fail at N=1: -r/--root 6 is not a rank of its 4 ranks" in warning


def test_output_file_and_python_path_are_checked_before_the_rest(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    result = _cli("slurm", "--cluster", "generic", "-o", str(tmp_path / "file.txt" / "job.sbatch"))
    assert result.returncode == 2 and "file.txt is not a directory" in result.stderr
    missing = tmp_path / "nope" / "python"
    result = _cli("slurm", "--cluster", "generic", "--python", str(missing))
    assert result.returncode == 0
    assert any(f"--python {missing} does not exist here" in w for w in _warnings(result))


def test_nccl_selections_are_checked_at_generation(tmp_path):
    """NCCL refuses a second NCCL_ALGO/NCCL_PROTO entry without a function prefix, at init, after
    the queue wait: refused here. It ignores names it does not know: a typo is a warning."""
    base = ["slurm", "--cluster", "perlmutter", "-A", "m1_g"]
    typo = _cli(*base, "--run", "n:--backend nccl --algo native --nccl-algo Rign", "-o", str(tmp_path / "a"))
    assert typo.returncode == 0 and (tmp_path / "a").is_file()
    warnings = _warnings(typo)
    assert len(warnings) == 1 and "run 'n': --nccl-algo Rign: NCCL ignores names" in warnings[0]
    refused = _cli(*base, "--run", "n:--backend nccl --algo native --nccl-proto LL;Simple", "-o",
                   str(tmp_path / "b"))
    assert refused.returncode == 2 and not (tmp_path / "b").exists()
    assert "--nccl-proto LL;Simple: every entry but the first needs a function prefix" in refused.stderr
    fine = _cli(*base, "--run", "n:--backend nccl --algo native --nccl-algo allreduce:^tree;allgather:RING "
                "--nccl-proto LL128,simple", "-o", str(tmp_path / "c"))
    assert fine.returncode == 0 and not _warnings(fine), fine.stderr
