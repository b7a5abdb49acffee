"""Choose, per op shape, the mapping its backend offers that finishes soonest."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace
from typing import Any

from accelsim.graph import Collective, Graph, Op
from accelsim.hardware import common, interconnect
from accelsim.hardware.base import Backend, Mapping, OpCost, Placement
from accelsim.memo import GRAPHS_KEPT, ByIdentity, hashable
from accelsim.model.density import DensityProfile

# Each graph's op shape keys, found once per graph (a memoised graph is mapped on many chips).
_KEYS: ByIdentity[tuple[list[tuple[tuple, Op]], list[int]]] = ByIdentity(GRAPHS_KEPT, weak=True)
# Best costs by op shape, per chip and placement, across steps: a one-by-one loop costs the same
# decoder-layer GEMMs on the same chip call after call.  The cost is a pure function of the op's
# shape key, the chip (a frozen spec) and the placement fields the formulas read.
_COSTS: ByIdentity[dict[tuple, OpCost]] = ByIdentity(32)
_COSTS_PER_CHIP = 4096


def best_cost(op: Op, hw: Any, backend: Backend, placement: Placement,
              keep: Callable[[Mapping], bool] | None = None) -> OpCost:
    """Rank every mapping (those ``keep`` accepts) by time, then energy; ties keep the first
    listed.  Collectives are costed by the shared link model whatever the chip's kind."""
    if isinstance(op, Collective):
        return min((interconnect.cost(op, m, hw, placement) for m in interconnect.mappings(op, hw)),
                   key=rank)
    candidates = [m for m in backend.mappings(op, hw) if keep is None or keep(m)]
    # a kind that can rank its mappings together (a GEMM's tilings as arrays) has only the
    # winner costed in full; ``min`` keeps the first of equal keys, as below
    keys = backend.ranks(op, candidates, hw, placement) if len(candidates) > 1 else None
    if keys is not None:
        return backend.ranked_cost(op, candidates, min(range(len(candidates)), key=keys.__getitem__), hw,
                                   placement)
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
    spatial = bool(placement.regions)
    if placement.density is None:
        shapes, index = _KEYS.get((graph,), spatial, lambda: _shape_classes(graph, spatial))
    else:  # a profile's density is per op name: part of the key
        shapes, index = _shape_classes(graph, spatial, placement)
    where = _placement_key(placement)
    memo: dict[tuple, OpCost] = {} if where is None else _COSTS.get((hw, backend), where, dict)
    if len(memo) > _COSTS_PER_CHIP:
        memo.clear()
    best = []
    for key, op in shapes:
        cost = memo.get(key)
        if cost is None:
            cost = memo[key] = best_cost(op, hw, backend, placement)
        best.append(cost)
    label_key, held = graph.label_key()
    return _plan_rows(best, index, (tuple(index), label_key), held, graph.labels)


# Each (op classes, labels) layout's plan for renaming costs into rows, across steps: a fresh
# one-by-one step has a new graph but the same op names and classes as the steps before it
# (names do not depend on batch, context or formats).  Keyed by content; a few kept.
_ROW_PLANS: dict[tuple, _RowPlan] = {}
_ROW_PLANS_KEPT = 16
_ROWS_PER_PLAN = 1024


class _RowPlan:
    """The rows of one layout: each class's labels in op order, where each op's row lies when
    the classes' rows are laid end to end, and the rows made so far per (class, cost)."""

    def __init__(self, index: list[int], labels: list[tuple[str, int | None]], classes: int) -> None:
        self.labels: list[list[tuple[str, int | None]]] = [[] for _ in range(classes)]
        rank = []
        for i, label in zip(index, labels):
            rank.append(len(self.labels[i]))
            self.labels[i].append(label)
        start = [0] * classes
        for i in range(1, classes):
            start[i] = start[i - 1] + len(self.labels[i - 1])
        self.order = [start[i] + r for i, r in zip(index, rank)]
        # (class, id of its cost) -> (the cost, kept alive so its id stays its own; its rows)
        self.made: dict[tuple[int, int], tuple[OpCost, list[OpCost]]] = {}
        # costs asked for once: rows are kept from a cost's second asking (a fresh step's new
        # attention shape never comes back, and held rows are heap every collection walks)
        self.once: dict[tuple[int, int], OpCost] = {}
        self.held: list = []  # what the plan's key names by identity (``Graph.label_key``)

    def rows(self, i: int, cost: OpCost) -> list[OpCost]:
        key = (i, id(cost))
        hit = self.made.get(key)
        if hit is not None and hit[0] is cost:
            return hit[1]
        rows = [_renamed(cost, name, layer) for name, layer in self.labels[i]]
        if self.once.get(key) is cost:
            if len(self.made) >= _ROWS_PER_PLAN:
                self.made.clear()
            self.made[key] = (cost, rows)
        else:
            if len(self.once) >= 4 * _ROWS_PER_PLAN:
                self.once.clear()
            self.once[key] = cost
        return rows


def _rows(best: list[OpCost], index: list[int], labels: list[tuple[str, int | None]]) -> list[OpCost]:
    """Each op's row: its class's cost under the op's name and layer, in op order.  Rows are
    frozen records, equal field by field to ``_renamed(best[i], name, layer)``; a class's rows
    for one cost are made once and shared by every step whose op names and classes are the same
    (``tests/test_speed_seventh_pass.py``)."""
    return _plan_rows(best, index, (tuple(index), ("labels", tuple(labels))), [], lambda: labels)


def _plan_rows(best: list[OpCost], index: list[int], key: tuple, held: list,
               labels: Callable[[], list[tuple[str, int | None]]]) -> list[OpCost]:
    """``_rows`` under ``key`` (the classes and what decides the labels: ``Graph.label_key``,
    whose label lists the plan holds), the labels listed only for a new plan."""
    plan = _ROW_PLANS.get(key)
    if plan is None:
        if len(_ROW_PLANS) >= _ROW_PLANS_KEPT:
            _ROW_PLANS.clear()
        plan = _ROW_PLANS[key] = _RowPlan(index, labels(), len(best))
        plan.held = held  # the label lists the key names by identity
    flat: list[OpCost] = []
    for i, cost in enumerate(best):
        flat.extend(plan.rows(i, cost))
    return list(map(flat.__getitem__, plan.order))


def _shape_classes(graph: Graph, spatial: bool, placement: Placement | None = None
                   ) -> tuple[list[tuple[tuple, Op]], list[int]]:
    """The graph's distinct shape keys, each with its first op, and each op's class (a step has
    a few hundred ops and a dozen or so shapes; keys are deep tuples, costly to hash per op)."""
    shapes: list[tuple[tuple, Op]] = []
    seen: dict[tuple, int] = {}
    # a renamed copy has its original's key (not on spatial chips, whose key holds the layer,
    # nor under a density profile, which is per op name)
    originals = graph.originals() if not spatial and placement is None else None
    # a deferred op (a repeated layer held as a count) is a copy: only the made ops are read
    ops = graph.known() if originals is not None else graph.ops
    index: list[int] = [0] * len(ops)
    # an op that copies none comes before its copies (``Graph.originals`` points each copy to
    # an earlier op that copies none), so classes still number in order of first op
    first = graph.firsts() if originals is not None else None
    for n in (range(len(ops)) if first is None else first):
        op = ops[n]
        assert op is not None  # an op that copies none is made
        key = _shape_key(op, spatial)
        if placement is not None:
            key = (*key, common.op_density(op, placement))
        i = seen.get(key)
        if i is None:
            i = seen[key] = len(shapes)
            shapes.append((key, op))
        index[n] = i
    if originals is not None:  # a copy's class is its original's
        index = list(map(index.__getitem__, originals))
    return shapes, index


def _placement_key(placement: Placement) -> tuple | None:
    """What of a placement the cost formulas read (levels, capacities, spatial regions), or None
    when it cannot key a memo (a density profile, arrays)."""
    if placement.density is not None:
        return None
    key = (tuple(sorted(placement.level_of.items())), tuple(sorted(placement.capacity.items())),
           tuple(sorted(placement.regions.items())))
    return key if hashable(key) else None


def _renamed(cost: OpCost, name: str, layer: int | None) -> OpCost:
    """``cost`` for another op of the same shape: ``dataclasses.replace`` without re-running
    ``__init__`` (a step renames a few hundred costs; the records are frozen and shared)."""
    new = object.__new__(OpCost)
    new.__dict__.update(cost.__dict__)
    new.__dict__["op"] = name
    new.__dict__["layer"] = layer
    return new


def _shape_key(op: Op, spatial: bool) -> tuple:
    """What determines an op's cost: its kind, shape fields and tensors; on spatial chips (one
    region per layer) also its layer."""
    kind = type(op)
    names = _KEY_FIELDS.get(kind)
    if names is None:
        names = _KEY_FIELDS[kind] = tuple(sorted(f.name for f in fields(kind) if f.name not in _NOT_SHAPE))
    # the class itself fixes which fields the values are (in its sorted order), so the values
    # alone follow it: no (name, value) pair per field to build and hash on every lookup
    values = tuple(map(op.__dict__.__getitem__, names))
    tensors = tuple([(t.shape, t.dtype, t.role) for t in op.inputs] + [(t.shape, t.dtype, t.role) for t in op.outputs])
    return (kind, values, tensors, op.layer if spatial else None)


# Each op class's fields that enter its shape key, sorted (found once per class).
_NOT_SHAPE = frozenset(("name", "inputs", "outputs", "layer"))
_KEY_FIELDS: dict[type, tuple[str, ...]] = {}
