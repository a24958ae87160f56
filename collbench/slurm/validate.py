"""What ``collbench slurm`` refuses when it writes a script: input that can only fail on the
cluster, after the queue wait. Each mistake is one line (UsageError), before anything is written.

- Every run the script will execute is parsed with ``collbench run``'s own parser and checks
  (:func:`collbench.cli.run.add_parser`, :func:`~collbench.cli.run.build_spec`): the command
  line is the one the sweep builds (``CB_COLLECTIVES CB_SIZES CB_ARGS [--gpu-map CB_GPU_MAP]
  RUN-FLAGS``, collbench/slurm/sweep-lib.sh ``cb_step``), so a bad size, flag, collective,
  algorithm or option is found here. The algorithms are then checked against the registry at
  each node count of the sweep (``precondition`` with the run's -O options, the backend's
  declared capabilities), and the job's shape against what the run needs (GPUs, the GPU map,
  the root rank).
- Everything else that lands in the script (job name, account, queue, python, venv, results
  directory) must be a value the shell and sbatch read back as given.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from ..errors import UsageError
from .profiles import Profile

if TYPE_CHECKING:
    from ..run.spec import RunSpec

# A CB_RUNS line hands its flags to the GPU map when they use the GPU (sweep-lib.sh cb_step).
_USES_GPU_MAP = re.compile(r" --(backend[ =](nccl|cuda)|device[ =]cuda) ")
_ENV_SETTING = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_HEADER_VALUE = re.compile(r"[A-Za-z0-9_.+,-]+")      # -A, -q, -p: one word sbatch reads as given
_JOB_NAME = re.compile(r"[A-Za-z0-9_.+-]+")
_SRUN_MPI = re.compile(r"[A-Za-z0-9_]*")


# ------------------------------------------------------------------ values written into the script

def check_job_name(name: str) -> None:
    """``-J``: one word of letters, digits and ``_ . + -`` (it names the job's output file
    ``%x-%j.out`` too, so no blank, no ``/``)."""
    if not name or not _JOB_NAME.fullmatch(name) or name.startswith("-"):
        raise UsageError(f"-J/--job-name {name!r}: use letters, digits and _ . + - (one word; it also "
                         "names the job's output file %x-%j.out)")


def check_header_value(flag: str, value: str, pattern: re.Pattern[str] = _HEADER_VALUE,
                       allowed: str = "letters, digits and _ . + , -") -> None:
    """An ``#SBATCH`` option value: one word sbatch reads as given."""
    if not value or not pattern.fullmatch(value) or value.startswith("-"):
        raise UsageError(f"{flag} {value!r}: expected one word of {allowed}")


def check_constraint(value: str) -> None:
    """``-C``: Slurm's constraint syntax (``gpu``, ``gpu&hbm80g``, ``[a|b]``, ``knl*2``), written
    inside double quotes on an ``#SBATCH`` line."""
    if not value or not re.fullmatch(r"[A-Za-z0-9_.,&|*!\[\]():-]+", value) or value.startswith("-"):
        raise UsageError(f"-C/--constraint {value!r}: expected Slurm constraint syntax such as gpu or "
                         "gpu&hbm80g (no blanks or quotes)")


def check_srun_mpi(value: str) -> None:
    if not _SRUN_MPI.fullmatch(value):
        raise UsageError(f"--srun-mpi {value!r}: expected a PMI type such as pmi2, pmix or cray_shasta "
                         "(`srun --mpi=list` names them); empty for the site default")


def _shell_problem(value: str, tilde_expands: bool) -> str | None:
    """Why ``value`` would not reach the job as written, or None. ``$NAME`` and ``${NAME}``
    references are kept (they expand in the job), command substitution is not."""
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return "a control character (newline, tab) is not allowed"
    if "$(" in value or "`" in value:
        return "command substitution ($(...) or backticks) is not allowed"
    if any(c in value for c in "\"'\\"):
        return "quotes and \\ are not allowed"
    if value.startswith("~") and not tilde_expands:
        return "~ is not expanded inside the script's quotes: write $HOME instead"
    return None


def check_python(value: str) -> None:
    """``--python``: the job runs ``"$CB_PYTHON" -m collbench``."""
    if not value.strip():
        raise UsageError("--python '': give the Python that runs collbench in the job (a path or a name "
                         "on the job's PATH, e.g. python3)")
    problem = _shell_problem(value, tilde_expands=False) or (
        "surrounding blanks are not allowed" if value != value.strip() else None)
    if problem:
        raise UsageError(f"--python {value!r}: {problem}")


def check_results(value: str) -> None:
    """``--results``: the results root, ``CB_RESULTS`` (the job writes ``$CB_RESULTS/<cluster>/<jobid>``)."""
    if not value.strip():
        raise UsageError("--results '': give a directory (default ${SLURM_SUBMIT_DIR:-$PWD}/results)")
    problem = _shell_problem(value, tilde_expands=False) or (
        "surrounding blanks are not allowed" if value != value.strip() else None)
    if problem:
        raise UsageError(f"--results {value!r}: {problem}")


def check_venv(value: str, profile: Profile) -> None:
    """``--venv``: written unquoted as ``CB_VENV=${CB_VENV:-VALUE}``, then sourced."""
    if not any(re.match(r"CB_VENV=\$\{CB_VENV:-", line) for line in profile.python_env):
        raise UsageError(f"--venv: the {profile.name} profile activates no virtual environment "
                         "(give --python instead)")
    if not value:
        from .checks import _venv_default

        if _venv_default(profile) is not None:    # the script sources $CB_VENV/bin/activate unconditionally
            raise UsageError(f"--venv '': the {profile.name} script always activates a venv; give its "
                             "directory (default $HOME/venvs/collbench)")
        return
    problem = _shell_problem(value, tilde_expands=True)
    if problem is None and (any(c.isspace() for c in value) or re.search(r"[{}]", re.sub(
            r"\$\{[A-Za-z_][A-Za-z0-9_]*\}", "", value))):
        problem = "blanks and braces are not allowed (except ${NAME})"
    if problem:
        raise UsageError(f"--venv {value!r}: {problem}")


def check_flag_text(flag: str, text: str) -> None:
    """``--args`` and the flags of ``--run``: split on blanks in the job (CB_ARGS unquoted)."""
    if any(c in text for c in "\"'`$\\\n"):
        raise UsageError(f"{flag}: flags are split on blanks; quotes, $ and \\ are not allowed")
    if "#" in text:
        raise UsageError(f"{flag}: # would start a comment in the script; flags never contain it")
    if flag == "--args" and re.search(r"[*?\[]", text):
        raise UsageError(f"{flag}: * ? and [ would be expanded by the shell in the job; not allowed")


def check_values(args: argparse.Namespace, profile: Profile) -> None:
    """Every value of ``collbench slurm``'s own flags that is written into the script."""
    if args.job_name is not None:
        check_job_name(args.job_name)
    if args.account is not None:
        check_header_value("-A/--account", args.account, re.compile(r"[A-Za-z0-9_.+-]+"),
                           "letters, digits and _ . + -")
    if args.qos is not None:
        check_header_value("-q/--qos", args.qos)
    if args.partition is not None:
        check_header_value("-p/--partition", args.partition)
    if args.constraint is not None:
        check_constraint(args.constraint)
    if args.srun_mpi is not None:
        check_srun_mpi(args.srun_mpi)
    if args.python is not None:
        check_python(args.python)
    if args.venv is not None:
        check_venv(args.venv, profile)
    if args.results is not None:
        check_results(args.results)


def python_warning(python: str | None) -> str | None:
    """A ``--python`` path that does not exist here (the job's nodes usually share it)."""
    if not python or "$" in python or "/" not in python or os.path.isfile(python):
        return None
    return (f"--python {python} does not exist here; the job stops at once unless it exists on the "
            "compute nodes (relative paths start in the directory you submit from)")


# ------------------------------------------------------------------ the runs the script executes

@dataclass(frozen=True)
class RunCommand:
    """One run of the sweep: its name, the ``VAR=value`` settings and ``collbench run``'s words."""

    name: str
    env: tuple[str, ...]
    words: tuple[str, ...]          # after ``collbench run``, without the sweep's --out
    uses_gpu_map: bool

    def command(self) -> str:
        return " ".join(("collbench run", *self.words))


def run_commands(profile: Profile) -> list[RunCommand]:
    """The ``collbench run`` command line of every active run, as sweep-lib.sh builds it."""
    commands = []
    for name, flags in profile.runs:
        if name.startswith("#"):
            continue
        words = flags.split()
        env: list[str] = []
        while words and _ENV_SETTING.match(words[0]):
            env.append(words.pop(0))
        uses_map = bool(profile.gpu_map) and bool(_USES_GPU_MAP.search(f" {' '.join(words)} "))
        gpu_map = ["--gpu-map", profile.gpu_map] if uses_map else []
        commands.append(RunCommand(name, tuple(env), (*profile.collectives.split(), *profile.sizes.split(),
                                                      *profile.args.split(), *gpu_map, *words), uses_map))
    return commands


class _RunParser(argparse.ArgumentParser):
    """``collbench run``'s parser, with every mistake (and -h) as a UsageError."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        raise UsageError("-h/--help prints help; it measures nothing")


def _parse(words: Sequence[str]) -> argparse.Namespace:
    from ..cli.run import add_parser

    root = _RunParser(prog="collbench", add_help=False)
    sub = root.add_subparsers(dest="command", parser_class=_RunParser)
    run = add_parser(sub)
    run.set_defaults(nprocs=None)      # to see whether a run sets -np
    with contextlib.redirect_stdout(io.StringIO()):   # -h prints before it exits
        return root.parse_args(["run", *words])


def check_runs(profile: Profile) -> list[str]:
    """Refuse (UsageError, one line naming the run) a run that would fail in the job at every
    node count; returns warnings for runs that fail at only some node counts."""
    commands = run_commands(profile)
    if not commands:
        raise UsageError("the script would have no run: give --run NAME:FLAGS")
    seen: set[str] = set()
    for run in commands:
        if run.name in seen:
            raise UsageError(f"--run {run.name}: the name appears twice; each run needs its own (results "
                             f"file N<k>-{run.name}.jsonl)")
        seen.add(run.name)
    failures: list[tuple[RunCommand, str]] = []
    warnings: list[str] = []
    for run in commands:
        try:
            warnings += _check_run(run, profile)
        except UsageError as exc:
            failures.append((run, str(exc)))
    if failures:
        run, message = failures[0]
        who = ("every run" if len(failures) == len(commands) > 1
               and all(m == message for _, m in failures) else f"run {run.name!r}")
        raise UsageError(f"{who} would fail in the job: {message} [{run.command()}]")
    return warnings


def _check_run(run: RunCommand, profile: Profile) -> list[str]:
    from ..cli.run import build_spec
    from ..gpu.device import parse_gpu_map

    args = _parse(run.words)
    if args.out is not None:
        raise UsageError(f"--out {args.out}: the sweep names each run's results file "
                         f"($CB_RESULTS/{profile.name}/<jobid>/N<k>-{run.name}.jsonl); remove --out")
    if args.nprocs is not None:
        raise UsageError(f"-np {args.nprocs}: in the job the ranks are the nodes x --ranks-per-node "
                         f"({profile.ranks_per_node}); remove -np")
    if args.trace is not None:
        raise UsageError(f"--trace {args.trace}: every node count (and retry) of the sweep would write "
                         "this one file; trace with `collbench run` in one allocation instead")
    if args.plugins:
        from ..plugins import load_all

        load_all(args.plugins, environ=False)
    spec = build_spec(args)
    gpu_map = parse_gpu_map(args.gpu_map)
    _check_shape(spec, gpu_map, run, profile)
    from ..backends.nccl_env import selection_warnings

    nccl_warnings = [f"run {run.name!r}: {w}" for w in selection_warnings(args.nccl_algo, args.nccl_proto)]
    if "auto" in spec.algorithms and (spec.auto_profile or spec.auto_from):
        from ..analysis.select import check_auto

        check_auto(spec.auto_profile, spec.auto_from)
    from ..compress import names as compressed

    if any(compressed.is_compressed(a) or a == compressed.ALL_COMPRESSED for a in spec.algorithms):
        from ..compress.options import check_sweep

        check_sweep(compressed.expand(list(spec.algorithms)), dict(spec.algorithm_options), spec.sizes,
                    spec.dtypes)
    return nccl_warnings + _check_algorithms(spec, run, profile)


def _check_shape(spec: RunSpec, gpu_map: tuple[int, ...] | None, run: RunCommand, profile: Profile) -> None:
    """The job's shape against what the run needs: GPUs, one device per local rank, the root."""
    rpn, gpus = profile.ranks_per_node, profile.gpus_per_node
    uses_gpu = spec.backend in ("nccl", "cuda") or spec.device == "cuda"
    what = f"--backend {spec.backend}" if spec.backend != "mpi" else "--device cuda"
    if uses_gpu and not gpus:
        raise UsageError(f"{what} needs GPUs, and the job asks for none (--gpus-per-node 0): give "
                         "--gpus-per-node N, or only CPU runs (--run NAME:--backend mpi)")
    if uses_gpu and gpu_map is not None:
        if len(gpu_map) < rpn:
            raise UsageError(f"--gpu-map {','.join(map(str, gpu_map))} names {len(gpu_map)} device(s) for "
                             f"{rpn} ranks per node: give one per rank (or change --ranks-per-node)")
        if max(gpu_map[:rpn]) >= gpus:
            raise UsageError(f"--gpu-map {','.join(map(str, gpu_map))} uses device {max(gpu_map[:rpn])}, "
                             f"and a node of the job has {gpus} GPU(s) (--gpus-per-node)")
    if spec.backend == "nccl" and gpus:
        devices = list(gpu_map[:rpn]) if gpu_map is not None else [r % gpus for r in range(rpn)]
        if len(set(devices)) < len(devices):
            raise UsageError(f"NCCL needs one GPU per rank, and {rpn} ranks per node would share "
                             f"{len(set(devices))} GPU(s): lower --ranks-per-node or raise --gpus-per-node")
    smallest = min(profile.node_counts) * rpn
    if spec.root >= smallest:
        largest = max(profile.node_counts) * rpn
        if spec.root >= largest:
            raise UsageError(f"-r/--root {spec.root} is not a rank of any step (at most {largest} ranks)")


def _check_algorithms(spec: RunSpec, run: RunCommand, profile: Profile) -> list[str]:
    """Each named algorithm against the registry at every node count of the sweep, as the job's
    plan would see it (collbench.run.harness.make_plan): one it implements nowhere is skipped
    there, but a run left with nothing to run fails; a precondition (the -O options included)
    that fails at a node count fails that step."""
    from ..algorithms import Layout, Problem
    from ..backends.capabilities import declared
    from ..compress import names as compressed
    from ..execute.programs import algorithm_unsupported_reason
    from ..run.harness import skew_of

    caps = declared(spec.backend)
    static = getattr(importlib.import_module(f"collbench.backends.{spec.backend}"), "static_reason", None)
    options = dict(spec.algorithm_options)
    rpn = profile.ranks_per_node
    counts = sorted(profile.node_counts)
    open_ended = any(a in ("all", "auto", compressed.ALL_COMPRESSED) for a in spec.algorithms)
    runnable = open_ended
    partial: dict[int, str] = {}          # node count -> the first reason a step there fails
    for collective in spec.collectives:
        ops = spec.ops if collective.reduces and spec.strict_ops else (None,)
        for name in spec.algorithms:
            if name in ("all", "auto", compressed.ALL_COMPRESSED) or not caps.implements(name, collective):
                continue
            runnable = True
            schedule = name != "native" and name not in caps.own_algorithms.get(collective, ()) \
                and not compressed.is_compressed(name)
            failing: dict[int, str] = {}
            for k in counts:
                n = k * rpn
                layout = Layout.blocked(n, rpn)
                reason = static(collective, name, n, layout) if static is not None else None
                if reason is None and schedule and spec.root < n:
                    problem = Problem(collective, n, 0, spec.root, layout, skew_of(spec, collective))
                    for op in ops:
                        reason = algorithm_unsupported_reason(name, problem, op, options)
                        if reason:
                            break
                if reason:
                    failing[k] = reason if reason.startswith(name) else f"{name} {collective.value}: {reason}"
            if len(failing) == len(counts):
                first = failing[counts[0]]
                raise UsageError(first if len(counts) == 1 else f"{first} (at N={counts[0]}, and at every "
                                 "other node count)")
            for k, reason in failing.items():
                partial.setdefault(k, reason)
    if not runnable:
        names = ", ".join(spec.algorithms)
        raise UsageError(f"--algo {names} implements none of the run's collectives "
                         f"({', '.join(c.value for c in spec.collectives)}) on --backend {spec.backend}: "
                         "nothing to run (see `collbench list`)")
    for k in counts:
        if spec.root >= k * rpn:
            partial.setdefault(k, f"-r/--root {spec.root} is not a rank of its {k * rpn} ranks")
    if not partial:
        return []
    lowest = min(partial)
    others = ", ".join(f"N={k}" for k in sorted(partial) if k != lowest)
    return [f"run {run.name!r} will fail at N={lowest}: {partial[lowest]}"
            + (f"; and at {others}" if others else "") + " (the other node counts run)"]
