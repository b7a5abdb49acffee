"""``ModelSpec``: the validated, immutable description of a model, read once from YAML.

A model is ``num_layers`` residual layers, each a token *mixer* (attention, MLA, Mamba, RG-LRU,
MLGRU, RWKV-7, Hyena; several in parallel for Falcon-H1-style hybrids) followed by a channel
*FFN* (dense MLP, MoE, or none).  Which kinds each layer gets is data: an optional ``layers:``
list of rules, applied in order, each selecting layers (``every``/``offset``, ``first``,
``indices``) and setting what they hold.  Without ``layers:`` every layer gets the one mixer and
the one FFN the file configures, so plain dense decoders need no rules at all.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar, get_args

from pydantic import Field, model_validator

from accelsim.config import loader
from accelsim.config.types import MAX_LAYERS, LayerCount, NonNegativeInt, PositiveInt, Spec
from accelsim.dtypes import DType
from accelsim.errors import AccelsimError, ConfigError
from accelsim.memo import ByIdentity
from accelsim.model import hf_import

MixerKind = Literal["attention", "mla", "mamba1", "mamba2", "rglru", "mlgru", "rwkv7", "hyena"]
FfnKind = Literal["mlp", "moe", "none"]
MIXER_KINDS: tuple[str, ...] = get_args(MixerKind)
FFN_KINDS: tuple[str, ...] = get_args(FfnKind)
ActivationKind = Literal["swiglu", "geglu", "relu2_glu", "gelu", "relu", "relu2"]


class AttentionSpec(Spec):
    """MHA / GQA / MQA are head-count choices; ``sliding_window`` bounds what each query sees."""

    num_heads: PositiveInt
    num_kv_heads: PositiveInt
    head_dim: PositiveInt
    qkv_bias: bool = False
    o_bias: bool = False
    sliding_window: PositiveInt | None = None
    qk_norm: bool = False           # Gemma-3: RMSNorm over head_dim on q and k
    sub_norm: bool = False          # BitNet "subln": RMSNorm on the attention output before o_proj
    rope_fraction: float = Field(default=1.0, gt=0, le=1)  # RecurrentGemma rotates half of each head
    # gpt-oss: one learned logit per query head joins each softmax's denominator ("attention
    # sink"), a weight of num_heads values per layer
    sinks: bool = False

    @model_validator(mode="after")
    def _heads_group(self):
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads ({self.num_heads}) must be a multiple of "
                             f"num_kv_heads ({self.num_kv_heads})")
        return self


class MlaSpec(Spec):
    """DeepSeek multi-head latent attention: the cache holds one compressed latent per token."""

    num_heads: PositiveInt
    q_lora_rank: PositiveInt | None = None   # None: q projected straight from the hidden state
    kv_lora_rank: PositiveInt
    qk_nope_head_dim: PositiveInt
    qk_rope_head_dim: PositiveInt
    v_head_dim: PositiveInt
    absorbed: bool = True  # fold W_UK into q and W_UV after attention (attend in latent space)


class MlpSpec(Spec):
    kind: ActivationKind
    intermediate_size: PositiveInt
    bias: bool = False
    sub_norm: bool = False      # BitNet: RMSNorm on the hidden activation before down_proj
    token_shift: bool = False   # RWKV channel mix: lerp with the previous token (one vector of state)

    @property
    def gated(self) -> bool:
        return self.kind in ("swiglu", "geglu", "relu2_glu")


class MoeSpec(Spec):
    num_experts: PositiveInt
    top_k: PositiveInt
    expert_intermediate_size: PositiveInt
    kind: ActivationKind = "swiglu"
    shared_experts: NonNegativeInt = 0
    shared_intermediate_size: PositiveInt | None = None  # per shared expert; default = expert width
    router_bias: bool = False   # E biases on the router logits: DeepSeek-V3's e_score_correction_bias, gpt-oss's router Linear bias
    expert_bias: bool = False   # gpt-oss: every routed expert's up and down projections carry biases

    @model_validator(mode="after")
    def _k_le_e(self):
        if self.top_k > self.num_experts:
            raise ValueError(f"top_k ({self.top_k}) exceeds num_experts ({self.num_experts})")
        return self

    @property
    def gated(self) -> bool:
        return self.kind in ("swiglu", "geglu", "relu2_glu")


class Mamba1Spec(Spec):
    d_state: PositiveInt = 16
    d_conv: PositiveInt = 4
    expand: PositiveInt = 2
    dt_rank: PositiveInt | None = None  # default ceil(hidden / 16), as in mamba_simple.py
    conv_bias: bool = True
    proj_bias: bool = False
    inner_norms: bool = False  # Jamba: RMSNorm on dt, B and C


class Mamba2Spec(Spec):
    d_state: PositiveInt = 128
    d_conv: PositiveInt = 4
    expand: PositiveInt = 2
    d_ssm: PositiveInt | None = None   # Falcon-H1 mamba_d_ssm overrides expand * hidden
    headdim: PositiveInt = 64
    ngroups: PositiveInt = 1
    chunk_size: PositiveInt = 256
    conv_bias: bool = True
    proj_bias: bool = False


class RglruSpec(Spec):
    """Griffin recurrent block: two branches, a short conv and the RG-LRU with block-diagonal gates."""

    lru_width: PositiveInt
    conv_width: PositiveInt = 4
    num_blocks: PositiveInt  # blocks of the block-diagonal gate matrices (= attention heads)

    @model_validator(mode="after")
    def _blocks_divide(self):
        if self.lru_width % self.num_blocks:
            raise ValueError(f"lru_width ({self.lru_width}) must be a multiple of num_blocks ({self.num_blocks})")
        return self


class MlgruSpec(Spec):
    """MatMul-free LM token mixer (HGRN-style gated recurrence; ``num_heads`` 1 = elementwise)."""

    lower_bound: bool = True   # learned per-layer forget-gate lower bounds (HGRN)


class Rwkv7Spec(Spec):
    head_size: PositiveInt = 64
    decay_lora: PositiveInt
    a_lora: PositiveInt
    value_lora: PositiveInt
    gate_lora: PositiveInt


class HyenaSpec(Spec):
    """StripedHyena gated long convolution: short FIR then a modal (IIR) long filter."""

    short_filter_len: PositiveInt = 3
    state_size: PositiveInt = 2       # complex poles per channel
    proj_bias: bool = True


class BitLinearSpec(Spec):
    """Ternary weights and int8 activations on every block linear (BitNet b1.58 / MatMul-free)."""

    input_norm: bool = False  # MatMul-free: each BitLinear RMS-normalises its input with its own weight
    head: bool = False        # the LM head is a BitLinear too


class MtpSpec(Spec):
    """DeepSeek-V3's multi-token prediction (arXiv 2412.19437 Sec. 2.2): ``num_layers`` modules
    after the main model, each normalising the previous hidden state and the next token's
    embedding, projecting their concatenation back to the model width and running one more
    decoder layer (the kind of the main model's last layer), sharing the embedding and the LM
    head.  Not part of an ordinary step: lowered on its own (``model.lower.lower_mtp``) when it
    drafts tokens for speculative decoding."""

    num_layers: PositiveInt = 1   # HF num_nextn_predict_layers


class LayerRule(Spec):
    """Selects layers and sets what they hold; later rules override earlier ones."""

    every: PositiveInt = 1
    offset: NonNegativeInt = 0
    first: PositiveInt | None = None            # only layers [0, first)
    indices: tuple[NonNegativeInt, ...] | None = Field(default=None, max_length=MAX_LAYERS)
    mixer: MixerKind | tuple[MixerKind, ...] | None = None
    ffn: FfnKind | None = None
    window: Literal["local", "global"] | None = None  # attention: use sliding_window or not

    def selects(self, layer: int) -> bool:
        if self.indices is not None:
            return layer in self.indices
        if self.first is not None and layer >= self.first:
            return False
        return layer >= self.offset and (layer - self.offset) % self.every == 0

    def selected(self, num_layers: int) -> range | tuple[int, ...]:
        """The layers ``selects`` accepts among ``num_layers``, listed without visiting the
        others (rules x layers would be quadratic in a hostile file)."""
        if self.indices is not None:
            return self.indices
        stop = num_layers if self.first is None else min(self.first, num_layers)
        return range(self.offset, stop, self.every)


@dataclass(frozen=True)
class LayerKind:
    """What one layer holds once the rules are applied."""

    mixers: tuple[str, ...]
    ffn: str
    window: int | None  # sliding window of its attention, None for global or no attention

    def label(self) -> str:
        names = [f"attention(window {self.window})" if m == "attention" and self.window else m
                 for m in self.mixers]
        return "||".join(names) + ("" if self.ffn == "none" else f"+{self.ffn}")


class DTypeSpec(Spec):
    weight: DType = "bf16"
    activation: DType = "bf16"
    kv: DType = "bf16"
    state: DType = "fp32"  # recurrent state: reference Mamba/RG-LRU/MLGRU/RWKV kernels keep it in fp32


class Published(Spec):
    params_total: PositiveInt
    params_active: PositiveInt | None = None
    params_mtp: PositiveInt | None = None   # the MTP module's own weights (embedding and head shared)
    source: str = Field(min_length=3)


class ModelSpec(Spec):
    name: str = Field(min_length=1)
    source: str = Field(min_length=3)
    family: str = "transformer"
    vocab_size: PositiveInt
    hidden_size: PositiveInt
    num_layers: LayerCount
    max_context: PositiveInt
    tied_embeddings: bool = False
    norm: Literal["rmsnorm", "layernorm"] = "rmsnorm"
    norm_placement: Literal["pre", "pre_post"] = "pre"  # Gemma-2/3 also norm each block's output
    # parallel: attention and the FFN read one norm of the residual and both add into it
    # (GPT-J, GPT-NeoX, PaLM, Falcon); sequential: the FFN reads the attention block's output
    block: Literal["sequential", "parallel"] = "sequential"
    embed_norm: bool = False   # RWKV ln0 right after the embedding
    position: Literal["rope", "learned", "none"] = "rope"
    learned_positions: NonNegativeInt = 0
    attention: AttentionSpec | None = None
    mla: MlaSpec | None = None
    mamba1: Mamba1Spec | None = None
    mamba2: Mamba2Spec | None = None
    rglru: RglruSpec | None = None
    mlgru: MlgruSpec | None = None
    rwkv7: Rwkv7Spec | None = None
    hyena: HyenaSpec | None = None
    mlp: MlpSpec | None = None
    moe: MoeSpec | None = None
    bitlinear: BitLinearSpec | None = None
    mtp: MtpSpec | None = None
    layers: tuple[LayerRule, ...] | None = Field(default=None, max_length=MAX_LAYERS)
    dtypes: DTypeSpec = DTypeSpec()
    published: Published | None = None

    @model_validator(mode="after")
    def _parallel_block(self):
        if self.block == "parallel" and self.norm_placement != "pre":
            raise ValueError("block 'parallel' needs norm_placement 'pre' (one norm feeds both branches)")
        return self

    @model_validator(mode="after")
    def _positions(self):
        if self.position == "learned" and self.learned_positions == 0:
            raise ValueError("position 'learned' needs learned_positions (the table's rows)")
        return self

    @model_validator(mode="after")
    def _layers_resolve(self):
        kinds = _resolve(self)  # raises ValueError naming the problem
        for kind in kinds:
            for mixer in kind.mixers:
                if getattr(self, mixer) is None:
                    raise ValueError(f"layers use mixer '{mixer}' but the file has no '{mixer}:' section")
            if kind.ffn != "none" and getattr(self, kind.ffn) is None:
                raise ValueError(f"layers use ffn '{kind.ffn}' but the file has no '{kind.ffn}:' section")
        return self

    @property
    def layer_kinds(self) -> tuple[LayerKind, ...]:
        # once per spec object (frozen): lowering reads it on every step
        return _KINDS.get((self,), None, lambda: _resolve(self))

    def with_dtypes(self, **overrides: str | None) -> ModelSpec:
        """A copy with some dtypes replaced (None keeps the model's own)."""
        chosen = {k: v for k, v in overrides.items() if v is not None}
        if not chosen:
            return self
        return self.model_copy(update={"dtypes": self.dtypes.model_copy(update=chosen)})


# ``ModelSpec.layer_kinds`` per spec object (a loop's typed models: a few formats of one model)
_KINDS: ByIdentity[tuple[LayerKind, ...]] = ByIdentity(64)


def _default_kind(spec: ModelSpec, section: tuple[str, ...], none: str | None) -> str | None:
    present = [name for name in section if getattr(spec, name) is not None]
    if len(present) == 1:
        return present[0]
    if not present:
        return none
    return None  # ambiguous: rules must say


def _resolve(spec: ModelSpec) -> tuple[LayerKind, ...]:
    mixer = _default_kind(spec, MIXER_KINDS, None)
    ffn = _default_kind(spec, ("mlp", "moe"), "none")
    mixers: list[tuple[str, ...] | None] = [(mixer,) if mixer else None] * spec.num_layers
    ffns: list[str | None] = [ffn] * spec.num_layers
    windows: list[str] = ["local"] * spec.num_layers
    for i, rule in enumerate(spec.layers or ()):
        if rule.indices is not None and any(j >= spec.num_layers for j in rule.indices):
            raise ValueError(f"layers[{i}].indices: every index must be < num_layers ({spec.num_layers})")
        for layer in rule.selected(spec.num_layers):
            if rule.mixer is not None:
                mixers[layer] = (rule.mixer,) if isinstance(rule.mixer, str) else tuple(rule.mixer)
            if rule.ffn is not None:
                ffns[layer] = rule.ffn
            if rule.window is not None:
                windows[layer] = rule.window
    kinds = []
    for layer in range(spec.num_layers):
        mixer_of, ffn_of = mixers[layer], ffns[layer]
        if mixer_of is None:
            raise ValueError(f"layer {layer} has no mixer: add a 'layers:' rule giving it one of "
                             f"{', '.join(MIXER_KINDS)} (needed when the file configures several or none)")
        if ffn_of is None:
            raise ValueError(f"layer {layer} has no ffn: the file has both 'mlp:' and 'moe:', so add "
                             f"a 'layers:' rule giving it one of {', '.join(FFN_KINDS)}")
        window = spec.attention.sliding_window if spec.attention and windows[layer] == "local" else None
        kinds.append(LayerKind(mixer_of, ffn_of, window if "attention" in mixer_of else None))
    return tuple(kinds)


Section = TypeVar("Section")


def configured(section: Section | None, name: str) -> Section:
    """The section a layer's kind needs; validation refuses a layer whose kind has none, so a
    missing one here is a lowering bug, said plainly."""
    if section is None:
        raise AccelsimError(f"the model has no '{name}:' section, yet a layer uses it")
    return section


def dt_rank(spec: ModelSpec) -> int:
    m = configured(spec.mamba1, "mamba1")
    return m.dt_rank if m.dt_rank is not None else math.ceil(spec.hidden_size / 16)


def load_model(name_or_path: str) -> ModelSpec:
    """A bundled name, a model YAML, a Hugging Face ``config.json`` (read by model_type), or a
    Hugging Face model folder holding one (a downloaded snapshot, with or without weights)."""
    if os.path.isdir(name_or_path or "."):  # "" is the current folder, as Path("") reads it
        config = Path(name_or_path) / "config.json"
        if not config.is_file():
            raise ConfigError("a model folder must hold a Hugging Face config.json (none here)",
                              source=name_or_path or ".")
        name_or_path = str(config)
    if name_or_path.endswith(".json"):
        return loader.validate(ModelSpec, hf_import.read_hf_config(name_or_path), name_or_path)
    return loader.load(ModelSpec, name_or_path, "models", "model")
