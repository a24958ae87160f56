"""Models described by the shapes of their parameters, not their weights.

A collbench model file (``collbench_model: 1``) is one of two kinds:

* ``transformer``: the shape facts of a transformer (hidden size, layers, heads, FFN size,
  vocabulary, sequence length, GQA key/value heads, MoE experts and top-k, ...) that the code
  expands into parameter tensors, plus ``extra`` tensors (a ViT's patch embedding, BERT's
  pooler) placed with the embedding or the head;
* ``layers``: an explicit list of layers, each with its parameter tensors (ResNet-50).

Tensors carry what parallelism needs: how Megatron tensor parallelism splits them (``col``:
output dimension, ``row``: input dimension, ``vocab``: vocabulary-parallel rows, or none:
replicated) and whether they belong to one MoE expert. Their order is ``model.parameters()``
order, which DDP's gradient buckets follow in reverse.

Every mistake in a file is one UsageError naming the file and the field.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError

MODEL_VERSION = 1
SHARDS = ("col", "row", "vocab")


@dataclass(frozen=True)
class Tensor:
    """One parameter tensor: its name, shape, tensor-parallel split and MoE expert (or None)."""

    name: str
    shape: tuple[int, ...]
    shard: str | None = None
    expert: int | None = None

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Layer:
    """A unit of the model: the embedding, one transformer block, the head, or one listed
    layer. FSDP/ZeRO-3 gather parameters per layer; pipeline stages take whole layers."""

    name: str
    tensors: tuple[Tensor, ...]
    block: bool = False          # a transformer block (Megatron TP communicates around these)
    moe: bool = False            # its MLP is a mixture of experts

    @property
    def params(self) -> int:
        return sum(t.numel for t in self.tensors)


@dataclass(frozen=True)
class TransformerShape:
    """The shape facts of a transformer (names follow the usual papers' symbols)."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    seq_len: int
    kv_heads: int
    experts: int = 1
    top_k: int = 1
    positions: int = 0           # learned position-embedding rows (0: rotary / none)
    norm: str = "layernorm"      # layernorm (weight + bias) | rmsnorm (weight)
    bias: bool = True            # linear layers have biases
    mlp: str = "gelu"            # gelu (2 matrices) | swiglu (gate, up, down)
    tie_embeddings: bool = True  # the LM head reuses the token embedding
    final_norm: bool = True

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def moe(self) -> bool:
        return self.experts > 1


@dataclass(frozen=True)
class ModelSpec:
    """A model: its layers and, for transformers, the shape facts TP, PP and EP need."""

    name: str
    description: str
    layers: tuple[Layer, ...]
    transformer: TransformerShape | None
    published_params: float | None = None
    published_active_params: float | None = None
    sources: dict[str, str] = field(default_factory=dict)
    micro_batch: int = 1                       # default samples per micro-batch
    forward_flops_per_sample: float | None = None   # non-transformers: for the compute estimate
    path: str | None = None

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def expert_params(self) -> int:
        return sum(t.numel for layer in self.layers for t in layer.tensors if t.expert is not None)

    @property
    def active_params(self) -> int:
        """Parameters one token uses: everything but the experts it is not routed to."""
        t = self.transformer
        if t is None or not t.moe:
            return self.params
        return self.params - self.expert_params + self.expert_params * t.top_k // t.experts

    @property
    def kind(self) -> str:
        return "transformer" if self.transformer is not None else "layers"


# -- reading and validating a model record ----------------------------------------------------------

_TRANSFORMER_FIELDS = {"hidden", "layers", "heads", "ffn", "vocab", "seq_len", "kv_heads", "experts",
                       "top_k", "positions", "norm", "bias", "mlp", "tie_embeddings", "final_norm"}
_TOP_FIELDS = {"collbench_model", "name", "description", "sources", "published_params",
               "published_active_params", "micro_batch", "forward_flops_per_sample", "transformer",
               "extra", "layers"}


class _Fields:
    """Reads one JSON object, naming the field (with its dotted path) in every error."""

    def __init__(self, record: Any, where: str, path: str, known: set[str]) -> None:
        if not isinstance(record, dict):
            raise UsageError(f"model {where}: {path or 'the file'} must be a JSON object")
        self.record, self.where, self.path = record, where, path
        for key in record:
            if key not in known:
                near = difflib.get_close_matches(key, sorted(known), n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                raise UsageError(f"model {where}: unknown field {self.name(key)!r}{hint}")

    def name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str, what: str) -> UsageError:
        got = self.record.get(key, None)
        return UsageError(f"model {self.where}: {self.name(key)} must be {what} (got {got!r})")

    def int(self, key: str, default: int | None = None, minimum: int = 1) -> int:
        if key not in self.record:
            if default is None:
                raise UsageError(f"model {self.where}: {self.name(key)} is missing")
            return default
        value = self.record[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(key, f"a whole number >= {minimum}")
        return value

    def number(self, key: str) -> float | None:
        if key not in self.record or self.record[key] is None:
            return None
        value = self.record[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise self.fail(key, "a positive number")
        return float(value)

    def bool(self, key: str, default: bool) -> bool:
        value = self.record.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, "true or false")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.record.get(key, default)
        if value not in choices:
            raise self.fail(key, "one of " + ", ".join(choices))
        return value

    def text(self, key: str, default: str | None = None) -> str:
        value = self.record.get(key, default)
        if not isinstance(value, str) or not value.strip():
            if key not in self.record and default is None:
                raise UsageError(f"model {self.where}: {self.name(key)} is missing")
            raise self.fail(key, "a non-empty string")
        return value


def _shape(value: Any, where: str, path: str) -> tuple[int, ...]:
    if (not isinstance(value, list) or not value
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        raise UsageError(f"model {where}: {path} must be a list of positive whole numbers (got {value!r})")
    return tuple(value)


def _tensor(record: Any, where: str, path: str, known: set[str]) -> tuple[Tensor, dict[str, Any]]:
    f = _Fields(record, where, path, known)
    name = f.text("name")
    shard = record.get("shard")
    if shard is not None and shard not in SHARDS:
        raise f.fail("shard", "one of " + ", ".join(SHARDS) + " or absent")
    return Tensor(name, _shape(record.get("shape"), where, f.name("shape")), shard), record


def _transformer(record: Any, where: str) -> TransformerShape:
    f = _Fields(record, where, "transformer", _TRANSFORMER_FIELDS)
    hidden, heads = f.int("hidden"), f.int("heads")
    t = TransformerShape(
        hidden=hidden, layers=f.int("layers"), heads=heads, ffn=f.int("ffn"),
        vocab=f.int("vocab", 0, minimum=0), seq_len=f.int("seq_len"),
        kv_heads=f.int("kv_heads", heads), experts=f.int("experts", 1), top_k=f.int("top_k", 1),
        positions=f.int("positions", 0, minimum=0),
        norm=f.choice("norm", ("layernorm", "rmsnorm"), "layernorm"), bias=f.bool("bias", True),
        mlp=f.choice("mlp", ("gelu", "swiglu"), "gelu"),
        tie_embeddings=f.bool("tie_embeddings", True), final_norm=f.bool("final_norm", True))
    if hidden % heads:
        raise UsageError(f"model {where}: transformer.hidden ({hidden}) must be a multiple of "
                         f"transformer.heads ({heads})")
    if heads % t.kv_heads:
        raise UsageError(f"model {where}: transformer.kv_heads ({t.kv_heads}) must divide "
                         f"transformer.heads ({heads}) (grouped-query attention)")
    if t.top_k > t.experts:
        raise UsageError(f"model {where}: transformer.top_k ({t.top_k}) cannot exceed "
                         f"transformer.experts ({t.experts})")
    if t.positions and t.positions < t.seq_len:
        raise UsageError(f"model {where}: transformer.positions ({t.positions}) is shorter than "
                         f"transformer.seq_len ({t.seq_len})")
    return t


def model_from_record(record: Any, where: str = "<record>") -> ModelSpec:
    """Validate a parsed model file; every mistake is one UsageError naming the field."""
    if not isinstance(record, dict) or "collbench_model" not in record:
        raise UsageError(f"{where} is not a collbench model file (no 'collbench_model' key); a Hugging "
                         "Face config.json is read by `collbench workload from-hf`")
    f = _Fields(record, where, "", _TOP_FIELDS)
    version = f.int("collbench_model")
    if version > MODEL_VERSION:
        raise UsageError(f"model {where}: version {version} is newer than this collbench understands "
                         f"({MODEL_VERSION})")
    name = f.text("name")
    sources = record.get("sources", {})
    if not isinstance(sources, dict) or not all(isinstance(v, str) for v in sources.values()):
        raise f.fail("sources", "an object of strings (where each fact comes from)")
    has_t, has_l = "transformer" in record, "layers" in record
    if has_t == has_l:
        raise UsageError(f"model {where}: give exactly one of 'transformer' (shape facts) or 'layers' "
                         "(an explicit layer list)")
    if has_t:
        shape = _transformer(record["transformer"], where)
        extra = record.get("extra", [])
        if not isinstance(extra, list):
            raise f.fail("extra", "a list of tensors")
        extras = [_tensor(e, where, f"extra[{i}]", {"name", "shape", "shard", "at"})
                  for i, e in enumerate(extra)]
        for i, (_, raw) in enumerate(extras):
            if raw.get("at", "embedding") not in ("embedding", "head"):
                raise UsageError(f"model {where}: extra[{i}].at must be 'embedding' or 'head' "
                                 f"(got {raw.get('at')!r})")
        layers = expand_transformer(shape, [(t, raw.get("at", "embedding")) for t, raw in extras])
    else:
        if "extra" in record:
            raise UsageError(f"model {where}: 'extra' belongs with 'transformer'; list the tensors "
                             "in 'layers' instead")
        shape = None
        raw_layers = record["layers"]
        if not isinstance(raw_layers, list) or not raw_layers:
            raise f.fail("layers", "a non-empty list of layers")
        built = []
        for i, raw in enumerate(raw_layers):
            lf = _Fields(raw, where, f"layers[{i}]", {"name", "tensors"})
            tensors = raw.get("tensors")
            if not isinstance(tensors, list) or not tensors:
                raise lf.fail("tensors", "a non-empty list of tensors")
            built.append(Layer(lf.text("name"), tuple(
                _tensor(t, where, f"layers[{i}].tensors[{j}]", {"name", "shape"})[0]
                for j, t in enumerate(tensors))))
        layers = tuple(built)
    return ModelSpec(
        name=name, description=str(record.get("description", "")), layers=tuple(layers),
        transformer=shape, published_params=f.number("published_params"),
        published_active_params=f.number("published_active_params"), sources=dict(sources),
        micro_batch=f.int("micro_batch", 1),
        forward_flops_per_sample=f.number("forward_flops_per_sample"))


# -- transformer expansion ----------------------------------------------------------------------------


def _norm(t: TransformerShape, name: str) -> list[Tensor]:
    out = [Tensor(f"{name}.weight", (t.hidden,))]
    if t.norm == "layernorm":
        out.append(Tensor(f"{name}.bias", (t.hidden,)))
    return out


def _linear(t: TransformerShape, name: str, out_dim: int, in_dim: int, shard: str,
            expert: int | None = None) -> list[Tensor]:
    """A linear layer's weight (and bias). A column-parallel layer splits its bias with its
    output; a row-parallel layer's bias is added after the reduction, so it is replicated."""
    tensors = [Tensor(f"{name}.weight", (out_dim, in_dim), shard, expert)]
    if t.bias:
        tensors.append(Tensor(f"{name}.bias", (out_dim,), "col" if shard == "col" else None, expert))
    return tensors


def _mlp(t: TransformerShape, prefix: str, expert: int | None = None) -> list[Tensor]:
    h, f = t.hidden, t.ffn
    if t.mlp == "swiglu":
        return (_linear(t, f"{prefix}.gate", f, h, "col", expert) + _linear(t, f"{prefix}.up", f, h, "col", expert)
                + _linear(t, f"{prefix}.down", h, f, "row", expert))
    return _linear(t, f"{prefix}.fc1", f, h, "col", expert) + _linear(t, f"{prefix}.fc2", h, f, "row", expert)


def _block(t: TransformerShape, i: int) -> Layer:
    h, p = t.hidden, f"layers.{i}"
    qkv = h + 2 * t.kv_heads * t.head_dim      # queries, then grouped keys and values
    tensors = _norm(t, f"{p}.norm1") + _linear(t, f"{p}.attn.qkv", qkv, h, "col")
    tensors += _linear(t, f"{p}.attn.out", h, h, "row") + _norm(t, f"{p}.norm2")
    if t.moe:
        tensors.append(Tensor(f"{p}.moe.router.weight", (t.experts, h)))
        for e in range(t.experts):
            tensors += _mlp(t, f"{p}.moe.experts.{e}", expert=e)
    else:
        tensors += _mlp(t, f"{p}.mlp")
    return Layer(p, tuple(tensors), block=True, moe=t.moe)


def expand_transformer(t: TransformerShape, extra: list[tuple[Tensor, str]]) -> tuple[Layer, ...]:
    """Embedding layer, ``t.layers`` blocks, head layer (``extra`` tensors placed at ``at``)."""
    embed: list[Tensor] = []
    if t.vocab:
        embed.append(Tensor("embed.tokens.weight", (t.vocab, t.hidden), "vocab"))
    if t.positions:
        embed.append(Tensor("embed.positions.weight", (t.positions, t.hidden)))
    embed += [x for x, at in extra if at == "embedding"]
    head: list[Tensor] = _norm(t, "final_norm") if t.final_norm else []
    if t.vocab and not t.tie_embeddings:
        head.append(Tensor("lm_head.weight", (t.vocab, t.hidden), "vocab"))
    head += [x for x, at in extra if at == "head"]
    layers = [Layer("embedding", tuple(embed))] if embed else []
    layers += [_block(t, i) for i in range(t.layers)]
    if head:
        layers.append(Layer("head", tuple(head)))
    return tuple(layers)


__all__ = ["Tensor", "Layer", "TransformerShape", "ModelSpec", "model_from_record", "expand_transformer",
           "MODEL_VERSION"]
