"""Every user mistake: one clear line on stderr, exit status 2, no traceback, nothing launched."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from cbtest import one_job_at_a_time, run_cli


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


# -- damaged, foreign or odd input files: every reader, one line ------------------------------

METADATA = {"type": "metadata", "schema": 1, "nranks": 2, "nnodes": 1, "nodes": ["n0"],
            "ranks_per_node": [2], "node_of_rank": [0, 0],
            "mpi": {"library_version": "MPICH Version: 5.0.2", "thread_level": "single"},
            "spec": {"backend": "mpi"}, "start_time": "2026-11-26T00:00:00+00:00",
            "command": "collbench run (test)"}


def _row(nbytes: int = 1024, time_us: float = 10.0, placement: str = "out_of_place") -> dict:
    gbps = nbytes / (time_us * 1e-6) / 1e9 if time_us > 0 else 0.0
    return {"type": "row", "collective": "allreduce", "algorithm": "ring", "backend": "mpi",
            "executor": "python", "dtype": "float32", "op": "sum", "root": None,
            "placement": placement, "nranks": 2, "bytes": nbytes, "count": nbytes // 4,
            "iterations": 10, "warmup": 5, "timing": "batch", "aggregation": "max",
            "time_us": time_us, "time_us_min_rank": time_us, "time_us_max_rank": time_us,
            "algbw_gbps": gbps, "busbw_gbps": gbps, "wrong": 0}


def write_results(path, metadata=None, rows=None, summary=True, encoding="utf-8"):
    records = [metadata or METADATA] + (rows if rows is not None else
                                        [_row(1024), _row(1024, placement="in_place"), _row(4096, 20.0)])
    if summary:
        records.append({"type": "summary", "rows": len(records) - 1, "status": "ok"})
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding=encoding)
    return path


def assert_one_error_line(result, message="", status=2):
    assert result.returncode == status, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("collbench: "), lines[0]
    assert message in lines[0], lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def _without(record, key):
    return {k: v for k, v in record.items() if k != key}


# (what is wrong with the file, how to make it, what the line says)
DAMAGED = [
    ("row without time_us", lambda: (None, [_without(_row(), "time_us")]), "row has no 'time_us'"),
    ("row with a null time_us", lambda: (None, [{**_row(), "time_us": None}]), "row has no 'time_us'"),
    ("row with text for a number", lambda: (None, [{**_row(), "bytes": "8"}]),
     "row field 'bytes' must be a whole number"),
    ("row with NaN", lambda: (None, [{**_row(), "time_us": float("nan")}]), "must be a finite number"),
    ("row with an unknown placement", lambda: (None, [{**_row(), "placement": "sideways"}]), "placement"),
    ("metadata with text for an object", lambda: ({**METADATA, "mpi": "MPICH"}, None),
     "metadata field 'mpi' must be an object"),
    ("metadata with text for the schema", lambda: ({**METADATA, "schema": "one"}, None),
     "metadata field 'schema' must be a whole number"),
]


@pytest.mark.parametrize("command", [["report", "{f}"], ["report", "{f}", "--format", "csv"],
                                     ["compare", "{g}", "{f}"], ["model", "check", "{f}"],
                                     ["plot", "{f}", "-o", "out.png"]],
                         ids=lambda c: " ".join(c[:2]))
@pytest.mark.parametrize("what, make, message", DAMAGED, ids=[d[0] for d in DAMAGED])
def test_damaged_results_file_is_one_line_in_every_reader(command, what, make, message, tmp_path):
    metadata, rows = make()
    bad = write_results(tmp_path / "bad.jsonl", metadata, rows)
    good = write_results(tmp_path / "good.jsonl")
    args = [a.format(f=bad, g=good) for a in command]
    result = run_cli(args, cwd=tmp_path, timeout=60)
    assert_one_error_line(result, message)
    assert "bad.jsonl:" in result.stderr  # names the file and the line


def test_results_file_saved_with_a_byte_order_mark_is_read(tmp_path):
    path = write_results(tmp_path / "bom.jsonl", encoding="utf-8-sig")
    result = run_cli(["report", str(path)], cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "allreduce" in result.stdout


def test_binary_results_file_names_the_line(tmp_path):
    path = tmp_path / "binary.jsonl"
    path.write_bytes(b'{"type": "metadata"}\n' + bytes(range(128, 256)))
    assert_one_error_line(run_cli(["report", str(path)], cwd=tmp_path, timeout=60), "binary.jsonl:2: not UTF-8")


def test_directory_given_for_a_results_file(tmp_path):
    (tmp_path / "d").mkdir()
    write_results(tmp_path / "a.jsonl")
    result = run_cli(["compare", "a.jsonl", "d"], cwd=tmp_path, timeout=60)
    assert_one_error_line(result, "d is a directory, not a results file")


def test_compare_of_rows_with_zero_time_does_not_crash(tmp_path):
    a = write_results(tmp_path / "a.jsonl", rows=[_row(1024, 0.0)])
    result = run_cli(["compare", str(a), str(a)], cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "n/a" in result.stdout and "Traceback" not in result.stderr


@pytest.mark.parametrize("args, message", [
    (["--alpha", "2"], "argument --alpha: must be between 0 and 1"),
    (["--alpha", "-1"], "argument --alpha: must be between 0 and 1"),
    (["--alpha=-1"], "argument --alpha: must be between 0 and 1"),
    (["--alpha", "nan"], "argument --alpha: must be between 0 and 1"),
    (["--fail-above", "1e400"], "argument --fail-above: expected a finite"),
    (["--fail-above", "-5%"], "write --fail-above=-5%"),
])
def test_compare_option_values(args, message, tmp_path):
    a = write_results(tmp_path / "a.jsonl")
    assert_one_error_line(run_cli(["compare", str(a), str(a), *args], cwd=tmp_path, timeout=60), message)


def test_fraction_errors_name_their_own_option(tmp_path):
    a = write_results(tmp_path / "a.jsonl")
    result = run_cli(["model", "check", str(a), "--tolerance", "-1"], cwd=tmp_path, timeout=60)
    assert_one_error_line(result, "argument --tolerance: must not be negative")
    assert "--fail-above" not in result.stderr


def test_model_predict_with_an_empty_size_list(tmp_path):
    assert_one_error_line(run_cli(["model", "predict", "--sizes", ",,"], cwd=tmp_path, timeout=60),
                          "--sizes: no sizes given")


# -- output paths ------------------------------------------------------------------------------

def test_plot_to_a_path_that_cannot_be_written(tmp_path):
    a = write_results(tmp_path / "a.jsonl")
    (tmp_path / "file.txt").write_text("x")
    result = run_cli(["plot", str(a), "-o", "file.txt/fig.png"], cwd=tmp_path, timeout=60)
    assert_one_error_line(result, "file.txt is not a directory")
    assert (tmp_path / "file.txt").read_text() == "x"


def test_plot_latency_of_rows_without_a_positive_size(tmp_path):
    a = write_results(tmp_path / "a.jsonl", rows=[_row(0, 5.0)])
    result = run_cli(["plot", str(a), "-o", "fig.png", "--kind", "latency"], cwd=tmp_path, timeout=60)
    if "collbench[plot]" in result.stderr:
        pytest.skip("matplotlib is not installed")
    assert_one_error_line(result, "nothing to plot")


def test_run_trace_onto_an_existing_file_is_refused_before_launch_and_kept(tmp_path):
    kept = write_results(tmp_path / "old.jsonl")
    before = kept.read_bytes()
    result = run_cli(["run", "allreduce", "-np", "2", "-e", "8", "-n", "1", "-w", "0",
                      "--trace", str(kept), "--out", "new.jsonl"], cwd=tmp_path, timeout=120)
    assert_one_error_line(result, "already exists; choose another --trace")
    assert kept.read_bytes() == before
    assert not (tmp_path / "new.jsonl").exists()  # nothing ran


@pytest.mark.parametrize("trace, message", [("same.jsonl", "is the results file (--out)"),
                                             ("file.txt/t.json", "file.txt is not a directory")])
def test_run_trace_path_mistakes_before_launch(trace, message, tmp_path):
    (tmp_path / "file.txt").write_text("x")
    result = run_cli(["run", "allreduce", "-np", "2", "-e", "8", "--trace", trace, "--out", "same.jsonl"],
                     cwd=tmp_path, timeout=120)
    assert_one_error_line(result, message)
    assert not (tmp_path / "same.jsonl").exists()


def _run_cli_on_one_core(args, cwd, env=None):
    """The CLI pinned to one core, where `-np 2` is oversubscribed: any launch would first
    print the oversubscription warning, so one stderr line proves nothing was launched."""
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("needs os.sched_setaffinity")
    core = min(os.sched_getaffinity(0))
    full_env = {k: v for k, v in os.environ.items() if k not in ("PMI_RANK", "PMIX_RANK", "COLLBENCH_LAUNCHED")}
    full_env.update(env or {})
    with one_job_at_a_time():
        return subprocess.run([sys.executable, "-m", "collbench", *args], capture_output=True, text=True,
                              timeout=120, cwd=cwd, env=full_env,
                              preexec_fn=lambda: os.sched_setaffinity(0, {core}))


@pytest.mark.parametrize("extra, message", [
    (["--algo", "auto", "--profile", "broken.json"], "profile broken.json is not valid JSON"),
    (["--algo", "auto", "--auto-from", "damaged.jsonl"], "damaged.jsonl:2: row has no 'time_us'"),
])
def test_run_checks_auto_inputs_before_launching(extra, message, tmp_path):
    (tmp_path / "broken.json").write_text('{"name": "x", ')
    write_results(tmp_path / "damaged.jsonl", rows=[_without(_row(), "time_us")])
    result = _run_cli_on_one_core(["run", "allreduce", "-np", "2", "-e", "8", *extra, "--out", "o.jsonl"],
                                  tmp_path)
    assert_one_error_line(result, message)
    assert not (tmp_path / "o.jsonl").exists()


def test_malformed_fault_variable_leaves_no_results_file(tmp_path):
    result = run_cli(["run", "allreduce", "-np", "2", "-e", "8", "-n", "1", "-w", "0", "--out", "o.jsonl"],
                     cwd=tmp_path, env={"COLLBENCH_INJECT_FAULT": "garbage"}, timeout=120)
    assert_one_error_line(result, "COLLBENCH_INJECT_FAULT='garbage'")
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize("args, message", [
    (["-T", "inf"], "argument -T/--timeout: expected a finite number"),
    (["--target-time", "inf"], "argument --target-time: expected a finite number"),
    (["-e", "-1K"], "write -e=-1K"),
])
def test_run_number_mistakes(args, message, tmp_path):
    result = run_cli(["run", "allreduce", "-np", "2", "-e", "8", *args, "--out", "o.jsonl"], cwd=tmp_path,
                     timeout=120)
    assert_one_error_line(result, message)
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize("args, message", [
    (["--out", "kept.jsonl"], "kept.jsonl already exists and is not a collbench profile"),
    (["--out", "file.txt/p.json"], "file.txt is not a directory"),
    (["--max-bytes", "0"], "--max-bytes 0: calibrate needs at least 16K"),
    (["--dtypes", ","], "--dtypes needs at least one data type"),
    (["--dtypes", "float8"], "unknown data type 'float8'"),
    (["--target-time", "nan"], "argument --target-time: expected a finite number"),
    (["--target-time", "0"], "argument --target-time: must be positive"),
])
def test_calibrate_mistakes_before_measuring(args, message, tmp_path):
    kept = write_results(tmp_path / "kept.jsonl")
    before = kept.read_bytes()
    (tmp_path / "file.txt").write_text("x")
    result = run_cli(["calibrate", "-np", "2", "--out", "p.json", *args], cwd=tmp_path, timeout=120,
                     env={"XDG_CONFIG_HOME": str(tmp_path / "config")})
    assert_one_error_line(result, message)
    assert kept.read_bytes() == before
    assert not (tmp_path / "p.json").exists()


def test_calibrate_from_logs_never_replaces_a_results_file(tmp_path):
    kept = write_results(tmp_path / "kept.jsonl")
    before = kept.read_bytes()
    result = run_cli(["calibrate", "--from", str(kept), "--profile", "dgx-a100", "--out", str(kept)],
                     cwd=tmp_path, timeout=60)
    assert_one_error_line(result, "already exists and is not a collbench profile")
    assert kept.read_bytes() == before


# -- verify ------------------------------------------------------------------------------------

@pytest.mark.parametrize("algo, message", [
    ("", "--algo needs at least one algorithm name"),
    (",", "--algo needs at least one algorithm name"),
    ("topk_rd", "--algo topk_rd: compressed allreduces are not symbolic schedules"),
    ("native", "--algo native: the library's own collective has no schedule"),
])
def test_verify_algorithm_names(algo, message, tmp_path):
    result = run_cli(["verify", "--max-ranks", "2", "--extra-ranks", "none", "-j", "1", "--algo", algo],
                     cwd=tmp_path, timeout=120)
    assert_one_error_line(result, message)


# -- Slurm sweep directories -------------------------------------------------------------------

@pytest.mark.parametrize("field, value, message", [
    ("node_counts", ["x"], "'node_counts' must be a list of whole numbers"),
    ("node_counts", 4, "'node_counts' must be a list of whole numbers"),
    ("runs", ["a"], "'runs' must be a list of objects"),
    ("sizes", [8], "'sizes' must be a list of text"),
    ("schema", "1", "'schema' must be a whole number"),
])
def test_damaged_sweep_plan_is_one_line(field, value, message, tmp_path):
    d = tmp_path / "sweep"
    d.mkdir()
    plan = {"type": "collbench-sweep", "schema": 1, "cluster": "t", "job_id": "1", "node_counts": [1],
            "ranks_per_node": 2, "runs": [{"name": "a", "args": []}], field: value}
    (d / "sweep.json").write_text(json.dumps(plan))
    (d / "steps.ndjson").write_text(json.dumps({"event": "step", "nodes": 1, "run": "a", "status": "ok"}) + "\n")
    write_results(d / "N1-a.jsonl")
    assert_one_error_line(run_cli(["report", str(d)], cwd=tmp_path, timeout=60), message)


def test_sweep_step_record_with_a_bad_node_count_is_a_warning(tmp_path):
    d = tmp_path / "sweep"
    d.mkdir()
    plan = {"type": "collbench-sweep", "schema": 1, "node_counts": [1], "ranks_per_node": 2,
            "runs": [{"name": "a", "args": []}]}
    (d / "sweep.json").write_text(json.dumps(plan))
    (d / "steps.ndjson").write_text(json.dumps({"event": "step", "nodes": "x", "run": "a"}) + "\n")
    result = run_cli(["report", str(d)], cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "nodes 'x'; ignored" in result.stdout + result.stderr


# -- the last line of defence: cli.main ----------------------------------------------------------

BUGGY_PLUGIN = '''
from collbench.algorithms import Collective, ring
from collbench.algorithms.registry import register

def check(problem, options):
    return {}["boom"]

register("buggy_ring", Collective.ALLREDUCE, ring.allreduce, defaults={"channels": 1}, check=check,
         description="a ring whose precondition has a bug (tests/test_cli_errors.py)")
'''


def test_unexpected_error_is_one_line_with_where_it_happened(tmp_path):
    (tmp_path / "buggy.py").write_text(BUGGY_PLUGIN)
    result = run_cli(["list", "--plugin", "./buggy.py"], cwd=tmp_path, timeout=60)
    assert_one_error_line(result, "internal error: KeyError: 'boom' at buggy.py:6", status=70)
    shown = run_cli(["list", "--plugin", "./buggy.py"], cwd=tmp_path, timeout=60,
                    env={"COLLBENCH_TRACEBACK": "1"})
    assert "Traceback" in shown.stderr


def test_os_error_from_any_command_is_one_line(tmp_path, monkeypatch, capsys):
    """An OSError no command turned into a UsageError itself (a disk failing under a read) is
    one line naming the path and the reason, exit status 2: the CLI's safety net."""
    import errno

    import collbench.results.report as report
    from collbench.cli import main

    def failing(path):
        raise OSError(errno.EIO, "Input/output error", str(path))

    write_results(tmp_path / "a.jsonl")
    monkeypatch.setattr(report, "read_results", failing)
    for name in ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert main(["report", str(tmp_path / "a.jsonl")]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines == [f"collbench: error: {tmp_path / 'a.jsonl'}: Input/output error"]


def test_leftover_arguments_point_at_the_command_help(tmp_path):
    write_results(tmp_path / "a.jsonl")
    result = run_cli(["report", "a.jsonl", "--bogus"], cwd=tmp_path, timeout=60)
    assert_one_error_line(result, "unrecognized arguments: --bogus (see `collbench report --help`)")


def test_interrupt_is_one_line_and_status_130(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PMI_RANK", "PMIX_RANK", "COLLBENCH_LAUNCHED")}
    for _ in range(3):  # a signal before Python's handler is installed kills it instead: retry
        proc = subprocess.Popen([sys.executable, "-m", "collbench", "import", "nccl-tests", "-", "-o", "x.jsonl"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, cwd=tmp_path, env=env)
        time.sleep(3)  # reading the log from stdin
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        if proc.returncode != -signal.SIGINT:
            break
    assert proc.returncode == 130, err
    assert err.strip() == "collbench: interrupted"
    assert not (tmp_path / "x.jsonl").exists()


# slurm and workload generation-time checks

@pytest.mark.parametrize("args, message", [
    (["slurm", "--cluster", "generic", "-b", "1G", "-e", "1K"], "larger than maxbytes"),
    (["slurm", "--cluster", "generic", "--args", "-n abc"], "argument -n/--iters: expected a whole number"),
    (["slurm", "--cluster", "generic", "--run", "x:--algo nosuch"], "run 'x' would fail in the job: unknown algorithm"),
    (["slurm", "--cluster", "generic", "--collectives", ""], "--collectives '': name at least one"),
    (["slurm", "--cluster", "generic", "-J", "a b"], "-J/--job-name 'a b'"),
    (["slurm", "--cluster", "generic", "--python", ""], "--python '': give the Python"),
    (["workload", "predict", "gpt2", "--gpus-per-node", "0"], "argument --gpus-per-node: must be positive"),
    (["workload", "predict", "gpt2", "--mfu", "1.5"], "argument --mfu"),
    (["workload", "predict", "gpt2", "--plot", "file.txt/p.png"], "file.txt is not a directory"),
    (["workload", "from-hf", "missing.json", "--out", "file.txt"], "already exists"),
])
def test_generation_time_mistakes_write_and_print_nothing(args, message, tmp_path):
    (tmp_path / "file.txt").write_text("x")
    result = run_cli([*args, "-o", "job.sbatch"] if args[0] == "slurm" else args, cwd=tmp_path, timeout=60)
    assert_one_error_line(result, message)
    assert result.stdout == "" and not (tmp_path / "job.sbatch").exists()
    assert (tmp_path / "file.txt").read_text() == "x"


# run, trace, native build and import checks --------------------------------------------------
# Ranks started by mpiexec directly (without collbench's launcher and its checks), Ctrl-C, the
# native build variables, bounded operation counts, import's --dtype and --collective.

def _without_job_variables(extra=None):
    env = {k: v for k, v in os.environ.items() if k not in ("PMI_RANK", "PMIX_RANK", "COLLBENCH_LAUNCHED")}
    env.update(extra or {})
    return env


def _direct_mpiexec(args, cwd, env=None, timeout=120):
    """``mpiexec -n 2 python -m collbench ARGS``, as a user's own job script starts the ranks."""
    from collbench.run.launcher import find_mpiexec

    with one_job_at_a_time():
        return subprocess.run([str(find_mpiexec()), "-n", "2", sys.executable, "-m", "collbench", *args],
                              cwd=cwd, env=_without_job_variables(env), capture_output=True, text=True,
                              timeout=timeout)


def test_ranks_started_directly_refuse_an_existing_results_file(tmp_path):
    kept = write_results(tmp_path / "old.jsonl")
    before = kept.read_bytes()
    result = _direct_mpiexec(["run", "allreduce", "-e", "8", "-n", "1", "-w", "0", "--out", "old.jsonl"], tmp_path)
    assert_one_error_line(result, "results file old.jsonl already exists; choose another --out")
    assert kept.read_bytes() == before


def test_ranks_started_directly_refuse_a_trace_onto_the_results_file(tmp_path):
    result = _direct_mpiexec(["run", "allreduce", "--algo", "ring", "-e", "8", "-n", "1", "-w", "0",
                              "--trace", "same.jsonl", "--out", "same.jsonl"], tmp_path)
    assert_one_error_line(result, "--trace same.jsonl is the results file (--out)")
    assert not (tmp_path / "same.jsonl").exists()


def _interrupted(command, cwd, results, lines=3):
    """Start ``command`` in a session of its own, as a shell starts a job; once ``lines`` records
    are in ``results``, SIGINT its whole process group, as Ctrl-C in a terminal does."""
    with one_job_at_a_time():
        proc = subprocess.Popen(command, cwd=cwd, env=_without_job_variables(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if results.exists() and len(results.read_text().splitlines()) >= lines:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


def _assert_rows_kept(path):
    from collbench.results.files import read_results

    lines = path.read_text().splitlines()
    assert all(json.loads(line) for line in lines)  # no torn line
    results = read_results(path)
    assert len(results.rows) >= 2 and not results.complete  # the rows measured, no summary


@pytest.mark.parametrize("how", ["launcher", "mpiexec"])
def test_ctrl_c_during_a_run_is_one_line_status_130_and_keeps_the_rows(how, tmp_path):
    from collbench.run.launcher import find_mpiexec

    args = ["run", "allreduce", "-b", "8", "-e", "64M", "--out", "x.jsonl"]
    command = ([sys.executable, "-m", "collbench", *args, "-np", "2"] if how == "launcher" else
               [str(find_mpiexec()), "-n", "2", sys.executable, "-m", "collbench", *args])
    status, out, err = _interrupted(command, tmp_path, tmp_path / "x.jsonl")
    assert status == 130, err
    assert err.strip() == "collbench: interrupted"
    assert "Traceback" not in out + err and "Abort" not in out + err
    _assert_rows_kept(tmp_path / "x.jsonl")


def test_nccl_selection_refused_or_warned_before_launch(tmp_path):
    refused = run_cli(["run", "allreduce", "-np", "2", "-e", "8", "--nccl-algo", "Ring;Tree", "--out", "o.jsonl"],
                      cwd=tmp_path, timeout=60)
    assert_one_error_line(refused, "--nccl-algo Ring;Tree: every entry but the first needs a function prefix")
    assert not (tmp_path / "o.jsonl").exists()
    from collbench.backends.nccl_env import selection_warnings

    assert selection_warnings("ring", "ll128") == [] and selection_warnings(None, None) == []
    (warning,) = selection_warnings("allreduce:Rign,tree", None)
    assert "and Rign is not a name NCCL 2.30 knows" in warning and "tree is not" not in warning
    (warning,) = selection_warnings("Rign,Tre", None)
    assert "Rign, Tre are not names NCCL 2.30 knows" in warning and "as if they were not there" in warning
    (warning,) = selection_warnings(None, "^LL129")
    assert warning.startswith("--nccl-proto ^LL129: NCCL ignores names")


def test_ctrl_c_during_a_workload_run_keeps_its_records(tmp_path):
    """`workload run` stops on Ctrl-C as `run` does: no MPI_Abort, one line, status 130, and
    every record written so far intact (no step summary: readers say it did not finish)."""
    command = [sys.executable, "-m", "collbench", "workload", "run", "gpt2", "--plan", "ddp",
               "-np", "2", "--out", "w.jsonl"]
    status, out, err = _interrupted(command, tmp_path, tmp_path / "w.jsonl", lines=2)  # metadata, a row
    assert status == 130, err
    assert err.strip() == "collbench: interrupted"
    assert "Traceback" not in out + err and "Abort" not in out + err
    records = [json.loads(line) for line in (tmp_path / "w.jsonl").read_text().splitlines()]
    assert records[0]["type"] == "metadata" and records[1]["type"] == "row"
    assert "summary" not in {r["type"] for r in records}


def test_ctrl_c_reaches_a_rank_waiting_inside_mpi(tmp_path):
    """Rank 1 stalls inside the first operation (Python code), so rank 0 waits inside MPI, where
    Python cannot raise KeyboardInterrupt: the rank still stops at once, with rank 0's line."""
    from collbench.run.launcher import find_mpiexec

    env = _without_job_variables({"COLLBENCH_INJECT_FAULT": "stall:1"})
    results = tmp_path / "x.jsonl"
    with one_job_at_a_time():
        proc = subprocess.Popen([str(find_mpiexec()), "-n", "2", sys.executable, "-m", "collbench", "run",
                                 "allreduce", "-e", "8", "-T", "0", "--out", "x.jsonl"], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (results.exists() and results.read_text().endswith("\n")):
            time.sleep(0.05)
        time.sleep(1.0)  # into the stalled operation (-T 0: no deadline would ever end it)
        started = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert time.monotonic() - started < 10
    assert err.strip() == "collbench: interrupted"
    assert [json.loads(line)["type"] for line in results.read_text().splitlines()] == ["metadata"]


@pytest.mark.parametrize("variable, value, message", [
    ("COLLBENCH_NATIVE_CFLAGS", '-O2 -DNAME="x', "$COLLBENCH_NATIVE_CFLAGS='-O2 -DNAME=\"x': no closing quotation"),
    ("COLLBENCH_CSRC", ".", "$COLLBENCH_CSRC=.: no native_executor.c, native_executor.h there"),
    ("COLLBENCH_CSRC", "missing", "$COLLBENCH_CSRC=missing: no such directory"),
])
def test_native_build_variables_are_checked_before_launch(variable, value, message, tmp_path):
    result = run_cli(["run", "allreduce", "-np", "2", "-e", "8", "--out", "o.jsonl"], cwd=tmp_path,
                     env={variable: value}, timeout=60)
    assert_one_error_line(result, message)
    assert not (tmp_path / "o.jsonl").exists()


def test_native_build_variables_are_checked_by_ranks_started_directly(tmp_path):
    result = _direct_mpiexec(["run", "allreduce", "-e", "8", "--out", "o.jsonl"], tmp_path,
                             env={"COLLBENCH_NATIVE_CFLAGS": "-DNAME='x"})
    assert_one_error_line(result, "$COLLBENCH_NATIVE_CFLAGS=\"-DNAME='x\": no closing quotation")
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize("args, message", [
    (["-n", "10000001"], "argument -n/--iters: must be at most 10000000, got 10000001"),
    (["-n", "1" + "0" * 20], "argument -n/--iters: must be at most 10000000"),
    (["-w", "100000000"], "argument -w/--warmup_iters/--warmup-iters: must be at most 10000000"),
    (["-c", "1001"], "argument -c/--check: must be at most 1000"),
    (["--trace", "t.json", "--trace-iters", "1001"], "argument --trace-iters: must be at most 1000"),
    (["--backend", "nccl", "-G", "100000000"], "argument -G/--cudagraph: must be at most 10000000"),
])
def test_operation_counts_are_bounded(args, message, tmp_path):
    result = run_cli(["run", "allreduce", "-np", "2", "-e", "8", *args, "--out", "o.jsonl"], cwd=tmp_path,
                     timeout=60)
    assert_one_error_line(result, message)
    assert not (tmp_path / "o.jsonl").exists()


def _import(args, tmp_path):
    from pathlib import Path

    fixtures = Path(__file__).parent / "importers" / "fixtures"
    return run_cli(["import", args[0], str(fixtures / args[1]), *args[2:], "-o", "o.jsonl"], cwd=tmp_path,
                   timeout=60)


@pytest.mark.parametrize("args, message", [
    (["osu", "osu_allreduce_v5.6.2_no_datatype.log", "--dtype", "float8"],
     "--dtype 'float8': not a data type collbench knows (known: int8, "),
    (["osu", "osu_allreduce_v5.6.2_no_datatype.log", "--dtype", "all"], "--dtype 'all': give one data type"),
    (["nccl-tests", "ompi_tag_output.log", "--dtype", "float"],
     "--dtype applies to OSU logs; nccl-tests logs give the type of every row"),
    (["nccl-tests", "ompi_tag_output_no_name.log", "--collective", "nosuch"],
     "--collective 'nosuch': not a collective collbench knows (known: allreduce, "),
    (["osu", "osu_allreduce_v5.6.2_no_datatype.log", "--collective", "allscatter"],
     "--collective 'allscatter': not a collective collbench knows"),
])
def test_import_names_are_checked(args, message, tmp_path):
    assert_one_error_line(_import(args, tmp_path), message)
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize("args, field, value", [
    (["osu", "osu_allreduce_v5.6.2_no_datatype.log", "--dtype", "MPI_DOUBLE"], "dtype", "float64"),
    (["osu", "osu_allreduce_v5.6.2_no_datatype.log", "--dtype", "half"], "dtype", "float16"),
    (["nccl-tests", "ompi_tag_output_no_name.log", "--collective", "all_reduce_perf"], "collective", "allreduce"),
])
def test_import_names_are_written_as_collbench_names(args, field, value, tmp_path):
    result = _import(args, tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()[1:-1]]
    assert rows and {r[field] for r in rows} == {value}


# local rank counts
@pytest.mark.parametrize("args", [["run", "allreduce", "-e", "8"], ["workload", "run", "gpt2"],
                                  ["calibrate"]])
def test_local_rank_counts_are_bounded(args, tmp_path):
    """A mistyped -np 100000 is refused before a process starts (it would fork until the machine
    stopped)."""
    result = run_cli([*args, "-np", "100000"], cwd=tmp_path, timeout=60)
    assert_one_error_line(result, "argument -np/--nprocs: must be at most 1024, got 100000")
    assert not list(tmp_path.iterdir())
