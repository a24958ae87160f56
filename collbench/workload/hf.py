"""Derive a collbench model from a Hugging Face ``config.json`` read from disk (nothing is
downloaded): the architectures whose parameter shapes follow from the config alone.

Known ``model_type`` values: gpt2; llama, mistral, mixtral, qwen2 (and other Llama-shaped
decoders); bert; vit. Anything else is an error saying to write a collbench model file.
"""

from __future__ import annotations

from typing import Any

from ..errors import UsageError
from .model import ModelSpec, model_from_record

LLAMA_LIKE = ("llama", "mistral", "mixtral", "qwen2", "qwen2_moe")
KNOWN = ("gpt2", *LLAMA_LIKE, "bert", "vit")


def _get(config: dict[str, Any], where: str, *names: str, default: Any = None) -> Any:
    """The first of ``names`` present in the config (HF renamed several fields over time)."""
    for name in names:
        if config.get(name) is not None:
            return config[name]
    if default is None:
        raise UsageError(f"Hugging Face config {where}: field {names[0]!r} is missing")
    return default


def hf_record(config: Any, where: str, name: str | None = None) -> dict[str, Any]:
    """The collbench model record for a Hugging Face config (raises UsageError if unknown)."""
    if not isinstance(config, dict) or "model_type" not in config:
        raise UsageError(f"{where} is not a Hugging Face config.json (no 'model_type')")
    kind = str(config["model_type"])
    g = lambda *names, default=None: _get(config, where, *names, default=default)  # noqa: E731
    extra: list[dict[str, Any]] = []
    if kind == "gpt2":
        h = g("n_embd", "hidden_size")
        shape = {"hidden": h, "layers": g("n_layer", "num_hidden_layers"), "heads": g("n_head"),
                 "ffn": config.get("n_inner") or 4 * h, "vocab": g("vocab_size"),
                 "seq_len": g("n_positions", "n_ctx"), "positions": g("n_positions", "n_ctx"),
                 "norm": "layernorm", "bias": True, "mlp": "gelu",
                 "tie_embeddings": bool(config.get("tie_word_embeddings", True)), "final_norm": True}
    elif kind in LLAMA_LIKE:
        heads = g("num_attention_heads")
        shape = {"hidden": g("hidden_size"), "layers": g("num_hidden_layers"), "heads": heads,
                 "kv_heads": g("num_key_value_heads", default=heads),
                 "ffn": g("moe_intermediate_size", "intermediate_size") if "moe" in kind
                 else g("intermediate_size"),
                 "vocab": g("vocab_size"), "seq_len": g("max_position_embeddings"), "positions": 0,
                 "norm": "rmsnorm", "bias": bool(config.get("attention_bias", False)), "mlp": "swiglu",
                 "tie_embeddings": bool(config.get("tie_word_embeddings", False)), "final_norm": True}
        experts = config.get("num_local_experts") or config.get("num_experts")
        if experts and int(experts) > 1:
            shape["experts"] = int(experts)
            shape["top_k"] = int(g("num_experts_per_tok"))
    elif kind == "bert":
        h = g("hidden_size")
        shape = {"hidden": h, "layers": g("num_hidden_layers"), "heads": g("num_attention_heads"),
                 "ffn": g("intermediate_size"), "vocab": g("vocab_size"),
                 "seq_len": g("max_position_embeddings"), "positions": g("max_position_embeddings"),
                 "norm": "layernorm", "bias": True, "mlp": "gelu", "tie_embeddings": True,
                 "final_norm": False}
        extra = [{"name": "embed.token_type.weight", "shape": [g("type_vocab_size", default=2), h]},
                 {"name": "embed.norm.weight", "shape": [h]}, {"name": "embed.norm.bias", "shape": [h]},
                 {"name": "pooler.dense.weight", "shape": [h, h], "at": "head"},
                 {"name": "pooler.dense.bias", "shape": [h], "at": "head"}]
    elif kind == "vit":
        h, patch = g("hidden_size"), g("patch_size")
        image, channels = g("image_size"), g("num_channels", default=3)
        tokens = (image // patch) ** 2 + 1          # patches plus the class token
        shape = {"hidden": h, "layers": g("num_hidden_layers"), "heads": g("num_attention_heads"),
                 "ffn": g("intermediate_size"), "vocab": 0, "seq_len": tokens, "positions": tokens,
                 "norm": "layernorm", "bias": True, "mlp": "gelu", "final_norm": True}
        extra = [{"name": "patch_embed.weight", "shape": [h, channels, patch, patch]},
                 {"name": "patch_embed.bias", "shape": [h]}, {"name": "class_token", "shape": [1, 1, h]}]
        labels = len(config.get("id2label") or {})
        if labels:
            extra += [{"name": "head.weight", "shape": [labels, h], "at": "head"},
                      {"name": "head.bias", "shape": [labels], "at": "head"}]
    else:
        raise UsageError(f"Hugging Face config {where}: model_type {kind!r} is not one collbench can "
                         f"derive (known: {', '.join(KNOWN)}); write a collbench model file instead "
                         "(docs/workloads.md)")
    record: dict[str, Any] = {
        "collbench_model": 1,
        "name": name or str(config.get("_name_or_path") or kind).rstrip("/").split("/")[-1] or kind,
        "description": f"derived from the Hugging Face config {where} (model_type {kind})",
        "transformer": shape,
        "sources": {"transformer": f"Hugging Face config {where}"}}
    if extra:
        record["extra"] = extra
    return record


def model_from_hf_config(config: Any, where: str, name: str | None = None) -> ModelSpec:
    return model_from_record(hf_record(config, where, name), where)


__all__ = ["hf_record", "model_from_hf_config", "KNOWN"]
