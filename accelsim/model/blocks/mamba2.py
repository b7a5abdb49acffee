"""Mamba-2 block (SSD; Dao & Gu, arXiv 2405.21060 Sec. 6-7; shapes as in ``mamba2.py``).

in_proj D -> (z, x, B, C, dt) of width 2E + 2GN + Hs; short conv over xBC; a scalar-decay SSM
per head; gated RMSNorm; out_proj E -> D.  Decode is one recurrent step (~5*E*N FLOPs,
refdata/models/README.md 5.2).  Prefill runs the chunked SSD algorithm: per chunk of Q tokens
the diagonal blocks and chunk states are batched matmuls, and only the T/Q chunk states pass
through a short sequential scan.
"""
from __future__ import annotations

import math

from accelsim.graph import MatMul, Tensor
from accelsim.model.blocks.mamba1 import selective_scan
from accelsim.model.context import LoweringContext
from accelsim.model.spec import LayerKind, configured

# Decode, per state element: h = dA*h + (dt*x)*B (3), y += h*C (2).
STEP_OPS_PER_STATE = 5.0
# Inter-chunk state passing: h = decay*h + chunk_state (2 per element per chunk).
CHUNK_SCAN_OPS = 2.0
# Per channel: D*x skip (2) and the gated RMSNorm y*SiLU(z) then norm (~6); per head: softplus
# and exp of dt*A (~4, negligible next to channels).
CHANNEL_OPS = 8.0
# Decay mask L = exp(segsum(dt*A)) per chunk and head: ~3 ops per (i, j) pair of the Q x Q block.
MASK_OPS = 3.0


def d_inner(ctx: LoweringContext) -> int:
    spec = configured(ctx.spec.mamba2, "mamba2")
    return spec.d_ssm if spec.d_ssm is not None else spec.expand * ctx.spec.hidden_size


def _batched(ctx: LoweringContext, name: str, a: Tensor, b: Tensor, m: int, k: int, n: int,
             count: int, layer: int) -> Tensor:
    y = ctx.activation(f"{name}.out", count * m, n)
    return ctx.add(MatMul(name, (a, b), (y,), layer=layer, role="scan", m=m, k=k, n=n, count=count))


def _ssd_prefill(ctx: LoweringContext, p: str, x: Tensor, bc: Tensor, head_params: tuple[Tensor, ...],
                e: int, layer: int) -> Tensor:
    spec, wl = configured(ctx.spec.mamba2, "mamba2"), ctx.workload
    g, n, hs, pd = spec.ngroups, spec.d_state, e // spec.headdim, spec.headdim
    q = min(spec.chunk_size, wl.query_len)
    chunks = wl.batch * math.ceil(wl.query_len / q)
    # 1. diagonal blocks: C B^T per chunk and group, masked, times X per chunk and head.
    cb = _batched(ctx, f"{p}.ssd.cb", bc, bc, q, n, q, chunks * g, layer)
    mask = ctx.pointwise(f"{p}.ssd.mask", (cb, *head_params[:2]), MASK_OPS * hs / g, layer, role="scan")
    y_diag = _batched(ctx, f"{p}.ssd.diag", mask, x, q, q, pd, chunks * hs, layer)
    # 2. chunk states B^T diag(decay) X, 3. state passing across chunks, 4. C . h_prev.
    states = _batched(ctx, f"{p}.ssd.states", bc, x, n, q, pd, chunks * hs, layer)
    # The chunk-start states (one E x N state per chunk) are materialised between phases.
    passed = selective_scan(ctx, f"{p}.ssd.pass", (states,), e * n, e * n, CHUNK_SCAN_OPS, layer,
                            steps=chunks // wl.batch, out_rows=chunks)
    y_off = _batched(ctx, f"{p}.ssd.off", bc, passed, q, n, pd, chunks * hs, layer)
    return ctx.pointwise(f"{p}.ssd.sum", (y_diag, y_off, x, head_params[2]), 3.0, layer,
                         shape=(ctx.tokens, e), role="scan")


def lower(ctx: LoweringContext, x: Tensor, layer: int, kind: LayerKind) -> Tensor:
    spec, d = configured(ctx.spec.mamba2, "mamba2"), ctx.spec.hidden_size
    e = d_inner(ctx)
    g, n, hs = spec.ngroups, spec.d_state, e // spec.headdim
    p = f"layers.{layer}.mamba"
    zxbcdt = ctx.linear(f"{p}.in_proj", x, 2 * e + 2 * g * n + hs, layer, role="in_proj",
                        bias=spec.proj_bias)
    xbc = ctx.short_conv(f"{p}.conv", ctx.view(zxbcdt, e + 2 * g * n), spec.d_conv, layer,
                         bias=spec.conv_bias)
    head_params = tuple(ctx.weight(f"{p}.{name}", hs) for name in ("dt_bias", "A_log", "D"))
    xs, bc = ctx.view(xbc, e), ctx.view(xbc, 2 * g * n)
    if ctx.workload.phase == "prefill" and ctx.workload.query_len > 1:
        y = _ssd_prefill(ctx, p, xs, bc, head_params, e, layer)
    else:
        y = selective_scan(ctx, f"{p}.scan", (xbc, ctx.view(zxbcdt, hs), *head_params), e * n, e,
                           STEP_OPS_PER_STATE, layer)
    norm_w = ctx.weight(f"{p}.norm.weight", e)
    y = ctx.pointwise(f"{p}.gated_norm", (y, ctx.view(zxbcdt, e), norm_w), CHANNEL_OPS, layer,
                      shape=(ctx.tokens, e), role="gate")
    return ctx.linear(f"{p}.out_proj", y, d, layer, role="out_proj", bias=spec.proj_bias)
