"""``lower(model, workload) -> Graph``: the model's forward step as a dataflow graph."""
from __future__ import annotations

from accelsim.graph import Embedding, Graph, Tensor
from accelsim.model.blocks import attention, mlp
from accelsim.model.context import LoweringContext
from accelsim.model.spec import ModelSpec
from accelsim.workload import Workload


def lower(model: ModelSpec, workload: Workload) -> Graph:
    ctx = LoweringContext(model, workload, Graph(name=f"{model.name} {workload.describe()}"))
    x = _embed(ctx)
    for layer in range(model.num_layers):
        x = _decoder_layer(ctx, x, layer)
    _head(ctx, x)
    return ctx.graph


def _embed(ctx: LoweringContext) -> Tensor:
    spec, tokens = ctx.spec, ctx.tokens
    ids = Tensor("input_ids", (tokens,), "int8", "activation")  # storage of ids is negligible
    table = ctx.weight("embed.weight", spec.vocab_size, spec.hidden_size)
    x = ctx.add(Embedding("embed", (table, ids), (ctx.activation("embed.out", tokens, spec.hidden_size),),
                          tokens=tokens, dim=spec.hidden_size))
    if spec.position == "learned":
        pos_table = ctx.weight("embed_positions.weight", spec.learned_positions, spec.hidden_size)
        pos = ctx.add(Embedding("embed_positions", (pos_table,),
                                (ctx.activation("embed_positions.out", tokens, spec.hidden_size),),
                                tokens=ctx.workload.query_len, dim=spec.hidden_size))
        x = ctx.pointwise("embed.add_positions", (x, pos), 1.0, None)
    return x


def _decoder_layer(ctx: LoweringContext, x: Tensor, layer: int) -> Tensor:
    h = ctx.norm(f"layers.{layer}.attn_norm", x, layer)
    h = attention.lower(ctx, h, layer)
    x = ctx.pointwise(f"layers.{layer}.attn_residual", (x, h), 1.0, layer)
    h = ctx.norm(f"layers.{layer}.mlp_norm", x, layer)
    h = mlp.lower(ctx, h, layer)
    return ctx.pointwise(f"layers.{layer}.mlp_residual", (x, h), 1.0, layer)


def _head(ctx: LoweringContext, x: Tensor) -> Tensor:
    """Final norm and LM head. Serving engines compute logits only for each sequence's last
    position, so the head runs on ``batch`` rows, not every prompt token."""
    spec = ctx.spec
    x = ctx.norm("final_norm", x, None)
    tied = ctx.graph.weights()["embed.weight"] if spec.tied_embeddings else None
    # A tied head reuses the embedding table (same tensor name, so it is counted once).
    head_name = tied.name if tied is not None else "lm_head.weight"
    head_weight = ctx.weight(head_name, spec.hidden_size, spec.vocab_size)
    return ctx.linear("lm_head", x, spec.vocab_size, None, weight=head_weight, rows=ctx.workload.batch)
