"""Mamba-1 block: in_proj -> short conv -> selective scan (S6) gated by SiLU(z) -> out_proj
(Gu & Dao, arXiv 2312.00752 Sec. 3; shapes as in state-spaces/mamba ``mamba_simple.py``).

Per token and layer (refdata/models/README.md 5.1): matmuls 2*(3DE + 2ER + 2EN) FLOPs, the
scan ~7*E*N FLOPs plus E*N exponentials, and a state of E*N (SSM) + E*(K-1) (conv window).
"""
from __future__ import annotations

from accelsim.graph import Norm, Scan, Tensor
from accelsim.model.context import LoweringContext
from accelsim.model.spec import LayerKind, configured, dt_rank

# Per state element per step: dA = exp(dt*A) (mul + exp), dBx (2), h = h*dA + dBx (2), y += h*C (2).
SCAN_OPS_PER_STATE = 8.0
# Per channel per token: softplus(dt) (~3), D*x skip (2), SiLU(z) gate (~5), conv SiLU (~4).
CHANNEL_OPS = 14.0


def selective_scan(ctx: LoweringContext, name: str, inputs: tuple[Tensor, ...], channels: int,
                   out_width: int, ops: float, layer: int, steps: int | None = None,
                   out_rows: int | None = None) -> Tensor:
    """A fused scan over ``channels`` state elements per sequence: reads its per-token inputs
    and the carried state, writes y and the state (a prefill starts from an allocated state).
    The per-step expanded state stays on chip (Mamba's hardware-aware scan, Sec. 3.3.2)."""
    wl = ctx.workload
    h = ctx.state(f"{name}.state", channels)
    y = ctx.activation(f"{name}.out", out_rows or ctx.tokens, out_width)
    h_new = Tensor(f"{name}.state_new", h.shape, h.dtype, "state")
    return ctx.add(Scan(name, (*inputs, h), (y, h_new), layer=layer, role="scan", batch=wl.batch,
                        steps=steps or wl.query_len, channels=channels, ops_per_step=ops))


def lower(ctx: LoweringContext, x: Tensor, layer: int, kind: LayerKind) -> Tensor:
    spec, d = configured(ctx.spec.mamba1, "mamba1"), ctx.spec.hidden_size
    e, n, r = spec.expand * d, spec.d_state, dt_rank(ctx.spec)
    p = f"layers.{layer}.mamba"
    xz = ctx.linear(f"{p}.in_proj", x, 2 * e, layer, role="in_proj", bias=spec.proj_bias)
    xc = ctx.short_conv(f"{p}.conv", ctx.view(xz, e), spec.d_conv, layer,
                        bias=spec.conv_bias)
    dbc = ctx.linear(f"{p}.x_proj", xc, r + 2 * n, layer, role="x_proj")
    if spec.inner_norms:  # Jamba: RMSNorm on dt (width R), B and C (width N each)
        dbc = _inner_norms(ctx, p, dbc, r, n, layer)
    dt = ctx.linear(f"{p}.dt_proj", ctx.view(dbc, r), e, layer, role="dt_proj", bias=True)
    a = ctx.weight(f"{p}.A_log", e, n)
    skip = ctx.weight(f"{p}.D", e)
    y = selective_scan(ctx, f"{p}.scan", (xc, dt, ctx.view(dbc, 2 * n), a, skip), e * n, e,
                       SCAN_OPS_PER_STATE, layer)
    y = ctx.pointwise(f"{p}.gate", (y, ctx.view(xz, e)), CHANNEL_OPS, layer, shape=(ctx.tokens, e),
                      role="gate")
    return ctx.linear(f"{p}.out_proj", y, d, layer, role="out_proj", bias=spec.proj_bias)


def _inner_norms(ctx: LoweringContext, p: str, dbc: Tensor, r: int, n: int, layer: int) -> Tensor:
    weights = tuple(ctx.weight(f"{p}.{part}_norm.weight", width)
                    for part, width in (("dt", r), ("b", n), ("c", n)))
    y = ctx.activation(f"{p}.inner_norm.out", *dbc.shape)
    return ctx.add(Norm(f"{p}.inner_norm", (dbc, *weights), (y,), layer=layer, role="norm", rows=dbc.shape[0],
                        cols=dbc.shape[-1]))
