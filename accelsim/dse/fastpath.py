"""The analytical cost evaluated over many design points at once.

The graph is lowered once per workload and ops of one shape are costed once (as the mapper
memoises them).  Each backend's cost formulas (``terms``) are called with numpy arrays of the
hardware numbers (``params``), one element per design point, so the arithmetic is exactly the
scalar backend's arithmetic: there is no second copy of any formula here, only the plumbing
that the scalar path (``accelsim.api.simulate_lowered`` and ``sim.mapper``) does per chip.

Kinds whose backend does not expose ``demand``/``allocate``/``params``/``terms`` fall back to
one-by-one evaluation, and the caller is told so.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from accelsim import hardware
from accelsim.dse import metrics
from accelsim.dse.evaluate import Job, base_row, evaluate_scalar, failed_row
from accelsim.dse.space import dimension_of
from accelsim.errors import ConfigError, DoesNotFitError
from accelsim.hardware.base import Placement
from accelsim.model.lower import lower
from accelsim.sim.mapper import _shape_key

VECTORISED_API = ("demand", "allocate", "params", "terms", "mappings", "microbatch", "schedule")


@dataclass
class _Timed:
    """What ``schedule`` reads of an op cost: its layer and its time (array over points)."""

    layer: int | None
    time_s: Any


def vectorised(kind) -> bool:
    return all(hasattr(kind, name) for name in VECTORISED_API)


def stack(dicts: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-point parameter dicts -> one dict of arrays (nested dicts stacked leaf by leaf)."""
    first = dicts[0]
    out: dict[str, Any] = {}
    for key, value in first.items():
        if isinstance(value, dict):
            out[key] = stack([d[key] for d in dicts])
        else:
            out[key] = np.array([d[key] for d in dicts], dtype=float)
    return out


def _structure(point: dict[str, Any]) -> tuple:
    """Values that change a chip's structure rather than its numbers (lists, names, flags):
    points are costed together only when these agree."""
    def structural(v: Any) -> bool:
        if isinstance(v, (bool, list, dict)):
            return True
        return isinstance(v, str) and dimension_of(v) is None
    return tuple(sorted((k, repr(v)) for k, v in point.items() if structural(v)))


def evaluate_points(job: Job, points: list[dict[str, Any]], notes: list[str] | None = None) -> list[dict]:
    """Rows for ``points`` equal (to float rounding) to ``evaluate_scalar`` on each point."""
    rows: list[dict | None] = [None] * len(points)
    groups: dict[tuple, list[tuple[int, Any]]] = defaultdict(list)
    for i, point in enumerate(points):
        try:
            hw = job.space.hardware(point)
        except ConfigError as err:
            rows[i] = failed_row(point, metrics.STATUS_INVALID, err.one_line())
            continue
        groups[(hw.kind, _structure(point))].append((i, hw))
    for (kind_name, _), members in groups.items():
        kind = hardware.KINDS[kind_name][1]
        if not vectorised(kind):
            if notes is not None:
                notes.append(f"kind '{kind_name}' has no vectorised cost: evaluated one by one")
            for i, _hw in members:
                rows[i] = evaluate_scalar(job, points[i])
            continue
        for i, row in _evaluate_group(job, kind, points, members):
            rows[i] = row
    return rows  # type: ignore[return-value]


def _evaluate_group(job: Job, kind, points, members):
    hw0 = members[0][1]
    forced = getattr(getattr(hw0, "hardwired", None), "weight_dtype", None)
    spec = job.model.with_dtypes(weight=forced)
    workload = job.workload
    full_graph = lower(spec, workload)
    full_need = kind.demand(full_graph, hw0, spec, workload)
    group_workload, groups = kind.microbatch(hw0, spec, workload)
    graph = full_graph if group_workload == workload else lower(spec, group_workload)
    need = full_need if graph is full_graph else kind.demand(graph, hw0, spec, group_workload)

    # Placement decides which level holds what: points that place alike are costed together.
    by_layout: dict[tuple, list[tuple[int, Any, Placement]]] = defaultdict(list)
    for i, hw in members:
        try:
            kind.allocate(full_need, hw)
            placement = kind.allocate(need, hw) if need is not full_need else kind.allocate(full_need, hw)
        except DoesNotFitError as err:
            yield i, failed_row(points[i], metrics.STATUS_NO_FIT, err.one_line())
            continue
        layout = (tuple(sorted(placement.level_of.items())), tuple(placement.capacity),
                  tuple(placement.regions))
        by_layout[layout].append((i, hw, placement))

    for chunk in by_layout.values():
        yield from _cost_layout(kind, graph, hw0, chunk, workload, groups, points)


def _cost_layout(kind, graph, hw0, chunk, workload, groups, points):
    indices = [i for i, _, _ in chunk]
    hws = [hw for _, hw, _ in chunk]
    p = stack([kind.params(hw) for hw in hws])
    first = chunk[0][2]
    placement = Placement(
        level_of=first.level_of, footprint=first.footprint,
        capacity={k: np.array([pl.capacity[k] for _, _, pl in chunk]) for k in first.capacity},
        regions={k: np.array([pl.regions[k] for _, _, pl in chunk]) for k in first.regions})

    memo: dict[tuple, tuple[Any, Any]] = {}
    timed: list[_Timed] = []
    energy = 0.0
    for op in graph:
        key = _shape_key(op, spatial=bool(placement.regions))
        if key not in memo:
            memo[key] = _best(kind, op, hw0, p, placement)
        time_s, energy_j = memo[key]
        timed.append(_Timed(op.layer, time_s))
        energy = energy + energy_j
    step = kind.schedule(timed, hw0, workload, groups)
    latency = np.broadcast_to(step.latency_s, (len(chunk),))
    energy_total = energy * groups + p["static"] * step.busy_s
    silicon = [metrics.silicon(hw) for hw in hws]
    values = metrics.step_metrics(latency, np.broadcast_to(step.throughput_tokens_per_s, latency.shape),
                                  np.broadcast_to(energy_total, latency.shape), workload,
                                  area_mm2=np.array([s.area_mm2 for s in silicon]),
                                  die_usd=np.array([s.die_usd for s in silicon]))
    for j, i in enumerate(indices):
        yield i, {**base_row(points[i]), "status": metrics.STATUS_OK, "reason": "",
                  **{name: float(v[j]) for name, v in values.items()}}


def _best(kind, op, hw0, p, placement) -> tuple[Any, Any]:
    """Per point, the mapping with the least time, then the least energy; ties keep the first
    listed (``sim.mapper.best_cost``'s rule, elementwise)."""
    best_t = best_e = None
    for mapping in kind.mappings(op, hw0):
        t = kind.terms(op, mapping, hw0, p, placement)
        time_s, energy_j = np.asarray(t.time_s, dtype=float), np.asarray(t.energy_total, dtype=float)
        if best_t is None:
            best_t, best_e = time_s, energy_j
            continue
        better = (time_s < best_t) | ((time_s == best_t) & (energy_j < best_e))
        best_t = np.where(better, time_s, best_t)
        best_e = np.where(better, energy_j, best_e)
    return best_t, best_e
