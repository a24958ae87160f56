"""``collbench slurm``: write a ready-to-submit node-count sweep script for a Slurm cluster.

The cluster profiles below are the one source of truth for cluster settings (sbatch header,
modules, Python environment, NCCL/libfabric environment, launcher, default runs). A generated
script is the profile's settings followed by ``scripts/slurm/sweep-lib.sh`` inlined verbatim, so
it is self-contained: copy it anywhere and submit it. The committed templates
``scripts/slurm/{perlmutter,delta,generic}.sbatch`` are this module's output
(``collbench slurm --update-templates`` rewrites them; a test checks they are current).

``python -m collbench.slurm preflight|nccl-verdict`` are helpers the sweep calls inside the job.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .errors import UsageError

REPO = Path(__file__).resolve().parents[1]
SCRIPTS_DIR = REPO / "scripts" / "slurm"
LIB_NAME = "sweep-lib.sh"
TEMPLATE_CLUSTERS = ("perlmutter", "delta", "generic")
_COLUMN = 44  # where header comments start


@dataclass(frozen=True)
class Profile:
    """Everything cluster-specific about a sweep script.

    Attributes:
        name: cluster name (also the results subdirectory).
        about: comment lines describing the machine, under the script's title.
        account: value for ``-A``; ``None`` leaves a commented-out line.
        account_note: comment beside the account line.
        sbatch_site: site-specific ``#SBATCH`` options as (option, comment), after the account.
        node_counts: the node counts swept; the allocation is the largest.
        ranks_per_node / cpus_per_task / gpus_per_node: the job shape (0 GPUs: CPU only).
        gpu_bind: ``--gpu-bind`` value (also passed to every srun), or ``None``.
        time: job time limit.
        step_timeout: seconds one step (node count × run) may take before it is killed.
        launcher: ``srun`` or ``mpiexec`` (the MPI wheel's hydra, restricted to the first k hosts).
        srun_mpi: ``srun --mpi=`` type, empty for the cluster default.
        srun_args: extra srun flags for every step.
        gpu_map: ``collbench run --gpu-map`` for GPU backends (device per local rank).
        collectives / sizes / args: what every run measures.
        runs: (name, ``collbench run`` flags) per run; a flag list may start with VAR=value; a
            name starting with ``#`` writes a commented-out example.
        job_name: ``-J``.
        modules: the module block (shell lines).
        python_env: the Python environment block (shell lines).
        env: exported variables as (name, value, comment).
        nccl_net_multinode: NCCL_NET for steps on more than one node.
        forbid_wheel_mpich: refuse to run on the pip MPICH wheel (clusters).
        python: the Python that runs collbench in the job.
        results: results root (shell expression).
    """

    name: str
    about: tuple[str, ...]
    account: str | None
    account_note: str
    sbatch_site: tuple[tuple[str, str], ...]
    node_counts: tuple[int, ...]
    ranks_per_node: int
    cpus_per_task: int | None
    gpus_per_node: int
    gpu_bind: str | None
    time: str
    step_timeout: int
    launcher: str
    srun_mpi: str
    srun_args: str
    gpu_map: str
    collectives: str
    sizes: str
    args: str
    runs: tuple[tuple[str, str], ...]
    modules: tuple[str, ...]
    python_env: tuple[str, ...]
    env: tuple[tuple[str, str, str], ...] = ()
    nccl_net_multinode: str = ""
    forbid_wheel_mpich: bool = True
    python: str = "python"
    results: str = "${SLURM_SUBMIT_DIR:-$PWD}/results"
    job_name: str = "collbench-sweep"


# NCCL over Slingshot 11 (HPE shs-ccl-docs, NERSC/nccl-ofi-plugin env_nccl.sh, CSCS/ALCF docs).
_GPU_RUNS = (
    ("nccl", "--backend nccl --algo native"),
    # on 2 nodes NCCL's tree can report more than line rate; Ring measures the network
    ("nccl-ring", "--backend nccl --algo native --nccl-algo Ring"),
    ("mpi", "--backend mpi --algo native -e 256M"),
    # our schedules over NCCL point-to-point (see `collbench list`); uncomment to compare
    ("# algos", "--backend nccl --algo ring,hierarchical"),
)

PROFILES: dict[str, Profile] = {
    "perlmutter": Profile(
        name="perlmutter",
        about=("NERSC Perlmutter GPU nodes: 4x A100 (40 or 80 GB), 1x EPYC 7763 (64 cores, SMT 2),",
               "4 Slingshot-11 NICs (one per GPU). Local rank r is nearest GPU 3-r (GPU0 sits on NUMA 3)."),
        account="<project>",
        account_note="NERSC project (historically <project>_g for GPU jobs)",
        sbatch_site=(("-C gpu", 'GPU nodes; "gpu&hbm80g" for the 80 GB A100s'),
                     ("-q regular", "or debug; limits: docs.nersc.gov/jobs/policy")),
        node_counts=(1, 2, 4, 8),
        ranks_per_node=4, cpus_per_task=32, gpus_per_node=4, gpu_bind="none",
        time="01:00:00", step_timeout=600,
        launcher="srun", srun_mpi="", srun_args="--cpu-bind=cores --gpu-bind=none",
        gpu_map="3,2,1,0",
        collectives="allreduce allgather reduce_scatter", sizes="-b 8 -e 4G -f 2", args="",
        runs=_GPU_RUNS,
        modules=("module load PrgEnv-gnu cudatoolkit craype-accel-nvidia80 cray-mpich nccl python",),
        python_env=(
            "# mpi4py must be built against cray-mpich, never the pip MPICH wheel (ranks would not",
            "# use Slingshot, or would all be rank 0 of 1). One-time setup on a login node, after the",
            "# module line above:",
            "#   python -m venv --system-site-packages $HOME/venvs/collbench",
            "#   source $HOME/venvs/collbench/bin/activate",
            '#   MPICC="cc -shared" pip install --force-reinstall --no-cache-dir --no-binary=mpi4py mpi4py',
            '#   (CUDA-aware MPI for --device cuda runs: MPICC="cc -target-accel=nvidia80 -shared")',
            "#   pip install -e /path/to/collbench cupy-cuda12x      # no [mpich]: that is the wheel",
            'CB_VENV=${CB_VENV:-$HOME/venvs/collbench}',
            '# shellcheck disable=SC1091',
            'source "$CB_VENV/bin/activate" || { echo "collbench: no Python environment at $CB_VENV" >&2; exit 2; }',
        ),
        env=(
            ("SRUN_CPUS_PER_TASK", "$SLURM_CPUS_PER_TASK", "Slurm >= 22.05: srun no longer inherits -c"),
            ("MPICH_GPU_SUPPORT_ENABLED", "0", "1 for --device cuda runs (mpi4py with GTL)"),
            ("MPICH_OFI_NIC_POLICY", "GPU", "each rank uses the NIC nearest its GPU"),
            ("NCCL_SOCKET_IFNAME", "hsn", "bootstrap over the high-speed network"),
            ("NCCL_NET_GDR_LEVEL", "PHB", "GPUDirect RDMA between a GPU and its NIC"),
            ("NCCL_CROSS_NIC", "1", ""),
            ("FI_CXI_DISABLE_HOST_REGISTER", "1", "avoids CUDA/CXI registration deadlocks"),
            ("FI_CXI_RDZV_GET_MIN", "0", "NERSC: fixes hangs with cray-mpich"),
            ("FI_CXI_SAFE_DEVMEM_COPY_THRESHOLD", "16777216", "NERSC: fixes hangs with cray-mpich"),
            ("NCCL_DEBUG", "WARN", "the probe step alone runs with INFO"),
        ),
        nccl_net_multinode="AWS Libfabric",
    ),
    "delta": Profile(
        name="delta",
        about=("NCSA Delta gpuA100x4 nodes: 4x A100 SXM 40 GB (NVLink), 1x EPYC 7763 (64 cores, SMT off),",
               "one Slingshot-11 NIC (PHB to GPU3 only). Local rank r is nearest GPU 3-r (GPU0 on NUMA 3).",
               "Nodes are shared unless --exclusive --mem=0."),
        account="<project>-delta-gpu",
        account_note="charge account (the `accounts` command lists yours)",
        sbatch_site=(("--partition=gpuA100x4", "or gpuA100x4-interactive (<= 4 nodes, 1 h)"),
                     ("--exclusive", "whole nodes: Delta shares nodes by default"),
                     ("--mem=0", "all node memory (default: 1000 MB per core)"),
                     ('--constraint="scratch"', "file systems used (Delta asks jobs to declare)")),
        node_counts=(1, 2, 4),
        ranks_per_node=4, cpus_per_task=16, gpus_per_node=4, gpu_bind="none",
        time="01:00:00", step_timeout=600,
        launcher="srun", srun_mpi="", srun_args="--cpu-bind=cores --gpu-bind=none",
        gpu_map="3,2,1,0",
        collectives="allreduce allgather reduce_scatter", sizes="-b 8 -e 4G -f 2", args="",
        runs=_GPU_RUNS,
        modules=(
            "# Module names differ between Delta's RedHat 8 and RedHat 9 software stacks; check with",
            "# `module spider nccl` / `module spider openmpi` and keep the right line.",
            "module reset",
            "module load nccl openmpi/4.1.5+cuda          # RH8 stack: NCCL with the AWS OFI plugin",
            "# module load cudatoolkit libfabric aws-ofi-nccl openmpi   # RH9 stack (names: VERIFY)",
        ),
        python_env=(
            "# mpi4py must be built against the module's MPI, never the pip MPICH wheel or anaconda's",
            "# mpich (ranks would not use Slingshot, or would all be rank 0 of 1). One-time setup,",
            "# after the module lines above:",
            "#   python3 -m venv $HOME/venvs/collbench && source $HOME/venvs/collbench/bin/activate",
            '#   MPICC=$(which mpicc) pip install --no-binary=mpi4py --no-cache-dir mpi4py',
            "#   pip install -e /path/to/collbench cupy-cuda12x      # no [mpich]: that is the wheel",
            'CB_VENV=${CB_VENV:-$HOME/venvs/collbench}',
            '# shellcheck disable=SC1091',
            'source "$CB_VENV/bin/activate" || { echo "collbench: no Python environment at $CB_VENV" >&2; exit 2; }',
        ),
        env=(
            ("SRUN_CPUS_PER_TASK", "$SLURM_CPUS_PER_TASK", "Slurm >= 22.05: srun no longer inherits -c"),
            ("OMP_NUM_THREADS", "1", ""),
            ("NCCL_SOCKET_IFNAME", "hsn", "bootstrap over the high-speed network"),
            ("NCCL_CROSS_NIC", "1", ""),
            ("NCCL_NET_GDR_LEVEL", "PHB", "GDR for GPU3 only; or SYS + NCCL_NET_GDR_READ=0"),
            ("FI_CXI_DISABLE_HOST_REGISTER", "1", "avoids CUDA/CXI registration deadlocks"),
            ("FI_MR_CACHE_MONITOR", "userfaultfd", ""),
            ("FI_CXI_DEFAULT_CQ_SIZE", "131072", ""),
            ("NCCL_DEBUG", "WARN", "the probe step alone runs with INFO"),
        ),
        nccl_net_multinode="AWS Libfabric",
    ),
    "generic": Profile(
        name="generic",
        about=("Any Slurm cluster. CPU-only as written; for GPUs uncomment --gpus-per-node and add",
               "the nccl runs below. Launch with srun (set CB_SRUN_MPI to your MPI's PMI type, see",
               "`srun --mpi=list`) or with your MPI's mpiexec (CB_LAUNCHER=mpiexec)."),
        account=None,
        account_note="charge account, where your site needs one",
        sbatch_site=(("##SBATCH --partition=<partition>", "where your site needs one"),
                     ("##SBATCH --gpus-per-node=4", "GPUs: uncomment, and add nccl runs below"),
                     ("--exclusive", "whole nodes, so neighbours do not share the network")),
        node_counts=(1, 2, 4),
        ranks_per_node=4, cpus_per_task=None, gpus_per_node=0, gpu_bind=None,
        time="00:30:00", step_timeout=600,
        launcher="srun", srun_mpi="", srun_args="--cpu-bind=cores",
        gpu_map="",
        collectives="allreduce allgather reduce_scatter", sizes="-b 8 -e 64M -f 2", args="",
        runs=(("mpi", "--backend mpi --algo native"),
              ("mpi-hier", "--backend mpi --algo hierarchical"),
              ("# nccl", "--backend nccl --algo native                # with GPUs"),
              ("# nccl-ring", "--backend nccl --algo native --nccl-algo Ring")),
        modules=("# module load <your MPI> <CUDA> <NCCL>   # the site's MPI, built for its network",),
        python="python3",
        python_env=(
            "# mpi4py must be built against the site MPI (MPICC=$(which mpicc) pip install",
            "# --no-binary=mpi4py mpi4py). The pip MPICH wheel only suits clusters without a fast",
            "# network; set CB_FORBID_WHEEL_MPICH=0 to allow it.",
            'CB_VENV=${CB_VENV:-}',
            '# shellcheck disable=SC1091',
            'if [[ -n $CB_VENV ]]; then source "$CB_VENV/bin/activate" || exit 2; fi',
        ),
        env=(("SRUN_CPUS_PER_TASK", "${SLURM_CPUS_PER_TASK:-1}", "Slurm >= 22.05: srun no longer inherits -c"),),
    ),
    "local": Profile(
        name="local",
        about=("The local test cluster of scripts/slurm/local-cluster.sh: K slurmd on this host",
               "(n1..nK), the pip MPICH wheel launched by srun --mpi=pmi2, tiny sizes."),
        account=None,
        account_note="",
        sbatch_site=(),
        node_counts=(1, 2),
        ranks_per_node=2, cpus_per_task=None, gpus_per_node=0, gpu_bind=None,
        time="00:10:00", step_timeout=60,
        launcher="srun", srun_mpi="pmi2", srun_args="",
        gpu_map="",
        collectives="allreduce", sizes="-b 8 -e 1K -f 8", args="-w 2 -n 5 -c 1 --placement out-of-place",
        runs=(("mpi", "--backend mpi --algo native,hierarchical"),),
        modules=(),
        python_env=(),
        forbid_wheel_mpich=False,
        python=sys.executable,
        # The wheel's default UCX netmod publishes ~3 KB business cards through Slurm's PMI2, and
        # about one launch in fifty here desynchronised the PMI2 stream ("value not properly
        # terminated", then a UCX address assertion). OFI's tcp addresses are 16 bytes.
        env=(("MPIR_CVAR_CH4_NETMOD", "ofi", "see collbench/slurm.py: UCX cards vs Slurm PMI2"),),
    ),
}


@dataclass(frozen=True)
class Options:
    """What ``collbench slurm`` may change in a profile (None: the profile's value)."""

    nodes: tuple[int, ...] | None = None
    account: str | None = None
    qos: str | None = None
    partition: str | None = None
    constraint: str | None = None
    time: str | None = None
    step_timeout: int | None = None
    ranks_per_node: int | None = None
    cpus_per_task: int | None = None
    gpus_per_node: int | None = None
    launcher: str | None = None
    srun_mpi: str | None = None
    collectives: str | None = None
    sizes: str | None = None
    args: str | None = None
    runs: tuple[tuple[str, str], ...] | None = None
    python: str | None = None
    venv: str | None = None
    results: str | None = None
    job_name: str | None = None


def apply(profile: Profile, options: Options) -> Profile:
    """The profile with the user's choices applied (the sbatch header follows them)."""
    changes: dict[str, object] = {}
    for name in ("account", "time", "step_timeout", "ranks_per_node", "cpus_per_task", "gpus_per_node",
                 "launcher", "srun_mpi", "collectives", "sizes", "args", "runs", "python", "results",
                 "job_name"):
        value = getattr(options, name)
        if value is not None:
            changes[name] = value
    if options.nodes is not None:
        changes["node_counts"] = options.nodes
    site = list(profile.sbatch_site)

    def replace_site(prefixes: tuple[str, ...], line: str, comment: str) -> None:
        for i, (option, note) in enumerate(site):
            if option.lstrip("#").removeprefix("SBATCH ").startswith(prefixes):
                site[i] = (line, note)
                return
        site.append((line, comment))

    if options.qos is not None:
        replace_site(("-q ", "--qos"), f"-q {options.qos}", "")
    if options.partition is not None:
        replace_site(("--partition", "-p "), f"--partition={options.partition}", "")
    if options.constraint is not None:
        replace_site(("-C ", "--constraint"), f'--constraint="{options.constraint}"', "")
    gpus = options.gpus_per_node
    if gpus is not None:
        site = [(o, n) for o, n in site if "--gpus-per-node" not in o]
        if gpus and profile.gpu_bind is None:
            changes["gpu_bind"] = "none"
            changes["srun_args"] = (profile.srun_args + " --gpu-bind=none").strip()
        if gpus and options.runs is None and not any("--backend nccl" in a for n, a in profile.runs
                                                     if not n.startswith("#")):
            changes["runs"] = _GPU_RUNS
    changes["sbatch_site"] = tuple(site)
    if options.venv is not None:
        changes["python_env"] = tuple(
            re.sub(r"CB_VENV=\$\{CB_VENV:-[^}]*\}", lambda _: f"CB_VENV=${{CB_VENV:-{options.venv}}}", line)
            for line in profile.python_env)
    return dataclasses.replace(profile, **changes)


def _commented(text: str, comment: str) -> str:
    """``text`` with ``comment`` aligned beside it, or on the line above when that would be long
    (a ``#`` glued to a shell word is not a comment, so there is always a blank before it)."""
    if not comment:
        return text
    if len(text) + 2 <= _COLUMN and _COLUMN + len(comment) + 2 <= 100:
        return f"{text.ljust(_COLUMN)}# {comment}"
    if len(text) + len(comment) + 4 <= 100:
        return f"{text}  # {comment}"
    return f"# {comment}\n{text}"


def _sbatch(option: str, comment: str = "") -> str:
    line = option if option.startswith("##SBATCH") else f"#SBATCH {option}"
    return _commented(line, comment)


def _shell_word(value: str) -> str:
    """A double-quoted shell word that keeps $VARIABLES (values here are ours, not the user's)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("`", "\\`") + '"'


def _assign(name: str, value: str, comment: str = "") -> str:
    return _commented(f"{name}=${{{name}:-{_shell_word(value)}}}", comment)


def lib_text() -> str:
    """The sweep library that every script carries."""
    path = SCRIPTS_DIR / LIB_NAME
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        raise UsageError(f"cannot read {path}: `collbench slurm` needs a collbench source checkout "
                         "(scripts/slurm/sweep-lib.sh)") from None


def render(profile: Profile, command: str) -> str:
    """The complete sbatch script for ``profile``; ``command`` is recorded in its header."""
    p = profile
    if not p.node_counts:
        raise UsageError("no node counts")
    bar = "# " + "=" * 98
    lines = ["#!/bin/bash", bar,
             f"# collbench node-count sweep: {p.name}"]
    lines += [f"#   {text}" for text in p.about]
    lines += [
        "#",
        f"# Submit with `sbatch <this file>`. One allocation of {max(p.node_counts)} node(s) runs every run below at",
        "# each node count on the first k nodes, same ranks per node each time, and leaves",
        f"# results/{p.name}/<jobid>/ (one results file per node count and run, plus the job's metadata).",
        f"# Then: collbench report results/{p.name}/<jobid>     (--format csv|markdown)",
        "#",
        f"# Written by `{command}`",
        "# from the cluster profiles in collbench/slurm.py and scripts/slurm/sweep-lib.sh (inlined at the",
        "# end). Edit this copy freely; to change the defaults for everyone, change those and regenerate.",
        bar,
    ]
    if p.account is not None:
        lines.append(_sbatch(f"-A {p.account}", p.account_note))
    elif p.account_note:
        lines.append(_sbatch("##SBATCH -A <account>", p.account_note))
    for option, comment in p.sbatch_site:
        lines.append(_sbatch(option, comment))
    lines.append(_sbatch(f"-N {max(p.node_counts)}", "the largest node count of the sweep"))
    lines.append(_sbatch(f"--ntasks-per-node={p.ranks_per_node}",
                         "ranks per node, the same for every k"
                         + ("; one per GPU" if p.gpus_per_node else "")))
    if p.cpus_per_task:
        lines.append(_sbatch(f"-c {p.cpus_per_task}", "CPUs per rank"))
    if p.gpus_per_node:
        lines.append(_sbatch(f"--gpus-per-node={p.gpus_per_node}"))
    if p.gpu_bind:
        lines.append(_sbatch(f"--gpu-bind={p.gpu_bind}",
                             "all ranks see all GPUs: per-task binding breaks IPC"))
    lines.append(_sbatch(f"-t {p.time}"))
    lines.append(_sbatch(f"-J {p.job_name}"))
    lines.append(_sbatch("-o %x-%j.out"))
    counts = " ".join(str(k) for k in p.node_counts)
    runs = "\n".join(f"{name:<11} {args}" for name, args in p.runs)
    lines += [
        "",
        "# ---- what to measure (edit; or override at submit time: sbatch --export=ALL,CB_NODE_COUNTS=\"1 2\") ----",
        "# Ranks per node, CPUs per rank and GPUs per node come from the #SBATCH lines above.",
        _assign("CB_CLUSTER", p.name, "results: $CB_RESULTS/$CB_CLUSTER/<jobid>"),
        _assign("CB_NODE_COUNTS", counts, "at most -N (larger ones: skipped)"),
        _assign("CB_COLLECTIVES", p.collectives),
        _assign("CB_SIZES", p.sizes, "nccl-tests flags: -b min -e max -f factor"),
        _assign("CB_ARGS", p.args, "more `collbench run` flags for every run"),
        "# One run per line: a name (its results file is N<k>-<name>.jsonl), optional VAR=value settings",
        "# for that run only, then `collbench run` flags (they override the ones above). # starts a comment.",
        f"CB_RUNS=${{CB_RUNS:-\"\n{runs}\n\"}}",
        _assign("CB_STEP_TIMEOUT", str(p.step_timeout), "seconds per step; a hung step is killed"),
        _assign("CB_RESULTS", p.results),
        "",
        "# ---- how to launch ----",
        _assign("CB_LAUNCHER", p.launcher, "srun | mpiexec (beside CB_PYTHON, or CB_MPIEXEC)"),
        _assign("CB_SRUN_MPI", p.srun_mpi, "srun --mpi=TYPE (empty: site default)"),
        _assign("CB_SRUN_ARGS", p.srun_args, "more srun flags for every step"),
        _assign("CB_GPU_MAP", p.gpu_map, "GPU per local rank (--gpu-map)"),
        _assign("CB_NCCL_NET_MULTINODE", p.nccl_net_multinode,
                "NCCL_NET on >1 node: no silent TCP fallback"),
        _assign("CB_FORBID_WHEEL_MPICH", "1" if p.forbid_wheel_mpich else "0",
                "1: refuse the pip MPICH wheel"),
        _assign("CB_PYTHON", p.python),
    ]
    if p.modules:
        lines += ["", "# ---- modules (site-specific: the one block to change when the software stack moves) ----",
                  *p.modules]
    if p.python_env:
        lines += ["", "# ---- Python environment ----", *p.python_env]
    if p.env:
        lines += ["", "# ---- MPI / NCCL / libfabric environment (recorded in every results file) ----"]
        for name, value, comment in p.env:
            safe = re.fullmatch(r"[A-Za-z0-9_./:,=+-]*|\$\{?[A-Za-z0-9_:-]+\}?", value)
            text = f"export {name}={value if safe else _shell_word(value)}"
            lines.append(_commented(text, comment))
    lines += ["", "# " + "-" * 98,
              f"# The sweep: scripts/slurm/{LIB_NAME}, inlined. Nothing below needs editing.",
              "# " + "-" * 98, lib_text().rstrip("\n"), "", 'cb_main "$@"', ""]
    return "\n".join(lines)


def template_command(cluster: str) -> str:
    return f"collbench slurm --cluster {cluster} --template"


def template_path(cluster: str) -> Path:
    return SCRIPTS_DIR / f"{cluster}.sbatch"


def template_text(cluster: str) -> str:
    """What ``scripts/slurm/<cluster>.sbatch`` must contain."""
    return render(PROFILES[cluster], template_command(cluster))


def update_templates() -> list[Path]:
    written = []
    for cluster in TEMPLATE_CLUSTERS:
        path = template_path(cluster)
        text = template_text(cluster)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            written.append(path)
        path.chmod(0o755)
    return written


# ---------------------------------------------------------------------------------------- CLI


def _node_counts(text: str) -> tuple[int, ...]:
    try:
        counts = sorted({int(part) for part in re.split(r"[,\s]+", text.strip()) if part})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected node counts like 1,2,4,8, got {text!r}") from None
    if not counts or counts[0] < 1:
        raise argparse.ArgumentTypeError(f"node counts must be positive, got {text!r}")
    return tuple(counts)


def _time(text: str) -> str:
    if not re.fullmatch(r"(\d+-)?\d{1,2}(:\d{2}){0,2}", text):
        raise argparse.ArgumentTypeError(f"expected a Slurm time like 00:30:00 or 1-00:00:00, got {text!r}")
    return text


def _run_spec(text: str) -> tuple[str, str]:
    name, sep, args = text.partition(":")
    if not sep or not re.fullmatch(r"[A-Za-z0-9_.+-]+", name.strip()) or not args.strip():
        raise argparse.ArgumentTypeError(f"expected NAME:FLAGS, e.g. 'nccl-ring:--backend nccl --nccl-algo Ring', "
                                         f"got {text!r}")
    if any(c in args for c in "\"'`$\\\n"):
        raise argparse.ArgumentTypeError(f"run {name!r}: flags are split on blanks; quotes, $ and \\ are not allowed")
    return name.strip(), " ".join(args.split())


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``collbench slurm`` to the CLI's subcommands."""
    parser = sub.add_parser(
        "slurm", help="write an sbatch script for a node-count sweep",
        description="Write a ready-to-submit sbatch script that sweeps node counts in one allocation "
        "(srun -N k on the first k nodes, same ranks per node) and leaves results/<cluster>/<jobid>/ "
        "for `collbench report`.")
    parser.add_argument("--cluster", choices=sorted(PROFILES), default=None,
                        help="cluster profile (local: the test cluster of scripts/slurm/local-cluster.sh)")
    parser.add_argument("--nodes", type=_node_counts, default=None,
                        help="node counts, e.g. 1,2,4,8 (the allocation is the largest)")
    parser.add_argument("-A", "--account", default=None, help="account to charge (-A)")
    parser.add_argument("-q", "--qos", default=None, help="QOS (-q)")
    parser.add_argument("-p", "--partition", default=None, help="partition")
    parser.add_argument("-C", "--constraint", default=None, help="node constraint (-C)")
    parser.add_argument("-t", "--time", type=_time, default=None, help="job time limit, e.g. 00:30:00")
    parser.add_argument("--step-timeout", type=int, default=None, metavar="SECONDS",
                        help="time one node count x run may take before it is killed")
    parser.add_argument("--ranks-per-node", type=int, default=None)
    parser.add_argument("--cpus-per-task", type=int, default=None)
    parser.add_argument("--gpus-per-node", type=int, default=None)
    parser.add_argument("--launcher", choices=["srun", "mpiexec"], default=None)
    parser.add_argument("--srun-mpi", default=None, metavar="TYPE", help="srun --mpi=TYPE (pmi2, pmix, cray_shasta)")
    parser.add_argument("--collectives", default=None, help="e.g. allreduce,allgather")
    parser.add_argument("-b", "--minbytes", default=None)
    parser.add_argument("-e", "--maxbytes", default=None)
    parser.add_argument("-f", "--stepfactor", default=None)
    parser.add_argument("--args", default=None, help="more `collbench run` flags for every run, e.g. '-n 20 -w 5'")
    parser.add_argument("--run", dest="runs", action="append", type=_run_spec, default=None,
                        metavar="NAME:FLAGS", help="a run (repeatable; replaces the profile's runs), "
                        "e.g. 'nccl-ring:--backend nccl --algo native --nccl-algo Ring'")
    parser.add_argument("--python", default=None, help="the Python that runs collbench in the job")
    parser.add_argument("--venv", default=None, help="virtual environment to activate in the job")
    parser.add_argument("--results", default=None, help="results root (default $SLURM_SUBMIT_DIR/results)")
    parser.add_argument("-J", "--job-name", default=None)
    parser.add_argument("-o", "--output", default=None, metavar="FILE",
                        help="write the script here (default: standard output); never overwrites")
    parser.add_argument("--template", action="store_true",
                        help="the committed template (placeholders, no account check)")
    parser.add_argument("--update-templates", action="store_true",
                        help=f"rewrite scripts/slurm/{{{','.join(TEMPLATE_CLUSTERS)}}}.sbatch in this checkout")
    return parser


def command(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Run ``collbench slurm``; returns the exit status."""
    if args.update_templates:
        written = update_templates()
        for path in written:
            sys.stdout.write(f"wrote {path}\n")
        if not written:
            sys.stdout.write("templates are up to date\n")
        return 0
    if args.cluster is None:
        raise UsageError("--cluster is required (perlmutter, delta, generic or local)")
    profile = PROFILES[args.cluster]
    if args.template:
        text = template_text(args.cluster)
    else:
        if profile.account and profile.account.startswith("<") and args.account is None:
            raise UsageError(f"--cluster {args.cluster} needs --account (e.g. {profile.account}); "
                             "or use --template for the placeholder version")
        for name in ("ranks_per_node", "cpus_per_task", "gpus_per_node", "step_timeout"):
            value = getattr(args, name)
            if value is not None and (value < 0 or (value == 0 and name != "gpus_per_node")):
                raise UsageError(f"--{name.replace('_', '-')} must be positive, got {value}")
        sizes = None
        if any(v is not None for v in (args.minbytes, args.maxbytes, args.stepfactor)):
            from .sizes import parse_size

            parts = profile.sizes.split()
            current = dict(zip(parts[::2], parts[1::2]))
            for flag, value in (("-b", args.minbytes), ("-e", args.maxbytes), ("-f", args.stepfactor)):
                if value is not None:
                    if flag != "-f":
                        parse_size(value, flag)
                    elif not value.isdigit() or int(value) < 1:
                        raise UsageError(f"-f must be a positive whole number, got {value!r}")
                    current[flag] = value
            sizes = " ".join(f"{k} {v}" for k, v in current.items())
        collectives = None
        if args.collectives:
            from .algorithms import Collective

            names = [n for n in re.split(r"[,\s]+", args.collectives) if n]
            for name in names:
                try:
                    Collective.parse(name)
                except ValueError as exc:
                    raise UsageError(str(exc)) from None
            collectives = " ".join(names)
        if args.args and any(c in args.args for c in "\"'`$\\\n"):
            raise UsageError("--args: flags are split on blanks; quotes, $ and \\ are not allowed")
        options = Options(
            nodes=args.nodes, account=args.account, qos=args.qos, partition=args.partition,
            constraint=args.constraint, time=args.time, step_timeout=args.step_timeout,
            ranks_per_node=args.ranks_per_node, cpus_per_task=args.cpus_per_task,
            gpus_per_node=args.gpus_per_node, launcher=args.launcher, srun_mpi=args.srun_mpi,
            collectives=collectives, sizes=sizes, args=args.args,
            runs=tuple(args.runs) if args.runs else None, python=args.python, venv=args.venv,
            results=args.results, job_name=args.job_name)
        import shlex

        text = render(apply(profile, options), "collbench " + " ".join(shlex.quote(a) for a in argv))
    if args.output is None:
        sys.stdout.write(text)
        return 0
    out = Path(args.output)
    if out.exists():
        raise UsageError(f"{out} already exists; choose another -o (collbench never overwrites it)")
    try:
        out.write_text(text, encoding="utf-8")
        out.chmod(0o755)
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror}") from None
    sys.stderr.write(f"wrote {out}; submit it with: sbatch {out}\n")
    return 0


# ------------------------------------------------------------------- helpers run inside the job


def wheel_mpich_reason(library_version: str) -> str | None:
    """Why this MPI looks like the pip MPICH wheel (None if it does not)."""
    if "pypi.org/p/mpich" in library_version:
        return "MPI_Get_library_version names the pip mpich wheel"
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    for line in maps.splitlines():
        path = line.split()[-1] if line.split() else ""
        if re.search(r"/libmpi(ch)?\.so", path) and ("site-packages" in path or "dist-packages" in path):
            return f"libmpi is loaded from a Python package: {path}"
    return None


def preflight(ranks: int, forbid_wheel: bool) -> int:
    """Inside one step of ``ranks`` ranks: every rank must see the whole job (and a cluster MPI)."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    size, rank = comm.Get_size(), comm.Get_rank()
    library = MPI.Get_library_version().strip()
    problems = []
    if size != ranks:
        problems.append(f"mpi4py sees a job of {size} rank(s), the step has {ranks}: mpi4py is not "
                        "built for the MPI this launcher starts (rebuild it with the site's mpicc/cc, "
                        "or set CB_SRUN_MPI to the PMI your MPI speaks, see `srun --mpi=list`)")
    wheel = wheel_mpich_reason(library)
    if forbid_wheel and wheel:
        problems.append(f"mpi4py runs on the pip MPICH wheel ({wheel}); on this cluster build mpi4py "
                        "against the system MPI (see the Python environment block of the script)")
    if rank == 0 or problems:
        first = library.splitlines()[0] if library else "?"
        sys.stdout.write(f"rank {rank} of {size} on {os.environ.get('SLURMD_NODENAME', os.uname().nodename)}: "
                         f"{first}\n")
        for problem in problems:
            sys.stdout.write(f"preflight: error: {problem}\n")
        sys.stdout.flush()
    if not problems:
        comm.Barrier()
    return 3 if problems else 0


# "Using network X" (all NCCL versions); "Assigned NET plugin X to comm" (NCCL >= 2.27)
_NET_RE = re.compile(r"Using network (.+?)\s*$|Assigned NET plugin (.+?) to comm")


def nccl_verdict(directory: Path, rc: int = 0, nodes: int = 2) -> str:
    """One line about NCCL's inter-node transport from an NCCL_DEBUG=INFO probe's logs.

    Looks for ``Using network <name>`` (AWS Libfabric / Libfabric / IB: a real network; Socket:
    TCP fallback), plugin-loading failures, and GPUDirect RDMA on the network channels.
    """
    text = ""
    for path in sorted(directory.glob("*.log")):  # NCCL_DEBUG_FILE, one per host and process
        try:
            text += path.read_text(errors="replace") + "\n"
        except OSError:
            continue
    if not text.strip() and (directory / "probe.out").is_file():  # NCCL_DEBUG_FILE unsupported: stdout
        text = (directory / "probe.out").read_text(errors="replace")
    if "NCCL INFO" not in text and "NCCL WARN" not in text:
        text = ""
    version = re.search(r"NCCL version (\S+)", text)
    networks = sorted({(m.group(1) or m.group(2)).strip() for line in text.splitlines()
                       if (m := _NET_RE.search(line))})
    gdr = bool(re.search(r"GDR ?1\b|GDRDMA|GPU Direct RDMA Enabled", text))
    provider = re.search(r"Selected [Pp]rovider is ([A-Za-z0-9_;.-]+)", text)
    no_plugin = re.search(r"NET/Plugin ?: ?(No plugin found|Plugin load returned|Failed to find)"
                          r"|Failed to initialize any NET plugin|NET/Plugin: Could not find", text)
    where = f"{nodes} node(s)" + ("" if nodes > 1 else "; one node does not exercise the network")
    ver = f"NCCL {version.group(1)}, " if version else ""
    real = [n for n in networks if n.lower() not in ("socket", "ib")]
    if not real and "IB" in networks:
        return (f"RDMA network: IB (NCCL's built-in verbs transport; {ver}{where}, GPUDirect RDMA "
                f"{'on' if gdr else 'not seen'})")
    if real:
        name = ", ".join(real)
        extra = f", provider {provider.group(1)}" if provider else ""
        return (f"network plugin found: {name} ({ver}{where}{extra}, GPUDirect RDMA "
                f"{'on' if gdr else 'not seen'})")
    if "Socket" in networks:
        return (f"TCP FALLBACK: NCCL uses sockets (NET/Socket; {ver}{where}) - inter-node bandwidth will "
                "be far below the network's; load the NCCL network plugin (aws-ofi-nccl) module")
    if no_plugin:
        return (f"NETWORK PLUGIN NOT FOUND ({no_plugin.group(0).strip()}; {ver}{where}); the probe "
                f"{'failed' if rc else 'ran'} - load the NCCL network plugin (aws-ofi-nccl) module")
    if rc:
        return f"probe failed (exit {rc}; {where}); see job/nccl-probe/probe.out"
    if not text.strip():
        return f"no NCCL log found ({where}); NCCL_DEBUG_FILE was not written"
    return f"undetermined: no 'Using network' line in the NCCL log ({ver}{where})"


def _helper_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m collbench.slurm")
    sub = parser.add_subparsers(dest="helper", required=True)
    pre = sub.add_parser("preflight")
    pre.add_argument("--ranks", type=int, required=True)
    pre.add_argument("--forbid-wheel-mpich", type=int, default=0)
    ver = sub.add_parser("nccl-verdict")
    ver.add_argument("directory", type=Path)
    ver.add_argument("--rc", type=int, default=0)
    ver.add_argument("--nodes", type=int, default=2)
    args = parser.parse_args(argv)
    if args.helper == "preflight":
        return preflight(args.ranks, bool(args.forbid_wheel_mpich))
    sys.stdout.write(nccl_verdict(args.directory, args.rc, args.nodes) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(_helper_main(sys.argv[1:]))
