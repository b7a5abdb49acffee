"""SRAM-only dataflow chips (Groq-LPU-like, Cerebras-WSE-3-like): no off-chip memory at all.

Weights, KV cache and activations all live in on-chip SRAM, so a model needs as many chips as
its bytes fill: ``ceil(resident bytes / SRAM per chip)`` unless ``--chips`` asks for more.  The
ops are laid end to end by resident bytes and the line is cut into equal parts, one per chip
(``parallel.byte_stages``, which splits an op that straddles a cut); the chips form a layer
pipeline joined by chip-to-chip sends, combined by the same round rule as every pipeline
(``sim.multichip``).  On a chip an op runs at the matrix or vector peak or at SRAM bandwidth,
whichever is slower, plus a fixed per-op issue time.
"""
from __future__ import annotations

import math
from typing import Literal

from pydantic import model_validator

from accelsim.config.types import Seconds, Source, Spec
from accelsim.errors import AccelsimError, DoesNotFitError
from accelsim.graph import Attention, Graph, MatMul, Op
from accelsim.hardware import common
from accelsim.hardware.base import (
    Mapping,
    OpCost,
    Placement,
    bound_of,
    memory_energy,
    sequential_schedule,
    single_group,
)
from accelsim.hardware.spec import HardwareBase, MemoryLevel
from accelsim.model.spec import ModelSpec
from accelsim.parallel import Parallelism, byte_stages
from accelsim.units import format_si
from accelsim.workload import Workload

STREAMING = Mapping("SRAM-fed units")
# Chips tried beyond ceil(bytes / SRAM) when ops that cannot be cut leave one chip over-full.
EXTRA_CHIPS_TRIED = 4


class DataflowMemory(Spec):
    sram: MemoryLevel


class DataflowSection(Spec):
    op_overhead: Seconds  # issue time per op (statically scheduled chips: small)
    source: Source


class DataflowSpec(HardwareBase):
    kind: Literal["dataflow"]
    memory: DataflowMemory
    dataflow: DataflowSection

    @model_validator(mode="after")
    def _needs_links(self):
        if self.interconnect is None:
            raise ValueError("a dataflow system spans chips: give its interconnect section")
        return self


microbatch = single_group
schedule = sequential_schedule


def chips_needed(graph: Graph, hw: DataflowSpec) -> int:
    """Chips whose SRAM holds every resident byte as ``byte_stages`` lays them out (a tied
    embedding/LM-head table counts at both ends of the pipeline)."""
    from accelsim.parallel import resident_bytes
    return max(1, math.ceil(sum(resident_bytes(graph)) / hw.memory.sram.capacity))


def place(graph: Graph, hw: DataflowSpec, model: ModelSpec | None, workload: Workload) -> Placement:
    resident = common.footprint(graph)
    need, room = sum(resident.values()), hw.memory.sram.capacity
    if need > room:
        raise DoesNotFitError(
            f"{graph.name} does not fit on one {hw.name} chip: needs {format_si(need, 'B')} but its "
            f"SRAM holds {format_si(room, 'B')}; give more --chips")
    levels = {"weight": "sram", "kv_cache": "sram", "state": "sram", "activation": "sram"}
    return Placement(level_of=levels, footprint=resident, capacity={"sram": room})


def plan(graph: Graph, hw: DataflowSpec, requested: Parallelism):
    """As many chips as the model's bytes need (or those asked for), pipelined by bytes."""
    from accelsim.sim.multichip import Plan
    if requested.tp > 1 or requested.ep > 1:
        raise AccelsimError(f"{hw.name} is a dataflow system that splits the model along its "
                            f"layers by bytes; give --chips (or --pp), not --tp/--ep")
    least = chips_needed(graph, hw)
    if requested.chips > 1 and requested.chips < least:
        raise DoesNotFitError(f"{graph.name} needs at least {least} {hw.name} chips "
                              f"({format_si(hw.memory.sram.capacity, 'B')} SRAM each), "
                              f"not {requested.chips}")
    start = max(least, requested.chips)
    for chips in range(start, start + EXTRA_CHIPS_TRIED + 1):
        stages = byte_stages(graph, chips)
        if all(sum(common.footprint(s).values()) <= hw.memory.sram.capacity for s in stages):
            return Plan(Parallelism(pp=chips), lambda g, n=chips: byte_stages(g, n))
    raise DoesNotFitError(f"{graph.name} does not split onto {start}..{start + EXTRA_CHIPS_TRIED} "
                          f"{hw.name} chips: an op that cannot be cut exceeds one chip's SRAM")


def mappings(op: Op, hw: DataflowSpec) -> list[Mapping]:
    return [STREAMING]


def cost(op: Op, mapping: Mapping, hw: DataflowSpec, placement: Placement) -> OpCost:
    eff = hw.efficiency
    dtype = op.compute_dtype if isinstance(op, MatMul) else op.dtype
    peak = hw.matrix_peak(dtype) if op.tensor_flops else hw.compute.vector
    kept = common.skip_share(op, placement, hw.compute.zero_skipping)  # zero-skipping datapaths
    tensor_s = kept * op.tensor_flops / (hw.matrix_peak(dtype) * eff.compute) if op.tensor_flops else 0.0
    vector_s = op.vector_flops / (hw.compute.vector * eff.compute)
    compute_s = max(tensor_s, vector_s)
    moved = {"sram": op.bytes_moved}
    memory_s = {"sram": moved["sram"] / (hw.memory.sram.bandwidth * eff.memory)}
    overhead = hw.dataflow.op_overhead
    time = max(compute_s, *memory_s.values()) + overhead
    energy = memory_energy(moved, {"sram": hw.memory.sram.energy})
    if op.macs:
        energy["compute"] = op.macs * kept * hw.mac_energy(dtype)
    if op.vector_flops:
        energy["vector"] = op.vector_flops * hw.energy.vector_op
    label = "matrix units" if isinstance(op, (MatMul, Attention)) else "vector units"
    return OpCost(op.name, op.kind, op.layer, time, compute_s, memory_s, moved, energy, op.flops,
                  peak, bound_of(compute_s, memory_s, overhead), f"{label} fed from SRAM", overhead)
