"""argparse value types shared by every command: a bad value becomes one clear line."""

from __future__ import annotations

import argparse
import math
from typing import Callable


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


# Operation counts a command line may ask for (iterations, warm-up, graph replays): above this
# even a 1 µs operation repeats for more than 10 s per size and placement, and a large one for
# days; collbench's automatic count stops at 100000 (RunSpec.max_iterations).
MAX_OPERATIONS = 10**7


# Ranks the local launcher may start on this machine (-np): each is a process, and a mistyped
# -np 100000 would fork until the machine stops; on a cluster the ranks come from srun/mpiexec.
MAX_LOCAL_RANKS = 1024


def int_in_range(low: int, high: int, why: str = "") -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` to ``high``; ``why`` explains the upper bound
    in the error line."""

    def parse(text: str) -> int:
        value = positive_int(text) if low > 0 else non_negative_int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        if value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high}, got {value}{f' ({why})' if why else ''}")
        return value

    return parse


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    value = _finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def positive_float(text: str) -> float:
    value = _finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def add_plugin_argument(parser: argparse.ArgumentParser) -> None:
    """``--plugin PATH_OR_MODULE`` (repeatable): user algorithm modules that cli.main loads
    (after ``$COLLBENCH_PLUGINS``) before the command resolves algorithm names
    (collbench/plugins.py)."""
    parser.add_argument("--plugin", action="append", default=[], dest="plugins", metavar="PATH_OR_MODULE",
                        help="load a module that registers algorithms first: a .py file or a module "
                        "name; repeatable. $COLLBENCH_PLUGINS (os.pathsep-separated) is loaded first, by "
                        "every command; collbench run passes both to every rank")


local_ranks = int_in_range(1, MAX_LOCAL_RANKS, "processes on this one machine; a cluster's ranks "
                           "come from srun or mpiexec")
"""argparse type of ``-np``."""
