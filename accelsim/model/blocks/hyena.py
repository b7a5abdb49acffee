"""StripedHyena Hyena block (code togethercomputer/stripedhyena ``engine.py`` ``step_fir`` /
``step_iir``; refdata/models/README.md 5.6).

Linear(D -> 3D) -> short depthwise FIR over the 3D channels -> x1, x2, v; a modal long filter
per channel with S complex poles (decode: s <- p*s + x1*v, y = x2*(Re sum(R*s) + D*x1*v));
Linear(D -> D).  Decode state: 3D x (L_short - 1) FIR window + D x S complex IIR state.
Prefill materialises the long filter and convolves by FFT, O(T log T) per channel.
"""
from __future__ import annotations

import math

from accelsim.graph import Elementwise, Scan, Tensor
from accelsim.model.context import LoweringContext
from accelsim.model.spec import LayerKind, configured

# Per complex state element per step: p*s complex multiply (6) + real input add (1); read-out
# Re(R*s) (2 mul + 1 sub) and accumulate (1).
IIR_OPS_PER_STATE = 11.0
# Per channel: x1*v (1), D skip (2), gate x2*y (1).
GATING_OPS = 4.0
# FFT convolution per channel of length T (padded to 2T): three real FFTs of ~2.5*N*log2(N)
# FLOPs each (half a complex radix-2 FFT, 5 N log2 N) and a complex product per bin (6*N/2).
REAL_FFT_FACTOR = 2.5


def fft_conv_ops_per_element(t: int) -> float:
    size = 2 * t
    return (3 * REAL_FFT_FACTOR * size * math.log2(size) + 3.0 * size) / t


def lower(ctx: LoweringContext, x: Tensor, layer: int, kind: LayerKind) -> Tensor:
    spec, d, wl = configured(ctx.spec.hyena, "hyena"), ctx.spec.hidden_size, ctx.workload
    p = f"layers.{layer}.hyena"
    u = ctx.linear(f"{p}.in_proj", x, 3 * d, layer, role="in_proj", bias=spec.proj_bias)
    u = ctx.short_conv(f"{p}.short_filter", u, spec.short_filter_len, layer, bias=True)
    # poles and residues: (D, S) complex each, stored as real/imaginary pairs.
    poles = ctx.weight(f"{p}.poles", d, spec.state_size, 2)
    residues = ctx.weight(f"{p}.residues", d, spec.state_size, 2)
    skip = ctx.weight(f"{p}.D", d)
    s = ctx.state(f"{p}.iir.state", d * spec.state_size * 2)
    s_new = Tensor(f"{p}.iir.state_new", s.shape, s.dtype, "state")
    y = ctx.activation(f"{p}.iir.out", ctx.tokens, d)
    if wl.phase == "prefill" and wl.query_len > 1:
        # The final modal state for decode is a by-product; the output comes from the FFT conv.
        ctx.add(Elementwise(f"{p}.fft_conv", (u, poles, residues, s), (y, s_new), layer=layer, role="scan",
                            elements=ctx.tokens * d, ops_per_element=fft_conv_ops_per_element(wl.query_len)))
    else:
        ctx.add(Scan(f"{p}.iir", (u, poles, residues, s), (y, s_new), layer=layer, role="scan", batch=wl.batch,
                     steps=wl.query_len, channels=d * spec.state_size, ops_per_step=IIR_OPS_PER_STATE))
    y = ctx.pointwise(f"{p}.gate", (y, ctx.view(u, 2 * d), skip), GATING_OPS, layer, shape=(ctx.tokens, d),
                      role="gate")
    return ctx.linear(f"{p}.out_proj", y, d, layer, role="out_proj", bias=spec.proj_bias)
