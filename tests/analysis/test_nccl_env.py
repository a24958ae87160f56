"""NCCL_ALGO and NCCL_PROTO restrict the pairs NCCL chooses from; the model of NCCL's own
collective honours them: given on `model predict`, recorded by `collbench run --nccl-proto`,
or read from NCCL's INFO lines in an imported log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cbtest import run_cli
from collbench.algorithms import Collective
from collbench.analysis.model import nccl
from collbench.analysis.model.check import check
from collbench.analysis.model.predict import Model
from collbench.analysis.model.profile import load_profile

ROOT = Path(__file__).resolve().parents[2]
ABCI_2N = ROOT / "results" / "public" / "abci-compute-node-a" / "allreduce-2node-16gpu.jsonl"
INFO_LOG = ROOT / "tests" / "importers" / "fixtures" / "nccl_info_interleaved.log"
A, G = Collective.ALLREDUCE, Collective.ALLGATHER
ALGOS, PROTOS = nccl.NCCL_ALGORITHM_NAMES, nccl.NCCL_PROTOCOL_NAMES


@pytest.mark.parametrize("value,function,names,expected", [
    (None, "allreduce", PROTOS, None),
    ("Simple", "allreduce", PROTOS, {"simple"}),
    ("simple,LL128", "allgather", PROTOS, {"simple", "ll128"}),
    ("^LL128", "allreduce", PROTOS, {"ll", "simple"}),
    ("LL,Simple;allreduce:^LL", "allreduce", PROTOS, {"ll128", "simple"}),
    ("LL,Simple;allreduce:^LL", "allgather", PROTOS, {"ll", "simple"}),
    ("allreduce:tree", "allgather", ALGOS, None),            # no entry for allgather: defaults
    ("ring,collnetdirect;allreduce:tree,collnetdirect;broadcast:ring", "allreduce", ALGOS,
     {"tree", "collnetdirect"}),
    ("ring;allgather,reducescatter:ring", "reducescatter", ALGOS, {"ring"}),
    ("NVLS", "allreduce", ALGOS, {"nvls"}),                     # nothing the model runs
    ("Rnig", "allreduce", ALGOS, set()),                        # unknown names are ignored
])
def test_the_variables_parse_as_nccl_parses_them(value, function, names, expected):
    got = nccl.enabled_by_env(value, names, function)
    assert (got if got is None else set(got)) == expected


def test_an_entry_after_the_first_needs_a_prefix():
    with pytest.raises(ValueError, match="prefix"):
        nccl.enabled_by_env("LL;Simple", PROTOS, "allreduce")


def _labels(model: Model, collective: Collective, nranks: int, nnodes: int) -> set[str | None]:
    from collbench.algorithms import Layout

    layout = Layout.blocked(nranks, nranks // nnodes) if nnodes > 1 else None
    out = set()
    for nbytes in (8, 4096, 1 << 20, 1 << 26, 1 << 30):
        got = model.native_cost(collective, nranks, nbytes // 4, 4, layout, "nccl")
        out.add(None if got is None else got[1])
    return out


def test_the_model_chooses_only_what_the_environment_allows():
    profile = load_profile("abci-a")
    free = _labels(Model(profile), A, 16, 2)
    assert {"nccl tree/LL", "nccl ring/Simple"} <= free          # NCCL's own choice varies
    assert _labels(Model(profile, nccl_env={"NCCL_PROTO": "Simple"}), A, 16, 2) \
        <= {"nccl tree/Simple", "nccl ring/Simple"}
    assert _labels(Model(profile, nccl_env={"NCCL_ALGO": "Ring"}), A, 16, 2) \
        <= {"nccl ring/LL", "nccl ring/LL128", "nccl ring/Simple"}
    assert _labels(Model(profile, nccl_env={"NCCL_ALGO": "Ring", "NCCL_PROTO": "LL"}), A, 16, 2) \
        == {"nccl ring/LL"}
    # Tree runs allreduce only; forced for allgather, no pair is left to model
    assert _labels(Model(profile, nccl_env={"NCCL_ALGO": "Tree"}), G, 8, 1) == {None}
    # LL128 across nodes where NICs hang off the CPU: off by default, on when the user sets it
    delta = load_profile("delta")
    assert not any("LL128" in (label or "") for label in _labels(Model(delta), A, 8, 2))
    assert _labels(Model(delta, nccl_env={"NCCL_PROTO": "LL128"}), A, 8, 2) <= \
        {"nccl ring/LL128", "nccl tree/LL128"}


def test_model_check_prices_a_run_with_the_environment_it_recorded(tmp_path):
    """The same measured rows, once as published and once as if the run had recorded
    NCCL_PROTO=Simple: every native row is then priced as Simple."""
    lines = ABCI_2N.read_text().splitlines()
    meta = json.loads(lines[0])
    meta["env"] = {**(meta.get("env") or {}), "NCCL_PROTO": "Simple"}
    forced = tmp_path / "forced.jsonl"
    forced.write_text("\n".join([json.dumps(meta), *lines[1:]]) + "\n")
    profile = load_profile("abci-a")
    _, free = check([str(ABCI_2N)], profile)
    _, simple = check([str(forced)], profile)
    free_methods = {c.method for c in free if c.method}
    simple_methods = {c.method for c in simple if c.method}
    assert any(not m.endswith("/Simple") for m in free_methods), free_methods
    assert simple_methods and all(m.endswith("/Simple") for m in simple_methods), simple_methods
    assert len(simple) == len(free)


def test_predict_takes_the_variables_and_refuses_bad_ones():
    out = run_cli(["model", "predict", "--profile", "abci-a", "--nodes", "2", "--gpus-per-node", "8",
                   "--algo", "native", "--nccl-proto", "Simple", "--format", "json"])
    assert out.returncode == 0, out.stderr
    records = json.loads(out.stdout)
    assert records and all(r["method"].endswith("/Simple") for r in records)
    assert all(r["nccl_env"] == {"NCCL_PROTO": "Simple"} for r in records)
    text = run_cli(["model", "predict", "--profile", "abci-a", "--nodes", "2", "--algo", "native",
                    "--nccl-algo", "Ring"])
    assert "# native restricted as NCCL would be by NCCL_ALGO=Ring" in text.stdout
    bad = run_cli(["model", "predict", "--profile", "abci-a", "--nccl-proto", "LL;Simple"])
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
    assert "--nccl-proto" in bad.stderr and "prefix" in bad.stderr
    none = run_cli(["model", "predict", "--profile", "generic", "--nccl-proto", "Simple"])
    assert none.returncode == 2 and "nccl" in none.stderr and none.stderr.strip().count("\n") == 0


def test_import_keeps_what_nccl_said_it_read(tmp_path):
    """NCCL_DEBUG=INFO prints each NCCL_* variable NCCL read; the importer records them as the
    run's environment (a variable the logs disagree on is left out, with a note)."""
    text = INFO_LOG.read_text()
    said = ("[1,0]<stdout>:test-nccl-efa-worker-0:21:21 [0] NCCL INFO NCCL_PROTO set by environment "
            "to simple\n")
    anchor = "[1,0]<stdout>:NCCL version"
    log = tmp_path / "with_env.log"
    log.write_text(text.replace(anchor, said + anchor, 1))
    out = tmp_path / "with_env.jsonl"
    done = run_cli(["import", "nccl-tests", str(log), "--collective", "allreduce", "-o", str(out)])
    assert done.returncode == 0, done.stderr
    meta = json.loads(out.read_text().splitlines()[0])
    assert meta["env"] == {"NCCL_PROTO": "simple"}
    other = tmp_path / "other.log"
    other.write_text(text.replace(anchor, said.replace("simple", "LL") + anchor, 1))
    both = tmp_path / "both.jsonl"
    done = run_cli(["import", "nccl-tests", str(log), str(other), "--collective", "allreduce",
                    "-o", str(both)])
    assert done.returncode == 0, done.stderr
    meta = json.loads(both.read_text().splitlines()[0])
    assert "NCCL_PROTO" not in meta["env"]
    assert any("NCCL_PROTO differs" in n for n in meta["import"]["notes"])


def test_check_can_judge_a_log_as_if_it_had_run_with_the_variables():
    """A log that does not say how NCCL was restricted (the Polaris one-node run probably had
    NCCL_PROTO=Simple) can be judged as if it had been: every native row then Simple, noted."""
    out = run_cli(["model", "check", str(ABCI_2N), "--profile", "abci-a", "--nccl-proto", "Simple"])
    assert out.returncode == 0, out.stderr
    assert "# note: " in out.stdout and "NCCL_PROTO=Simple (given)" in out.stdout
    natives = [line for line in out.stdout.splitlines() if " native (" in line]
    assert natives and all("/Simple)" in line for line in natives)
    plain = run_cli(["model", "check", str(ABCI_2N), "--profile", "abci-a"])
    assert "# note: " not in plain.stdout
    assert any("/Simple)" not in line for line in plain.stdout.splitlines() if " native (" in line)
