"""``collbench workload`` list/show/predict/from-hf and the impossible plans, through the real
command line (in process: these commands start no MPI job)."""

from __future__ import annotations

import json

import pytest

from collbench.analysis.model.cost import total
from collbench.analysis.model.profile import load_profile
from collbench.cli import main
from collbench.errors import UsageError
from collbench.workload.cost import Coster, alltoall_phases, p2p_phases
from collbench.workload.grid import Group
from collbench.workload.plan import parse_plan, parse_plans
from collbench.workload.step import CommOp


def cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(capsys, *args) -> str:
    code, out, err = cli(capsys, *args)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("collbench: error: "), err
    return lines[0]


@pytest.mark.parametrize("args,message", [
    (["show", "gpt2", "--plan", "tp2", "--dp", "3", "--nodes", "2"], "dp·tp·pp·ep = 3·2·1·1 = 6, not the 8 ranks"),
    (["show", "llama2-7b", "--tp", "8", "--nodes", "2"], "tp 8 is larger than a node (4 ranks per node)"),
    (["show", "mixtral-8x7b", "--ep", "16", "--nodes", "4"], "ep 16 cannot split mixtral-8x7b's 8 experts"),
    (["show", "llama2-7b", "--ep", "2", "--nodes", "1"], "needs a mixture-of-experts model"),
    (["show", "llama2-70b", "--plan", "ddp", "--nodes", "2", "--gpu-memory", "40"], "does not fit"),
    (["show", "gpt2-xl", "--tp", "4", "--nodes", "1"], "tp 4 does not divide gpt2-xl's 25 heads"),
    (["show", "resnet50", "--tp", "2", "--nodes", "1"], "need a transformer"),
    (["show", "gpt2", "--pp", "13"], "more pipeline stages than gpt2's 12 layers"),
    (["show", "gpt2", "--plan", "ddp+zero3"], "two data-parallel strategies"),
    (["show", "gpt2", "--plan", "tq4"], "unknown component 'tq4'"),
    (["show", "nope"], "no model 'nope'"),
    (["predict", "gpt2", "--nodes", "0"], "--nodes"),
    (["run", "mixtral-8x7b", "--plan", "ep2", "-np", "2", "--ep-skew", "2"], "skewed alltoall"),
    (["run", "gpt2", "--scale", "2"], "--scale"),
])
def test_impossible_plans_are_one_line(capsys, args, message):
    line = one_error_line(capsys, "workload", *args)
    assert message in line


def test_memory_check_passes_when_sharded(capsys):
    # 70B in bf16 with Adam: 16 bytes/param = 1.1 TB; ZeRO-3 over 64 GPUs is 17 GB each
    code, out, _ = cli(capsys, "workload", "show", "llama2-70b", "--plan", "zero3", "--nodes", "16",
                       "--gpu-memory", "40")
    assert code == 0 and "zero3+dp64" in out


def test_plan_grammar():
    assert parse_plan("tp4,dp2") == parse_plan("tp4+dp2")
    assert [p.label for p in parse_plans("ddp,zero3,tp4")] == ["ddp", "zero3", "ddp+tp4"]
    assert parse_plan("tp2+sp+zero1").sp and parse_plan("zero1+tp2+sp").strategy == "zero1"
    with pytest.raises(UsageError, match="sequence parallelism"):
        parse_plan("sp")


def test_show_lists_collectives_and_totals(capsys):
    code, out, _ = cli(capsys, "workload", "show", "llama2-7b", "--dp", "8", "--tp", "4", "--nodes", "8",
                       "--gpus-per-node", "4")
    assert code == 0
    assert "ddp+dp8+tp4 on 32 ranks (8 nodes x 4)" in out
    assert "tp: 4 ranks in 1 node" in out and "dp: 8 ranks over 8 nodes, 1 per node" in out
    assert "gradient buckets" in out and "layer outputs" in out
    assert "dp 6.28 GiB (wire 5.49 GiB; 2 Ψ)" in out
    code, out, _ = cli(capsys, "workload", "show", "gpt2", "--plan", "zero3", "--nodes", "1", "--format", "json")
    record = json.loads(out)
    assert record["per_rank"]["0"]["volume"]["dp"] == pytest.approx(3 * record["per_rank"]["0"]["param_bytes"],
                                                                       rel=1e-4)


def test_list(capsys):
    code, out, _ = cli(capsys, "workload", "list")
    assert code == 0 and "mixtral-8x7b" in out and "12.9B active" in out and "resnet50" in out


def test_predict_table_plot_and_compute(capsys, tmp_path):
    plot = tmp_path / "p.svg"
    code, out, _ = cli(capsys, "workload", "predict", "gpt2-xl", "--plan", "ddp,zero3,tp4", "--nodes", "1..4",
                       "--gpus-per-node", "4", "--profile", "perlmutter", "--mfu", "0.4", "--plot", str(plot))
    assert code == 0
    assert "## ddp" in out and "## zero3" in out and "## ddp+tp4" in out
    assert "tp 4 does not divide gpt2-xl's 25 heads" in out          # impossible, said why
    assert "40% of 312 TFLOP/s" in out and "comm/compute" in out
    assert plot.is_file() and plot.stat().st_size > 1000
    code, out, _ = cli(capsys, "workload", "predict", "llama2-7b", "--plan", "tp4", "--nodes", "4",
                       "--profile", "delta", "--format", "json")
    [point] = json.loads(out)
    assert point["resolved"] == "ddp+dp4+tp4" and set(point["by_kind_s"]) == {"dp", "tp"}
    assert "NIC" in point["bound"]


def test_delta_shares_one_nic_per_node():
    # TP inside nodes leaves 4 DP groups crossing nodes at once: Delta's one NIC is shared 4 ways,
    # Perlmutter has a NIC per GPU
    from collbench.workload.library import load_model
    from collbench.workload.options import Options
    from collbench.workload.predict import predict

    model = load_model("llama2-7b")
    out = {}
    for name in ("perlmutter", "delta"):
        [point] = predict(model, [parse_plan("tp4")], [8], 4, load_profile(name), Options(), {"dp": "ring", "tp": "ring"})
        out[name] = point.cost.by_kind()
    assert out["delta"]["tp"] == pytest.approx(out["perlmutter"]["tp"])      # same NVLink node
    assert out["delta"]["dp"] > 3.5 * out["perlmutter"]["dp"]


def test_own_alltoall_and_p2p_formulas():
    profile = load_profile("perlmutter")
    m = profile.machine("bfloat16")
    a, b = profile.intra.alpha_us * 1e-6, 1 / (profile.intra.bandwidth_gbps * 1e9)
    one_node = Group("ep", (0, 1, 2, 3), 4)
    # pairwise alltoall on 4 ranks of one node: 3 steps of one n/4 message each way
    n = 4 << 20
    assert total(alltoall_phases(one_node, n), m).total == pytest.approx(3 * (a + n / 4 * b))
    skewed = total(alltoall_phases(one_node, n, skew=2.0), m).total
    assert skewed == pytest.approx(3 * (a + n / 2 * b))
    pair = Group("pp 0-1", (0, 4), 4)                   # two nodes: one message over the network
    ai, bi = profile.inter.alpha_us * 1e-6, 1 / (profile.inter.bandwidth_gbps * 1e9)
    assert total(p2p_phases(pair, n, 0), m).total == pytest.approx(ai + n * bi)
    # skewed routing through the model: the uniform alltoall of skew x the bytes
    coster = Coster(profile, {"ep": "pairwise"})
    uniform = CommOp("ep", "ep", "alltoall", 2 * n, 1, "forward", "x", "x")
    skewed = CommOp("ep", "ep", "alltoall", n, 1, "forward", "x", "x", skew=2.0)
    assert coster.cost(skewed, one_node, 0).seconds == pytest.approx(coster.cost(uniform, one_node, 0).seconds)
    assert coster.cost(skewed, one_node, 0).algorithm == "pairwise"


def test_from_hf_writes_a_model_file(capsys, tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model_type": "llama", "hidden_size": 2048, "num_hidden_layers": 16,
                                  "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 8192,
                                  "vocab_size": 128256, "max_position_embeddings": 131072,
                                  "tie_word_embeddings": True}))
    out = tmp_path / "mine.json"
    code, text, _ = cli(capsys, "workload", "from-hf", str(config), "--name", "llama-1b", "--out", str(out))
    assert code == 0 and "written to" in text
    code, text, _ = cli(capsys, "workload", "show", str(out), "--nodes", "1")
    assert code == 0 and "llama-1b" in text
    one_error_line(capsys, "workload", "from-hf", str(config), "--out", str(out))   # never overwrites


# ------------------------------------------------------------------ numbers in range, outputs first

@pytest.mark.parametrize("args,message", [
    (["predict", "gpt2", "--gpus-per-node", "0"], "argument --gpus-per-node: must be positive, got 0"),
    (["predict", "gpt2", "--gpus-per-node", "-4"], "argument --gpus-per-node: must be positive"),
    (["predict", "gpt2", "--mfu", "0"], "argument --mfu: a fraction of the GPU's peak must be in (0, 1]"),
    (["predict", "gpt2", "--mfu", "40"], "argument --mfu: a fraction of the GPU's peak must be in (0, 1]"),
    (["predict", "gpt2", "--mfu", "-0.4"], "argument --mfu"),
    (["predict", "gpt2", "--mfu", "nan"], "argument --mfu"),
    (["predict", "gpt2", "--mfu", "inf"], "argument --mfu"),
    (["predict", "gpt2", "--mfu", "x"], "argument --mfu: expected a fraction"),
    (["predict", "gpt2", "--mfu", "0.4", "--peak-tflops", "nan"], "argument --peak-tflops: expected a finite"),
    (["predict", "gpt2", "--mfu", "0.4", "--peak-tflops", "0"], "argument --peak-tflops: must be positive"),
    (["predict", "gpt2", "--peak-tflops", "312"], "add --mfu"),
    (["show", "gpt2", "--ep-skew", "nan"], "argument --ep-skew: expected a finite number"),
    (["show", "gpt2", "--gpu-memory", "inf"], "argument --gpu-memory: expected a finite number"),
    (["show", "gpt2", "--gpu-memory", "nan"], "argument --gpu-memory"),
    (["run", "gpt2", "-np", "0"], "argument -np/--nprocs: must be positive"),
    (["run", "gpt2", "-np", "-2"], "argument -np/--nprocs: must be positive"),
    (["run", "gpt2", "--ranks-per-node", "0"], "argument --ranks-per-node: must be positive"),
    (["run", "gpt2", "-n", "0"], "argument -n/--iters: must be positive"),
    (["run", "gpt2", "-w", "-1"], "argument -w/--warmup_iters: must not be negative"),
    (["run", "gpt2", "-c", "-1"], "argument -c/--check: must not be negative"),
    (["run", "gpt2", "-T", "nan"], "argument -T/--timeout: expected a finite number"),
    (["run", "gpt2", "-T", "-5"], "argument -T/--timeout: must not be negative"),
    (["run", "gpt2", "--target-time", "-1"], "argument --target-time: must not be negative"),
    (["run", "gpt2", "--step-repeats", "-1"], "argument --step-repeats: must not be negative"),
    (["check", "x.jsonl", "--tolerance", "inf"], "argument --tolerance"),
])
def test_numbers_out_of_range_are_one_line(capsys, args, message):
    line = one_error_line(capsys, "workload", *args)
    assert message in line


def test_mfu_of_one_is_the_whole_peak(capsys):
    code, out, _ = cli(capsys, "workload", "predict", "gpt2", "--nodes", "1", "--profile", "perlmutter",
                       "--mfu", "1")
    assert code == 0 and "100% of 312 TFLOP/s" in out


def test_plot_path_is_checked_before_the_table(capsys, tmp_path):
    (tmp_path / "file.txt").write_text("x")
    for plot, message in ((tmp_path / "file.txt" / "p.png", "file.txt is not a directory"),
                          (tmp_path, "is a directory"), (tmp_path / "p.txt", "give a .png, .svg or .pdf")):
        code, out, err = cli(capsys, "workload", "predict", "gpt2", "--nodes", "1..4", "--plot", str(plot))
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
        assert out == ""        # nothing printed before the mistake
    # a figure is redrawn from the model: an existing one is replaced, as `collbench plot -o` does
    figure = tmp_path / "p.svg"
    figure.write_text("old")
    code, out, _ = cli(capsys, "workload", "predict", "gpt2", "--nodes", "1,2", "--plot", str(figure))
    assert code == 0 and figure.read_text() != "old"


def test_out_paths_are_checked_before_the_work(capsys, tmp_path):
    kept = tmp_path / "kept.json"
    kept.write_text("mine")
    # from-hf: the output before the config (which does not even exist here)
    line = one_error_line(capsys, "workload", "from-hf", str(tmp_path / "missing.json"), "--out", str(kept))
    assert "already exists" in line and kept.read_text() == "mine"
    (tmp_path / "file.txt").write_text("x")
    line = one_error_line(capsys, "workload", "from-hf", str(tmp_path / "missing.json"), "--out",
                          str(tmp_path / "file.txt" / "m.json"))
    assert "file.txt is not a directory" in line
    # run: the results file before the model and the plan (and long before the launch)
    line = one_error_line(capsys, "workload", "run", "no-such-model", "--out", str(kept))
    assert "already exists" in line and kept.read_text() == "mine"
