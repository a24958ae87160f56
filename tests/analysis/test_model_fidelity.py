"""Issue 11 (A100 fidelity): per-link accounting, topology profiles, NCCL's own collective
modelled, validation against the published logs, and profiles fitted from logs."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from collbench.algorithms import Collective, Layout, Problem
from collbench.analysis.model import nccl
from collbench.analysis.model.check import check
from collbench.analysis.model.cost import Link, Machine, Phase, Side, Sig, total
from collbench.analysis.model.forms import phases
from collbench.analysis.model.predict import Model
from collbench.analysis.model.profile import load_profile, profile_from_record, shipped_names
from collbench.analysis.model.topo import Topo, vstep
from collbench.analysis.model.walk import step_signatures
from collbench.errors import UsageError

ROOT = Path(__file__).resolve().parents[2]
PUBLIC = ROOT / "results" / "public"
ABCI = PUBLIC / "abci-compute-node-a"
OCI = PUBLIC / "oci-bm-gpu4.8"
POLARIS = PUBLIC / "alcf-polaris"
STANAGE = PUBLIC / "sheffield-stanage-xe8545"
SUPERBENCH = PUBLIC / "superbench-8xa100-sxm4-40gb"
GALVATRON = PUBLIC / "galvatron-8xa100-sxm4-40gb"
A, BETA = 2e-6, 1e-9
THREE_PORTS = Machine(Link(A, BETA, ports=3), Link(5 * A, 4 * BETA), nics=1)


# -- 1. per-link accounting ------------------------------------------------------------------------

def _one_rank_step(messages: list[tuple[int, int]]) -> Sig:
    """The signature of rank 0 sending ``messages`` (peer, bytes) on a 4-rank node."""
    topo = Topo(np.zeros(4, dtype=np.int64), rows=np.array([0]))
    sends = [(np.array([peer]), nbytes) for peer, nbytes in messages]
    (sig,) = vstep(topo, sends)
    return sig


def test_two_messages_to_one_peer_share_its_link():
    """Bytes to the same peer in one step share that pair's link: two messages of n and n+1
    bytes to peer 1 move as much as one message of 2n+1 bytes (before: charged as if each had
    its own link, (n+1)·β instead of (2n+1)·β)."""
    n = 1000
    split = _one_rank_step([(1, n), (1, n + 1)])
    whole = _one_rank_step([(1, 2 * n + 1)])
    _, b_split, _ = split.parts(THREE_PORTS)
    _, b_whole, _ = whole.parts(THREE_PORTS)
    assert b_split == pytest.approx(b_whole) == pytest.approx((2 * n + 1) * BETA)
    # to different peers they use different links: the injection limit (3 ports) is what binds
    spread = _one_rank_step([(1, n), (2, n + 1)])
    assert spread.parts(THREE_PORTS)[1] == pytest.approx((n + 1) * BETA)


def test_one_byte_apart_variants_cost_the_same_closed_and_walk():
    """The same traffic cut two ways, one byte apart, costs within one byte's β; the closed
    form and the schedule walk charge the busiest link alike."""
    split = _one_rank_step([(1, 4096), (1, 4097), (2, 100)])
    shifted = _one_rank_step([(1, 4097), (1, 4096), (2, 100)])
    merged = _one_rank_step([(1, 8193), (2, 100)])
    costs = [s.parts(THREE_PORTS)[1] for s in (split, shifted, merged)]
    assert max(costs) - min(costs) <= BETA * 1.0001
    for p in (4, 5, 8):
        problem = Problem(Collective.ALLREDUCE, p, 4 * 3 * 64 + 1)   # odd: halves differ by one
        closed = total(phases("double_binary_tree", problem, 1, options={"chunks": 3}), THREE_PORTS)
        walked = total([Phase(1, s) for _, s in step_signatures("double_binary_tree", problem, 1,
                                                                options={"chunks": 3})], THREE_PORTS)
        assert closed.beta >= walked.beta * (1 - 1e-12)
        assert closed.beta <= walked.beta * 1.01


def test_double_binary_tree_no_longer_beats_the_links():
    """On a 4-GPU NVLink3 node a rank of the double binary tree sends both trees' chunks over
    one of its links in the steady state; the shortcut that gave it 157 GB/s busbw is gone:
    no schedule moves a 1 GiB allreduce faster than 2(p-1)/p · n over 300 GB/s of injection."""
    model = Model(load_profile("perlmutter"))
    dbt = model.predict(Collective.ALLREDUCE, "double_binary_tree", 4, 1 << 30)
    assert dbt.busbw_gbps < 150
    for name in ("ring", "rabenseifner", "direct", "double_binary_tree"):
        pred = model.predict(Collective.ALLREDUCE, name, 4, 1 << 30)
        assert pred.busbw_gbps <= 300


def test_nics_per_rank_rails_and_sharing():
    m = Machine(Link(0, 0), Link(A, BETA), nics=16, rank_nics=2)
    alone = Sig(Side(0, 0, 0, 1, 1000, 1000, 1))
    eight = Sig(Side(0, 0, 0, 1, 1000, 1000, 8))
    sixteen = Sig(Side(0, 0, 0, 1, 1000, 1000, 32))
    assert alone.time(m) == pytest.approx(A + 500 * BETA)       # two NICs for one rank
    assert eight.time(m) == pytest.approx(A + 500 * BETA)       # 16 NICs, 8 ranks: 2 each
    assert sixteen.time(m) == pytest.approx(A + 2000 * BETA)    # 32 ranks share 16 NICs
    assert Machine(Link(0, 0), Link(A, BETA), nics=1).nic_factor(4) == 4


# -- 2. topology profiles -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["abci-a", "oci-bm-gpu4.8", "dgx-a100", "a100-pcie", "perlmutter",
                                  "delta"])
def test_topology_profiles_cite_every_constant(name):
    record = json.loads((resources.files("collbench.analysis") / "profiles" / f"{name}.json").read_text())
    sources = record["sources"]
    keys = [f"{level}.{k}" for level in ("intra", "inter") for k in record[level]]
    keys += [f"nccl.{k}" for k in record["nccl"] if k != "realisation"]
    keys += [f"topology.{k}" for k in record["topology"]]
    keys += ["nics_per_node", "rank_nics", "copy_gbps", "ranks_per_node"]
    keys += [f"reduce_gbps.{k}" for k in record["reduce_gbps"]]
    missing = [k for k in keys if not sources.get(k)]
    assert not missing, (name, missing)
    profile = load_profile(name)
    assert profile.nccl is not None and profile.topology["intra"] in ("nvswitch", "nvlink", "pcie")


def test_topology_classes_shape_the_links():
    nvs, nvl, pcie = load_profile("dgx-a100"), load_profile("perlmutter"), load_profile("a100-pcie")
    # NVSwitch: any one pair at the full per-GPU rate; NVLink3 4-GPU: a third of it per pair
    assert nvs.intra.bandwidth_gbps == 300 and nvs.intra.ports == 1
    assert nvl.intra.bandwidth_gbps * nvl.intra.ports == 300
    assert pcie.intra.bandwidth_gbps < 32 and pcie.nccl.intra == "pci"
    one_peer = Sig(Side(1, 1 << 30, 1 << 30))
    assert one_peer.time(nvs.machine()) < one_peer.time(nvl.machine()) / 2
    oci = load_profile("oci-bm-gpu4.8")
    assert (oci.nics_per_node, oci.rank_nics, oci.topology["nics"]) == (16, 2, "multi")


@pytest.mark.parametrize("section,message", [
    ({"intra_busbw_gbps": "x"}, "needs numbers"),
    ({"intra_busbw_gbps": 240, "cpu": "arm"}, "intel or amd"),
    ({"intra_busbw_gbps": 240, "intra": "net"}, "nvlink or pci"),
    ({"intra_busbw_gbps": 240, "realisation": {"intra": {"lat_scale": {"LL256": 2}}}}, "per protocol"),
    ({"intra_busbw_gbps": 240, "realisation": {"intra": {"aggregate": {"LL": -0.5}}}}, "must be >= 0"),
    ({"intra_busbw_gbps": 240, "realisation": {"intra": {"aggregate": {"LL256": 1}}}}, "must be >= 0"),
    ({"intra_busbw_gbps": 240, "realisation": {"intra": {"aggregate": {"LL": "x"}}}}, "needs numbers"),
])
def test_bad_nccl_sections_are_one_line(section, message):
    record = {"collbench_profile": 1, "intra": {"alpha_us": 1, "bandwidth_gbps": 2}, "nccl": section}
    with pytest.raises(UsageError, match=message):
        profile_from_record(record, "x.json")


# -- 3. NCCL's own collective -------------------------------------------------------------------------

AMD_NVLINK = nccl.NcclSystem(intra_busbw=240, inter_busbw=96, channels=12, cpu="amd")


@pytest.mark.parametrize("nodes,ppn,algo,proto,expected", [
    # /work/shared/reference/algorithms.md section 3.3, "Illustrative model latencies" (AMD hosts,
    # NVLink intra, latencyInter 0, no plateau factor), recomputed from NCCL 2.30.7's formulas
    (1, 4, "ring", "LL", 10.2), (1, 4, "ring", "LL128", 25.4), (1, 4, "ring", "Simple", 28.8),
    (1, 4, "tree", "LL", 10.4), (1, 4, "tree", "LL128", 21.5), (1, 4, "tree", "Simple", 32.4),
    (1, 8, "ring", "Simple", 56.0), (1, 8, "tree", "Simple", 64.4),
    (2, 4, "ring", "LL", 36.0), (2, 4, "ring", "Simple", 108.4), (2, 4, "tree", "LL", 20.4),
    (16, 4, "ring", "LL", 279.6), (16, 4, "ring", "Simple", 1004.4), (16, 4, "tree", "Simple", 144.4),
    (64, 4, "tree", "LL128", 123.5), (256, 4, "ring", "Simple", 16364.4), (256, 4, "tree", "LL", 90.4),
])
def test_nccl_latencies_match_the_reference_table(nodes, ppn, algo, proto, expected):
    lat = nccl._latency(AMD_NVLINK, algo, proto, nodes * ppn, nodes, Collective.ALLREDUCE)
    assert lat == pytest.approx(expected, abs=0.05)


def test_nccl_chooses_like_nccl():
    one = [nccl.choose(AMD_NVLINK, Collective.ALLREDUCE, 8, 1, n).label for n in (8, 1 << 30)]
    assert one == ["ring/LL", "ring/Simple"]
    many = {nccl.choose(AMD_NVLINK, Collective.ALLREDUCE, 256, 64, n).algorithm for n in (8, 1 << 20)}
    assert many == {"tree"}              # the ring's linear latency loses at 64 nodes
    assert nccl.choose(AMD_NVLINK, Collective.ALLGATHER, 256, 64, 1 << 20).algorithm == "ring"
    # LL128 stays off across nodes when the NICs hang off the CPU (Perlmutter, Delta)
    per = load_profile("perlmutter").nccl
    assert all(c.protocol != "LL128" for c in nccl.candidates(per, Collective.ALLREDUCE, 8, 2, 1 << 20))


def test_nccl_launches_fewer_channels_for_small_messages():
    big = nccl.choose(AMD_NVLINK, Collective.ALLREDUCE, 8, 1, 1 << 30)
    small = nccl.choose(AMD_NVLINK, Collective.ALLREDUCE, 8, 1, 64 << 10)
    assert nccl.launched_channels(AMD_NVLINK, big, 8, 1) == 24
    # ring LL: 512 threads x 8 B x 8 ranks = 32 KiB per channel
    assert nccl.launched_channels(AMD_NVLINK, small, 8, 1) == 2


def test_model_predicts_native_only_on_nccl_with_an_nccl_section():
    model = Model(load_profile("abci-a"))
    assert model.cost(Collective.ALLREDUCE, "native", 8, 1 << 20, 4, backend="nccl") is not None
    assert model.cost(Collective.ALLREDUCE, "native", 8, 1 << 20, 4, backend="mpi") is None
    assert Model(load_profile("generic")).cost(Collective.ALLREDUCE, "native", 8, 1 << 20, 4,
                                               backend="nccl") is None
    cost, method = model.cost(Collective.ALLREDUCE, "native", 16, 1 << 20, 4,
                              layout=Layout.blocked(16, 8), backend="nccl")
    assert method.startswith("nccl ") and cost.total > 0


# -- 4. validation against the published logs ------------------------------------------------------

def _bands(path: Path, profile) -> tuple[float, float | None]:
    """(share of rows from 1 MiB within ±25 %, share of rows from 8 B to 64 KiB within ±50 %);
    the second is None for a log without rows in that band."""
    _, checked = check([str(path)], profile)
    modelled = [c for c in checked if c.error is not None]
    big = [c for c in modelled if c.row.bytes >= 1 << 20]
    small = [c for c in modelled if 8 <= c.row.bytes <= 64 << 10]
    return (sum(abs(c.error) <= 0.25 for c in big) / len(big),
            sum(abs(c.error) <= 0.5 for c in small) / len(small) if small else None)


def _fitted(tmp_path: Path, logs: list[Path], base: str):
    from collbench.analysis.model.fit import calibrate_from

    record, _ = calibrate_from([str(p) for p in logs], load_profile(base))
    out = tmp_path / "fitted.json"
    out.write_text(json.dumps(record))
    return load_profile(str(out))


@pytest.mark.parametrize("judged,fitted_on,base", [
    (ABCI / "allreduce-1node-8gpu.jsonl",
     [ABCI / "allreduce-1node-4gpu.jsonl", OCI / "allreduce-1node-8gpu.jsonl"], "abci-a"),
    (ABCI / "allreduce-1node-4gpu.jsonl",
     [ABCI / "allreduce-1node-8gpu.jsonl", OCI / "allreduce-1node-8gpu.jsonl"], "abci-a"),
    (OCI / "allreduce-1node-8gpu.jsonl",
     [ABCI / "allreduce-1node-8gpu.jsonl", ABCI / "allreduce-1node-4gpu.jsonl"], "oci-bm-gpu4.8"),
    (ABCI / "allreduce-2node-16gpu.jsonl", [ABCI / "allreduce-16node-128gpu.jsonl"], "abci-a"),
    (ABCI / "allreduce-16node-128gpu.jsonl", [ABCI / "allreduce-2node-16gpu.jsonl"], "abci-a"),
    (ABCI / "allreduce-4node-32gpu.jsonl",
     [ABCI / "allreduce-2node-16gpu.jsonl", ABCI / "allreduce-16node-128gpu.jsonl"], "abci-a"),
])
def test_published_logs_within_the_acceptance_bands(tmp_path, judged, fitted_on, base):
    """Each dataset judged with a profile fitted on *other* datasets of its system class (never
    on itself): >= 80 % of rows from 1 MiB within ±25 %, >= 80 % from 8 B to 64 KiB within ±50 %.
    docs/performance.md section "A100 fidelity" has every score and the commands."""
    assert judged not in fitted_on
    bw, lat = _bands(judged, _fitted(tmp_path, fitted_on, base))
    assert bw >= 0.8 and lat >= 0.8, (judged.name, bw, lat)


def test_oci_two_nodes_misses_the_target_with_hardware_specifications(tmp_path):
    """Recorded, not hidden: the two-node OCI run reaches 38 % of its 16 NICs' line rate, which no
    specification predicts (docs/performance.md)."""
    bw, lat = _bands(OCI / "allreduce-2node-16gpu.jsonl", load_profile("oci-bm-gpu4.8"))
    assert bw < 0.8 <= lat
    # under the rule's other option too: factors fitted on the other two-node BM.GPU4.8 runs
    tuned = [OCI / "allreduce-2node-16gpu-nccltests.jsonl", OCI / "allreduce-2node-16gpu-oke.jsonl"]
    bw, lat = _bands(OCI / "allreduce-2node-16gpu.jsonl", _fitted(tmp_path, tuned, "oci-bm-gpu4.8"))
    assert bw < 0.8 <= lat


@pytest.mark.parametrize("name,passes", [
    ("allreduce-2node-16gpu-nccltests.jsonl", True),   # NCCL_IB_HCA: all 16 ports, GID index 3
    ("allreduce-2node-16gpu-oke.jsonl", True),         # the same on Kubernetes (16 SR-IOV VFs)
    ("allreduce-2node-16gpu-ubuntu.jsonl", False),     # no NCCL_IB_HCA or GID index: 57 GB/s
    ("allreduce-1node-8gpu-ubuntu.jsonl", True),
])
def test_other_oci_bm_gpu48_runs_judged_with_the_hardware_profile(name, passes):
    """Three more published BM.GPU4.8 runs (1-10 GiB only): the two two-node runs that name all 16
    RDMA ports reach what the hardware profile predicts (so the spinup run's 38 % of line rate is
    that run's, not the shape's); the Ubuntu run that sets neither the ports nor a RoCE GID index
    gets a quarter of it. Recorded, misses included (docs/performance.md section 9)."""
    bw, lat = _bands(OCI / name, load_profile("oci-bm-gpu4.8"))
    assert lat is None
    assert (bw >= 0.8) is passes, (name, bw)


def test_abci_eight_nodes_misses_the_target(tmp_path):
    """Recorded, not hidden: ABCI's 8-node run plateaus at 14-16 GB/s busbw from 4 MiB (its 4-
    and 16-node runs reach 31 and 27 GB/s); with the factors of the 2- and 16-node runs the model
    expects about twice that (docs/performance.md section 9)."""
    fitted = [ABCI / "allreduce-2node-16gpu.jsonl", ABCI / "allreduce-16node-128gpu.jsonl"]
    bw, lat = _bands(ABCI / "allreduce-8node-64gpu.jsonl", _fitted(tmp_path, fitted, "abci-a"))
    assert bw < 0.8 <= lat


POLARIS_ALLREDUCE = [POLARIS / f"allreduce-{run}.jsonl" for run in
                     ("2node-8gpu", "8node-32gpu", "2node-8gpu-nccl2.18", "8node-32gpu-nccl2.18")]


@pytest.mark.parametrize("name,passes", [
    ("allreduce-2node-8gpu.jsonl", False),
    ("allreduce-8node-32gpu.jsonl", False),
    ("allreduce-2node-8gpu-nccl2.18.jsonl", False),
    ("allreduce-8node-32gpu-nccl2.18.jsonl", True),
    ("allgather-2node-8gpu.jsonl", False),
    ("allgather-8node-32gpu.jsonl", False),
    ("allgather-2node-8gpu-nccl2.18.jsonl", False),
])
def test_polaris_logs_judged_with_the_other_polaris_logs(tmp_path, name, passes):
    """ALCF Polaris (4x A100 NVLink, two Slingshot NICs per node): each file judged with the
    perlmutter profile (same node class, four NICs) plus factors fitted on every *other* Polaris
    allreduce file (allgather logs are never fitted on; their zero-byte rows, which used to spoil
    the LL fit, are skipped by ``calibrate --from`` now: test_model_fit_zero_bytes.py).
    Recorded, misses included (docs/performance.md section 9): a change of verdict means the
    table there needs updating."""
    judged = POLARIS / name
    fitted_on = [p for p in POLARIS_ALLREDUCE if p != judged]
    assert len(fitted_on) >= 3
    bw, lat = _bands(judged, _fitted(tmp_path, fitted_on, "perlmutter"))
    assert (bw >= 0.8 and lat >= 0.8) is passes, (name, bw, lat)


HGX_A100_ONE_NODE = [ABCI / "allreduce-1node-8gpu.jsonl", ABCI / "allreduce-1node-4gpu.jsonl",
                     OCI / "allreduce-1node-8gpu.jsonl"]


@pytest.mark.parametrize("judged,passes", [
    (SUPERBENCH / "allreduce-1node-8gpu.jsonl", True),
    (SUPERBENCH / "allgather-1node-8gpu.jsonl", True),
    (SUPERBENCH / "reducescatter-1node-8gpu.jsonl", True),
    (GALVATRON / "allreduce-1node-8gpu.jsonl", True),       # 1 MiB - 1 GiB: no latency band
])
def test_other_hgx_a100_boards_judged_with_the_abci_and_oci_factors(tmp_path, judged, passes):
    """One node, 8x A100-SXM4-40GB on NVSwitch, one process driving the 8 GPUs (-g 8): the same
    system class as ABCI Compute Node (A) and OCI BM.GPU4.8, so judged with the abci-a profile
    plus the single-node factors of ABCI 1x8, ABCI 1x4 and OCI 1x8 (allreduce only: nothing is
    fitted on allgather or reduce_scatter). Recorded, misses included (docs/performance.md
    section 9): a change of verdict means the table there needs updating."""
    assert judged not in HGX_A100_ONE_NODE
    bw, lat = _bands(judged, _fitted(tmp_path, HGX_A100_ONE_NODE, "abci-a"))
    assert (lat is None) is (judged.parent == GALVATRON)
    assert (bw >= 0.8 and (lat is None or lat >= 0.8)) is passes, (judged.name, bw, lat)
    if not passes:
        assert bw < 0.8 <= lat             # the bandwidth band misses; latency is within


POLARIS_ONE_NODE = POLARIS / "allreduce-1node-4gpu-nccl2.28.jsonl"


def test_stanage_four_gpu_nvlink_node(tmp_path):
    """A 4x A100-SXM4 NVLink node (Dell XE8545, one process driving 4 GPUs, -g 4), judged under
    the rule with the factors of the other single-node log of its class (ALCF Polaris, 4 ranks
    on one node) and the other way round: every row from 1 MiB is within ±25 % both ways, the
    latency band misses both ways (Stanage's small messages take 14-16 us, Polaris's 38-47 us; the
    Polaris run probably had NCCL_PROTO=Simple, docs/performance.md section 9). The hardware
    profile alone under-predicts LL128/Simple times from 1 to 16 MiB. Recorded, not hidden."""
    judged = STANAGE / "allreduce-1node-4gpu.jsonl"
    bw, lat = _bands(judged, load_profile("perlmutter"))
    assert bw < 0.8 <= lat
    bw, lat = _bands(judged, _fitted(tmp_path, [POLARIS_ONE_NODE], "perlmutter"))
    assert lat < 0.8 <= bw, (bw, lat)
    bw, lat = _bands(POLARIS_ONE_NODE, _fitted(tmp_path, [judged], "perlmutter"))
    assert lat < 0.8 <= bw, (bw, lat)
    bw, lat = _bands(POLARIS_ONE_NODE, load_profile("perlmutter"))
    assert bw < 0.8 and lat < 0.8, (bw, lat)
    # not the rule (another system class), for comparison: the NVSwitch boards' one-node factors
    single_node_8gpu_boards = [ABCI / "allreduce-1node-4gpu.jsonl",
                               ABCI / "allreduce-1node-8gpu.jsonl", OCI / "allreduce-1node-8gpu.jsonl"]
    bw, lat = _bands(judged, _fitted(tmp_path, single_node_8gpu_boards, "perlmutter"))
    assert bw >= 0.8 and lat >= 0.8, (bw, lat)


def test_check_warns_when_judging_a_file_with_factors_fitted_on_it(tmp_path):
    """By content: a copy of the fitted file under another name is warned about, another
    system's log that happens to have the same name is not (it was, when names were compared)."""
    log = ABCI / "allreduce-1node-8gpu.jsonl"
    profile = _fitted(tmp_path, [log], "abci-a")
    text, _ = check([str(log)], profile)
    assert "fitted on this file" in text
    assert "# from 1 MiB:" in text and "# 8 B - 64 KiB:" in text
    renamed = tmp_path / "renamed.jsonl"
    renamed.write_bytes(log.read_bytes())
    assert "fitted on this file" in check([str(renamed)], profile)[0]
    namesake = OCI / log.name
    assert namesake.name == log.name
    assert "fitted on" not in check([str(namesake)], profile)[0]
    # a profile written before digests were recorded: names are all it has
    record = json.loads((tmp_path / "fitted.json").read_text())
    for real in record["nccl"]["realisation"].values():
        del real["fitted_sha256"]
    (tmp_path / "old.json").write_text(json.dumps(record))
    assert "fitted on a file of this name" in check([str(namesake)],
                                                    load_profile(str(tmp_path / "old.json")))[0]


# -- 7. profiles from logs ----------------------------------------------------------------------------

def test_fit_leaves_a_latency_it_cannot_see_at_nccls():
    """Two rows of 1 and 10 GiB: NCCL's latency is far below 5 % of either time, so 1 % of
    timing noise must not become a latency factor (it was 22 on OCI's two such runs)."""
    from collbench.analysis.model.fit import Sample, fit_realisation

    rows = []
    for nbytes, noise in ((1 << 30, 1.01), (10 << 30, 0.99)):
        choice = nccl.choose(AMD_NVLINK, Collective.ALLREDUCE, 16, 2, nbytes)
        t = (choice.latency_us + nbytes / (1000 * choice.algbw_gbps * 0.9)) * noise
        rows.append(Sample("x", 16, 2, nbytes, t, choice, 1.0))
    assert all(s.choice.latency_us < 0.05 * s.measured_us for s in rows)
    fitted = fit_realisation(rows)
    proto = rows[0].choice.protocol
    assert fitted.lat_scale[proto] == 1.0
    assert fitted.bw_scale[proto] == pytest.approx(0.9, rel=0.02)


def test_fit_recovers_known_factors():
    from collbench.analysis.model.fit import Sample, fit_realisation

    truth = nccl.Realisation({"LL": 1.5, "Simple": 2.5}, {"LL": 0.8, "Simple": 0.6})
    rows = []
    for nbytes in (1 << k for k in range(3, 31, 2)):
        choice = nccl.choose(AMD_NVLINK, Collective.ALLREDUCE, 8, 1, nbytes)
        share = nccl.launched_channels(AMD_NVLINK, choice, 8, 1) / 24
        ls, bs = truth.scales(choice.protocol)
        t = ls * choice.latency_us + nbytes / (1000 * choice.algbw_gbps * share * bs)
        rows.append(Sample("x", 8, 1, nbytes, t, choice, share))
    fitted = fit_realisation(rows)
    for proto in fitted.lat_scale:
        if proto in truth.lat_scale:
            assert fitted.lat_scale[proto] == pytest.approx(truth.lat_scale[proto], rel=1e-6)
            assert fitted.bw_scale[proto] == pytest.approx(truth.bw_scale[proto], rel=1e-6)


def test_fit_recovers_an_aggregate_term_and_the_model_prices_it():
    """Rows timed with the aggregate term (bytes at NCCL's bandwidth on all channels, which the
    launched ones share) give it back, and ``realised`` prices a profile's term the same way."""
    import dataclasses

    from collbench.analysis.model.fit import Sample, fit_realisation

    truth = nccl.Realisation({"LL": 1.2, "LL128": 2.0, "Simple": 2.5},
                             {"LL": 2.5, "LL128": 0.9, "Simple": 0.8}, aggregate={"LL": 0.9})
    system = dataclasses.replace(AMD_NVLINK, realisation={"intra": truth})
    rows = []
    for nbytes in (1 << k for k in range(3, 31)):
        cost, choice = nccl.predict(system, Collective.ALLREDUCE, 8, 1, nbytes)
        share = nccl.launched_channels(system, choice, 8, 1) / 24
        rows.append(Sample("x", 8, 1, nbytes, cost.total * 1e6, choice, share))
    assert any(s.share < 1 for s in rows if s.choice.protocol == "LL")
    fitted = fit_realisation(rows)
    assert fitted.aggregate_of("LL") == pytest.approx(0.9, rel=1e-6)
    assert fitted.bw_scale["LL"] == pytest.approx(2.5, rel=1e-6)
    assert fitted.lat_scale["LL"] == pytest.approx(1.2, rel=1e-6)
    # LL128 and Simple ran on every channel here: no separate aggregate term to fit
    assert "LL128" not in fitted.aggregate and "Simple" not in fitted.aggregate
    # without the term the same rows' LL times are flat where NCCL adds channels with the size
    plain = dataclasses.replace(AMD_NVLINK, realisation={"intra": dataclasses.replace(truth, aggregate={})})
    flat = [nccl.predict(plain, Collective.ALLREDUCE, 8, 1, b)[0].total for b in (64 << 10, 256 << 10)]
    grows = [nccl.predict(system, Collective.ALLREDUCE, 8, 1, b)[0].total for b in (64 << 10, 256 << 10)]
    assert flat[1] == pytest.approx(flat[0]) and grows[1] > 1.1 * grows[0]


def test_calibrate_from_cli_writes_a_profile_and_prints_residuals(tmp_path, capsys):
    from collbench.cli import main

    out = tmp_path / "p.json"
    rc = main(["calibrate", "--from", str(ABCI / "allreduce-2node-16gpu.jsonl"),
               str(ABCI / "allreduce-1node-8gpu.jsonl"), "--profile", "abci-a", "--out", str(out),
               "--name", "abci-fit"])
    text = capsys.readouterr().out
    assert rc == 0 and "residual" in text and "intra link" in text and "inter link" in text
    profile = load_profile(str(out))
    assert profile.name == "abci-fit" and set(profile.nccl.realisation) == {"intra", "inter"}
    assert profile.record["metadata"]["base_profile"] == "abci-a"


def test_calibrate_from_needs_nccl_rows_and_an_nccl_section(tmp_path):
    from collbench.analysis.model.fit import calibrate_from

    with pytest.raises(UsageError, match="no 'nccl' section"):
        calibrate_from([str(ABCI / "allreduce-1node-8gpu.jsonl")], load_profile("generic"))
    with pytest.raises(UsageError, match="no NCCL native rows"):
        calibrate_from([str(ABCI / "osu-mpi-cuda-allreduce-2node-16gpu.jsonl")], load_profile("abci-a"))


def test_every_shipped_profile_still_loads():
    for name in shipped_names():
        load_profile(name)


def test_the_fidelity_benchmark_judges_every_published_nccl_log():
    """benchmarks/nccl_fidelity.py (docs/performance.md §9's table in one run) judges every
    published nccl-tests log but the two the model has no algorithm for (SHARP's CollNet, OSU's
    MPI library), each without its own file among the fitted ones, and prints one line each."""
    import runpy
    import subprocess
    import sys

    bench = ROOT / "benchmarks" / "nccl_fidelity.py"
    judgements = runpy.run_path(str(bench))["JUDGEMENTS"]
    judged = {j.judged for j in judgements}
    published = {f"{p.parent.name}/{p.stem}" for p in PUBLIC.glob("*/*.jsonl")}
    no_model = {"abci-compute-node-a/allreduce-2node-16gpu-sharp",
                "abci-compute-node-a/osu-mpi-cuda-allreduce-2node-16gpu"}
    assert judged == published - no_model
    assert all(j.judged not in j.fitted_on for j in judgements)
    out = subprocess.run([sys.executable, str(bench), "--only", "galvatron"], capture_output=True,
                         text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].startswith("PASS  galvatron")
    assert out.stdout.splitlines()[-1] == "# 1 of 1 logs meet both targets"
