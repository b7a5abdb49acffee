"""GPU-like hardware: SMs with tensor cores, an L2 cache and HBM.

A GEMM is cut into CTA tiles; tiles run in waves of one tile per SM, so a grid of 133 tiles on
132 SMs takes two waves (wave quantisation), and M, N, K are padded up to the tile (odd shapes
pay).  Small grids may split K across CTAs at the price of a partial-sum reduction.  Off-chip
traffic follows ``sim.traffic`` with the L2 as the reuse level.
"""
from __future__ import annotations

import math

from accelsim.graph import Attention, Graph, MatMul, Op
from accelsim.hardware import common
from accelsim.hardware.base import (
    Mapping, OpCost, Placement, bound_of, memory_energy, sequential_schedule, single_group,
)
from accelsim.hardware.spec import GpuSpec
from accelsim.model.spec import ModelSpec
from accelsim.sim.traffic import gemm_offchip_bytes
from accelsim.workload import Workload

SPLIT_K_CHOICES = (1, 2, 4, 8, 16)
PARTIAL_SUM_BYTES = 4  # split-K partials are reduced in fp32


def place(graph: Graph, hw: GpuSpec, model: ModelSpec, workload: Workload) -> Placement:
    return common.offchip_placement(graph, hw.name, "hbm", hw.memory.hbm.capacity, "l2",
                                    hw.memory.l2.capacity)


microbatch = single_group
schedule = sequential_schedule


def mappings(op: Op, hw: GpuSpec) -> list[Mapping]:
    if isinstance(op, (MatMul, Attention)):
        tiles = hw.gpu.tiles
        splits = SPLIT_K_CHOICES if isinstance(op, MatMul) else (1,)
        return [Mapping(f"tile {t.m}x{t.n}x{t.k}" + (f" split-k {s}" if s > 1 else ""),
                        {"tm": t.m, "tn": t.n, "tk": t.k, "split": s}) for t in tiles for s in splits]
    return [common.VECTOR]


def _levels(hw: GpuSpec) -> tuple[dict[str, float], dict[str, float]]:
    eff = hw.efficiency.memory
    bandwidth = {"hbm": hw.memory.hbm.bandwidth * eff, "l2": hw.memory.l2.bandwidth * eff}
    energy = {"hbm": hw.memory.hbm.energy, "l2": hw.memory.l2.energy}
    return bandwidth, energy


def cost(op: Op, mapping: Mapping, hw: GpuSpec, placement: Placement) -> OpCost:
    bandwidth, energy = _levels(hw)
    if isinstance(op, MatMul):
        return _gemm_cost(op, mapping, hw, placement, bandwidth, energy)
    if isinstance(op, Attention):
        return _attention_cost(op, mapping, hw, placement, bandwidth, energy)
    return common.vector_cost(op, hw, placement, bandwidth, energy, hw.gpu.launch_overhead)


def _waves_time(work_units: int, unit_flops: float, hw: GpuSpec, peak: float) -> float:
    """Time for ``work_units`` equal tiles spread over the SMs in waves."""
    waves = math.ceil(work_units / hw.gpu.sms)
    per_sm = peak * hw.efficiency.compute / hw.gpu.sms
    return waves * unit_flops / per_sm


def _gemm_cost(op: MatMul, mapping: Mapping, hw: GpuSpec, placement: Placement,
               bandwidth: dict[str, float], energy: dict[str, float]) -> OpCost:
    p = mapping.params
    tm, tn, tk, split = p["tm"], p["tn"], p["tk"], p["split"]
    peak = hw.matrix_peak(op.compute_dtype)
    k_steps = math.ceil(op.k / tk)
    split = min(split, k_steps)
    tiles = op.count * math.ceil(op.m / tm) * math.ceil(op.n / tn)
    unit_flops = 2.0 * tm * tn * math.ceil(k_steps / split) * tk
    compute_s = _waves_time(tiles * split, unit_flops, hw, peak)

    moved = _gemm_bytes(op, placement, hw, tiles * split, tm, tn, math.ceil(k_steps / split) * tk, split)
    memory_s = {lvl: v / bandwidth[lvl] for lvl, v in moved.items() if v}
    overhead = hw.gpu.launch_overhead * (2 if split > 1 else 1)
    time = max(compute_s, *memory_s.values()) + overhead
    mac_kind = "add" if op.add_only else "mac"
    e = {"compute": op.macs * hw.mac_energy(op.compute_dtype), **memory_energy(moved, energy)}
    return OpCost(op.name, op.kind, op.layer, time, compute_s, memory_s, moved, e, op.flops, peak,
                  bound_of(compute_s, memory_s, overhead), f"{mapping.label} ({mac_kind})", overhead)


def _gemm_bytes(op: MatMul, placement: Placement, hw: GpuSpec, units: int, tm: int, tn: int,
                k_per_unit: int, split: int) -> dict[str, float]:
    """HBM bytes: each off-chip operand once while reuse fits in L2 (``sim.traffic``).
    L2 bytes: every CTA reads its A and B slabs, the output is written once, and split-K partial
    sums are written and read back."""
    a, b, c = op.inputs[0], op.inputs[1], op.outputs[0]
    onchip_limit = placement.capacity["l2"] * common.ONCHIP_ACTIVATION_SHARE

    def offchip(t) -> float:
        resident = placement.level_of[t.role] == "l2" and t.nbytes <= onchip_limit
        return 0.0 if resident else t.nbytes

    bias = sum(offchip(t) for t in op.inputs[2:])
    hbm = gemm_offchip_bytes(offchip(a), offchip(b), offchip(c), hw.memory.l2.capacity) + bias
    a_elem, b_elem = a.nbytes / a.elements, b.nbytes / b.elements
    partials = op.count * op.m * op.n * PARTIAL_SUM_BYTES * 2 * (split - 1)
    # A cluster multicasts each operand slab to its CTAs, dividing L2 reads by the cluster size.
    l2 = units * k_per_unit * (tm * a_elem + tn * b_elem) / hw.gpu.cluster + c.nbytes + partials
    return {"hbm": hbm, "l2": l2}


def _attention_cost(op: Attention, mapping: Mapping, hw: GpuSpec, placement: Placement,
                    bandwidth: dict[str, float], energy: dict[str, float]) -> OpCost:
    """Fused (FlashAttention-style) attention: Q tiles of ``tm`` rows, GQA heads packed into the
    rows of one tile, K/V streamed once per (sequence, KV head); the score matrix never leaves
    the SM.  Decode splits the KV length across CTAs (flash-decoding) to fill the SMs."""
    tm = mapping.params["tm"]
    peak = hw.matrix_peak(op.dtype)
    group = op.heads // op.kv_heads
    rows = op.q_len * group
    row_tiles = math.ceil(rows / tm)
    units = op.batch * op.kv_heads * row_tiles
    split = max(1, min(math.ceil(hw.gpu.sms / units), math.ceil(op.kv_len / tm)))
    keys_per_row = op.pairs / op.q_len
    unit_flops = 2.0 * tm * keys_per_row * (op.qk_dim + op.v_dim) / split  # rows padded to tm
    tensor_s = _waves_time(units * split, unit_flops, hw, peak)
    vector_s = op.vector_flops / (hw.compute.vector * hw.efficiency.compute)
    compute_s = max(tensor_s, vector_s)
    moved = common.bytes_by_level(op, placement)
    memory_s = {lvl: v / bandwidth[lvl] for lvl, v in moved.items() if v}
    overhead = hw.gpu.launch_overhead * (2 if split > 1 else 1)
    time = max(compute_s, *memory_s.values()) + overhead
    e = {"compute": op.macs * hw.mac_energy(op.dtype), "vector": op.vector_flops * hw.energy.vector_op,
         **memory_energy(moved, energy)}
    return OpCost(op.name, op.kind, op.layer, time, compute_s, memory_s, moved, e, op.flops, peak,
                  bound_of(compute_s, memory_s, overhead),
                  f"flash q-tile {tm}" + (f" kv-split {split}" if split > 1 else ""), overhead)
