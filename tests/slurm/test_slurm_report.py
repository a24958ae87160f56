"""The node-count report on hand-made sweep directories (every status a real sweep can leave),
and the NCCL probe verdict on NCCL_DEBUG=INFO logs of each kind. No Slurm needed."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path

import pytest

from collbench.results.files import ResultsWriter, Row
from collbench.results.sweep_report import is_sweep_dir, load_sweep, sweep_report
from collbench.slurm.injob import nccl_verdict

RPN = 2


def _row(nranks: int, nbytes: int, algorithm: str = "native", busbw: float = 1.0,
         wrong: int | None = 0) -> Row:
    return Row(collective="allreduce", algorithm=algorithm, backend="mpi", executor="library",
               dtype="float32", op="sum", root=None, placement="out_of_place", nranks=nranks,
               bytes=nbytes, count=nbytes // 4, iterations=5, warmup=1, timing="batch",
               aggregation="max", time_us=10.0, time_us_min_rank=9.0, time_us_max_rank=10.0,
               algbw_gbps=busbw / 2, busbw_gbps=busbw, wrong=wrong)


def _results(path: Path, nodes: int, rows: list[Row], complete: bool = True, nnodes: int | None = None):
    writer = ResultsWriter(path)
    writer.open()
    writer.write({"type": "metadata", "schema": 1, "nranks": nodes * RPN, "nnodes": nnodes or nodes,
                  "nodes": [f"n{i + 1}" for i in range(nnodes or nodes)], "ranks_per_node": [RPN] * nodes})
    for row in rows:
        writer.write(row.to_record())
    if complete:
        writer.write({"type": "summary", "rows": len(rows), "wrong_total": 0,
                      "skipped": ["no schedule for this collective: bruck"], "status": "ok"})
    writer.close()


def _sweep(tmp_path: Path, finished: bool = True) -> Path:
    """Runs a (fine) and b (N=2 times out after writing one size; N=4 skipped; N=8 never ran)."""
    d = tmp_path / "results" / "test" / "42"
    d.mkdir(parents=True)
    plan = {"type": "collbench-sweep", "schema": 1, "cluster": "test", "job_id": "42",
            "nodes": ["n1", "n2"], "node_counts": [1, 2, 4], "ranks_per_node": RPN, "launcher": "srun",
            "srun_mpi": "pmi2", "collectives": ["allreduce"], "sizes": ["-b", "8", "-e", "64"],
            "args": [], "runs": [{"name": "a", "args": ["--backend", "mpi"]},
                                 {"name": "b", "args": ["--backend", "mpi", "--algo", "ring"]}]}
    (d / "sweep.json").write_text(json.dumps(plan))
    events = [{"event": "preflight", "rc": 0},
              {"event": "nccl_probe", "verdict": "skipped: no GPUs (nvidia-smi not found)"}]
    for k in (1, 2):
        _results(d / f"N{k}-a.jsonl", k, [_row(k * RPN, 8, busbw=k * 1.5), _row(k * RPN, 64, busbw=k * 2.5),
                                           _row(k * RPN, 8, "hierarchical", busbw=0.5)])
        events.append({"event": "step", "nodes": k, "run": "a", "status": "ok", "rc": 0, "seconds": 3,
                       "file": f"N{k}-a.jsonl", "log": f"logs/N{k}-a.out"})
    _results(d / "N1-b.jsonl", 1, [_row(RPN, 8, busbw=3.25), _row(RPN, 64, busbw=4.0, wrong=3)])
    events.append({"event": "step", "nodes": 1, "run": "b", "status": "ok", "rc": 0, "seconds": 2,
                   "file": "N1-b.jsonl", "log": "logs/N1-b.out"})
    _results(d / "N2-b.jsonl", 2, [_row(2 * RPN, 8, busbw=5.0)], complete=False)
    events.append({"event": "step", "nodes": 2, "run": "b", "status": "timeout", "rc": 124, "seconds": 60,
                   "file": "N2-b.jsonl", "log": "logs/N2-b.out"})
    for run in ("a", "b"):
        events.append({"event": "step", "nodes": 4, "run": run, "status": "skipped",
                       "reason": "the allocation has 2 node(s)"})
    if finished:
        events.append({"event": "end", "steps": 6, "failed": 1})
    (d / "steps.ndjson").write_text("".join(json.dumps(e) + "\n" for e in events))
    return d


def test_statuses(tmp_path):
    sweep = load_sweep(_sweep(tmp_path))
    assert {key: cell.status for key, cell in sweep.cells.items()} == {
        ("a", 1): "ok", ("a", 2): "ok", ("a", 4): "skipped",
        ("b", 1): "ok", ("b", 2): "timeout", ("b", 4): "skipped"}


def test_text_table(tmp_path):
    d = _sweep(tmp_path)
    assert is_sweep_dir(d) and not is_sweep_dir(d / "N1-a.jsonl") and not is_sweep_dir(tmp_path)
    text = sweep_report(d)
    assert "cluster test · job 42" in text and "NCCL probe: skipped: no GPUs" in text
    lines = text.splitlines()
    title = lines.index(next(line for line in lines if line.startswith("# allreduce · algorithm native · run a")))
    assert lines[title + 2].split() == ["#", "size", "N=1", "N=2", "N=4"]
    assert lines[title + 3].split() == ["#", "(B)", "2", "ranks", "4", "ranks", "8", "ranks"]
    assert lines[title + 4].split() == ["8", "1.50", "3.00", "skipped"]
    assert lines[title + 5].split() == ["64", "2.50", "5.00", "skipped"]
    b = lines.index(next(line for line in lines if "run b" in line and line.startswith("# allreduce")))
    # a timed-out step keeps what it wrote, starred; a size it never reached says why
    assert lines[b + 4].split() == ["8", "3.25", "5.00*", "skipped"]
    assert lines[b + 5].split() == ["64", "4.00!", "timeout", "skipped"]
    assert "# run b: N=1 ok; N=2 timeout (exit 124 after 60 s; log logs/N2-b.out); " \
           "N=4 skipped (the allocation has 2 node(s))" in text
    assert "#   N=1 skipped no schedule for this collective: bruck" in text
    assert "# * from a step that did not finish cleanly" in text and "# ! validation found" in text
    # the hierarchical rows of run a are their own table
    assert any(line.startswith("# allreduce · algorithm hierarchical · run a") for line in lines)


def test_csv_and_markdown(tmp_path):
    d = _sweep(tmp_path)
    rows = list(csv.DictReader(io.StringIO(sweep_report(d, "csv"))))
    by = {(r["run"], r["algorithm"], r["bytes"], r["nodes"]): r for r in rows}
    assert by[("a", "native", "64", "2")]["busbw_gbps"] == "5.0" and by[("a", "native", "64", "2")]["status"] == "ok"
    assert by[("a", "native", "64", "4")]["status"] == "skipped" and by[("a", "native", "64", "4")]["busbw_gbps"] == ""
    assert by[("b", "native", "64", "2")]["status"] == "timeout"
    assert by[("b", "native", "8", "2")]["busbw_gbps"] == "5.0"
    md = sweep_report(d, "markdown")
    assert "### allreduce · algorithm native · run a" in md
    assert "size (B) |" in md and "- run b: N=1 ok; N=2 timeout" in md
    assert "N=2 (4 ranks)" in md and "5.00*" in md
    data = json.loads(sweep_report(d, "json"))
    assert len(data) == len(rows)


def test_unfinished_job_and_wrong_shape(tmp_path):
    d = _sweep(tmp_path, finished=False)
    # a step in flight when the job died: its file exists, no step record
    _results(d / "N4-a.jsonl", 4, [_row(8, 8)], complete=False)
    # a step whose ranks did not see the nodes they were given (a mismatched MPI)
    (d / "N2-a.jsonl").unlink()
    _results(d / "N2-a.jsonl", 2, [_row(4, 8)], nnodes=1)
    steps = [json.loads(line) for line in (d / "steps.ndjson").read_text().splitlines()]
    steps = [s for s in steps if not (s.get("nodes") == 4 and s.get("run") == "a")]
    (d / "steps.ndjson").write_text("".join(json.dumps(s) + "\n" for s in steps))
    sweep = load_sweep(d)
    assert sweep.cells[("a", 4)].status == "incomplete"
    assert sweep.cells[("a", 2)].status == "wrong shape"
    text = sweep_report(d)
    assert "the job has not finished" in text
    assert "N=2 wrong shape (4 ranks on 1 node(s), expected 4 on 2)" in text


def test_missing_steps_of_a_finished_job(tmp_path):
    d = _sweep(tmp_path)
    (d / "N1-a.jsonl").unlink()
    steps = [s for s in map(json.loads, (d / "steps.ndjson").read_text().splitlines())
             if not (s.get("nodes") == 1 and s.get("run") == "a")]
    (d / "steps.ndjson").write_text("".join(json.dumps(s) + "\n" for s in steps))
    assert load_sweep(d).cells[("a", 1)].status == "missing"
    lines = sweep_report(d).splitlines()
    title = lines.index(next(line for line in lines if line.startswith("# allreduce · algorithm native · run a")))
    assert lines[title + 4].split() == ["8", "missing", "3.00", "skipped"]


def test_report_command_on_a_sweep_directory(tmp_path):
    from collbench.cli import main

    d = _sweep(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["report", str(d), "--format", "csv"]) == 0
    assert out.getvalue().startswith("cluster,job_id,run,")
    # a results file inside it still gets the per-file tables
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["report", str(d / "N1-a.jsonl")]) == 0
    assert "# file " in out.getvalue()


def test_not_a_sweep(tmp_path):
    from collbench.errors import UsageError

    (tmp_path / "sweep.json").write_text('{"type": "something else"}')
    with pytest.raises(UsageError, match="not a collbench sweep plan"):
        load_sweep(tmp_path)


# ---------------------------------------------------------------------------- NCCL probe verdict

LIBFABRIC = """\
nid001:1234:1234 [0] NCCL INFO NCCL version 2.21.5+cuda12.2
nid001:1234:1234 [0] NCCL INFO NET/OFI Selected provider is cxi, fabric is cxi (found 4 nics)
nid001:1234:1234 [0] NCCL INFO Using network AWS Libfabric
nid001:1234:1240 [0] NCCL INFO Channel 00/0 : 4[3] -> 0[3] [receive] via NET/AWS Libfabric/3/GDRDMA
"""
SOCKET = """\
nid001:1234:1234 [0] NCCL INFO NCCL version 2.27.3+cuda12.9
nid001:1234:1234 [0] NCCL INFO NET/Plugin: Could not find: libnccl-net.so. Using internal network plugin.
nid001:1234:1234 [0] NCCL INFO NET/Socket : Using [0]hsn0:10.100.0.1<0>
nid001:1234:1234 [0] NCCL INFO Using network Socket
"""
# NCCL 2.28.9 on an H100 host without a network plugin or IB (recorded with this suite's probe)
SOCKET_2_28 = """\
vm:656:656 [0] NCCL INFO NCCL version 2.28.9+cuda13.0
vm:656:656 [0] NCCL INFO NET/Plugin: Could not find: libnccl-net.so
vm:656:656 [0] NCCL INFO NET/IB : No device found.
vm:656:656 [0] NCCL INFO Failed to initialize NET plugin IB
vm:656:656 [0] NCCL INFO NET/Socket : Using [0]eth0:192.0.2.2<0>
vm:656:656 [0] NCCL INFO Initialized NET plugin Socket
vm:656:656 [0] NCCL INFO Assigned NET plugin Socket to comm
vm:656:656 [0] NCCL INFO Using network Socket
vm:656:656 [0] NCCL INFO NET/Socket : GPU Direct RDMA Disabled for HCA 0 'eth0'
"""
LIBFABRIC_2_28 = """\
nid002:77:77 [0] NCCL INFO NCCL version 2.28.9+cuda12.9
nid002:77:77 [0] NCCL INFO Assigned NET plugin Libfabric to comm
"""
NO_PLUGIN = """\
nid001:1234:1234 [0] NCCL INFO NCCL version 2.18.1+cuda12.1
nid001:1234:1234 [0] NCCL INFO NET/Plugin : Plugin load returned 2 : libnccl-net.so: cannot open shared object file
nid001:1234:1234 [0] NCCL INFO NET/Plugin : No plugin found (libnccl-net.so), using internal implementation
nid001:1234:1234 [0] NCCL WARN Error: network AWS Libfabric not found.
"""


@pytest.mark.parametrize("log, rc, nodes, expected", [
    (LIBFABRIC, 0, 2, "network plugin found: AWS Libfabric (NCCL 2.21.5+cuda12.2, 2 node(s), "
                      "provider cxi, GPUDirect RDMA on)"),
    (SOCKET, 0, 2, "TCP FALLBACK: NCCL uses sockets"),
    (NO_PLUGIN, 1, 2, "NETWORK PLUGIN NOT FOUND"),
    (SOCKET, 0, 1, "one node does not exercise the network"),
    (SOCKET_2_28, 0, 1, "TCP FALLBACK: NCCL uses sockets (NET/Socket; NCCL 2.28.9+cuda13.0, 1 node(s)"),
    (LIBFABRIC_2_28, 0, 2, "network plugin found: Libfabric (NCCL 2.28.9+cuda12.9, 2 node(s), GPUDirect RDMA not seen)"),
    ("x:1:1 [0] NCCL INFO Using network IB\nx:1:1 [0] NCCL INFO Channel 00 via NET/IB/0/GDRDMA\n", 0, 2,
     "RDMA network: IB (NCCL's built-in verbs transport; 2 node(s), GPUDirect RDMA on)"),
    ("", 3, 2, "probe failed (exit 3"),
    ("", 0, 2, "no NCCL log found"),
])
def test_nccl_verdict(tmp_path, log, rc, nodes, expected):
    if log:
        (tmp_path / "nccl.nid001.1234.log").write_text(log)
    assert expected in nccl_verdict(tmp_path, rc, nodes)


# ------------------------------------------------------------ retries and the network baseline

def _with_retry_and_baseline(tmp_path: Path) -> Path:
    """The sweep of _sweep, where run a at N=2 first failed on n1,n2 (srun blamed n1) and passed
    on a retry on n2,n3, after a baseline of two NIC pairs (one of them retried too)."""
    d = _sweep(tmp_path)
    events = [json.loads(line) for line in (d / "steps.ndjson").read_text().splitlines()]
    out = []
    for e in events:
        if e.get("event") == "step" and e.get("run") == "a" and e.get("nodes") == 2:
            out.append({"event": "step", "nodes": 2, "run": "a", "status": "failed", "rc": 7, "seconds": 4,
                        "nodelist": "n1,n2", "attempt": 1, "retried": True, "suspect": "n1",
                        "file": "", "log": "logs/N2-a.attempt1.out"})
            e.update(attempt=2, nodelist="n2,n3", retry_of="n1,n2", excluded="n1")
        if e.get("event") == "end":
            e["suspect_hosts"] = ["n1"]
        out.append(e)
    (d / "baseline").mkdir()
    for gpu, busbw in (("0", 24.0), ("1", 23.5)):
        _results(d / "baseline" / f"pair-gpu{gpu}.jsonl", 1, [_row(2, 8, busbw=0.01), _row(2, 1 << 20, busbw=busbw)])
        out.insert(2, {"event": "baseline", "pair": f"pair-gpu{gpu}", "gpu": gpu, "backend": "nccl",
                       "status": "ok", "rc": 0, "seconds": 9, "nodelist": "n1,n2", "attempt": 1,
                       "file": f"baseline/pair-gpu{gpu}.jsonl", "log": f"logs/baseline/pair-gpu{gpu}.out"})
    (d / "steps.ndjson").write_text("".join(json.dumps(e) + "\n" for e in out))
    return d


def test_retries_are_shown(tmp_path):
    d = _with_retry_and_baseline(tmp_path)
    sweep = load_sweep(d)
    cell = sweep.cells[("a", 2)]
    assert cell.status == "ok" and cell.retried and cell.nodelist == "n2,n3"
    text = sweep_report(d)
    lines = text.splitlines()
    title = lines.index(next(line for line in lines if line.startswith("# allreduce · algorithm native · run a")))
    assert lines[title + 4].split() == ["8", "1.50", "3.00r", "skipped"]
    assert ("# run a: N=1 ok; N=2 ok [retry on n2,n3 after failed on n1,n2 (exit 7; suspect n1; "
            "log logs/N2-a.attempt1.out)]; N=4 skipped") in text
    assert "# r measured on a retry on other hosts" in text
    assert "# suspect host(s): n1" in text
    rows = list(csv.DictReader(io.StringIO(sweep_report(d, "csv"))))
    by = {(r["run"], r["algorithm"], r["bytes"], r["nodes"]): r for r in rows}
    assert by[("a", "native", "8", "2")]["attempts"] == "2" and by[("a", "native", "8", "2")]["nodelist"] == "n2,n3"
    assert by[("a", "native", "8", "1")]["attempts"] == "1"


def test_network_baseline_beside_busbw(tmp_path):
    d = _with_retry_and_baseline(tmp_path)
    sweep = load_sweep(d)
    assert [(p.name, p.bandwidth_gbps, p.latency_us, p.latency_bytes) for p in sweep.baseline] == [
        ("pair-gpu1", 23.5, 10.0, 8), ("pair-gpu0", 24.0, 10.0, 8)]
    assert sweep.wire_gbps == 47.5
    text = sweep_report(d)
    assert "pair-gpu0 on n1,n2: 24.00 GB/s, 10.00 us at 8 B" in text
    assert "# the wire allows about 47.50 GB/s per node (sum of 2 NIC pairs, each measured alone)" in text
    # each table: its peak busbw across nodes next to what the wire allows
    assert "#   peak busbw across nodes 5.00 GB/s (N=2, 64 B) = 11% of what the wire allows (47.50 GB/s per node)" in text
    assert "peak busbw across nodes" in sweep_report(d, "markdown")
    rows = list(csv.DictReader(io.StringIO(sweep_report(d, "csv"))))
    assert {r["wire_gbps"] for r in rows} == {"47.5"}


def test_baseline_skipped_or_failed(tmp_path):
    d = _sweep(tmp_path)
    with (d / "steps.ndjson").open("a") as f:
        f.write(json.dumps({"event": "baseline", "status": "skipped", "reason": "one node: there is no network"}) + "\n")
    assert "# network baseline: skipped (one node: there is no network)" in sweep_report(d)
    d2 = _sweep(tmp_path / "second")
    with (d2 / "steps.ndjson").open("a") as f:
        f.write(json.dumps({"event": "baseline", "pair": "pair", "gpu": "", "backend": "mpi", "status": "failed",
                            "rc": 1, "nodelist": "n1,n2", "file": "", "log": "logs/baseline/pair.out"}) + "\n")
    text = sweep_report(d2)
    assert "pair on n1,n2: failed" in text and "wire allows" not in text and "peak busbw across" not in text
