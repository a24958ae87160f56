"""The lab handouts (docs/labs/*.md) as tests: their marker convention, a parser and a runner.

Marker convention (docs/labs/README.md repeats it for authors). A fenced block is read when its
info string starts with ``console`` or carries ``file=``; the words after the language are
attributes, which Markdown renderers ignore::

    ```console run id=predict        laptop commands: run by tests/labs on every CI run
    ```console run slow id=full      laptop commands too slow for every run: the slow tests only
    ```console run rc=1 id=broken    every command of the block must exit with this status
    ```console run rc=0,1 id=check   ... or with one of these (a verdict that depends on the machine)
    ```console run cwd=repo id=abci  run from the collbench checkout (read-only commands)
    ```console cluster               cluster-only commands: never run; ``bash -n`` must parse them
    ```console setup                 installation: not run (it would reinstall the package under
                                     test); tests compare it with the README
    ```console local-slurm id=sweep  run against the local Slurm cluster (tests/slurm's fixture)
    ```python file=chain.py          written into the lab's working directory before anything runs

Inside a console block every command starts with ``$ `` and a line ending in ``\\`` continues
it. Any other line is an error: output belongs in a ``text`` block under "What you should see",
never in a block the tests would have to pretend to check.

Each lab runs in its own empty directory, blocks in document order, every command in a fresh
``bash -c`` whose ``collbench`` and ``python`` are the interpreter running the tests (so the
commands use the collbench under test, as typed). A command's output is kept by block id for
the claims the tests check.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import shlex
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from cbtest import REPO

try:  # the suite's job lock (MPI jobs one at a time under pytest-xdist), where cbtest has it
    from cbtest import one_job_at_a_time
except ImportError:  # pragma: no cover - an older cbtest: tests run one at a time anyway
    one_job_at_a_time = contextlib.nullcontext

LABS = REPO / "docs" / "labs"

_FENCE = re.compile(r"^([ \t]*)```([^\n]*)\n(.*?)^\1```[ \t]*$", re.S | re.M)
KINDS = ("run", "cluster", "setup", "local-slurm")


@dataclass
class Block:
    lab: str
    line: int            # line of the opening fence (for messages)
    lang: str
    attrs: dict[str, str]
    flags: set[str]
    body: str

    @property
    def id(self) -> str:
        return self.attrs.get("id", f"line{self.line}")

    @property
    def kind(self) -> str | None:
        if self.lang != "console":
            return None
        kinds = [k for k in KINDS if k in self.flags]
        return kinds[0] if kinds else None

    @property
    def slow(self) -> bool:
        return "slow" in self.flags

    @property
    def rc(self) -> set[int]:
        """Allowed exit statuses: ``rc=1``, or ``rc=0,1`` where the outcome depends on the
        machine (a model check's verdict)."""
        return {int(code) for code in self.attrs.get("rc", "0").split(",")}

    def commands(self) -> list[str]:
        """The ``$ `` commands of a console block, continuation lines joined."""
        commands: list[str] = []
        pending: str | None = None
        for raw in self.body.splitlines():
            if pending is not None:
                pending += "\n" + raw
                if not raw.rstrip().endswith("\\"):
                    commands.append(pending)
                    pending = None
                continue
            if not raw.strip():
                continue
            if not raw.startswith("$ "):
                raise ValueError(f"{self.lab}:{self.line}: console block line {raw!r} is not a "
                                 f"'$ ' command; put output in a text block")
            text = raw[2:]
            if text.rstrip().endswith("\\"):
                pending = text
            else:
                commands.append(text)
        if pending is not None:
            raise ValueError(f"{self.lab}:{self.line}: command ends in a continuation: {pending!r}")
        return commands


def blocks(lab: str) -> list[Block]:
    """Every fenced block of ``docs/labs/<lab>`` with its attributes."""
    text = (LABS / lab).read_text()
    found = []
    for match in _FENCE.finditer(text):
        indent, info, body = match.groups()
        words = info.split()
        lang = words[0] if words else ""
        attrs = dict(w.split("=", 1) for w in words[1:] if "=" in w)
        flags = {w for w in words[1:] if "=" not in w}
        line = text.count("\n", 0, match.start()) + 1
        body = "".join(raw[len(indent):] if raw.startswith(indent) else raw
                       for raw in body.splitlines(keepends=True))
        found.append(Block(lab, line, lang, attrs, flags, body))
    return found


@dataclass
class Result:
    command: str
    returncode: int
    stdout: str
    stderr: str
    seconds: float       # wall clock
    cpu_seconds: float   # user + system time of the command and everything it started

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclass
class LabRun:
    workdir: Path
    results: dict[str, list[Result]] = field(default_factory=dict)

    def out(self, block_id: str) -> str:
        """Everything the commands of block ``block_id`` printed (stdout then stderr each)."""
        assert block_id in self.results, f"no block id={block_id} ran (have {sorted(self.results)})"
        return "".join(r.output for r in self.results[block_id])

    def stdout(self, block_id: str) -> str:
        assert block_id in self.results, f"no block id={block_id} ran (have {sorted(self.results)})"
        return "".join(r.stdout for r in self.results[block_id])


def shim_dir(base: Path) -> Path:
    """``collbench`` and ``python`` for the lab commands: this interpreter, whatever is on PATH;
    ``mpiexec``: the one beside it (the mpich wheel's), where there is one."""
    bin_dir = base / ".lab-bin"
    bin_dir.mkdir(exist_ok=True)
    shims = [("collbench", f'exec {shlex.quote(sys.executable)} -m collbench "$@"'),
             ("python", f'exec {shlex.quote(sys.executable)} "$@"')]
    mpiexec = Path(sys.executable).parent / "mpiexec"
    if mpiexec.is_file():
        shims.append(("mpiexec", f'exec {shlex.quote(str(mpiexec))} "$@"'))
    for name, line in shims:
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{line}\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return bin_dir


def lab_env(workdir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PMI_RANK", "PMIX_RANK", "COLLBENCH_LAUNCHED") and not k.startswith("SLURM_")}
    env["PATH"] = f"{shim_dir(workdir)}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra or {})
    return env


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_commands(block: Block, run: LabRun, env: dict[str, str], timeout: float) -> None:
    results = run.results.setdefault(block.id, [])
    for command in block.commands():
        start, cpu = time.monotonic(), _children_cpu()
        cwd = REPO if block.attrs.get("cwd") == "repo" else run.workdir
        with one_job_at_a_time():   # a lab command may launch an MPI job
            proc = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True,
                                  text=True, timeout=timeout)
        result = Result(command, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start,
                        _children_cpu() - cpu)
        results.append(result)
        assert proc.returncode in block.rc, (
            f"{block.lab}:{block.line} (id={block.id}): `{command}` exited {proc.returncode}, "
            f"the lab expects {block.rc}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}")


def write_files(lab: str, workdir: Path) -> None:
    for block in blocks(lab):
        if "file" in block.attrs:
            (workdir / block.attrs["file"]).write_text(block.body)


def run_lab(lab: str, workdir: Path, *, slow: bool, timeout: float = 240) -> LabRun:
    """Write the lab's files into ``workdir`` and run its laptop blocks in order (the slow ones
    too when ``slow``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    write_files(lab, workdir)
    run = LabRun(workdir)
    env = lab_env(workdir)
    for block in blocks(lab):
        if block.kind == "run" and (slow or not block.slow):
            run_commands(block, run, env, timeout)
    return run


def number(pattern: str, text: str) -> float:
    """The first number captured by ``pattern`` in ``text`` (a failing assert names both)."""
    match = re.search(pattern, text, re.M)
    assert match, f"pattern {pattern!r} not found in:\n{text[-3000:]}"
    return float(match.group(1))


def table_rows(text: str) -> list[list[str]]:
    """The data lines of collbench's nccl-tests tables (lines that start with a size), split."""
    return [line.split() for line in text.splitlines() if re.match(r"^\s+\d+\s+\d+\s", line)]


def _cells(row: str, starts: list[int]) -> list[str]:
    ends: list[int | None] = [*starts[1:], None]
    return [row[a:b].strip() for a, b in zip(starts, ends)]


def tables(text: str) -> list[tuple[str, dict[str, dict[str, str]]]]:
    """The plain tables of ``collbench model predict``/``workload predict``-style output: for each
    table (in order) its ``## `` heading (or "") and its rows keyed by the first cell, each a dict
    column name -> cell. Columns are cut where the dash line under the header puts them."""
    lines = text.splitlines()
    found: list[tuple[str, dict[str, dict[str, str]]]] = []
    heading = ""
    for i, line in enumerate(lines):
        if line.startswith("## "):
            heading = line[3:].strip()
        if i == 0 or not re.match(r"^-+( +-+)+\s*$", line):
            continue
        starts = [m.start() for m in re.finditer(r"-+", line)]
        names = _cells(lines[i - 1], starts)
        rows: dict[str, dict[str, str]] = {}
        for row in lines[i + 1:]:
            if not row.strip() or row.startswith(("#", "crossovers", "## ")):
                break
            values = _cells(row, starts)
            rows[values[0]] = dict(zip(names, values))
        found.append((heading, rows))
    return found


def table(text: str, heading: str = "", index: int = 0) -> dict[str, dict[str, str]]:
    """One table of :func:`tables`: the ``index``-th whose heading contains ``heading``."""
    matching = [rows for head, rows in tables(text) if heading in head]
    assert len(matching) > index, f"no table {index} with heading {heading!r} in:\n{text[-3000:]}"
    return matching[index]


def cell_us(cell: str) -> float:
    """A predicted time cell ("39.6 us (0.000303) ...", "1.97 ms ...", "2.1 s") in microseconds."""
    match = re.match(r"([0-9.]+) (us|ms|s)\b", cell)
    assert match, f"not a time cell: {cell!r}"
    return float(match.group(1)) * {"us": 1.0, "ms": 1e3, "s": 1e6}[match.group(2)]


def pipe_tables(text: str) -> dict[str, list[dict[str, str]]]:
    """Markdown pipe tables (``collbench workload predict``) by their ``## `` heading: rows as
    dicts column -> cell."""
    found: dict[str, list[dict[str, str]]] = {}
    heading, header = "", None
    for line in text.splitlines():
        if line.startswith("## "):
            heading, header = line[3:].strip(), None
            continue
        if not line.startswith("|"):
            header = None if not line.strip() else header
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
        elif not set("".join(cells)) <= set("-: "):
            found.setdefault(heading, []).append(dict(zip(header, cells)))
    return found


def _squash(line: str) -> str:
    return " ".join(line.split())


def check_quotes(lab: str, run: LabRun) -> int:
    """Every line of a ``text from=ID`` block must appear in what block ID printed (whitespace
    squashed): the figures a lab quotes are the ones its commands print. Returns the number of
    lines checked."""
    checked = 0
    for block in blocks(lab):
        source = block.attrs.get("from")
        if block.lang != "text" or not source or source not in run.results:
            continue
        printed = {_squash(line) for line in run.out(source).splitlines()}
        for line in block.body.splitlines():
            if line.strip():
                assert _squash(line) in printed, (f"{lab}:{block.line}: quoted line not in the output "
                                                  f"of id={source}: {line!r}")
                checked += 1
    return checked
