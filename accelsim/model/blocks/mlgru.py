"""MatMul-free LM token mixer: the MLGRU (Zhu et al., arXiv 2406.02528 Sec. 3.3.1), as in the
released code ``mmfreelm/layers/hgrn_bit.py`` (refdata/models/README.md section 4, 5.4).

i, f, g = BitLinear(x) (three d->d ternary projections); f = lb + (1-lb)*sigmoid(f);
i = SiLU(i)*(1-f); h = f*h + i; o' = RMSNorm(g)*SiLU(h); out = BitLinear_o(o').
State: h, d elements per layer; no KV cache.  The projections are ternary only when the model
declares ``bitlinear:``, as every MatMul-free checkpoint does.
"""
from __future__ import annotations

from accelsim.graph import Scan, Tensor
from accelsim.model.context import LoweringContext
from accelsim.model.spec import LayerKind, configured

# Per channel per token (README 5.4): sigmoid(f) 1, lower bound 2, SiLU(i)*(1-f) 4.
GATE_OPS = 7.0
SCAN_OPS = 2.0         # h = f*h + i
# RMSNorm(g) * SiLU(h): ~8 per channel (README 5.4).
OUT_GATE_OPS = 8.0


def lower(ctx: LoweringContext, x: Tensor, layer: int, kind: LayerKind) -> Tensor:
    spec, d, wl = configured(ctx.spec.mlgru, "mlgru"), ctx.spec.hidden_size, ctx.workload
    p = f"layers.{layer}.mlgru"
    i, f, g = (ctx.linear(f"{p}.{name}_proj", x, d, layer, role="in_proj") for name in ("i", "f", "g"))
    bound = (ctx.weight(f"{p}.lower_bound", d),) if spec.lower_bound else ()
    coeffs = ctx.pointwise(f"{p}.gates", (i, f, *bound), GATE_OPS, layer, shape=(ctx.tokens, 2 * d),
                           role="gate")
    h = ctx.state(f"{p}.scan.state", d)
    h_new = Tensor(f"{p}.scan.state_new", h.shape, h.dtype, "state")
    hx = ctx.activation(f"{p}.scan.out", ctx.tokens, d)
    ctx.add(Scan(f"{p}.scan", (coeffs, h), (hx, h_new), layer=layer, role="scan", batch=wl.batch, steps=wl.query_len,
                 channels=d, ops_per_step=SCAN_OPS))
    o = ctx.pointwise(f"{p}.out_gate", (hx, g, ctx.weight(f"{p}.g_norm.weight", d)), OUT_GATE_OPS, layer,
                      role="gate")
    return ctx.linear(f"{p}.o_proj", o, d, layer, role="out_proj")
