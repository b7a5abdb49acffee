"""Kernel fusion as a graph transform: ``fuse(graph, policy, unfused) -> Graph``.

The lowering emits one op per mathematical step (RMSNorm, RoPE, residual add, SiLU x mul ...).
Production engines do not launch them one by one: TensorRT-LLM and vLLM run pointwise work in
the epilogue of the GEMM that produced its input (bias/activation/residual epilogues, fused
gated-MLP activation), or in the prologue of the kernel that consumes it (RoPE inside the
attention kernel).  Charging every op its own launch and its own activation round trip makes a
decode step on a GPU launch-bound and pushed the calibrated launch overhead up to absorb it.

Policy ``epilogue``: walking the graph in execution order, a pointwise op (``Elementwise``)
joins the kernel just before it when the tensor between them has no other consumer (an
epilogue); failing that, it joins the kernel just after it when its own output feeds only that
kernel (a prologue).  A ``Norm`` is a row reduction over the hidden dimension, which a GEMM
tiled over that dimension cannot finish in one CTA, so it never joins a GEMM or attention; it
may absorb pointwise neighbours (residual add + RMSNorm in one kernel).  Collectives and
embedding gathers are never fused.  Policy ``none`` returns the graph unchanged.

``unfused`` names pointwise ops a kernel library runs as kernels of their own even under
``epilogue`` (``gpu.unfused``): ``gated_activation``, a gated MLP's activation (an op of role
act / expert_act / shared_act that halves the gate-and-up projection, SwiGLU / GeGLU) where there is no fused GEMM + gated
activation kernel; ``context_rope``, RoPE on a prefill's queries and keys, which TensorRT-LLM's
context phase applies in a kernel of its own before the fused attention (with the KV-cache
write) and vLLM as its own rotary op (an op of role rope feeding an op of role attention whose
queries are longer than one token).  Their inputs then make a round trip through memory.

A fused op keeps its primary kind (it is an instance of a subclass of ``MatMul``,
``Attention``, ``Norm`` ... so every backend costs it with its primary's formulas) and its
primary's name; ``fused`` lists the absorbed ops (their last name segment, so layers share one
shape key) and ``absorbed_flops`` their vector work.  Its inputs are the tensors read from
outside the kernel, its outputs those read outside it (or by nobody, i.e. step outputs):
intermediates between fused members never cross memory.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, chain
from typing import Literal, get_args

from accelsim.errors import AccelsimError
from accelsim.graph import Attention, Conv, Deferred, Elementwise, Graph, MatMul, Norm, Op, Scan, Tensor
from accelsim.transform._common import ACTIVATION_ROLES

Policy = Literal["none", "epilogue"]
POLICIES: tuple[str, ...] = get_args(Policy)
Unfused = Literal["gated_activation", "context_rope"]
UNFUSED: tuple[str, ...] = get_args(Unfused)


class _Absorbs:
    """Adds the absorbed ops' vector work to the primary's own (FLOPs are conserved)."""

    absorbed_flops: float

    @property
    def vector_flops(self) -> float:
        return super().vector_flops + self.absorbed_flops  # type: ignore[misc]


@dataclass(frozen=True)
class FusedMatMul(_Absorbs, MatMul):
    fused: tuple[str, ...] = ()
    absorbed_flops: float = 0.0


@dataclass(frozen=True)
class FusedAttention(_Absorbs, Attention):
    fused: tuple[str, ...] = ()
    absorbed_flops: float = 0.0


@dataclass(frozen=True)
class FusedNorm(_Absorbs, Norm):
    fused: tuple[str, ...] = ()
    absorbed_flops: float = 0.0


@dataclass(frozen=True)
class FusedElementwise(_Absorbs, Elementwise):
    fused: tuple[str, ...] = ()
    absorbed_flops: float = 0.0


@dataclass(frozen=True)
class FusedScan(_Absorbs, Scan):
    fused: tuple[str, ...] = ()
    absorbed_flops: float = 0.0


@dataclass(frozen=True)
class FusedConv(_Absorbs, Conv):
    fused: tuple[str, ...] = ()
    absorbed_flops: float = 0.0


FUSED: dict[type[Op], type[Op]] = {MatMul: FusedMatMul, Attention: FusedAttention, Norm: FusedNorm,
                                   Elementwise: FusedElementwise, Scan: FusedScan, Conv: FusedConv}
# Kernels whose epilogue can apply pointwise work to their output tile.
_EPILOGUE_HOSTS = (MatMul, Attention, Elementwise, Norm, Scan, Conv)
# Kernels whose prologue can apply pointwise work to an input as it is loaded.
_PROLOGUE_HOSTS = (MatMul, Attention, Norm, Elementwise)


@dataclass
class _Kernel:
    """Ops that run as one kernel: ``primary`` decides the kind, the others are absorbed."""

    primary: Op
    members: list[Op]

    @property
    def outputs(self) -> set[str]:
        return {t.name for op in self.members for t in op.outputs}


# The class in each op class's ancestry that fusion knows, found once per class (a step fuses
# hundreds of ops of a handful of classes).
_FUSED_BASE: dict[type, type] = {}


def _primary_class(op: Op) -> type[Op]:
    kind = type(op)
    base = _FUSED_BASE.get(kind)
    if base is None:
        base = _FUSED_BASE[kind] = next((b for b in kind.__mro__ if b in FUSED), kind)
    return base


def _is_pointwise(op: Op) -> bool:
    return _primary_class(op) is Elementwise


def _is_gating(op: Op) -> bool:
    """The activation of a gated MLP: an activation (by role) that halves its input, gate and
    up side by side (the role says what the op is; the halving says the MLP is gated)."""
    return (op.role in ACTIVATION_ROLES and _is_pointwise(op)
            and op.inputs[0].elements == 2 * op.outputs[0].elements)


def _standalone(graph: Graph, unfused: tuple[str, ...]):
    """Predicate: does the library run this op as a kernel of its own (``unfused``)?"""
    unknown = sorted(set(unfused) - set(UNFUSED))
    if unknown:
        raise AccelsimError(f"unfused ops must be among {', '.join(UNFUSED)}; got {', '.join(unknown)}")
    # RoPE's output feeding a prefill's attention (queries longer than one token)
    prefill_inputs = {t.name for op in graph if op.role == "attention" and getattr(op, "q_len", 1) > 1
                      for t in op.inputs} if "context_rope" in unfused else set()

    def standalone(op: Op) -> bool:
        if "gated_activation" in unfused and _is_gating(op):
            return True
        return (_is_pointwise(op) and op.role == "rope"
                and any(t.name in prefill_inputs for t in op.outputs))
    return standalone


def _joins(op: Op, host: Op) -> bool:
    """May ``op`` run inside a kernel whose primary is ``host``?"""
    if _is_pointwise(op):
        return isinstance(host, _EPILOGUE_HOSTS)
    # A norm absorbs pointwise work but never runs inside a GEMM or attention kernel.
    return isinstance(op, Norm) and _is_pointwise(host)


def fuse(graph: Graph, policy: str = "epilogue", unfused: tuple[str, ...] = ()) -> Graph:
    """The graph with pointwise and norm ops merged into neighbouring kernels (see module doc)."""
    if policy not in POLICIES:
        raise AccelsimError(f"fusion policy must be one of {', '.join(POLICIES)}; got {policy!r}")
    if policy == "none":
        return graph
    unfused = tuple(unfused)
    apart = _standalone(graph, unfused)
    # a graph holding repeated layers as counts is keyed without making them (not where the
    # library runs some ops apart: that reads every op)
    compact = graph.deferred and not unfused
    structure = (unfused, _compact_structure(graph) if compact else _structure(graph, apart, unfused))
    plan = _PLANS.get(structure)
    if plan is None:
        if len(_PLANS) >= _PLANS_KEPT:
            _PLANS.pop(next(iter(_PLANS)))
        plan = _PLANS[structure] = _plan(graph, apart)  # makes a deferred graph's ops (once per structure)
    originals = graph.originals()
    copies: list[int | None] = _copies(plan, originals) if originals is not None else [None] * len(plan)
    layout = _layout(plan, copies, graph, structure) if compact else None
    known = graph.known()
    if layout is None:  # every kernel made (the graph's ops made first)
        known = list(graph.ops)
        layout = _Layout(plan, [False] * len(plan), [(0, len(plan), None)], {}, {})
    fused = Graph(graph.name, batch=graph.batch)
    kernels: list[Op | None] = [None] * len(plan)  # a held kernel stays None
    for i in layout.made:  # in order: a copy's original kernel comes before it
        kernel, copy_of = plan[i], copies[i]
        if isinstance(kernel, int):
            kernels[i] = known[kernel]
        elif copy_of is None:
            kernels[i] = _apply(kernel, known)
        else:  # members copying another kernel's, merged alike: its class and absorbed work
            kernels[i] = _apply(kernel, known, kernels[copy_of])
    parts = dict(graph.parts())
    for start, end, at in layout.segments:
        if at is not None:  # kernels copying the made ones, of one deferred part's ops
            fused.defer(_KernelCopies(parts[at], at, plan, range(start, end), kernels, copies,
                                      layout.names.setdefault(start, []),
                                      layout.labels.setdefault(start, []), layout.picks.setdefault(start, [])),
                        [c for c in copies[start:end] if c is not None])
        else:
            fused.extend(kernels[start:end], copies[start:end])  # type: ignore[arg-type]  # all made
    return fused


@dataclass(frozen=True)
class _Layout:
    """Which kernels of ``plan`` stay deferred (``held``), the runs of kernels to add in order
    as (first, end, the start of the deferred part holding a held run's members, or None for
    made kernels), and the weight names and op labels each held run gives (filled as read: they
    follow from the structure alone)."""

    plan: list[int | _MergePlan]
    held: list[bool]
    segments: list[tuple[int, int, int | None]]
    names: dict[int, list[str]]
    labels: dict[int, list[tuple[str, int | None]]]
    # per held run, where each of its weights lies among its original kernels' (``weights``)
    picks: dict[int, list] = field(default_factory=dict)
    made: list[int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # the kernels made now, in order (a held run's ~200 kernels are skipped without a look)
        object.__setattr__(self, "made", [i for i, later in enumerate(self.held) if not later])


# Each compact structure's layout (``_layout``): a function of the structure and its plan.
_LAYOUTS: dict[tuple, _Layout] = {}


def _layout(plan: list[int | _MergePlan], copies: list[int | None], graph: Graph, structure: tuple
            ) -> _Layout | None:
    """The kernels of ``plan`` left deferred: copies of an earlier kernel whose members are all
    ops of one deferred part of ``graph`` (so each is that kernel renamed as the part renames its
    ops, made with them).  None when some other kernel has a deferred member (then the graph's
    ops are made).  Once per structure (which fixes the plan, the copy marks and the parts)."""
    if not graph.deferred:  # made meanwhile (planning a new structure reads every op)
        return None
    hit = _LAYOUTS.get(structure)
    if hit is not None and hit.plan is plan:
        return hit
    owners = graph.owners()
    held: list[bool] = []
    for kernel, copy_of in zip(plan, copies):
        parts = {owners[m] for m in _members(kernel)}
        missing = parts != {None}
        later = copy_of is not None and None not in parts and len(parts) == 1
        if missing and not later:
            return None
        held.append(later)
    segments: list[tuple[int, int, int | None]] = []
    start = 0
    while start < len(plan):
        at = owners[_members(plan[start])[0]] if held[start] else None
        end = start + 1
        while end < len(plan) and held[end] == held[start] and (
                at is None or owners[_members(plan[end])[0]] == at):
            end += 1
        segments.append((start, end, at))
        start = end
    if len(_LAYOUTS) >= _PLANS_KEPT:
        _LAYOUTS.pop(next(iter(_LAYOUTS)))
    layout = _LAYOUTS[structure] = _Layout(plan, held, segments, {}, {})
    return layout


def _members(kernel: int | _MergePlan) -> tuple[int, ...]:
    return (kernel,) if isinstance(kernel, int) else kernel.members


class _KernelCopies(Deferred):
    """Kernels ``run`` of ``plan`` over the ops of a graph's deferred ``part`` (its first op at
    ``at`` in the graph), each a copy of an earlier kernel (``kernels[copies[k]]``, made): made
    as the eager walk makes them from the part's ops; their names and layers are their
    primaries', their weights the original kernels' renamed as ``part`` renames.  It holds the
    part, not the graph (a memo keyed weakly by the graph holds the fused graph)."""

    def __init__(self, part: Deferred, at: int, plan: list[int | _MergePlan], run: range,
                 kernels: list[Op | None], copies: list[int | None], names: list[str],
                 labels: list[tuple[str, int | None]], picks: list | None = None) -> None:
        super().__init__(len(run))
        self.part, self.at, self.plan, self.run = part, at, plan, run
        self.kernels, self.copies, self.names, self.known_labels = kernels, copies, names, labels
        self.picks = [] if picks is None else picks

    def _make(self) -> list[Op]:
        ops, at = self.part.ops(), self.at
        made: list[Op] = []
        for k in self.run:
            kernel, like = self.plan[k], self.kernels[self.copies[k]]  # type: ignore[index]
            if isinstance(kernel, int):
                made.append(ops[kernel - at])
            else:  # the member indices moved to the part's own list
                made.append(_apply(kernel, {m: ops[m - at] for m in kernel.members}, like))
        return made

    def _make_labels(self) -> list[tuple[str, int | None]]:
        if len(self.known_labels) != self.count:  # the same for every graph of this structure
            labels, at = self.part.labels(), self.at
            self.known_labels[:] = [
                labels[kernel - at] if isinstance(kernel, int) else labels[kernel.members[kernel.primary] - at]
                for kernel in (self.plan[k] for k in self.run)]
        return self.known_labels

    def weights(self) -> list[tuple[str, Tensor]]:
        # a copy kernel's operands are its original's, renamed as its ops' part renames them;
        # the originals are the few kernels of one layer, so their weights are found once each
        picks = self.picks  # [copy marks, marks, originals in order, their weight counts, positions]
        if not picks or picks[0] is not self.copies:  # the same for every graph of this structure
            marks = list(map(self.copies.__getitem__, self.run))
            picks[:] = [self.copies, marks, list(dict.fromkeys(marks)), None, None]
        _, marks, originals, counts, positions = picks
        held: list[list[Tensor]] = []
        for c in originals:  # each original once, in order
            like = self.kernels[c] if c is not None else None
            assert like is not None  # a held kernel copies a made one
            held.append([t for t in like.inputs if t.role == "weight"])
        if counts != list(map(len, held)):  # each mark's weights: its original's, in order
            counts = list(map(len, held))
            first = dict(zip(originals, accumulate([0, *counts])))
            positions = [first[c] + j for c in marks for j in range(counts[originals.index(c)])]
            picks[3:] = [counts, positions]
        pool = list(chain.from_iterable(held))
        tensors = list(map(pool.__getitem__, positions))
        names = self.names
        if len(names) != len(tensors):  # the same for every graph of this structure: named once
            held_of, rename, plan, at = dict(zip(originals, held)), self.part.rename, self.plan, self.at
            names[:] = [rename(t.name, _members(plan[k])[0] - at) for k, c in zip(self.run, marks)
                        for t in held_of[c]]
        return list(zip(names, tensors))

    def rename(self, name: str, j: int) -> str:
        # a kernel's members are of one layer (a copy kernel's originals form one made kernel)
        return self.part.rename(name, _members(self.plan[self.run[j]])[0] - self.at)

    def structure(self) -> tuple:
        return ("kernel copies", self.part.structure(), tuple(self.plan[k] for k in self.run))


def _copies(plan: list[int | _MergePlan], originals: list[int]) -> list[int | None]:
    """Per kernel of ``plan``, the earlier kernel it is a copy of (members that are copies of
    that kernel's members, merged the same way), or None.  It depends only on the plan and the
    graph's copy marks, so it is found once per (plan, marks)."""
    key = (id(plan), tuple(originals))
    hit = _COPIES.get(key)
    if hit is not None and hit[0] is plan:
        return hit[1]
    made: dict[tuple[int, ...], int] = {}  # each kernel's members -> its index
    copies: list[int | None] = []
    for k, kernel in enumerate(plan):
        members = (kernel,) if isinstance(kernel, int) else kernel.members
        source = tuple([originals[m] for m in members])
        copy_of = None
        if source != members:
            j = made.get(source)
            if j is not None and _same_form(plan[j], kernel):
                copy_of = j
        made[members] = k
        copies.append(copy_of)
    if len(_COPIES) >= _PLANS_KEPT:
        _COPIES.pop(next(iter(_COPIES)))
    _COPIES[key] = (plan, copies)  # holding the plan keeps its id from being reused
    return copies


def _same_form(a: int | _MergePlan, b: int | _MergePlan) -> bool:
    """Two kernels of a plan built alike from corresponding members."""
    if isinstance(a, int) or isinstance(b, int):
        return isinstance(a, int) and isinstance(b, int)
    return (a.primary, a.inputs, a.outputs, a.labels) == (b.primary, b.inputs, b.outputs, b.labels)


# Which ops form each kernel decides nothing from sizes: only the ops' classes, roles, names, the
# names of the tensors they read and write, and which ops the library runs apart (``_structure``).
# A graph of the same structure (the same model at another batch or context, the same layer on
# another chip) reuses the plan and only builds its merged ops; sizes and FLOPs are read from it.
_PLANS: dict[tuple, list[int | _MergePlan]] = {}
_PLANS_KEPT = 64
# Each plan's copy kernels per set of copy marks (``_copies``), keyed by the plan's identity.
_COPIES: dict[tuple, tuple[list[int | _MergePlan], list[int | None]]] = {}


def _compact_structure(graph: Graph) -> tuple:
    """``_structure`` (no ops run apart) of a graph holding deferred parts: the made ops' and
    each deferred part's place and ``Deferred.structure``, which decide the rest."""
    return ("deferred", tuple([(n, type(op), op.name, op.role, tuple([t.name for t in op.inputs]),
                                tuple([t.name for t in op.outputs]))
                               for n, op in enumerate(graph.known()) if op is not None]), graph.structure())


def _structure(graph: Graph, apart, unfused: tuple[str, ...]) -> tuple:
    """Everything about ``graph`` the fusion walk reads (see ``_plan``); which ops run apart
    only when the library runs some apart (``apart`` is then the only part read from sizes)."""
    if not unfused:
        return tuple([(type(op), op.name, op.role, tuple([t.name for t in op.inputs]),
                       tuple([t.name for t in op.outputs])) for op in graph.ops])
    return tuple([(type(op), op.name, op.role, tuple([t.name for t in op.inputs]),
                   tuple([t.name for t in op.outputs]), apart(op)) for op in graph.ops])


@dataclass(frozen=True)
class _MergePlan:
    """One merged kernel of a plan: op indices into the graph, and each external tensor as
    (member position, 0 for an input / 1 for an output, operand position)."""

    members: tuple[int, ...]
    primary: int  # position in ``members``
    inputs: tuple[tuple[int, int, int], ...]
    outputs: tuple[tuple[int, int, int], ...]
    labels: tuple[str, ...]  # the absorbed members' labels (``_label``), in member order


def _plan(graph: Graph, apart) -> list[int | _MergePlan]:
    """The kernels of ``graph`` in order: an op index for an op left alone, a ``_MergePlan``
    for ops run as one kernel."""
    consumers = Counter(t.name for op in graph for t in op.inputs)
    kernels: list[_Kernel] = []
    for op in graph:
        last = kernels[-1] if kernels else None
        if apart(op) or (last is not None and apart(last.primary)):
            kernels.append(_Kernel(op, [op]))
        elif last is not None and _epilogue(op, last, consumers):
            last.members.append(op)
            if not _is_pointwise(op):  # a norm takes over as the kernel's primary
                last.primary = op
        elif last is not None and _prologue(last, op, consumers):
            last.members.append(op)
            last.primary = op
        else:
            kernels.append(_Kernel(op, [op]))
    index = {id(op): i for i, op in enumerate(graph.ops)}
    return [index[id(k.primary)] if len(k.members) == 1 else _merge_plan(k, consumers, index)
            for k in kernels]


def _epilogue(op: Op, last: _Kernel, consumers: Counter) -> bool:
    """``op`` reads an output of ``last`` that nothing else reads, and may run inside it."""
    if not (_is_pointwise(op) or isinstance(op, Norm)) or not _joins(op, last.primary):
        return False
    inner = last.outputs
    return any(t.name in inner and consumers[t.name] == 1 for t in op.inputs)


def _prologue(last: _Kernel, op: Op, consumers: Counter) -> bool:
    """``last`` is a lone pointwise op whose every output feeds only ``op``."""
    if len(last.members) != 1 or not _is_pointwise(last.primary):
        return False
    if not (isinstance(op, _PROLOGUE_HOSTS) and _joins(last.primary, op)):
        return False
    read = {t.name for t in op.inputs}
    return all(t.name in read and consumers[t.name] == 1 for t in last.primary.outputs)


def _merge_plan(kernel: _Kernel, consumers: Counter, index: dict[int, int]) -> _MergePlan:
    """Where each external tensor of the merged kernel sits among its members' operands: the
    primary's operands first, the kernel's final result first among its outputs (backends read
    outputs[0] as the result tensor), intermediates between members left out."""
    produced = kernel.outputs
    inner_reads = Counter(t.name for op in kernel.members for t in op.inputs if t.name in produced)
    internal = {name for name, n in inner_reads.items() if consumers[name] == n}
    inputs = _external_inputs(kernel, produced)
    outputs = _dedupe(t for op in kernel.members for t in op.outputs if t.name not in internal)
    final = {t.name for t in kernel.members[-1].outputs}
    outputs.sort(key=lambda t: t.name not in final)
    where: dict[int, tuple[int, int, int]] = {}
    for m, op in enumerate(kernel.members):
        for side, tensors in enumerate((op.inputs, op.outputs)):
            for pos, t in enumerate(tensors):
                where.setdefault(id(t), (m, side, pos))
    return _MergePlan(tuple(index[id(op)] for op in kernel.members), kernel.members.index(kernel.primary),
                      tuple(where[id(t)] for t in inputs), tuple(where[id(t)] for t in outputs),
                      tuple(_label(op) for op in kernel.members if op is not kernel.primary))


def _apply(kernel: _MergePlan, ops: Sequence[Op | None] | Mapping[int, Op], like: Op | None = None) -> Op:
    """One op for a merged kernel: the primary's fields, the kernel's external tensors, and the
    absorbed ops' names and vector work.  ``like`` is the merged op of a kernel this one copies
    (``_copies``): the same class, absorbed names and work, so they are taken from it."""
    members: list[Op] = [ops[i] for i in kernel.members]  # type: ignore[misc]  # every member is made
    primary = members[kernel.primary]

    def tensor(ref: tuple[int, int, int]) -> Tensor:
        m, side, pos = ref
        op = members[m]
        return (op.outputs if side else op.inputs)[pos]

    # The primary's fields were validated when it was built, so the fused op is assembled from
    # them without re-running the frozen dataclass's __init__ (a step merges over a hundred);
    # the four fields set after them replace any the primary had, in their declared places.
    if like is None:
        absorbed = [op for op in members if op is not primary]
        merged = object.__new__(FUSED[_primary_class(primary)])
        labels = tuple(getattr(primary, "fused", ())) + kernel.labels
        flops = getattr(primary, "absorbed_flops", 0.0) + sum(op.flops for op in absorbed)
    else:
        merged = object.__new__(type(like))
        labels, flops = like.__dict__["fused"], like.__dict__["absorbed_flops"]
    fields = merged.__dict__
    fields.update(vars(primary))
    fields.update(inputs=tuple(map(tensor, kernel.inputs)), outputs=tuple(map(tensor, kernel.outputs)),
                  fused=labels, absorbed_flops=flops)
    return merged


def _external_inputs(kernel: _Kernel, produced: set[str]) -> list[Tensor]:
    """Tensors the kernel reads from memory, in the primary's operand order: a prologue's first
    input takes the place of the operand it produced (a GEMM's A stays first, B second) and
    every other outside read follows the primary's own operands."""
    by_output = {t.name: op for op in kernel.members for t in op.outputs}

    def sources(t: Tensor) -> list[Tensor]:
        if t.name not in produced:
            return [t]
        producer = by_output[t.name]
        if producer is kernel.primary:
            return []
        return [u for v in producer.inputs for u in sources(v)]

    operands: list[Tensor] = []
    tail: list[Tensor] = []
    for t in kernel.primary.inputs:
        found = sources(t)
        operands.extend(found[:1])
        tail.extend(found[1:])
    for op in kernel.members:
        for t in op.inputs:
            tail.extend(sources(t))
    return _dedupe([*operands, *tail])


def _dedupe(tensors) -> list[Tensor]:
    seen: dict[str, Tensor] = {}
    for t in tensors:
        seen.setdefault(t.name, t)
    return list(seen.values())


def _label(op: Op) -> str:
    """Layer-free name of an absorbed op, so identical layers keep one shape key."""
    return op.name.rsplit(".", 1)[-1]
