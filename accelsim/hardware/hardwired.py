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

from accelsim.errors import AccelsimError, DoesNotFitError
from accelsim.graph import Attention, Embedding, Graph, MatMul, Op
from accelsim.hardware import common
from accelsim.hardware.base import Mapping, OpCost, Placement, StepTime, bound_of, memory_energy
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
        raise AccelsimError(f"{hw.name} has the weights of '{hw.hardwired.model}' fixed in silicon; "
                            f"it cannot run '{model.name}'")


def place(graph: Graph, hw: HardwiredSpec, model: ModelSpec, workload: Workload) -> Placement:
    check_model(hw, model)
    resident = common.footprint(graph)
    sram, dram = hw.memory.sram, hw.memory.dram
    kv = resident["kv_cache"] + resident["state"]
    if kv <= sram.capacity:
        kv_level = "sram"
    elif dram is not None and kv <= dram.capacity:
        kv_level = "dram"
    else:
        room = sram.capacity + (dram.capacity if dram else 0.0)
        raise DoesNotFitError(
            f"{graph.name} does not fit on {hw.name}: KV cache and state need {format_si(kv, 'B')} "
            f"but the chip holds {format_si(room, 'B')} ({'SRAM only, no DRAM' if dram is None else 'SRAM + DRAM'}); "
            f"lower --batch or --context")
    per_region = stages(graph)
    if hw.hardwired.region_rule == "proportional":
        total = sum(per_region.values())
        regions = {k: hw.hardwired.macs * w / total for k, w in per_region.items()}
    else:
        regions = {k: hw.hardwired.macs / len(per_region) for k in per_region}
    capacity = {"sram": sram.capacity, **({"dram": dram.capacity} if dram else {})}
    return Placement(level_of={"weight": "rom", "kv_cache": kv_level, "state": kv_level,
                               "activation": "sram"},
                     footprint=resident, capacity=capacity, regions=regions)


def microbatch(hw: HardwiredSpec, model: ModelSpec, workload: Workload) -> tuple[Workload, int]:
    """Decode keeps up to one group of users per pipeline stage in flight."""
    if workload.phase == "prefill":
        return workload, 1
    n_stages = model.num_layers + 1
    groups = min(workload.batch, n_stages)
    return replace(workload, batch=math.ceil(workload.batch / groups)), groups


def mappings(op: Op, hw: HardwiredSpec) -> list[Mapping]:
    return [SPATIAL]


def cost(op: Op, mapping: Mapping, hw: HardwiredSpec, placement: Placement) -> OpCost:
    key = _region_key(op.layer)
    share = placement.regions[key] / hw.hardwired.macs
    n_regions = len(placement.regions)
    clock = hw.compute.clock * hw.efficiency.compute
    moved: dict[str, float] = defaultdict(float)
    for access in (*op.reads(), *op.writes()):
        moved["rom" if access.tensor.role == "weight" else placement.level_of[access.tensor.role]] += access.nbytes
    moved = dict(moved)
    levels = {"sram": hw.memory.sram, **({"dram": hw.memory.dram} if hw.memory.dram else {})}
    # Every stage streams its own KV slice at once: each gets an equal share of the bandwidth.
    memory_s = {lvl: moved[lvl] / (levels[lvl].bandwidth * hw.efficiency.memory / n_regions)
                for lvl in levels if moved.get(lvl) and (lvl == "dram" or isinstance(op, Attention))}
    energy_per_byte = {"rom": hw.memory.weights.read_energy,
                       **{lvl: spec.energy for lvl, spec in levels.items()}}
    tensor_s = 0.0
    dtype = op.dtype
    if isinstance(op, (MatMul, Attention)):
        dtype = op.compute_dtype if isinstance(op, MatMul) else op.dtype
        tensor_s = math.ceil(op.macs / placement.regions[key]) / clock
    vector_s = op.vector_flops / (hw.compute.vector * share * hw.efficiency.compute)
    compute_s = max(tensor_s, vector_s)
    time = max(compute_s, *memory_s.values(), 0.0)
    energy = {**memory_energy(moved, energy_per_byte)}
    if op.macs:
        energy["compute"] = op.macs * hw.mac_energy(dtype)
    if op.vector_flops:
        energy["vector"] = op.vector_flops * hw.energy.vector_op
    peak = 2.0 * placement.regions[key] * hw.compute.clock if op.macs else hw.compute.vector * share
    label = "weights in ROM" if isinstance(op, (MatMul, Embedding)) else SPATIAL.label
    return OpCost(op.name, op.kind, op.layer, time, compute_s, memory_s, moved, energy, op.flops,
                  peak, bound_of(compute_s, memory_s), f"region {key}: {label}")


def schedule(costs: list[OpCost], hw: HardwiredSpec, workload: Workload, groups: int) -> StepTime:
    stage_time: dict[str, float] = defaultdict(float)
    for c in costs:
        stage_time[_region_key(c.layer)] += c.time_s
    trip = sum(stage_time.values()) + len(stage_time) * hw.hardwired.stage_latency
    slowest = max(stage_time.values()) + hw.hardwired.stage_latency
    round_time = max(trip, groups * slowest)
    tokens = workload.tokens if workload.phase == "prefill" else workload.batch
    note = (f"{groups} group(s) in flight over {len(stage_time)} stages; "
            f"{'trip-bound' if trip >= groups * slowest else 'slowest-stage-bound'}")
    return StepTime(round_time, tokens / round_time, round_time, (note,))
