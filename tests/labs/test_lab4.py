"""Lab 4 (docs/labs/lab4-scaling-across-nodes.md): the laptop parts (model, the published
comparison, the generated sbatch scripts, shellchecked) and, slow, the lab's flow on the local
Slurm cluster with the `local` profile (tests/slurm's fixture)."""

from __future__ import annotations

import glob
import re
import shutil
import subprocess

import pytest
from labdoc import LABS, blocks, lab_env, number, run_lab, table

from collbench.results.files import read_results

LAB = "lab4-scaling-across-nodes.md"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    return run_lab(LAB, tmp_path_factory.mktemp("lab4"), slow=False)


def _busbw(cell: str) -> float:
    return float(re.search(r"\(([0-9.]+)\)", cell).group(1))


def test_delta_falls_to_one_nic_perlmutter_to_four(lab):
    out = lab.out("predict")
    per = {"perlmutter": out.split("profile delta")[0], "delta": "profile delta" + out.split("profile delta")[1]}
    busbw = {name: {n: _busbw(table(text, f"{n} node")["256 MiB"]["native"]) for n in (1, 2, 4, 8)}
             for name, text in per.items()}
    assert busbw["perlmutter"][1] == busbw["delta"][1] == 236         # one node: NVLink only
    for n in (2, 4, 8):
        assert 80 <= busbw["perlmutter"][n] <= 100, busbw              # four 25 GB/s NICs
        assert 20 <= busbw["delta"][n] <= 25, busbw                    # one
        assert busbw["perlmutter"][n] / busbw["delta"][n] > 3.5
    text = (LABS / LAB).read_text()
    for value in ("93.1 GB/s", "90.3 GB/s", "85.2 GB/s", "23.8 GB/s", "23.6 GB/s", "23.3 GB/s"):
        assert value in text
    assert (busbw["perlmutter"][2], busbw["delta"][2]) == (93.1, 23.8)


def test_model_is_optimistic_about_the_published_abci_run(lab):
    out = lab.out("abci")
    assert "# 0 of 12 modelled rows within ±25%; median |error| 45%" in out
    errors = [int(e) for e in re.findall(r"\s(-\d+)%\s+under", out)]
    assert len(errors) == 12 and min(errors) == -56 and max(errors) == -29
    assert "29–56 %" in (LABS / LAB).read_text()


def test_generated_scripts_pass_shellcheck(lab):
    for name, account in (("lab4-perlmutter.sbatch", "#SBATCH -A m1234_g"),
                          ("lab4-delta.sbatch", "#SBATCH -A bbka-delta-gpu")):
        script = lab.workdir / name
        text = script.read_text()
        assert account in text and "#SBATCH -t 00:45:00" in text and "#SBATCH -N 4" in text
        assert 'CB_STEP_TIMEOUT=${CB_STEP_TIMEOUT:-"120"}' in text
        assert 'CB_NODE_COUNTS=${CB_NODE_COUNTS:-"1 2 4"}' in text
        if shutil.which("shellcheck") is None:
            pytest.skip("shellcheck is not installed (CI installs it)")
        result = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout
    assert "warning" not in lab.out("generate")


def test_missing_g_suffix_is_warned_about(lab, tmp_path):
    """The lab's "Account without _g" failure: the same generate command with -A m1234."""
    command = next(c for b in blocks(LAB) if b.id == "generate" for c in b.commands())
    command = command.replace("m1234_g", "m1234").replace("lab4-perlmutter.sbatch", "nog.sbatch")
    result = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=lab_env(tmp_path),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    assert "collbench slurm: warning: --account m1234 does not end in _g: " in result.stderr
    assert "--account m1234 does not\n  end in _g" in (LABS / LAB).read_text()


def test_cost_table_arithmetic():
    text = (LABS / LAB).read_text()
    assert "≤ 2 × 4 × 1/6 × 2.0 = 2.7 SU" in text and 2 * 4 * (1 / 6) * 2.0 == pytest.approx(2.67, abs=0.01)
    assert "≤ 4 × 4 × 0.75 × 1.0 = 12 SU" in text
    assert "≤ 0.33 node-hours" in text and "≤ 3 node-hours" in text


@pytest.mark.slow
@pytest.mark.slurm
def test_lab4_local_slurm(slurm_cluster, tmp_path):
    """The lab's rehearsal block on a real local 2-node cluster: the salloc+srun smoke test, the
    generated `local` sweep with sbatch --wait, and the node-count report. The fixture does the
    block's `local-cluster.sh` lines (up, env, down) with its own state directory and ports."""
    block = next(b for b in blocks(LAB) if b.kind == "local-slurm")
    env = lab_env(tmp_path, {k: v for k, v in slurm_cluster.env.items() if k.startswith(("SLURM_CONF", "COLLBENCH_SLURM"))})
    outputs: dict[str, str] = {}
    for command in block.commands():
        if "local-cluster.sh" in command:
            continue
        result = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}\n{slurm_cluster.logs()}"
        outputs[command] = result.stdout + result.stderr
    smoke = next(out for command, out in outputs.items() if " salloc " in f" {command} ")
    assert "4 ranks on 2 nodes" in smoke and re.search(r"^\s+8\s+2\s+float", smoke, re.M)
    rows = [line.split() for line in smoke.splitlines() if re.match(r"^\s+\d+\s+\d+\s", line)]
    assert rows and all(int(cells[8]) == 0 for cells in rows)
    report = next(out for command, out in outputs.items() if command.startswith("collbench report"))
    assert re.search(r"cluster local · job \d+", report) and "# network baseline (2 nodes x 1 rank" in report
    assert "run mpi: N=1 ok; N=2 ok" in report
    assert "algorithm hierarchical" in report and "algorithm native" in report
    (two_nodes,) = glob.glob(str(tmp_path / "results" / "local" / "*" / "N2-mpi.jsonl"))
    two = read_results(two_nodes)
    assert (two.metadata["nranks"], two.metadata["nnodes"]) == (4, 2) and two.summary["wrong_total"] == 0
    assert {r.algorithm for r in two.rows} == {"native", "hierarchical"}
    assert number(r"done: (\d+) of 2 step\(s\) failed", "".join(
        p.read_text() for p in tmp_path.glob("*.out"))) == 0
