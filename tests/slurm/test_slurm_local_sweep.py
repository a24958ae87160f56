"""The real sweep script on a real (local) 2-node Slurm cluster: sbatch --wait, then the results
directory, the job metadata, two nodes seen by MPI, a hierarchical algorithm across them, the
node-count report with the network baseline; a sweep whose steps hang, fail or do not fit loses
none of the others; and a step that fails on a bad node is retried on the others."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest

from collbench.results.files import read_results
from collbench.results.sweep_report import load_sweep

pytestmark = pytest.mark.slurm


def _report(cluster, path, *args):
    result = subprocess.run([sys.executable, "-m", "collbench", "report", str(path), *args],
                            env=cluster.env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def sweep(slurm_cluster, tmp_path_factory):
    """The local profile as `collbench slurm` writes it: allreduce, native and hierarchical,
    1 and 2 nodes x 2 ranks, launched by srun --mpi=pmi2 with the pip MPICH wheel."""
    workdir = tmp_path_factory.mktemp("sweep")
    script = slurm_cluster.generate(workdir)
    job = slurm_cluster.submit_and_wait(script)
    return slurm_cluster, job


def test_sweep_job_succeeds(sweep):
    cluster, job = sweep
    assert job.returncode == 0, f"{job.output}\n{cluster.logs()}"
    assert "===== BEGIN N=2 run=mpi nodes=n1,n2 ranks=4 =====" in job.output
    assert "done: 0 of 2 step(s) failed" in job.output


def test_results_directory(sweep):
    _, job = sweep
    names = {p.name for p in job.results.iterdir()}
    assert {"sweep.json", "steps.ndjson", "N1-mpi.jsonl", "N2-mpi.jsonl", "job", "logs"} <= names
    plan = json.loads((job.results / "sweep.json").read_text())
    assert plan["cluster"] == "local" and plan["job_id"] == job.job_id
    assert plan["node_counts"] == [1, 2] and plan["nodes"] == ["n1", "n2"]
    assert plan["ranks_per_node"] == 2 and plan["launcher"] == "srun" and plan["srun_mpi"] == "pmi2"
    steps = [json.loads(line) for line in (job.results / "steps.ndjson").read_text().splitlines()]
    assert [(s["nodes"], s["status"]) for s in steps if s["event"] == "step"] == [(1, "ok"), (2, "ok")]
    assert [s["nodelist"] for s in steps if s["event"] == "step"] == ["n1", "n1,n2"]
    assert steps[-1]["event"] == "end" and steps[-1]["failed"] == 0 and steps[-1]["suspect_hosts"] == []
    # the network baseline: one pair (no GPUs: host memory over MPI), one rank on each of two nodes
    baseline = [s for s in steps if s["event"] == "baseline"]
    assert [(b["pair"], b["backend"], b["status"], b["nodelist"]) for b in baseline] == [("pair", "mpi", "ok", "n1,n2")]
    pair = read_results(job.results / "baseline" / "pair.jsonl")
    assert (pair.metadata["nranks"], pair.metadata["nnodes"]) == (2, 2)
    assert {r.collective for r in pair.rows} == {"allgather"} and all(r.wrong == 0 for r in pair.rows)


def test_job_metadata(sweep):
    _, job = sweep
    meta = job.results / "job"
    assert f"JobId={job.job_id}" in (meta / "scontrol.txt").read_text()
    assert (meta / "nodes.txt").read_text().split() == ["n1", "n2"]
    assert f"SLURM_JOB_ID={job.job_id}" in (meta / "env.txt").read_text()
    assert (meta / "modules.txt").is_file()
    assert "pmi2" in (meta / "srun-mpi-list.txt").read_text()
    assert (meta / "nvidia-smi-topo.txt").is_file()
    # no GPU here: the NCCL probe is skipped, with the reason, and the sweep went on
    assert (meta / "nccl-probe.txt").read_text().startswith("skipped: ")
    assert "rank 0 of 2" in (meta / "preflight.txt").read_text()
    assert "cb_main" in (meta / "script.sbatch").read_text()


def test_mpi_sees_two_real_nodes(sweep):
    _, job = sweep
    one = read_results(job.results / "N1-mpi.jsonl")
    two = read_results(job.results / "N2-mpi.jsonl")
    assert one.complete and two.complete
    assert (one.metadata["nranks"], one.metadata["nnodes"]) == (2, 1)
    # MPICH's shared-memory split (not --ranks-per-node emulation) found two nodes
    assert (two.metadata["nranks"], two.metadata["nnodes"]) == (4, 2)
    assert two.metadata["nodes"] == ["n1", "n2"] and two.metadata["ranks_per_node"] == [2, 2]
    assert {p["host"] for p in two.metadata["processes"]} == {"n1", "n2"}
    assert two.metadata["env"]["SLURM_JOB_ID"] == job.job_id
    assert two.summary["wrong_total"] == 0


def test_hierarchical_ran_across_two_nodes(sweep):
    _, job = sweep
    two = read_results(job.results / "N2-mpi.jsonl")
    rows = [r for r in two.rows if r.algorithm == "hierarchical"]
    assert rows, f"no hierarchical rows; skipped: {two.summary.get('skipped')}"
    assert all(r.nranks == 4 and r.wrong == 0 for r in rows)
    assert {r.bytes for r in rows} == {r.bytes for r in two.rows if r.algorithm == "native"}


def test_node_count_report(sweep):
    cluster, job = sweep
    text = _report(cluster, job.results)
    assert f"cluster local · job {job.job_id}" in text
    assert "N=1" in text and "N=2" in text and "4 ranks" in text
    assert "algorithm hierarchical" in text and "algorithm native" in text
    assert "run mpi: N=1 ok; N=2 ok" in text
    assert "# network baseline (2 nodes x 1 rank" in text and "pair on n1,n2: " in text
    assert "# the wire allows about" in text and "#   peak busbw across nodes" in text
    rows = list(csv.DictReader(io.StringIO(_report(cluster, job.results, "--format", "csv"))))
    assert {(r["algorithm"], r["nodes"], r["status"]) for r in rows} == {
        (a, n, "ok") for a in ("native", "hierarchical") for n in ("1", "2")}
    assert all(float(r["busbw_gbps"]) >= 0 for r in rows)
    markdown = _report(cluster, job.results, "--format", "markdown")
    assert "size (B) |" in markdown and "N=2 (4 ranks)" in markdown


def test_mpiexec_launcher(slurm_cluster, tmp_path):
    """generic.sbatch's other launcher: the MPI's own mpiexec (here the wheel's hydra), restricted
    to the first k hosts of the allocation, must also give two real nodes."""
    script = slurm_cluster.generate(tmp_path, "--launcher", "mpiexec", "--nodes", "1,2",
                                    "--run", "mpi:--backend mpi", "-b", "8", "-e", "8")
    job = slurm_cluster.submit_and_wait(script, env={"CB_NODE_COUNTS": "2"})
    assert job.returncode == 0, job.output
    meta = read_results(job.results / "N2-mpi.jsonl").metadata
    assert (meta["nranks"], meta["nnodes"], meta["nodes"]) == (4, 2, ["n1", "n2"])
    assert json.loads((job.results / "sweep.json").read_text())["launcher"] == "mpiexec"


# A sweep that goes wrong in every way a real one can: a hung step (killed by the step timeout),
# a failing step, and a node count the allocation does not have. Nothing else is lost.
RELIABILITY_RUNS = """
ok    --backend mpi
hang  COLLBENCH_INJECT_FAULT=stall:2 --backend mpi -T 0
fail  COLLBENCH_INJECT_FAULT=raise:3 --backend mpi
"""


def test_failures_lose_nothing_else(slurm_cluster, tmp_path):
    script = slurm_cluster.generate(tmp_path)
    job = slurm_cluster.submit_and_wait(script, env={
        "CB_RUNS": RELIABILITY_RUNS, "CB_NODE_COUNTS": "1 2 4", "CB_STEP_TIMEOUT": "8",
        "CB_SIZES": "-b 8 -e 8", "CB_ARGS": "-w 1 -n 2 -c 1 --placement out-of-place"})
    steps = (job.results / "steps.ndjson").read_text() if (job.results / "steps.ndjson").is_file() else ""
    context = f"{job.output}\n{steps}\n{slurm_cluster.logs()}"
    assert job.returncode != 0, context
    assert "done: 2 of 9 step(s) failed" in job.output, context
    sweep = load_sweep(job.results)
    status = {(run, k): cell.status for (run, k), cell in sweep.cells.items()}
    assert status == {("ok", 1): "ok", ("ok", 2): "ok", ("ok", 4): "skipped",
                      ("hang", 1): "ok", ("hang", 2): "timeout", ("hang", 4): "skipped",
                      ("fail", 1): "ok", ("fail", 2): "failed", ("fail", 4): "skipped"}, context
    # the step after the hung one got its nodes back and ran
    assert read_results(job.results / "N2-ok.jsonl").complete
    assert read_results(job.results / "N1-hang.jsonl").complete
    text = _report(slurm_cluster, job.results)
    assert "N=2 timeout (exit 124" in text and "N=2 failed (exit" in text
    assert "N=4 skipped (the allocation has 2 node(s))" in text
    table_lines = [line for line in text.splitlines() if line.strip().startswith("8 ")]
    assert any("timeout" in line for line in table_lines) and any("failed" in line for line in table_lines)
    assert all("skipped" in line for line in table_lines)
    rows = list(csv.DictReader(io.StringIO(_report(slurm_cluster, job.results, "--format", "csv"))))
    assert {(r["run"], r["nodes"], r["status"]) for r in rows} >= {
        ("hang", "2", "timeout"), ("fail", "2", "failed"), ("ok", "4", "skipped"), ("ok", "2", "ok")}


def test_a_bad_node_costs_one_retry(slurm_cluster, tmp_path):
    """Node n1 fails every `collbench run` started on it (a wrapper around the job's Python stands
    in for a broken node). The sweep takes the first k hosts, so without retries every node count
    would fail. N=1 fails on n1, srun names n1, the retry on n2 passes and n1 becomes suspect; N=2
    then needs both nodes of this 2-node allocation, so it fails on n1 again, with nowhere to go."""
    bad = tmp_path / "python-bad-n1"
    bad.write_text("#!/bin/bash\n"
                   'if [[ ${SLURMD_NODENAME:-} == n1 && "$1 $2 $3" == "-m collbench run" ]]; then\n'
                   '    echo "injected: node $SLURMD_NODENAME is broken" >&2; exit 7\n'
                   "fi\n"
                   f'exec "{sys.executable}" "$@"\n')
    bad.chmod(0o755)
    script = slurm_cluster.generate(tmp_path, "--nodes", "1,2", "-b", "8", "-e", "64")
    job = slurm_cluster.submit_and_wait(script, env={"CB_PYTHON": str(bad), "CB_BASELINE": "0"})
    steps_text = (job.results / "steps.ndjson").read_text()
    context = f"{job.output}\n{steps_text}\n{slurm_cluster.logs()}"
    assert job.returncode != 0, context
    steps = [json.loads(line) for line in steps_text.splitlines()]
    attempts = [(s["nodes"], s["attempt"], s["nodelist"], s["status"]) for s in steps if s["event"] == "step"]
    assert attempts == [(1, 1, "n1", "failed"), (1, 2, "n2", "ok"), (2, 1, "n2,n1", "failed")], context
    first = next(s for s in steps if s["event"] == "step")
    assert first["retried"] and first["suspect"] == "n1" and first["rc"] == 7
    assert steps[-1]["suspect_hosts"] == ["n1"]
    # the failed attempt keeps its log; the retry wrote the usual files
    assert "injected: node n1 is broken" in (job.results / "logs" / "N1-mpi.attempt1.out").read_text()
    assert read_results(job.results / "N1-mpi.jsonl").metadata["nodes"] == ["n2"]
    assert "retrying once on n2 (without n1)" in job.output
    text = _report(slurm_cluster, job.results)
    assert "N=1 ok [retry on n2 after failed on n1 (exit 7; suspect n1" in text, text
    assert "# suspect host(s): n1" in text and "# r measured on a retry" in text
    assert any(line.strip().startswith("8 ") and "r" in line.split()[1] for line in text.splitlines()), text
