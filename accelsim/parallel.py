"""Multi-chip parallelism as a graph transform: ``shard(graph, parallelism) -> Graph``.

The model lowering knows nothing about chips.  ``shard`` rewrites a lowered graph into the
share of work one chip does, and inserts the ``Collective`` ops that tie the chips together:

* tensor parallelism (Megatron-LM, Shoeybi et al. 2019): a weight matmul whose input is
  whole on every chip is split by output columns (QKV, MLP up); the next weight matmul, whose
  input is then split, is split by rows (o_proj, MLP down) and followed by an ``all_reduce``
  of its partial sums.  Attention splits its heads; KV heads split too, or are replicated
  when there are fewer KV heads than ranks.  The token embedding is split by vocabulary rows
  (each rank looks up its rows, an all_reduce assembles them) and the LM head by vocabulary
  columns (an ``all_gather`` assembles the logits).  Norms and residual adds are replicated.
  A chain is split only when every path from the column-split matmul reaches a consumer that
  accepts a split input (a row-split matmul, attention, or the graph's end), so a small
  projection such as an MoE router stays whole.
* 2D weight-stationary tensor parallelism (Pope et al. 2022, "Efficiently Scaling Transformer
  Inference", Sec. 3.2.2), when ``tp_x > 1``: the tp ranks form a ``tp_x x (tp / tp_x)`` grid.
  Every weight is split both ways, the model width over x and heads / MLP columns over y, so
  each chip still does 1/tp of every matmul but no activation crosses all tp chips at once.
  The residual stream lives split over x along the model width (norms add a small all_reduce
  of their row statistics over x).  A column-split matmul's partial sums are reduce-scattered
  over x (by rows); a row-split matmul first all-gathers those rows over x and then
  all-reduces its partial sums over y.  Per layer each chip sends about 2BLE/x + 2BLF/y bytes
  instead of Megatron's 2 x 2BLE, which is the paper's point at large chip counts.  Attention
  splits its sequences over x when the batch allows, else gathers the rows back and runs on
  each x rank (heads split over y).  Recurrent scans, convolutions and routed experts need
  their rows whole, so a model with them keeps ``tp_x = 1``.
* branches summed into one residual (a parallel attention + MLP block) add their partial sums
  and all-reduce once per layer instead of once per branch (``_merged_reductions``).
* batch-sharded attention (``attention="batch"``, Pope et al. Sec. 3.3), on either layout: an
  all_to_all over the y ranks trades the head split for a split of the sequences, so each chip
  reads only its sequences' KV cache instead of a replicated multi-query head.
* expert parallelism: the stacked expert GEMMs keep 1/ep of the experts per chip, with an
  ``all_to_all`` dispatching routed tokens before them and one combining the results after.
  The non-expert ops are replicated across the EP ranks.
* pipeline parallelism: layers go to ``pp`` contiguous stages (embedding with the first, the
  head with the last), and a ``send`` carries every activation that is live across a stage
  boundary (the residual stream, and anything else crossing it).

Shapes shrink with the split, so FLOPs, bytes and the fit check (``common.footprint``) all see
the per-chip share.  ``stage_graphs`` cuts a sharded graph into one graph per pipeline stage.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Literal

from accelsim.dtypes import reduction_dtype
from accelsim.errors import AccelsimError
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

SEND_PREFIX = "pp.send"
ATTENTION_SHARDING: tuple[str, ...] = ("heads", "batch")


@dataclass(frozen=True)
class Parallelism:
    """How many chips, and how the work is split among them: chips = tp x pp x ep.

    ``tp_x`` > 1 lays the tp ranks out as a 2D weight-stationary grid of tp_x x (tp / tp_x).
    ``attention="batch"`` reshards attention from heads to sequences (Pope et al. Sec. 3.3)."""

    tp: int = 1
    pp: int = 1
    ep: int = 1
    chips: int | None = None
    tp_x: int = 1
    attention: Literal["heads", "batch"] = "heads"

    def __post_init__(self) -> None:
        for name in ("tp", "pp", "ep", "tp_x"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise AccelsimError(f"--{name.replace('_', '-')} must be an integer >= 1, got {value!r}")
        if self.attention not in ATTENTION_SHARDING:
            raise AccelsimError(f"--attention-sharding {self.attention!r} not one of "
                                f"{', '.join(ATTENTION_SHARDING)}")
        if self.tp % self.tp_x:
            raise AccelsimError(f"--tp-x {self.tp_x} must divide --tp {self.tp} (the 2D grid is "
                                f"tp-x x tp/tp-x chips)")
        product = self.tp * self.pp * self.ep
        if self.chips is None:
            object.__setattr__(self, "chips", product)
        elif self.chips != product:
            raise AccelsimError(f"--chips {self.chips} must equal --tp x --pp x --ep "
                                f"({self.tp} x {self.pp} x {self.ep} = {product})")

    @classmethod
    def from_options(cls, chips: int | None = None, tp: int | None = None, pp: int | None = None,
                     ep: int | None = None, tp_x: int | None = None,
                     attention: str | None = None) -> Parallelism | None:
        """From CLI options, where None means 'not given': a lone --chips N becomes tensor
        parallelism over whatever --pp/--ep leave; nothing given means one chip (None)."""
        if chips is None and tp is None and pp is None and ep is None:
            if tp_x not in (None, 1) or attention not in (None, "heads"):
                raise AccelsimError("--tp-x and --attention-sharding lay out tensor-parallel chips; "
                                    "give --tp or --chips too")
            return None
        pp, ep = pp or 1, ep or 1
        if tp is None and chips is not None:
            if chips % (pp * ep):
                raise AccelsimError(f"--chips {chips} is not a multiple of --pp x --ep "
                                    f"({pp} x {ep}); give --tp explicitly")
            tp = chips // (pp * ep)
        return cls(tp=tp or 1, pp=pp, ep=ep, chips=chips, tp_x=tp_x or 1,
                   attention=attention or "heads")

    @property
    def per_stage(self) -> int:
        """Chips that run each pipeline stage side by side."""
        return self.tp * self.ep

    @property
    def tp_y(self) -> int:
        return self.tp // self.tp_x

    def describe(self) -> str:
        grid = f" as {self.tp_x}x{self.tp_y}" if self.tp_x > 1 else ""
        return f"{self.chips} chips (tp={self.tp}{grid} pp={self.pp} ep={self.ep})"

    def to_dict(self) -> dict:
        return {"chips": self.chips, "tp": self.tp, "tp_x": self.tp_x, "pp": self.pp, "ep": self.ep,
                "attention": self.attention}


def shard(graph: Graph, parallelism: Parallelism) -> Graph:
    """One chip's share of ``graph`` (every pipeline stage, joined by sends)."""
    sharded = _merged_reductions(_tensor_parallel(graph, _Grid(parallelism.tp_x, parallelism.tp_y,
                                                                parallelism.attention == "batch")))
    sharded = _expert_parallel(sharded, parallelism.ep)
    sharded = pipeline_sends(sharded, layer_stages(sharded, parallelism.pp))
    sharded.name = f"{graph.name} [{parallelism.describe()}]"
    return sharded


def stage_graphs(graph: Graph) -> list[Graph]:
    """Cut a graph after each pipeline send: one graph per stage, in order."""
    stages = [Graph(name=f"{graph.name} stage 0")]
    for op in graph:
        stages[-1].add(op)
        if isinstance(op, Collective) and op.name.startswith(SEND_PREFIX):
            stages.append(Graph(name=f"{graph.name} stage {len(stages)}"))
    return stages


# --- tensor parallelism --------------------------------------------------------------------

@dataclass(frozen=True)
class _Grid:
    """Tensor-parallel ranks as x (model width) by y (heads, MLP columns); x = 1 is Megatron.
    ``attention_by_batch``: attention trades its head split over y for a sequence split."""

    x: int
    y: int
    attention_by_batch: bool = False

    @property
    def ranks(self) -> int:
        return self.x * self.y


@dataclass
class _Split:
    """What sharding has done to each activation so far (names of the unsharded tensors)."""

    ratio: dict[str, float] = field(default_factory=dict)  # split over the ranks: local share
    rows_by_x: set[str] = field(default_factory=set)  # ... whose share includes 1/x of the rows
    residual: set[str] = field(default_factory=set)  # whole in 1D, model width split over x in 2D


def _scaled(t: Tensor, ratio: float, axis: int = -1) -> Tensor:
    shape = list(t.shape)
    shape[axis] = max(1, math.ceil(shape[axis] * ratio - 1e-9))
    return Tensor(t.name, tuple(shape), t.dtype, t.role)


def _renamed(t: Tensor, name: str) -> Tensor:
    return Tensor(name, t.shape, t.dtype, t.role)


def _summed(t: Tensor) -> Tensor:
    """``t`` as partial sums and their reduction carry it: at least 16 bits."""
    return Tensor(t.name, t.shape, reduction_dtype(t.dtype), t.role)


def _scaled_axis_of(t: Tensor, size: int, ratio: float) -> Tensor:
    """Scale the axis of ``t`` that has ``size`` (the heads or channels axis; the leading batch
    axis is skipped); the last axis when none matches.  Only the element count matters."""
    axis = next((i for i in range(1, len(t.shape)) if t.shape[i] == size), -1)
    return _scaled(t, ratio, axis)


def _weight(op: MatMul) -> Tensor | None:
    return op.inputs[1] if len(op.inputs) > 1 and op.inputs[1].role == "weight" else None


class _Consumers:
    """Who reads each tensor, for looking ahead along a chain."""

    def __init__(self, graph: Graph):
        self.of: dict[str, list[Op]] = defaultdict(list)
        for op in graph:
            for t in op.inputs:
                if t.role != "weight":
                    self.of[t.name].append(op)

    def accepts_split(self, name: str, seen: frozenset[str] = frozenset()) -> bool:
        """Does every path from tensor ``name`` reach a consumer that takes a split input?"""
        consumers = self.of.get(name, [])
        if not consumers:
            return True  # a graph output: gathered at the end
        return all(self._consumer_accepts(op, name, seen) for op in consumers)

    def _consumer_accepts(self, op: Op, name: str, seen: frozenset[str]) -> bool:
        if isinstance(op, MatMul):
            return _weight(op) is not None and op.inputs[0].name == name
        if isinstance(op, Attention):
            return op.inputs[0].name == name
        if isinstance(op, (Elementwise, Norm, Conv, Scan)) and op.name not in seen:
            activations = [t for t in op.inputs if t.role == "activation"]
            if len({t.name for t in activations}) > 1:
                return False  # mixing with a whole tensor (a residual, a router's gates)
            return all(self.accepts_split(t.name, seen | {op.name}) for t in op.outputs
                       if t.role == "activation")
        return False


def _local_heads(op: Attention, ranks: int) -> tuple[int, int]:
    if op.heads % ranks:
        raise AccelsimError(f"the {ranks} ranks that split heads (--tp, or --tp / --tp-x on a 2D "
                            f"grid) must divide the attention heads ({op.heads}) of {op.name}")
    if op.kv_heads % ranks == 0:
        return op.heads // ranks, op.kv_heads // ranks
    if ranks % op.kv_heads == 0:
        return op.heads // ranks, 1  # each KV head replicated on ranks/kv_heads ranks
    raise AccelsimError(f"the {ranks} ranks that split heads and the {op.kv_heads} KV heads of "
                        f"{op.name} must divide one another")


def _qkv_widths(graph: Graph, ranks: int) -> dict[str, float]:
    """Column ratio for each matmul that feeds attention: heads and KV heads split apart (KV
    replicated past the KV-head count), traced back through pointwise ops and norms."""
    producer = {t.name: op for op in graph for t in op.outputs}
    ratios: dict[str, float] = {}
    for op in graph:
        if not isinstance(op, Attention):
            continue
        h_local, kv_local = _local_heads(op, ranks)
        src = producer.get(op.inputs[0].name)
        while isinstance(src, (Elementwise, Norm)):
            src = producer.get(src.inputs[0].name)
        if isinstance(src, MatMul) and src.n == (op.heads + 2 * op.kv_heads) * op.qk_dim:
            ratios[src.name] = (h_local + 2 * kv_local) / (op.heads + 2 * op.kv_heads)
    return ratios


def _check_2d(graph: Graph) -> None:
    for op in graph:
        if isinstance(op, (Scan, Conv)) or is_expert_matmul(op):
            raise AccelsimError(f"--tp-x > 1 (the 2D weight-stationary layout) splits rows over x, "
                                f"which {op.kind} op {op.name} cannot take; run this model with "
                                f"--tp-x 1")


def _tensor_parallel(graph: Graph, grid: _Grid) -> Graph:
    out = Graph(name=graph.name)
    if grid.ranks == 1:
        for op in graph:
            out.add(op)
        return out
    if grid.x > 1:
        _check_2d(graph)
    consumers = _Consumers(graph)
    qkv = _qkv_widths(graph, grid.y)
    split = _Split()
    for op in graph:
        for new in _tp_op(op, grid, split, consumers, qkv):
            out.add(new)
    return out


def _split_inputs(op: Op, split: _Split) -> list[Tensor]:
    return [t for t in op.inputs if t.name in split.ratio]


def _local(t: Tensor, split: _Split) -> Tensor:
    return _scaled(t, split.ratio[t.name])


def _gather_rows(t: Tensor, grid: _Grid, split: _Split, reader: str, layer: int | None
                 ) -> tuple[list[Op], Tensor]:
    """A split tensor with all its rows: all-gathered over x when a reduce-scatter spread them."""
    if t.name not in split.rows_by_x:
        return [], _local(t, split)
    whole_rows = _renamed(_scaled(t, split.ratio[t.name] * grid.x), f"{t.name}.rows")
    return [Collective(f"{reader}.gather_x", (_local(t, split),), (whole_rows,), layer=layer,
                       pattern="all_gather", group=grid.x, grid=(grid.x, grid.y), span="x")], whole_rows


def _whole_residuals(op: Op, grid: _Grid, split: _Split) -> tuple[list[Op], Op]:
    """An op that needs the residual stream whole all-gathers it over x first."""
    gathers: list[Op] = []
    inputs = []
    for t in op.inputs:
        if t.name in split.residual:
            whole = _renamed(t, f"{t.name}.whole")
            gathers.append(Collective(f"{op.name}.{t.name}.gather_x", (_scaled(t, 1 / grid.x),),
                                      (whole,), layer=op.layer, pattern="all_gather", group=grid.x,
                                      grid=(grid.x, grid.y), span="x"))
            t = whole
        inputs.append(t)
    return gathers, replace(op, inputs=tuple(inputs))


def _tp_op(op: Op, grid: _Grid, split: _Split, consumers: _Consumers,
           qkv: dict[str, float]) -> list[Op]:
    if isinstance(op, Collective):
        return [op]
    if isinstance(op, Embedding):
        return _tp_embedding(op, grid, split)
    if any(t.name in split.residual for t in op.inputs):
        if isinstance(op, (Elementwise, Norm)) and not _split_inputs(op, split):
            return _residual_pointwise(op, grid, split)
        if not _takes_residual_as_is(op, split, consumers):
            gathers, op = _whole_residuals(op, grid, split)
            return gathers + _tp_op(op, grid, split, consumers, qkv)
    if isinstance(op, MatMul):
        return _tp_matmul(op, grid, split, consumers, qkv)
    inputs = _split_inputs(op, split)
    if not inputs:
        return [op]  # replicated: every rank runs it whole
    if isinstance(op, Attention):
        return _tp_attention(op, grid, split)
    if isinstance(op, (Elementwise, Norm, Conv, Scan)):
        return [_tp_pointwise(op, split.ratio[inputs[0].name], split,
                              any(t.name in split.rows_by_x for t in inputs))]
    raise AccelsimError(f"tensor parallelism cannot split {op.kind} op {op.name} yet; "
                        f"run this model with --tp 1")


def _takes_residual_as_is(op: Op, split: _Split, consumers: _Consumers) -> bool:
    """A column-split weight matmul reads the x-split residual as it lies (1/x of its K)."""
    return (isinstance(op, MatMul) and _weight(op) is not None and op.inputs[0].name in split.residual
            and consumers.accepts_split(op.outputs[0].name))


def _tp_attention(op: Attention, grid: _Grid, split: _Split) -> list[Op]:
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
        qkv_local = _local(qkv_in, split)
    else:
        ops, qkv_local = _gather_rows(qkv_in, grid, split, op.name, op.layer)
    seq = 1 / grid.x if by_x else 1.0
    batch = op.batch // grid.x if by_x else op.batch
    f = math.gcd(batch, grid.y) if grid.attention_by_batch else 1
    h_y = _local_heads(op, grid.y)[0]
    h_local, kv_local = _local_heads(op, grid.y // f)
    width = op.heads + 2 * op.kv_heads

    def kv(t: Tensor) -> Tensor:
        local = _scaled_axis_of(t, op.kv_heads, kv_local / op.kv_heads)
        return _scaled(local, seq / f, axis=0) if t.role == "kv_cache" else local

    head_ratio = h_y / op.heads * seq  # the output as the row-split projection reads it
    attn_out = _scaled(out, head_ratio)
    if f > 1:  # only the queries move: every y rank already holds its sequences' K and V
        q_sent = _renamed(_scaled(qkv_in, seq * h_y / width), f"{qkv_in.name}.q")
        qkv_local = _renamed(_scaled(qkv_in, seq / f * (h_local + 2 * kv_local) / width),
                             f"{qkv_in.name}.by_batch")
        ops.append(Collective(f"{op.name}.to_batch", (q_sent,), (qkv_local,), layer=op.layer,
                              pattern="all_to_all", group=f, grid=(grid.x, grid.y), span="y"))
        attn_out = _renamed(_scaled(out, seq / f * h_local / op.heads), f"{out.name}.by_batch")
    inputs = (qkv_local, *(kv(t) for t in op.inputs[1:]))
    outputs = (attn_out, *(kv(t) for t in op.outputs[1:]))
    ops.append(replace(op, inputs=inputs, outputs=outputs, heads=h_local, kv_heads=kv_local,
                       batch=batch // f))
    if f > 1:
        ops.append(Collective(f"{op.name}.to_heads", (attn_out,), (_scaled(out, head_ratio),),
                              layer=op.layer, pattern="all_to_all", group=f,
                              grid=(grid.x, grid.y), span="y"))
    split.ratio[out.name] = head_ratio
    if by_x:
        split.rows_by_x.add(out.name)
    return ops


def _tp_pointwise(op: Op, r: float, split: _Split, rows_by_x: bool) -> Op:
    """An op applied per channel: its split inputs, per-channel weights, state and outputs all
    keep the local share of their channels."""
    width = op.outputs[0].shape[-1]
    channels = getattr(op, "channels", width)

    def local(t: Tensor) -> Tensor:
        if t.name in split.ratio:
            return _local(t, split)
        if t.role == "activation":
            return _scaled(t, r)
        return _scaled_axis_of(t, channels, r)

    inputs = tuple(local(t) for t in op.inputs)
    outputs = tuple(_scaled(t, r) if t.role == "activation" else _scaled_axis_of(t, channels, r)
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
        changes[key] = max(1, math.ceil(getattr(op, key) * r - 1e-9))
    else:
        changes["channels"] = max(1, math.ceil(op.channels * r - 1e-9))
    return replace(op, **changes)


def _residual_pointwise(op: Op, grid: _Grid, split: _Split) -> list[Op]:
    """A residual add or a norm on the 2D grid: each chip holds 1/x of the model width.  A
    norm's mean and variance need every column, so it all-reduces one figure per row over x."""
    width = op.outputs[0].shape[-1]

    def local(t: Tensor) -> Tensor:
        return _scaled(t, 1 / grid.x) if t.role == "activation" or t.shape[-1] == width else t

    inputs = tuple(local(t) for t in op.inputs)
    outputs = tuple(local(t) for t in op.outputs)
    split.residual.update(t.name for t in op.outputs if t.role == "activation")
    if isinstance(op, Elementwise):
        return [replace(op, inputs=inputs, outputs=outputs, elements=outputs[0].elements)]
    assert isinstance(op, Norm)
    stats = Tensor(f"{op.name}.stats", (op.rows,), "fp32")
    return [replace(op, inputs=inputs, outputs=outputs, cols=outputs[0].shape[-1]),
            Collective(f"{op.name}.stats.all_reduce", (stats,), (_renamed(stats, f"{stats.name}.sum"),),
                       layer=op.layer, pattern="all_reduce", group=grid.x, grid=(grid.x, grid.y),
                       span="x")]


def _tp_matmul(op: MatMul, grid: _Grid, split: _Split, consumers: _Consumers,
               qkv: dict[str, float]) -> list[Op]:
    w = _weight(op)
    a, y = op.inputs[0], op.outputs[0]
    if w is None:
        if _split_inputs(op, split):
            raise AccelsimError(f"tensor parallelism cannot split activation-by-activation "
                                f"matmul {op.name} yet; run this model with --tp 1")
        return [op]
    if a.name in split.ratio:
        return _row_parallel(op, w, grid, split)
    if not consumers.accepts_split(y.name):
        return [op]  # replicated: a small projection whose consumers need it whole
    return _column_parallel(op, w, grid, split, consumers, qkv)


def _row_parallel(op: MatMul, w: Tensor, grid: _Grid, split: _Split) -> list[Op]:
    """Local slice of K (all rows, gathered over x if spread), 1/x of the model width out, and
    the partial sums all-reduced over y."""
    a, y = op.inputs[0], op.outputs[0]
    ops, a_local = _gather_rows(a, grid, split, op.name, op.layer)
    k_local = a_local.shape[-1]
    w_local = _scaled(_scaled(w, k_local / op.k, axis=-2), 1 / grid.x)
    y_local = _scaled(y, 1 / grid.x)
    extras = tuple(_scaled(t, 1 / grid.x) if t.role == "weight" else t for t in op.inputs[2:])
    body = replace(op, inputs=(a_local, w_local, *extras), outputs=(y_local,),
                   k=k_local, n=y_local.shape[-1])
    if grid.x > 1:
        split.residual.add(y.name)
    return ops + _reduced_over_y(body, grid)


def _reduced_over_y(body: Op, grid: _Grid) -> list[Op]:
    """``body`` computing partial sums of its output, then their all_reduce over the y ranks."""
    if grid.y == 1:
        return [body]
    y = _summed(body.outputs[0])
    partial = _renamed(y, f"{y.name}.partial")
    return [replace(body, outputs=(partial,)),
            Collective(f"{body.name}.all_reduce", (partial,), (y,), layer=body.layer,
                       pattern="all_reduce", group=grid.y, grid=(grid.x, grid.y), span="y")]


def _column_parallel(op: MatMul, w: Tensor, grid: _Grid, split: _Split, consumers: _Consumers,
                     qkv: dict[str, float]) -> list[Op]:
    """Output columns split over y; on the 2D grid the input is 1/x of the model width, so the
    partial sums are reduce-scattered over x (each chip keeps 1/x of the rows)."""
    a, y = op.inputs[0], op.outputs[0]
    r = qkv.get(op.name, math.ceil(op.n / grid.y) / op.n)
    n_local = max(1, math.ceil(op.n * r - 1e-9))
    a_local, w_local = a, _scaled(w, r)
    if a.name in split.residual:
        a_local = _scaled(a, 1 / grid.x)
        w_local = _scaled(w_local, a_local.shape[-1] / op.k, axis=-2)
    extras = tuple(_scaled(t, r) if t.role == "weight" else t for t in op.inputs[2:])
    y_cols = _scaled(y, r)
    gathered_at_end = not consumers.of.get(y.name)
    ops: list[Op] = []
    if a.name in split.residual:  # sum the x partials, keeping 1/x of the rows
        partial = _renamed(_summed(y_cols), f"{y.name}.partial")
        r /= grid.x
        y_local = _renamed(_summed(_scaled(y, r)), f"{y.name}.local" if gathered_at_end else y.name)
        ops += [replace(op, inputs=(a_local, w_local, *extras), outputs=(partial,),
                        k=a_local.shape[-1], n=n_local),
                Collective(f"{op.name}.reduce_scatter", (partial,), (y_local,), layer=op.layer,
                           pattern="reduce_scatter", group=grid.x, grid=(grid.x, grid.y), span="x")]
        split.rows_by_x.add(y.name)
    else:
        y_local = _renamed(y_cols, f"{y.name}.local" if gathered_at_end else y.name)
        ops.append(replace(op, inputs=(a_local, w_local, *extras), outputs=(y_local,), n=n_local))
    split.ratio[y.name] = r
    if gathered_at_end:  # the graph's output (the LM head's logits): gather the slices
        ops.append(Collective(f"{op.name}.all_gather", (y_local,), (y,), layer=op.layer,
                              pattern="all_gather", group=grid.ranks, grid=(grid.x, grid.y),
                              span="all"))
    return ops


def _merged_reductions(graph: Graph) -> Graph:
    """Branches summed into one residual (a parallel attention + MLP block) add their partial
    sums first and all-reduce once, as Megatron and Pope et al. do, instead of once per branch."""
    reduced = {op.outputs[0].name: op for op in graph
               if isinstance(op, Collective) and op.pattern == "all_reduce" and len(op.inputs) == 1}
    readers: dict[str, int] = defaultdict(int)
    for op in graph:
        for t in op.inputs:
            readers[t.name] += 1
    merges: dict[str, list[Collective]] = {}
    for op in graph:
        if not isinstance(op, Elementwise):
            continue
        branches = [reduced[t.name] for t in op.inputs if t.name in reduced and readers[t.name] == 1]
        if len(branches) > 1 and len({c.group for c in branches}) == 1:
            merges[op.name] = branches
    if not merges:
        return graph
    dropped = {c.name for branches in merges.values() for c in branches}
    out = Graph(name=graph.name)
    for op in graph:
        if op.name in dropped:
            continue
        if op.name in merges:
            branches = merges[op.name]
            partials = tuple(c.inputs[0] for c in branches)
            partial_sum = _renamed(partials[0], f"{op.name}.partial_sum")
            total = _renamed(branches[0].outputs[0], f"{op.name}.branch_sum")
            out.add(Elementwise(f"{op.name}.partials", partials, (partial_sum,), layer=op.layer,
                                elements=partial_sum.elements, ops_per_element=len(partials) - 1.0))
            out.add(replace(branches[0], name=f"{op.name}.all_reduce", inputs=(partial_sum,),
                            outputs=(total,), layer=op.layer))  # same group, grid and span
            merged = {c.outputs[0].name for c in branches}
            rest = tuple(t for t in op.inputs if t.name not in merged)
            op = replace(op, inputs=(*rest, total), ops_per_element=float(len(rest)))
        out.add(op)
    return out


def _tp_embedding(op: Embedding, grid: _Grid, split: _Split) -> list[Op]:
    """Token embedding split by vocabulary rows over y (and its width over x on the 2D grid); a
    learned position table (no ids) stays whole."""
    table, rest = op.inputs[0], op.inputs[1:]
    if not any(t.role == "activation" for t in rest):
        return [op]
    y = op.outputs[0]
    y_local = _scaled(y, 1 / grid.x)
    local_table = _scaled(_scaled(table, 1 / grid.y, axis=0), 1 / grid.x)
    if grid.x > 1:
        split.residual.add(y.name)
    return _reduced_over_y(replace(op, inputs=(local_table, *rest), outputs=(y_local,),
                                   dim=y_local.shape[-1]), grid)


# --- expert parallelism --------------------------------------------------------------------

def is_expert_matmul(op: Op) -> bool:
    """Routed-expert GEMMs read a stacked (experts, in, out) weight."""
    if not isinstance(op, MatMul):
        return False
    w = _weight(op)
    return w is not None and len(w.shape) == 3


def _expert_parallel(graph: Graph, ep: int) -> Graph:
    if ep == 1:
        return graph
    out = Graph(name=graph.name)
    expert: set[str] = set()  # tensors that live on the expert side of the all-to-all
    renamed: dict[str, Tensor] = {}
    for op in graph:
        if is_expert_matmul(op):
            out_ops = _ep_matmul(op, ep, expert, renamed)
        elif isinstance(op, Elementwise) and op.inputs and all(
                t.name in expert for t in op.inputs if t.role == "activation"):
            outputs = tuple(_scaled(t, 1 / ep, axis=0) for t in op.outputs)
            expert.update(t.name for t in outputs)
            out_ops = [replace(op, inputs=tuple(renamed.get(t.name, _scaled(t, 1 / ep, axis=0))
                                                for t in op.inputs),
                               outputs=outputs, elements=outputs[0].elements)]
        else:
            out_ops = _combine_inputs(op, ep, expert, renamed)
        for new in out_ops:
            out.add(new)
    return out


def _ep_matmul(op: MatMul, ep: int, expert: set[str], renamed: dict[str, Tensor]) -> list[Op]:
    w = op.inputs[1]
    experts = w.shape[0]
    if experts % ep:
        raise AccelsimError(f"--ep {ep} must divide the {experts} experts of {op.name}")
    a = op.inputs[0]
    ops: list[Op] = []
    if a.name in expert:
        a_local = renamed.get(a.name, _scaled(a, 1 / ep, axis=0))
    else:  # tokens cross to the ranks that hold their experts
        sent = _scaled(a, 1 / ep, axis=0)
        a_local = Tensor(f"{a.name}.dispatched", sent.shape, a.dtype, a.role)
        ops.append(Collective(f"{op.name}.dispatch", (sent,), (a_local,), layer=op.layer,
                              pattern="all_to_all", group=ep))
    y = _scaled(op.outputs[0], 1 / ep, axis=0)
    expert.add(y.name)
    rows = math.ceil(op.rows / ep) if op.rows is not None else None
    ops.append(replace(op, inputs=(a_local, _scaled(w, 1 / ep, axis=0), *op.inputs[2:]),
                       outputs=(y,), count=max(1, math.ceil(op.count / ep)), rows=rows))
    return ops


def _combine_inputs(op: Op, ep: int, expert: set[str], renamed: dict[str, Tensor]) -> list[Op]:
    """A replicated op reading an expert-side tensor first brings the results home."""
    ops: list[Op] = []
    inputs = []
    for t in op.inputs:
        if t.name in expert:
            local = _scaled(t, 1 / ep, axis=0)
            home = Tensor(f"{t.name}.combined", t.shape, t.dtype, t.role)
            if home.name not in renamed:
                ops.append(Collective(f"{t.name}.combine", (local,), (home,), layer=op.layer,
                                      pattern="all_to_all", group=ep))
                renamed[home.name] = home
            inputs.append(home)
        else:
            inputs.append(t)
    ops.append(replace(op, inputs=tuple(inputs)) if ops or inputs != list(op.inputs) else op)
    return ops


# --- pipeline parallelism ------------------------------------------------------------------

def layer_stages(graph: Graph, pp: int) -> list[int]:
    """Stage of each op: layers in ``pp`` contiguous, equal-count runs; ops outside a layer
    (embedding, final norm, head) join the stage of the layer before them (or the first)."""
    layers = sorted({op.layer for op in graph if op.layer is not None})
    if pp > max(1, len(layers)):
        raise AccelsimError(f"--pp {pp} exceeds the model's {len(layers)} layers")
    stage_of = {layer: i * pp // len(layers) for i, layer in enumerate(layers)}
    stages, current = [], 0
    for op in graph:
        if op.layer is not None:
            current = stage_of[op.layer]
        stages.append(current)
    return stages


def pipeline_sends(graph: Graph, stages: list[int], group: int = 2) -> Graph:
    """Insert a send at each stage boundary carrying every activation produced before it and
    read after it.  ``stages`` gives each op's stage and never decreases."""
    produced: dict[str, tuple[int, Tensor]] = {}
    last_read: dict[str, int] = {}
    for op, stage in zip(graph, stages):
        for t in op.inputs:
            if t.role == "activation":
                last_read[t.name] = max(last_read.get(t.name, 0), stage)
        for t in op.outputs:
            if t.role == "activation":
                produced.setdefault(t.name, (stage, t))
    out = Graph(name=graph.name)
    current = stages[0] if stages else 0
    for op, stage in zip(graph, stages):
        while stage > current:
            live = tuple(t for name, (s, t) in produced.items()
                         if s <= current and last_read.get(name, -1) > current)
            received = tuple(Tensor(f"{t.name}@stage{current + 1}", t.shape, t.dtype, t.role)
                             for t in live)
            out.add(Collective(f"{SEND_PREFIX}.{current}", live, received, layer=None,
                               pattern="send", group=group))
            current += 1
        out.add(op)
    return out


# --- pipelines split by bytes (SRAM-only chips) --------------------------------------------

def resident_bytes(graph: Graph) -> list[float]:
    """Bytes each op keeps resident on its chip: its weights plus the KV cache / recurrent
    state it reads and writes, each counted once.  A weight two ops share (a tied embedding and
    LM head, at opposite ends of the pipeline) is counted at each, since each end's chips hold
    their own copy."""
    seen: set[tuple[str, str]] = set()
    sizes = []
    for op in graph:
        size = 0.0
        for t in (*op.inputs, *op.outputs):
            key = (t.name, op.kind if t.role == "weight" else "")
            if t.role in ("weight", "kv_cache", "state") and key not in seen:
                seen.add(key)
                size += t.nbytes
        sizes.append(size)
    return sizes


def _piece(op: Op, lo: float, hi: float, index: int, last: bool) -> Op | None:
    """The [lo, hi) fraction of an op's output columns (matmul, embedding) or sequences
    (attention); None when the op cannot be cut there (it then stays whole)."""
    def cut(t: Tensor, size: int, axis: int) -> Tensor:
        shape = list(t.shape)
        shape[axis] = size
        name = t.name if (last or t.role != "activation" or t not in op.outputs) else f"{t.name}@{index}"
        if t.role == "weight" and not last:
            name = f"{t.name}@{op.kind}{index}"
        return Tensor(name, tuple(shape), t.dtype, t.role)

    if isinstance(op, MatMul) and _weight(op) is not None:
        n = round(hi * op.n) - round(lo * op.n)
        w = op.inputs[1]
        return replace(op, name=f"{op.name}@{index}", n=n,
                       inputs=(op.inputs[0], cut(w, n, -1), *(cut(t, n, -1) for t in op.inputs[2:])),
                       outputs=tuple(cut(t, n, -1) for t in op.outputs)) if n else None
    if isinstance(op, Embedding):
        dim = round(hi * op.dim) - round(lo * op.dim)
        return replace(op, name=f"{op.name}@{index}", dim=dim,
                       inputs=(cut(op.inputs[0], dim, -1), *op.inputs[1:]),
                       outputs=tuple(cut(t, dim, -1) for t in op.outputs)) if dim else None
    if isinstance(op, Attention) and op.batch > 1:
        batch = round(hi * op.batch) - round(lo * op.batch)
        rows = batch * op.q_len
        def part(t: Tensor) -> Tensor:
            return cut(t, batch if t.role == "kv_cache" else rows, 0)
        return replace(op, name=f"{op.name}@{index}", batch=batch,
                       inputs=tuple(part(t) for t in op.inputs),
                       outputs=tuple(part(t) for t in op.outputs)) if batch else None
    if isinstance(op, Attention) and op.kv_heads > 1:
        kv = round(hi * op.kv_heads) - round(lo * op.kv_heads)
        f = kv / op.kv_heads
        def heads_part(t: Tensor) -> Tensor:
            scaled = (_scaled_axis_of(t, op.kv_heads, f) if t.role == "kv_cache" else _scaled(t, f))
            return cut(scaled, scaled.shape[-1], -1)
        return replace(op, name=f"{op.name}@{index}", kv_heads=kv, heads=op.heads // op.kv_heads * kv,
                       inputs=tuple(heads_part(t) for t in op.inputs),
                       outputs=tuple(heads_part(t) for t in op.outputs)) if kv else None
    return None


def byte_stages(graph: Graph, chips: int) -> list[Graph]:
    """Lay the ops end to end by resident bytes and cut the line into ``chips`` equal parts, one
    chip each; an op that straddles a cut is split at it (columns of a matmul or embedding,
    sequences of attention) so every chip holds total/chips bytes.  Sends join the chips."""
    sizes = resident_bytes(graph)
    budget = sum(sizes) / chips if sum(sizes) else 1.0
    pieces: list[Op] = []
    stages: list[int] = []
    position = 0.0
    for op, size in zip(graph, sizes):
        first = min(int(position // budget), chips - 1)
        end = position + size
        last = min(max(first, math.ceil(end / budget) - 1), chips - 1)
        cut = [_piece(op, (max(position, c * budget) - position) / size,
                      (min(end, (c + 1) * budget) - position) / size, c, c == last)
               for c in range(first, last + 1)] if last > first else []
        if cut and all(p is not None for p in cut):
            for chip, p in zip(range(first, last + 1), cut):
                pieces.append(p)
                stages.append(max(chip, stages[-1] if stages else 0))
        else:
            pieces.append(op)
            stages.append(max(first, stages[-1] if stages else 0))
        position = end
    line = Graph(name=graph.name)
    for op in pieces:
        line.add(op)
    return stage_graphs(pipeline_sends(line, stages))
