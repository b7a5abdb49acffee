"""``lower(model, workload) -> Graph``: the model's forward step as a dataflow graph."""
from __future__ import annotations

from accelsim.errors import AccelsimError
from accelsim.graph import Embedding, Graph, Tensor
from accelsim.model.blocks import FFNS, MIXERS
from accelsim.model.context import LoweringContext
from accelsim.model.spec import LayerKind, ModelSpec
from accelsim.workload import Workload


def lower(model: ModelSpec, workload: Workload) -> Graph:
    ctx = LoweringContext(model, workload, Graph(name=f"{model.name} {workload.describe()}",
                                                      batch=workload.batch))
    x = _embed(ctx)
    for layer, kind in enumerate(model.layer_kinds):
        x = _decoder_layer(ctx, x, layer, kind)
    _head(ctx, x)
    return ctx.graph


def lower_mtp(model: ModelSpec, workload: Workload, depth: int = 0) -> Graph:
    """One step of the model's multi-token-prediction module ``depth`` (DeepSeek-V3 Sec. 2.2)
    alone: the draft step of speculative decoding with ``--spec-decode mtp``.  It reads the main
    model's last hidden state (an input here, produced by the verify step) and the embedding of
    the token just predicted, RMS-normalises both, projects their concatenation back to the
    model width (role ``mtp``), runs one decoder layer of the main model's last layer kind
    (layer index num_layers + depth, with its own KV cache) and the shared LM head.  The
    embedding table and the head are the main model's own tensors (same names)."""
    mtp = model.mtp
    if mtp is None:
        raise AccelsimError(f"model '{model.name}' has no multi-token-prediction module "
                            f"('mtp:' section); draft with a catalogue model instead")
    if not 0 <= depth < mtp.num_layers:
        raise AccelsimError(f"MTP depth {depth} is not one of 0..{mtp.num_layers - 1}")
    layer = model.num_layers + depth
    ctx = LoweringContext(model, workload, Graph(name=f"{model.name} mtp {workload.describe()}",
                                                      batch=workload.batch))
    d, tokens, p = model.hidden_size, ctx.tokens, f"layers.{layer}"
    ids = Tensor(f"{p}.input_ids", (tokens,), "int8", "activation")
    table = ctx.weight("embed.weight", model.vocab_size, d)
    e = ctx.add(Embedding(f"{p}.embed", (table, ids), (ctx.activation(f"{p}.embed.out", tokens, d),),
                          role="embedding", tokens=tokens, dim=d))
    e = ctx.norm(f"{p}.enorm", e, layer, kind="rmsnorm")
    h = ctx.norm(f"{p}.hnorm", ctx.activation(f"{p}.hidden", tokens, d), layer, kind="rmsnorm")
    joined = ctx.pointwise(f"{p}.concat", (e, h), 0.0, layer, shape=(tokens, 2 * d), role="mtp")
    x = ctx.linear(f"{p}.eh_proj", joined, d, layer, role="mtp", block=False)
    x = _decoder_layer(ctx, x, layer, model.layer_kinds[-1])
    _head(ctx, x, f"{p}.shared_head.norm")
    return ctx.graph


def _embed(ctx: LoweringContext) -> Tensor:
    spec, tokens = ctx.spec, ctx.tokens
    ids = Tensor("input_ids", (tokens,), "int8", "activation")  # storage of ids is negligible
    table = ctx.weight("embed.weight", spec.vocab_size, spec.hidden_size)
    x = ctx.add(Embedding("embed", (table, ids), (ctx.activation("embed.out", tokens, spec.hidden_size),),
                          role="embedding", tokens=tokens, dim=spec.hidden_size))
    if spec.position == "learned":
        pos_table = ctx.weight("embed_positions.weight", spec.learned_positions, spec.hidden_size)
        pos = ctx.add(Embedding("embed_positions", (pos_table,),
                                (ctx.activation("embed_positions.out", tokens, spec.hidden_size),),
                                role="position_embedding",
                                tokens=ctx.workload.query_len, dim=spec.hidden_size))
        x = ctx.pointwise("embed.add_positions", (x, pos), 1.0, None, role="position_embedding")
    if spec.embed_norm:
        x = ctx.norm("embed_norm", x, None)
    return x


def _residual_block(ctx: LoweringContext, x: Tensor, layer: int, part: str, body) -> Tensor:
    """x + [post_norm](body(pre_norm(x))): Gemma's pre+post placement adds the output norm."""
    h = ctx.norm(f"layers.{layer}.{part}_norm", x, layer)
    h = body(h)
    if ctx.spec.norm_placement == "pre_post":
        h = ctx.norm(f"layers.{layer}.{part}_post_norm", h, layer)
    return ctx.pointwise(f"layers.{layer}.{part}_residual", (x, h), 1.0, layer, role="residual")


def _mixers(ctx: LoweringContext, h: Tensor, layer: int, kind: LayerKind) -> Tensor:
    outs = [MIXERS[m](ctx, h, layer, kind) for m in kind.mixers]
    if len(outs) == 1:
        return outs[0]
    # Parallel hybrids (Falcon-H1) run every mixer on the same normed input and sum the outputs.
    return ctx.pointwise(f"layers.{layer}.mixer_sum", tuple(outs), len(outs) - 1.0, layer, role="residual")


def _decoder_layer(ctx: LoweringContext, x: Tensor, layer: int, kind: LayerKind) -> Tensor:
    # The two residual halves keep the names "attn" and "mlp" whatever the block kinds, so op
    # names (density profiles, hardwired regions, tests) stay stable across families.
    if ctx.spec.block == "parallel" and kind.ffn != "none":
        h = ctx.norm(f"layers.{layer}.attn_norm", x, layer)
        branches = (_mixers(ctx, h, layer, kind), FFNS[kind.ffn](ctx, h, layer))
        return ctx.pointwise(f"layers.{layer}.parallel_residual", (x, *branches), 2.0, layer, role="residual")
    x = _residual_block(ctx, x, layer, "attn", lambda h: _mixers(ctx, h, layer, kind))
    if kind.ffn == "none":
        return x
    return _residual_block(ctx, x, layer, "mlp", lambda h: FFNS[kind.ffn](ctx, h, layer))


def _head(ctx: LoweringContext, x: Tensor, norm: str = "final_norm") -> Tensor:
    """Final norm and LM head. Serving engines compute logits only for each sequence's last
    position in a prefill, so the head runs on ``batch`` rows there, not every prompt token; a
    decode step needs logits at every position it computes (a verify step checks each drafted
    token), one per sequence in an ordinary decode."""
    spec, wl = ctx.spec, ctx.workload
    x = ctx.norm(norm, x, None)
    rows = wl.batch if wl.phase == "prefill" else wl.tokens
    if spec.bitlinear is not None and spec.bitlinear.head:
        return ctx.linear("lm_head", x, spec.vocab_size, None, role="lm_head", rows=rows)
    tied = ctx.graph.weights()["embed.weight"] if spec.tied_embeddings else None
    # A tied head reuses the embedding table (same tensor name, so it is counted once).
    head_name = tied.name if tied is not None else "lm_head.weight"
    head_weight = ctx.weight(head_name, spec.hidden_size, spec.vocab_size)
    return ctx.linear("lm_head", x, spec.vocab_size, None, weight=head_weight, rows=rows, block=False,
                      role="lm_head")
