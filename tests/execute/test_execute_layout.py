"""How collbench.execute is put together: no private names cross a module boundary, one place
for message tags, and the user-visible names documented where the code says "C executor"."""

from __future__ import annotations

import ast
from pathlib import Path

import collbench.execute as execute
from collbench.algorithms import Buf, Slice
from collbench.execute import names
from collbench.execute.bind import LoweredProgram, LoweredStep
from collbench.execute.c_binding import flatten
from collbench.execute.tags import TAG_BASE, TAG_SPAN, step_tag

PACKAGE = Path(execute.__file__).parent


def _imports_from_execute(path: Path, node: ast.ImportFrom) -> bool:
    if path.parent == PACKAGE and node.level == 1:
        return True  # `from .python_mpi import ...` inside collbench/execute
    return "execute" in (node.module or "").split(".")


def test_no_module_imports_an_execute_modules_private_names():
    for path in sorted(PACKAGE.parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and _imports_from_execute(path, node):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path.relative_to(PACKAGE.parent)} imports {private} from {node.module}"


def test_the_c_executor_tags_steps_like_the_python_executor():
    """Both take the tag from tags.step_tag (python_mpi uses it directly): same messages on the wire."""
    steps = tuple(LoweredStep(i, ((0, Slice(Buf.INPUT, 0, 1)),), (), ()) for i in (0, 7, TAG_SPAN + 3))
    flat = flatten(LoweredProgram(steps, 0, None))
    assert flat.steps[:, 0].tolist() == [step_tag(0), step_tag(7), step_tag(TAG_SPAN + 3)]
    assert step_tag(TAG_SPAN + 3) == TAG_BASE + 3


def test_every_row_value_is_in_the_table():
    doc = execute.__doc__ or ""
    for name in dir(names):
        if name.startswith("ROW_"):
            assert f"``{getattr(names, name)}``" in doc, name


def test_the_cli_offers_exactly_the_executor_choices():
    from collbench.cli import build_parser

    parser, _ = build_parser(["run"])
    run = next(a for a in parser._subparsers._group_actions[0].choices.values() if a.prog.endswith(" run"))
    executor = next(a for a in run._actions if "--executor" in a.option_strings)
    assert tuple(executor.choices) == names.EXECUTOR_CHOICES
