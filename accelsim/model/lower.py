"""``lower(model, workload) -> Graph``: the model's forward step as a dataflow graph."""
from __future__ import annotations

from dataclasses import dataclass, fields

from accelsim.errors import AccelsimError
from accelsim.graph import Deferred, Embedding, Graph, Op, Tensor
from accelsim.model.blocks import FFNS, MIXERS
from accelsim.model.context import LoweringContext
from accelsim.model.spec import LayerKind, ModelSpec
from accelsim.workload import Workload


def lower(model: ModelSpec, workload: Workload, *, deferred: bool = True) -> Graph:
    """The step's graph.  With ``deferred`` (the default) the copied layers are held as counts
    (``Graph.defer``: made when the op list is first asked for); without, every op is made now.
    Both give the same ops (``tests/test_repeat_count.py``)."""
    ctx = LoweringContext(model, workload, Graph(name=f"{model.name} {workload.describe()}",
                                                      batch=workload.batch))
    x = _embed(ctx)
    first: dict[LayerKind, _Layer] = {}
    kinds = model.layer_kinds
    layer = 0
    while layer < len(kinds):
        kind, template = kinds[layer], first.get(kinds[layer])
        if deferred and template is not None and template.repeats:
            # this layer and the next ones of the same kind: one part, copied when asked for
            end = layer + 1
            while end < len(kinds) and kinds[end] == kind:
                end += 1
            part = _LayerCopies(template, range(layer, end), x)
            ctx.graph.defer(part, list(range(template.start, template.start + len(template.ops))) * (end - layer))
            x, layer = part.out, end
            continue
        x = _repeated_layer(ctx, x, layer, kind, first)
        layer += 1
    _head(ctx, x)
    return ctx.graph


@dataclass
class _Layer:
    """The first layer of a kind as lowered: its index, input, ops and output.  ``repeats`` is
    None until a second layer of the kind has been lowered and compared with this one renamed,
    then whether later layers of the kind may be copied from it."""

    layer: int
    x: Tensor
    ops: list[Op]
    out: Tensor
    start: int  # index of its first op in the graph
    repeats: bool | None = None
    recipe: _Recipe | None = None


def _repeated_layer(ctx: LoweringContext, x: Tensor, layer: int, kind: LayerKind,
                    first: dict[LayerKind, _Layer]) -> Tensor:
    """Layer ``layer``: lowered, or copied from the first layer of its kind under new names.

    A decoder layer's ops depend on its index only through their names and ``layer`` fields
    (the blocks read the layer kind, never the index), so the 32 identical layers of an 8B
    model are lowered once and copied: the copies are equal, field by field, to what lowering
    each would give.  That is checked, not assumed: the second layer of each kind is lowered in
    full and compared with the first one renamed, and only when they are equal are the rest
    copied (a kind whose layers differ otherwise is lowered layer by layer; ``lower`` may hold
    the copies as counts instead, ``_LayerCopies``)."""
    template = first.get(kind)
    if template is not None and template.repeats:
        ops, out = _renamed_layer(template, layer, x)
        ctx.graph.extend(ops, range(template.start, template.start + len(ops)))
        return out
    start = len(ctx.graph.ops)
    out = _decoder_layer(ctx, x, layer, kind)
    if template is None:
        ops = ctx.graph.ops[start:]
        for op in ops:  # sized once here, the copies inherit the sizes
            for t in (*op.inputs, *op.outputs):
                t.nbytes  # noqa: B018 (computes and keeps it)
        first[kind] = _Layer(layer, x, ops, out, start)
    elif template.repeats is None:
        template.repeats = _equals_renamed(template, layer, x, ctx.graph.ops[start:], out)
        if template.repeats:  # shown equal to the first renamed: marked as its copies, as later layers are
            ctx.graph.mark_copies(start, range(template.start, template.start + len(template.ops)))
    return out


def _renamed_layer(template: _Layer, layer: int, x: Tensor, out: Tensor | None = None
                   ) -> tuple[list[Op], Tensor]:
    """``template``'s ops and output for layer ``layer`` reading ``x``: names under
    ``layers.<template>.`` moved to ``layers.<layer>.``, the template's input replaced by ``x``'s
    name, tensors shared with other layers (none of the layer's own) kept.  Copies keep their
    originals' computed sizes (``Tensor.nbytes``) and the sharing of tensor objects among ops.
    ``out``: the output tensor already made for it (``_LayerCopies``), used as the output."""
    recipe = template.recipe or _recipe(template)
    new = f"layers.{layer}."
    tensors: list[Tensor] = []
    for t, mode, rest in recipe.tensors:
        if mode == _KEEP:
            tensors.append(t)
            continue
        tensors.append(_renamed_tensor(t, x.name if mode == _INPUT else new + rest))
    if out is not None:
        tensors[recipe.out] = out
    ops: list[Op] = []
    for op, suffix, own_layer, ins, outs in recipe.ops:
        copy = object.__new__(type(op))
        fields = copy.__dict__
        fields.update(op.__dict__)
        fields.update(inputs=tuple([tensors[i] for i in ins]), outputs=tuple([tensors[i] for i in outs]))
        if suffix is not None:
            fields["name"] = new + suffix
        if own_layer:
            fields["layer"] = layer
        ops.append(copy)
    return ops, tensors[recipe.out]


def _equals_renamed(template: _Layer, layer: int, x: Tensor, ops: list[Op], out: Tensor) -> bool:
    """``_renamed_layer(template, layer, x) == (ops, out)`` as dataclass equality compares
    them (same class, then each field's ``==``; a tensor's name, shape, format and role), field
    by field against the template and the renaming, without making the copies."""
    recipe = template.recipe or _recipe(template)
    if len(ops) != len(recipe.ops):
        return False
    new = f"layers.{layer}."
    tensors = [(t.name if mode == _KEEP else x.name if mode == _INPUT else new + rest, t.shape, t.dtype, t.role)
               for t, mode, rest in recipe.tensors]

    def same(indices: tuple[int, ...], got: tuple[Tensor, ...]) -> bool:
        return len(indices) == len(got) and all(
            type(g) is Tensor and tensors[i] == (g.name, g.shape, g.dtype, g.role) for i, g in zip(indices, got))

    for (op, suffix, own_layer, ins, outs), made in zip(recipe.ops, ops):
        kind = type(op)
        if type(made) is not kind:
            return False
        mine, theirs = op.__dict__, made.__dict__
        rest = _COMPARED.get(kind)
        if rest is None:
            rest = _COMPARED[kind] = tuple(f.name for f in fields(kind) if f.compare and f.name not in _RENAMED_FIELDS)
        if (theirs["name"] != (new + suffix if suffix is not None else op.name)
                or theirs["layer"] != (layer if own_layer else op.layer)
                or tuple(map(mine.__getitem__, rest)) != tuple(map(theirs.__getitem__, rest))
                or not same(ins, made.inputs) or not same(outs, made.outputs)):
            return False
    return type(out) is Tensor and tensors[recipe.out] == (out.name, out.shape, out.dtype, out.role)


# Each op class's compared fields other than those a renamed copy sets (``_equals_renamed``).
_RENAMED_FIELDS = frozenset(("name", "inputs", "outputs", "layer"))
_COMPARED: dict[type, tuple[str, ...]] = {}


def _renamed_tensor(t: Tensor, name: str) -> Tensor:
    """``t`` under ``name``: a frozen dataclass's copy without re-running __init__, keeping its
    computed sizes."""
    tensor = object.__new__(Tensor)
    tensor.__dict__.update(t.__dict__)
    tensor.__dict__["name"] = name
    return tensor


class _LayerCopies(Deferred):
    """Layers ``layers`` (consecutive, of one kind) as renamed copies of ``template``, the first
    reading ``x``, each the next: held as a count.  Their ops are ``_renamed_layer``'s, layer by
    layer, made when the graph's op list is first asked for; their outputs (each the next
    layer's input, the last the head's) are made now."""

    def __init__(self, template: _Layer, layers: range, x: Tensor) -> None:
        self.per = len(template.ops)
        super().__init__(self.per * len(layers))
        self.template, self.layers = template, layers
        self.recipe = recipe = template.recipe or _recipe(template)
        self.x = x
        self._inputs: list[Tensor] | None = None
        t, mode, rest = recipe.tensors[recipe.out]
        # the last layer's output (the head's input) now; the outputs between, each the next
        # layer's input, only when asked for (``inputs``): one-chip steps never read them
        # (an output named as the input keeps the first layer's input name down the chain)
        self.out = t if mode == _KEEP else _renamed_tensor(t, self._name(t, mode, rest, layers[-1], x))
        # the names depend only on the template's names and the layers: kept across steps
        weights = tuple(recipe.tensors[w][1:] + (recipe.tensors[w][0].name,) for w in recipe.weights)
        self._key = (tuple((op.name, suffix, own, op.layer) for op, suffix, own, _, _ in recipe.ops), weights,
                     layers.start, layers.stop, x.name if any(w[0] == _INPUT for w in weights) else None)

    @property
    def inputs(self) -> list[Tensor]:
        """Each layer's input, then the last one's output (``out``, the very object)."""
        if self._inputs is None:
            t, mode, rest = self.recipe.tensors[self.recipe.out]
            inputs = [self.x]
            for layer in self.layers[:-1]:
                inputs.append(t if mode == _KEEP else _renamed_tensor(t, self._name(t, mode, rest, layer, inputs[-1])))
            self._inputs = [*inputs, self.out]
        return self._inputs

    def _names(self) -> tuple[list[tuple[str, int | None]], list[str]]:
        """Each op's label and each weight's name (``labels``, ``weights``), once per template
        names and layers (a loop over batch sizes and contexts asks for the same ones)."""
        hit = _NAMES.get(self._key)
        if hit is None:
            if len(_NAMES) >= 64:
                _NAMES.pop(next(iter(_NAMES)))
            hit = _NAMES[self._key] = (self._make_labels_now(), self._weight_names())
        return hit

    @staticmethod
    def _name(t: Tensor, mode: int, rest: str, layer: int, x: Tensor) -> str:
        return t.name if mode == _KEEP else x.name if mode == _INPUT else f"layers.{layer}.{rest}"

    def _make(self) -> list[Op]:
        made: list[Op] = []
        for i, layer in enumerate(self.layers):
            made += _renamed_layer(self.template, layer, self.inputs[i], self.inputs[i + 1])[0]
        return made

    def _make_labels(self) -> list[tuple[str, int | None]]:
        return self._names()[0]

    def _make_labels_now(self) -> list[tuple[str, int | None]]:
        labels: list[tuple[str, int | None]] = []
        for layer in self.layers:
            new = f"layers.{layer}."
            labels += [(op.name if suffix is None else new + suffix, layer if own_layer else op.layer)
                       for op, suffix, own_layer, _, _ in self.recipe.ops]
        return labels

    def weights(self) -> list[tuple[str, Tensor]]:
        tensors = [self.recipe.tensors[w][0] for w in self.recipe.weights] * len(self.layers)
        return list(zip(self._names()[1], tensors))

    def _weight_names(self) -> list[str]:
        tensors, name = self.recipe.tensors, self._name
        return [name(*tensors[w], layer, self.inputs[i]) for i, layer in enumerate(self.layers)
                for w in self.recipe.weights]

    def rename(self, name: str, j: int) -> str:
        # the rule ``_recipe`` sorts the template's tensors by, for the layer op ``j`` is in
        i = j // self.per
        old = f"layers.{self.template.layer}."
        if name == self.template.x.name:
            return self.inputs[i].name
        return f"layers.{self.layers[i]}.{name[len(old):]}" if name.startswith(old) else name

    def structure(self) -> tuple:
        # the template's ops are made (their names are in the graph's structure); the renaming
        # follows from its layer and input and the copies'
        return ("layer copies", self.template.start, self.template.layer, self.template.x.name,
                self.layers.start, self.layers.stop, self.x.name)


_KEEP, _INPUT, _RENAMED = 0, 1, 2
# ``_LayerCopies._names`` by template names and layers
_NAMES: dict[tuple, tuple[list[tuple[str, int | None]], list[str]]] = {}


@dataclass(frozen=True)
class _Recipe:
    """How to copy a template layer: its distinct tensor objects in order, each kept, replaced
    by the layer's input or renamed (with the name's part after ``layers.<template>.``); each op
    with its name's part after the prefix (None: kept), whether its ``layer`` is the template's,
    and its operands as indices into the tensors; the output's index."""

    tensors: tuple[tuple[Tensor, int, str], ...]
    ops: tuple[tuple[Op, str | None, bool, tuple[int, ...], tuple[int, ...]], ...]
    out: int
    weights: tuple[int, ...]  # each weight input of each op, in order (indices into the tensors)


def _recipe(template: _Layer) -> _Recipe:
    old, given = f"layers.{template.layer}.", template.x.name
    # the distinct tensor objects in order of first use (each op's inputs, then its outputs;
    # the layer's output last if no op names it), numbered by ``dict``s in one pass each
    seen = [t for op in template.ops for t in (*op.inputs, *op.outputs)]
    seen.append(template.out)
    objects = dict(zip(map(id, seen), seen))  # id -> the tensor, in order of first use
    index = dict(zip(objects, range(len(objects))))
    tensors = tuple((t, _INPUT if t.name == given else _RENAMED if t.name.startswith(old) else _KEEP,
                     t.name[len(old):]) for t in objects.values())
    ref = index.__getitem__
    ops = tuple((op, op.name[len(old):] if op.name.startswith(old) else None, op.layer == template.layer,
                 tuple(map(ref, map(id, op.inputs))), tuple(map(ref, map(id, op.outputs)))) for op in template.ops)
    weights = tuple(i for _, _, _, ins, _ in ops for i in ins if tensors[i][0].role == "weight")
    template.recipe = _Recipe(tensors, ops, index[id(template.out)], weights)
    return template.recipe
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
    # Blocks read ``layer`` only to name ops (``layers.<layer>.``) and set their ``layer``: what
    # a layer computes comes from its kind, which lets ``lower`` copy the layers of a kind
    # (``tests/test_structural_reuse.py`` checks every bundled model against this definition).
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
    tied = ctx.graph.weight_sizes()["embed.weight"] if spec.tied_embeddings else None
    # A tied head reuses the embedding table (same tensor name, so it is counted once).
    head_name = tied.name if tied is not None else "lm_head.weight"
    head_weight = ctx.weight(head_name, spec.hidden_size, spec.vocab_size)
    return ctx.linear("lm_head", x, spec.vocab_size, None, weight=head_weight, rows=rows, block=False,
                      role="lm_head")
