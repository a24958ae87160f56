"""Lab 5 (docs/labs/lab5-nccl-mpi-custom.md): its laptop parts, the model's one-shot against
NCCL on a 4xA100 node and the committed H100 figures it quotes."""

from __future__ import annotations

import pytest
from labdoc import check_quotes, run_lab, table, table_rows

LAB = "lab5-nccl-mpi-custom.md"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    return run_lab(LAB, tmp_path_factory.mktemp("lab5"), slow=False)


def test_one_shot_beats_nccl_at_small_sizes_in_the_model(lab):
    rows = table(lab.out("predict"), "4 ranks")
    for size in ("8 B", "1 KiB", "64 KiB", "1 MiB"):
        assert rows[size]["best"] == "direct", size
    assert rows["8 B"]["direct"].startswith("3.4 us") and rows["8 B"]["native"].startswith("10.2 us")
    assert rows["16 MiB"]["best"] == "native"
    assert rows["16 MiB"]["native"].startswith("134 us") and rows["16 MiB"]["direct"].startswith("268 us")
    assert check_quotes(LAB, lab) == 3


def test_committed_h100_figures(lab):
    out = lab.stdout("h100")
    cuda, nccl = out.split("# file results/gpu/h100-2026-11-26/nccl-np1-graph.jsonl")
    one_shot = [r for r in table_rows(cuda.split("algorithm two_shot")[0])]
    assert one_shot[0][:1] == ["8"] and (one_shot[0][5], one_shot[0][9]) == ("4.59", "5.09")
    first = table_rows(nccl)[0]
    assert first[0] == "8" and (first[5], first[9]) == ("0.90", "0.02")
    assert all(int(r[8]) == 0 and int(r[12]) == 0 for r in table_rows(out))
