"""Rendering a profile into a self-contained sbatch script.

A generated script is the profile's settings followed by the sweep library ``sweep-lib.sh``
(package data of :mod:`collbench.slurm`, read through importlib.resources so a wheel install can
generate scripts) inlined verbatim. The committed templates ``scripts/slurm/{perlmutter,delta,
generic}.sbatch`` are this module's output (``collbench slurm --update-templates`` rewrites them
in a checkout; a test checks they are current).
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from ..errors import UsageError
from .checks import automatic_time
from .profiles import PROFILES, Profile

REPO = Path(__file__).resolve().parents[2]
TEMPLATES_DIR = REPO / "scripts" / "slurm"   # only meaningful in a source checkout
LIB_NAME = "sweep-lib.sh"
TEMPLATE_CLUSTERS = ("perlmutter", "delta", "generic")
_COLUMN = 44  # where header comments start


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


_MODULE_COMMAND = re.compile(r"^module\s+(load|add|swap|switch|use)\s")


def guarded_module_line(line: str) -> str:
    """A ``module load …`` line that stops the job with one clear line when it fails (Lmod's
    ``module load`` exits non-zero for a module it cannot find), instead of running the whole
    sweep without NCCL's network plugin or with the wrong MPI. Other lines pass unchanged."""
    if not _MODULE_COMMAND.match(line):
        return line
    code, _, comment = line.partition("  #")
    code = code.rstrip()
    what = code.replace("\\", "\\\\").replace('"', '\\"').replace("`", "\\`").replace("$", "\\$")
    guard = (f'{code} || {{ echo "collbench: \'{what}\' failed: check the names with module spider and '
             f'edit the module block of this script" >&2; exit 1; }}')
    return f"#{comment}\n{guard}" if comment.strip() else guard


def lib_text() -> str:
    """The sweep library that every script carries (package data, so installs can render too)."""
    try:
        return resources.files(__package__).joinpath(LIB_NAME).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read the sweep library {LIB_NAME} of collbench.slurm: {exc}") from None


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
        "# from the cluster profiles in collbench/slurm/profiles.py and collbench/slurm/sweep-lib.sh (inlined at the",
        "# end). Edit this copy freely; to change the defaults for everyone, change those and regenerate.",
        bar,
    ]
    if p.account is not None:
        lines.append(_sbatch(f"-A {p.account}", p.account_note))
    elif p.account_note:
        lines.append(_sbatch("##SBATCH -A <account>", p.account_note))
    for option, comment in p.sbatch_site:
        lines.append(_sbatch(option, comment))
    if p.spare_nodes:
        lines.append(_sbatch(f"-N {max(p.node_counts) + p.spare_nodes}",
                             f"the largest node count + {p.spare_nodes} spare for retries"))
    else:
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
    lines.append(_sbatch(f"-t {p.time}") if p.time else
                 _sbatch(f"-t {automatic_time(p)}", "every step and check at its timeout"))
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
        _assign("CB_CHECK_TIMEOUT", str(p.check_timeout), "seconds for the preflight, probe, each baseline pair"),
        _assign("CB_RETRY", "failed", "retry a failed step once elsewhere (all: timeouts too; none)"),
        _assign("CB_BASELINE", "auto", "network baseline (2 nodes, point-to-point); 0: off"),
        _assign("CB_BASELINE_SIZES", p.baseline_sizes, "baseline sizes"),
        _assign("CB_NIC_GPUS", p.nic_gpus, "baseline: the GPU nearest each NIC, one pair each"),
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
                  *(guarded_module_line(line) for line in p.modules)]
    if p.python_env:
        lines += ["", "# ---- Python environment ----", *p.python_env]
    if p.env:
        lines += ["", "# ---- MPI / NCCL / libfabric environment (recorded in every results file) ----"]
        for name, value, comment in p.env:
            safe = re.fullmatch(r"[A-Za-z0-9_./:,=+-]*|\$\{?[A-Za-z0-9_:-]+\}?", value)
            text = f"export {name}={value if safe else _shell_word(value)}"
            lines.append(_commented(text, comment))
    lines += ["", "# " + "-" * 98,
              f"# The sweep: collbench/slurm/{LIB_NAME}, inlined. Nothing below needs editing.",
              "# " + "-" * 98, lib_text().rstrip("\n"), "", 'cb_main "$@"', ""]
    return "\n".join(lines)


def template_command(cluster: str) -> str:
    return f"collbench slurm --cluster {cluster} --template"


def template_path(cluster: str) -> Path:
    return TEMPLATES_DIR / f"{cluster}.sbatch"


def template_text(cluster: str) -> str:
    """What ``scripts/slurm/<cluster>.sbatch`` must contain."""
    return render(PROFILES[cluster], template_command(cluster))


def update_templates() -> list[Path]:
    """Rewrite the committed templates of a source checkout; returns the files that changed."""
    if not TEMPLATES_DIR.is_dir():
        raise UsageError(f"--update-templates rewrites {TEMPLATES_DIR} of a collbench source checkout; "
                         "this collbench is installed without one")
    written = []
    for cluster in TEMPLATE_CLUSTERS:
        path = template_path(cluster)
        text = template_text(cluster)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            written.append(path)
        path.chmod(0o755)
    return written
