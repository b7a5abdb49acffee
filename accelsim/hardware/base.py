"""The protocol every hardware kind implements, and the records that cross its boundary.

A kind answers, each a pure function of its inputs:
  * ``demand`` / ``allocate`` / ``place``: where do weights, KV cache and activations live, and
    do they fit?
  * ``plan``: how is a graph spread over chips (or refused)?
  * ``mappings``: which ways could this op run here (tiles, dataflows, splits)?
  * ``params`` / ``terms`` / ``cost``: what does one op cost under one mapping?
  * ``schedule``: how do per-op costs combine into a step (sequential, or a layer pipeline)?
  * memory-level and runtime questions (what is off-chip, what holds the KV cache, what the
    software fuses, which overheads calibration fits, what silicon the die holds).
The mapper (``accelsim.sim.mapper``) picks, per op shape, the mapping with the least time.

``Backend`` is the protocol (checked by mypy: ``hardware.KINDS`` is typed with it);
``BackendBase`` gives the hooks whose default is honest for most kinds.  Nothing outside
``accelsim.hardware`` asks which kind it holds: it asks the backend.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, ClassVar, Protocol

import numpy as np

from accelsim.errors import CannotRunError
from accelsim.graph import Attention, Graph, MatMul, Op
from accelsim.hardware.arraymath import nonzero, vmax
from accelsim.hardware.spec import HardwareBase, MemoryLevel
from accelsim.memo import ByIdentity
from accelsim.model.density import DensityProfile
from accelsim.model.spec import ModelSpec
from accelsim.transform import Parallelism, shard, stage_graphs
from accelsim.workload import Workload

HEAD = "head"  # the region / stage key of ops outside every layer (embedding, final norm, LM head)

Splitter = Callable[[Graph], list[Graph]]


@dataclass(frozen=True)
class Placement:
    """Which memory level holds each tensor role, and the footprint that decided it."""

    level_of: dict[str, str]
    footprint: dict[str, float]  # bytes per role (weights, kv_cache, state)
    capacity: dict[str, Any]     # bytes per memory level (arrays over design points in the fast path)
    regions: dict[str, Any] = field(default_factory=dict)  # spatial chips: MACs per layer region
    # Input-activation density of the step's ops (``Workload.density``), set by the mapper so
    # every kind's cost reads it the same way (``common.skip_share``); None means dense.
    density: DensityProfile | None = None


@dataclass(frozen=True)
class Demand:
    """What a step needs from memory, independent of the chip's sizes: computed once per graph,
    then ``allocate``d against each design point's capacities."""

    graph_name: str
    resident: dict[str, float]
    stage_weights: dict[str, int] = field(default_factory=dict)  # spatial chips: weights per region


@dataclass(frozen=True)
class Mapping:
    """One way to run an op: a short label plus the parameters the cost function reads."""

    label: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Terms:
    """An op's cost under one mapping before it is labelled.  Each number is a float for one
    design point or an array over many (``accelsim.dse.fastpath``); ``detail`` feeds labels."""

    time_s: Any
    compute_s: Any
    memory_s: dict[str, Any]
    bytes: dict[str, Any]
    energy_j: dict[str, Any]
    peak_flops: Any
    overhead_s: Any = 0.0
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def energy_total(self):
        return sum(self.energy_j.values())


@dataclass(frozen=True)
class OpCost:
    op: str
    kind: str
    layer: int | None
    time_s: float
    compute_s: float
    memory_s: dict[str, float]
    bytes: dict[str, float]
    energy_j: dict[str, float]
    flops: float
    peak_flops: float
    bound: str
    mapping: str
    overhead_s: float = 0.0
    dtype: str = ""  # the format its datapath computes in (a matmul's narrower operand), for rooflines

    @property
    def utilisation(self) -> float:
        """Achieved FLOP/s over the peak of the unit the op ran on."""
        return self.flops / (self.time_s * self.peak_flops) if self.time_s > 0 and self.peak_flops else 0.0

    @property
    def energy_total(self) -> float:
        return sum(self.energy_j.values())

    @property
    def regime(self) -> str:
        """The bound in words that explain a low utilisation: 'launch-bound' (a fixed per-kernel
        cost outweighs the work), '<level>-bandwidth-bound', 'latency-bound' (the datapath's
        time is mostly array fill and drain, padding of a small shape or a partial wave, so it
        is busy yet under LOW_UTILISATION of its peak: a batch-1 GEMM on a 128x128 array; or a
        transfer whose fixed latency outweighs its bytes: a small collective), or 'compute-bound'."""
        if self.bound == "overhead":
            return "launch-bound"
        if self.bound == "latency":
            return "latency-bound"
        if self.bound.startswith("memory:"):
            return f"{self.bound.split(':', 1)[1]}-bandwidth-bound"
        if self.bound == "compute" and self.peak_flops and self.utilisation < LOW_UTILISATION:
            return "latency-bound"
        return self.bound if self.bound != "compute" else "compute-bound"


# Below this share of its peak, a compute-bound op is waiting on its own pipeline (fill, drain,
# padding), not doing arithmetic: reports call it latency-bound so 0.7 % is not read as "compute".
LOW_UTILISATION = 0.10


@dataclass(frozen=True)
class StepTime:
    """How long one step takes and how many tokens/s it sustains (a pipeline overlaps steps)."""

    latency_s: Any
    throughput_tokens_per_s: Any
    busy_s: Any  # time the chip is powered for the step's tokens (for static energy)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    """How a kind spreads a graph over chips: the parallelism actually used, and ``split``,
    which turns a graph (the full step, or one group's) into its per-stage one-chip graphs."""

    parallelism: Parallelism
    split: Splitter


class Timed(Protocol):
    """What ``schedule`` reads of an op cost (an ``OpCost``, or the fast path's array record)."""

    @property
    def layer(self) -> int | None: ...

    @property
    def time_s(self) -> Any: ...


class Backend(Protocol):
    """Every hook a hardware kind provides.  ``hw`` is the kind's validated spec (or, in the
    design-space fast path, a column view of many specs with the same fields)."""

    @property
    def name(self) -> str:
        """The kind, as a config's ``kind:`` names it."""

    @property
    def spec(self) -> type[HardwareBase]:
        """The spec class a config of this kind validates into."""

    # -- placement
    def demand(self, graph: Graph, hw: Any, model: ModelSpec | None, workload: Workload | None) -> Demand: ...

    def allocate(self, need: Demand, hw: Any) -> Placement: ...

    def allocate_columns(self, need: Demand, hw: Any) -> tuple[np.ndarray, list[Placement]] | None: ...

    def check_columns(self, hw: Any) -> dict[str, Any]: ...

    def place(self, graph: Graph, hw: Any, model: ModelSpec | None, workload: Workload | None) -> Placement: ...

    def plan(self, graph: Graph, hw: Any, parallelism: Parallelism | None) -> Plan: ...

    def spans_chips(self, hw: Any) -> bool: ...

    def microbatch(self, hw: Any, model: ModelSpec | None, workload: Workload) -> tuple[Workload, int]: ...

    # -- cost
    def params(self, hw: Any) -> dict[str, Any]: ...

    def mappings(self, op: Op, hw: Any) -> list[Mapping]: ...

    def terms(self, op: Op, mapping: Mapping, hw: Any, p: dict[str, Any], placement: Placement) -> Terms: ...

    def terms_each(self, op: Op, mappings: Sequence[Mapping], hw: Any, p: dict[str, Any],
                   placement: Placement) -> list[Terms]: ...

    def cost(self, op: Op, mapping: Mapping, hw: Any, placement: Placement) -> OpCost: ...

    def ranks(self, op: Op, mappings: Sequence[Mapping], hw: Any,
              placement: Placement) -> list[tuple[float, float]] | None: ...

    def ranked_cost(self, op: Op, mappings: Sequence[Mapping], j: int, hw: Any,
                    placement: Placement) -> OpCost: ...

    def check_lone_op(self, hw: Any) -> None: ...

    def dataflows(self, hw: Any) -> tuple[str, ...]: ...

    def region_key(self, layer: int | None) -> str: ...

    # -- step
    def schedule(self, costs: Sequence[Timed], hw: Any, workload: Workload, groups: int) -> StepTime: ...

    def system_figures(self, hw: Any, workload: Workload, footprint: dict[str, float]) -> dict[str, Any]: ...

    def worker_step_s(self, hw: Any, chips: int) -> Any: ...

    # -- software on the chip
    def fusion_policy(self, hw: Any) -> tuple[str, tuple[str, ...]]: ...

    def forced_weight_dtype(self, hw: Any) -> str | None: ...

    def fixed_model(self, hw: Any) -> str | None: ...

    def request_overhead(self, hw: Any) -> float: ...

    def overhead_keys(self, hw: Any) -> dict[str, str]: ...

    # -- memory levels and silicon
    def offchip_level(self, hw: Any) -> str | None: ...

    def main_memory(self, hw: Any) -> MemoryLevel: ...

    def kv_capacity(self, hw: Any, weight_bytes: float, chips: int) -> float: ...

    def onchip_capacity(self, hw: Any) -> float: ...

    def pipelined(self, hw: Any) -> bool: ...

    def streams_prefill(self, hw: Any) -> bool: ...

    def stage_latency(self, hw: Any) -> float: ...

    def die_storage(self, hw: Any, model: ModelSpec | None) -> tuple[Any, Any]: ...


# Each kind's ``params`` of the last few specs (``BackendBase.cost_params``).
_COST_PARAMS: ByIdentity[dict[str, Any]] = ByIdentity(8)


class BackendBase(ABC):
    """Hooks with an honest default, and the abstract hooks every kind must write itself.
    A subclass that leaves an abstract hook out cannot be instantiated."""

    name: ClassVar[str]
    spec: ClassVar[type[HardwareBase]]

    # -- placement

    @abstractmethod
    def demand(self, graph: Graph, hw: Any, model: ModelSpec | None, workload: Workload | None) -> Demand:
        """What the step needs from memory (independent of the chip's sizes)."""

    @abstractmethod
    def allocate(self, need: Demand, hw: Any) -> Placement:
        """Where ``need`` lives on ``hw``; ``DoesNotFitError`` when it does not fit."""

    def allocate_columns(self, need: Demand, hw: Any) -> tuple[np.ndarray, list[Placement]] | None:
        """``allocate`` over many design points at once (``hw`` a spec seen column-wise, its
        numbers arrays over the points): per point the index of its placement among the ones
        returned, or -1 where ``allocate`` raises ``DoesNotFitError`` (the caller takes the
        line from ``allocate``), and those placements, their capacities and region sizes arrays
        over all the points.  None where the kind does not place column-wise (the default):
        the caller places point by point."""
        return None

    def check_columns(self, hw: Any) -> dict[str, Any]:
        """Whole-spec checks judged over many design points at once (``hw`` a spec seen
        column-wise): per check, by its after-validator's name, True per point (or for all)
        where that check surely passes on the point's spec.  A point marked False is checked on
        its own, as before, so its refusal is found as the validator gives it.  Empty (the
        default): every check runs per point or per group."""
        return {}

    def place(self, graph: Graph, hw: Any, model: ModelSpec | None, workload: Workload | None) -> Placement:
        return self.allocate(self.demand(graph, hw, model, workload), hw)

    def plan(self, graph: Graph, hw: Any, parallelism: Parallelism | None) -> Plan:
        """The layout asked for (one chip when none), sharded then cut into pipeline stages."""
        layout = parallelism or Parallelism()
        if layout.chips == 1:
            return Plan(layout, _whole)
        return Plan(layout, lambda g: stage_graphs(shard(g, layout)))

    def spans_chips(self, hw: Any) -> bool:
        """True when the kind chooses its own chip count (even without ``--chips``)."""
        return False

    def microbatch(self, hw: Any, model: ModelSpec | None, workload: Workload) -> tuple[Workload, int]:
        """The workload one group of users in flight runs, and the number of groups."""
        return workload, 1

    # -- cost

    @abstractmethod
    def params(self, hw: Any) -> dict[str, Any]:
        """Every number ``terms`` reads (the fast path stacks these across design points)."""

    def cost_params(self, hw: Any) -> dict[str, Any]:
        """``params(hw)`` once per spec object (read-only): ``cost`` is called for every mapping
        of every op shape, and the numbers are the same for all of them."""
        return _COST_PARAMS.get((hw,), self.name, lambda: self.params(hw))

    @abstractmethod
    def mappings(self, op: Op, hw: Any) -> list[Mapping]:
        """The ways ``op`` could run on ``hw``."""

    @abstractmethod
    def terms(self, op: Op, mapping: Mapping, hw: Any, p: dict[str, Any], placement: Placement) -> Terms:
        """The cost formulas (numbers or arrays over design points)."""

    def terms_each(self, op: Op, mappings: Sequence[Mapping], hw: Any, p: dict[str, Any],
                   placement: Placement) -> list[Terms]:
        """``terms`` of ``op`` under each of ``mappings``, in order (the fast path ranks them per
        design point).  A kind may work out the part that no mapping changes once; the terms
        must equal ``terms``'s for each mapping exactly."""
        return [self.terms(op, m, hw, p, placement) for m in mappings]

    @abstractmethod
    def cost(self, op: Op, mapping: Mapping, hw: Any, placement: Placement) -> OpCost:
        """``terms`` on one chip, labelled."""

    def ranks(self, op: Op, mappings: Sequence[Mapping], hw: Any,
              placement: Placement) -> list[tuple[float, float]] | None:
        """Each mapping's (time, energy) on one chip, the mapper's ranking key, worked out for
        all of ``mappings`` at once; None (the default) when the kind has no such shortcut and
        the mapper costs them one by one.  The numbers must equal ``cost``'s
        (``OpCost.time_s``, ``OpCost.energy_total``) exactly, so the same mapping wins."""
        return None

    def ranked_cost(self, op: Op, mappings: Sequence[Mapping], j: int, hw: Any,
                    placement: Placement) -> OpCost:
        """``cost(op, mappings[j], ...)`` right after ``ranks`` ranked ``mappings`` (the
        mapper's winner); a kind may read it from that evaluation, equal field by field."""
        return self.cost(op, mappings[j], hw, placement)

    def check_lone_op(self, hw: Any) -> None:
        """Raise ``CannotRunError`` when ``hw`` cannot run an op by itself (``accelsim op``)."""

    def dataflows(self, hw: Any) -> tuple[str, ...]:
        """The array dataflows a user may force on an op (``accelsim op --dataflow``); none
        where the kind has no such choice."""
        return ()

    def region_key(self, layer: int | None) -> str:
        """The layer region / pipeline stage an op of ``layer`` belongs to."""
        return HEAD if layer is None else str(layer)

    # -- step

    def schedule(self, costs: Sequence[Timed], hw: Any, workload: Workload, groups: int) -> StepTime:
        """Ops run one after another: the step takes the sum of op times."""
        return sequential_schedule(costs, workload)

    def system_figures(self, hw: Any, workload: Workload, footprint: dict[str, float]) -> dict[str, Any]:
        """Kind-specific figures for ``Result.system``."""
        return {}

    def worker_step_s(self, hw: Any, chips: int) -> Any:
        """Host seconds per step the runtime spends coordinating a model spread over ``chips``
        chips, every chip idle through it (0: the kind's runtime has no such cost)."""
        return 0.0

    # -- software on the chip

    def fusion_policy(self, hw: Any) -> tuple[str, tuple[str, ...]]:
        """(fusion policy, ops the kernel library leaves unfused): spatial kinds do not fuse."""
        return "none", ()

    def forced_weight_dtype(self, hw: Any) -> str | None:
        """The weight format the silicon fixes (hardwired chips), overriding ``--weight-dtype``."""
        return None

    def fixed_model(self, hw: Any) -> str | None:
        """The one model whose weights the chip holds in silicon; None: it runs any model."""
        return None

    def request_overhead(self, hw: Any) -> float:
        """Seconds the serving runtime spends per request (added to TTFT, never to a step)."""
        return 0.0

    def overhead_keys(self, hw: Any) -> dict[str, str]:
        """Dotted spec keys of the overheads calibration may fit: ``op`` (per op), ``step`` (per
        step), ``request`` (per request), ``attention_unit`` (per wave of attention work units);
        a kind without calibrated overheads gives none."""
        return {}

    # -- memory levels and silicon

    @abstractmethod
    def offchip_level(self, hw: Any) -> str | None:
        """The memory level reached across the chip boundary (HBM, DRAM), or None."""

    @abstractmethod
    def main_memory(self, hw: Any) -> MemoryLevel:
        """The level that holds the model's weights and KV cache (the one a catalogue shows)."""

    @abstractmethod
    def kv_capacity(self, hw: Any, weight_bytes: float, chips: int) -> float:
        """Bytes of KV cache and recurrent state ``chips`` chips hold beside ``weight_bytes`` of
        weights (the same rule ``allocate`` applies)."""

    @abstractmethod
    def onchip_capacity(self, hw: Any) -> float:
        """On-chip bytes that can hold operands (the engine's prefetch buffer)."""

    def pipelined(self, hw: Any) -> bool:
        """True when the chip runs its layers as a spatial pipeline of users in groups."""
        return False

    def streams_prefill(self, hw: Any) -> bool:
        """True when a prompt streams token by token through the stages (spatial pipelines:
        weights stay in place, tokens move); False where stages take whole batches."""
        return False

    def stage_latency(self, hw: Any) -> float:
        """Hop between the stages of that pipeline (0 when not pipelined)."""
        return 0.0

    @abstractmethod
    def die_storage(self, hw: Any, model: ModelSpec | None) -> tuple[Any, Any]:
        """(SRAM bytes, ROM bits) on the die, for the area model; ``model`` is the model the chip
        runs (None when unknown), for dies whose storage holds its weights."""


def _whole(graph: Graph) -> list[Graph]:
    """One chip: the graph is its only stage, as it is."""
    return [graph]


def refuse_lone_op(hw: Any, kind: str) -> None:
    """The one refusal of kinds that run ops only inside their model."""
    raise CannotRunError(f"{hw.name} is a {kind} chip: it runs ops only inside its model; "
                         f"use `accelsim run` for it")


def bound_of(compute_s: float, memory_s: dict[str, float], overhead_s: float = 0.0,
             latency_s: float = 0.0) -> str:
    """Name the resource whose time dominates: 'compute', 'memory:<level>', 'overhead', or
    'latency' when the longest term is a transfer whose fixed latency (``latency_s`` of it: a
    collective's base latency plus steps x per-step latency) outweighs its bytes over
    bandwidth, so a 14 KB all-reduce that moves almost nothing is not called bandwidth-bound."""
    candidates = {"compute": compute_s, **{f"memory:{k}": v for k, v in memory_s.items()}}
    name, longest = max(candidates.items(), key=lambda kv: kv[1])
    if overhead_s > longest:
        return "overhead"
    if name != "compute" and latency_s > longest - latency_s:
        return "latency"
    return name


def to_cost(op: Op, terms: Terms, label: str) -> OpCost:
    """The scalar record of one op's cost (zero-byte levels and zero energies left out)."""
    memory_s = nonzero(terms.memory_s)
    return OpCost(op.name, op.kind, op.layer, terms.time_s, terms.compute_s, memory_s, terms.bytes,
                  nonzero(terms.energy_j), op.flops, terms.peak_flops,
                  bound_of(terms.compute_s, memory_s, terms.overhead_s), label, terms.overhead_s,
                  op.compute_dtype if isinstance(op, (MatMul, Attention)) else op.dtype)


def memory_energy(bytes_by_level: dict[str, Any], energy_per_byte: dict[str, Any]) -> dict[str, Any]:
    """Joules per level for the bytes moved there."""
    return {level: b * energy_per_byte[level] for level, b in bytes_by_level.items()}


_TIME_OF = attrgetter("time_s")


def sequential_schedule(costs: Sequence[Timed], workload: Workload) -> StepTime:
    """Ops run one after another: the step takes the sum of op times."""
    latency = sum(map(_TIME_OF, costs))  # the same additions in the same order, read in C
    tokens = workload.tokens if workload.phase == "prefill" else workload.batch
    return StepTime(latency, tokens / latency, latency)


def streamed_prefill(stage_s: Sequence[Any], workload: Workload, stage_latency: Any = 0.0) -> StepTime:
    """A prompt streamed token by token through a spatial pipeline (a hardwired chip's layer
    regions, a dataflow system's chips): each stage passes a token on as soon as it has
    processed it, so the prefill takes one token's trip through every stage plus (tokens - 1)
    of the slowest stage's per-token time.  ``stage_s`` are the stages' times for the whole
    prompt (every token; attention's growing span averaged over them).  As prompts lengthen the
    fill is amortised and throughput rises toward the slowest stage's rate, the pipeline bound.
    Numbers, or arrays over design points."""
    tokens = workload.tokens
    per_token = [s / tokens for s in stage_s]
    trip = sum(per_token) + len(per_token) * stage_latency
    slowest = vmax(*per_token) + stage_latency
    latency = trip + (tokens - 1) * slowest
    notes: tuple[str, ...] = ()
    if not isinstance(latency, np.ndarray):
        notes = (f"prompt streamed token by token through {len(stage_s)} stages: one token's trip "
                 f"{trip * 1e6:,.1f} us, then one token per {slowest * 1e6:,.2f} us (slowest stage)",)
    return StepTime(latency, tokens / latency, latency, notes)


def pipelined_round(stage_s: Sequence[Any], workload: Workload, groups: int,
                    stage_latency: Any = 0.0) -> StepTime:
    """An autoregressive pipeline's round: a user's next token enters only after its previous
    one left the last stage, so with ``groups`` groups in flight a round takes
    max(one group's trip through every stage, groups x the slowest stage).  One rule for a
    hardwired chip's layer pipeline and for pipeline stages across chips; numbers, or arrays
    over design points."""
    trip = sum(stage_s) + len(stage_s) * stage_latency
    slowest = vmax(*stage_s) + stage_latency
    round_time = vmax(trip, groups * slowest)
    tokens = workload.tokens if workload.phase == "prefill" else workload.batch
    notes: tuple[str, ...] = ()
    if not isinstance(round_time, np.ndarray):  # one design point: say what bounds the round
        bound = "trip-bound" if trip >= groups * slowest else "slowest-stage-bound"
        notes = (f"{groups} group(s) in flight over {len(stage_s)} stages; {bound}",)
    return StepTime(round_time, tokens / round_time, round_time, notes)
