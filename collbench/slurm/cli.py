"""``collbench slurm``: write a ready-to-submit node-count sweep script for a Slurm cluster."""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from pathlib import Path
from typing import Sequence

from ..errors import UsageError
from .checks import UNLIMITED_WORDS, account_warning, fit_time, mpi4py_warning
from .profiles import PROFILES, Options, Profile, apply
from .render import TEMPLATE_CLUSTERS, render, template_text, update_templates
from .validate import check_flag_text, check_runs, check_values, python_warning


def _node_counts(text: str) -> tuple[int, ...]:
    try:
        counts = sorted({int(part) for part in re.split(r"[,\s]+", text.strip()) if part})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected node counts like 1,2,4,8, got {text!r}") from None
    if not counts or counts[0] < 1:
        raise argparse.ArgumentTypeError(f"node counts must be positive, got {text!r}")
    return tuple(counts)


def _time(text: str) -> str:
    if text.lower() in UNLIMITED_WORDS:
        return text
    if not re.fullmatch(r"(\d+-)?\d{1,2}(:\d{2}){0,2}", text):
        raise argparse.ArgumentTypeError(f"expected a Slurm time like 00:30:00 or 1-00:00:00 (0 or "
                                         f"UNLIMITED for none), got {text!r}")
    return text


def _run_spec(text: str) -> tuple[str, str]:
    name, sep, args = text.partition(":")
    if not sep or not re.fullmatch(r"[A-Za-z0-9_.+-]+", name.strip()) or not args.strip():
        raise argparse.ArgumentTypeError(f"expected NAME:FLAGS, e.g. 'nccl-ring:--backend nccl --nccl-algo Ring', "
                                         f"got {text!r}")
    if any(c in args for c in "\"'`$\\\n"):
        raise argparse.ArgumentTypeError(f"run {name!r}: flags are split on blanks; quotes, $ and \\ are not allowed")
    if "#" in args:
        raise argparse.ArgumentTypeError(f"run {name!r}: # would start a comment in the script; flags never "
                                         "contain it")
    return name.strip(), " ".join(args.split())


def _checked(profile: Profile, args: argparse.Namespace, run_warnings: Sequence[str] = ()) -> Profile:
    """The profile with its time limit settled, after the login-node checks: each finding is one
    warning line on stderr; none stops the script from being written."""
    time, warnings = fit_time(profile, explicit=args.time is not None)
    profile = dataclasses.replace(profile, time=time)
    found = [account_warning(profile), *warnings, *run_warnings, python_warning(args.python),
             mpi4py_warning(profile, args.python, args.venv)]
    for warning in filter(None, found):
        sys.stderr.write(f"collbench slurm: warning: {warning}\n")
    return profile


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
    parser.add_argument("--spare-nodes", type=int, default=None, metavar="N",
                        help="allocate N nodes more than the largest count, so that a step that failed "
                        "on a bad node can be retried without it at every node count")
    parser.add_argument("-A", "--account", default=None, help="account to charge (-A)")
    parser.add_argument("-q", "--qos", default=None, help="QOS (-q)")
    parser.add_argument("-p", "--partition", default=None, help="partition")
    parser.add_argument("-C", "--constraint", default=None, help="node constraint (-C)")
    parser.add_argument("-t", "--time", type=_time, default=None,
                        help="job time limit, e.g. 00:30:00 (default: every step at its timeout, "
                        "within the queue's maximum)")
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
        check_values(args, profile)
        for name in ("ranks_per_node", "cpus_per_task", "gpus_per_node", "step_timeout", "spare_nodes"):
            value = getattr(args, name)
            may_be_zero = name in ("gpus_per_node", "spare_nodes")
            if value is not None and (value < 0 or (value == 0 and not may_be_zero)):
                raise UsageError(f"--{name.replace('_', '-')} must be {'0 or more' if may_be_zero else 'positive'}, "
                                 f"got {value}")
        sizes = None
        if any(v is not None for v in (args.minbytes, args.maxbytes, args.stepfactor)):
            from ..sizes import parse_size

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
        if args.collectives is not None:
            from ..algorithms import Collective

            names = [n for n in re.split(r"[,\s]+", args.collectives) if n]
            if not names:
                raise UsageError(f"--collectives {args.collectives!r}: name at least one, e.g. allreduce,allgather")
            for name in names:
                try:
                    Collective.parse(name)
                except ValueError as exc:
                    raise UsageError(str(exc)) from None
            collectives = " ".join(names)
        if args.args:
            check_flag_text("--args", args.args)
        options = Options(
            nodes=args.nodes, account=args.account, qos=args.qos, partition=args.partition,
            constraint=args.constraint, time=args.time, step_timeout=args.step_timeout,
            ranks_per_node=args.ranks_per_node, cpus_per_task=args.cpus_per_task,
            gpus_per_node=args.gpus_per_node, launcher=args.launcher, srun_mpi=args.srun_mpi,
            collectives=collectives, sizes=sizes, args=args.args,
            runs=tuple(args.runs) if args.runs else None, python=args.python, venv=args.venv,
            results=args.results, job_name=args.job_name, spare_nodes=args.spare_nodes)
        import shlex

        if args.output is not None:   # before the checks below (mpi4py's takes seconds)
            from ..results.files import check_output_path

            check_output_path(args.output, "-o", "script")
        applied = apply(profile, options)
        run_warnings = check_runs(applied)     # every run parsed as `collbench run` will, before the queue
        checked = _checked(applied, args, run_warnings)
        text = render(checked, "collbench " + " ".join(shlex.quote(a) for a in argv))
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
