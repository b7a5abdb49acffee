"""Lower a real ``torch.nn.Module`` and example inputs into accelsim's IR.

Two stages, so each tracer needs only a small front end:
  1. trace: ``torch.export.export`` (ATen ops, shapes from fake tensors, module paths from
     ``nn_module_stack``); if export fails, ``torch.fx.symbolic_trace`` + ``ShapeProp`` with the
     failure kept as ``fallback_reason``.  Both yield ``TracedNode``s whose ``op`` is an ATen
     overload-packet name (``linear``, ``mm``, ``scaled_dot_product_attention``, ``add`` ...).
  2. lower: one pass over the nodes builds MatMul / Attention / Embedding / Norm / Conv / Scan /
     Elementwise ops named after the module path (``layers.0.attn.q_proj``).

What becomes what:
  * views, transposes, dtype casts, repeats and copies are aliases (no op; fused by real
    kernels), so a transposed parameter still feeds a MatMul as its weight;
  * slices keep their source's name with the slice's shape (bytes of the slice only);
  * ops without tensor inputs (``zeros``, ``arange``) are constants: no op;
  * a leaf module made only of pow/mean/add/rsqrt/mul (a hand-written RMSNorm or LayerNorm)
    becomes one Norm;
  * any other op is kept as one zero-FLOP Elementwise (it still reads its inputs and writes
    its outputs: data movement) and counted in ``ImportedGraph.unmapped``.
"""
from __future__ import annotations

import math
import operator
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, cast

from accelsim.dtypes import DTYPES
from accelsim.errors import AccelsimError
from accelsim.graph import (
    Attention,
    Conv,
    Elementwise,
    Embedding,
    Graph,
    MatMul,
    Norm,
    Op,
    Role,
    Scan,
    Tensor,
)

try:
    import torch
    from torch.fx.passes.shape_prop import ShapeProp
except ImportError:  # pragma: no cover - exercised only without the torch extra
    raise AccelsimError("torch import needs PyTorch: pip install 'accelsim[torch]'") from None


# ---------------------------------------------------------------- traced form (tracer-neutral)

@dataclass(frozen=True)
class Meta:
    shape: tuple[int, ...]
    dtype: str  # accelsim dtype; integer and bool tensors (ids, masks) are stored as int8
    floating: bool

    @property
    def elements(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Ref:
    """An argument that is another traced value (a node output or a parameter)."""

    name: str


@dataclass(frozen=True)
class Leaf:
    tensor_name: str
    meta: Meta
    role: Role
    parameter: bool


@dataclass(frozen=True)
class TracedNode:
    name: str
    op: str
    args: tuple
    kwargs: dict
    out: Any  # Meta, tuple of Meta, or None for non-tensor results
    path: str
    call: str  # identifies one invocation of the module at ``path``


@dataclass
class Trace:
    leaves: dict[str, Leaf]
    nodes: list[TracedNode]


@dataclass(frozen=True)
class ImportedGraph:
    graph: Graph
    tracer: str  # "torch.export" or "torch.fx"
    fallback_reason: str | None
    parameter_names: frozenset[str]
    unmapped: dict[str, int]  # torch op -> how many zero-FLOP data-movement ops it became
    notes: tuple[str, ...] = ()

    @property
    def param_count(self) -> int:
        """Elements of the module's parameters the graph reads (buffers excluded)."""
        return sum(t.elements for n, t in self.graph.weights().items() if n in self.parameter_names)


_TORCH_DTYPES = {torch.float32: "fp32", torch.float64: "fp32", torch.bfloat16: "bf16",
                 torch.float16: "fp16", torch.float8_e4m3fn: "fp8", torch.float8_e5m2: "fp8"}


def _meta(value: Any) -> Any:
    shape = getattr(value, "shape", None)  # a fake tensor, or fx's TensorMetadata (a NamedTuple)
    dtype = getattr(value, "dtype", None)
    if shape is None or dtype is None:
        return tuple(_meta(v) for v in value) if isinstance(value, (list, tuple)) else None
    floating = dtype in _TORCH_DTYPES
    return Meta(tuple(int(s) for s in shape), _TORCH_DTYPES.get(dtype, "int8"), floating)


def _refs(value: Any) -> Any:
    if isinstance(value, torch.fx.Node):
        return Ref(value.name)
    if isinstance(value, (list, tuple)):
        return type(value)(_refs(v) for v in value)
    if isinstance(value, dict):
        return {k: _refs(v) for k, v in value.items()}
    return value


def _module_of(node: torch.fx.Node) -> tuple[str, str]:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "", ""
    key, (path, _) = list(stack.items())[-1]
    return str(path), str(key)


# ---------------------------------------------------------------- front end 1: torch.export

def _trace_export(module: torch.nn.Module, args: tuple, kwargs: dict) -> Trace:
    program = torch.export.export(module, args, kwargs=kwargs)
    sig = program.graph_signature
    params = sig.inputs_to_parameters
    others = {**sig.inputs_to_buffers, **sig.inputs_to_lifted_tensor_constants}
    leaves: dict[str, Leaf] = {}
    nodes: list[TracedNode] = []
    for node in program.graph.nodes:
        meta = _meta(node.meta.get("val"))
        if node.op == "placeholder":
            if node.name in params:
                leaves[node.name] = Leaf(params[node.name], meta, "weight", True)
            elif node.name in others:
                leaves[node.name] = Leaf(others[node.name], meta, "weight", False)
            else:
                leaves[node.name] = Leaf(node.name, meta, "activation", False)
        elif node.op == "call_function":
            path, call = _module_of(node)
            nodes.append(TracedNode(node.name, _aten_name(node.target), _refs(node.args),
                                    _refs(dict(node.kwargs)), meta, path, call))
    return Trace(leaves, nodes)


def _aten_name(target: Any) -> str:
    if isinstance(target, torch._ops.OpOverload):
        return target.overloadpacket.__name__
    return _FX_FUNCTIONS.get(target, getattr(target, "__name__", str(target)))


# ---------------------------------------------------------------- front end 2: torch.fx

_FX_FUNCTIONS = {operator.add: "add", operator.iadd: "add", operator.sub: "sub", operator.mul: "mul",
                 operator.imul: "mul", operator.truediv: "div", operator.matmul: "matmul",
                 operator.neg: "neg", operator.getitem: "getitem", operator.pow: "pow"}
_ACTIVATION_MODULES = {"ReLU": "relu", "GELU": "gelu", "SiLU": "silu", "Sigmoid": "sigmoid",
                       "Tanh": "tanh", "Softmax": "softmax", "Dropout": "dropout", "Identity": "alias"}


def _trace_fx(module: torch.nn.Module, args: tuple, kwargs: dict) -> Trace:
    if kwargs:
        raise AccelsimError("the torch.fx fallback takes positional example inputs only")
    gm = torch.fx.symbolic_trace(module)
    ShapeProp(gm).propagate(*args)
    params = dict(gm.named_parameters())
    state = {**dict(gm.named_buffers()), **params}
    leaves: dict[str, Leaf] = {}
    nodes: list[TracedNode] = []

    def param_ref(fqn: str) -> Ref | None:
        if fqn not in state:
            return None
        leaves.setdefault("param:" + fqn, Leaf(fqn, _meta(state[fqn]), "weight", fqn in params))
        return Ref("param:" + fqn)

    for node in gm.graph.nodes:
        meta = _meta(node.meta.get("tensor_meta"))
        if node.op == "placeholder":
            leaves[node.name] = Leaf(node.name, meta, "activation", False)
        elif node.op == "get_attr":
            leaves[node.name] = Leaf(node.target, _meta(state.get(node.target)), "weight",
                                     node.target in params)
        elif node.op == "call_module":
            op, call_args = _fx_module_call(gm.get_submodule(node.target), node, param_ref)
            nodes.append(TracedNode(node.name, op, call_args, {}, meta, node.target, node.name))
        elif node.op in ("call_function", "call_method"):
            path, call = _module_of(node)
            op = node.target if node.op == "call_method" else _aten_name(node.target)
            call_args = _refs(node.args)
            if op == "embedding":  # F.embedding(input, weight) vs aten.embedding(weight, input)
                call_args = (call_args[1], call_args[0], *call_args[2:])
            nodes.append(TracedNode(node.name, op, call_args, _refs(dict(node.kwargs)), meta, path, call))
    return Trace(leaves, nodes)


def _fx_module_call(sub: torch.nn.Module, node: torch.fx.Node, param_ref) -> tuple[str, tuple]:
    """Express a call of a standard torch.nn leaf module as the ATen op it runs."""
    x = _refs(node.args[0])
    p = f"{node.target}."
    kind = type(sub).__name__
    if kind == "Linear":
        return "linear", (x, param_ref(p + "weight"), param_ref(p + "bias"))
    if kind == "Embedding":
        return "embedding", (param_ref(p + "weight"), x)
    if kind == "LayerNorm":
        return "layer_norm", (x, sub.normalized_shape, param_ref(p + "weight"), param_ref(p + "bias"))
    if kind == "RMSNorm":
        return "rms_norm", (x, sub.normalized_shape, param_ref(p + "weight"))
    if kind in ("Conv1d", "Conv2d"):
        return "convolution", (x, param_ref(p + "weight"), param_ref(p + "bias"), sub.stride,
                               sub.padding, sub.dilation, False, (0,), sub.groups)
    if kind in ("GRU", "LSTM"):
        weights = [param_ref(p + n) for n in cast(list[str], sub._flat_weights_names)]
        hx = _refs(node.args[1]) if len(node.args) > 1 else None
        return kind.lower(), (x, hx, weights, sub.bias, sub.num_layers, sub.dropout, False,
                              sub.bidirectional, sub.batch_first)
    return _ACTIVATION_MODULES.get(kind, kind), (x,)


# ---------------------------------------------------------------- lowering to the IR

ALIASES = frozenset({
    "view", "_unsafe_view", "reshape", "transpose", "t", "permute", "contiguous", "unsqueeze",
    "squeeze", "flatten", "unflatten", "expand", "expand_as", "view_as", "alias", "detach", "clone",
    "_to_copy", "to", "type_as", "float", "half", "bfloat16", "lift_fresh_copy", "dropout",
    "repeat", "repeat_interleave", "movedim", "swapaxes", "_assert_tensor_metadata",
})
SLICES = frozenset({"slice", "select", "narrow", "split", "split_with_sizes", "chunk", "unbind",
                    "tensor_split", "getitem"})
MATMULS = frozenset({"linear", "mm", "addmm", "bmm", "baddbmm", "matmul"})
# Arithmetic per output element, counted as in accelsim.model.blocks.mlp: each primitive
# (add, mul, exp, reciprocal ...) is one op; sigmoid = exp, add, reciprocal; SiLU = sigmoid + mul;
# tanh = two exps, add, sub, div; tanh-GELU ~8.
POINTWISE = {
    "add": 1, "sub": 1, "rsub": 1, "mul": 1, "div": 1, "neg": 1, "abs": 1, "pow": 1, "square": 1,
    "sqrt": 1, "rsqrt": 1, "reciprocal": 1, "exp": 1, "log": 1, "sin": 1, "cos": 1, "relu": 1,
    "clamp": 1, "clamp_min": 1, "maximum": 1, "minimum": 1, "where": 1, "masked_fill": 1, "eq": 1,
    "ne": 1, "lt": 1, "gt": 1, "le": 1, "ge": 1, "tril": 1, "triu": 1, "sigmoid": 3, "silu": 4,
    "tanh": 5, "gelu": 8, "softplus": 3, "erf": 4, "addcmul": 2,
}
# Reductions are charged per *input* element; softmax as Attention's online softmax (~5).
REDUCTIONS = {"mean": 1, "sum": 1, "amax": 1, "amin": 1, "max": 1, "min": 1, "var": 3,
              "var_mean": 3, "cumsum": 1, "argmax": 1, "softmax": 5, "_softmax": 5,
              "log_softmax": 5, "_log_softmax": 5, "logsumexp": 5}
NORM_PARTS = frozenset({"pow", "square", "mean", "add", "sub", "rsqrt", "sqrt", "reciprocal", "mul",
                        "div", "var", "var_mean", "getitem"}) | ALIASES
# Per element: RMSNorm square, accumulate, scale by rsqrt, scale by weight; LayerNorm also
# subtracts the mean and adds the bias (same counts as accelsim.model.context.norm).
NORM_OPS = {"rmsnorm": 4.0, "layernorm": 6.0}
# Gate arithmetic per hidden element per step (pointwise counts above): GRU r, z = sigmoid(a+b)
# 4 each, n = tanh(a + r*b) 7, h = (1-z)*n + z*h 4; LSTM i, f, o 4 each, g = tanh(a+b) 6,
# c = f*c + i*g 3, h = o*tanh(c) 6.
RNN_GATES = {"gru": (3, 19.0), "lstm": (4, 27.0)}


@dataclass
class _Draft:
    call: str
    path: str
    short: str
    op: Op


@dataclass
class _Lowerer:
    trace: Trace
    weight_dtype: str | None
    act_dtype: str | None
    values: dict[str, Any] = field(default_factory=dict)
    metas: dict[str, Any] = field(default_factory=dict)
    drafts: list[_Draft] = field(default_factory=list)
    unmapped: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)

    def dtype(self, meta: Meta, role: str) -> str:
        if not meta.floating:
            return meta.dtype
        chosen = self.weight_dtype if role == "weight" else self.act_dtype
        return chosen or meta.dtype

    def make(self, name: str, meta: Meta, role: Role = "activation") -> Tensor:
        return Tensor(name, meta.shape, self.dtype(meta, role), role)

    def __post_init__(self) -> None:
        for ref, leaf in self.trace.leaves.items():
            if leaf.meta is not None:
                self.values[ref] = self.make(leaf.tensor_name, leaf.meta, leaf.role)
                self.metas[ref] = leaf.meta

    # -- helpers over arguments
    def tensor(self, arg: Any) -> Tensor | None:
        value = self.values.get(arg.name) if isinstance(arg, Ref) else None
        return value if isinstance(value, Tensor) else None

    def operand(self, arg: Any, node: TracedNode) -> Tensor:
        """A tensor operand the op cannot do without."""
        value = self.tensor(arg)
        if value is None:
            raise AccelsimError(f"{node.name}: {node.op} expects a tensor operand, got {arg!r}")
        return value

    def meta(self, arg: Any) -> Meta:
        return self.metas[arg.name]

    def tensors_in(self, args: Iterable[Any]) -> list[Tensor]:
        found: list[Tensor] = []
        for a in args:
            if isinstance(a, (list, tuple)):
                found.extend(self.tensors_in(a))
            elif isinstance(a, dict):
                found.extend(self.tensors_in(a.values()))
            elif (t := self.tensor(a)) is not None and t not in found:
                found.append(t)
        return found

    def outputs(self, node: TracedNode) -> tuple[Tensor, ...]:
        if isinstance(node.out, tuple):
            return tuple(self.make(f"{node.name}.{i}", m) for i, m in enumerate(node.out) if m is not None)
        return (self.make(node.name, node.out),)

    def emit(self, node: TracedNode, op: Op, short: str | None = None) -> None:
        self.drafts.append(_Draft(node.call, node.path, short or node.op, op))

    def bind(self, node: TracedNode, value: Any) -> None:
        self.values[node.name] = value
        self.metas[node.name] = node.out

    # -- the pass
    def run(self) -> None:
        nodes = self.trace.nodes
        i = 0
        while i < len(nodes):
            j = i
            while j + 1 < len(nodes) and nodes[j + 1].call == nodes[i].call:
                j += 1
            run = nodes[i:j + 1]
            if not self.norm_module(run):
                for node in run:
                    self.lower(node)
            i = j + 1

    def lower(self, node: TracedNode) -> None:
        op = node.op
        if node.out is None:
            self.bind(node, None)
            return
        if op in ALIASES:
            self.bind(node, self.tensor(node.args[0]))
            return
        if op in SLICES:
            self.bind(node, self.slice(node))
            return
        inputs = self.tensors_in((node.args, node.kwargs))
        if not inputs:  # a constant (zeros, arange, full): materialised once, not per step
            self.bind(node, self.outputs(node)[0] if isinstance(node.out, Meta) else self.outputs(node))
            return
        handler = _HANDLERS.get(op)
        if handler is not None:
            handler(self, node)
            return
        outs = self.outputs(node)
        if op in POINTWISE or op in REDUCTIONS:
            elements = max(t.elements for t in (*inputs, *outs)) if op in REDUCTIONS else outs[0].elements
            ops = float(POINTWISE.get(op) or REDUCTIONS[op])
        else:
            self.unmapped[op] += 1
            elements, ops = outs[0].elements, 0.0
        self.emit(node, Elementwise("", tuple(inputs), outs, elements=elements, ops_per_element=ops))
        self.bind(node, outs[0] if isinstance(node.out, Meta) else outs)

    def slice(self, node: TracedNode) -> Any:
        source_ref = node.args[0]
        source = self.values.get(source_ref.name) if isinstance(source_ref, Ref) else None
        if isinstance(source, tuple):  # getitem on a multi-output op
            return source[node.args[1]]
        if source is None or source.role == "weight":
            return source  # a weight slice stays the whole weight, so it is counted once

        def piece(meta: Meta) -> Tensor:
            return Tensor(source.name, meta.shape, source.dtype, source.role)
        if isinstance(node.out, tuple):
            return tuple(piece(m) for m in node.out)
        return piece(node.out)

    def norm_module(self, run: list[TracedNode]) -> bool:
        """A module call made only of norm arithmetic (a hand-written RMSNorm/LayerNorm)."""
        ops = {n.op for n in run}
        if not run[0].path or not ops <= NORM_PARTS or not ops & {"mean", "var", "var_mean"} \
                or not ops & {"rsqrt", "sqrt"}:
            return False
        own = {n.name for n in run}
        outside = [a for n in run for a in self.tensors_in((n.args, n.kwargs))
                   if a.name not in own]
        acts = [t for t in outside if t.role != "weight"]
        params = tuple(dict.fromkeys(t for t in outside if t.role == "weight"))
        if not acts or not isinstance(run[-1].out, Meta):
            return False
        kind = "layernorm" if ops & {"sub", "var", "var_mean"} else "rmsnorm"
        out = self.make(run[-1].name, run[-1].out)
        cols = run[-1].out.shape[-1]
        rows = run[-1].out.elements // cols
        self.emit(run[-1], Norm("", (acts[0], *params), (out,), rows=rows, cols=cols,
                                ops_per_element=NORM_OPS[kind]), short=kind)
        for n in run:
            self.bind(n, out)
        return True


def _arg(node: TracedNode, index: int, name: str, default: Any = None) -> Any:
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def _matmul(low: _Lowerer, node: TracedNode) -> None:
    op = node.op
    if op in ("addmm", "baddbmm"):
        bias, a, b = node.args[:3]
    else:
        a, b = node.args[:2]
        bias = node.args[2] if op == "linear" and len(node.args) > 2 else node.kwargs.get("bias")
    sa, sb = low.meta(a).shape, low.meta(b).shape
    count = 1
    if op == "linear":
        m, k, n = math.prod(sa[:-1]), sa[-1], (sb[0] if len(sb) == 2 else 1)
    elif len(sb) <= 2:  # mm, addmm, and matmul against a matrix: fold A's leading dims into M
        m, k, n = math.prod(sa[:-1]), sa[-1], (sb[-1] if len(sb) == 2 else 1)
    else:  # batched: broadcast the leading dims
        batch_a, batch_b = sa[:-2], sb[:-2]
        count = math.prod(torch.broadcast_shapes(torch.Size(batch_a), torch.Size(batch_b)))
        m, k, n = (sa[-2] if len(sa) > 1 else 1), sa[-1], sb[-1]
    extra = (t,) if (t := low.tensor(bias)) is not None else ()
    out = low.outputs(node)[0]
    low.emit(node, MatMul("", (low.operand(a, node), low.operand(b, node), *extra), (out,), m=m, k=k, n=n, count=count))
    low.bind(node, out)


def _attention(low: _Lowerer, node: TracedNode) -> None:
    q, k, v = node.args[:3]
    mask = _arg(node, 3, "attn_mask")
    causal = bool(_arg(node, 5, "is_causal", False))
    sq, sk, sv = low.meta(q).shape, low.meta(k).shape, low.meta(v).shape
    heads, kv_heads = (sq[-3], sk[-3]) if len(sq) >= 4 else (1, 1)
    batch = math.prod(sq[:-3]) if len(sq) >= 4 else math.prod(sq[:-2])
    if mask is not None:
        low.notes.append(f"{node.name}: explicit attn_mask costed as full (unmasked) attention")
    if causal and sq[-2] != sk[-2]:
        # torch aligns is_causal top-left; accelsim's Attention counts bottom-right (queries last)
        low.notes.append(f"{node.name}: is_causal with q_len != kv_len counted with queries last")
    out = low.outputs(node)[0]
    low.emit(node, Attention("", (low.operand(q, node), low.operand(k, node), low.operand(v, node)), (out,), batch=batch,
                             heads=heads, kv_heads=kv_heads, q_len=sq[-2], kv_len=sk[-2],
                             qk_dim=sq[-1], v_dim=sv[-1], causal=causal and mask is None))
    low.bind(node, out)


def _embedding(low: _Lowerer, node: TracedNode) -> None:
    table, ids = node.args[:2]
    out = low.outputs(node)[0]
    low.emit(node, Embedding("", (low.operand(table, node), low.operand(ids, node)), (out,),
                             tokens=low.meta(ids).elements, dim=low.meta(table).shape[-1]))
    low.bind(node, out)


def _norm(low: _Lowerer, node: TracedNode) -> None:
    x = low.operand(node.args[0], node)
    cols = math.prod(node.args[1])
    params = [t for a in node.args[2:4] if (t := low.tensor(a)) is not None]
    outs = low.outputs(node)
    kind = "rmsnorm" if node.op == "rms_norm" else "layernorm"
    low.emit(node, Norm("", (x, *params), outs[:1], rows=low.meta(node.args[0]).elements // cols,
                        cols=cols, ops_per_element=NORM_OPS[kind]))
    low.bind(node, outs[0] if isinstance(node.out, Meta) else outs)


def _conv(low: _Lowerer, node: TracedNode) -> None:
    x, w = node.args[:2]
    bias = _arg(node, 2, "bias")
    transposed = node.op == "convolution" and bool(_arg(node, 6, "transposed", False))
    groups = int(_arg(node, 8 if node.op == "convolution" else 6, "groups", 1))
    sx, sw, so = low.meta(x).shape, low.meta(w).shape, node.out.shape
    kernel = math.prod(sw[2:])
    extra = (t,) if (t := low.tensor(bias)) is not None else ()
    inputs = (low.operand(x, node), low.operand(w, node), *extra)
    out = low.outputs(node)[0]
    if not transposed and groups == sx[1] and sw[1] == 1:  # depthwise: one filter per channel
        low.emit(node, Conv("", inputs, (out,), batch=so[0], length=math.prod(so[2:]),
                            channels=so[1], width=kernel))
    else:
        # Dense (grouped) convolution is a GEMM per group over im2col patches; a transposed one
        # multiplies every input position by the whole kernel.
        if transposed:
            m, k, n = sx[0] * math.prod(sx[2:]), sx[1] // groups, sw[1] * kernel
        else:
            m, k, n = so[0] * math.prod(so[2:]), sw[1] * kernel, so[1] // groups
        low.emit(node, MatMul("", inputs, (out,), m=m, k=k, n=n, count=groups))
    low.bind(node, out)


def _rnn(low: _Lowerer, node: TracedNode) -> None:
    """GRU/LSTM: per layer and direction, one input projection over all steps, one small
    recurrent MatMul per step (steps depend on each other, so they are separate ops), and a
    Scan for the gate arithmetic that carries the hidden state."""
    x, _, weights, has_bias, layers, _, _, bidirectional, batch_first = node.args[:9]
    gates, gate_ops = RNN_GATES[node.op]
    sx = low.meta(x).shape
    batch, steps = (sx[0], sx[1]) if batch_first else (sx[1], sx[0])
    per_dir = 4 if has_bias else 2
    dirs = 2 if bidirectional else 1
    layer_in = low.operand(x, node)
    out_meta, hn_meta = node.out[0], node.out[1] if isinstance(node.out[1], Meta) else node.out[1][0]
    y, width = layer_in, sx[-1]  # the aliased tensor may be a transposed view: use traced shapes
    for layer in range(layers):
        ys = []
        for d in range(dirs):
            w = [low.operand(r, node) for r in weights[(layer * dirs + d) * per_dir:][:per_dir]]
            w_ih, w_hh = w[0], w[1]
            b_ih, b_hh = (w[2],) if has_bias else (), (w[3],) if has_bias else ()
            hidden = w_hh.shape[1]
            base = f"{node.name}.l{layer}d{d}"
            act = low.dtype(out_meta, "activation")
            pre = Tensor(f"{base}.ih", (batch, steps, gates * hidden), act)
            low.emit(node, MatMul("", (layer_in, w_ih, *b_ih), (pre,), m=batch * steps,
                                  k=width, n=gates * hidden), short=f"l{layer}d{d}.ih")
            cells = 2 if node.op == "lstm" else 1
            state = Tensor(f"{base}.state", (batch, cells * hidden), act, "state")
            h = state
            for t in range(steps):
                hh = Tensor(f"{base}.hh", (batch, gates * hidden), act)
                low.emit(node, MatMul("", (h, w_hh, *b_hh), (hh,), m=batch, k=hidden,
                                      n=gates * hidden), short=f"l{layer}d{d}.step{t}.hh")
                h = Tensor(f"{base}.h", (batch, hidden), act)
            y = Tensor(f"{base}.y", (batch, steps, hidden), act)
            gathered = Tensor(f"{base}.hh", (batch, steps, gates * hidden), act)
            low.emit(node, Scan("", (pre, gathered, state), (y, Tensor(f"{base}.h", (batch, hidden), act)),
                                batch=batch, steps=steps, channels=hidden, ops_per_step=gate_ops),
                     short=f"l{layer}d{d}.scan")
            ys.append(y)
        width = hidden * dirs
        layer_in = ys[-1] if dirs == 1 else Tensor(f"{node.name}.l{layer}.y", out_meta.shape,
                                                    low.dtype(out_meta, "activation"))
    hn = Tensor(f"{node.name}.l{layers - 1}d{dirs - 1}.h", hn_meta.shape, low.dtype(hn_meta, "activation"))
    low.bind(node, (y if dirs == 1 else layer_in, hn))


_HANDLERS = {
    **dict.fromkeys(MATMULS, _matmul),
    "scaled_dot_product_attention": _attention,
    "embedding": _embedding,
    "layer_norm": _norm, "native_layer_norm": _norm, "rms_norm": _norm,
    "conv1d": _conv, "conv2d": _conv, "convolution": _conv,
    "gru": _rnn, "lstm": _rnn,
}


def _layer_of(path: str) -> int | None:
    """The first integer in the module path: ``layers.3.mlp`` is layer 3."""
    return next((int(p) for p in path.split(".") if p.isdigit()), None)


def _role(op: Op) -> str:
    """An imported op's role, from what the traced kernel is: the module graph does not say
    whether a linear layer is a QKV or an MLP projection, so weight matmuls take the generic
    ``linear`` (transforms replicate it) and pointwise arithmetic ``pointwise``."""
    if isinstance(op, MatMul):
        return "linear" if len(op.inputs) > 1 and op.inputs[1].role == "weight" else "matmul"
    return {Attention: "attention", Norm: "norm", Embedding: "embedding", Conv: "conv",
            Scan: "scan"}.get(type(op), "pointwise")


def _named(drafts: list[_Draft]) -> list[Op]:
    """A module call that lowers to one op gives it its path (``layers.0.attn.q_proj``);
    otherwise ops are ``<path>.<aten op>``, with ``_1``, ``_2`` ... on repeats."""
    per_call = Counter(d.call for d in drafts)
    used: Counter = Counter()
    ops = []
    for d in drafts:
        if d.path and per_call[d.call] == 1:
            base = d.path
        else:
            base = f"{d.path}.{d.short}" if d.path else d.short
        name = base if not used[base] else f"{base}_{used[base]}"
        used[base] += 1
        ops.append(replace(d.op, name=name, layer=_layer_of(d.path), role=_role(d.op)))
    return ops


def import_module(module: torch.nn.Module, example_inputs: tuple, *, example_kwargs: dict | None = None,
                  name: str | None = None, weight_dtype: str | None = None,
                  act_dtype: str | None = None) -> ImportedGraph:
    """Trace ``module`` on ``example_inputs`` (in eval mode) and lower it into a Graph.

    The graph is the one step those inputs describe: ids of shape (batch, prompt) give a
    prefill.  ``weight_dtype``/``act_dtype`` override the traced dtypes (trace in fp32 on CPU,
    simulate in bf16); integer tensors stay int8-sized.
    """
    for label, value in (("weight_dtype", weight_dtype), ("act_dtype", act_dtype)):
        if value is not None and value not in DTYPES:
            raise AccelsimError(f"{label} {value!r} is not a dtype; allowed: {', '.join(DTYPES)}")
    args = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    kwargs = dict(example_kwargs or {})
    was_training = module.training
    module.eval()
    fallback_reason = None
    try:
        try:
            trace, tracer = _trace_export(module, args, kwargs), "torch.export"
        except Exception as err:  # noqa: BLE001 - any export failure falls back to fx, reason kept
            fallback_reason = f"torch.export failed: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            try:
                trace, tracer = _trace_fx(module, args, kwargs), "torch.fx"
            except Exception as fx_err:  # noqa: BLE001
                raise AccelsimError(f"cannot trace {type(module).__name__}: {fallback_reason}; torch.fx "
                                    f"failed too: {type(fx_err).__name__}: {str(fx_err).splitlines()[0] if str(fx_err) else ''}") from None
    finally:
        module.train(was_training)
    low = _Lowerer(trace, weight_dtype, act_dtype)
    low.run()
    graph = Graph(name=name or type(module).__name__)
    for op in _named(low.drafts):
        graph.add(op)
    parameters = frozenset(leaf.tensor_name for leaf in trace.leaves.values() if leaf.parameter)
    return ImportedGraph(graph, tracer, fallback_reason, parameters, dict(low.unmapped), tuple(low.notes))
