"""TPU-like hardware: R x C systolic arrays (MXUs), a vector unit, an on-chip buffer and HBM.

The three dataflows differ only in which GEMM dimensions are laid across the array's rows and
columns and which one streams through it in time, so they are one table, not three code paths.
Per fold the array pays an operand preload (WS/IS pin an R-deep operand first), the
skew fill/drain (R + C - 2) and the streamed dimension.  Folds run back to back on each array.
With ``overlap: none`` this is SCALE-Sim's count exactly; ``double_buffered`` hides every
preload but the first behind the previous fold's compute.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

import numpy as np

from accelsim.graph import Attention, Graph, MatMul, Op
from accelsim.hardware import common, power
from accelsim.hardware.arraymath import ceil, ceil_div, vmax
from accelsim.hardware.base import (
    Backend,
    BackendBase,
    Demand,
    Mapping,
    OpCost,
    Placement,
    StepTime,
    Terms,
    Timed,
    memory_energy,
    sequential_schedule,
    to_cost,
)
from accelsim.hardware.spec import MemoryLevel, SystolicSpec, peaks_agree
from accelsim.model.spec import ModelSpec
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
    # the mapped dimensions and their fold counts, for ``mapping_efficiency`` (worked out only
    # where asked: the cost formulas, run for every dataflow of every op shape, never read it)
    along: tuple[Any, Any, Any, Any] = (1, 1, 1, 1)
    array: tuple[Any, Any] = (1, 1)

    @property
    def mapping_efficiency(self) -> float:
        """The share of the array's PEs the mapped dimensions use, over all folds."""
        along_rows, along_cols, row_folds, col_folds = self.along
        rows, cols = self.array
        return along_rows * along_cols / (row_folds * rows * col_folds * cols)


def folds(m: int, k: int, n: int, rows: int, cols: int, dataflow: str) -> FoldCount:
    df = DATAFLOWS[dataflow]
    dims = {"m": m, "k": k, "n": n}
    along_rows, along_cols = dims[df.rows_dim], dims[df.cols_dim]
    row_folds, col_folds = ceil_div(along_rows, rows), ceil_div(along_cols, cols)
    preload = rows if df.preload else 0
    per_fold = preload + rows + cols - 2 + dims[df.streamed_dim]
    return FoldCount(row_folds * col_folds, per_fold, preload, (along_rows, along_cols, row_folds, col_folds),
                     (rows, cols))


def scalesim_cycles(m: int, k: int, n: int, rows: int, cols: int, dataflow: str) -> int:
    """Stall-free compute cycles as SCALE-Sim's COMPUTE_REPORT counts them (last 0-based cycle)."""
    f = folds(m, k, n, rows, cols, dataflow)
    return f.folds * f.cycles_per_fold - 1


def scalesim_compute_util(m: int, k: int, n: int, rows: int, cols: int, dataflow: str) -> float:
    """SCALE-Sim's 'Compute Util' (a fraction): the mean over folds of used PEs x streamed
    length / (R x C x fold cycles).  Its per-fold denominator is the fold's demand-matrix rows
    plus the array width minus one, which for the preloading dataflows (WS/IS) counts C - 1
    cycles more than the fold adds to the total; reproduced here so the numbers match."""
    df = DATAFLOWS[dataflow]
    f = folds(m, k, n, rows, cols, dataflow)
    streamed = {"m": m, "k": k, "n": n}[df.streamed_dim]
    fold_cycles = f.cycles_per_fold + (cols - 1 if df.preload else 0)
    return f.mapping_efficiency * streamed / fold_cycles


def shared_array_cycles(m: int, k: int, n: int, rows, cols, arrays, overlap: str, dataflow: str,
                        count: int = 1):
    """Cycles on ``arrays`` arrays of rows x cols (numbers, or arrays over design points):
    ``count`` independent GEMMs' folds shared among the arrays."""
    f = folds(m, k, n, rows, cols, dataflow)
    per_array = ceil_div(count * f.folds, arrays)
    if overlap == "double_buffered":
        return per_array * (f.cycles_per_fold - f.preload) + f.preload
    return per_array * f.cycles_per_fold


def _levels(p: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    bandwidth = {"hbm": p["hbm_bw"] * p["eff_memory"], "buffer": p["buffer_bw"]}
    energy = {"hbm": p["hbm_energy"], "buffer": p["buffer_energy"]}
    return bandwidth, energy


def _rate(hw: SystolicSpec, dtype: str) -> int:
    per_pe = cast(dict[str, int], hw.systolic.macs_per_pe)
    return per_pe.get(dtype, per_pe.get(hw.fallback_dtype(dtype), 1))


def _terms(op: Op, mapping: Mapping, hw: SystolicSpec, p: dict[str, Any], placement: Placement) -> Terms:
    """``_formulas`` with the busy units' activity energy (``hardware.power``)."""
    return power.with_activity(op, _formulas(op, mapping, hw, p, placement), p,
                               common.skip_share(op, placement, p["zero_skipping"]))


def _formulas(op: Op, mapping: Mapping, hw: SystolicSpec, p: dict[str, Any], placement: Placement) -> Terms:
    """The cost formulas.  ``hw`` supplies only structure (overlap mode); every number comes
    from ``p`` (``params``), so the same code costs one chip or an array of design points."""
    if not isinstance(op, (MatMul, Attention)):
        bandwidth, energy = _levels(p)
        return common.vector_terms(op, p, placement, bandwidth, energy, p["op_overhead"])
    return _on_array(op, _array_op(op, hw, p, placement), mapping.params["dataflow"], p)


class _ArrayOp(NamedTuple):
    """What a GEMM or attention costs whatever the dataflow: the bytes it moves and their time
    and energy, its fused vector work, its compute energy."""

    overlap: str
    clock: Any
    kept: Any       # the share of MACs a zero-skipping datapath performs
    dtype: str
    moved: dict[str, Any]
    memory_s: dict[str, Any]
    vector_s: Any
    energy_j: dict[str, Any]
    overhead: Any


def _array_op(op: MatMul | Attention, hw: SystolicSpec, p: dict[str, Any], placement: Placement) -> _ArrayOp:
    bandwidth, energy = _levels(p)
    kept = common.skip_share(op, placement, p["zero_skipping"])  # zero-skipping datapaths
    dtype = op.compute_dtype
    if isinstance(op, MatMul):
        # Bytes the op reads and writes (a MoE GEMM: only its touched experts' weights).
        hbm = common.gemm_offchip(op, placement, "buffer", p["buffer_capacity"])
        moved = {"hbm": hbm, "buffer": op.bytes_moved}
    else:
        moved = common.bytes_by_level(op, placement)
    vector_s = op.vector_flops / (p["vector"] * p["eff_compute"])  # fused epilogue / softmax work
    memory_s = {lvl: v / bandwidth[lvl] for lvl, v in moved.items()}
    e = {"compute": op.macs * kept * p["mac_energy"][dtype], **memory_energy(moved, energy)}
    if op.vector_flops:  # attention's softmax, or pointwise work fused into a GEMM
        e["vector"] = op.vector_flops * p["vector_op"]
    return _ArrayOp(hw.systolic.overlap, p["clock"] * p["eff_compute"], kept, dtype, moved, memory_s,
                    vector_s, e, p["op_overhead"])


def _on_array(op: MatMul | Attention, a: _ArrayOp, dataflow: str, p: dict[str, Any],
              energy: dict[str, Any] | None = None) -> Terms:
    """``op`` (its dataflow-independent part ``a``) under ``dataflow``: the array's cycles, and
    the time they take beside the memory traffic.  ``energy``: the op's energy table where the
    caller has it with the activity components (``terms_each``), else ``a``'s."""
    sizes = (p["rows"], p["cols"], p["arrays"], a.overlap, dataflow)
    if isinstance(op, MatMul):
        cycles = ceil(shared_array_cycles(op.m, op.k, op.n, *sizes, op.count) * a.kept)
    else:
        rows = op.q_len * (op.heads // op.kv_heads)
        live = op.pairs / (op.q_len * op.kv_len)  # fraction of score blocks not masked out
        scores = shared_array_cycles(rows, op.qk_dim, op.kv_len, *sizes, op.batch * op.kv_heads)
        values = shared_array_cycles(rows, op.kv_len, op.v_dim, *sizes, op.batch * op.kv_heads)
        cycles = ceil((scores + values) * live)
    compute_s = vmax(cycles / p["rate"][a.dtype] / a.clock, a.vector_s)
    if a.overlap == "double_buffered":
        time = vmax(compute_s, *a.memory_s.values()) + a.overhead
    else:
        time = compute_s + sum(a.memory_s.values()) + a.overhead
    return Terms(time, compute_s, dict(a.memory_s), dict(a.moved), dict(a.energy_j if energy is None else energy),
                 p["peak"][a.dtype], a.overhead, {"cycles": cycles})


class SystolicBackend(BackendBase):
    """The ``systolic`` kind: HBM off chip, an on-chip buffer, ops run in program order."""

    name = "systolic"
    spec = SystolicSpec

    def demand(self, graph: Graph, hw: SystolicSpec, model: ModelSpec | None,
               workload: Workload | None) -> Demand:
        return common.resident_demand(graph)

    def allocate(self, need: Demand, hw: SystolicSpec) -> Placement:
        return common.offchip_allocate(need, hw.name, "hbm", hw.memory.hbm.capacity, "buffer",
                                       hw.memory.buffer.capacity)

    def allocate_columns(self, need: Demand, hw: Any) -> tuple[np.ndarray, list[Placement]] | None:
        return common.offchip_allocate_columns(need, "hbm", hw.memory.hbm.capacity, "buffer",
                                               hw.memory.buffer.capacity, len(hw))

    def check_columns(self, hw: Any) -> dict[str, Any]:
        return {"_peak_matches_array": peaks_agree(hw.peak_checks())}

    def params(self, hw: SystolicSpec) -> dict[str, Any]:
        s, mem = hw.systolic, hw.memory
        return {**common.base_params(hw), "rows": s.rows, "cols": s.cols, "arrays": s.arrays,
                "op_overhead": s.op_overhead, "hbm_bw": mem.hbm.bandwidth, "hbm_energy": mem.hbm.energy,
                "buffer_bw": mem.buffer.bandwidth, "buffer_energy": mem.buffer.energy,
                "buffer_capacity": mem.buffer.capacity,
                "active": power.active_w(hw, ("hbm", "buffer"), "hbm"),
                "rate": {d: _rate(hw, d) for d in common.DTYPES}}

    def mappings(self, op: Op, hw: SystolicSpec) -> list[Mapping]:
        if isinstance(op, (MatMul, Attention)):
            return [Mapping(f"dataflow {d}", {"dataflow": d}) for d in hw.systolic.dataflows]
        return [common.VECTOR]

    def terms(self, op: Op, mapping: Mapping, hw: SystolicSpec, p: dict[str, Any],
              placement: Placement) -> Terms:
        return _terms(op, mapping, hw, p, placement)

    def terms_each(self, op: Op, mappings: Sequence[Mapping], hw: SystolicSpec, p: dict[str, Any],
                   placement: Placement) -> list[Terms]:
        """A GEMM's or attention's dataflows: the bytes, their time and energy, and the compute
        and activity energy worked out once (``_array_op``, ``power.activity_energy``), then
        each dataflow's cycles (``_on_array``) -- the same operations on the same values as
        ``terms`` for each mapping."""
        if not isinstance(op, (MatMul, Attention)) or len(mappings) < 2:
            return [_terms(op, m, hw, p, placement) for m in mappings]
        a = _array_op(op, hw, p, placement)
        # ``with_activity``'s energy reads the terms' peak and memory times, which no dataflow
        # changes: one energy table for all of them (each mapping's terms get their own copy)
        energy = power.activity_energy(op, a.energy_j, p["peak"][a.dtype], a.memory_s, p, a.kept)
        return [_on_array(op, a, m.params["dataflow"], p, energy) for m in mappings]

    def cost(self, op: Op, mapping: Mapping, hw: SystolicSpec, placement: Placement) -> OpCost:
        t = _terms(op, mapping, hw, self.cost_params(hw), placement)
        if "cycles" not in t.detail:
            return to_cost(op, t, common.VECTOR.label)
        return to_cost(op, t, f"{mapping.label}, {t.detail['cycles']} cycles")

    def dataflows(self, hw: SystolicSpec) -> tuple[str, ...]:
        return tuple(hw.systolic.dataflows)

    def schedule(self, costs: Sequence[Timed], hw: SystolicSpec, workload: Workload,
                 groups: int) -> StepTime:
        """Ops run one after another (XLA executes the step's program in order), then the
        runtime's host-side step work (``systolic.step_overhead``: dispatching the program,
        fetching the sampled tokens) is paid once."""
        return common.host_stepped(sequential_schedule(costs, workload), hw.systolic.step_overhead,
                                   "systolic.step_overhead")

    def system_figures(self, hw: SystolicSpec, workload: Workload,
                       footprint: dict[str, float]) -> dict[str, Any]:
        """The per-step host overhead charged in ``schedule``, for ``Result.step_overhead_s``."""
        return common.step_figures(hw.systolic.step_overhead)

    def fusion_policy(self, hw: SystolicSpec) -> tuple[str, tuple[str, ...]]:
        return hw.systolic.fusion, ()

    def overhead_keys(self, hw: SystolicSpec) -> dict[str, str]:
        return {"op": "systolic.op_overhead", "step": "systolic.step_overhead"}

    def offchip_level(self, hw: SystolicSpec) -> str | None:
        return "hbm"

    def main_memory(self, hw: SystolicSpec) -> MemoryLevel:
        return hw.memory.hbm

    def kv_capacity(self, hw: SystolicSpec, weight_bytes: float, chips: int) -> float:
        return hw.memory.hbm.capacity * chips - weight_bytes

    def onchip_capacity(self, hw: SystolicSpec) -> float:
        return hw.memory.buffer.capacity

    def die_storage(self, hw: SystolicSpec, model: ModelSpec | None) -> tuple[Any, Any]:
        return hw.memory.buffer.capacity, 0.0


BACKEND: Backend = SystolicBackend()
