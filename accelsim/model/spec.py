"""``ModelSpec``: the validated, immutable description of a model, read once from YAML."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from accelsim.config import loader
from accelsim.config.types import NonNegativeInt, PositiveInt, Spec
from accelsim.dtypes import DType


class AttentionSpec(Spec):
    num_heads: PositiveInt
    num_kv_heads: PositiveInt
    head_dim: PositiveInt
    qkv_bias: bool = False
    sliding_window: PositiveInt | None = None

    @model_validator(mode="after")
    def _heads_group(self):
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads ({self.num_heads}) must be a multiple of "
                             f"num_kv_heads ({self.num_kv_heads})")
        return self


class MlpSpec(Spec):
    kind: Literal["swiglu", "geglu", "gelu", "relu"]
    intermediate_size: PositiveInt
    bias: bool = False

    @property
    def gated(self) -> bool:
        return self.kind in ("swiglu", "geglu")


class DTypeSpec(Spec):
    weight: DType = "bf16"
    activation: DType = "bf16"
    kv: DType = "bf16"


class Published(Spec):
    params_total: PositiveInt
    params_active: PositiveInt | None = None
    source: str = Field(min_length=3)


class ModelSpec(Spec):
    name: str = Field(min_length=1)
    source: str = Field(min_length=3)
    family: str = "transformer"
    vocab_size: PositiveInt
    hidden_size: PositiveInt
    num_layers: PositiveInt
    max_context: PositiveInt
    tied_embeddings: bool = False
    norm: Literal["rmsnorm", "layernorm"] = "rmsnorm"
    position: Literal["rope", "learned", "none"] = "rope"
    learned_positions: NonNegativeInt = 0
    attention: AttentionSpec
    mlp: MlpSpec
    dtypes: DTypeSpec = DTypeSpec()
    published: Published | None = None

    @model_validator(mode="after")
    def _positions(self):
        if self.position == "learned" and self.learned_positions == 0:
            raise ValueError("position 'learned' needs learned_positions (the table's rows)")
        return self

    def with_dtypes(self, **overrides: str | None) -> ModelSpec:
        """A copy with some dtypes replaced (None keeps the model's own)."""
        chosen = {k: v for k, v in overrides.items() if v is not None}
        if not chosen:
            return self
        return self.model_copy(update={"dtypes": self.dtypes.model_copy(update=chosen)})

    @property
    def kv_bytes_per_token(self) -> float:
        from accelsim.dtypes import nbytes
        a = self.attention
        return self.num_layers * 2 * a.num_kv_heads * a.head_dim * nbytes(self.dtypes.kv)


def load_model(name_or_path: str) -> ModelSpec:
    return loader.load(ModelSpec, name_or_path, "models", "model")
