"""A step's collectives against the published formulas.

* Rajbhandari et al. 2020, ZeRO (arXiv:1910.02054) §7: data parallelism and ZeRO-1/2 move 2Ψ per
  rank per step, ZeRO-3 3Ψ (Ψ: the rank's parameter bytes; a ring allreduce counts 2Ψ).
* Shoeybi et al. 2019, Megatron-LM (arXiv:1909.08053) §3: tensor parallelism allreduces b·s·h
  twice in forward and twice in backward per transformer layer: 4 per layer per micro-batch.
* Korthikanti et al. 2022 (arXiv:2205.05198) §4.2.2: with sequence parallelism each allreduce is an
  allgather plus a reduce-scatter of the same size.
* PyTorch DDP: buckets of at most 25 MiB (the first 1 MiB) over the gradients in reverse order.
"""

from __future__ import annotations

import pytest

from collbench.workload.buckets import MiB, assign_buckets
from collbench.workload.grid import Grid
from collbench.workload.library import load_model
from collbench.workload.plan import parse_plan, resolve
from collbench.workload.report import param_bytes, rank_totals
from collbench.workload.shard import stage_layers
from collbench.workload.step import Batch, build_step, volume

DEFAULT_BATCH = Batch(2, 1024, 1)


def _step(name, plan, world, rpn=4, batch=DEFAULT_BATCH, item=2, skew=1.0):
    model = load_model(name)
    par = resolve(parse_plan(plan), model, world, rpn)
    return build_step(model, par, batch, "bfloat16" if item == 2 else "float32", item, skew=skew)


def _dp_volume(step, stage=0):
    return rank_totals(step, Grid(step.par), stage)["dp"][0]


@pytest.mark.parametrize("name", ["gpt2", "llama2-7b", "resnet50", "bert-large"])
@pytest.mark.parametrize("strategy,factor", [("ddp", 2), ("zero1", 2), ("zero2", 2), ("zero3", 3), ("fsdp", 3)])
def test_zero_paper_volumes(name, strategy, factor):
    step = _step(name, strategy, 8)
    psi = param_bytes(step, 0)
    assert psi == load_model(name).params * 2
    # reduce-scatter/allgather buffers are padded to 16-byte shards: at most 16·p bytes per buffer
    padding = 16 * 8 * len(step.ops)
    assert factor * psi <= _dp_volume(step) <= factor * psi + factor * padding


def test_ring_wire_bytes_are_the_volume_times_p_minus_1_over_p():
    step = _step("gpt2", "ddp", 8)
    volume_, wire = rank_totals(step, Grid(step.par), 0)["dp"]
    assert wire == pytest.approx(volume_ * 7 / 8)


def test_ddp_with_tensor_parallelism_syncs_the_shard():
    # each TP rank holds 1/tp of the split tensors (plus the replicated norms and biases)
    step = _step("llama2-7b", "tp4", 8)
    psi = param_bytes(step, 0)
    assert psi < load_model("llama2-7b").params * 2 / 4 * 1.01
    assert _dp_volume(step) == 2 * psi


def test_gradient_accumulation_semantics():
    four = Batch(1, 1024, 4)
    psi = load_model("gpt2").params * 2
    # DDP and ZeRO-1 sync once per step; ZeRO-2 reduce-scatters every micro-batch; ZeRO-3 gathers too
    assert _dp_volume(_step("gpt2", "ddp", 4, batch=four)) == 2 * psi
    assert _dp_volume(_step("gpt2", "zero1", 4, batch=four)) == pytest.approx(2 * psi, rel=1e-4)
    assert _dp_volume(_step("gpt2", "zero2", 4, batch=four)) == pytest.approx(5 * psi, rel=1e-4)
    assert _dp_volume(_step("gpt2", "zero3", 4, batch=four)) == pytest.approx(12 * psi, rel=1e-4)


@pytest.mark.parametrize("name,tp", [("gpt2", 4), ("llama2-7b", 4), ("llama2-70b", 8), ("bert-large", 2)])
def test_megatron_four_allreduces_of_bsh_per_layer(name, tp):
    b, s, m = 2, 512, 3
    step = _step(name, f"tp{tp}", tp * 2, rpn=8, batch=Batch(b, s, m))
    t = load_model(name).transformer
    layer_ops = [op for op in step.ops if op.section == "transformer layers"]
    assert {op.collective for op in layer_ops} == {"allreduce"}
    assert {op.nbytes for op in layer_ops} == {b * s * t.hidden * 2}
    assert sum(op.calls for op in layer_ops) == 4 * t.layers * m
    assert sum(op.calls for op in layer_ops if op.phase == "forward") == 2 * t.layers * m


def test_sequence_parallelism_is_allgather_plus_reduce_scatter():
    b, s = 1, 1024
    step = _step("llama2-7b", "tp4+sp", 4, batch=Batch(b, s, 1))
    t = load_model("llama2-7b").transformer
    layer_ops = [op for op in step.ops if op.section == "transformer layers"]
    calls = {c: sum(op.calls for op in layer_ops if op.collective == c) for c in ("allgather", "reduce_scatter")}
    assert calls == {"allgather": 4 * t.layers, "reduce_scatter": 4 * t.layers}
    assert {op.nbytes for op in layer_ops} == {b * s * t.hidden * 2}
    # same volume as the allreduces it replaces (Korthikanti et al.: "the same communication")
    plain = _step("llama2-7b", "tp4", 4, batch=Batch(b, s, 1))
    g = Grid(plain.par)
    vol = lambda st: sum(volume(o, g.representative("tp").size)[0] * o.calls  # noqa: E731
                         for o in st.ops if o.section == "transformer layers")
    assert vol(step) == vol(plain)


def test_ddp_buckets_follow_pytorch():
    sizes = [3 * MiB, 10 * MiB, 10 * MiB, 6 * MiB, 1 * MiB, 30 * MiB, 2 * MiB]
    buckets = assign_buckets(sizes)
    # first bucket closes as soon as it reaches 1 MiB; later ones at 25 MiB; tensors never split
    assert [(b.first, b.last) for b in buckets] == [(0, 0), (1, 3), (4, 5), (6, 6)]
    step = _step("gpt2", "ddp", 4)
    buckets = [op for op in step.ops if op.section == "gradient buckets"]
    # reverse layer order: the first bucket holds the head, the last the embedding
    assert "head" in buckets[0].what and "embedding" in buckets[-1].what
    assert [op.ready for op in buckets] == sorted(op.ready for op in buckets) and buckets[-1].ready == 1.0
    assert all(op.nbytes >= 25 * MiB for op in buckets[1:-1])


def test_pipeline_point_to_point():
    b, s, m = 1, 1024, 8
    step = _step("llama2-7b", "pp4", 4, batch=Batch(b, s, m))
    t = load_model("llama2-7b").transformer
    p2p = [op for op in step.ops if op.collective == "p2p"]
    assert len(p2p) == 2 * 3 and all(op.calls == m and op.nbytes == b * s * t.hidden * 2 for op in p2p)
    # a middle stage sends m activations forward and m gradients backward
    assert rank_totals(step, Grid(step.par), 1)["pp"][0] == 2 * m * b * s * t.hidden * 2
    # stages split the 32 blocks evenly; the embedding sits with stage 0, the head with stage 3
    stages = stage_layers(load_model("llama2-7b"), 4)
    assert [sum(layer.block for layer in st) for st in stages] == [8, 8, 8, 8]
    assert stages[0][0].name == "embedding" and stages[3][-1].name == "head"


def test_tied_embeddings_across_stages_are_summed():
    step = _step("gpt2", "pp2", 2, batch=Batch(1, 1024, 2))
    tied = [op for op in step.ops if op.group == "embedding"]
    assert len(tied) == 1 and tied[0].nbytes == 50257 * 768 * 2 and tied[0].stages == (0, 1)


def test_expert_parallelism_alltoalls():
    b, s, m = 1, 4096, 2
    step = _step("mixtral-8x7b", "ep4", 8, batch=Batch(b, s, m), skew=1.5)
    t = load_model("mixtral-8x7b").transformer
    a2a = [op for op in step.ops if op.collective == "alltoall"]
    assert sum(op.calls for op in a2a) == 4 * t.layers * m          # dispatch + combine, fwd + bwd
    assert {op.nbytes for op in a2a} == {b * s * t.top_k * t.hidden * 2}
    assert {op.skew for op in a2a} == {1.5}
    # dense gradients over dp×ep, each rank's 2 experts over dp
    groups = {op.group for op in step.ops if op.kind == "dp"}
    assert groups == {"dp×ep", "dp"}
    par = step.par
    assert par.ep == 4 and par.dp == 2


def test_grid_puts_tp_inside_nodes_and_dp_across():
    step = _step("llama2-7b", "tp4", 16)
    grid = Grid(step.par)
    tp, dp = grid.representative("tp"), grid.representative("dp")
    assert tp.nnodes == 1 and tp.size == 4
    assert dp.nnodes == 4 and dp.per_node == 1
    assert grid.nic_sharers("dp") == 4          # four DP groups cross nodes at once
