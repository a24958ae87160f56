"""The command registry imports only the command being run."""

from __future__ import annotations

import subprocess
import sys

import pytest

from collbench.cli import COMMANDS

HEAVY = ("collbench.analysis.model", "collbench.slurm", "matplotlib", "collbench.run.harness",
         "collbench.importers")


def _modules_after(argv: list[str]) -> set[str]:
    code = ("import sys, contextlib, io\nfrom collbench.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n        main(%r)\n    except SystemExit:\n        pass\n"
            "print('\\n'.join(sys.modules))" % (argv,))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_help_imports_no_command():
    loaded = _modules_after(["--help"])
    assert not [m for m in loaded for heavy in HEAVY if m == heavy or m.startswith(heavy + ".")]


def test_a_command_imports_its_own_module_only():
    loaded = _modules_after(["report", "--help"])
    assert "collbench.cli.inspect" in loaded
    assert not [m for m in loaded if m.startswith(("collbench.slurm", "collbench.analysis"))]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_registered_command_has_a_parser_and_a_main(name):
    add_parser, main = COMMANDS[name].load()
    assert callable(add_parser) and callable(main)
