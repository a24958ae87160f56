"""Lab 2 (docs/labs/lab2-ring-tree-doubling.md): the laptop commands run, and the model's
crossovers and fold costs are what the lab says."""

from __future__ import annotations

import pytest
from labdoc import LABS, cell_us, check_quotes, run_lab, table, table_rows

LAB = "lab2-ring-tree-doubling.md"
pytestmark = pytest.mark.mpi


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    return run_lab(LAB, tmp_path_factory.mktemp("lab2"), slow=False)


def _predict(lab, p):
    return table(lab.out("predict"), f"= {p} ranks")


def test_recursive_doubling_is_fastest_at_8B_at_every_rank_count(lab):
    for p in (4, 5, 6, 7, 8):
        row = _predict(lab, p)["8 B"]
        assert row["best"] == "recursive_doubling" and row["bound by"].startswith("α"), (p, row)


def test_the_fold_costs_two_steps_whatever_folds(lab):
    rd = {p: cell_us(_predict(lab, p)["8 B"]["recursive_doubling"]) for p in (4, 5, 6, 7, 8)}
    assert rd[5] == rd[6] == rd[7] > rd[8] > rd[4], rd
    assert rd[5] == pytest.approx(2 * rd[4])                  # 4 steps against lg 4 = 2
    big = {p: cell_us(_predict(lab, p)["1 MiB"]["recursive_doubling"]) for p in (5, 6, 7)}
    assert big[5] == big[6] == big[7], big


def test_large_sizes_rabenseifner_at_powers_of_two_ring_otherwise(lab):
    for p, best in ((4, "rabenseifner"), (8, "rabenseifner"), (5, "ring"), (6, "ring"), (7, "ring")):
        assert _predict(lab, p)["1 MiB"]["best"] == best, p
    assert "crossovers: 8 B - 1 KiB: recursive_doubling; 64 KiB - 16 MiB: rabenseifner" in lab.out("predict")


def test_quoted_model_rows_are_what_the_model_prints(lab):
    assert check_quotes(LAB, lab) >= 9
    text = " ".join((LABS / LAB).read_text().split())
    assert "(4.5 µs against 6 µs in the model)" in text
    assert cell_us(_predict(lab, 8)["8 B"]["recursive_doubling"]) == 4.5
    assert cell_us(_predict(lab, 5)["8 B"]["recursive_doubling"]) == 6


def test_measurements_are_exact(lab):
    four = table_rows(lab.stdout("measure4"))
    assert len(four) == 4 * 4 and all(int(c[8]) == 0 for c in four)
    assert "4 ranks on 1 node" in lab.out("measure4")
    five = table_rows(lab.stdout("measure5"))
    assert len(five) == 3 and all(int(c[8]) == 0 for c in five)
    assert "5 ranks on 1 node" in lab.out("measure5")
    assert " of 16 modelled rows" in lab.out("check")


def test_list_shows_the_algorithms_at_5_ranks(lab):
    out = lab.out("list")
    for algo in ("ring", "recursive_doubling", "rabenseifner", "tree"):
        assert any(line.split()[:3] == ["allreduce", algo, "yes"] for line in out.splitlines() if line.strip()), algo


@pytest.mark.slow
def test_six_and_seven_ranks(tmp_path):
    lab = run_lab(LAB, tmp_path, slow=True)
    rows = table_rows(lab.stdout("measure67"))
    assert len(rows) == 2 * 3 and all(int(c[8]) == 0 for c in rows)
    assert "6 ranks on 1 node" in lab.out("measure67") and "7 ranks on 1 node" in lab.out("measure67")
