"""Tensor parallelism (Megatron-LM, Shoeybi et al. 2019), 1-D or on a 2-D grid (``tp2d``).

Each op's role says how it splits:

* column roles (qkv, q_b, kv_b, gate_up, shared_up, in_proj, dt_proj, lora_up, lm_head): a
  weight matmul whose input is whole on every rank splits by output columns; the QKV projection
  keeps whole KV heads per rank (replicated past the KV-head count);
* a weight matmul whose input is split (o_proj, down, shared_down, out_proj, x_proj, ...) splits
  by rows and all-reduces its partial sums;
* per-head roles (MLA's q_absorb / v_absorb, RG-LRU's block-diagonal head_gate): ``count``
  GEMMs, one per head, each with its own weight slice: the heads split (count and the weight
  slice shrink; k and n stay);
* attention splits its heads; KV heads split too, or are replicated when there are fewer KV
  heads than ranks (MLA's latent cache is one such head, on every rank);
* the token embedding is split by vocabulary rows (an all_reduce assembles the rows), the LM
  head by vocabulary columns (an all_gather assembles the logits);
* everything else whose inputs are whole runs whole on every rank (replicas = the ranks): norms,
  residual adds, a router, MLA's q_a / kv_a down-projections, and any role tensor parallelism
  does not know (an imported ``linear``);
* pointwise ops, norms, scans and convolutions on split inputs stay split (per channel).
* Routed experts are left to ``ep`` (expert parallelism over the same chips).

Branches summed into one output (a parallel attention + MLP block; routed plus shared experts)
add their partial sums and all-reduce once, after expert placement (``reductions``).  Batch-sharded
attention (``attention="batch"``, Pope et al. Sec. 3.3): an all_to_all over the y ranks trades
the head split for a split of the sequences, so each chip reads only its sequences' KV cache
instead of a replicated multi-query head.
"""
from __future__ import annotations

import math
from dataclasses import replace

from accelsim.errors import CannotSplitError
from accelsim.graph import (
    Attention,
    Collective,
    Conv,
    Elementwise,
    Embedding,
    Graph,
    MatMul,
    Norm,
    Op,
    Scan,
    Tensor,
)
from accelsim.transform._common import (
    COLUMN_ROLES,
    EXPERT_ROLES,
    PER_HEAD_ROLES,
    copy_graph,
    local_count,
    renamed,
    replicated,
    scaled,
    scaled_axis_of,
    summed,
    weight_of,
)
from accelsim.transform.tp2d import (
    Grid,
    Split,
    check_2d,
    gather_rows,
    local,
    residual_pointwise,
    whole_residuals,
)

# Ops between the QKV projection and attention that keep its column layout.
_QKV_PATH_ROLES = frozenset({"rope", "qk_norm"})


def tensor_parallel(graph: Graph, grid: Grid) -> Graph:
    if grid.ranks == 1:
        return graph
    if grid.x > 1:
        check_2d(graph)
    qkv = _qkv_ratios(graph, grid.y)
    split = Split()
    return copy_graph(graph, (new for op in graph for new in _tp_op(op, grid, split, qkv)))


def local_heads(op: Attention, ranks: int) -> tuple[int, int]:
    if op.heads % ranks:
        raise CannotSplitError(f"the {ranks} ranks that split heads (--tp, or --tp / --tp-x on a 2D "
                            f"grid) must divide the attention heads ({op.heads}) of {op.name}")
    if op.kv_heads % ranks == 0:
        return op.heads // ranks, op.kv_heads // ranks
    if ranks % op.kv_heads == 0:
        return op.heads // ranks, 1  # each KV head replicated on ranks/kv_heads ranks
    raise CannotSplitError(f"the {ranks} ranks that split heads and the {op.kv_heads} KV heads of "
                        f"{op.name} must divide one another")


def _qkv_ratios(graph: Graph, ranks: int) -> dict[str, float]:
    """Column ratio of each fused QKV projection (role qkv): heads and KV heads split apart (KV
    replicated past the KV-head count), found by following attention's query input back through
    RoPE and QK-norm."""
    producer = {t.name: op for op in graph for t in op.outputs}
    ratios: dict[str, float] = {}
    for op in graph:
        if not isinstance(op, Attention):
            continue
        src = producer.get(op.inputs[0].name)
        while src is not None and src.role in _QKV_PATH_ROLES:
            src = producer.get(src.inputs[0].name)
        if src is not None and src.role == "qkv":
            h_local, kv_local = local_heads(op, ranks)
            ratios[src.name] = (h_local + 2 * kv_local) / (op.heads + 2 * op.kv_heads)
    return ratios


def _split_inputs(op: Op, split: Split) -> list[Tensor]:
    return [t for t in op.inputs if t.name in split.ratio]


def _tp_op(op: Op, grid: Grid, split: Split, qkv: dict[str, float]) -> list[Op]:
    if isinstance(op, Collective) or op.role in EXPERT_ROLES:
        return [op]
    if isinstance(op, Embedding):
        return _tp_embedding(op, grid, split)
    if any(t.name in split.residual for t in op.inputs):
        if isinstance(op, (Elementwise, Norm)) and not _split_inputs(op, split):
            return residual_pointwise(op, grid, split)
        if not _takes_residual_as_is(op, split):
            gathers, op = whole_residuals(op, grid, split)
            return gathers + _tp_op(op, grid, split, qkv)
    if isinstance(op, MatMul):
        return _tp_matmul(op, grid, split, qkv)
    inputs = _split_inputs(op, split)
    if not inputs:
        return [replicated(op, grid.ranks)]  # every rank runs it whole
    if isinstance(op, Attention):
        return _tp_attention(op, grid, split)
    if isinstance(op, (Elementwise, Norm, Conv, Scan)):
        return [_tp_pointwise(op, split.ratio[inputs[0].name], split,
                              any(t.name in split.rows_by_x for t in inputs))]
    raise CannotSplitError(f"tensor parallelism cannot split {op.kind} op {op.name} yet; "
                        f"run this model with --tp 1")


def _takes_residual_as_is(op: Op, split: Split) -> bool:
    """A column-split weight matmul reads the x-split residual as it lies (1/x of its K)."""
    return (isinstance(op, MatMul) and weight_of(op) is not None and op.role in COLUMN_ROLES
            and op.inputs[0].name in split.residual)


def _tp_matmul(op: MatMul, grid: Grid, split: Split, qkv: dict[str, float]) -> list[Op]:
    w = weight_of(op)
    a = op.inputs[0]
    if w is None:
        if _split_inputs(op, split):
            raise CannotSplitError(f"tensor parallelism cannot split activation-by-activation "
                                f"matmul {op.name} yet; run this model with --tp 1")
        return [replicated(op, grid.ranks)]
    if op.role in PER_HEAD_ROLES and a.name in split.ratio:
        return [_per_head_parallel(op, w, grid, split)]
    if a.name in split.ratio:
        return _row_parallel(op, w, grid, split)
    if op.role in COLUMN_ROLES:
        return _column_parallel(op, w, grid, split, qkv)
    # A role tensor parallelism does not split (router, MLA's q_a / kv_a, an imported linear):
    # every rank runs it whole.
    return [replicated(op, grid.ranks)]


def _per_head_parallel(op: MatMul, w: Tensor, grid: Grid, split: Split) -> MatMul:
    """``count`` per-head GEMMs whose input arrives split by heads: each rank runs its heads'
    GEMMs against its heads' slice of the weight.  Nothing is summed across ranks, so there is
    no all-reduce; the output stays split by heads."""
    a, y = op.inputs[0], op.outputs[0]
    r = split.ratio[a.name]
    count = local_count(op.count, r)
    if abs(count - op.count * r) > 1e-9:
        raise CannotSplitError(f"the {round(1 / r)} ranks that split heads (--tp) must divide the "
                            f"{op.count} heads of {op.name}")
    # The stacked weight's head (or block) axis: the leading axis of a (heads, k, n) tensor,
    # else the heads x n columns of a (k, heads x n) one (MLA's kv_b holds W_UK and W_UV).
    w_local = scaled(w, r, axis=0 if len(w.shape) == 3 else -1)
    extras = tuple(scaled(t, r) if t.role == "weight" else t for t in op.inputs[2:])
    y_local = scaled(y, r)
    split.ratio[y.name] = r
    if a.name in split.rows_by_x:
        split.rows_by_x.add(y.name)
    rows = math.ceil(op.rows * r) if op.rows is not None else None
    return replace(op, inputs=(local(a, split), w_local, *extras), outputs=(y_local, *op.outputs[1:]),
                   count=count, rows=rows)


def _row_parallel(op: MatMul, w: Tensor, grid: Grid, split: Split) -> list[Op]:
    """Local slice of K (all rows, gathered over x if spread), 1/x of the model width out, and
    the partial sums all-reduced over y."""
    a, y = op.inputs[0], op.outputs[0]
    ops, a_local = gather_rows(a, grid, split, op.name, op.layer)
    k_local = a_local.shape[-1]
    w_local = scaled(scaled(w, k_local / op.k, axis=-2), 1 / grid.x)
    y_local = scaled(y, 1 / grid.x)
    extras = tuple(scaled(t, 1 / grid.x) if t.role == "weight" else t for t in op.inputs[2:])
    body = replace(op, inputs=(a_local, w_local, *extras), outputs=(y_local, *op.outputs[1:]),
                   k=k_local, n=y_local.shape[-1])
    if grid.x > 1:
        split.residual.add(y.name)
    return ops + reduced_over_y(body, grid)


def reduced_over_y(body: Op, grid: Grid) -> list[Op]:
    """``body`` computing partial sums of its output, then their all_reduce over the y ranks."""
    if grid.y == 1:
        return [body]
    y = summed(body.outputs[0])
    partial = renamed(y, f"{y.name}.partial")
    return [replace(body, outputs=(partial, *body.outputs[1:])),
            Collective(f"{body.name}.all_reduce", (partial,), (y,), layer=body.layer,
                       role="collective", pattern="all_reduce", group=grid.y,
                       grid=(grid.x, grid.y), span="y")]


def _column_parallel(op: MatMul, w: Tensor, grid: Grid, split: Split, qkv: dict[str, float]) -> list[Op]:
    """Output columns split over y; on the 2D grid the input is 1/x of the model width, so the
    partial sums are reduce-scattered over x (each chip keeps 1/x of the rows)."""
    a, y = op.inputs[0], op.outputs[0]
    r = qkv.get(op.name, math.ceil(op.n / grid.y) / op.n)
    n_local = local_count(op.n, r)
    a_local, w_local = a, scaled(w, r)
    if a.name in split.residual:
        a_local = scaled(a, 1 / grid.x)
        w_local = scaled(w_local, a_local.shape[-1] / op.k, axis=-2)
    extras = tuple(scaled(t, r) if t.role == "weight" else t for t in op.inputs[2:])
    rest = op.outputs[1:]  # e.g. the latent KV written by a non-absorbed MLA kv_b, whole
    y_cols = scaled(y, r)
    gathered_at_end = op.role == "lm_head"
    ops: list[Op] = []
    if a.name in split.residual:  # sum the x partials, keeping 1/x of the rows
        partial = renamed(summed(y_cols), f"{y.name}.partial")
        r /= grid.x
        y_local = renamed(summed(scaled(y, r)), f"{y.name}.local" if gathered_at_end else y.name)
        ops += [replace(op, inputs=(a_local, w_local, *extras), outputs=(partial, *rest),
                        k=a_local.shape[-1], n=n_local),
                Collective(f"{op.name}.reduce_scatter", (partial,), (y_local,), layer=op.layer,
                           role="collective", pattern="reduce_scatter", group=grid.x,
                           grid=(grid.x, grid.y), span="x")]
        split.rows_by_x.add(y.name)
    else:
        y_local = renamed(y_cols, f"{y.name}.local" if gathered_at_end else y.name)
        ops.append(replace(op, inputs=(a_local, w_local, *extras), outputs=(y_local, *rest), n=n_local))
    if op.name in qkv:  # K/V columns copied on the ranks past the KV-head count
        ops = [replace(o, replicas=max(1.0, qkv[op.name] * grid.y)) if o.role == "qkv" else o for o in ops]
    split.ratio[y.name] = r
    if gathered_at_end:  # the graph's output (the LM head's logits): gather the slices
        ops.append(Collective(f"{op.name}.all_gather", (y_local,), (y,), layer=op.layer,
                              role="collective", pattern="all_gather", group=grid.ranks,
                              grid=(grid.x, grid.y), span="all"))
    return ops


def _tp_attention(op: Attention, grid: Grid, split: Split) -> list[Op]:
    """Heads split over y; on a 2D grid the sequences split over x when the batch allows, else
    the rows are gathered back and every x rank runs its heads whole.

    Batch-sharded attention (Pope et al. 2022, Sec. 3.3): the y ranks exchange queries
    (all_to_all over f = gcd(local sequences, y) of them) so each holds every head of 1/f of the
    sequences, and with them 1/f of the KV cache; the outputs go back the same way.  With few
    KV heads (multi-query) this is what stops each chip reading the whole replicated cache."""
    ops: list[Op] = []
    qkv_in, out = op.inputs[0], op.outputs[0]
    by_x = qkv_in.name in split.rows_by_x and op.batch % grid.x == 0
    if by_x:
        qkv_local = local(qkv_in, split)
    else:
        ops, qkv_local = gather_rows(qkv_in, grid, split, op.name, op.layer)
    seq = 1 / grid.x if by_x else 1.0
    batch = op.batch // grid.x if by_x else op.batch
    f = math.gcd(batch, grid.y) if grid.attention_by_batch else 1
    h_y = local_heads(op, grid.y)[0]
    h_local, kv_local = local_heads(op, grid.y // f)
    width = op.heads + 2 * op.kv_heads

    def kv(t: Tensor) -> Tensor:
        if t.role == "weight":  # per-query-head values (attention sinks): the local heads' share
            return scaled(t, h_local / op.heads)
        share = scaled_axis_of(t, op.kv_heads, kv_local / op.kv_heads)
        return scaled(share, seq / f, axis=0) if t.role == "kv_cache" else share

    head_ratio = h_y / op.heads * seq  # the output as the row-split projection reads it
    attn_out = scaled(out, head_ratio)
    if f > 1:  # only the queries move: every y rank already holds its sequences' K and V
        q_sent = renamed(scaled(qkv_in, seq * h_y / width), f"{qkv_in.name}.q")
        qkv_local = renamed(scaled(qkv_in, seq / f * (h_local + 2 * kv_local) / width),
                            f"{qkv_in.name}.by_batch")
        ops.append(Collective(f"{op.name}.to_batch", (q_sent,), (qkv_local,), layer=op.layer,
                              role="collective", pattern="all_to_all", group=f,
                              grid=(grid.x, grid.y), span="y"))
        attn_out = renamed(scaled(out, seq / f * h_local / op.heads), f"{out.name}.by_batch")
    # The x ranks that do not split the sequences run the same heads of the same sequences;
    # the y ranks run different query heads (their FLOPs are split) even where fewer KV heads
    # than ranks leave them reading the same, replicated KV cache (visible in its shapes).
    copies = 1 if by_x else grid.x
    inputs = (qkv_local, *(kv(t) for t in op.inputs[1:]))
    outputs = (attn_out, *(kv(t) for t in op.outputs[1:]))
    ops.append(replace(op, inputs=inputs, outputs=outputs, heads=h_local, kv_heads=kv_local,
                       batch=batch // f, replicas=copies))
    if f > 1:
        ops.append(Collective(f"{op.name}.to_heads", (attn_out,), (scaled(out, head_ratio),),
                              layer=op.layer, role="collective", pattern="all_to_all", group=f,
                              grid=(grid.x, grid.y), span="y"))
    split.ratio[out.name] = head_ratio
    if by_x:
        split.rows_by_x.add(out.name)
    return ops


def _tp_pointwise(op: Op, r: float, split: Split, rows_by_x: bool) -> Op:
    """An op applied per channel: its split inputs, per-channel weights, state and outputs all
    keep the local share of their channels; an activation that arrives whole (Mamba's B and C,
    shared by every channel) is read whole."""
    width = op.outputs[0].shape[-1]
    channels = getattr(op, "channels", width)

    def share(t: Tensor) -> Tensor:
        if t.name in split.ratio:
            return local(t, split)
        if t.role == "activation":
            return t
        return scaled_axis_of(t, channels, r)

    inputs = tuple(share(t) for t in op.inputs)
    outputs = tuple(scaled(t, r) if t.role == "activation" else scaled_axis_of(t, channels, r)
                    for t in op.outputs)
    for t in outputs:
        if t.role == "activation":
            split.ratio[t.name] = r
            if rows_by_x:
                split.rows_by_x.add(t.name)
    changes: dict = {"inputs": inputs, "outputs": outputs}
    if isinstance(op, Elementwise):
        changes["elements"] = outputs[0].elements
    elif isinstance(op, Norm):
        # A grouped norm (per head) keeps its group width and runs fewer rows.
        key = "cols" if op.cols == op.inputs[0].shape[-1] else "rows"
        changes[key] = local_count(getattr(op, key), r)
    elif isinstance(op, (Scan, Conv)):
        changes["channels"] = local_count(op.channels, r)
    return replace(op, **changes)


def _tp_embedding(op: Embedding, grid: Grid, split: Split) -> list[Op]:
    """Token embedding split by vocabulary rows over y (and its width over x on the 2D grid); a
    learned position table stays whole."""
    if op.role == "position_embedding":
        return [replicated(op, grid.ranks)]
    table, rest = op.inputs[0], op.inputs[1:]
    y = op.outputs[0]
    y_local = scaled(y, 1 / grid.x)
    local_table = scaled(scaled(table, 1 / grid.y, axis=0), 1 / grid.x)
    if grid.x > 1:
        split.residual.add(y.name)
    # Each rank gathers only the ids that fall in its rows (1/y of them on average) and writes
    # zeros for the rest, which the all-reduce fills in.
    return reduced_over_y(replace(op, inputs=(local_table, *rest), outputs=(y_local,),
                                  dim=y_local.shape[-1], tokens=math.ceil(op.tokens / grid.y)), grid)
