"""Shipped models against their published parameter counts, model-file validation, user models
and Hugging Face config derivation."""

from __future__ import annotations

import json

import pytest

from collbench.errors import UsageError
from collbench.workload.hf import model_from_hf_config
from collbench.workload.library import all_models, load_model, shipped_names
from collbench.workload.model import model_from_record

# (model, published parameter count, where it is published). Each count is held to 1 %.
PUBLISHED = [
    ("gpt2", 124e6, "https://github.com/karpathy/nanoGPT/blob/master/README.md (gpt2 124M)"),
    ("gpt2-xl", 1558e6, "https://github.com/karpathy/nanoGPT/blob/master/README.md (gpt2-xl 1558M)"),
    ("llama2-7b", 6.74e9, "https://huggingface.co/meta-llama/Llama-2-7b-hf (6.74B params)"),
    ("llama2-70b", 69e9, "https://huggingface.co/meta-llama/Llama-2-70b-hf (69B params)"),
    ("bert-large", 336e6, "https://huggingface.co/google-bert/bert-large-uncased (336M parameters)"),
    ("resnet50", 25_557_032,
     "https://pytorch.org/vision/stable/models/generated/torchvision.models.resnet50.html (num_params)"),
    ("vit-l16", 304_326_632,
     "https://pytorch.org/vision/stable/models/generated/torchvision.models.vit_l_16.html (num_params)"),
    ("mixtral-8x7b", 46.7e9, "https://mistral.ai/news/mixtral-of-experts (46.7B total parameters)"),
]


@pytest.mark.parametrize("name,published,source", PUBLISHED, ids=[p[0] for p in PUBLISHED])
def test_parameter_count_matches_its_source(name, published, source):
    model = load_model(name)
    assert abs(model.params / published - 1) <= 0.01, (model.params, published, source)
    # the file cites the same figure and a source for it
    assert model.published_params == published
    assert source.split()[0] in model.sources["published_params"]


def test_mixtral_active_parameters():
    # "only uses 12.9B parameters per token" (https://mistral.ai/news/mixtral-of-experts)
    model = load_model("mixtral-8x7b")
    assert abs(model.active_params / 12.9e9 - 1) <= 0.01
    assert model.transformer.experts == 8 and model.transformer.top_k == 2


def test_exact_counts_of_well_known_shapes():
    # hand-computed: GPT-2 12(12h²+13h) + (50257+1024)h + 2h; Llama-2-70B with 8 KV heads
    assert load_model("gpt2").params == 124_439_808
    assert load_model("llama2-70b").params == 68_976_648_192
    assert load_model("llama2-70b").transformer.kv_heads == 8


def test_every_required_model_ships():
    assert {"gpt2", "gpt2-xl", "llama2-7b", "llama2-70b", "bert-large", "resnet50", "vit-l16",
            "mixtral-8x7b"} <= set(shipped_names())
    assert all(m.sources for m in all_models())


GOOD = {"collbench_model": 1, "name": "tiny", "transformer": {
    "hidden": 64, "layers": 2, "heads": 4, "ffn": 256, "vocab": 100, "seq_len": 32}}


@pytest.mark.parametrize("mutate,field", [
    (lambda r: r["transformer"].update(heads=0), "transformer.heads"),
    (lambda r: r["transformer"].update(hidden=65), "transformer.hidden"),
    (lambda r: r["transformer"].update(kv_heads=3), "transformer.kv_heads"),
    (lambda r: r["transformer"].update(hiden=64), "transformer.hiden"),
    (lambda r: r["transformer"].update(norm="batchnorm"), "transformer.norm"),
    (lambda r: r["transformer"].update(top_k=2), "transformer.top_k"),
    (lambda r: r["transformer"].pop("layers"), "transformer.layers"),
    (lambda r: r.update(layers=[]), "'transformer'"),
    (lambda r: r.update(extra=[{"name": "x", "shape": [0]}]), "extra[0].shape"),
    (lambda r: r.update(extra=[{"name": "x", "shape": [3], "at": "middle"}]), "extra[0].at"),
    (lambda r: r.update(micro_batch=-1), "micro_batch"),
])
def test_bad_model_files_name_the_wrong_field(mutate, field):
    record = json.loads(json.dumps(GOOD))
    mutate(record)
    with pytest.raises(UsageError, match=field.replace(".", r"\.").replace("[", r"\[")):
        model_from_record(record, "bad.json")


def test_layer_list_errors_name_the_field():
    record = {"collbench_model": 1, "name": "cnn", "layers": [{"name": "conv", "tensors": [
        {"name": "w", "shape": [3, "3"]}]}]}
    with pytest.raises(UsageError, match=r"layers\[0\]\.tensors\[0\]\.shape"):
        model_from_record(record, "cnn.json")


def test_user_model_by_path_and_by_folder(tmp_path, monkeypatch):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(GOOD))
    assert load_model(str(path)).params > 0
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    folder = tmp_path / "cfg" / "collbench" / "models"
    folder.mkdir(parents=True)
    (folder / "mine.json").write_text(json.dumps({**GOOD, "name": "mine"}))
    assert load_model("mine").name == "mine"
    assert "mine" in [m.name for m in all_models()]
    with pytest.raises(UsageError, match="no model 'nope'"):
        load_model("nope")


# Hugging Face configs as published (only the fields that shape parameters)
HF = {
    "llama2-7b": {"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32,
                  "num_attention_heads": 32, "num_key_value_heads": 32, "intermediate_size": 11008,
                  "vocab_size": 32000, "max_position_embeddings": 4096, "tie_word_embeddings": False},
    "mixtral-8x7b": {"model_type": "mixtral", "hidden_size": 4096, "num_hidden_layers": 32,
                     "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 14336,
                     "vocab_size": 32000, "max_position_embeddings": 32768, "num_local_experts": 8,
                     "num_experts_per_tok": 2, "tie_word_embeddings": False},
    "gpt2": {"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "n_head": 12, "n_positions": 1024,
             "vocab_size": 50257, "n_inner": None},
    "bert-large": {"model_type": "bert", "hidden_size": 1024, "num_hidden_layers": 24,
                   "num_attention_heads": 16, "intermediate_size": 4096, "vocab_size": 30522,
                   "max_position_embeddings": 512, "type_vocab_size": 2},
    "vit-l16": {"model_type": "vit", "hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
                "intermediate_size": 4096, "image_size": 224, "patch_size": 16, "num_channels": 3,
                "id2label": {str(i): str(i) for i in range(1000)}},
}


@pytest.mark.parametrize("name", sorted(HF))
def test_hugging_face_config_gives_the_shipped_count(name, tmp_path):
    derived = model_from_hf_config(HF[name], "config.json")
    assert derived.params == load_model(name).params
    path = tmp_path / "config.json"             # a config.json path works as a model argument
    path.write_text(json.dumps(HF[name]))
    assert load_model(str(path)).params == derived.params


def test_unknown_hugging_face_architecture_is_one_clear_error():
    with pytest.raises(UsageError, match="model_type 't5' is not one collbench can derive"):
        model_from_hf_config({"model_type": "t5"}, "config.json")
    with pytest.raises(UsageError, match="'num_hidden_layers' is missing"):
        model_from_hf_config({"model_type": "llama", "hidden_size": 8, "num_attention_heads": 2}, "c.json")
