"""The lab handouts as documents: the sections the course needs, blocks that follow the marker
convention (cluster-only commands at least parse), the README link on its first screen, and
instructor notes for every lab."""

from __future__ import annotations

import re
import subprocess

import pytest
from labdoc import KINDS, LABS, REPO, blocks

LAB_FILES = sorted(p.name for p in LABS.glob("lab[0-9]-*.md"))
SECTIONS = ("## Goal", "## What you need", "## Setup", "## Steps", "## Predict first", "## Measure",
            "## Explain", "## What you should see", "## Common failures and how to recognise them",
            "## Extensions")


def test_seven_labs():
    assert [name[:4] for name in LAB_FILES] == [f"lab{i}" for i in range(1, 8)]


@pytest.mark.parametrize("lab", LAB_FILES)
def test_sections_in_order(lab):
    text = (LABS / lab).read_text()
    positions = [text.find("\n" + heading + "\n") for heading in SECTIONS]
    assert -1 not in positions, [h for h, pos in zip(SECTIONS, positions) if pos == -1]
    assert positions == sorted(positions)
    steps = text[positions[SECTIONS.index("## Steps")]:positions[SECTIONS.index("## Predict first")]]
    assert re.search(r"^1\. \*\*", steps, re.M), "steps are numbered"
    for word in ("Explain",):
        assert re.search(r"^1\. ", text[positions[SECTIONS.index("## " + word)]:], re.M)


@pytest.mark.parametrize("lab", LAB_FILES)
def test_common_failures_cover_the_four_kinds(lab):
    text = (LABS / lab).read_text()
    failures = text.split("## Common failures and how to recognise them")[1].split("## Extensions")[0]
    assert "Oversubscription" in failures
    assert "Wrong MPI" in failures or "wrong MPI" in failures
    if lab[:4] in ("lab4", "lab6", "lab7"):
        assert "TCP instead of Slingshot" in failures
    if lab[:4] in ("lab4", "lab5", "lab6"):
        assert "GPU bound to the wrong rank" in failures


@pytest.mark.parametrize("lab", LAB_FILES)
def test_blocks_follow_the_convention(lab):
    found = blocks(lab)
    ids = [b.id for b in found if b.kind == "run"]
    assert len(ids) == len(set(ids)), "block ids are unique"
    for block in found:
        if block.lang == "console":
            assert block.kind in KINDS, f"{lab}:{block.line}: console block without a kind"
            commands = block.commands()          # raises on output lines inside the block
            assert commands, f"{lab}:{block.line}: empty console block"
            parsed = subprocess.run(["bash", "-n"], input="\n".join(commands), capture_output=True, text=True)
            assert parsed.returncode == 0, f"{lab}:{block.line}: {parsed.stderr}"
        if block.lang == "text" and "from" in block.attrs:
            assert block.attrs["from"] in ids, f"{lab}:{block.line}: from= names no run block"
    assert any(b.kind == "run" for b in found), "every lab has laptop commands"


def test_cluster_labs_have_cluster_commands():
    for lab in LAB_FILES:
        if lab[:4] in ("lab4", "lab5", "lab6", "lab7"):
            assert any(b.kind == "cluster" for b in blocks(lab)), lab


def test_readme_links_the_labs_on_its_first_screen():
    first_screen = (REPO / "README.md").read_text().splitlines()[:12]
    assert any("docs/labs/" in line for line in first_screen), first_screen


def test_index_and_instructor_notes_cover_every_lab():
    index = (LABS / "README.md").read_text()
    notes = (LABS / "instructors.md").read_text()
    for lab in LAB_FILES:
        assert f"({lab})" in index, lab
        number = lab[3]
        assert f"\n## Lab {number} " in notes, lab
    for part in ("Time", "Pitfalls", "Answers", "Grading"):
        assert notes.count(f"**{part}") >= 7, part
