"""Single-model chips (Taalas-HC1-like): the weights are fixed on die next to the MACs.

Each layer owns a region of MACs (sized by ``region_rule``) wired to its weight store, so no
weight ever crosses a memory interface: a weight read costs only the store's read energy.  The
layers form a spatial pipeline.  Decode is autoregressive, so a user's next token can enter
only after its previous one left the last stage: with G groups of users in flight, a round
takes max(one group's trip through all stages, G x the slowest stage).  KV cache lives in
on-chip SRAM, spilling to external DRAM when the chip has one; without DRAM, a KV cache larger
than the SRAM does not fit.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import replace
from typing import Any

import numpy as np

from accelsim.errors import CannotRunError, DoesNotFitError
from accelsim.graph import Attention, Embedding, Graph, MatMul, Op
from accelsim.hardware import common
from accelsim.hardware.arraymath import ceil, vmax
from accelsim.hardware.base import Mapping, OpCost, Placement, StepTime
from accelsim.hardware.spec import HardwiredSpec
from accelsim.model.spec import ModelSpec
from accelsim.units import format_si
from accelsim.workload import Workload

SPATIAL = Mapping("layer region")
HEAD = "head"  # the region holding embedding, final norm and LM head


def _region_key(layer: int | None) -> str:
    return HEAD if layer is None else str(layer)


def stages(graph: Graph) -> dict[str, int]:
    """Weight elements per region, in pipeline order."""
    weights: dict[str, int] = defaultdict(int)
    seen: set[str] = set()
    for op in graph:
        for t in op.inputs:
            if t.role == "weight" and t.name not in seen:
                seen.add(t.name)
                weights[_region_key(op.layer)] += t.elements
    return dict(weights)


def check_model(hw: HardwiredSpec, model: ModelSpec) -> None:
    if model.name != hw.hardwired.model:
        raise CannotRunError(f"{hw.name} has the weights of '{hw.hardwired.model}' fixed in silicon; "
                            f"it cannot run '{model.name}'")


def place(graph: Graph, hw: HardwiredSpec, model: ModelSpec, workload: Workload) -> Placement:
    return allocate(demand(graph, hw, model, workload), hw)


def demand(graph: Graph, hw: HardwiredSpec, model: ModelSpec, workload: Workload) -> common.Demand:
    check_model(hw, model)
    return common.Demand(graph.name, common.footprint(graph), stages(graph))


def allocate(need: common.Demand, hw: HardwiredSpec) -> Placement:
    resident = need.resident
    sram, dram = hw.memory.sram, hw.memory.dram
    kv = resident["kv_cache"] + resident["state"]
    if kv <= sram.capacity:
        kv_level = "sram"
    elif dram is not None and kv <= dram.capacity:
        kv_level = "dram"
    else:
        room = sram.capacity + (dram.capacity if dram else 0.0)
        raise DoesNotFitError(
            f"{need.graph_name} does not fit on {hw.name}: KV cache and state need {format_si(kv, 'B')} "
            f"but the chip holds {format_si(room, 'B')} ({'SRAM only, no DRAM' if dram is None else 'SRAM + DRAM'}); "
            f"lower --batch or --context")
    per_region = need.stage_weights
    if hw.hardwired.region_rule == "proportional":
        total = sum(per_region.values())
        regions = {k: hw.hardwired.macs * w / total for k, w in per_region.items()}
    else:
        regions = {k: hw.hardwired.macs / len(per_region) for k in per_region}
    capacity = {"sram": sram.capacity, **({"dram": dram.capacity} if dram else {})}
    return Placement(level_of={"weight": "rom", "kv_cache": kv_level, "state": kv_level,
                               "activation": "sram"},
                     footprint=resident, capacity=capacity, regions=regions)


def max_users(hw: HardwiredSpec, per_user_bytes: float) -> int | None:
    """Users whose KV cache and recurrent state fit on the chip at once: the same rule as
    ``allocate`` (the whole cache in SRAM, or in DRAM where there is some).  None when a user
    keeps no per-user state, so memory sets no ceiling."""
    dram = hw.memory.dram
    room = max(hw.memory.sram.capacity, dram.capacity if dram is not None else 0.0)
    return math.floor(room / per_user_bytes) if per_user_bytes > 0 else None


def system_figures(hw: HardwiredSpec, workload: Workload, footprint: dict[str, float]) -> dict[str, Any]:
    """The concurrency ceiling at this step's context, for ``Result.system``."""
    per_user = (footprint.get("kv_cache", 0.0) + footprint.get("state", 0.0)) / workload.batch
    return {"kv_state_bytes_per_user": per_user, "max_concurrent_users": max_users(hw, per_user)}


def microbatch(hw: HardwiredSpec, model: ModelSpec, workload: Workload) -> tuple[Workload, int]:
    """Decode keeps up to one group of users per pipeline stage in flight."""
    if workload.phase == "prefill":
        return workload, 1
    n_stages = model.num_layers + 1
    groups = min(workload.batch, n_stages)
    return replace(workload, batch=math.ceil(workload.batch / groups)), groups


def mappings(op: Op, hw: HardwiredSpec) -> list[Mapping]:
    return [SPATIAL]


def params(hw: HardwiredSpec) -> dict[str, Any]:
    """Every number ``terms`` and ``schedule`` read (the fast path stacks these across points)."""
    mem = hw.memory
    levels = {"sram": mem.sram, **({"dram": mem.dram} if mem.dram else {})}
    return {**common.base_params(hw), "macs": hw.hardwired.macs,
            "stage_latency": hw.hardwired.stage_latency, "rom_energy": mem.weights.read_energy,
            "bandwidth": {lvl: spec.bandwidth for lvl, spec in levels.items()},
            "energy": {lvl: spec.energy for lvl, spec in levels.items()}}


def cost(op: Op, mapping: Mapping, hw: HardwiredSpec, placement: Placement) -> OpCost:
    key = _region_key(op.layer)
    label = "weights in ROM" if isinstance(op, (MatMul, Embedding)) else SPATIAL.label
    return common.to_cost(op, terms(op, mapping, hw, params(hw), placement), f"region {key}: {label}")


def terms(op: Op, mapping: Mapping, hw: HardwiredSpec, p: dict[str, Any],
          placement: Placement) -> common.Terms:
    """The cost formulas; every number comes from ``p`` (``params``) and the placement's region
    sizes, so the same code costs one chip or an array of design points."""
    key = _region_key(op.layer)
    region = placement.regions[key]
    share = region / p["macs"]
    n_regions = len(placement.regions)
    clock = p["clock"] * p["eff_compute"]
    moved: dict[str, float] = defaultdict(float)
    for access in (*op.reads(), *op.writes()):
        moved["rom" if access.tensor.role == "weight" else placement.level_of[access.tensor.role]] += access.nbytes
    moved = dict(moved)
    levels = p["bandwidth"]
    # Every stage streams its own KV slice at once: each gets an equal share of the bandwidth.
    memory_s = {lvl: moved[lvl] / (levels[lvl] * p["eff_memory"] / n_regions)
                for lvl in levels if moved.get(lvl) and (lvl == "dram" or isinstance(op, Attention))}
    energy_per_byte = {"rom": p["rom_energy"], **p["energy"]}
    tensor_s = 0.0
    dtype = op.dtype
    kept = common.skip_share(op, placement, p["zero_skipping"])  # zero-skipping datapaths
    if isinstance(op, (MatMul, Attention)):
        dtype = op.compute_dtype if isinstance(op, MatMul) else op.dtype
        tensor_s = ceil(op.macs * kept / region) / clock
    vector_s = op.vector_flops / (p["vector"] * share * p["eff_compute"])
    compute_s = vmax(tensor_s, vector_s)
    time = vmax(compute_s, *memory_s.values(), 0.0)
    energy = common.memory_energy(moved, energy_per_byte)
    if op.macs:
        energy["compute"] = op.macs * kept * p["mac_energy"][dtype]
    if op.vector_flops:
        energy["vector"] = op.vector_flops * p["vector_op"]
    peak = 2.0 * region * p["clock"] if op.macs else p["vector"] * share
    return common.Terms(time, compute_s, memory_s, moved, energy, peak)


def schedule(costs: list[OpCost], hw: HardwiredSpec, workload: Workload, groups: int) -> StepTime:
    return pipeline_step([(c.layer, c.time_s) for c in costs], hw.hardwired.stage_latency, workload, groups)


def pipeline_step(op_times: list[tuple[int | None, Any]], stage_latency, workload: Workload,
                  groups: int) -> StepTime:
    """Combine per-op times (numbers, or arrays over design points) into a pipelined round."""
    stage_time: dict[str, Any] = defaultdict(float)
    for layer, time_s in op_times:
        stage_time[_region_key(layer)] += time_s
    trip = sum(stage_time.values()) + len(stage_time) * stage_latency
    slowest = vmax(*stage_time.values()) + stage_latency
    round_time = vmax(trip, groups * slowest)
    tokens = workload.tokens if workload.phase == "prefill" else workload.batch
    notes: tuple[str, ...] = ()
    if not isinstance(round_time, np.ndarray):  # one design point: say what bounds the round
        bound = "trip-bound" if trip >= groups * slowest else "slowest-stage-bound"
        notes = (f"{groups} group(s) in flight over {len(stage_time)} stages; {bound}",)
    return StepTime(round_time, tokens / round_time, round_time, notes)
