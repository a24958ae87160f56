"""Command line: ``collbench run | report | list | verify | import | slurm | compare | plot |
calibrate | model``. Errors end as one line, never a traceback.

Commands live in a registry: each is a module path with an ``add_parser(sub)`` function that
builds its argparse subparser and a ``main(args, argv) -> int`` that runs it. Only the command
being run is imported, so ``collbench --help`` (and ``collbench run``) never import the model,
Slurm or matplotlib.

User algorithm modules: main loads ``$COLLBENCH_PLUGINS`` for every command, and ``--plugin
PATH_OR_MODULE`` where the command has it (``run``, ``list``, ``verify``, ``model predict|check``;
cli/argtypes.py), after parsing and before the command runs (collbench/plugins.py), so a plugin's
error is one line too.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from .. import __version__
from ..errors import UsageError

EXIT_USAGE = 2


@dataclass(frozen=True)
class Command:
    """One subcommand: where it lives and its one-line help for ``collbench --help``."""

    module: str
    help: str
    add_parser: str = "add_parser"
    main: str = "main"

    def load(self) -> tuple[Callable[..., argparse.ArgumentParser], Callable[..., int]]:
        module = importlib.import_module(self.module)
        return getattr(module, self.add_parser), getattr(module, self.main)


COMMANDS: dict[str, Command] = {
    "run": Command("collbench.cli.run", "measure collectives (nccl-tests flags)"),
    "report": Command("collbench.cli.inspect", "re-print tables from results files",
                      "add_report_parser", "report_main"),
    "list": Command("collbench.cli.inspect", "what can run here: collectives × algorithms × backends",
                    "add_list_parser", "list_main"),
    "verify": Command("collbench.cli.inspect", "prove every algorithm correct symbolically (no MPI needed)",
                      "add_verify_parser", "verify_main"),
    "import": Command("collbench.importers.cli", "nccl-tests or OSU logs as a collbench results file"),
    "slurm": Command("collbench.slurm.cli", "write an sbatch script for a node-count sweep",
                     "add_parser", "command"),
    "compare": Command("collbench.analysis.cli", "B relative to A, row by row, with significance",
                       "add_compare_parser", "compare_main"),
    "plot": Command("collbench.analysis.cli", "figures: busbw, latency, busbw vs nodes, measured vs model",
                    "add_plot_parser", "plot_main"),
    "calibrate": Command("collbench.analysis.cli", "measure this machine's α, β, γ into a profile",
                         "add_calibrate_parser", "calibrate_main"),
    "model": Command("collbench.analysis.cli", "the α-β-γ cost model: predict, check",
                     "add_model_parser", "model_main"),
    "trace": Command("collbench.trace.cli", "timelines from run --trace: per-step table, measured vs model"),
    "workload": Command("collbench.workload.cli", "training workloads: a model's step as collectives (show, predict, run, check)"),
}


# the command line being parsed, for the hints of _Parser.error (set by main)
_ARGV: list[str] = []


class _Parser(argparse.ArgumentParser):
    """argparse that reports a mistake as one line (plus a hint) instead of the usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        prog = self.prog
        if message.startswith("unrecognized arguments") and prog == "collbench":
            chosen = _chosen_command(_ARGV)  # the root parser reports what a command left over
            prog = f"collbench {chosen}" if chosen else prog
        raise UsageError(f"{message}{_dash_value_hint(message)} (see `{prog} --help`)")


def _dash_value_hint(message: str) -> str:
    """argparse reads ``-e -1K`` or ``--fail-above -5%`` as two options; say how to give such a
    value, so that the value's own check can answer."""
    if not message.endswith("expected one argument") or not message.startswith("argument "):
        return ""
    flags = message[len("argument "):].split(":", 1)[0].split("/")
    for i, word in enumerate(_ARGV[:-1]):
        if word in flags and _ARGV[i + 1].startswith("-"):
            return f" (for a value that starts with '-', write {word}={_ARGV[i + 1]})"
    return ""


def _chosen_command(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line (the first word that is not an option)."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def build_parser(argv: Sequence[str] = ()) -> tuple[argparse.ArgumentParser, Callable[..., int] | None]:
    """The parser, with the full subparser only for the command in ``argv`` (the others are
    listed by name and help), and that command's ``main``."""
    parser = _Parser(prog="collbench", description="Benchmark and compare collective-communication "
                     "algorithms. `collbench COMMAND --help` explains each command.")
    parser.add_argument("--version", action="version", version=f"collbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    chosen = _chosen_command(argv)
    main: Callable[..., int] | None = None
    for name, command in COMMANDS.items():
        if name == chosen:
            add_parser, main = command.load()
            add_parser(sub)
        else:
            sub.add_parser(name, help=command.help)
    return parser, main


EXIT_INTERRUPTED = 130
EXIT_INTERNAL = 70         # EX_SOFTWARE: a collbench bug, not the user's mistake
TRACEBACK_VARIABLE = "COLLBENCH_TRACEBACK"


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Exit status: the command's (0 ok, 1 compare regression or a failed
    check), 2 for every mistake in the input (one ``collbench: error:`` line, nothing else), 130
    when interrupted, 70 for an error collbench did not expect (one line too; set
    ``$COLLBENCH_TRACEBACK=1`` for the traceback)."""
    global _ARGV
    from ..run.launcher import env_rank

    argv = list(sys.argv[1:] if argv is None else argv)
    _ARGV = argv
    rank = env_rank()
    quiet = rank != 0  # inside a job only rank 0 explains mistakes
    try:
        parser, command_main = build_parser(argv)
        args = parser.parse_args(argv)
        if command_main is None:
            parser.print_help()
            return EXIT_USAGE
        from ..plugins import load_all

        # $COLLBENCH_PLUGINS for every command, then --plugin where the command has it
        load_all(getattr(args, "plugins", []))
        return command_main(args, argv)
    except UsageError as exc:
        if not quiet:
            sys.stderr.write(f"collbench: error: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        # under collbench's own launcher the launcher says it once, for the whole job
        if not quiet and os.environ.get("COLLBENCH_LAUNCHED") != "1":
            sys.stderr.write("collbench: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _quiet_stdout()
        return 0
    except OSError as exc:  # a path the command met (its output directory, a file it reads)
        if os.environ.get(TRACEBACK_VARIABLE) == "1":
            raise
        if not quiet:
            sys.stderr.write(f"collbench: error: {_os_error(exc)}\n")
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - the last line of defence: never a traceback
        if os.environ.get(TRACEBACK_VARIABLE) == "1":
            raise
        sys.stderr.write(f"collbench: internal error{f' (rank {rank})' if rank else ''}: "
                         f"{_unexpected(exc)}; please report it with the command line "
                         f"(${TRACEBACK_VARIABLE}=1 shows the traceback)\n")
        return EXIT_INTERNAL


def _unexpected(exc: BaseException) -> str:
    """An unexpected exception as one line: its type, first message line and where it was
    raised (file:line, which tells a plugin's bug from collbench's)."""
    import traceback

    text = str(exc).strip()
    line = f"{type(exc).__name__}{': ' + text.splitlines()[0] if text else ''}"
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        line += f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}"
    return line


def _os_error(exc: OSError) -> str:
    """An OSError as one line: the path and the reason."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename is not None:
        target = f"{exc.filename} -> {exc.filename2}" if exc.filename2 is not None else exc.filename
        return f"{target}: {reason}"
    return reason


def _quiet_stdout() -> None:
    """After a closed pipe (``collbench report ... | head``), point stdout at /dev/null so the
    interpreter's final flush does not print a second error."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def entry() -> None:
    sys.exit(main())
