"""``collbench run`` with compressed algorithms, end to end: the issue's commands at small
sizes, odd counts and rank counts, the extra columns (only where a compressed algorithm is),
validation that catches a corrupted result, skips under all-compressed, report and plot."""

from __future__ import annotations

import pytest

from cbtest import read_jsonl, run_cli
from collbench.compress.names import ALGORITHMS

pytestmark = pytest.mark.mpi

QUICK = ["-n", "2", "-w", "1", "-T", "120"]
FIELDS = ("sent_bytes", "compression", "err_rel_l2", "err_max_abs", "dense_busbw_gbps")


def _rows(path):
    return [r for r in read_jsonl(path) if r["type"] == "row"]


def test_all_compressed_with_the_dense_baseline(tmp_path) -> None:
    out = tmp_path / "all.jsonl"
    result = run_cli(["run", "allreduce", "--algo", "all-compressed,dense_ring", "-O", "density=0.05",
                      "-O", "format=fp8,block=32", "-d", "float32,bfloat16", "-b", "1000", "-e", "100000",
                      "-f", "10", "-c", "2", "-np", "3", *QUICK, "--out", str(out)],
                     timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = _rows(out)
    assert rows and all(r["wrong"] == 0 for r in rows), [r for r in rows if r["wrong"]][:2]
    seen = {(r["algorithm"], r["dtype"]) for r in rows}
    assert seen == {(a, d) for a in [*ALGORITHMS, "ring"] for d in ("float32", "bfloat16")}
    for r in rows:
        if r["algorithm"] == "ring":
            assert not any(k in r for k in FIELDS)
            continue
        assert all(r.get(k) is not None for k in FIELDS), r
        assert r["executor"] == "compressed" and r["compress"]
        assert r["compression"] > 1 or r["algorithm"] == "powersgd" and r["bytes"] == 1000
        if r["algorithm"] in ("quant_ring", "quant_oneshot"):
            assert 0 < r["err_rel_l2"] < 0.5 and r["compress"]["quantizations"] == (3 if r["algorithm"] == "quant_ring" else 2)
    # the tables show the compressed columns for compressed algorithms only
    tables = result.stdout.split("# allreduce · algorithm ")[1:]
    for text in tables:
        assert ("relerr" in text) == (not text.startswith("ring")), text[:200]


def test_topk_rd_reports_its_switch_point(tmp_path) -> None:
    out = tmp_path / "rd.jsonl"
    result = run_cli(["run", "allreduce", "--algo", "topk_rd", "-O", "density=0.2,switch=0.3",
                      "-b", "40000", "-e", "40000", "-np", "4", "--placement", "out-of-place", *QUICK,
                      "--out", str(out)], timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (row,) = _rows(out)
    assert row["wrong"] == 0 and row["compress"]["switch"] == 0.3
    assert row["compress"]["dense_from_step"] == 1   # 20 % per rank, ~36 % after one merge


def test_a_corrupted_result_is_caught(tmp_path) -> None:
    for algo in ("quant_ring", "topk_allgather", "powersgd"):
        out = tmp_path / f"{algo}.jsonl"
        result = run_cli(["run", "allreduce", "--algo", algo, "-b", "4K", "-e", "4K", "-np", "2",
                          *QUICK, "--out", str(out)], timeout=300, cwd=tmp_path,
                         env={"COLLBENCH_INJECT_FAULT": "corrupt:1"})
        assert result.returncode == 1, (algo, result.stderr[-2000:])
        assert all(r["wrong"] >= 1 for r in _rows(out)), algo


def test_skips_what_does_not_apply(tmp_path) -> None:
    out = tmp_path / "skip.jsonl"
    result = run_cli(["run", "allreduce", "allgather", "--algo", "all-compressed", "-d", "float64,int32",
                      "-b", "4K", "-e", "4K", "-np", "2", *QUICK, "--out", str(out)],
                     timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    ran = {(r["algorithm"], r["dtype"]) for r in _rows(out)}
    assert ran == {(a, "float64") for a in ("topk_allgather", "topk_rd", "gtopk", "powersgd")}
    assert "cannot hold float64" in result.stdout and "not int32" in result.stdout


def test_report_and_plot(tmp_path) -> None:
    out = tmp_path / "q.jsonl"
    result = run_cli(["run", "allreduce", "--algo", "quant_oneshot,gtopk", "-b", "4K", "-e", "16K",
                      "-np", "2", *QUICK, "--out", str(out)], timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    csv = run_cli(["report", str(out), "--format", "csv"])
    assert csv.returncode == 0 and "sent_bytes,compression,err_rel_l2" in csv.stdout.splitlines()[0]
    text = run_cli(["report", str(out)])
    assert "densebw" in text.stdout
    png = tmp_path / "err.png"
    plot = run_cli(["plot", str(out), "--kind", "error", "-o", str(png)])
    assert plot.returncode == 0 and png.stat().st_size > 0, plot.stderr
