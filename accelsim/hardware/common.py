"""Pieces shared by the kinds that keep weights and KV in an off-chip memory (GPU, systolic):
placement and fit check, per-level byte split, and the cost of ops that run on a vector unit."""
from __future__ import annotations

from accelsim.errors import DoesNotFitError
from accelsim.graph import Graph, Op
from accelsim.hardware.base import Mapping, OpCost, Placement, bound_of, memory_energy
from accelsim.units import format_si

# An activation stays on chip between ops when it takes at most this share of the on-chip level
# (the rest holds operand tiles of the running kernel and other live tensors).
ONCHIP_ACTIVATION_SHARE = 0.25

VECTOR = Mapping("vector unit")


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
    resident = footprint(graph)
    need = sum(resident.values())
    if need > offchip_capacity:
        parts = ", ".join(f"{role} {format_si(b, 'B')}" for role, b in resident.items() if b)
        raise DoesNotFitError(
            f"{graph.name} does not fit on {hw_name}: needs {format_si(need, 'B')} ({parts}) but "
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
        level = placement.level_of[role]
        if role == "activation" and access.tensor.nbytes > limit:
            level = offchip
        totals[level] += access.nbytes
    return totals


def vector_cost(op: Op, hw, placement: Placement, bandwidth: dict[str, float],
                energy_per_byte: dict[str, float], overhead_s: float) -> OpCost:
    """An op on the vector unit: arithmetic at the vector peak, bytes at each level's bandwidth."""
    peak = hw.compute.vector
    compute_s = op.flops / (peak * hw.efficiency.compute)
    moved = bytes_by_level(op, placement)
    memory_s = {lvl: b / bandwidth[lvl] for lvl, b in moved.items() if b}
    time = max(compute_s, *memory_s.values(), 0.0) + overhead_s
    energy = {"vector": op.flops * hw.energy.vector_op, **memory_energy(moved, energy_per_byte)}
    return OpCost(op.name, op.kind, op.layer, time, compute_s, memory_s, moved, energy, op.flops,
                  peak, bound_of(compute_s, memory_s, overhead_s), VECTOR.label, overhead_s)
