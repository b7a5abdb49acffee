"""Read a Hugging Face ``config.json`` (plain JSON, no hub access) into a ``ModelSpec``.

One builder per supported ``model_type`` maps HF field names onto the ModelSpec schema; the
result is validated exactly like a YAML model file.  A missing field or an unsupported
``model_type`` is one ConfigError line naming it.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from accelsim.config import loader
from accelsim.config.types import LayerCount, NonNegativeInt, PositiveInt
from accelsim.errors import ConfigError

# Field kinds an HF config's values are validated as before any arithmetic touches them: the
# same pydantic types (and bounds) the YAML specs use, read strictly (no "4096", no 4096.0).
Count = PositiveInt
Text = str
Flag = bool
Ratio = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
Blocks = Annotated[list[Literal["recurrent", "attention"]], Field(min_length=1, max_length=4096)]

# Feed-forward activation names in HF configs -> gated MLP kinds.
GATED = {"silu": "swiglu", "swish": "swiglu", "gelu_pytorch_tanh": "geglu", "gelu": "geglu",
         "gelu_new": "geglu", "relu2": "relu2_glu"}
# ... and -> plain (ungated up -> act -> down) MLP kinds, for GPT-J / GPT-NeoX / Falcon.  Exact
# (erf) and tanh GELU variants all map to "gelu"; their arithmetic differs by a few ops per element.
PLAIN = {"gelu": "gelu", "gelu_new": "gelu", "gelu_fast": "gelu", "gelu_pytorch_tanh": "gelu",
         "relu": "relu", "relu2": "relu2"}


class _Fields:
    """Typed access to a config mapping whose errors name the file and the key.

    ``aliases`` maps a canonical key (the Llama-style name the shared helpers read) to the
    names a family spells it with, tried in order; errors name the first of them."""

    def __init__(self, data: dict[str, Any], source: str,
                 aliases: dict[str, tuple[str, ...]] | None = None):
        self.data, self.source, self.aliases = data, source, aliases or {}

    def renamed(self, **aliases: str | tuple[str, ...]) -> _Fields:
        """A view reading each canonical key from the family's own field name(s)."""
        names = {k: (v,) if isinstance(v, str) else tuple(v) for k, v in aliases.items()}
        return _Fields(self.data, self.source, {**self.aliases, **names})

    def name(self, key: str) -> str:
        return self.aliases.get(key, (key,))[0]

    def _lookup(self, key: str) -> Any:
        for name in self.aliases.get(key, (key,)):
            if self.data.get(name) is not None:
                return self.data[name]
        return None

    def _typed(self, key: str, value: Any, kind: Any) -> Any:
        return loader.validate_value(kind, value, self.source, self.name(key))

    def need(self, key: str, kind: Any = Count) -> Any:
        value = self._lookup(key)
        if value is None:
            raise ConfigError(f"required field is missing for model_type "
                              f"'{self.data.get('model_type')}'", source=self.source, key=self.name(key))
        return self._typed(key, value, kind)

    def get(self, key: str, default: Any, kind: Any = Count) -> Any:
        """The field validated as ``kind``, or ``default`` (used as given) when absent."""
        value = self._lookup(key)
        return default if value is None else self._typed(key, value, kind)


def _base(f: _Fields, path: str, family: str, *, tied_default: bool = False,
          context_default: int = 1 << 20) -> dict[str, Any]:
    return {"name": f.get("_name_or_path", Path(path).parent.name or Path(path).stem, Text) or Path(path).stem,
            "source": str(path), "family": family, "vocab_size": f.need("vocab_size"),
            "hidden_size": f.need("hidden_size"), "num_layers": f.need("num_hidden_layers", LayerCount),
            "max_context": f.get("max_position_embeddings", context_default),
            "tied_embeddings": f.get("tie_word_embeddings", tied_default, Flag)}


def _attention(f: _Fields, **extra) -> dict[str, Any]:
    heads = f.need("num_attention_heads")
    head_dim = f.get("head_dim", None)
    if head_dim is None:  # Transformers splits the width over the heads: it must divide
        width = f.need("hidden_size")
        if width % heads:
            raise ConfigError(f"{width} is not a multiple of num_attention_heads ({heads}) and no "
                              f"head_dim is given; give head_dim or a width the heads divide",
                              source=f.source, key=f.name("hidden_size"))
        head_dim = width // heads
    return {"num_heads": heads, "num_kv_heads": f.get("num_key_value_heads", heads),
            "head_dim": head_dim, **extra}


def _mlp(f: _Fields, width_key: str = "intermediate_size", *, plain: bool = False,
         width: int | None = None, **extra) -> dict[str, Any]:
    """Gated MLP (default) or, with ``plain``, an ungated one; ``width`` overrides the field."""
    kinds, default = (PLAIN, "gelu") if plain else (GATED, "silu")
    act = f.get("hidden_act", f.get("hidden_activation", default, Text), Text)
    if act not in kinds:
        raise ConfigError(f"unsupported activation {act!r}; supported: {', '.join(kinds)}",
                          source=f.source, key=f.name("hidden_act"))
    return {"kind": kinds[act], "intermediate_size": width or f.need(width_key), **extra}


def _llama(f: _Fields, path: str) -> dict[str, Any]:
    kind = f.need("model_type", Text)
    window = f.get("sliding_window", None) if kind == "mistral" or f.get("use_sliding_window", False, Flag) else None
    bias = kind == "qwen2" or f.get("attention_bias", False, Flag)
    spec = _base(f, path, kind)
    spec["attention"] = _attention(f, qkv_bias=bias, sliding_window=window)
    if kind == "mixtral":
        spec["moe"] = {"num_experts": f.need("num_local_experts"), "top_k": f.need("num_experts_per_tok"),
                       "expert_intermediate_size": f.need("intermediate_size"), "kind": "swiglu"}
    else:
        spec["mlp"] = _mlp(f)
    return spec


def _gemma(f: _Fields, path: str) -> dict[str, Any]:
    gemma3 = f.need("model_type", Text) == "gemma3_text"
    spec = _base(f, path, "gemma", tied_default=True)
    spec.update(norm_placement="pre_post",
                attention=_attention(f, sliding_window=f.need("sliding_window"), qk_norm=gemma3),
                mlp=_mlp(f))
    period = f.get("sliding_window_pattern", 6) if gemma3 else 2
    spec["layers"] = [{"every": period, "offset": period - 1, "window": "global"}]
    return spec


def _deepseek_v3(f: _Fields, path: str) -> dict[str, Any]:
    spec = _base(f, path, "deepseek")
    spec["mla"] = {"num_heads": f.need("num_attention_heads"), "q_lora_rank": f.get("q_lora_rank", None),
                   "kv_lora_rank": f.need("kv_lora_rank"), "qk_nope_head_dim": f.need("qk_nope_head_dim"),
                   "qk_rope_head_dim": f.need("qk_rope_head_dim"), "v_head_dim": f.need("v_head_dim")}
    spec["mlp"] = _mlp(f)
    spec["moe"] = {"num_experts": f.need("n_routed_experts"), "top_k": f.need("num_experts_per_tok"),
                   "expert_intermediate_size": f.need("moe_intermediate_size"),
                   "shared_experts": f.get("n_shared_experts", 0, NonNegativeInt), "router_bias": True}
    spec["layers"] = [{"ffn": "moe"}]
    dense = f.get("first_k_dense_replace", 0, NonNegativeInt)
    if dense:
        spec["layers"].append({"first": dense, "ffn": "mlp"})
    mtp = f.get("num_nextn_predict_layers", 0, NonNegativeInt)
    if mtp:  # DeepSeek-V3/R1 ship one MTP module (layer 61)
        spec["mtp"] = {"num_layers": mtp}
    return spec


def _layer_indices(f: _Fields, key: str, count: int) -> list[str]:
    value = f.need(key, list[Text])
    if not isinstance(value, list) or len(value) != count:
        raise ConfigError(f"must be a list of {count} entries (one per hidden layer)",
                          source=f.source, key=key)
    return value


def _gpt_oss(f: _Fields, path: str) -> dict[str, Any]:
    """OpenAI gpt-oss: GQA with q/k/v/o biases and a learned sink logit per head, layers of
    ``sliding_attention`` (window ``sliding_window``) or ``full_attention`` as ``layer_types``
    lists them, and a SwiGLU MoE in every layer whose router and experts carry biases."""
    f = f.renamed(num_experts_per_tok=("num_experts_per_tok", "experts_per_token"))
    spec = _base(f, path, "gpt-oss")
    bias = f.get("attention_bias", True, Flag)
    spec["attention"] = _attention(f, qkv_bias=bias, o_bias=bias, sliding_window=f.need("sliding_window"),
                                   sinks=True)
    act = _mlp(f, width=f.need("intermediate_size"))["kind"]
    spec["moe"] = {"num_experts": f.need("num_local_experts"),
                   "top_k": f.need("num_experts_per_tok"),
                   "expert_intermediate_size": f.need("intermediate_size"), "kind": act,
                   "router_bias": True, "expert_bias": True}
    types = _layer_indices(f, "layer_types", spec["num_layers"])
    unknown = sorted({str(t) for t in types} - {"sliding_attention", "full_attention"})
    if unknown:
        raise ConfigError(f"unknown layer type(s) {', '.join(unknown)}; supported: "
                          f"sliding_attention, full_attention", source=f.source, key="layer_types")
    full = [i for i, t in enumerate(types) if t == "full_attention"]
    spec["layers"] = [{"indices": full, "window": "global"}] if full else []
    return spec


def _qwen3(f: _Fields, path: str) -> dict[str, Any]:
    """Qwen3 dense and MoE: GQA with RMSNorm on every q and k head, no attention biases unless
    ``attention_bias``; MoE layers are those not in ``mlp_only_layers`` whose index + 1 is a
    multiple of ``decoder_sparse_step`` (the rest run the dense ``intermediate_size`` MLP)."""
    kind = f.need("model_type", Text)
    spec = _base(f, path, kind)
    window = f.get("sliding_window", None) if f.get("use_sliding_window", False, Flag) else None
    spec["attention"] = _attention(f, qkv_bias=f.get("attention_bias", False, Flag), qk_norm=True,
                                   sliding_window=window)
    if kind == "qwen3":
        spec["mlp"] = _mlp(f)
        return spec
    layers = spec["num_layers"]
    step = f.get("decoder_sparse_step", 1, NonNegativeInt)
    dense = set(f.get("mlp_only_layers", [], list[NonNegativeInt]))
    moe_layers = [i for i in range(layers) if i not in dense and step > 0 and (i + 1) % step == 0]
    spec["moe"] = {"num_experts": f.need("num_experts"), "top_k": f.need("num_experts_per_tok"),
                   "expert_intermediate_size": f.need("moe_intermediate_size"),
                   "kind": _mlp(f, width=f.need("moe_intermediate_size"))["kind"]}
    if len(moe_layers) < layers:
        spec["mlp"] = _mlp(f)
        spec["layers"] = [{"ffn": "mlp"}] + ([{"indices": moe_layers, "ffn": "moe"}] if moe_layers else [])
    return spec


def _padded_vocab(f: _Fields, multiple_key: str) -> int:
    multiple = f.get(multiple_key, 1)
    return multiple * math.ceil(f.need("vocab_size") / multiple)


def _mamba(f: _Fields, path: str) -> dict[str, Any]:
    spec = _base(f, path, "mamba", tied_default=True)
    spec.update(vocab_size=_padded_vocab(f, "pad_vocab_size_multiple"), position="none")
    if f.need("model_type", Text) == "mamba":
        rank = f.get("time_step_rank", "auto", Count | Literal["auto"])
        spec["mamba1"] = {"d_state": f.get("state_size", 16), "d_conv": f.get("conv_kernel", 4),
                          "expand": f.get("expand", 2), "conv_bias": f.get("use_conv_bias", True, Flag),
                          "proj_bias": f.get("use_bias", False, Flag),
                          "dt_rank": None if rank == "auto" else rank}
    else:
        spec["mamba2"] = {"d_state": f.get("state_size", 128), "d_conv": f.get("conv_kernel", 4),
                          "expand": f.get("expand", 2), "headdim": f.get("head_dim", 64),
                          "ngroups": f.get("n_groups", 1), "chunk_size": f.get("chunk_size", 256),
                          "conv_bias": f.get("use_conv_bias", True, Flag),
                          "proj_bias": f.get("use_bias", False, Flag)}
    return spec


def _jamba(f: _Fields, path: str) -> dict[str, Any]:
    spec = _base(f, path, "jamba")
    rank = f.get("mamba_dt_rank", "auto", Count | Literal["auto"])
    spec.update(position="none", attention=_attention(f), mlp=_mlp(f),
                mamba1={"d_state": f.get("mamba_d_state", 16), "d_conv": f.get("mamba_d_conv", 4),
                        "expand": f.get("mamba_expand", 2), "conv_bias": f.get("mamba_conv_bias", True, Flag),
                        "proj_bias": f.get("mamba_proj_bias", False, Flag), "inner_norms": True,
                        "dt_rank": None if rank == "auto" else rank},
                moe={"num_experts": f.need("num_experts"), "top_k": f.need("num_experts_per_tok"),
                     "expert_intermediate_size": f.need("intermediate_size")})
    spec["layers"] = [{"mixer": "mamba1", "ffn": "mlp"},
                      {"every": f.need("attn_layer_period"), "offset": f.need("attn_layer_offset", NonNegativeInt),
                       "mixer": "attention"},
                      {"every": f.need("expert_layer_period"), "offset": f.need("expert_layer_offset", NonNegativeInt),
                       "ffn": "moe"}]
    return spec


def _recurrent_gemma(f: _Fields, path: str) -> dict[str, Any]:
    spec = _base(f, path, "griffin", tied_default=True)
    blocks = f.need("block_types", Blocks)
    # HF intermediate_size counts both GeGLU branches; ModelSpec wants one branch.
    spec.update(attention=_attention(f, o_bias=True, sliding_window=f.need("attention_window_size"),
                                     rope_fraction=f.get("partial_rotary_factor", 0.5, Ratio)),
                rglru={"lru_width": f.get("lru_width", f.need("hidden_size")),
                       "conv_width": f.get("conv1d_width", 4), "num_blocks": f.need("num_attention_heads")},
                mlp={"kind": "geglu", "intermediate_size": f.need("intermediate_size") // 2, "bias": True})
    spec["layers"] = [{"indices": [i for i in range(spec["num_layers"]) if blocks[i % len(blocks)] == kind],
                       "mixer": "attention" if kind == "attention" else "rglru"}
                      for kind in sorted(set(blocks))]
    return spec


def _falcon_h1(f: _Fields, path: str) -> dict[str, Any]:
    spec = _base(f, path, "falcon_h1")
    d_ssm = f.get("mamba_d_ssm", None)
    spec.update(attention=_attention(f), mlp=_mlp(f),
                mamba2={"d_state": f.need("mamba_d_state"), "d_conv": f.get("mamba_d_conv", 4),
                        "expand": f.get("mamba_expand", 2), "d_ssm": d_ssm,
                        "headdim": f.need("mamba_d_head"), "ngroups": f.get("mamba_n_groups", 1),
                        "chunk_size": f.get("mamba_chunk_size", 256),
                        "conv_bias": f.get("mamba_conv_bias", True, Flag),
                        "proj_bias": f.get("mamba_proj_bias", False, Flag)},
                layers=[{"mixer": ["attention", "mamba2"]}])
    return spec


# Parallel-block families.  accelsim's ``block: parallel`` feeds attention and the MLP from ONE
# LayerNorm of the residual (exact for GPT-J and Falcon-7B).  GPT-NeoX (parallel residual) and
# Falcon's new decoder architecture (40B/180B) give each branch its own LayerNorm; they map to the
# same block, which drops 2 x hidden_size parameters per layer (the second norm's weight and bias)
# and the second norm's activation read/write, well under 0.1 % of any published model.

def _gptj(f: _Fields, path: str) -> dict[str, Any]:
    """EleutherAI GPT-J: one LayerNorm feeds attention (no biases, RoPE on ``rotary_dim`` dims of
    each head) and a biased GELU MLP.  The LM head's bias is not modelled."""
    f = f.renamed(hidden_size="n_embd", num_hidden_layers="n_layer", num_attention_heads="n_head",
                  max_position_embeddings="n_positions", hidden_act="activation_function",
                  intermediate_size="n_inner")
    spec = _base(f, path, "gptj")
    hidden, heads = spec["hidden_size"], f.need("num_attention_heads")
    head_dim = hidden // heads
    rotary = f.get("rotary_dim", 64 if "rotary_dim" not in f.data else head_dim)  # GPTJConfig default 64; null rotates it all
    spec.update(norm="layernorm", block="parallel",
                attention=_attention(f, head_dim=head_dim, rope_fraction=min(rotary / head_dim, 1.0) if head_dim else 1.0),
                mlp=_mlp(f, plain=True, width=f.get("intermediate_size", 4 * hidden), bias=True))
    return spec


def _gpt_neox(f: _Fields, path: str) -> dict[str, Any]:
    """GPT-NeoX-20B / Pythia: LayerNorm, partial RoPE, biased attention and MLP, untied head.
    The parallel residual has two LayerNorms in HF; see the approximation note above."""
    spec = _base(f, path, "gpt_neox")
    bias = f.get("attention_bias", True, Flag)
    rotary = f.get("rotary_pct", f.get("partial_rotary_factor", 0.25, Ratio), Ratio)
    spec.update(norm="layernorm",
                block="parallel" if f.get("use_parallel_residual", True, Flag) else "sequential",
                attention=_attention(f, qkv_bias=bias, o_bias=bias, rope_fraction=rotary),
                mlp=_mlp(f, plain=True, bias=True))
    return spec


def _falcon(f: _Fields, path: str) -> dict[str, Any]:
    """Falcon-7B/40B/180B: RoPE, LayerNorm, GELU MLP, tied head.  7B: multi-query (one KV head),
    one norm; 40B/180B (``new_decoder_architecture``): ``num_kv_heads`` KV heads and, unless
    ``num_ln_in_parallel_attn`` is 1, one norm per branch (the approximation noted above), e.g.
    Falcon-180B: hidden 14848, 80 layers, 232 heads, 8 KV heads, vocab 65024
    (https://huggingface.co/tiiuae/falcon-180B/blob/main/config.json).  ``parallel_attn`` false
    gives a sequential block.  ALiBi configs (Falcon-RW) are refused."""
    f = f.renamed(num_hidden_layers=("num_hidden_layers", "n_layer"),
                  num_attention_heads=("num_attention_heads", "n_head"),
                  hidden_act="activation", intermediate_size="ffn_hidden_size")
    if f.get("alibi", False, Flag):
        raise ConfigError("ALiBi position bias is not supported (accelsim models RoPE)",
                          source=f.source, key="alibi")
    spec = _base(f, path, "falcon", tied_default=True, context_default=2048)
    heads, hidden = f.need("num_attention_heads"), spec["hidden_size"]
    new_arch = f.get("new_decoder_architecture", False, Flag)
    if new_arch:
        kv_heads = f.get("num_kv_heads", heads)
    else:
        kv_heads = 1 if f.get("multi_query", True, Flag) else f.get("num_kv_heads", heads)
    bias = f.get("bias", False, Flag)
    spec.update(norm="layernorm",
                block="parallel" if new_arch or f.get("parallel_attn", True, Flag) else "sequential",
                attention=_attention(f, num_kv_heads=kv_heads, head_dim=hidden // heads,
                                     qkv_bias=bias, o_bias=bias),
                mlp=_mlp(f, plain=True, width=f.get("intermediate_size", 4 * hidden), bias=bias))
    return spec


BUILDERS = {"llama": _llama, "mistral": _llama, "mixtral": _llama, "qwen2": _llama,
            "gemma2": _gemma, "gemma3_text": _gemma, "deepseek_v3": _deepseek_v3,
            "mamba": _mamba, "mamba2": _mamba, "jamba": _jamba, "recurrent_gemma": _recurrent_gemma,
            "falcon_h1": _falcon_h1, "gptj": _gptj, "gpt_neox": _gpt_neox, "falcon": _falcon,
            "gpt_oss": _gpt_oss, "qwen3": _qwen3, "qwen3_moe": _qwen3}


def spec_dict(data: dict[str, Any], path: str) -> dict[str, Any]:
    """The ModelSpec mapping for one HF config (before validation)."""
    kind = data.get("model_type")
    if not isinstance(kind, str) or kind not in BUILDERS:
        raise ConfigError(f"unsupported model_type {kind!r}; supported: {', '.join(BUILDERS)}",
                          source=path, key="model_type")
    built = BUILDERS[kind](_Fields(data, path), path)
    return _drop_none(built)


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def read_hf_config(path: str) -> dict[str, Any]:
    """Read one HF ``config.json`` into the ModelSpec mapping (``spec.load_model`` validates it)."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError("no such model file", source=path)
    return spec_dict(loader.read_document(file), path)
