"""The protocol every hardware kind implements, and the records that cross its boundary.

A kind answers four questions, each a pure function of its inputs:
  * ``place``: where do weights, KV cache and activations live, and do they fit?
  * ``mappings``: which ways could this op run here (tiles, dataflows, splits)?
  * ``cost``: what does one op cost under one mapping?
  * ``schedule``: how do per-op costs combine into a step (sequential, or a layer pipeline)?
The mapper (``accelsim.sim.mapper``) picks, per op shape, the mapping with the least time.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from accelsim.density import DensityProfile
from accelsim.graph import Graph, Op
from accelsim.model.spec import ModelSpec
from accelsim.workload import Workload


@dataclass(frozen=True)
class Placement:
    """Which memory level holds each tensor role, and the footprint that decided it."""

    level_of: dict[str, str]
    footprint: dict[str, float]  # bytes per role (weights, kv_cache, state)
    capacity: dict[str, float]   # bytes per memory level
    regions: dict[str, float] = field(default_factory=dict)  # spatial chips: MACs per layer region
    # Input-activation density of the step's ops (``Workload.density``), set by the mapper so
    # every kind's cost reads it the same way (``common.skip_share``); None means dense.
    density: DensityProfile | None = None


@dataclass(frozen=True)
class Mapping:
    """One way to run an op: a short label plus the parameters the cost function reads."""

    label: str
    params: dict[str, Any] = field(default_factory=dict)


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

    @property
    def utilisation(self) -> float:
        """Achieved FLOP/s over the peak of the unit the op ran on."""
        return self.flops / (self.time_s * self.peak_flops) if self.time_s > 0 and self.peak_flops else 0.0

    @property
    def energy_total(self) -> float:
        return sum(self.energy_j.values())


@dataclass(frozen=True)
class StepTime:
    """How long one step takes and how many tokens/s it sustains (a pipeline overlaps steps)."""

    latency_s: float
    throughput_tokens_per_s: float
    busy_s: float  # time the chip is powered for the step's tokens (for static energy)
    notes: tuple[str, ...] = ()


class Backend(Protocol):
    def place(self, graph: Graph, hw: Any, model: ModelSpec, workload: Workload) -> Placement: ...

    def microbatch(self, hw: Any, model: ModelSpec, workload: Workload) -> tuple[Workload, int]: ...

    def mappings(self, op: Op, hw: Any) -> list[Mapping]: ...

    def cost(self, op: Op, mapping: Mapping, hw: Any, placement: Placement) -> OpCost: ...

    def schedule(self, costs: list[OpCost], hw: Any, workload: Workload, groups: int) -> StepTime: ...


def bound_of(compute_s: float, memory_s: dict[str, float], overhead_s: float = 0.0) -> str:
    """Name the resource whose time dominates: 'compute', 'memory:<level>' or 'overhead'."""
    candidates = {"compute": compute_s, **{f"memory:{k}": v for k, v in memory_s.items()}}
    name, longest = max(candidates.items(), key=lambda kv: kv[1])
    return "overhead" if overhead_s > longest else name


def memory_energy(bytes_by_level: dict[str, float], energy_per_byte: dict[str, float]) -> dict[str, float]:
    return {level: b * energy_per_byte[level] for level, b in bytes_by_level.items() if b}


def sequential_schedule(costs: list[OpCost], hw: Any, workload: Workload, groups: int) -> StepTime:
    """Ops run one after another: the step takes the sum of op times."""
    latency = sum(c.time_s for c in costs)
    tokens = workload.tokens if workload.phase == "prefill" else workload.batch
    return StepTime(latency, tokens / latency, latency)


def single_group(hw: Any, model: ModelSpec, workload: Workload) -> tuple[Workload, int]:
    return workload, 1
