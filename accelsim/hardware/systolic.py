"""TPU-like hardware: R x C systolic arrays (MXUs), a vector unit, an on-chip buffer and HBM.

The three dataflows differ only in which GEMM dimensions are laid across the array's rows and
columns and which one streams through it in time, so they are one table, not three code paths.
Per fold the array pays an operand preload (WS/IS pin an R-deep operand first), the
skew fill/drain (R + C - 2) and the streamed dimension.  Folds run back to back on each array.
With ``overlap: none`` this is SCALE-Sim's count exactly; ``double_buffered`` hides every
preload but the first behind the previous fold's compute.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from accelsim.graph import Attention, Graph, MatMul, Op
from accelsim.hardware import common
from accelsim.hardware.base import (
    Mapping, OpCost, Placement, bound_of, memory_energy, sequential_schedule, single_group,
)
from accelsim.hardware.spec import SystolicSpec
from accelsim.model.spec import ModelSpec
from accelsim.sim.traffic import gemm_offchip_bytes
from accelsim.workload import Workload


@dataclass(frozen=True)
class Dataflow:
    name: str
    rows_dim: str      # GEMM dimension laid across the array's rows
    cols_dim: str      # ... across its columns
    streamed_dim: str  # ... streamed through in time
    preload: bool      # an operand is pinned in the PEs before each fold


DATAFLOWS = {
    "os": Dataflow("os", rows_dim="m", cols_dim="n", streamed_dim="k", preload=False),
    "ws": Dataflow("ws", rows_dim="k", cols_dim="n", streamed_dim="m", preload=True),
    "is": Dataflow("is", rows_dim="k", cols_dim="m", streamed_dim="n", preload=True),
}


@dataclass(frozen=True)
class FoldCount:
    folds: int
    cycles_per_fold: int
    preload: int
    mapping_efficiency: float


def folds(m: int, k: int, n: int, rows: int, cols: int, dataflow: str) -> FoldCount:
    df = DATAFLOWS[dataflow]
    dims = {"m": m, "k": k, "n": n}
    along_rows, along_cols = dims[df.rows_dim], dims[df.cols_dim]
    row_folds, col_folds = math.ceil(along_rows / rows), math.ceil(along_cols / cols)
    preload = rows if df.preload else 0
    per_fold = preload + rows + cols - 2 + dims[df.streamed_dim]
    used = along_rows * along_cols / (row_folds * rows * col_folds * cols)
    return FoldCount(row_folds * col_folds, per_fold, preload, used)


def scalesim_cycles(m: int, k: int, n: int, rows: int, cols: int, dataflow: str) -> int:
    """Stall-free compute cycles as SCALE-Sim's COMPUTE_REPORT counts them (last 0-based cycle)."""
    f = folds(m, k, n, rows, cols, dataflow)
    return f.folds * f.cycles_per_fold - 1


def array_cycles(m: int, k: int, n: int, hw: SystolicSpec, dataflow: str, count: int = 1) -> int:
    """Cycles on the chip's arrays: ``count`` independent GEMMs' folds shared among the arrays."""
    s = hw.systolic
    f = folds(m, k, n, s.rows, s.cols, dataflow)
    per_array = math.ceil(count * f.folds / s.arrays)
    if s.overlap == "double_buffered":
        return per_array * (f.cycles_per_fold - f.preload) + f.preload
    return per_array * f.cycles_per_fold


def place(graph: Graph, hw: SystolicSpec, model: ModelSpec, workload: Workload) -> Placement:
    return common.offchip_placement(graph, hw.name, "hbm", hw.memory.hbm.capacity, "buffer",
                                    hw.memory.buffer.capacity)


microbatch = single_group
schedule = sequential_schedule


def mappings(op: Op, hw: SystolicSpec) -> list[Mapping]:
    if isinstance(op, (MatMul, Attention)):
        return [Mapping(f"dataflow {d}", {"dataflow": d}) for d in hw.systolic.dataflows]
    return [common.VECTOR]


def _levels(hw: SystolicSpec) -> tuple[dict[str, float], dict[str, float]]:
    eff = hw.efficiency.memory
    bandwidth = {"hbm": hw.memory.hbm.bandwidth * eff, "buffer": hw.memory.buffer.bandwidth}
    energy = {"hbm": hw.memory.hbm.energy, "buffer": hw.memory.buffer.energy}
    return bandwidth, energy


def _rate(hw: SystolicSpec, dtype: str) -> int:
    per_pe = hw.systolic.macs_per_pe
    return per_pe.get(dtype, per_pe.get(hw.fallback_dtype(dtype), 1))


def cost(op: Op, mapping: Mapping, hw: SystolicSpec, placement: Placement) -> OpCost:
    bandwidth, energy = _levels(hw)
    overhead = hw.systolic.op_overhead
    if not isinstance(op, (MatMul, Attention)):
        return common.vector_cost(op, hw, placement, bandwidth, energy, overhead)
    dataflow = mapping.params["dataflow"]
    clock = hw.compute.clock * hw.efficiency.compute
    if isinstance(op, MatMul):
        dtype = op.compute_dtype
        cycles = array_cycles(op.m, op.k, op.n, hw, dataflow, op.count)
        a, b, c = op.inputs[0], op.inputs[1], op.outputs[0]
        hbm_of = {t.name: (t.nbytes if placement.level_of[t.role] == "hbm" or
                           t.nbytes > hw.memory.buffer.capacity * common.ONCHIP_ACTIVATION_SHARE else 0.0)
                  for t in (a, b, c, *op.inputs[2:])}
        hbm = gemm_offchip_bytes(hbm_of[a.name], hbm_of[b.name], hbm_of[c.name],
                                 hw.memory.buffer.capacity) + sum(hbm_of[t.name] for t in op.inputs[2:])
        moved = {"hbm": hbm, "buffer": op.bytes_moved}
        vector_s = 0.0
    else:
        dtype = op.dtype
        rows = op.q_len * (op.heads // op.kv_heads)
        live = op.pairs / (op.q_len * op.kv_len)  # fraction of score blocks not masked out
        scores = array_cycles(rows, op.qk_dim, op.kv_len, hw, dataflow, op.batch * op.kv_heads)
        values = array_cycles(rows, op.kv_len, op.v_dim, hw, dataflow, op.batch * op.kv_heads)
        cycles = math.ceil((scores + values) * live)
        moved = common.bytes_by_level(op, placement)
        vector_s = op.vector_flops / (hw.compute.vector * hw.efficiency.compute)
    compute_s = max(cycles / _rate(hw, dtype) / clock, vector_s)
    memory_s = {lvl: v / bandwidth[lvl] for lvl, v in moved.items() if v}
    if hw.systolic.overlap == "double_buffered":
        time = max(compute_s, *memory_s.values()) + overhead
    else:
        time = compute_s + sum(memory_s.values()) + overhead
    e = {"compute": op.macs * hw.mac_energy(dtype), **memory_energy(moved, energy)}
    if vector_s:
        e["vector"] = op.vector_flops * hw.energy.vector_op
    return OpCost(op.name, op.kind, op.layer, time, compute_s, memory_s, moved, e, op.flops,
                  hw.matrix_peak(dtype), bound_of(compute_s, memory_s, overhead),
                  f"{mapping.label}, {cycles} cycles", overhead)
