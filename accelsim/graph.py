"""The dataflow IR: typed ops over tensors, with FLOPs and bytes derived from shapes.

Ops form a closed set of kinds.  Each op names its input and output tensors; the graph links an
op to the ops that produced its inputs (networkx ``DiGraph``).  Nothing here is typed in by
hand: FLOPs, MACs and bytes are properties computed from shapes and dtypes, so a lowering can
only be wrong about shapes, never about arithmetic.
"""
from __future__ import annotations

import math
import operator
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import compress
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar, get_args, overload

from accelsim import dtypes

if TYPE_CHECKING:  # networkx is imported when a DAG is first asked for
    import networkx as nx

Role = Literal["weight", "activation", "kv_cache", "state"]

# What an op is in the model, set by lowering (and by the transforms for the ops they add).
# Transforms (tensor, expert, pipeline parallelism; fusion) read these, never shapes, to tell a
# QKV projection from an MLP up-projection or an expert GEMM.  A closed set: a new block family
# reuses these where it can and adds its own here when it cannot.
OpRole = Literal[
    # embeddings and the residual stream
    "embedding", "position_embedding", "norm", "residual", "quant", "token_shift",
    # attention
    "qkv", "q", "kv", "rope", "qk_norm", "attention", "o_proj",
    # multi-head latent attention: down-projections to the latents, up-projections out of them,
    # W_UK / W_UV folded into per-head matmuls (absorbed) or the latent decompression (kv_b)
    "q_a", "q_b", "kv_a", "kv_b", "q_absorb", "v_absorb",
    # feed-forward: fused gate+up (or a plain up), activation, down
    "gate_up", "act", "down",
    # mixture of experts
    "router", "topk", "dispatch", "expert_up", "expert_act", "expert_down", "combine",
    "shared_up", "shared_act", "shared_down",
    # recurrent / state-space / convolutional mixers: input and output projections, the
    # per-head or block-diagonal gate matmuls (RG-LRU), low-rank paths (RWKV), the x_proj and
    # dt_proj of Mamba-1, pointwise gating, the scan (recurrence, SSD chunks, long convolution)
    # and the short convolution
    "in_proj", "out_proj", "x_proj", "dt_proj", "head_gate", "lora_down", "lora_up", "gate",
    "scan", "conv",
    "lm_head",
    # multi-token prediction (DeepSeek-V3's MTP module): joining the normed hidden state and
    # the next token's embedding, and projecting them back to the model width
    "mtp",
    # generic roles for graphs imported from real modules (torch.export): a weight matmul or a
    # pointwise op of unknown purpose; transforms replicate what they cannot place
    "linear", "matmul", "pointwise",
    # added by transforms
    "collective", "send",
]
OP_ROLES: tuple[str, ...] = get_args(OpRole)
_OP_ROLE_SET = frozenset(OP_ROLES)


_V = TypeVar("_V")


class _kept(Generic[_V]):  # lower case: a decorator, like ``property``
    """A computed attribute of a frozen object, kept in the object's ``__dict__`` when first read
    (a non-data descriptor: later reads find the value there, with no call); copies of the
    ``__dict__`` keep it, so it must follow from fields a copy keeps (a renamed tensor's size)."""

    def __init__(self, compute: Callable[[Any], _V]) -> None:
        self.compute, self.name = compute, compute.__name__

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> _kept[_V]: ...
    @overload
    def __get__(self, obj: object, owner: type | None = None) -> _V: ...

    def __get__(self, obj: object | None, owner: type | None = None) -> _V | _kept[_V]:
        if obj is None:
            return self
        value = obj.__dict__[self.name] = self.compute(obj)
        return value


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: str
    role: Role = "activation"

    # Computed once per (frozen) tensor and kept beside its fields (equality is unchanged): a
    # step reads each tensor's size many times (footprint, activation peak, every mapping),
    # after the first time as a plain attribute.
    @_kept
    def elements(self) -> int:
        return math.prod(self.shape)

    @_kept
    def nbytes(self) -> float:
        return self.elements * dtypes.nbytes(self.dtype)


@dataclass(frozen=True)
class Access:
    """Bytes one op moves for one tensor (a gather touches only some rows of a table)."""

    tensor: Tensor
    nbytes: float


@dataclass(frozen=True)
class Op:
    """Base of every op kind. ``tensor_flops`` run on matrix units, ``vector_flops`` elsewhere.

    ``role`` says what the op is in the model (one of ``OP_ROLES``; lowering sets it on every op,
    "" is left only for ops built by hand).  ``replicas`` counts the chips of a parallel layout
    that run each unit of this op's work, on average (1 when the work is split; tp when every
    tensor-parallel rank runs it whole: norms, residual adds, a router; in between for a fused
    QKV projection whose K/V columns are copied on ranks past the KV-head count while its Q
    columns split).  Attention whose query heads are
    split is not replicated even when its KV heads are fewer than the ranks (MLA's latent cache,
    GQA past the KV-head count): each chip's KV-cache tensors show the copy it holds and reads.
    Attention data parallelism never replicates work (each rank runs its own sequences), though
    each of its ranks reads its own copy of the dense weights.
    """

    kind: ClassVar[str] = "op"
    name: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    layer: int | None = None
    role: str = ""
    replicas: float = 1.0

    def __post_init__(self) -> None:
        if self.role and self.role not in _OP_ROLE_SET:
            raise ValueError(f"op {self.name}: role {self.role!r} is not one of {', '.join(OP_ROLES)}")
        if isinstance(self.replicas, bool) or not isinstance(self.replicas, (int, float)) \
                or not self.replicas >= 1:
            raise ValueError(f"op {self.name}: replicas must be a number >= 1, got {self.replicas!r}")

    @property
    def tensor_flops(self) -> float:
        return 0.0

    @property
    def vector_flops(self) -> float:
        return 0.0

    @property
    def flops(self) -> float:
        return self.tensor_flops + self.vector_flops

    @property
    def macs(self) -> float:
        return self.tensor_flops / 2

    def reads(self) -> tuple[Access, ...]:
        return tuple(Access(t, t.nbytes) for t in self.inputs)

    def writes(self) -> tuple[Access, ...]:
        return tuple(Access(t, t.nbytes) for t in self.outputs)

    def bytes_by_role(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for access in (*self.reads(), *self.writes()):
            totals[access.tensor.role] = totals.get(access.tensor.role, 0.0) + access.nbytes
        return totals

    @property
    def bytes_moved(self) -> float:
        return sum(a.nbytes for a in (*self.reads(), *self.writes()))

    @property
    def dtype(self) -> str:
        return self.outputs[0].dtype


@dataclass(frozen=True)
class MatMul(Op):
    """``count`` independent GEMMs of (m x k) . (k x n). The second input is the B operand."""

    kind: ClassVar[str] = "matmul"
    m: int = 1
    k: int = 1
    n: int = 1
    count: int = 1
    # MoE: the count GEMMs are uneven (``rows`` tokens routed in all, ``m`` the largest share),
    # and only the touched experts' slices of a stacked weight are read (``b_fraction``).
    rows: int | None = None
    b_fraction: float = 1.0

    @property
    def tensor_flops(self) -> float:
        rows = self.rows if self.rows is not None else self.count * self.m
        return 2.0 * rows * self.k * self.n

    def reads(self) -> tuple[Access, ...]:
        accesses = super().reads()
        if self.b_fraction == 1.0:
            return accesses
        # Every weight operand is stacked the same way (a MoE GEMM's per-expert biases too).
        return (accesses[0], *(Access(a.tensor, a.nbytes * self.b_fraction) if a.tensor.role == "weight"
                               else a for a in accesses[1:]))

    @property
    def a_dtype(self) -> str:
        return self.inputs[0].dtype

    @property
    def b_dtype(self) -> str:
        return self.inputs[1].dtype

    @property
    def compute_dtype(self) -> str:
        return dtypes.compute_dtype(self.b_dtype, self.a_dtype)

    @property
    def add_only(self) -> bool:
        """Ternary weights turn every multiply-accumulate into an add or subtract."""
        return self.b_dtype == "ternary"


@dataclass(frozen=True)
class Attention(Op):
    """Scaled-dot-product attention: scores QK^T, softmax, then AV, fused as one op.

    ``pairs`` counts (query, key) pairs actually computed: causal masking and a sliding
    window shrink it; the cost model never charges masked-out blocks as real work.
    """

    kind: ClassVar[str] = "attention"
    batch: int = 1
    heads: int = 1
    kv_heads: int = 1
    q_len: int = 1
    kv_len: int = 1
    qk_dim: int = 64
    v_dim: int = 64
    causal: bool = True
    window: int | None = None

    # kept beside the fields when first read (``_kept``): costing one attention shape reads it
    # through ``tensor_flops``, ``vector_flops`` and ``macs`` about twenty times
    @_kept
    def pairs(self) -> int:
        """Per (sequence, head): sum over queries of the keys each one sees."""
        first_pos = self.kv_len - self.q_len  # position of the first query in the sequence
        total = 0
        # Closed form over query positions p = first_pos .. kv_len-1, each sees min(p+1, W).
        lo, hi = first_pos + 1, self.kv_len
        if not self.causal:
            return self.q_len * (self.kv_len if self.window is None else min(self.kv_len, self.window))
        w = self.window if self.window is not None else hi
        capped_start = max(lo, w)
        uncapped_hi = min(hi, w - 1)
        if uncapped_hi >= lo:
            total += (lo + uncapped_hi) * (uncapped_hi - lo + 1) // 2
        if hi >= capped_start:
            total += w * (hi - capped_start + 1)
        return total

    @property
    def compute_dtype(self) -> str:
        """The datapath QK^T and PV run on: the wider of the queries' format and the cached K/V's
        (an FP8 cache cannot enter an FP4 multiply without being requantised, so FP4 activations
        leave attention at the cache's FP8)."""
        cached = [t.dtype for t in self.inputs if t.role == "kv_cache"]
        return max((self.dtype, *cached), key=dtypes.bits)

    @property
    def tensor_flops(self) -> float:
        return 2.0 * self.batch * self.heads * self.pairs * (self.qk_dim + self.v_dim)

    @property
    def vector_flops(self) -> float:
        # Scale, running max, exp, sum and rescale per score: ~5 ops (FlashAttention's online softmax).
        return 5.0 * self.batch * self.heads * self.pairs


@dataclass(frozen=True)
class Elementwise(Op):
    """Pointwise work on ``elements`` outputs, ``ops_per_element`` arithmetic ops each."""

    kind: ClassVar[str] = "elementwise"
    elements: int = 1
    ops_per_element: float = 1.0

    @property
    def vector_flops(self) -> float:
        return self.elements * self.ops_per_element


@dataclass(frozen=True)
class Norm(Op):
    """RMSNorm / LayerNorm over the last axis of a (rows x cols) activation."""

    kind: ClassVar[str] = "norm"
    rows: int = 1
    cols: int = 1
    ops_per_element: float = 4.0  # square, accumulate, scale by rsqrt, scale by weight

    @property
    def vector_flops(self) -> float:
        return self.rows * self.cols * self.ops_per_element


@dataclass(frozen=True)
class Embedding(Op):
    """Gather ``tokens`` rows of width ``dim`` from a table; only the gathered rows move."""

    kind: ClassVar[str] = "embedding"
    tokens: int = 1
    dim: int = 1

    def reads(self) -> tuple[Access, ...]:
        table = self.inputs[0]
        row_bytes = table.nbytes / table.shape[0]
        return (Access(table, min(self.tokens, table.shape[0]) * row_bytes),
                *(Access(t, t.nbytes) for t in self.inputs[1:]))


@dataclass(frozen=True)
class Scan(Op):
    """A linear recurrence h_t = a_t*h_{t-1} + b_t over ``steps`` steps of ``channels`` state
    elements per sequence; ``ops_per_step`` arithmetic per state element per step."""

    kind: ClassVar[str] = "scan"
    batch: int = 1
    steps: int = 1
    channels: int = 1
    ops_per_step: float = 2.0

    @property
    def vector_flops(self) -> float:
        return self.batch * self.steps * self.channels * self.ops_per_step


@dataclass(frozen=True)
class Conv(Op):
    """Depthwise causal 1-D convolution: ``channels`` filters of ``width`` taps over ``length``."""

    kind: ClassVar[str] = "conv"
    batch: int = 1
    length: int = 1
    channels: int = 1
    width: int = 4

    @property
    def vector_flops(self) -> float:
        return 2.0 * self.batch * self.length * self.channels * self.width


@dataclass(frozen=True)
class Collective(Op):
    """Communication among ``group`` chips; ``pattern`` says which (bytes are per chip).

    Where the group sits, so a torus can tell which of its axes the group spans: ``grid`` is the
    tensor-parallel grid (x, y) the chips belong to and ``span`` which of its ranks form the
    group (``x``: a row, ``y``: a column, ``all``: every rank; a group smaller than that span,
    such as a batch-sharded attention all_to_all over some of the y ranks, is a part of it).
    Without ``grid`` the group is a slice of its own (expert all_to_all, pipeline sends, graphs
    built before the field existed)."""

    kind: ClassVar[str] = "collective"
    pattern: Literal["all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send"] = "all_reduce"
    group: int = 1
    grid: tuple[int, int] | None = None
    span: Literal["x", "y", "all"] = "all"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.grid is not None:
            x, y = self.grid
            spanned = {"x": x, "y": y, "all": x * y}[self.span]
            if self.group < 1 or spanned % self.group:
                raise ValueError(f"collective {self.name}: a group of {self.group} is not part of "
                                 f"the {self.span} ranks ({spanned}) of a {x}x{y} grid")

    @property
    def payload_bytes(self) -> float:
        return sum(t.nbytes for t in self.inputs)

    @property
    def vector_flops(self) -> float:
        if self.pattern in ("all_reduce", "reduce_scatter"):
            return sum(t.elements for t in self.inputs) * (self.group - 1) / self.group
        return 0.0


def firsts(originals: Sequence[int]) -> list[int]:
    """The indices of the ops that copy none, in order (``compress`` over ``o == i``: the
    same list as a comprehension's test per op, without its per-op bytecode)."""
    return list(compress(range(len(originals)), map(operator.eq, originals, range(len(originals)))))


class Deferred(ABC):
    """``count`` consecutive ops of a graph that are made only when the graph's op list is first
    asked for: each a renamed copy of an op made earlier (a decoder layer repeated 32 times, the
    kernels fusion makes of such a layer).  What the one-chip stages read of them is available
    without making them: each op's name and layer (``labels``) and each operand's name and a
    tensor of its shape, format and role (``operand``).  ``ops`` makes them once and keeps them,
    so every graph sharing this part (a step's joined graph) holds the very same op objects."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._made: list[Op] | None = None
        self._labels: list[tuple[str, int | None]] | None = None

    def ops(self) -> list[Op]:
        if self._made is None:
            self._made = self._make()
            if len(self._made) != self.count:
                raise ValueError(f"a deferred part made {len(self._made)} ops, not {self.count}")
        return self._made

    def labels(self) -> list[tuple[str, int | None]]:
        """Each op's (name, layer), in order."""
        if self._labels is None:
            self._labels = self._make_labels()
        return self._labels

    @abstractmethod
    def _make(self) -> list[Op]: ...

    @abstractmethod
    def _make_labels(self) -> list[tuple[str, int | None]]: ...

    @abstractmethod
    def weights(self) -> list[tuple[str, Tensor]]:
        """Each weight an op reads, in op and operand order: its name, and a tensor equal to it
        but for the name (the original's, whose sizes it shares)."""

    @abstractmethod
    def rename(self, name: str, j: int) -> str:
        """The name op ``j``'s copy gives to its original's tensor named ``name``."""

    @abstractmethod
    def structure(self) -> tuple:
        """What, beside the ops made before it, decides every op's class, name, role and operand
        names (so a fusion plan can be keyed without making them)."""


# The set of names of a deferred part's labels, by the labels list: parts keep their labels
# across steps (a loop over batch sizes and contexts holds the same layer copies), so the ~300
# names are hashed into a set once, not on every step.  Each entry holds its list, so an id
# is never another list's while it is kept; the lists are never changed once made.
_NAME_SETS: dict[int, tuple[list[tuple[str, int | None]], frozenset[str]]] = {}


def _name_set(labels: list[tuple[str, int | None]]) -> frozenset[str]:
    hit = _NAME_SETS.get(id(labels))
    if hit is not None and hit[0] is labels:
        return hit[1]
    if len(_NAME_SETS) >= 64:
        _NAME_SETS.clear()
    names = frozenset([name for name, _ in labels])
    _NAME_SETS[id(labels)] = (labels, names)
    return names


class Graph:
    """Ops in a valid execution order plus the producer->consumer dependency graph.

    The dependencies follow from the ops' tensor names alone (an op depends on the last earlier
    op that wrote each tensor it reads), so they are worked out from the op list when first
    asked for (``_edges``, ``dag``): lowering and the transforms build tens of graphs of
    hundreds of ops per step, and only the engine and tests walk the dependencies.

    Repeated layers may be held as a count rather than as ops (``defer``): a part of renamed
    copies made when ``ops`` (or iteration) first asks for them.  Every reader of ``ops`` sees
    the whole graph as if each op had been added; the one-chip stages (fusion, the mapper's
    shape classes, the footprint walks) read a deferred part through ``known``, ``labels``,
    ``originals`` and ``weight_sizes`` instead, and so never make it."""

    def __init__(self, name: str = "graph", ops: Iterable[Op] = (), batch: int | None = None) -> None:
        self.name = name
        # Sequences the step runs (set by lowering; attention data parallelism splits them).
        self.batch = batch
        self._known: list[Op | None] = []  # every op; None where a deferred part is not made yet
        self._deferred: list[tuple[int, Deferred]] = []  # (index of its first op, part), not made yet
        self._parts: list[tuple[int, Deferred]] = []  # every deferred part, made or not
        # op names taken: those of ops added one by one, and each deferred part's set (kept
        # across steps per labels list, ``_name_set``: not copied name by name into one set)
        self._made_names: set[str] = set()
        self._held_names: list[frozenset[str]] = []
        self._dag: nx.DiGraph | None = None
        # Per op, the index of the earlier op it is a renamed copy of (its own index if none): the
        # same class, fields and tensor shapes, dtypes and roles; only names and ``layer`` differ.
        # Lowering marks the layers it copies, fusion the kernels made of copies; what depends on
        # nothing else (an op's activation bytes, its shape key) may be read from the original.
        self._twins: list[int] = []
        # (producers, edges) as ``_links`` finds them, kept until an op is added
        self._linked: tuple[dict[str, str], list[tuple[str, str, str]]] | None = None
        self._labels: list[tuple[str, int | None]] | None = None
        self._first: list[int] = []  # ``firsts``: the ops added as copies of none, kept as they come
        for op in ops:
            self.add(op)

    def __repr__(self) -> str:
        return f"Graph(name={self.name!r}, ops={len(self)}, batch={self.batch!r})"

    @property
    def ops(self) -> list[Op]:
        """Every op in order (deferred parts made now, once)."""
        if self._deferred:
            known = self._known
            for at, part in self._deferred:
                known[at:at + part.count] = part.ops()
            self._deferred = []
        return self._known  # type: ignore[return-value]  # no None is left

    def known(self) -> list[Op | None]:
        """Every op made so far, None in the places of deferred parts not made yet (all of them
        renamed copies of made ops: ``originals`` points each to one)."""
        return self._known

    @property
    def deferred(self) -> bool:
        """Whether some ops are still held as a deferred part."""
        return bool(self._deferred)

    def add(self, op: Op, copy_of: int | None = None) -> Op:
        """Append ``op``; ``copy_of`` is the index of an earlier op it is a renamed copy of."""
        if self._taken(op.name):
            raise ValueError(f"duplicate op name {op.name!r}")
        self._made_names.add(op.name)
        if copy_of is None:
            self._first.append(len(self._known))
            self._twins.append(len(self._known))
        else:
            self._twins.append(self._twins[copy_of])
        self._known.append(op)
        self._dag = self._linked = self._labels = None
        return op

    def extend(self, ops: Sequence[Op], copies: Sequence[int | None]) -> None:
        """``add(ops[k], copies[k])`` for each op in turn (a copied layer, a graph's kernels)."""
        names, twins, own, first = self._made_names, self._twins, self._known, self._first
        held = self._held_names
        for op, copy_of in zip(ops, copies, strict=True):
            name = op.name
            if name in names or (held and self._taken(name)):
                raise ValueError(f"duplicate op name {name!r}")
            names.add(name)
            if copy_of is None:
                first.append(len(own))
                twins.append(len(own))
            else:
                twins.append(twins[copy_of])
            own.append(op)
        self._dag = self._linked = self._labels = None

    def mark_copies(self, start: int, copies: Sequence[int]) -> None:
        """Mark the ops from ``start`` on, added as they are, as renamed copies of the earlier
        ops ``copies`` (as ``add``'s ``copy_of`` would have): for ops shown equal to those
        renamed (lowering's check of a layer against the first of its kind)."""
        if start + len(copies) > len(self._known) or any(c >= start for c in copies):
            raise ValueError("copy marks must point from added ops to earlier ones")
        twins = self._twins
        twins[start:start + len(copies)] = [twins[c] for c in copies]
        self._first = [i for i in self._first if twins[i] == i]

    def defer(self, part: Deferred, copies: Sequence[int]) -> None:
        """Append ``part``'s ops without making them: op ``k`` of it is a renamed copy of the
        earlier op ``copies[k]``, which must be made (its fields, sizes and shape key stand for
        the copy's).  Names are checked as ``add`` checks them."""
        if len(copies) != part.count:
            raise ValueError(f"a deferred part of {part.count} ops given {len(copies)} copy marks")
        twins = self._twins
        sources = list(map(twins.__getitem__, copies))
        if None in map(self._known.__getitem__, set(sources)):
            raise ValueError("a deferred op must copy an op that is made")
        labels = part.labels()
        new = _name_set(labels)
        if (len(new) != len(labels) or not self._made_names.isdisjoint(new)
                or any(not taken.isdisjoint(new) for taken in self._held_names)):  # some name taken, or given twice
            seen = self._names
            for name, _ in labels:
                if name in seen:
                    raise ValueError(f"duplicate op name {name!r}")
                seen.add(name)
        self._held_names.append(new)
        at = len(self._known)
        self._deferred.append((at, part))
        self._parts.append((at, part))
        twins.extend(sources)
        self._known.extend([None] * part.count)
        self._dag = self._linked = self._labels = None

    def _taken(self, name: str) -> bool:
        return name in self._made_names or any(name in taken for taken in self._held_names)

    @property
    def _names(self) -> set[str]:
        """Every op name taken (a new set)."""
        return self._made_names.union(*self._held_names)

    def labels(self) -> list[tuple[str, int | None]]:
        """Each op's (name, layer), deferred ops included, without making them."""
        if self._labels is None:
            labels: list[tuple[str, int | None]] = [(op.name, op.layer) if op is not None else ("", None)
                                                     for op in self._known]
            for at, part in self._parts:
                labels[at:at + part.count] = part.labels()
            self._labels = labels
        return self._labels

    def label_key(self) -> tuple[tuple, list[list[tuple[str, int | None]]]]:
        """A key that decides ``labels()`` without listing them: the made ops' labels between
        the deferred parts, and each part's place, count and kept labels list by identity (parts
        keep one list across steps); and those lists, which whoever keeps the key must hold (so
        no other list takes their ids).  Equal keys, lists held: equal labels."""
        known, done = self._known, 0
        made: list[tuple] = []
        parts: list[tuple[int, int, int]] = []
        lists: list[list[tuple[str, int | None]]] = []
        for at, part in self._parts:  # in order of place
            made.append(tuple([(op.name, op.layer) for op in known[done:at]]))  # type: ignore[union-attr]
            lists.append(part.labels())
            parts.append((at, part.count, id(lists[-1])))
            done = at + part.count
        made.append(tuple([(op.name, op.layer) for op in known[done:]]))  # type: ignore[union-attr]
        return ("parts", tuple(made), tuple(parts)), lists

    def owners(self) -> list[int | None]:
        """Per op, where the deferred part not made yet that holds it starts (None: made)."""
        owners: list[int | None] = [None] * len(self._known)
        for at, part in self._deferred:
            owners[at:at + part.count] = [at] * part.count
        return owners

    def parts(self) -> list[tuple[int, Deferred]]:
        """The deferred parts not made yet: (index of the first op, part)."""
        return list(self._deferred)

    def structure(self) -> tuple:
        """The deferred parts' places and ``Deferred.structure`` (see there)."""
        return tuple((at, part.count, part.structure()) for at, part in self._deferred)

    def copy(self, name: str) -> Graph:
        """The same ops (deferred parts shared, not made) under another name, as adding each
        of them to ``Graph(name)`` gives."""
        out = Graph(name=name)
        out._known, out._deferred, out._parts = list(self._known), list(self._deferred), list(self._parts)
        out._made_names, out._held_names = set(self._made_names), list(self._held_names)
        out._twins, out._first = list(self._twins), list(self._first)
        return out

    @property
    def _producer(self) -> dict[str, str]:
        """Tensor name -> the last op (so far) that writes it."""
        return self._links()[0]

    @property
    def _edges(self) -> list[tuple[str, str, str]]:
        """(producer, consumer, tensor) for each tensor an op reads that an earlier op wrote, in
        op and operand order (what adding the ops one by one and looking each input's producer
        up as it is added gives)."""
        return self._links()[1]

    def _links(self) -> tuple[dict[str, str], list[tuple[str, str, str]]]:
        if self._linked is None:
            producer: dict[str, str] = {}
            edges: list[tuple[str, str, str]] = []
            for op in self.ops:
                for tensor in op.inputs:
                    source = producer.get(tensor.name)
                    if source is not None:
                        edges.append((source, op.name, tensor.name))
                for tensor in op.outputs:
                    producer[tensor.name] = op.name
            self._linked = (producer, edges)
        return self._linked

    def originals(self) -> list[int] | None:
        """Per op, the index of the op it copies (``add``'s ``copy_of``, followed to the
        first), or None when the graph was not built by ``add`` alone."""
        return self._twins if len(self._twins) == len(self._known) else None

    def firsts(self) -> list[int] | None:
        """``firsts(originals())``: the ops that copy none, which walks over the made ops read
        (a copy holds its original's sizes and shape); kept as ops are added (the footprint,
        activation peak and shape classes each ask for it; read, never changed).  None with
        ``originals``."""
        return self._first if self.originals() is not None else None

    @property
    def dag(self) -> nx.DiGraph:
        """The producer -> consumer graph (node attribute ``op``, edge attribute ``tensor``)."""
        if self._dag is None:
            import networkx as nx  # only the engine and tests walk the DAG: a large import kept off the rest
            dag = nx.DiGraph()
            dag.add_nodes_from((op.name, {"op": op}) for op in self.ops)
            for producer, consumer, tensor in self._edges:
                dag.add_edge(producer, consumer, tensor=tensor)
            self._dag = dag
        return self._dag

    def __iter__(self) -> Iterator[Op]:
        return iter(self.ops)

    def __len__(self) -> int:
        return len(self._known)

    def weights(self) -> dict[str, Tensor]:
        """Every distinct weight tensor (a tied embedding appears once)."""
        return {t.name: t for op in self.ops for t in op.inputs if t.role == "weight"}

    def weight_sizes(self) -> dict[str, Tensor]:
        """``weights()``'s names, in the same order, each with a tensor of that weight's size
        (a deferred copy's is its original's): what sums of sizes read, without making ops."""
        if not self._deferred:
            return self.weights()
        found: dict[str, Tensor] = {}
        known, done = self._known, 0
        for at, part in [*self._deferred, (len(known), None)]:  # parts in order of their places
            found.update([(t.name, t) for op in known[done:at] if op is not None
                          for t in op.inputs if t.role == "weight"])
            if part is not None:  # a deferred part's weights, in its ops' order
                found.update(part.weights())
                done = at + part.count
        return found

    @property
    def param_count(self) -> int:
        return sum(t.elements for t in self.weight_sizes().values())

    @property
    def weight_bytes(self) -> float:
        return sum([t.nbytes for t in self.weight_sizes().values()])  # the same sum, over a list

    def total(self, attribute: str, ops: Iterable[Op] | None = None) -> float:
        return float(sum(getattr(op, attribute) for op in (self.ops if ops is None else ops)))

    def predecessors(self, op_name: str) -> list[str]:
        return list(self.dag.predecessors(op_name))
