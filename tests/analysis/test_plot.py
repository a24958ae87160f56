"""collbench plot: every kind writes a figure; mistakes (and a missing matplotlib) are one line."""

from __future__ import annotations

import builtins
import json

import pytest
from helpers import meta, row, write

from cbtest import run_cli
from collbench.analysis import plot as plot_module
from collbench.analysis.plot import plot, size_label
from collbench.errors import UsageError

pytest.importorskip("matplotlib")

SIZES = [1 << k for k in range(3, 25, 3)]


@pytest.fixture
def files(tmp_path):
    a = write(tmp_path / "a.jsonl", [row(algo, s, 1 + s / 1e3 * f) for algo, f in (("ring", 1), ("tree", 2))
                                     for s in SIZES])
    b = write(tmp_path / "b.jsonl", [row("ring", s, 2 + s / 1e3) for s in SIZES])
    return a, b


@pytest.mark.parametrize("kind,ext", [("busbw", "png"), ("latency", "svg"), ("model", "pdf")])
def test_kinds_write_files(files, tmp_path, kind, ext):
    out = tmp_path / f"fig.{ext}"
    plot([str(f) for f in files], str(out), kind, profile="generic")
    data = out.read_bytes()
    assert len(data) > 1000
    assert data[:4] in (b"\x89PNG", b"%PDF") or b"<svg" in data[:500]


def test_svg_has_binary_ticks_units_and_a_title(files, tmp_path):
    out = tmp_path / "fig.svg"
    plot([str(files[0])], str(out), "busbw")
    svg = out.read_text()
    for text in ("4K", "2M", "GB/s", "allreduce bus bandwidth", "2 ranks on 1 node", "MPICH"):
        assert text in svg, text


def test_size_labels():
    assert [size_label(v) for v in (8, 512, 1024, 65536, 1 << 20, 3 << 30)] == \
        ["8B", "512B", "1K", "64K", "1M", "3G"]


def test_nodes_kind_from_a_sweep_directory(tmp_path):
    d = tmp_path / "results" / "test" / "7"
    d.mkdir(parents=True)
    (d / "sweep.json").write_text(json.dumps({"type": "collbench-sweep", "schema": 1, "cluster": "test",
                                              "job_id": "7", "node_counts": [1, 2, 4], "ranks_per_node": 2,
                                              "runs": [{"name": "a", "args": []}]}))
    events = []
    for k in (1, 2, 4):
        write(d / f"N{k}-a.jsonl", [row("ring", s, 10 + s / (k * 1e3), nranks=2 * k) for s in SIZES],
              meta(2 * k, k))
        events.append({"event": "step", "nodes": k, "run": "a", "status": "ok", "rc": 0,
                       "file": f"N{k}-a.jsonl"})
    (d / "steps.ndjson").write_text("".join(json.dumps(e) + "\n" for e in events))
    out = tmp_path / "nodes.svg"
    result = run_cli(["plot", str(d), "-o", str(out), "--kind", "nodes", "--size", "32K"])
    assert result.returncode == 0, result.stderr
    svg = out.read_text()
    assert "bus bandwidth vs node count" in svg and "nodes" in svg


@pytest.mark.parametrize("args,message", [
    (["-o", "x.jpg"], "must end in .png, .svg, .pdf"),
    (["-o", "x.png", "--kind", "nodes"], "needs Slurm sweep directories"),
])
def test_mistakes_are_one_line(files, tmp_path, args, message):
    result = run_cli(["plot", str(files[0]), *args], cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_missing_matplotlib_names_the_extra(monkeypatch, files, tmp_path):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(UsageError, match=r"pip install 'collbench\[plot\]'"):
        plot_module.plot([str(files[0])], str(tmp_path / "x.png"))


def test_cpu_path_does_not_import_matplotlib():
    import subprocess
    import sys

    code = ("import sys, collbench.cli, collbench.analysis.compare, collbench.analysis.model.predict, "
            "collbench.analysis.select; print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
