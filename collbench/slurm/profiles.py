"""Cluster profiles: the one source of truth for cluster settings in generated sweep scripts.

Each :class:`Profile` holds the sbatch header, modules, Python environment, NCCL/libfabric
environment, launcher and default runs of one cluster; :func:`apply` overlays what the user asked
for on the command line (:class:`Options`).
"""

from __future__ import annotations

import dataclasses
import re
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Limit:
    """A queue's limits that a sweep must fit (checked when the script is written).

    Attributes:
        option: ``qos`` or ``partition``: where the job names the queue.
        name: the QOS or partition name.
        max_time: its longest job, as a Slurm time.
        max_nodes: its largest job in nodes (None: not known here).
        source: where the numbers come from (URL), shown with the warning.
    """

    option: str
    name: str
    max_time: str
    max_nodes: int | None
    source: str


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
        time: job time limit; ``None``: enough for every step and check to use its whole timeout
            (:func:`collbench.slurm.checks.worst_case_seconds`, rounded up to 5 minutes).
        step_timeout: seconds one step (node count × run) may take before it is killed.
        check_timeout: seconds the preflight, the NCCL probe and each network-baseline pair may take.
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
        gpu_account_suffix: what a GPU job's account must end with (Perlmutter: ``_g``).
        limits: queue limits (QOS or partition) the generator checks the job against.
        baseline_sizes: the network baseline's sizes (``collbench run`` flags).
        nic_gpus: for the network baseline, the GPU nearest each NIC of a node (one pair of ranks
            per entry, one NIC each); empty: one pair.
        spare_nodes: nodes allocated beyond the largest node count, so that a step that failed on
            a bad node can be retried without it.
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
    time: str | None
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
    check_timeout: int = 180
    gpu_account_suffix: str = ""
    limits: tuple[Limit, ...] = ()
    baseline_sizes: str = "-b 8 -e 1G -f 4"
    nic_gpus: str = ""
    spare_nodes: int = 0


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
        account="<project>_g",
        account_note="your NERSC project + _g: GPU jobs charge the GPU allocation",
        sbatch_site=(("-C gpu", 'GPU nodes; "gpu&hbm80g" for the 80 GB A100s'),
                     ("-q regular", "or debug: <= 30 min, <= 8 nodes (docs.nersc.gov/jobs/policy)")),
        node_counts=(1, 2, 4, 8),
        ranks_per_node=4, cpus_per_task=32, gpus_per_node=4, gpu_bind="none",
        time=None, step_timeout=600,
        launcher="srun", srun_mpi="", srun_args="--cpu-bind=cores --gpu-bind=none",
        gpu_map="3,2,1,0",
        collectives="allreduce allgather reduce_scatter", sizes="-b 8 -e 4G -f 2", args="",
        runs=_GPU_RUNS,
        modules=("module load PrgEnv-gnu cudatoolkit craype-accel-nvidia80 cray-mpich nccl python",),
        python_env=(
            "# mpi4py must be built against cray-mpich, never the pip MPICH wheel (ranks would not",
            "# use Slingshot, or would all be rank 0 of 1). One-time setup on a login node, after the",
            "# module line above (`collbench slurm` checks this environment when it writes a script):",
            "#   python -m venv --system-site-packages $HOME/venvs/collbench",
            "#   source $HOME/venvs/collbench/bin/activate",
            '#   MPICC="cc -shared" pip install --force-reinstall --no-cache-dir --no-binary=mpi4py mpi4py',
            '#   (CUDA-aware MPI for --device cuda runs: MPICC="cc -target-accel=nvidia80 -shared")',
            "#   pip install -e /path/to/collbench cupy-cuda12x   # not .[mpich] (the MPI wheel) nor .[cuda12]",
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
        # "Perlmutter GPU projects must end in _g" (NERSC-reviewed WarpX/ImpactX install docs,
        # https://warpx.readthedocs.io/en/latest/install/hpc/perlmutter.html); reference [S10][S48]
        gpu_account_suffix="_g",
        limits=(
            # "debug" is Perlmutter's default QOS; 30 min and 8 nodes per job (the QOS table of
            # https://docs.nersc.gov/jobs/policy/; the node limit is VERIFY in the reference [S3])
            Limit("qos", "debug", "00:30:00", 8, "https://docs.nersc.gov/jobs/policy/"),
            Limit("qos", "regular", "2-00:00:00", None, "https://docs.nersc.gov/jobs/policy/"),
        ),
        # 4 Slingshot-11 NICs per GPU node, one per GPU: one baseline pair per GPU measures each
        # NIC (https://docs.nersc.gov/systems/perlmutter/architecture/)
        nic_gpus="0 1 2 3",
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
        time=None, step_timeout=600,
        launcher="srun", srun_mpi="", srun_args="--cpu-bind=cores --gpu-bind=none",
        gpu_map="3,2,1,0",
        collectives="allreduce allgather reduce_scatter", sizes="-b 8 -e 4G -f 2", args="",
        runs=_GPU_RUNS,
        modules=(
            "# Module names differ between Delta's RedHat 8 and RedHat 9 software stacks; check with",
            "# `module spider nccl` / `module spider openmpi` / `module spider python` and keep the right line.",
            "module reset",
            "# RH8 stack: NCCL with the AWS OFI plugin, CUDA-aware Open MPI, and a Python >= 3.10 (the OS",
            "# python3 is too old for collbench; `module load gcc python`: Delta's software page).",
            "module load nccl openmpi/4.1.5+cuda python",
            "# RH9 stack (names: VERIFY): module load cudatoolkit libfabric aws-ofi-nccl openmpi python",
        ),
        python_env=(
            "# mpi4py must be built against the module's MPI, never the pip MPICH wheel or anaconda's",
            "# mpich (ranks would not use Slingshot, or would all be rank 0 of 1). One-time setup on a",
            "# login node, after the module lines above (`collbench slurm` checks this environment):",
            "#   python -m venv $HOME/venvs/collbench && source $HOME/venvs/collbench/bin/activate",
            '#   MPICC=$(which mpicc) pip install --no-binary=mpi4py --no-cache-dir mpi4py',
            '#   pip install -e /path/to/collbench "cupy-cuda12x[ctk]>=14"   # not .[mpich] nor .[cuda12]',
            "# CUDA: the RH8 stack's default cuda module is 11.x, and cupy-cuda12x needs CUDA 12 libraries",
            "# plus a driver for CUDA 12 (>= 525.60.13). [ctk] (CuPy >= 14) installs the CUDA 12 libraries",
            "# from PyPI; or load a CUDA 12 module instead (RH9: cudatoolkit). The preflight checks the",
            "# driver and CuPy's runtime on a compute node and stops with one line if they do not fit.",
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
        limits=(
            # Delta has no debug QOS; short jobs go to the -interactive partitions: 1 h, at most 4
            # (x4) or 2 (x8) nodes; the batch partitions allow 48 h
            # (https://docs.ncsa.illinois.edu/systems/delta/en/latest/user_guide/running_jobs.html)
            Limit("partition", "gpuA100x4-interactive", "01:00:00", 4,
                  "https://docs.ncsa.illinois.edu/systems/delta/en/latest/user_guide/running_jobs.html"),
            Limit("partition", "gpuA100x8-interactive", "01:00:00", 2,
                  "https://docs.ncsa.illinois.edu/systems/delta/en/latest/user_guide/running_jobs.html"),
            Limit("partition", "gpuA100x4", "2-00:00:00", None,
                  "https://docs.ncsa.illinois.edu/systems/delta/en/latest/user_guide/running_jobs.html"),
        ),
        # one Slingshot-11 NIC per gpuA100x4 node, PHB-attached to GPU3 (the others reach it at
        # SYS distance): one baseline pair, from GPU3
        # (https://docs.ncsa.illinois.edu/systems/delta/en/latest/user_guide/architecture.html)
        nic_gpus="3",
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
        time=None, step_timeout=600, baseline_sizes="-b 8 -e 64M -f 4",
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
        time=None, step_timeout=60, check_timeout=60, baseline_sizes="-b 8 -e 64K -f 8",
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
        env=(("MPIR_CVAR_CH4_NETMOD", "ofi", "docs/slurm.md: UCX cards vs Slurm PMI2"),),
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
    spare_nodes: int | None = None


def site_value(profile: Profile, prefixes: tuple[str, ...]) -> str | None:
    """The value of an active ``#SBATCH`` site option (``-q regular`` → ``regular``), or None."""
    for option, _ in profile.sbatch_site:
        if option.startswith("#"):
            continue
        for prefix in prefixes:
            if option.startswith(prefix):
                return option[len(prefix):].lstrip("= ").strip('"') or None
    return None


def apply(profile: Profile, options: Options) -> Profile:
    """The profile with the user's choices applied (the sbatch header follows them)."""
    changes: dict[str, object] = {}
    for name in ("account", "time", "step_timeout", "ranks_per_node", "cpus_per_task", "gpus_per_node",
                 "launcher", "srun_mpi", "collectives", "sizes", "args", "runs", "python", "results",
                 "job_name", "spare_nodes"):
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
