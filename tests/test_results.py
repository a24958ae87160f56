"""Results files: round trip, never overwritten, robust to interrupted runs."""

import json

import pytest

from collbench.errors import UsageError
from collbench.results.files import ResultsWriter, Row, read_results
from collbench.results.report import report


def _row(**changes) -> Row:
    fields = dict(collective="allreduce", algorithm="native", backend="mpi", executor="library",
                  dtype="float32", op="sum", root=None, placement="out_of_place", nranks=4,
                  bytes=1024, count=256, iterations=10, warmup=5, timing="batch", aggregation="max",
                  time_us=12.5, time_us_min_rank=11.0, time_us_max_rank=12.5, algbw_gbps=0.08192,
                  busbw_gbps=0.12288, wrong=0)
    fields.update(changes)
    return Row(**fields)


def _write(path, rows, summary=True):
    writer = ResultsWriter(path)
    writer.open()
    writer.write({"type": "metadata", "schema": 1, "nranks": 4, "nnodes": 1})
    for row in rows:
        writer.write(row.to_record())
    if summary:
        writer.write({"type": "summary", "rows": len(rows)})
    writer.close()


def test_round_trip(tmp_path):
    rows = [_row(), _row(placement="in_place", wrong=None),
            _row(timing="per_iteration", stats_us={"min": 1.0, "p50": 2.0, "p99": 3.0, "max": 4.0,
                                                   "mean": 2.0, "stdev": 0.5}, samples_us=[1.0, 2.0])]
    path = tmp_path / "r.jsonl"
    _write(path, rows)
    loaded = read_results(path)
    assert loaded.rows == rows
    assert loaded.complete and not loaded.warnings


def test_existing_file_is_never_overwritten(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text("precious\n")
    with pytest.raises(UsageError, match="already exists"):
        ResultsWriter(path).open()
    assert path.read_text() == "precious\n"


def test_interrupted_run_keeps_finished_rows(tmp_path):
    path = tmp_path / "r.jsonl"
    _write(path, [_row(), _row(bytes=2048)], summary=False)
    with open(path, "a") as handle:
        handle.write('{"type":"row","collective":"allre')  # killed mid-write
    loaded = read_results(path)
    assert len(loaded.rows) == 2
    assert not loaded.complete
    assert any("incomplete" in w for w in loaded.warnings)


def test_not_a_results_file(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"hello": 1}\n')
    with pytest.raises(UsageError, match="no metadata"):
        read_results(path)
    with pytest.raises(UsageError, match="no such results file"):
        read_results(tmp_path / "missing.jsonl")


def test_report_formats(tmp_path):
    path = tmp_path / "r.jsonl"
    _write(path, [_row(), _row(placement="in_place")])
    text = report([str(path)], "text")
    assert "allreduce" in text and "Out of bounds values : 0 OK" in text
    csv_text = report([str(path)], "csv")
    assert csv_text.splitlines()[0].startswith("collective,algorithm,backend")
    assert len(csv_text.splitlines()) == 3
    assert json.loads(report([str(path)], "json"))[1]["placement"] == "in_place"
    markdown = report([str(tmp_path)], "markdown")
    assert markdown.splitlines()[1].startswith("|--")
