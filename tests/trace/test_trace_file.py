"""The trace file without MPI: Chrome-trace schema, per-step statistics, CLI errors."""

from __future__ import annotations

import json

import pytest

from cbtest import run_cli
from collbench.trace.document import document, read
from collbench.trace.schema import problems
from collbench.trace.steps import step_stats


def _record(offsets: list[int] | None = None) -> dict:
    """Two ranks exchanging 8 bytes in step 0 and reducing them; rank 1 posts 5 us late."""
    step = {"index": 0, "sends": [[1, 8]], "recvs": [[1, 8]], "reduce_bytes": 8, "copy_bytes": 0}
    peer = {**step, "sends": [[0, 8]], "recvs": [[0, 8]]}
    return {"nranks": 2, "offsets_ns": offsets or [0, 0], "offset_bound_ns": [0, 100], "node_of_rank": None,
            "skipped": [],
            "measurements": [{"collective": "allreduce", "algorithm": "recursive_doubling", "backend": "mpi",
                              "executor": "python", "dtype": "float32", "op": "sum", "placement": "out_of_place",
                              "root": 0, "nranks": 2, "bytes": 8, "count": 2, "itemsize": 4, "iterations": 1,
                              "row_time_us": 12.0, "options": {},
                              "ranks": [{"rank": 0, "steps": [step], "stamps_ns": [[[1000, 2000, 8000, 9000]]]},
                                        {"rank": 1, "steps": [peer], "stamps_ns": [[[6000, 6500, 8000, 9500]]]}]}]}


def test_document_is_valid_chrome_trace():
    doc = document(_record())
    assert problems(json.loads(json.dumps(doc))) == []
    kinds = {e["ph"] for e in doc["traceEvents"]}
    assert {"X", "s", "f", "M"} <= kinds
    names = {e["name"] for e in doc["traceEvents"] if e["ph"] == "X"}
    assert {"step 0", "post", "wait", "reduce"} <= names


def test_schema_catches_mistakes():
    assert problems([]) == ["not a JSON object with a traceEvents list"]
    bad = {"traceEvents": [{"name": "a", "ph": "X", "pid": 0, "tid": 0, "ts": 5, "dur": 1},
                           {"name": "b", "ph": "X", "pid": 0, "tid": 0, "ts": 3, "dur": -1},
                           {"name": "c", "ph": "f", "pid": 0, "tid": 0, "ts": 9, "id": 7}]}
    found = " ".join(problems(bad))
    assert "goes back" in found and "dur >= 0" in found and "ends before it starts" in found


def test_step_stats_find_the_late_partner():
    (stat,) = step_stats(_record(), _record()["measurements"][0])
    assert stat.bytes == 16 and stat.ranks == 2
    assert stat.late_rank == 1 and stat.late_us == pytest.approx(4.0)  # posted at 6 us, rank 0 at 2
    assert stat.time_us == pytest.approx(8.0) and stat.critical_rank == 1


def test_offsets_align_ranks():
    # rank 1's clock runs 5 us ahead: aligned, it is not late any more
    (stat,) = step_stats(_record([0, 5000]), _record()["measurements"][0])
    assert stat.late_us == pytest.approx(0.0)


def test_bad_files_are_one_line_exit_2(tmp_path):
    missing = run_cli(["trace", "show", str(tmp_path / "none.json")])
    junk = tmp_path / "junk.json"
    junk.write_text('{"traceEvents": []}')
    other = run_cli(["trace", "show", str(junk)])
    for result in (missing, other):
        assert result.returncode == 2
        assert len(result.stderr.strip().splitlines()) == 1


def test_show_and_compare_text(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps(document(_record())))
    assert read(path)["nranks"] == 2
    shown = run_cli(["trace", "show", str(path)])
    assert shown.returncode == 0, shown.stderr
    assert "late-partner" in shown.stdout and "(rank 1)" in shown.stdout
    compared = run_cli(["trace", "compare", str(path), "--profile", "dev-vm"])
    assert compared.returncode == 0, compared.stderr
    assert "furthest off: step 0" in compared.stdout


def test_timeline_plot(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "t.json"
    path.write_text(json.dumps(document(_record())))
    result = run_cli(["plot", "--kind", "timeline", str(path), "-o", str(tmp_path / "t.svg")])
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "t.svg").read_text().count("rank 1")


def test_untraced_runners_carry_no_tracing_code():
    """Tracing is a separate method (and a separate C function): the timed loops are unchanged."""
    import inspect

    from collbench.execute.python_mpi import MpiScheduleRun

    assert "clock" not in inspect.getsource(MpiScheduleRun.run)
    from collbench.gpu.kernel_sources import csrc_dir

    source = (csrc_dir() / "native_executor.c").read_text()
    run_once = source[source.index("static inline int run_once"):source.index("int cb_plan_run(")]
    assert "now_ns" not in run_once
