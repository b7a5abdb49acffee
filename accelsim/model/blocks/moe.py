"""Mixture of experts: a router picks top-k of E experts per token, plus always-on shared experts.

Decode weight traffic is set by how many *distinct* experts a step touches.  With B tokens each
routing to k of E experts uniformly at random, an expert is missed by one token with probability
1 - k/E, so the expected number touched is E * (1 - (1 - k/E)^B)
(source: refdata/models README; the standard balls-into-bins expectation).
"""
from __future__ import annotations

import math

from accelsim.graph import MatMul, Tensor
from accelsim.model.blocks.mlp import ACTIVATION_OPS, feed_forward
from accelsim.model.context import LoweringContext
from accelsim.model.spec import configured

# Softmax/sigmoid over E logits and a top-k selection: ~4 ops per logit.
ROUTER_OPS_PER_LOGIT = 4.0


def expected_distinct_experts(num_experts: int, top_k: int, tokens: int) -> float:
    return num_experts * (1.0 - (1.0 - top_k / num_experts) ** tokens)


def _experts(ctx: LoweringContext, name: str, x: Tensor, in_f: int, out_f: int, layer: int,
             role: str) -> Tensor:
    """The routed-expert GEMMs: one per distinct expert touched, over a stacked (E, in, out) weight."""
    spec = configured(ctx.spec.moe, "moe")
    e, routed = spec.num_experts, x.shape[0]
    touched = expected_distinct_experts(e, spec.top_k, ctx.tokens)
    count = min(e, max(1, math.ceil(touched - 1e-9)))
    dtype = "ternary" if ctx.spec.bitlinear is not None else None
    w = ctx.weight(f"{name}.weight", e, in_f, out_f, dtype=dtype)
    # gpt-oss: a bias per expert, stacked like the weights; a step reads the touched experts' rows
    bias = (ctx.weight(f"{name}.bias", e, out_f),) if spec.expert_bias else ()
    y = ctx.activation(f"{name}.out", routed, out_f)
    return ctx.add(MatMul(name, (x, w, *bias), (y,), layer=layer, role=role, m=math.ceil(routed / count), k=in_f,
                          n=out_f, count=count, rows=routed, b_fraction=touched / e))


def lower(ctx: LoweringContext, x: Tensor, layer: int) -> Tensor:
    spec, d = configured(ctx.spec.moe, "moe"), ctx.spec.hidden_size
    p = f"layers.{layer}.moe"
    w = spec.expert_intermediate_size
    router = ctx.linear(f"{p}.router", x, spec.num_experts, layer, role="router", bias=False,
                        block=False)
    if spec.router_bias:
        router = ctx.pointwise(f"{p}.router_bias", (router, ctx.weight(f"{p}.router.bias", spec.num_experts)),
                               1.0, layer, role="router")
    gates = ctx.pointwise(f"{p}.topk", (router,), ROUTER_OPS_PER_LOGIT, layer, role="topk")
    # Every token is copied to its k experts: the expert GEMMs see tokens*k rows in all.
    routed = ctx.pointwise(f"{p}.dispatch", (x, gates), 0.0, layer, shape=(ctx.tokens * spec.top_k, d),
                           role="dispatch")
    up = _experts(ctx, f"{p}.experts.up", routed, d, w * (2 if spec.gated else 1), layer, "expert_up")
    act = ctx.pointwise(f"{p}.experts.act", (up,), ACTIVATION_OPS[spec.kind], layer,
                        shape=(routed.shape[0], w), role="expert_act")
    down = _experts(ctx, f"{p}.experts.down", act, w, d, layer, "expert_down")
    # Weighted sum of each token's k expert outputs.
    out = ctx.pointwise(f"{p}.combine", (down, gates), 2.0 * spec.top_k, layer,
                        shape=(ctx.tokens, d), role="combine")
    if spec.shared_experts:
        width = spec.shared_experts * (spec.shared_intermediate_size or w)
        shared = feed_forward(ctx, f"{p}.shared", x, spec.kind, width, False, layer,
                              roles=("shared_up", "shared_act", "shared_down"))
        out = ctx.pointwise(f"{p}.add_shared", (out, shared), 1.0, layer, role="combine")
    return out
