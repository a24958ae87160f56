"""Lab 3 (docs/labs/lab3-write-your-own.md): the chain broadcast in the lab verifies, its two
deliberate bugs give the errors the lab quotes (rank and step), it runs over MPI and the model
costs it as the lab says."""

from __future__ import annotations

import hashlib
import json

import pytest
from labdoc import check_quotes, run_lab, table, table_rows

LAB = "lab3-write-your-own.md"
pytestmark = pytest.mark.mpi


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    return run_lab(LAB, tmp_path_factory.mktemp("lab3"), slow=False)


def test_the_algorithm_verifies(lab):
    assert "all correct" in lab.stdout("verify")
    assert "chain      broadcast   1-16" in lab.stdout("verify")


def test_late_receive_names_rank_1_at_step_0(lab):
    out = lab.stdout("late")
    first = out.split("chain broadcast p=", 1)[1].splitlines()
    assert first[0] == "3 count=1:"
    assert first[1].strip() == ("out-of-place: rank 0 step 0 send #0 to 1 of in[0:1]: "
                                "rank 1 posts no matching receive in step 0")


def test_forwarding_the_input_names_rank_2_and_spares_two_ranks_and_in_place(lab):
    out = lab.stdout("forward-input")
    assert ("out-of-place: rank 2: result out[0:1] holds contributions of ranks {1} but needs {0} "
            "(missing {0}) (extra {1})") in out
    assert "p=2 " not in out and "p=1 " not in out      # a 2-rank chain has nobody to forward to
    assert "in-place:" not in out                       # in place, input and output are one buffer


def test_quotes_match_the_output(lab):
    assert check_quotes(LAB, lab) >= 9


def test_model_claims(lab):
    rows = table(lab.out("model"), "8 ranks")
    assert rows["8 B"]["best"] == "tree"
    assert rows["8 B"]["chain"].startswith("12 us") and rows["8 B"]["ring"].startswith("10.5 us")  # 8 vs 7 steps
    assert rows["64 KiB"]["chain"].startswith("33.6 us") and rows["64 KiB"]["ring"].startswith("58.6 us")
    assert rows["16 MiB"]["best"] == "ring" and rows["16 MiB"]["chain"].startswith("4.77 ms")


def test_runs_over_mpi_exactly(lab):
    rows = table_rows(lab.stdout("run"))
    assert len(rows) == 3 * 4 and all(int(c[8]) == 0 for c in rows)
    out = lab.out("run")
    for algo in ("chain", "ring", "tree"):
        assert f"# broadcast · algorithm {algo} " in out
    assert " of 12 modelled rows" in out


def test_the_results_name_the_plugin_that_produced_them(lab):
    meta = json.loads((lab.workdir / "lab3-np2.jsonl").read_text().splitlines()[0])
    [plugin] = meta["plugins"]
    chain = (lab.workdir / "chain.py").resolve()
    assert plugin["path"] == str(chain) and plugin["algorithms"] == ["chain"]
    assert plugin["sha256"] == hashlib.sha256(chain.read_bytes()).hexdigest()
