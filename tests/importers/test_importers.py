"""`collbench import`: real nccl-tests and OSU logs (tests/importers/fixtures, sources in
SOURCES.md) become results files that the other commands read."""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path

import pytest

from cbtest import read_jsonl
from collbench import cli
from collbench.importers import common, nccl_tests
from collbench.results import read_results

FIXTURES = Path(__file__).parent / "fixtures"
PUBLIC = Path(__file__).resolve().parents[2] / "results" / "public"


@pytest.fixture(autouse=True)
def _registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the command through collbench's real CLI, registered or not yet."""
    if "import" not in cli.COMMANDS:
        monkeypatch.setitem(cli.COMMANDS, "import",
                            cli.Command("collbench.importers.cli", "logs as a results file"))


def run(*args: str) -> int:
    return cli.main(["import", *args])


def imported(tmp_path: Path, tool: str, fixture: str, *extra: str) -> tuple[dict, list[dict], dict]:
    tmp_path.mkdir(exist_ok=True)
    out = tmp_path / f"{fixture}.jsonl"
    assert run(tool, str(FIXTURES / fixture), "-o", str(out), *extra) == 0
    records = read_jsonl(out)
    assert records[0]["type"] == "metadata" and records[-1]["type"] == "summary"
    read_results(out)   # the reader accepts it: every Row field present
    return records[0], records[1:-1], records[-1]


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("collbench: error: "), err
    return err[0]


# -- nccl-tests ----------------------------------------------------------------------------------

def test_new_header_cut_mid_table(tmp_path: Path) -> None:
    meta, rows, summary = imported(tmp_path, "nccl-tests", "nccl_tests_2.20_truncated.log")
    assert len(rows) == 8 and {r["placement"] for r in rows} == {"out_of_place", "in_place"}
    first = rows[0]
    assert (first["collective"], first["algorithm"], first["backend"], first["executor"]) == \
        ("allreduce", "native", "nccl", "nccl-tests")
    assert (first["bytes"], first["count"], first["dtype"], first["op"], first["root"]) == \
        (8192, 2048, "float32", "sum", None)
    assert (first["time_us"], first["algbw_gbps"], first["busbw_gbps"], first["wrong"]) == \
        (35.15, 0.23, 0.23, 0)
    assert (first["iterations"], first["warmup"], first["aggregation"]) == (100, 10, None)
    assert meta["import"]["tool_version"].startswith("nccl-tests version 2.20.0")
    assert meta["backend"]["nccl_version"] == "2.31.2"
    assert meta["nranks"] == 2 and meta["nnodes"] == 2 and meta["gpus_per_node"] == [1, 1]
    assert meta["backend"]["devices"][0]["name"] == "NVIDIA GB10"
    assert meta["import"]["runs"][0]["header_line"].startswith("nThread 1 nGpus 1 minBytes 8192")
    assert meta["import"]["truncated"] and summary["status"] == "truncated"


def test_all_gather_new_header(tmp_path: Path) -> None:
    meta, rows, _ = imported(tmp_path, "nccl-tests", "nccl_tests_2.17_all_gather.log")
    assert {r["collective"] for r in rows} == {"allgather"} and rows[0]["op"] is None
    assert rows[0]["bytes"] == 17179869184 and rows[0]["busbw_gbps"] == 18.94
    assert meta["import"]["runs"][0]["out_of_bounds"] == "0 OK" and not meta["import"]["truncated"]


def test_old_error_column_single_process_g2(tmp_path: Path) -> None:
    meta, rows, _ = imported(tmp_path, "nccl-tests", "old_error_column_g2.log")
    assert len(rows) == 6 and all(r["wrong"] == 0 for r in rows)   # every error printed is 0e+00
    assert meta["nranks"] == 2 and meta["nnodes"] == 1 and meta["gpus_per_node"] == [2]
    assert {p["pid"] for p in meta["processes"]} == {3795}          # one process, two GPUs
    notes = meta["import"]["runs"][0]["notes"]
    assert any("cut off" in n for n in notes) and any("error column" in n for n in notes)
    assert meta["import"]["runs"][0]["command"] == "#  ./all_reduce_perf -b 8 -e 128M -f 2 -g 2"


def test_old_layout_with_root_and_nccl_warn_lines(tmp_path: Path) -> None:
    meta, rows, _ = imported(tmp_path, "nccl-tests", "old_root_no_redop_nccl_warn.log")
    assert [r["collective"] for r in rows] == ["broadcast", "broadcast"]
    assert rows[0]["root"] == 0 and rows[0]["op"] is None and rows[0]["wrong"] is None   # -c 0: N/A
    assert meta["backend"]["nccl_version"] == "2.9.6+cuda11.2"
    assert meta["nnodes"] == 2 and meta["import"]["runs"][0]["header_line"].endswith("validation: 0")


def test_open_mpi_tag_output(tmp_path: Path) -> None:
    meta, rows, summary = imported(tmp_path, "nccl-tests", "ompi_tag_output.log")
    assert len(rows) == 16 and rows[-1]["bytes"] == 134217728 and rows[-1]["busbw_gbps"] == 2.31
    assert meta["nodes"] == ["lab"] and meta["nranks"] == 2 and meta["gpus_per_node"] == [1]
    assert meta["import"]["runs"][0]["avg_bus_bandwidth"] == 1.57614
    assert summary["status"] == "complete" and summary["rows"] == 16


def test_collective_the_log_does_not_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.jsonl"
    assert run("nccl-tests", str(FIXTURES / "ompi_tag_output_no_name.log"), "-o", str(out)) == 2
    assert "--collective" in error_line(capsys) and not out.exists()
    meta, rows, _ = imported(tmp_path, "nccl-tests", "ompi_tag_output_no_name.log",
                             "--collective", "allreduce")
    assert len(rows) == 6 and meta["nranks"] is None and rows[0]["nranks"] is None


def test_mpich_rank_tags_inside_rows() -> None:
    lines = (FIXTURES / "mpich_prepend_rank_rows.log").read_text().splitlines()
    assert common.clean(lines[1]).split() == ["1048576", "262144", "float", "sum", "-1", "1626.5", "0.64",
                                              "1.24", "0", "2302.3", "0.46", "0.87", "0"]


def test_srun_label_prefix_and_user_rank_count(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    meta, rows, _ = imported(tmp_path, "nccl-tests", "srun_label.log", "--nranks", "32", "--nodes", "4")
    assert {r["collective"] for r in rows} == {"allgather"} and len(rows) == 10
    assert (meta["nranks"], meta["nnodes"], meta["nodes"]) == (32, 4, None)
    # the printed busbw/algbw ratio says 32 ranks: a wrong --nranks is refused
    assert run("nccl-tests", str(FIXTURES / "srun_label.log"), "-o", str(tmp_path / "x.jsonl"),
               "--nranks", "8") == 2
    assert "--nranks" in error_line(capsys)


def test_g8_one_process_eight_gpus(tmp_path: Path) -> None:
    meta, rows, _ = imported(tmp_path, "nccl-tests", "g8_single_process_a100.log")
    assert meta["nranks"] == 8 and meta["nnodes"] == 1 and meta["gpus_per_node"] == [8]
    assert {p["pid"] for p in meta["processes"]} == {1277}
    assert rows[0]["busbw_gbps"] == 235.61
    assert meta["import"]["runs"][0]["header_line"].startswith("nThread 1 nGpus 8")


def test_nccl_info_lines_before_and_inside_the_table(tmp_path: Path) -> None:
    meta, rows, _ = imported(tmp_path, "nccl-tests", "nccl_info_interleaved.log", "--collective", "allreduce")
    assert len(rows) == 8 and meta["backend"]["nccl_version"] == "2.12.7+cuda11.4"
    assert meta["nodes"] == ["test-nccl-efa-worker-0", "test-nccl-efa-worker-1"]


def test_cut_device_list_is_not_a_rank_count(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    meta, rows, _ = imported(tmp_path, "nccl-tests", "elided_device_list.log", "--collective", "allreduce")
    assert meta["nranks"] is None and rows[0]["nranks"] is None and meta["import"]["notes"]
    # busbw/algbw = 2(n-1)/n for n = 128 here, whatever the last rank line says
    meta, rows, _ = imported(tmp_path / "n", "nccl-tests", "elided_device_list.log", "--collective",
                             "allreduce", "--nranks", "128")
    assert meta["nranks"] == 128 and meta["nodes"] is None and rows[0]["nranks"] == 128
    capsys.readouterr()   # drop the notes of the imports above
    assert run("nccl-tests", str(FIXTURES / "elided_device_list.log"), "--collective", "allreduce",
               "--nranks", "144", "-o", str(tmp_path / "x.jsonl")) == 2
    assert "--nranks" in error_line(capsys)


def test_two_collectives_in_one_file(tmp_path: Path) -> None:
    meta, rows, _ = imported(tmp_path, "nccl-tests", "two_collectives.log")
    assert [r["collective"] for r in rows[::16]] == ["allgather", "reduce_scatter"]
    assert len(meta["import"]["runs"]) == 2 and meta["spec"]["collectives"] == ["allgather", "reduce_scatter"]
    assert [r["avg_bus_bandwidth"] for r in meta["import"]["runs"]] == [1.53568, 1.73537]


def test_unknown_collective_table_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """alltoall (or sendrecv) tables are skipped with a note while the enum lacks them."""
    real = nccl_tests.collective_of
    monkeypatch.setattr(nccl_tests, "collective_of", lambda n: None if n == "reduce_scatter" else real(n))
    meta, rows, summary = imported(tmp_path, "nccl-tests", "two_collectives.log")
    assert {r["collective"] for r in rows} == {"allgather"}
    assert any("reduce_scatter" in s for s in summary["skipped"])


def test_header_without_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.jsonl"
    assert run("nccl-tests", str(FIXTURES / "old_no_hash_markdown.log"), "-o", str(out)) == 2
    assert "no rows" in error_line(capsys) and not out.exists()


def test_broken_row_mid_table_names_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = (FIXTURES / "ompi_tag_output.log").read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if "4374.00" in line)
    lines[index] = lines[index].replace("4374.00", "4374.x0")   # damaged, with complete rows after it
    log = tmp_path / "damaged.log"
    log.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    assert run("nccl-tests", str(log), "-o", str(out)) == 2
    assert f"{log}:{index + 1}:" in error_line(capsys) and not out.exists()


def test_garbage_is_one_line_exit_2_and_no_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "garbage.bin"
    log.write_bytes(bytes(range(256)) * 8)
    out = tmp_path / "out.jsonl"
    for tool in ("nccl-tests", "osu"):
        assert run(tool, str(log), "-o", str(out)) == 2
        assert str(log) in error_line(capsys)
    assert list(tmp_path.iterdir()) == [log]   # no output, no temporary file left behind


def test_existing_output_is_never_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text("keep me\n")
    assert run("nccl-tests", str(FIXTURES / "ompi_tag_output.log"), "-o", str(out)) == 2
    assert "already exists" in error_line(capsys) and out.read_text() == "keep me\n"


def test_missing_log_and_bad_tool(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("nccl-tests", str(tmp_path / "nope.log"), "-o", str(tmp_path / "o.jsonl")) == 2
    assert "no such log file" in error_line(capsys)
    assert run("imb", str(tmp_path / "nope.log"), "-o", str(tmp_path / "o.jsonl")) == 2
    error_line(capsys)


def test_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = (FIXTURES / "g8_single_process_a100.log").read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    out = tmp_path / "out.jsonl"
    assert run("nccl-tests", "-", "-o", str(out)) == 0
    meta = read_jsonl(out)[0]
    assert meta["import"]["files"] == ["<stdin>"] and meta["nranks"] == 8


def test_report_compare_plot_and_model_check_read_imports(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    a = tmp_path / "a.jsonl"
    b = tmp_path / "b.jsonl"
    assert run("nccl-tests", str(FIXTURES / "ompi_tag_output.log"), "-o", str(a)) == 0
    assert run("nccl-tests", str(FIXTURES / "ompi_tag_output.log"), "-o", str(b)) == 0
    capsys.readouterr()
    assert cli.main(["report", str(a)]) == 0
    assert "algorithm native (nccl-tests executor)" in capsys.readouterr().out
    for fmt in ("csv", "markdown", "json"):
        assert cli.main(["report", "--format", fmt, str(a)]) == 0
    assert cli.main(["compare", str(a), str(b)]) == 0
    assert cli.main(["model", "check", str(a)]) == 0
    pytest.importorskip("matplotlib")
    assert cli.main(["plot", str(a), "-o", str(tmp_path / "a.png")]) == 0


# -- OSU -----------------------------------------------------------------------------------------

def test_osu_full_columns(tmp_path: Path) -> None:
    meta, rows, summary = imported(tmp_path, "osu", "osu_reduce_cuda_full_v7.3.log")
    assert len(rows) == 11 and summary["status"] == "truncated"
    first = rows[0]
    assert (first["collective"], first["backend"], first["executor"], first["dtype"]) == \
        ("reduce", "mpi", "osu", "int8")
    assert (first["time_us"], first["time_us_min_rank"], first["time_us_max_rank"], first["iterations"]) == \
        (53.34, 24.80, 158.96, 1000)
    assert first["aggregation"] == "mean" and first["nranks"] is None
    # reduce's bus factor is 1 whatever the rank count, so busbw is known without it
    assert first["busbw_gbps"] == first["algbw_gbps"] == pytest.approx(1 / 53.34e-6 / 1e9)
    assert meta["backend"]["device"] == "cuda" and meta["import"]["tool_version"] == "7.3"


def test_osu_7_3_header_bug(tmp_path: Path) -> None:
    meta, rows, _ = imported(tmp_path, "osu", "osu_reduce_header_bug_v7.3.log")
    assert len(rows) == 10 and rows[0]["time_us_max_rank"] == 89.23
    assert any("header bug" in n for n in meta["import"]["runs"][0]["notes"])


def test_osu_rank_count_from_the_user(tmp_path: Path) -> None:
    meta, rows, summary = imported(tmp_path, "osu", "osu_allreduce_v7.5_mpi_int.log")
    assert rows[0]["nranks"] is None and rows[0]["busbw_gbps"] is None and rows[0]["algbw_gbps"] is not None
    assert any("Bandwidth" in s for s in summary["skipped"])   # osu_bw's table is not a collective
    meta, rows, _ = imported(tmp_path / "n", "osu", "osu_allreduce_v7.5_mpi_int.log", "--nranks", "144",
                             "--nodes", "4")
    last = rows[-1]
    assert (last["dtype"], last["bytes"], last["count"], last["nranks"]) == \
        ("int32", 268435456, 67108864, 144)
    assert last["busbw_gbps"] == pytest.approx(268435456 / 496306.98e-6 / 1e9 * 2 * 143 / 144)
    assert (meta["nranks"], meta["nnodes"]) == (144, 4)


def test_osu_5_without_datatype(tmp_path: Path) -> None:
    meta, rows, _ = imported(tmp_path, "osu", "osu_allreduce_v5.6.2_no_datatype.log")
    assert [r["time_us"] for r in rows] == [17.74, 61.02]
    assert rows[0]["dtype"] is None and rows[0]["count"] is None
    meta, rows, _ = imported(tmp_path / "d", "osu", "osu_allreduce_v5.6.2_no_datatype.log",
                             "--dtype", "float", "--nranks", "6")
    assert rows[0]["dtype"] == "float32" and rows[0]["count"] == 512


# -- the committed public datasets -----------------------------------------------------------------

def _public_imports() -> list[tuple[Path, list[str]]]:
    """(results file, the import argv that produced it) for every file under results/public."""
    cases = []
    for path in sorted(PUBLIC.glob("*/*.jsonl")):
        argv = json.loads(path.read_text().splitlines()[0])["argv"]
        cases.append((path, argv))
    return cases


@pytest.mark.parametrize("path,argv", _public_imports(), ids=lambda v: getattr(v, "name", ""))
def test_public_datasets_match_their_raw_logs(path: Path, argv: list[str], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Re-importing the raw log gives the committed rows: no number was edited by hand."""
    monkeypatch.chdir(path.parent)
    out = tmp_path / "again.jsonl"
    index = argv.index("-o")
    assert cli.main([*argv[:index + 1], str(out), *argv[index + 2:]]) == 0
    assert read_jsonl(out)[1:] == read_jsonl(path)[1:]
    assert read_results(path).rows


def test_osu_alltoall_size_is_per_peer(tmp_path: Path) -> None:
    """osu_alltoall's size is what each rank sends each peer: collbench's size is the whole
    buffer (size x nranks) and its count stays per peer (nccl-tests alltoall_perf)."""
    meta, rows, _ = imported(tmp_path, "osu", "osu_alltoall_v7.3_synthetic.log", "--nranks", "4")
    assert [r["collective"] for r in rows] == ["alltoall"] * 4
    last = rows[-1]
    assert (last["bytes"], last["count"], last["dtype"], last["nranks"]) == (4096 * 4, 4096, "int8", 4)
    assert last["algbw_gbps"] == pytest.approx(4096 * 4 / 12.80e-6 / 1e9)
    assert last["busbw_gbps"] == pytest.approx(last["algbw_gbps"] * 3 / 4)


def test_osu_alltoall_without_rank_count_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --nranks the total size of an alltoall (allgather) row is unknown, and a row
    without its size is no row: the table is skipped, here the only one, so nothing is written."""
    out = tmp_path / "out.jsonl"
    assert run("osu", str(FIXTURES / "osu_alltoall_v7.3_synthetic.log"), "-o", str(out)) == 2
    assert "--nranks" in error_line(capsys) and not out.exists()


# -- variants the first fixtures did not cover ------------------------------------------------------

def test_nccl_info_lines_inside_a_row(tmp_path: Path) -> None:
    """NCCL_DEBUG=INFO logs while a row is being printed: the row goes on after the log lines
    (here MPICH's [0] tags glue each piece to the next write), and is read whole."""
    meta, rows, summary = imported(tmp_path, "nccl-tests", "nccl_info_splits_rows.log",
                                   "--collective", "allreduce")
    assert [(r["bytes"], r["placement"], r["time_us"], r["busbw_gbps"], r["wrong"]) for r in rows] == [
        (4096, "out_of_place", 74.12, 0.10, 0), (4096, "in_place", 75.38, 0.10, 0)]
    assert summary["status"] == "truncated"   # the log ends inside the 8192 B row
    assert any("cut off" in n for n in meta["import"]["runs"][0]["notes"])


@pytest.mark.parametrize("host", ["lab", "10-4-3-3"])
def test_nccl_info_inside_a_row_open_mpi_line_split(tmp_path: Path, host: str) -> None:
    """The same when the launcher ends each piece with a newline and another rank's NCCL log
    comes between them, and when NCCL's "host:pid:tid" is glued to the row's root (also for a
    host whose name starts with digits, as NVIDIA/nccl#1773's 10-4-3-3)."""
    lines = (FIXTURES / "ompi_tag_output.log").read_text().replace(" lab ", f" {host} ").splitlines()
    row = next(i for i, line in enumerate(lines) if "4374.00" in line)
    start, rest = lines[row].split("-1  ")
    half = len(rest.split()) // 2
    lines[row:row + 1] = [start + f"-1{host}:2994447:2994447 [0] NCCL INFO Channel 00/0 : 0[0] -> 1[0] via P2P",
                          f"[1,1]<stdout>:{host}:2994448:2994448 [0] NCCL INFO Connected all rings",
                          "[1,0]<stdout>:" + "  ".join(rest.split()[:half]),
                          "[1,0]<stdout>:" + "  ".join(rest.split()[half:])]
    log = tmp_path / "split.log"
    log.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    assert run("nccl-tests", str(log), "-o", str(out)) == 0
    rows = read_jsonl(out)[1:-1]
    assert len(rows) == 16 and [r["time_us"] for r in rows if r["bytes"] == 4194304] == [4374.00, 4375.49]


def test_interleaved_jobs_of_nccl_tests_without_mpi(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """mpirun starting an nccl-tests built without MPI=1: each process is a job of its own and
    prints its own header and table; one series of their rows would be wrong, so: one error."""
    out = tmp_path / "out.jsonl"
    assert run("nccl-tests", str(FIXTURES / "interleaved_jobs_no_mpi.log"), "-o", str(out)) == 2
    err = error_line(capsys)
    assert "interleaved_jobs_no_mpi.log:5:" in err and "header of line 2" in err and not out.exists()
    assert run("nccl-tests", str(FIXTURES / "rank0_listed_twice.log"), "-o", str(out)) == 2
    err = error_line(capsys)
    assert "rank0_listed_twice.log:4: rank 0 is listed twice" in err and not out.exists()


def test_rccl_tests_version_line(tmp_path: Path) -> None:
    """rccl-tests prints its version after '# nThread …': it names the tool, and the header
    before it still belongs to the run."""
    meta, rows, _ = imported(tmp_path, "nccl-tests", "rccl_tests_mi300x.log", "--collective", "allreduce")
    assert meta["import"]["tool_version"] == "rccl-tests: Version develop:83d38d9"
    assert rows[0]["iterations"] == 20 and rows[0]["warmup"] == 5
    assert meta["nranks"] == 8 and meta["gpus_per_node"] == [8]
    assert meta["import"]["runs"][0]["header_line"].startswith("nThread 1 nGpus 8")


def test_gpus_per_node_counts_gpus_not_device_indices(tmp_path: Path) -> None:
    """With one GPU visible per process (CUDA_VISIBLE_DEVICES, srun --gpus-per-task=1) every
    rank says "device 0": the PCI address tells the GPUs apart. (The device lines of
    g8_single_process_a100.log with each device index set to 0.)"""
    text = (FIXTURES / "g8_single_process_a100.log").read_text()
    log = tmp_path / "isolated.log"
    log.write_text(re.sub(r"device +\d+ \[", "device  0 [", text))
    out = tmp_path / "out.jsonl"
    assert run("nccl-tests", str(log), "-o", str(out)) == 0
    meta = read_jsonl(out)[0]
    assert meta["nranks"] == 8 and meta["gpus_per_node"] == [8]


@pytest.mark.parametrize("stamp", ["2025-01-07T10:11:12.123456789Z ", "[2025-01-07 10:11:12] ",
                                   "Thu May  7 10:39:20 2020", "Jan 31 13:25:21 ", "10:11:12.345 "])
def test_timestamp_prefixes(tmp_path: Path, stamp: str) -> None:
    """kubectl/docker --timestamps, loggers, Open MPI 4 --timestamp-output (ctime glued to the
    tag), ts(1): the stamp in front of every line goes like a launcher's tag."""
    lines = (FIXTURES / "ompi_tag_output.log").read_text().splitlines()
    log = tmp_path / "stamped.log"
    log.write_text("".join(stamp + line + "\n" for line in lines))
    out = tmp_path / "out.jsonl"
    assert run("nccl-tests", str(log), "-o", str(out)) == 0
    records = read_jsonl(out)
    assert len(records) == 18 and records[0]["nranks"] == 2 and records[-1]["status"] == "complete"
    assert records[0]["import"]["runs"][0]["header_line"].startswith("nThread 1 nGpus 1")


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_byte_order_mark_and_utf16(tmp_path: Path, encoding: str) -> None:
    """A BOM must not hide the first line (here the header with the iteration counts); UTF-16
    is what PowerShell's > writes."""
    text = (FIXTURES / "g8_single_process_a100.log").read_text()
    log = tmp_path / "log.txt"
    log.write_text(text[text.index("# nThread"):], encoding=encoding)
    out = tmp_path / "out.jsonl"
    assert run("nccl-tests", str(log), "-o", str(out), "--collective", "allreduce") == 0
    records = read_jsonl(out)
    assert records[0]["nranks"] == 8 and records[1]["iterations"] is not None


def test_non_finite_numbers_are_an_error_not_a_traceback(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    for tool, fixture, old, new in [("nccl-tests", "ompi_tag_output.log", "4374.00", "nan"),
                                    ("nccl-tests", "ompi_tag_output.log", "4365.21", "inf"),
                                    ("osu", "osu_reduce_cuda_full_v7.3.log", "52.79", "nan")]:
        lines = (FIXTURES / fixture).read_text().splitlines()
        index = next(i for i, line in enumerate(lines) if old in line)
        lines[index] = lines[index].replace(old, new)
        log = tmp_path / f"{tool}.log"
        log.write_text("\n".join(lines) + "\n")
        out = tmp_path / "out.jsonl"
        assert run(tool, str(log), "-o", str(out)) == 2
        assert f"{log}:{index + 1}:" in error_line(capsys) and not out.exists()


def test_log_ending_inside_a_later_table_header(tmp_path: Path) -> None:
    """Two tables, the log cut inside the second one's column header: the first is imported,
    the second noted, the file marked truncated."""
    lines = (FIXTURES / "two_collectives.log").read_text().splitlines()
    second = [i for i, line in enumerate(lines) if "redop" in line][1]
    log = tmp_path / "cut.log"
    log.write_text("\n".join(lines[:second] + [lines[second][:60]]) + "\n")
    out = tmp_path / "out.jsonl"
    assert run("nccl-tests", str(log), "-o", str(out)) == 0
    records = read_jsonl(out)
    assert {r["collective"] for r in records[1:-1]} == {"allgather"} and records[-1]["status"] == "truncated"


def test_stdin_twice_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.jsonl"
    assert run("nccl-tests", "-", "-", "-o", str(out)) == 2
    assert "given twice" in error_line(capsys) and not out.exists()


def test_osu_header_with_squeezed_spaces(tmp_path: Path) -> None:
    """A paste that squeezed the runs of spaces ('# Size Avg Latency(us) Min Latency(us) …')."""
    text = (FIXTURES / "osu_reduce_cuda_full_v7.3.log").read_text()
    log = tmp_path / "squeezed.log"
    log.write_text(re.sub(r" +", " ", text))
    out = tmp_path / "out.jsonl"
    assert run("osu", str(log), "-o", str(out)) == 0
    first = read_jsonl(out)[1]
    assert (first["time_us"], first["time_us_min_rank"], first["time_us_max_rank"], first["iterations"]) == \
        (53.34, 24.80, 158.96, 1000)


def test_osu_bandwidth_table_is_refused_with_its_reason(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.jsonl"
    assert run("osu", str(FIXTURES / "osu_bw_v7.2_cuda.log"), "-o", str(out)) == 2
    assert "Bandwidth" in error_line(capsys) and not out.exists()
    # the table alone (no title), said to be an allreduce: its columns give it away
    lines = [line for line in (FIXTURES / "osu_bw_v7.2_cuda.log").read_text().splitlines()
             if "OSU MPI" not in line]
    log = tmp_path / "table.log"
    log.write_text("\n".join(lines) + "\n")
    assert run("osu", str(log), "-o", str(out), "--collective", "allreduce") == 2
    err = error_line(capsys)
    assert "not a latency table" in err and "Bandwidth (MB/s)" in err and not out.exists()


def test_osu_rocm_flavour_is_not_host_memory(tmp_path: Path) -> None:
    text = (FIXTURES / "osu_reduce_cuda_full_v7.3.log").read_text().replace("MPI-CUDA", "MPI-ROCM")
    log = tmp_path / "rocm.log"
    log.write_text(text)
    out = tmp_path / "out.jsonl"
    assert run("osu", str(log), "-o", str(out)) == 0
    assert read_jsonl(out)[0]["backend"]["device"] == "rocm"


V1_LOG = """\
nThread 1 nGpus 2 minBytes 33554432 maxBytes 33554432 step: 1048576(bytes) warmup iters: 5 iters: 20 validation: 1
# Using devices
#   Rank  0 on      node1 device  0 [0x06] Tesla P100-SXM2-16GB
#   Rank  1 on      node1 device  1 [0x07] Tesla P100-SXM2-16GB

#                                  out-of-place                    in-place
#      bytes             N    type      op     time  algbw  busbw      res     time  algbw  busbw      res
    33554432       8388608   float     sum    5.460   6.15   6.15    1e-06    5.432   6.18   6.18    1e-06
 Out of bounds values : 0 OK
 Avg bus bandwidth    : 6.165
"""


def test_nccl_tests_1x_layout_prints_milliseconds(tmp_path: Path) -> None:
    """nccl-tests 1.x (2017-18): columns "bytes N type op … res", time in ms
    (src/common.cu then: PRINT("  %7.3f  %5.2f  %5.2f  %7.0le", deltaSec * 1.0E3, …)); the
    lines follow those printf formats, the numbers are made up (algbw = bytes / time)."""
    log = tmp_path / "v1.log"
    log.write_text(V1_LOG)
    out = tmp_path / "out.jsonl"
    assert run("nccl-tests", str(log), "-o", str(out), "--collective", "allreduce") == 0
    records = read_jsonl(out)
    rows = records[1:-1]
    assert [(r["bytes"], r["count"], r["op"], r["time_us"]) for r in rows] == [
        (33554432, 8388608, "sum", 5460.0), (33554432, 8388608, "sum", 5432.0)]
    assert records[0]["nranks"] == 2 and records[0]["gpus_per_node"] == [2]
    assert any("ms" in n for n in records[0]["import"]["runs"][0]["notes"])


def test_rccl_tests_2_17_header() -> None:
    """rccl-tests 2.17 prints nccl-tests' new header with rccl- names, and RCCL's version
    block; the excerpt ends before its table, so a column header is added to parse it."""
    lines = (FIXTURES / "rccl_tests_2.17.9_gfx1151.log").read_text().splitlines()
    lines.append("#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   busbw #wrong")
    parser = nccl_tests._Parser()
    parser.parse(common.Log("rccl.log", lines))
    [run] = parser.runs
    assert run.version_line.startswith("rccl-tests version 2.17.9") and run.nccl_library == 22803
    assert run.nccl_version == "2.28.3-gfx1151-rccl:a188cf2" and run.binary == "all_reduce_perf"
    assert run.header["iters"] == 30 and [d["name"] for d in run.devices] == ["Radeon 8050S Graphics"]
