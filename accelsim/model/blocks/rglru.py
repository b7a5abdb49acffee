"""Griffin / RecurrentGemma recurrent block (De et al., arXiv 2402.19427 Sec. 2.4; code
google-deepmind/recurrentgemma ``RecurrentBlock`` and ``RGLRU``).

y = GeLU(W_y u);  x = RG-LRU(Conv1D_4(W_x u));  out = W_out(x * y).
The RG-LRU gates r_t, i_t use block-diagonal weights (num_blocks blocks of (R/Hb)^2), so they
are ``num_blocks`` small GEMMs.  h_t = a_t*h_{t-1} + sqrt(1-a_t^2)*(i_t*x_t) with
log a_t = -8 r_t softplus(Lambda).  Per token (refdata/models/README.md 5.3): matmuls
2*(2DR + RD) + 4R^2/Hb FLOPs; state R (h) + (K-1)*R (conv window).
"""
from __future__ import annotations

from accelsim.graph import MatMul, Scan, Tensor
from accelsim.model.context import LoweringContext
from accelsim.model.spec import LayerKind, configured

GELU_OPS = 1.0   # README 5.3 counts the GeLU branch as R ops per token
# Two sigmoids (2), log a (2), exp (1), a^2 (1), sqrt(1-a^2) (2), i*x*mult (2): README 5.3.
GATE_OPS = 10.0
SCAN_OPS = 2.0    # h = a*h + b
OUT_GATE_OPS = 1.0  # x * y


def _block_diagonal(ctx: LoweringContext, name: str, x: Tensor, blocks: int, layer: int) -> Tensor:
    width = x.shape[-1]
    size = width // blocks
    w = ctx.weight(f"{name}.weight", blocks, size, size)
    b = ctx.weight(f"{name}.bias", width)
    y = ctx.activation(f"{name}.out", x.shape[0], width)
    return ctx.add(MatMul(name, (x, w, b), (y,), layer=layer, role="head_gate", m=x.shape[0], k=size,
                          n=size, count=blocks))


def lower(ctx: LoweringContext, x: Tensor, layer: int, kind: LayerKind) -> Tensor:
    spec, d, wl = configured(ctx.spec.rglru, "rglru"), ctx.spec.hidden_size, ctx.workload
    r = spec.lru_width
    p = f"layers.{layer}.rglru"
    y = ctx.linear(f"{p}.linear_y", x, r, layer, role="in_proj", bias=True)
    y = ctx.pointwise(f"{p}.gelu", (y,), GELU_OPS, layer, role="act")
    xb = ctx.linear(f"{p}.linear_x", x, r, layer, role="in_proj", bias=True)
    xb = ctx.short_conv(f"{p}.conv", xb, spec.conv_width, layer, bias=True)
    gate_a = _block_diagonal(ctx, f"{p}.gate_a", xb, spec.num_blocks, layer)
    gate_x = _block_diagonal(ctx, f"{p}.gate_x", xb, spec.num_blocks, layer)
    lam = ctx.weight(f"{p}.a_param", r)
    coeffs = ctx.pointwise(f"{p}.gates", (gate_a, gate_x, xb, lam), GATE_OPS, layer, shape=(ctx.tokens, 2 * r),
                           role="gate")
    h = ctx.state(f"{p}.scan.state", r)
    h_new = Tensor(f"{p}.scan.state_new", h.shape, h.dtype, "state")
    hx = ctx.activation(f"{p}.scan.out", ctx.tokens, r)
    ctx.add(Scan(f"{p}.scan", (coeffs, h), (hx, h_new), layer=layer, role="scan", batch=wl.batch, steps=wl.query_len,
                 channels=r, ops_per_step=SCAN_OPS))
    out = ctx.pointwise(f"{p}.out_gate", (hx, y), OUT_GATE_OPS, layer, role="gate")
    return ctx.linear(f"{p}.linear_out", out, d, layer, role="out_proj", bias=True)
