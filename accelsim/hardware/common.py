"""Pieces shared by the kinds that keep weights and KV in an off-chip memory (GPU, systolic):
placement and fit check, per-level byte split, and the cost of ops that run on a vector unit."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from accelsim.dtypes import DTYPES
from accelsim.errors import DoesNotFitError
from accelsim.graph import Graph, MatMul, Op
from accelsim.hardware.arraymath import nonzero, vmax, where
from accelsim.hardware.base import Mapping, OpCost, Placement, StepTime, bound_of
from accelsim.units import format_si

# An activation stays on chip between ops when it takes at most this share of the on-chip level
# (the rest holds operand tiles of the running kernel and other live tensors).
ONCHIP_ACTIVATION_SHARE = 0.25

VECTOR = Mapping("vector unit")


@dataclass(frozen=True)
class Demand:
    """What a step needs from memory, independent of the chip's sizes: computed once per graph,
    then ``allocate``d against each design point's capacities."""

    graph_name: str
    resident: dict[str, float]
    stage_weights: dict[str, int] = field(default_factory=dict)  # spatial chips: weights per region


def resident_demand(graph, hw, model, workload) -> Demand:
    """The demand of kinds that keep everything resident in one memory pool (GPU, systolic):
    the step's footprint, whatever the chip."""
    return Demand(graph.name, footprint(graph))


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


def to_cost(op: Op, terms: Terms, label: str) -> OpCost:
    """The scalar record of one op's cost (zero-byte levels and zero energies left out)."""
    memory_s = nonzero(terms.memory_s)
    return OpCost(op.name, op.kind, op.layer, terms.time_s, terms.compute_s, memory_s, terms.bytes,
                  nonzero(terms.energy_j), op.flops, terms.peak_flops,
                  bound_of(terms.compute_s, memory_s, terms.overhead_s), label, terms.overhead_s)


def base_params(hw) -> dict[str, Any]:
    """The numbers every kind's formulas read, flattened so the fast path can stack them into
    one array per field across design points."""
    return {
        "clock": hw.compute.clock, "vector": hw.compute.vector, "vector_op": hw.energy.vector_op,
        "eff_compute": hw.efficiency.compute, "eff_memory": hw.efficiency.memory,
        "static": hw.power.static, "zero_skipping": hw.compute.zero_skipping,
        "peak": {d: hw.matrix_peak(d) for d in DTYPES},
        "mac_energy": {d: hw.mac_energy(d) for d in DTYPES},
    }


def memory_energy(bytes_by_level: dict[str, Any], energy_per_byte: dict[str, Any]) -> dict[str, Any]:
    return {level: b * energy_per_byte[level] for level, b in bytes_by_level.items()}


def footprint(graph: Graph) -> dict[str, float]:
    """Bytes resident across steps: every weight once, and the KV cache / recurrent state as it
    stands at the end of the step (cached entries read plus new entries written)."""
    resident = {"weight": graph.weight_bytes, "kv_cache": 0.0, "state": 0.0}
    for op in graph:
        for access in op.reads():
            if access.tensor.role in ("kv_cache", "state"):
                resident[access.tensor.role] += access.tensor.nbytes
        for access in op.writes():
            if access.tensor.role == "kv_cache":
                resident["kv_cache"] += access.tensor.nbytes
    return resident


def offchip_placement(graph: Graph, hw_name: str, offchip: str, offchip_capacity: float,
                      onchip: str, onchip_capacity: float) -> Placement:
    return offchip_allocate(Demand(graph.name, footprint(graph)), hw_name, offchip, offchip_capacity,
                            onchip, onchip_capacity)


def offchip_allocate(demand: Demand, hw_name: str, offchip: str, offchip_capacity: float,
                     onchip: str, onchip_capacity: float) -> Placement:
    resident = demand.resident
    need = sum(resident.values())
    if need > offchip_capacity:
        parts = ", ".join(f"{role} {format_si(b, 'B')}" for role, b in resident.items() if b)
        raise DoesNotFitError(
            f"{demand.graph_name} does not fit on {hw_name}: needs {format_si(need, 'B')} ({parts}) but "
            f"{offchip} holds {format_si(offchip_capacity, 'B')}; use more chips (--tp/--pp), a "
            f"narrower --weight-dtype/--kv-dtype, or a smaller --batch/--context")
    return Placement(level_of={"weight": offchip, "kv_cache": offchip, "state": offchip,
                               "activation": onchip},
                     footprint=resident, capacity={offchip: offchip_capacity, onchip: onchip_capacity})


def bytes_by_level(op: Op, placement: Placement) -> dict[str, float]:
    onchip = placement.level_of["activation"]
    offchip = placement.level_of["weight"]
    limit = placement.capacity[onchip] * ONCHIP_ACTIVATION_SHARE
    totals = {offchip: 0.0, onchip: 0.0}
    for access in (*op.reads(), *op.writes()):
        role = access.tensor.role
        if role == "activation":
            # An activation too large for its share of the on-chip level (which may differ per
            # design point) goes off chip.
            spills = access.tensor.nbytes > limit
            totals[offchip] = totals[offchip] + where(spills, access.nbytes, 0.0)
            totals[onchip] = totals[onchip] + where(spills, 0.0, access.nbytes)
        else:
            totals[placement.level_of[role]] += access.nbytes
    return totals


def vector_terms(op: Op, p: dict[str, Any], placement: Placement, bandwidth: dict[str, Any],
                 energy_per_byte: dict[str, Any], overhead_s) -> Terms:
    """An op on the vector unit: arithmetic at the vector peak, bytes at each level's bandwidth."""
    peak = p["vector"]
    compute_s = op.flops / (peak * p["eff_compute"])
    moved = bytes_by_level(op, placement)
    memory_s = {lvl: b / bandwidth[lvl] for lvl, b in moved.items()}
    time = vmax(compute_s, *memory_s.values(), 0.0) + overhead_s
    energy = {"vector": op.flops * p["vector_op"], **memory_energy(moved, energy_per_byte)}
    return Terms(time, compute_s, memory_s, moved, energy, peak, overhead_s)


def datapath_macs(macs: float, zero_skipping: bool, density: float = 1.0, granularity: int = 1) -> float:
    """MACs the datapath actually performs: all of them on dense hardware; on hardware with
    ``compute.zero_skipping`` only those ``accelsim.density.effective_macs`` leaves for the
    op's input-activation density.  Pure cost hook, read by every kind through ``skip_share``."""
    if not zero_skipping:
        return macs
    from accelsim.density import effective_macs
    return effective_macs(macs, density, granularity)


def op_density(op: Op, placement: Placement) -> float:
    """Input-activation density of ``op`` from the step's profile (``Placement.density``); 1
    without a profile and for every op but a matmul: profiles measure the inputs of linear
    layers (``importers.density``), and attention reads dense Q/K/V projections."""
    if placement.density is None or not isinstance(op, MatMul):
        return 1.0
    return placement.density.density_of(op.name)


def skip_share(op: Op, placement: Placement, zero_skipping) -> Any:
    """Share of ``op``'s MACs the datapath performs (scales its compute time and energy): 1 on
    dense hardware; on ``compute.zero_skipping`` hardware what ``datapath_macs`` leaves.
    ``zero_skipping`` is a flag, or an array of flags over design points."""
    density = op_density(op, placement)
    if density >= 1.0 or not op.macs:
        return 1.0
    return where(zero_skipping, datapath_macs(op.macs, True, density) / op.macs, 1.0)


def host_stepped(kernels: StepTime, extra: Any, key: str) -> StepTime:
    """``kernels`` followed by the runtime's host-side work per step (``key``: scheduling,
    input preparation, sampling, the host/device synchronisation between steps).  The chip idles
    through it, so it adds to the latency and to the busy time, never to the tokens."""
    latency = kernels.latency_s + extra
    tokens = kernels.throughput_tokens_per_s * kernels.latency_s
    notes = kernels.notes
    if not isinstance(extra, np.ndarray) and extra > 0:  # one design point: say it is there
        notes = (*notes, f"step overhead {extra * 1e6:,.0f} us per step ({key}, host-side)")
    return StepTime(latency, tokens / latency, kernels.busy_s + extra, notes)


def step_figures(extra: float) -> dict[str, Any]:
    """The per-step host overhead for ``Result.step_overhead_s`` (absent when zero)."""
    return {"step_overhead_s": extra} if extra > 0 else {}
