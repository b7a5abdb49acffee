"""Read a Hugging Face ``config.json`` (plain JSON, no hub access) into a ``ModelSpec``.

One builder per supported ``model_type`` maps HF field names onto the ModelSpec schema; the
result is validated exactly like a YAML model file.  A missing field or an unsupported
``model_type`` is one ConfigError line naming it.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from accelsim.config import loader
from accelsim.errors import ConfigError

# Feed-forward activation names in HF configs -> gated MLP kinds.
GATED = {"silu": "swiglu", "swish": "swiglu", "gelu_pytorch_tanh": "geglu", "gelu": "geglu",
         "gelu_new": "geglu", "relu2": "relu2_glu"}


class _Fields:
    """Typed access to a config mapping whose errors name the file and the key."""

    def __init__(self, data: dict[str, Any], source: str):
        self.data, self.source = data, source

    def need(self, key: str) -> Any:
        if self.data.get(key) is None:
            raise ConfigError(f"required field is missing for model_type "
                              f"'{self.data.get('model_type')}'", source=self.source, key=key)
        return self.data[key]

    def get(self, key: str, default: Any) -> Any:
        value = self.data.get(key)
        return default if value is None else value


def _base(f: _Fields, path: str, family: str, *, tied_default: bool = False) -> dict[str, Any]:
    return {"name": f.get("_name_or_path", Path(path).parent.name or Path(path).stem) or Path(path).stem,
            "source": str(path), "family": family, "vocab_size": f.need("vocab_size"),
            "hidden_size": f.need("hidden_size"), "num_layers": f.need("num_hidden_layers"),
            "max_context": f.get("max_position_embeddings", 1 << 20),
            "tied_embeddings": bool(f.get("tie_word_embeddings", tied_default))}


def _attention(f: _Fields, **extra) -> dict[str, Any]:
    heads = f.need("num_attention_heads")
    return {"num_heads": heads, "num_kv_heads": f.get("num_key_value_heads", heads),
            "head_dim": f.get("head_dim", f.need("hidden_size") // heads), **extra}


def _mlp(f: _Fields, width_key: str = "intermediate_size", **extra) -> dict[str, Any]:
    act = f.get("hidden_act", f.get("hidden_activation", "silu"))
    if act not in GATED:
        raise ConfigError(f"unsupported activation {act!r}; supported: {', '.join(GATED)}",
                          source=f.source, key="hidden_act")
    return {"kind": GATED[act], "intermediate_size": f.need(width_key), **extra}


def _llama(f: _Fields, path: str) -> dict[str, Any]:
    kind = f.data["model_type"]
    window = f.get("sliding_window", None) if kind == "mistral" or f.get("use_sliding_window", False) else None
    bias = kind == "qwen2" or bool(f.get("attention_bias", False))
    spec = _base(f, path, kind)
    spec["attention"] = _attention(f, qkv_bias=bias, sliding_window=window)
    if kind == "mixtral":
        spec["moe"] = {"num_experts": f.need("num_local_experts"), "top_k": f.need("num_experts_per_tok"),
                       "expert_intermediate_size": f.need("intermediate_size"), "kind": "swiglu"}
    else:
        spec["mlp"] = _mlp(f)
    return spec


def _gemma(f: _Fields, path: str) -> dict[str, Any]:
    gemma3 = f.data["model_type"] == "gemma3_text"
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
                   "shared_experts": f.get("n_shared_experts", 0), "router_bias": True}
    spec["layers"] = [{"ffn": "moe"}]
    if f.get("first_k_dense_replace", 0):
        spec["layers"].append({"first": f.data["first_k_dense_replace"], "ffn": "mlp"})
    return spec


def _padded_vocab(f: _Fields, multiple_key: str) -> int:
    multiple = f.get(multiple_key, 1)
    return multiple * math.ceil(f.need("vocab_size") / multiple)


def _mamba(f: _Fields, path: str) -> dict[str, Any]:
    spec = _base(f, path, "mamba", tied_default=True)
    spec.update(vocab_size=_padded_vocab(f, "pad_vocab_size_multiple"), position="none")
    if f.data["model_type"] == "mamba":
        rank = f.get("time_step_rank", "auto")
        spec["mamba1"] = {"d_state": f.get("state_size", 16), "d_conv": f.get("conv_kernel", 4),
                          "expand": f.get("expand", 2), "conv_bias": bool(f.get("use_conv_bias", True)),
                          "proj_bias": bool(f.get("use_bias", False)),
                          "dt_rank": None if rank == "auto" else rank}
    else:
        spec["mamba2"] = {"d_state": f.get("state_size", 128), "d_conv": f.get("conv_kernel", 4),
                          "expand": f.get("expand", 2), "headdim": f.get("head_dim", 64),
                          "ngroups": f.get("n_groups", 1), "chunk_size": f.get("chunk_size", 256),
                          "conv_bias": bool(f.get("use_conv_bias", True)),
                          "proj_bias": bool(f.get("use_bias", False))}
    return spec


def _jamba(f: _Fields, path: str) -> dict[str, Any]:
    spec = _base(f, path, "jamba")
    rank = f.get("mamba_dt_rank", "auto")
    spec.update(position="none", attention=_attention(f), mlp=_mlp(f),
                mamba1={"d_state": f.get("mamba_d_state", 16), "d_conv": f.get("mamba_d_conv", 4),
                        "expand": f.get("mamba_expand", 2), "conv_bias": bool(f.get("mamba_conv_bias", True)),
                        "proj_bias": bool(f.get("mamba_proj_bias", False)), "inner_norms": True,
                        "dt_rank": None if rank == "auto" else rank},
                moe={"num_experts": f.need("num_experts"), "top_k": f.need("num_experts_per_tok"),
                     "expert_intermediate_size": f.need("intermediate_size")})
    spec["layers"] = [{"mixer": "mamba1", "ffn": "mlp"},
                      {"every": f.need("attn_layer_period"), "offset": f.need("attn_layer_offset"),
                       "mixer": "attention"},
                      {"every": f.need("expert_layer_period"), "offset": f.need("expert_layer_offset"),
                       "ffn": "moe"}]
    return spec


def _recurrent_gemma(f: _Fields, path: str) -> dict[str, Any]:
    spec = _base(f, path, "griffin", tied_default=True)
    blocks = f.need("block_types")
    # HF intermediate_size counts both GeGLU branches; ModelSpec wants one branch.
    spec.update(attention=_attention(f, o_bias=True, sliding_window=f.need("attention_window_size"),
                                     rope_fraction=f.get("partial_rotary_factor", 0.5)),
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
                        "conv_bias": bool(f.get("mamba_conv_bias", True)),
                        "proj_bias": bool(f.get("mamba_proj_bias", False))},
                layers=[{"mixer": ["attention", "mamba2"]}])
    return spec


BUILDERS = {"llama": _llama, "mistral": _llama, "mixtral": _llama, "qwen2": _llama,
            "gemma2": _gemma, "gemma3_text": _gemma, "deepseek_v3": _deepseek_v3,
            "mamba": _mamba, "mamba2": _mamba, "jamba": _jamba, "recurrent_gemma": _recurrent_gemma,
            "falcon_h1": _falcon_h1}


def spec_dict(data: dict[str, Any], path: str) -> dict[str, Any]:
    """The ModelSpec mapping for one HF config (before validation)."""
    kind = data.get("model_type")
    if kind not in BUILDERS:
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


def load_hf_config(path: str):
    from accelsim.model.spec import ModelSpec
    file = Path(path)
    if not file.is_file():
        raise ConfigError("no such model file", source=path)
    return loader.validate(ModelSpec, spec_dict(loader.read_document(file), path), path)
