"""SRAM-only dataflow chips (Groq-LPU-like, Cerebras-WSE-3-like): no off-chip memory at all.

Weights, KV cache and activations all live in on-chip SRAM, so a model needs as many chips as
its bytes fill: ``ceil(resident bytes / SRAM per chip)`` unless ``--chips`` asks for more.  The
ops are laid end to end by resident bytes and the line is cut into equal parts, one per chip
(``byte_stages``, which splits an op that straddles a cut); the chips form a layer pipeline
joined by chip-to-chip sends, combined by the same round rule as every pipeline
(``base.pipelined_round``).  On a chip an op runs at the matrix or vector peak or at SRAM
bandwidth, whichever is slower, plus a fixed per-op issue time; its SRAM bytes are the bytes it
reads and writes (``common.accesses``: a MoE op reads only its touched experts).
"""
from __future__ import annotations

import math
from typing import Any

from accelsim.config.units import format_si
from accelsim.errors import AccelsimError, CannotSplitError, DoesNotFitError
from accelsim.graph import Attention, Graph, MatMul, Op
from accelsim.hardware import common, power
from accelsim.hardware.arraymath import vmax
from accelsim.hardware.base import (
    Backend,
    BackendBase,
    Demand,
    Mapping,
    OpCost,
    Placement,
    Plan,
    Terms,
    memory_energy,
    refuse_lone_op,
    to_cost,
)
from accelsim.hardware.spec import DataflowMemory, DataflowSection, DataflowSpec, MemoryLevel
from accelsim.model.spec import ModelSpec
from accelsim.transform import MAX_CHIPS, Parallelism, byte_stages, resident_bytes, shard
from accelsim.workload import Workload

__all__ = ["DataflowBackend", "DataflowMemory", "DataflowSection", "DataflowSpec"]

STREAMING = Mapping("SRAM-fed units")
# Chips tried beyond ceil(bytes / SRAM) when ops that cannot be cut leave one chip over-full.
EXTRA_CHIPS_TRIED = 4


def tiers(hw: DataflowSpec) -> dict[str, MemoryLevel]:
    """The chip's memory levels, SRAM first, then its off-chip tiers in order."""
    mem = hw.memory
    return {name: level for name, level in (("sram", mem.sram), ("hbm", mem.hbm), ("ddr", mem.ddr))
            if level is not None}


def chip_room(hw: DataflowSpec) -> float:
    """Bytes one chip can hold resident: its SRAM, or its largest tier where weights may live
    off chip (a model lives in one tier, activations staged through the SRAM)."""
    return max(level.capacity for level in tiers(hw).values())


def chips_needed(graph: Graph, hw: DataflowSpec) -> int:
    """Chips that hold every resident byte as ``byte_stages`` lays them out (a tied
    embedding/LM-head table counts at both ends of the pipeline)."""
    return max(1, math.ceil(sum(resident_bytes(graph)) / chip_room(hw)))


class DataflowBackend(BackendBase):
    """The ``dataflow`` kind: everything in SRAM, as many chips as the bytes need."""

    name = "dataflow"
    spec = DataflowSpec

    def demand(self, graph: Graph, hw: DataflowSpec, model: ModelSpec | None,
               workload: Workload | None) -> Demand:
        return common.resident_demand(graph)

    def allocate(self, need: Demand, hw: DataflowSpec) -> Placement:
        """Everything in SRAM when it fits; else weights, KV cache and state in the first
        off-chip tier that holds them, activations in SRAM."""
        resident = need.resident
        total = sum(resident.values())
        levels = tiers(hw)
        home = next((name for name, level in levels.items() if total <= level.capacity), None)
        if home is None:
            room = chip_room(hw)
            raise DoesNotFitError(
                f"{need.graph_name} does not fit on one {hw.name} chip: needs {format_si(total, 'B')} "
                f"but its largest memory holds {format_si(room, 'B')}; give more --chips")
        level_of = {"weight": home, "kv_cache": home, "state": home, "activation": "sram"}
        return Placement(level_of=level_of, footprint=resident,
                         capacity={name: level.capacity for name, level in levels.items()})

    def plan(self, graph: Graph, hw: DataflowSpec, parallelism: Parallelism | None) -> Plan:
        """A system of ``chips`` chips: tp-way tensor parallelism inside each pipeline stage,
        pp stages laid end to end by bytes.  A lone ``--chips N`` (or ``--tp N``) gives the
        system's size, split by ``split_rules``; ``--tp`` with ``--pp`` (or ``--chips``) gives
        the split itself.  Without either, the system is as many chips as the bytes need."""
        requested = parallelism or Parallelism()
        if requested.ep > 1 or requested.dp > 1:
            raise AccelsimError(f"{hw.name} is a dataflow system: give --chips (its size), --tp "
                                f"and --pp; --ep and --dp-attn are not modelled on it")
        room = chip_room(hw)
        least = chips_needed(graph, hw)
        if least > MAX_CHIPS:  # refused before laying out tens of thousands of stages
            raise DoesNotFitError(f"{graph.name} needs {least:,} {hw.name} chips ({format_si(room, 'B')} "
                                  f"each), more than the {MAX_CHIPS:,} a system may have; use a smaller "
                                  f"--batch/--context or a narrower --weight-dtype/--kv-dtype")
        if parallelism is None:  # as many chips as the bytes need, split by the rule
            tps = divisors_down(hw.dataflow.node_chips)
        else:
            size = requested.chips or 1
            if size < least:
                raise DoesNotFitError(f"{graph.name} needs at least {least} {hw.name} chips "
                                      f"({format_si(room, 'B')} each), not {size}")
            tps = (requested.tp,) if requested.pp > 1 else split_rules(hw, size)
        # The split the rule prefers may not divide this model (4 heads over a node of 8, an op
        # tensor parallelism cannot cut): the system then takes the next smaller one, down to
        # whole-layer pipeline stages, rather than refusing a model its chips can hold.
        refusal: CannotSplitError | None = None
        for tp in tps:
            start = math.ceil(least / tp)
            tried = (tuple(range(start, start + EXTRA_CHIPS_TRIED + 1)) if parallelism is None
                     else ((requested.chips or 1) // tp,))
            try:
                plan = _first_fit(graph, tp, tried, room)
            except CannotSplitError as err:
                refusal = refusal or err
                continue
            if plan is None:
                raise DoesNotFitError(f"{graph.name} does not split onto tp={tp} x pp={tried[0]}..{tried[-1]} "
                                      f"{hw.name} chips: an op that cannot be cut exceeds one chip's SRAM")
            return plan
        assert refusal is not None  # tps is never empty
        raise refusal

    def spans_chips(self, hw: DataflowSpec) -> bool:
        return True

    def streams_prefill(self, hw: DataflowSpec) -> bool:
        return True

    def params(self, hw: DataflowSpec) -> dict[str, Any]:
        levels = tiers(hw)
        return {**common.base_params(hw), "op_overhead": hw.dataflow.op_overhead,
                "stationary": hw.dataflow.weights == "stationary",
                "bandwidth": {name: level.bandwidth for name, level in levels.items()},
                "energy": {name: level.energy for name, level in levels.items()},
                "active": power.active_w(hw, tuple(levels), tuple(n for n in levels if n != "sram"))}

    def mappings(self, op: Op, hw: DataflowSpec) -> list[Mapping]:
        return [STREAMING]

    def terms(self, op: Op, mapping: Mapping, hw: DataflowSpec, p: dict[str, Any],
              placement: Placement) -> Terms:
        dtype = op.compute_dtype if isinstance(op, (MatMul, Attention)) else op.dtype
        matrix = p["peak"][dtype]
        peak = matrix if op.tensor_flops else p["vector"]
        kept = common.skip_share(op, placement, p["zero_skipping"])  # zero-skipping datapaths
        tensor_s = kept * op.tensor_flops / (matrix * p["eff_compute"]) if op.tensor_flops else 0.0
        vector_s = op.vector_flops / (p["vector"] * p["eff_compute"])
        compute_s = vmax(tensor_s, vector_s)
        share = 1.0
        if placement.level_of["weight"] == "sram":
            moved = {"sram": sum(a.nbytes for a in common.accesses(op))}
            memory_s = {"sram": moved["sram"] / (p["bandwidth"]["sram"] * p["eff_memory"])}
            if p["stationary"]:
                memory_s["sram"], share = resident_read_s(op, placement, p)
        else:  # weights and KV stream from their off-chip tier, activations stay in SRAM
            moved = common.bytes_by_level(op, placement)
            memory_s = {lvl: b / (p["bandwidth"][lvl] * p["eff_memory"]) for lvl, b in moved.items()}
        overhead = p["op_overhead"]
        time = vmax(compute_s, *memory_s.values()) + overhead
        energy = memory_energy(moved, p["energy"])
        if op.macs:
            energy["compute"] = op.macs * kept * p["mac_energy"][dtype]
        if op.vector_flops:
            energy["vector"] = op.vector_flops * p["vector_op"]
        return power.with_activity(op, Terms(time, compute_s, memory_s, moved, energy, peak, overhead), p, kept,
                                   memory_share=share)

    def cost(self, op: Op, mapping: Mapping, hw: DataflowSpec, placement: Placement) -> OpCost:
        label = "matrix units" if isinstance(op, (MatMul, Attention)) else "vector units"
        home = placement.level_of["weight"]
        source = "SRAM" if home == "sram" else f"{home.upper()} through SRAM"
        return to_cost(op, self.terms(op, mapping, hw, self.cost_params(hw), placement),
                       f"{label} fed from {source}")

    def check_lone_op(self, hw: DataflowSpec) -> None:
        refuse_lone_op(hw, self.name)

    def overhead_keys(self, hw: DataflowSpec) -> dict[str, str]:
        return {"op": "dataflow.op_overhead"}

    def offchip_level(self, hw: DataflowSpec) -> str | None:
        return next((name for name in tiers(hw) if name != "sram"), None)

    def main_memory(self, hw: DataflowSpec) -> MemoryLevel:
        return hw.memory.hbm or hw.memory.ddr or hw.memory.sram

    def kv_capacity(self, hw: DataflowSpec, weight_bytes: float, chips: int) -> float:
        return chip_room(hw) * chips - weight_bytes

    def onchip_capacity(self, hw: DataflowSpec) -> float:
        return hw.memory.sram.capacity

    def die_storage(self, hw: DataflowSpec, model: ModelSpec | None) -> tuple[Any, Any]:
        return hw.memory.sram.capacity, 0.0


def resident_read_s(op: Op, placement: Placement, p: dict[str, Any]) -> tuple[Any, Any]:
    """(SRAM seconds, share of the SRAM busy) of ``op`` on a chip whose weights stay where they
    are (``dataflow.weights: stationary``): the op runs on the cores that hold its weights and KV
    cache, which the compiler spreads over the whole chip in proportion to bytes, so it reads
    them at its share of the chip's bandwidth -- its resident bytes over the chip's -- and takes
    the chip's resident bytes over the chip's bandwidth whatever its size.  Activations cross
    the on-chip fabric at the full rate.  At batch 1 one layer's cores work while the rest wait,
    which the streamed model (every op at the whole chip's bandwidth) leaves out."""
    resident = sum(a.nbytes for a in common.accesses(op) if a.tensor.role != "activation")
    passing = sum(a.nbytes for a in common.accesses(op) if a.tensor.role == "activation")
    held = sum(placement.footprint.values())
    rate = p["bandwidth"]["sram"] * p["eff_memory"]
    if not resident or not held:
        return passing / rate, 1.0
    return (held + passing) / rate, resident / held


def split_rules(hw: DataflowSpec, chips: int) -> tuple[int, ...]:
    """Tensor-parallel chips inside each stage of a system of ``chips`` chips, preferred first,
    where the vendor does not say: the chips of one node (``dataflow.node_chips``, joined all to
    all, as a GroqNode's 8 cards) or the largest divisor of ``chips`` not above it, then the
    smaller divisors down to 1."""
    return tuple(d for d in divisors_down(chips) if d <= hw.dataflow.node_chips)


def divisors_down(n: int) -> tuple[int, ...]:
    return tuple(d for d in range(n, 0, -1) if n % d == 0)


def _first_fit(graph: Graph, tp: int, tried: tuple[int, ...], room: float) -> Plan | None:
    """The first of ``tried`` pipeline depths whose stages, ``tp``-way split, each fit in
    ``room`` bytes; None when none does.  Raises ``CannotSplitError`` when ``tp`` cannot split
    the graph at all."""
    for pp in tried:
        split = _splitter(tp, pp)
        if all(sum(common.footprint(s).values()) <= room for s in split(graph)):
            return Plan(Parallelism(tp=tp, pp=pp), split)
    return None


def _splitter(tp: int, pp: int):
    layout = Parallelism(tp=tp)

    def split(graph: Graph) -> list[Graph]:
        return byte_stages(shard(graph, layout) if tp > 1 else graph, pp)
    return split


BACKEND: Backend = DataflowBackend()
