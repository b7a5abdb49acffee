"""DeepSeek multi-head latent attention (MLA, arXiv 2412.19437 Sec. 2.1.1).

The cache holds, per token, one kv_lora_rank latent plus one shared RoPE key
(512 + 64 = 576 elements for DeepSeek-V3, versus 2*128*128 for plain MHA).
*Absorbed*: W_UK folds into the query and W_UV into the output, so attention runs in the
latent space as MQA (qk width rank+rope, v width rank) and the cache is never decompressed.
*Not absorbed*: the cached latents are decompressed to per-head K and V every step.

``MlaSpec.absorbed`` says what a decode step does.  A prefill step always runs the not-absorbed
form, as the serving engines do: with every query attending to thousands of keys, attention
FLOPs dominate and MHA over per-head (qk 192, v 128) dims costs 320 / 1088 of MQA over the
latent (qk 576, v 512) dims, while decompressing the prompt's own latents is one GEMM
(source: vLLM's MLA backend, vllm/attention/backends/mla/common.py: "compute friendly" MHA for
prefill, "data-movement friendly" absorbed MQA for decode; SGLang's DeepSeek-V2 model picks
``AttnForwardMethod.MHA`` for extend/prefill batches; DeepSeek-V2 report, arXiv 2405.04434,
Sec. 2.1.2, introduces absorption for inference over the cache).
"""
from __future__ import annotations

from functools import partial

from accelsim.graph import Attention, MatMul, Norm, Tensor
from accelsim.model.blocks.attention import kv_tensors, rope
from accelsim.model.context import LoweringContext
from accelsim.model.spec import LayerKind, configured


def _per_head(ctx: LoweringContext, name: str, x: Tensor, w: Tensor, heads: int, k: int, n: int,
              fraction: float, layer: int, role: str) -> Tensor:
    """``heads`` GEMMs of (tokens x k).(k x n), each against its own slice of ``w``."""
    y = ctx.activation(f"{name}.out", ctx.tokens, heads * n)
    return ctx.add(MatMul(name, (x, w), (y,), layer=layer, role=role, m=ctx.tokens, k=k, n=n, count=heads,
                          b_fraction=fraction))


def lower(ctx: LoweringContext, x: Tensor, layer: int, kind: LayerKind) -> Tensor:
    spec, wl = configured(ctx.spec.mla, "mla"), ctx.workload
    h, rank, nope, rope_d, v = (spec.num_heads, spec.kv_lora_rank, spec.qk_nope_head_dim,
                                spec.qk_rope_head_dim, spec.v_head_dim)
    p = f"layers.{layer}.attn"
    if spec.q_lora_rank is not None:
        q = ctx.linear(f"{p}.q_a", x, spec.q_lora_rank, layer, role="q_a")
        q = ctx.norm(f"{p}.q_a_norm", q, layer, kind="rmsnorm")
    else:
        q = x
    q = ctx.linear(f"{p}.q_b", q, h * (nope + rope_d), layer, role="q_b")
    q = rope(ctx, f"{p}.q_rope", q, rope_d / (nope + rope_d), layer)
    latent = ctx.linear(f"{p}.kv_a", x, rank + rope_d, layer, role="kv_a")
    # The norm covers the latent only, not the RoPE key riding alongside it.
    normed = ctx.activation(f"{p}.kv_a_norm.out", *latent.shape)
    latent = ctx.add(Norm(f"{p}.kv_a_norm", (latent, ctx.weight(f"{p}.kv_a_norm.weight", rank)), (normed,),
                          layer=layer, role="norm", rows=ctx.tokens, cols=rank))
    latent = rope(ctx, f"{p}.k_rope", latent, rope_d / (rank + rope_d), layer)
    # One kv_b weight (rank -> heads*(nope+v)) holds W_UK and W_UV side by side.
    kv_b = ctx.weight(f"{p}.kv_b.weight", rank, h * (nope + v))
    old, new = kv_tensors(ctx, p, kind.window, (rank + rope_d,))
    absorbed = spec.absorbed and wl.phase == "decode"  # a prefill attends as MHA (module docstring)
    out = ctx.activation(f"{p}.sdpa.out", ctx.tokens, h * (rank if absorbed else v))
    sdpa = partial(Attention, f"{p}.sdpa", layer=layer, role="attention", batch=wl.batch, heads=h,
                   q_len=wl.query_len, kv_len=wl.kv_len, causal=True, window=kind.window)
    if absorbed:
        q_latent = _per_head(ctx, f"{p}.q_absorb", q, kv_b, h, nope, rank, nope / (nope + v), layer,
                             "q_absorb")
        ctx.add(sdpa((q_latent, latent, *old), (out, new), kv_heads=1, qk_dim=rank + rope_d, v_dim=rank))
        out = _per_head(ctx, f"{p}.v_absorb", out, kv_b, h, rank, v, v / (nope + v), layer, "v_absorb")
    else:
        # Every step re-expands all cached latents (plus the new ones) into per-head K and V.
        rows = wl.batch * wl.kv_len
        kv = ctx.activation(f"{p}.kv_b.out", rows, h * (nope + v))
        ctx.add(MatMul(f"{p}.kv_b", (latent, kv_b, *old), (kv, new), layer=layer, role="kv_b", m=rows, k=rank,
                       n=h * (nope + v)))
        ctx.add(sdpa((q, kv), (out,), kv_heads=h, qk_dim=nope + rope_d, v_dim=v))
    return ctx.linear(f"{p}.o_proj", out, ctx.spec.hidden_size, layer, role="o_proj")
