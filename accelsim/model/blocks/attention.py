"""Multi-head attention with grouped KV heads (MHA, GQA and MQA are head-count choices),
RoPE, optional QKV bias and an optional sliding window."""
from __future__ import annotations

from accelsim.graph import Attention, Tensor
from accelsim.model.context import LoweringContext

# RoPE rotates pairs: two multiplies and one add per element of q and k.
ROPE_OPS_PER_ELEMENT = 3.0


def lower(ctx: LoweringContext, x: Tensor, layer: int) -> Tensor:
    spec, wl = ctx.spec.attention, ctx.workload
    d, h, hkv = spec.head_dim, spec.num_heads, spec.num_kv_heads
    p = f"layers.{layer}.attn"
    qkv = ctx.linear(f"{p}.qkv", x, (h + 2 * hkv) * d, layer, bias=spec.qkv_bias)
    if ctx.spec.position == "rope":
        qkv = ctx.pointwise(f"{p}.rope", (qkv,), ROPE_OPS_PER_ELEMENT * (h + hkv) / (h + 2 * hkv), layer)

    window = spec.sliding_window
    past = wl.kv_len - wl.query_len
    cached = min(past, window - 1) if window is not None else past
    kv_dtype = ctx.spec.dtypes.kv
    inputs = [qkv]
    if cached > 0:
        inputs.append(Tensor(f"{p}.kv_cache", (wl.batch, 2, hkv, cached, d), kv_dtype, "kv_cache"))
    out = ctx.activation(f"{p}.sdpa.out", ctx.tokens, h * d)
    kv_new = Tensor(f"{p}.kv_new", (wl.batch, 2, hkv, wl.query_len, d), kv_dtype, "kv_cache")
    ctx.add(Attention(f"{p}.sdpa", tuple(inputs), (out, kv_new), layer=layer, batch=wl.batch,
                      heads=h, kv_heads=hkv, q_len=wl.query_len, kv_len=wl.kv_len, qk_dim=d,
                      v_dim=d, causal=True, window=window))
    return ctx.linear(f"{p}.o_proj", out, ctx.spec.hidden_size, layer)

