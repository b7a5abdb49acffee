"""RWKV-7 "Goose" time mixing (Peng et al., arXiv 2503.14456; reference ``RWKV_x070_TMix_one``
in BlinkDL/RWKV-LM RWKV-v7), following refdata/models/README.md 5.5.

Token shift with six learned lerps; r, k, v, o projections (C x C); low-rank ("LoRA") paths
for the decay w, in-context learning rate a, value residual and output gate; then the
generalised delta-rule update of an N x N state per head, S <- S diag(w) + (S(-kk))(kk*a)^T + v k^T,
y = S r, ~9*N^2 FLOPs per head with the rank-1 form.  State: C*N (S) + C (token shift); the
channel mix (an MLP with ``token_shift``) carries the second shift vector.
"""
from __future__ import annotations

from accelsim.graph import Scan, Tensor
from accelsim.model.blocks.mlp import token_shift
from accelsim.model.context import LoweringContext
from accelsim.model.spec import LayerKind, configured

LERPS = 6                 # r, w, k, v, a, g each get their own mix of x_t and x_{t-1}
WKV_OPS_PER_STATE = 9.0   # rank-1 form of the delta-rule update and the read-out (README 5.5)
# Per channel: decay sigmoid+exp (~4), a sigmoid (~2), kk = L2norm(k*k_k) (~4), k update (3),
# value residual lerp with sigmoid (~5), tanh between the decay LoRA halves counted on d_w.
PREP_OPS = 18.0
# Per channel: bonus ((r*k*r_k) summed per head) * v (~4) and the output gate (1).
BONUS_OPS = 5.0
TANH_OPS = 4.0
SIGMOID_OPS = 4.0


def _lora(ctx: LoweringContext, name: str, x: Tensor, rank: int, between: float, layer: int) -> Tensor:
    """C -> rank -> C with a nonlinearity (``between`` ops per element) in the middle."""
    h = ctx.linear(f"{name}.down", x, rank, layer, role="lora_down")
    h = ctx.pointwise(f"{name}.act", (h,), between, layer, role="act")
    return ctx.linear(f"{name}.up", h, ctx.spec.hidden_size, layer, role="lora_up")


def lower(ctx: LoweringContext, x: Tensor, layer: int, kind: LayerKind) -> Tensor:
    spec, c, wl = configured(ctx.spec.rwkv7, "rwkv7"), ctx.spec.hidden_size, ctx.workload
    n = spec.head_size
    p = f"layers.{layer}.rwkv"
    mixed = token_shift(ctx, f"{p}.shift", x, LERPS, layer)
    xs = ctx.view(mixed, c)
    r, k, v = (ctx.linear(f"{p}.{name}_proj", xs, c, layer, role="in_proj") for name in ("r", "k", "v"))
    w = _lora(ctx, f"{p}.decay_lora", xs, spec.decay_lora, TANH_OPS, layer)
    a = _lora(ctx, f"{p}.a_lora", xs, spec.a_lora, 0.0, layer)
    vr = _lora(ctx, f"{p}.value_lora", xs, spec.value_lora, 0.0, layer)
    g = _lora(ctx, f"{p}.gate_lora", xs, spec.gate_lora, SIGMOID_OPS, layer)
    vectors = tuple(ctx.weight(f"{p}.{name}", c) for name in ("w0", "a0", "v0", "k_k", "k_a"))
    prep = ctx.pointwise(f"{p}.prep", (k, v, w, a, vr, *vectors), PREP_OPS, layer, shape=(ctx.tokens, 4 * c),
                         role="gate")
    s = ctx.state(f"{p}.wkv.state", c * n)
    s_new = Tensor(f"{p}.wkv.state_new", s.shape, s.dtype, "state")
    y = ctx.activation(f"{p}.wkv.out", ctx.tokens, c)
    ctx.add(Scan(f"{p}.wkv", (prep, r, s), (y, s_new), layer=layer, role="scan", batch=wl.batch, steps=wl.query_len,
                 channels=c * n, ops_per_step=WKV_OPS_PER_STATE))
    # ln_x is a GroupNorm with one group per head; its affine weight and bias span all C channels.
    y = ctx.norm(f"{p}.ln_x", y, layer, kind="layernorm")
    y = ctx.pointwise(f"{p}.bonus", (y, r, k, v, g, ctx.weight(f"{p}.r_k", c)), BONUS_OPS, layer,
                      shape=(ctx.tokens, c), role="gate")
    return ctx.linear(f"{p}.o_proj", y, c, layer, role="out_proj")
