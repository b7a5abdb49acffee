"""Feed-forward blocks: plain (GELU/ReLU) and gated (SwiGLU/GeGLU) MLPs."""
from __future__ import annotations

from accelsim.graph import Tensor
from accelsim.model.context import LoweringContext

# Arithmetic per output element: SiLU = x*sigmoid(x) (~4 ops incl. exp) plus the gate multiply;
# tanh-GELU ~8 ops; ReLU 1.
ACTIVATION_OPS = {"swiglu": 5.0, "geglu": 9.0, "gelu": 8.0, "relu": 1.0}


def lower(ctx: LoweringContext, x: Tensor, layer: int) -> Tensor:
    spec = ctx.spec.mlp
    p = f"layers.{layer}.mlp"
    width = spec.intermediate_size
    up = ctx.linear(f"{p}.up", x, width * (2 if spec.gated else 1), layer, bias=spec.bias)
    act = ctx.pointwise(f"{p}.act", (up,), ACTIVATION_OPS[spec.kind], layer, shape=(ctx.tokens, width))
    return ctx.linear(f"{p}.down", act, ctx.spec.hidden_size, layer, bias=spec.bias)
