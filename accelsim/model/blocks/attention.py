"""Multi-head attention with grouped KV heads (MHA, GQA and MQA are head-count choices),
RoPE, optional biases, QK-norm, BitNet sub-norm and a per-layer sliding window."""
from __future__ import annotations

from accelsim.graph import Attention, Norm, Tensor
from accelsim.model.context import LoweringContext
from accelsim.model.spec import LayerKind, configured

# RoPE rotates pairs: two multiplies and one add per element of q and k.
ROPE_OPS_PER_ELEMENT = 3.0


def cached_tokens(past: int, window: int | None) -> int:
    """KV entries kept per sequence before this step: a sliding window keeps a ring buffer of
    the last window-1 tokens (the new token makes it W)."""
    return min(past, window - 1) if window is not None else past


def kv_tensors(ctx: LoweringContext, prefix: str, window: int | None, per_token: tuple[int, ...]
               ) -> tuple[list[Tensor], Tensor]:
    """(cached KV read, new KV written) with ``per_token`` elements per token per sequence."""
    wl, kv_dtype = ctx.workload, ctx.spec.dtypes.kv
    cached = cached_tokens(wl.kv_len - wl.query_len, window)
    # Past the window a prefill only keeps (and writes) the last W entries of its ring buffer.
    written = min(wl.query_len, window) if window is not None else wl.query_len
    old = [Tensor(f"{prefix}.kv_cache", (wl.batch, cached, *per_token), kv_dtype, "kv_cache")] if cached else []
    new = Tensor(f"{prefix}.kv_new", (wl.batch, written, *per_token), kv_dtype, "kv_cache")
    return old, new


def rope(ctx: LoweringContext, name: str, x: Tensor, rotated_fraction: float, layer: int) -> Tensor:
    if ctx.spec.position != "rope":
        return x
    return ctx.pointwise(name, (x,), ROPE_OPS_PER_ELEMENT * rotated_fraction, layer, role="rope")


def qk_norm(ctx: LoweringContext, p: str, qkv: Tensor, heads: int, d: int, layer: int) -> Tensor:
    """RMSNorm over head_dim of every q and k head, with one d-wide weight each for q and k."""
    weights = (ctx.weight(f"{p}.q_norm.weight", d), ctx.weight(f"{p}.k_norm.weight", d))
    y = ctx.activation(f"{p}.qk_norm.out", *qkv.shape)
    return ctx.add(Norm(f"{p}.qk_norm", (qkv, *weights), (y,), layer=layer, role="qk_norm",
                        rows=qkv.shape[0] * heads, cols=d))


def lower(ctx: LoweringContext, x: Tensor, layer: int, kind: LayerKind) -> Tensor:
    spec, wl = configured(ctx.spec.attention, "attention"), ctx.workload
    d, h, hkv = spec.head_dim, spec.num_heads, spec.num_kv_heads
    p = f"layers.{layer}.attn"
    qkv = ctx.linear(f"{p}.qkv", x, (h + 2 * hkv) * d, layer, role="qkv", bias=spec.qkv_bias)
    if spec.qk_norm:
        qkv = qk_norm(ctx, p, qkv, h + hkv, d, layer)
    qkv = rope(ctx, f"{p}.rope", qkv, spec.rope_fraction * (h + hkv) / (h + 2 * hkv), layer)

    old, new = kv_tensors(ctx, p, kind.window, (2, hkv, d))
    out = ctx.activation(f"{p}.sdpa.out", ctx.tokens, h * d)
    ctx.add(Attention(f"{p}.sdpa", (qkv, *old), (out, new), layer=layer, role="attention", batch=wl.batch,
                      heads=h, kv_heads=hkv, q_len=wl.query_len, kv_len=wl.kv_len, qk_dim=d,
                      v_dim=d, causal=True, window=kind.window))
    if spec.sub_norm:
        out = ctx.norm(f"{p}.sub_norm", out, layer, kind="rmsnorm")
    return ctx.linear(f"{p}.o_proj", out, ctx.spec.hidden_size, layer, role="o_proj", bias=spec.o_bias)
