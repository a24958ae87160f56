"""--nccl-log's parser and plumbing (collbench/trace/nccl_log.py) on NCCL INFO lines in the
formats real NCCL writes. The end-to-end run on the fake CuPy is in tests/gpu/test_trace_gpu_fake.py.

Where the fixture lines come from (hosts, pids and addresses changed, formats kept):
* the line prefix ``host:pid:tid [dev] NCCL INFO`` / ``[dev] file:line NCCL WARN`` and the
  optional ``[%F %T]`` timestamp: NVIDIA/nccl src/debug.cc (ncclDebugLog);
* ``via P2P/CUMEM``: NCCL 2.22 logs in NVIDIA/nccl issue #1538; ``[receive] via NET/IB/3/GDRDMA``
  and ``[send] ...``: NVIDIA/nccl issue #1189; ``via P2P/CUMEM/read``: aws/aws-ofi-nccl issue
  #715; ``[receive] via NET/IB/8``: deepseek-ai/DeepEP issue #143;
* ``via P2P/IPC%s%s`` and ``via P2P/direct pointer%s``: NVIDIA/nccl src/transport/p2p.cc;
  ``Channel %02d : %d[%d] -> %d[%d] via SHM/%s/%s``: src/transport/shm.cc; ``Channel %02d :
  %d[%lx] -> %d[%lx] [send] via NET/%s/%d%s``: src/transport/net.cc (NCCL 2.7-2.11, bus ids);
* ``NET/IB : Using [0]mlx5_0:1/RoCE ... [RO]; OOB eth0:...`` and ``Using network IB``: an
  NCCL_DEBUG=INFO log published on Hugging Face (yuccaaa/ProtT3_model, log/nccl_debug.log);
* ``Pattern %d, crossNic %d, nChannels %d, bw %f/%f, type %s/%s, sameChannels %d``:
  src/graph/search.cc (ncclTopoPrintGraph);
* ``NCCL version 2.30.3+cuda13.0`` without a prefix: NCCL's logging documentation
  (docs.nvidia.com/deeplearning/nccl/user-guide/docs/troubleshooting/logging.html).
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from cbtest import run_cli
from collbench.errors import UsageError
from collbench.trace import nccl_log
from collbench.trace.nccl_log import (
    collect,
    combine,
    configure_environment,
    expand,
    log_dir,
    parse,
    rank_summary,
    summarise_dir,
    transport_class,
)

# One node of two, 8 GPUs on NVLink, InfiniBand between nodes (NCCL 2.21-style lines).
MULTI_NODE = """\
gpu-node-05:1789225:1789225 [0] NCCL INFO Bootstrap : Using eth0:10.1.2.5<0>
gpu-node-05:1789225:1789225 [0] NCCL INFO NET/Plugin: Using internal network plugin.
gpu-node-05:1789225:1789225 [0] NCCL INFO cudaDriverVersion 12040
gpu-node-05:1789225:1789225 [0] NCCL INFO NCCL version 2.21.5+cuda12.4
gpu-node-05:1789225:1789736 [0] NCCL INFO NCCL_IB_HCA set to mlx5
gpu-node-05:1789225:1789736 [0] NCCL INFO NET/IB : Using [0]mlx5_0:1/RoCE [1]mlx5_1:1/RoCE [2]mlx5_2:1/RoCE [RO]; OOB eth0:10.1.2.5<0>
gpu-node-05:1789225:1789736 [0] NCCL INFO Using non-device net plugin version 0
gpu-node-05:1789225:1789736 [0] NCCL INFO Using network IB
gpu-node-05:1789225:1789736 [0] NCCL INFO Pattern 4, crossNic 0, nChannels 8, bw 20.000000/20.000000, type NVL/PIX, sameChannels 1
gpu-node-05:1789225:1789736 [0] NCCL INFO  0 : NET/0 GPU/0 GPU/1 GPU/2 GPU/3 GPU/4 GPU/5 GPU/6 GPU/7 NET/0
gpu-node-05:1789225:1789736 [0] NCCL INFO Channel 00/16 :    0   1   2   3   4   5   6   7   8   9  10  11  12  13  14  15
gpu-node-05:1789225:1789736 [0] NCCL INFO Channel 00/0 : 0[0] -> 1[1] via P2P/CUMEM
gpu-node-05:1789225:1789736 [0] NCCL INFO Channel 01/0 : 0[0] -> 1[1] via P2P/CUMEM
gpu-node-05:1789225:1789736 [0] NCCL INFO Channel 07/0 : 8[0] -> 0[0] [receive] via NET/IB/3/GDRDMA
gpu-node-05:1789225:1789736 [0] NCCL INFO Channel 01/0 : 0[0] -> 8[0] [send] via NET/IB/3/GDRDMA
gpu-node-05:1789225:1789736 [0] NCCL INFO Channel 15/0 : 4[4] -> 0[0] [receive] via NET/IB/8
gpu-node-05:1789225:1789736 [0] NCCL INFO Connected all rings
[2026-05-05 06:16:47] gpu-node-05:1789225:1789740 [0] transport/net_ib.cc:1234 NCCL WARN NET/IB : Got async event : port error
"""

# One PCIe node: CUDA IPC without NVLink, shared memory between two sockets, old formats.
PCIE_NODE = """\
NCCL version 2.30.3+cuda13.0
ws-01:4011:4581 [2] NCCL INFO Pattern 4, crossNic 0, nChannels 2, bw 12.000000/12.000000, type PXB/PIX, sameChannels 1
ws-01:4011:4581 [2] NCCL INFO Channel 00/0 : 2[2] -> 3[3] via P2P/IPC/read
ws-01:4011:4581 [2] NCCL INFO Channel 01/1 : 2[2] -> 3[3] via P2P/direct pointer/read
ws-01:4011:4581 [2] NCCL INFO Channel 00 : 2[2] -> 1[1] via SHM/direct/direct
ws-01:4011:4581 [2] NCCL INFO Channel 01 : 2[2] -> 1[1] via SHM/CE/direct
ws-01:4011:4581 [2] NCCL INFO Channel 00 : 2[3d000] -> 0[1a000] [send] via NET/Socket/0
ws-01:4011:4581 [2] NCCL INFO NET/Socket : Using [0]eth0:192.168.1.7<0> [1]eth1:192.168.2.7<0>
ws-01:4011:4581 [2] NCCL INFO Using network Socket
old:77:77 [0] NCCL INFO Ring 00 : 0[0] -> 1[1] via P2P/IPC
"""


def test_multi_node_log():
    s = parse(MULTI_NODE, "nccl.gpu-node-05.1789225.log")
    assert s.version == "2.21.5+cuda12.4"
    assert s.network == "IB"
    assert s.net_devices == {"NET/IB": ["[0]mlx5_0:1/RoCE", "[1]mlx5_1:1/RoCE", "[2]mlx5_2:1/RoCE"]}
    assert s.intra_paths == ["NVL"]
    # the ring-order line "Channel 00/16 :    0   1 ..." is not a connection
    assert s.connections == {"NET/IB/3/GDRDMA": 2, "NET/IB/8": 1, "P2P/CUMEM": 2}
    assert s.transports == ["P2P/NVLink", "NET/IB"]  # NVLink: the topology search said NVL
    assert s.warnings == ["NET/IB : Got async event : port error"]
    assert s.lines == MULTI_NODE.count("NCCL INFO") + 1


def test_pcie_node_log():
    s = parse(PCIE_NODE)
    assert s.version == "2.30.3+cuda13.0"  # the bare VERSION-level line of recent NCCL
    assert s.intra_paths == ["PXB"]
    assert s.connections == {"NET/Socket/0": 1, "P2P/IPC": 1, "P2P/IPC/read": 1,
                             "P2P/direct pointer/read": 1, "SHM/CE/direct": 1, "SHM/direct/direct": 1}
    assert s.transports == ["P2P/IPC", "P2P/direct", "SHM", "NET/Socket"]
    assert s.net_devices == {"NET/Socket": ["[0]eth0:192.168.1.7<0>", "[1]eth1:192.168.2.7<0>"]}
    assert s.network == "Socket"


@pytest.mark.parametrize("via, nvlink, expected", [
    ("P2P/CUMEM/read", False, "P2P/CUMEM"), ("P2P/CUMEM/read", True, "P2P/NVLink"),
    ("P2P/IPC", False, "P2P/IPC"), ("P2P/MNNVL/CE", False, "P2P/NVLink"),
    ("P2P/direct pointer", False, "P2P/direct"), ("SHM/direct/direct", True, "SHM"),
    ("NET/IB/0(4)/GDRDMA", True, "NET/IB"), ("NET/Socket/1", False, "NET/Socket"),
    ("NET/AWS Libfabric/0/GDRDMA/Shared", False, "NET/AWS Libfabric"),
])
def test_transport_classes(via, nvlink, expected):
    assert transport_class(via, nvlink) == expected


def test_garbage_is_not_an_error():
    s = parse("\x00\x01 not a log\nNCCL INFO without a prefix\n[x] NCCL INFO bad device\n" * 3)
    assert (s.lines, s.version, s.connections, s.transports) == (0, None, {}, [])


def test_expand_is_nccls():
    assert expand("/r/x.nccl/nccl.%h.%p.log", "node7", 42) == "/r/x.nccl/nccl.node7.42.log"
    assert expand("/a%%b/%q%", "h", 1) == "/a%b/%q%"


def test_environment(tmp_path):
    env: dict[str, str] = {"NCCL_DEBUG": "WARN"}
    directory = log_dir(tmp_path / "r 50%.jsonl")
    assert directory == tmp_path / "r 50%.nccl"
    configure_environment(directory, env)
    assert directory.is_dir()
    assert env["NCCL_DEBUG"] == "INFO" and env["NCCL_DEBUG_SUBSYS"] == "INIT,BOOTSTRAP,ENV,GRAPH"
    assert env["NCCL_DEBUG_FILE"] == str(tmp_path / "r 50%%.nccl") + "/nccl.%h.%p.log"  # % escaped for NCCL
    assert expand(env["NCCL_DEBUG_FILE"], "h", 9) == str(directory / "nccl.h.9.log")
    assert env[nccl_log.DIR_VARIABLE] == str(directory)
    kept = {"NCCL_DEBUG": "trace", "NCCL_DEBUG_SUBSYS": "ALL"}
    configure_environment(directory, kept)  # TRACE includes INFO; the user's subsystems stay
    assert kept["NCCL_DEBUG"] == "trace" and kept["NCCL_DEBUG_SUBSYS"] == "ALL"
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="--nccl-log: cannot create"):
        configure_environment(tmp_path / "file" / "x.nccl", {})


def _env_for_this_process(directory: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    configure_environment(directory, env)
    return env


def test_rank_summary_finds_its_own_file(tmp_path):
    env = _env_for_this_process(tmp_path / "r.nccl")
    assert "no log file" in rank_summary(env)["problem"]
    # NCCL spelled the host its own way: the one file with this pid is ours
    (tmp_path / "r.nccl" / f"nccl.other-name.{os.getpid()}.log").write_text(MULTI_NODE)
    record = rank_summary(env)
    assert "problem" not in record and record["transports"] == ["P2P/NVLink", "NET/IB"]
    (tmp_path / "r.nccl" / f"nccl.other-name.{os.getpid()}.log").write_text("nothing useful\n")
    assert "holds no NCCL INFO lines" in rank_summary(env)["problem"]
    assert "problem" in rank_summary({"NCCL_DEBUG_FILE": str(tmp_path)})  # a directory, not a file


def test_combine_and_one_warning_line(tmp_path, capsys):
    good = parse(MULTI_NODE, "a.log").record()
    record = combine("d", [good, {"problem": "NCCL wrote no log file (NCCL_DEBUG_FILE=x)"}])
    assert record["nccl_version"] == "2.21.5+cuda12.4" and record["network"] == ["IB"]
    assert record["transports"] == ["P2P/NVLink", "NET/IB"] and record["note"] is None
    assert record["problems"] == ["rank 1: NCCL wrote no log file (NCCL_DEBUG_FILE=x)"]
    assert "no connections were logged" in combine("d", [parse("", "b.log").record()])["note"]

    comm = SimpleNamespace(gather=lambda mine, root: [mine, {"problem": "cannot read the NCCL log: X"}],
                           Get_rank=lambda: 0)
    assert collect(comm, None) is None
    record = collect(comm, str(tmp_path))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("collbench: warning: --nccl-log: rank 0: NCCL wrote no log")
    assert "and 1 more" in err and len(record["problems"]) == 2


def test_trace_nccl_log_command(tmp_path):
    (tmp_path / "nccl.gpu-node-05.1789225.log").write_text(MULTI_NODE)
    (tmp_path / "nccl.ws-01.4011.log").write_text(PCIE_NODE)
    assert [s.file for s in summarise_dir(tmp_path)] == ["nccl.gpu-node-05.1789225.log", "nccl.ws-01.4011.log"]
    result = run_cli(["trace", "nccl-log", str(tmp_path)])
    assert result.returncode == 0, result.stderr
    assert "# transports: P2P/NVLink, P2P/IPC, P2P/direct, SHM, NET/IB, NET/Socket" in result.stdout
    assert "2 via NET/IB/3/GDRDMA" in result.stdout and "NCCL WARN NET/IB : Got async event" in result.stdout
    for path, message in ((tmp_path / "missing", "no such directory"), (tmp_path / "nccl.ws-01.4011.log", "no such")):
        bad = run_cli(["trace", "nccl-log", str(path)])
        assert bad.returncode == 2 and message in bad.stderr and "Traceback" not in bad.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = run_cli(["trace", "nccl-log", str(empty)])
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "holds no NCCL log files" in bad.stderr
