"""Feed-forward blocks: plain (GELU/ReLU/ReLU^2) and gated (SwiGLU/GeGLU/ReLU^2-GLU) MLPs."""
from __future__ import annotations

from accelsim.graph import Elementwise, Tensor
from accelsim.model.context import LoweringContext
from accelsim.model.spec import configured

# Arithmetic per hidden element: SiLU = x*sigmoid(x) (~4 ops incl. exp); tanh-GELU ~8 ops; ReLU 1;
# squared ReLU 2; a gated kind adds the gate multiply.
ACTIVATION_OPS = {"swiglu": 5.0, "geglu": 9.0, "relu2_glu": 3.0, "gelu": 8.0, "relu": 1.0, "relu2": 2.0}


def token_shift(ctx: LoweringContext, name: str, x: Tensor, lerps: int, layer: int) -> Tensor:
    """Mix each token with the previous one through ``lerps`` learned vectors; the last token of
    each sequence is carried to the next step as state."""
    width = x.shape[-1]
    prev = ctx.state(f"{name}.state", width)
    mus = tuple(ctx.weight(f"{name}.mu{i}", width) for i in range(lerps))
    y = ctx.activation(f"{name}.out", x.shape[0], lerps * width)
    new_prev = Tensor(f"{name}.state_new", prev.shape, prev.dtype, "state")
    return ctx.add(Elementwise(name, (x, prev, *mus), (y, new_prev), layer=layer, role="token_shift",
                               elements=x.elements, ops_per_element=1.0 + 2.0 * lerps))


def feed_forward(ctx: LoweringContext, p: str, x: Tensor, kind: str,
                 width: int, bias: bool, layer: int, *, sub_norm: bool = False,
                 roles: tuple[str, str, str] = ("gate_up", "act", "down")) -> Tensor:
    """up (fused gate+up when gated) -> activation -> down, on x's rows; ``roles`` names the
    three (a shared expert tags them shared_up, shared_act, shared_down)."""
    gated = kind in ("swiglu", "geglu", "relu2_glu")
    up_role, act_role, down_role = roles
    up = ctx.linear(f"{p}.up", x, width * (2 if gated else 1), layer, role=up_role, bias=bias)
    act = ctx.pointwise(f"{p}.act", (up,), ACTIVATION_OPS[kind], layer, shape=(x.shape[0], width),
                        role=act_role)
    if sub_norm:
        act = ctx.norm(f"{p}.sub_norm", act, layer, kind="rmsnorm")
    return ctx.linear(f"{p}.down", act, ctx.spec.hidden_size, layer, role=down_role, bias=bias)


def lower(ctx: LoweringContext, x: Tensor, layer: int) -> Tensor:
    spec = configured(ctx.spec.mlp, "mlp")
    p = f"layers.{layer}.mlp"
    if spec.token_shift:
        x = token_shift(ctx, f"{p}.shift", x, 1, layer)
    return feed_forward(ctx, p, x, spec.kind, spec.intermediate_size, spec.bias, layer,
                        sub_norm=spec.sub_norm)
