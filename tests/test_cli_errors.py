"""Every user mistake: one clear line on stderr, exit status 2, no traceback, nothing launched."""

import pytest

from cbtest import run_cli


@pytest.mark.parametrize("args, message", [
    (["run", "-b", "12X"], "cannot parse minbytes"),
    (["run", "-b", "1M", "-e", "8"], "larger than maxbytes"),
    (["run", "allscatter"], "unknown collective 'allscatter'"),
    (["run", "alltoallv", "-O", "skew=steep"], "-O skew=steep: expected a Zipf exponent"),
    (["run", "alltoallv", "-O", "skew=-1"], "the Zipf exponent must be from 0"),
    (["run", "alltoallv", "-O", "counts=/nonexistent.json"], "-O counts=/nonexistent.json: cannot read it"),
    (["run", "allreduce", "-O", "skew=1"], "describes alltoallv's count matrix; the run has no alltoallv"),
    (["run", "alltoallv", "-O", "skew=1,counts=x.json"], "one count matrix"),
    (["run", "-d", "float8"], "unknown datatype 'float8'"),
    (["run", "-o", "xor"], "unknown reduction op 'xor'"),
    (["run", "-n", "0"], "must be positive"),
    (["run", "-n", "-3"], "must be positive"),
    (["run", "-w", "-1"], "must not be negative"),
    (["run", "-np", "0"], "must be positive"),
    (["run", "-a", "7"], "invalid choice"),
    (["run", "--out", "/proc/forbidden/x.jsonl"], "cannot"),
    (["run", "-e", "4T"], "needs about"),
    (["run", "-r", "9", "-np", "2", "broadcast"], "root 9"),
    (["run", "--backend", "carrier-pigeon"], "unknown backend"),
    (["frobnicate"], "invalid choice"),
    (["report", "/nonexistent.jsonl"], "no such results file"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path):
    result = run_cli(args, cwd=tmp_path, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("collbench: error:")
    assert message in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert not list(tmp_path.rglob("*.jsonl"))  # nothing was measured or written


def test_unsupported_combination_named_explicitly_is_an_error(tmp_path):
    result = run_cli(["run", "allreduce", "-d", "float32", "-o", "avg", "-np", "2", "-e", "64"], cwd=tmp_path)
    assert result.returncode == 2
    assert "MPI has no native average operator" in result.stderr
    assert "Traceback" not in result.stderr


def test_existing_out_file_is_refused_and_kept(tmp_path):
    out = tmp_path / "keep.jsonl"
    out.write_text("old results\n")
    result = run_cli(["run", "--out", str(out)], cwd=tmp_path)
    assert result.returncode == 2 and "already exists" in result.stderr
    assert out.read_text() == "old results\n"
