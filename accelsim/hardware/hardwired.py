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
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from accelsim.config.units import format_si
from accelsim.dtypes import bits
from accelsim.errors import CannotRunError, DoesNotFitError
from accelsim.graph import Attention, Embedding, Graph, MatMul, Op
from accelsim.hardware import common, power
from accelsim.hardware.arraymath import ceil, vmax
from accelsim.hardware.base import (
    HEAD,
    Backend,
    BackendBase,
    Demand,
    Mapping,
    OpCost,
    Parallelism,
    Placement,
    Plan,
    StepTime,
    Terms,
    Timed,
    memory_energy,
    pipelined_round,
    refuse_lone_op,
    streamed_prefill,
    to_cost,
)
from accelsim.hardware.spec import HardwiredSpec, MemoryLevel, peaks_agree
from accelsim.model.spec import ModelSpec
from accelsim.workload import Workload

SPATIAL = Mapping("layer region")


def region_key(layer: int | None) -> str:
    """The region of ``layer``'s ops (``HEAD``: embedding, final norm and LM head)."""
    return HEAD if layer is None else str(layer)


def stages(graph: Graph) -> dict[str, int]:
    """Weight elements per region, in pipeline order."""
    weights: dict[str, int] = defaultdict(int)
    seen: set[str] = set()
    for op in graph:
        for t in op.inputs:
            if t.role == "weight" and t.name not in seen:
                seen.add(t.name)
                weights[region_key(op.layer)] += t.elements
    return dict(weights)


def check_model(hw: HardwiredSpec, model: ModelSpec | None) -> None:
    if model is None:
        raise CannotRunError(f"{hw.name} holds the weights of '{hw.hardwired.model}' in silicon; "
                             f"it runs that model only, not an imported graph or a lone op")
    if model.name != hw.hardwired.model:
        raise CannotRunError(f"{hw.name} has the weights of '{hw.hardwired.model}' fixed in silicon; "
                            f"it cannot run '{model.name}'")


def _allocate(need: Demand, hw: HardwiredSpec) -> Placement:
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
    macs = hw.hardwired.macs  # read once, not once per region (a sweep places every point)
    if hw.hardwired.region_rule == "proportional":
        total = sum(per_region.values())
        regions = {k: macs * w / total for k, w in per_region.items()}
    else:
        regions = {k: macs / len(per_region) for k in per_region}
    capacity = {"sram": sram.capacity, **({"dram": dram.capacity} if dram else {})}
    return Placement(level_of={"weight": "rom", "kv_cache": kv_level, "state": kv_level,
                               "activation": "sram"},
                     footprint=resident, capacity=capacity, regions=regions)


def _allocate_columns(need: Demand, hw: Any) -> tuple[np.ndarray, list[Placement]] | None:
    """``_allocate`` over design points (``Backend.allocate_columns``; ``hw`` seen column-wise):
    the same comparisons and the same arithmetic, elementwise."""
    resident = need.resident
    sram, dram = hw.memory.sram, hw.memory.dram
    kv = resident["kv_cache"] + resident["state"]
    n = len(hw)
    macs = np.broadcast_to(np.asarray(hw.hardwired.macs, dtype=float), (n,))
    per_region = need.stage_weights
    # The MAC count is an integer (read here as float64, exact below 2**53); Python multiplies it
    # by a region's weights exactly and rounds once when dividing, as float64 does while the
    # product stays below 2**53 -- past that, the region is worked out per point in Python.
    if not (per_region and np.all(np.floor(macs) == macs) and np.all(np.abs(macs) < 2.0**53)):
        return None
    total = sum(per_region.values())
    largest = float(np.max(np.abs(macs))) if n else 0.0

    def share(w: int) -> np.ndarray:
        if largest * abs(w) < 2.0**53 and abs(total) < 2**53:
            return macs * float(w) / float(total)
        return np.fromiter((int(m) * w / total for m in macs.tolist()), dtype=float, count=n)

    if hw.hardwired.region_rule == "proportional":
        regions = {k: share(w) for k, w in per_region.items()}
    else:
        regions = {k: macs / float(len(per_region)) for k in per_region}
    capacity = {"sram": np.broadcast_to(np.asarray(sram.capacity, dtype=float), (n,)),
                **({"dram": np.broadcast_to(np.asarray(dram.capacity, dtype=float), (n,))} if dram else {})}
    in_sram = kv <= capacity["sram"]
    in_dram = ~in_sram & (kv <= capacity["dram"]) if dram is not None else np.zeros(n, dtype=bool)
    placements = [Placement(level_of={"weight": "rom", "kv_cache": level, "state": level, "activation": "sram"},
                            footprint=resident, capacity=capacity, regions=regions) for level in ("sram", "dram")]
    return np.where(in_sram, 0, np.where(in_dram, 1, -1)), placements


def kv_room(hw: HardwiredSpec) -> float:
    """Bytes of KV cache and state the chip holds: the whole cache in SRAM, or in DRAM where
    there is some (``_allocate``'s rule)."""
    dram = hw.memory.dram
    return max(hw.memory.sram.capacity, dram.capacity if dram is not None else 0.0)


def max_users(hw: HardwiredSpec, per_user_bytes: float) -> int | None:
    """Users whose KV cache and recurrent state fit on the chip at once (``kv_room``).  None
    when a user keeps no per-user state, so memory sets no ceiling."""
    return math.floor(kv_room(hw) / per_user_bytes) if per_user_bytes > 0 else None


def _params(hw: HardwiredSpec) -> dict[str, Any]:
    """Every number ``terms`` and ``schedule`` read (the fast path stacks these across points)."""
    mem = hw.memory
    levels = {"sram": mem.sram, **({"dram": mem.dram} if mem.dram else {})}
    return {**common.base_params(hw), "macs": hw.hardwired.macs,
            "stage_latency": hw.hardwired.stage_latency, "rom_energy": mem.weights.read_energy,
            "bandwidth": {lvl: spec.bandwidth for lvl, spec in levels.items()},
            "energy": {lvl: spec.energy for lvl, spec in levels.items()},
            "active": power.active_w(hw, tuple(levels), "dram" if mem.dram else None)}


def _terms(op: Op, mapping: Mapping, hw: HardwiredSpec, p: dict[str, Any],
           placement: Placement) -> Terms:
    """The cost formulas; every number comes from ``p`` (``params``) and the placement's region
    sizes, so the same code costs one chip or an array of design points."""
    key = region_key(op.layer)
    region = placement.regions[key]
    share = region / p["macs"]
    n_regions = len(placement.regions)
    clock = p["clock"] * p["eff_compute"]
    moved: dict[str, Any] = defaultdict(float)
    for access in common.accesses(op):  # a MoE op reads only its touched experts' weights
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
        dtype = op.compute_dtype if isinstance(op, (MatMul, Attention)) else op.dtype
        tensor_s = ceil(op.macs * kept / region) / clock
    vector_s = op.vector_flops / (p["vector"] * share * p["eff_compute"])
    compute_s = vmax(tensor_s, vector_s)
    time = vmax(compute_s, *memory_s.values(), 0.0)
    energy = memory_energy(moved, energy_per_byte)
    if op.macs:
        energy["compute"] = op.macs * kept * p["mac_energy"][dtype]
    if op.vector_flops:
        energy["vector"] = op.vector_flops * p["vector_op"]
    peak = 2.0 * region * p["clock"] if op.macs else p["vector"] * share
    # The op busies its own region's units and its region's share of the SRAM/DRAM ports.
    return power.with_activity(op, Terms(time, compute_s, memory_s, moved, energy, peak), p, kept,
                               compute_share=share, memory_share=1.0 / n_regions)


def pipeline_step(op_times: Sequence[tuple[int | None, Any]], stage_latency: Any, workload: Workload,
                  groups: int) -> StepTime:
    """Combine per-op times (numbers, or arrays over design points) into a pipelined round:
    each op's time goes to its layer's region, the regions are the stages of
    ``base.pipelined_round``."""
    stage_time: dict[str, Any] = defaultdict(float)
    for layer, time_s in op_times:
        stage_time[region_key(layer)] += time_s
    if workload.phase == "prefill":  # the prompt streams through the regions
        return streamed_prefill(list(stage_time.values()), workload, stage_latency)
    return pipelined_round(list(stage_time.values()), workload, groups, stage_latency)


class HardwiredBackend(BackendBase):
    """The ``hardwired`` kind: one model's weights in silicon, its layers a spatial pipeline."""

    name = "hardwired"
    spec = HardwiredSpec

    def demand(self, graph: Graph, hw: HardwiredSpec, model: ModelSpec | None,
               workload: Workload | None) -> Demand:
        check_model(hw, model)
        return Demand(graph.name, common.footprint(graph), stages(graph))

    def allocate(self, need: Demand, hw: HardwiredSpec) -> Placement:
        return _allocate(need, hw)

    def allocate_columns(self, need: Demand, hw: Any) -> tuple[np.ndarray, list[Placement]] | None:
        return _allocate_columns(need, hw)

    def check_columns(self, hw: Any) -> dict[str, Any]:
        return {"_peak_matches_macs": peaks_agree(hw.peak_checks())}

    def plan(self, graph: Graph, hw: HardwiredSpec, parallelism: Parallelism | None) -> Plan:
        if parallelism is not None and parallelism.chips != 1:
            raise CannotRunError(f"{hw.name} is a single-model chip with its weights in silicon; "
                                 f"it does not take --chips/--tp/--pp/--ep")
        return super().plan(graph, hw, None)

    def microbatch(self, hw: HardwiredSpec, model: ModelSpec | None,
                   workload: Workload) -> tuple[Workload, int]:
        """Decode keeps up to one group of users per pipeline stage in flight."""
        if workload.phase == "prefill":
            return workload, 1
        check_model(hw, model)
        assert model is not None
        n_stages = model.num_layers + 1
        groups = min(workload.batch, n_stages)
        return replace(workload, batch=math.ceil(workload.batch / groups)), groups

    def params(self, hw: HardwiredSpec) -> dict[str, Any]:
        return _params(hw)

    def mappings(self, op: Op, hw: HardwiredSpec) -> list[Mapping]:
        return [SPATIAL]

    def terms(self, op: Op, mapping: Mapping, hw: HardwiredSpec, p: dict[str, Any],
              placement: Placement) -> Terms:
        return _terms(op, mapping, hw, p, placement)

    def cost(self, op: Op, mapping: Mapping, hw: HardwiredSpec, placement: Placement) -> OpCost:
        label = "weights in ROM" if isinstance(op, (MatMul, Embedding)) else SPATIAL.label
        t = _terms(op, mapping, hw, self.cost_params(hw), placement)
        return to_cost(op, t, f"region {region_key(op.layer)}: {label}")

    def check_lone_op(self, hw: HardwiredSpec) -> None:
        refuse_lone_op(hw, self.name)

    def region_key(self, layer: int | None) -> str:
        return region_key(layer)

    def schedule(self, costs: Sequence[Timed], hw: HardwiredSpec, workload: Workload,
                 groups: int) -> StepTime:
        return pipeline_step([(c.layer, c.time_s) for c in costs], hw.hardwired.stage_latency,
                             workload, groups)

    def system_figures(self, hw: HardwiredSpec, workload: Workload,
                       footprint: dict[str, float]) -> dict[str, Any]:
        """The concurrency ceiling at this step's context, for ``Result.system``."""
        per_user = (footprint.get("kv_cache", 0.0) + footprint.get("state", 0.0)) / workload.batch
        return {"kv_state_bytes_per_user": per_user, "max_concurrent_users": max_users(hw, per_user)}

    def forced_weight_dtype(self, hw: HardwiredSpec) -> str | None:
        return hw.hardwired.weight_dtype

    def fixed_model(self, hw: HardwiredSpec) -> str | None:
        return hw.hardwired.model

    def offchip_level(self, hw: HardwiredSpec) -> str | None:
        return "dram" if hw.memory.dram is not None else None

    def main_memory(self, hw: HardwiredSpec) -> MemoryLevel:
        return hw.memory.dram or hw.memory.sram

    def kv_capacity(self, hw: HardwiredSpec, weight_bytes: float, chips: int) -> float:
        return kv_room(hw)  # the weights are in silicon: they take none of it

    def onchip_capacity(self, hw: HardwiredSpec) -> float:
        return hw.memory.sram.capacity

    def pipelined(self, hw: HardwiredSpec) -> bool:
        return True

    def streams_prefill(self, hw: HardwiredSpec) -> bool:
        return True

    def stage_latency(self, hw: HardwiredSpec) -> float:
        return hw.hardwired.stage_latency

    def die_storage(self, hw: HardwiredSpec, model: ModelSpec | None) -> tuple[Any, Any]:
        """The SRAM, and the weights of ``model`` in silicon: ROM bits, or SRAM bytes where the
        weight store is SRAM.  A model without a published parameter count (or none given)
        contributes no modelled ROM area."""
        sram = hw.memory.sram.capacity
        params = model.published.params_total if model is not None and model.published is not None else 0
        rom_bits = params * bits(hw.hardwired.weight_dtype)
        if hw.memory.weights.technology == "sram":
            return sram + rom_bits / 8, 0.0
        return sram, rom_bits


BACKEND: Backend = HardwiredBackend()
