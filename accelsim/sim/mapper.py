"""Choose, per op shape, the mapping its backend offers that finishes soonest."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from accelsim.graph import Collective, Graph, Op
from accelsim.hardware import common, interconnect
from accelsim.hardware.base import Backend, Mapping, OpCost, Placement
from accelsim.model.density import DensityProfile


def best_cost(op: Op, hw: Any, backend: Backend, placement: Placement,
              keep: Callable[[Mapping], bool] | None = None) -> OpCost:
    """Rank every mapping (those ``keep`` accepts) by time, then energy; ties keep the first
    listed.  Collectives are costed by the shared link model whatever the chip's kind."""
    if isinstance(op, Collective):
        return min((interconnect.cost(op, m, hw, placement) for m in interconnect.mappings(op, hw)),
                   key=rank)
    candidates = [m for m in backend.mappings(op, hw) if keep is None or keep(m)]
    return min((backend.cost(op, m, hw, placement) for m in candidates), key=rank)


def rank(cost: OpCost) -> tuple[float, float]:
    """The mapper's order: least time, then least energy (the fast path applies it elementwise)."""
    return cost.time_s, cost.energy_total


def map_graph(graph: Graph, hw: Any, backend: Backend, placement: Placement,
              density: DensityProfile | None = None) -> list[OpCost]:
    """Cost every op under its best mapping; ops of identical shape (and input density) are
    mapped once.  ``density`` (``Workload.density``) reaches every kind's cost through the
    placement, so zero-skipping hardware of any kind reads it the same way."""
    if density is not None:
        placement = replace(placement, density=density)
    memo: dict[tuple, OpCost] = {}
    costs = []
    for op in graph:
        key = (*_shape_key(op, spatial=bool(placement.regions)), common.op_density(op, placement))
        if key not in memo:
            memo[key] = best_cost(op, hw, backend, placement)
        costs.append(replace(memo[key], op=op.name, layer=op.layer))
    return costs


def _shape_key(op: Op, spatial: bool) -> tuple:
    """What determines an op's cost: its kind, shape fields and tensors; on spatial chips (one
    region per layer) also its layer."""
    fields = {k: v for k, v in vars(op).items() if k not in ("name", "inputs", "outputs", "layer")}
    tensors = tuple((t.shape, t.dtype, t.role) for t in (*op.inputs, *op.outputs))
    return (type(op).__name__, tuple(sorted(fields.items())), tensors, op.layer if spatial else None)
