"""Lab 7 (docs/labs/lab7-compression.md): the densities at which top-k wins on Delta (and,
slow, Perlmutter) are the lab's, and the laptop measurement reports bytes, ratio and error."""

from __future__ import annotations

import pytest
from labdoc import LABS, run_lab, table, table_rows

LAB = "lab7-compression.md"
pytestmark = pytest.mark.mpi


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    return run_lab(LAB, tmp_path_factory.mktemp("lab7"), slow=False)


def _limits(out: str) -> dict[str, dict[str, str]]:
    return table(out, "", 0)


def test_delta_thresholds(lab):
    rows = _limits(lab.out("delta"))
    assert rows["2"]["topk_allgather"] == "d <= 0.082" and rows["16"]["topk_allgather"] == "d <= 0.016"
    assert rows["2"]["gtopk"] == "d <= 0.19" and rows["2"]["best dense"] == "3.85 ms hierarchical"
    text = (LABS / LAB).read_text()
    assert "| `topk_allgather` wins up to | d ≤ 0.082 | d ≤ 0.016 |" in text


def test_laptop_measurement(lab):
    out = lab.stdout("measure")
    rows = table_rows(out)
    assert len(rows) == 3 and all(int(r[8]) == 0 for r in rows)
    for algo in ("topk_allgather", "topk_rd"):
        block = out.split(f"algorithm {algo} ")[1].split("# allreduce")[0]
        (row,) = table_rows(block)
        assert row[9] == "20976" and row[10] == "49.99", row    # ceil(1 % of 2^18) = 2622 pairs of 8 B
    assert "algorithm ring " in out                              # dense_ring rows say ring


@pytest.mark.slow
def test_perlmutter_thresholds(tmp_path):
    lab = run_lab(LAB, tmp_path, slow=True)
    per, delta = _limits(lab.out("perlmutter")), _limits(lab.out("delta"))
    def d(cell):
        return float(cell.split()[-1])
    for nodes in ("2", "16"):
        assert d(per[nodes]["topk_allgather"]) < d(delta[nodes]["topk_allgather"])
        assert d(per[nodes]["gtopk"]) < d(delta[nodes]["gtopk"])
        assert d(per[nodes]["topk_rd"]) > d(delta[nodes]["topk_rd"])
    assert per["2"]["topk_allgather"] == "d <= 0.035" and per["16"]["topk_allgather"] == "d <= 0.0076"
