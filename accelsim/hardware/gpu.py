"""GPU-like hardware: SMs with tensor cores, an L2 cache and HBM.

A GEMM is cut into CTA tiles; tiles run in waves of one tile per SM, so a grid of 133 tiles on
132 SMs takes two waves (wave quantisation), and M, N, K are padded up to the tile (odd shapes
pay).  Small grids may split K across CTAs at the price of a partial-sum reduction.  Off-chip
traffic follows ``sim.traffic`` with the L2 as the reuse level, counted from the bytes each op
reads and writes (``common.gemm_offchip``).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, cast

import numpy as np

from accelsim import dtypes
from accelsim.graph import Attention, Graph, MatMul, Op
from accelsim.hardware import common, power
from accelsim.hardware.arraymath import ceil_div, vmax, vmin, where
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
from accelsim.hardware.spec import GpuSpec, MemoryLevel
from accelsim.memo import ByIdentity
from accelsim.model.spec import ModelSpec
from accelsim.workload import Workload

SPLIT_K_CHOICES = (1, 2, 4, 8, 16)
_TILE_KEYS = {"tm", "tn", "tk", "split"}  # a GEMM mapping's parameters
PARTIAL_SUM_BYTES = 4  # split-K partials are reduced in fp32
# Queries per sequence a decode-attention kernel takes: one, or a few verified draft tokens with
# speculative decoding (AITER's MLA decode kernels take up to 4, ROCm/aiter pull 2727); a prefill
# chunk of more runs the prefill kernel.
DECODE_QUERIES = 4


class GpuBackend(BackendBase):
    """The ``gpu`` kind: HBM off chip, L2 on chip, kernels on SMs launched back to back."""

    name = "gpu"
    spec = GpuSpec

    def demand(self, graph: Graph, hw: GpuSpec, model: ModelSpec | None,
               workload: Workload | None) -> Demand:
        return common.resident_demand(graph)

    def allocate(self, need: Demand, hw: GpuSpec) -> Placement:
        return common.offchip_allocate(need, hw.name, "hbm", hw.memory.hbm.capacity, "l2",
                                       hw.memory.l2.capacity)

    def params(self, hw: GpuSpec) -> dict[str, Any]:
        mem = hw.memory
        return {**common.base_params(hw), "sms": hw.gpu.sms, "cluster": hw.gpu.cluster,
                "launch_overhead": hw.gpu.launch_overhead, "attention": hw.gpu.attention,
                "attention_dtype": hw.gpu.attention_dtype,
                "attention_unit_overhead": hw.gpu.attention_unit_overhead,
                "attention_bandwidth": hw.gpu.attention_bandwidth, "hbm_bw": mem.hbm.bandwidth,
                "hbm_energy": mem.hbm.energy, "l2_bw": mem.l2.bandwidth, "l2_energy": mem.l2.energy,
                "l2_capacity": mem.l2.capacity, "eff_datapath": _datapath_efficiency(hw),
                "eff_decode_attention": hw.efficiency.decode_attention,
                "eff_expert_gemm": _expert_gemm_table(hw),
                "active": power.active_w(hw, ("hbm", "l2"), "hbm")}

    def mappings(self, op: Op, hw: GpuSpec) -> list[Mapping]:
        if isinstance(op, (MatMul, Attention)):
            # the same list for every op of the kind on this chip (read, never changed)
            tiles, gemm = hw.gpu.tiles, isinstance(op, MatMul)
            return _TILINGS.get((tiles,), gemm, lambda: _tilings(tiles, gemm))
        return [common.VECTOR]

    def terms(self, op: Op, mapping: Mapping, hw: GpuSpec, p: dict[str, Any],
              placement: Placement) -> Terms:
        """The cost formulas; every number comes from ``p`` (``params``), so the same code costs
        one chip or an array of design points."""
        bandwidth, energy = _levels(p)
        p = _at_datapath_efficiency(op, p)
        if isinstance(op, MatMul):
            t = _gemm_terms(op, mapping, p, placement, bandwidth, energy)
        elif isinstance(op, Attention):
            t = _attention_terms(op, mapping, p, placement, bandwidth, energy)
        else:
            t = common.vector_terms(op, p, placement, bandwidth, energy, p["launch_overhead"])
        return power.with_activity(op, t, p, common.skip_share(op, placement, p["zero_skipping"]))

    def cost(self, op: Op, mapping: Mapping, hw: GpuSpec, placement: Placement) -> OpCost:
        return self._labelled(op, mapping, self.terms(op, mapping, hw, self.cost_params(hw), placement))

    def ranked_cost(self, op: Op, mappings: Sequence[Mapping], j: int, hw: GpuSpec,
                    placement: Placement) -> OpCost:
        """``cost`` of ``mappings[j]``, its terms read out of the arrays ``ranks`` just
        evaluated for these very mappings (``_picked``) where it did."""
        t = _ranked_terms(op, mappings, j, hw, placement)
        if t is None:
            return self.cost(op, mappings[j], hw, placement)
        return self._labelled(op, mappings[j], t)

    @staticmethod
    def _labelled(op: Op, mapping: Mapping, t: Terms) -> OpCost:
        if isinstance(op, MatMul):
            return to_cost(op, t, f"{mapping.label} ({'add' if op.add_only else 'mac'})")
        if isinstance(op, Attention):
            split = t.detail["split"]
            return to_cost(op, t, f"flash q-tile {mapping.params['tm']}"
                                  + (f" kv-split {split}" if split > 1 else ""))
        return to_cost(op, t, common.VECTOR.label)

    def ranks(self, op: Op, mappings: Sequence[Mapping], hw: GpuSpec,
              placement: Placement) -> list[tuple[float, float]] | None:
        """A GEMM's or a fused attention's tilings ranked together: ``terms`` once with each
        tile parameter an array over the mappings (the formulas are written for arrays), the
        same IEEE operations in the same order as costing each alone (integer counts as exact
        floats), so the keys are equal bit for bit (a NaN or infinity, which could order
        differently, falls back to costing one by one)."""
        if (not isinstance(op, (MatMul, Attention))
                or any(m.params.keys() != _TILE_KEYS for m in mappings)):
            return None
        tiles = _STACKED.get(tuple(mappings), None, lambda: Mapping(
            "tilings", {k: np.array([m.params[k] for m in mappings]) for k in _TILE_KEYS}))
        t = self.terms(op, tiles, hw, self.cost_params(hw), placement)
        n = len(mappings)
        time = np.broadcast_to(np.asarray(t.time_s, dtype=float), (n,))
        energy = np.broadcast_to(np.asarray(t.energy_total, dtype=float), (n,))
        if not (np.isfinite(time).all() and np.isfinite(energy).all()):
            return None
        _RANKED[:] = [op, tuple(mappings), hw, placement, t]  # the winner's cost is read from these
        return list(zip(time.tolist(), energy.tolist()))

    def schedule(self, costs: Sequence[Timed], hw: GpuSpec, workload: Workload, groups: int) -> StepTime:
        """Kernels run back to back, then the engine's host-side step work
        (``gpu.step_overhead``, plus ``gpu.sequence_overhead`` per sequence) is paid once: the GPU
        idles while the runtime schedules, samples and prepares the next step's inputs."""
        step = common.host_stepped(sequential_schedule(costs, workload), _host_step_s(hw, workload),
                                   "gpu.step_overhead" if _no_sequence_overhead(hw)
                                   else "gpu.step_overhead + gpu.sequence_overhead x batch")
        request = hw.gpu.request_overhead
        if not isinstance(request, np.ndarray) and request > 0:  # per request: noted, not in the step
            note = (f"request overhead {request * 1e3:,.2f} ms per request (gpu.request_overhead: "
                    f"added to TTFT by `accelsim serve`, not to this step's latency)")
            step = replace(step, notes=(*step.notes, note))
        return step

    def system_figures(self, hw: GpuSpec, workload: Workload, footprint: dict[str, float]) -> dict[str, Any]:
        """The per-step host overhead charged in ``schedule``, for ``Result.step_overhead_s``."""
        figures = common.step_figures(_host_step_s(hw, workload))
        if figures and hw.gpu.host_wait_share > 0:
            figures["host_wait_w"] = hw.gpu.host_wait_share * (hw.power.tdp - hw.power.static)
        return figures

    def worker_step_s(self, hw: GpuSpec, chips: int) -> Any:
        """``gpu.worker_overhead`` for each GPU beyond the first: the driver hands every step's
        inputs to each other worker before the step starts."""
        return hw.gpu.worker_overhead * (chips - 1)

    def fusion_policy(self, hw: GpuSpec) -> tuple[str, tuple[str, ...]]:
        return hw.gpu.fusion, tuple(hw.gpu.unfused)

    def request_overhead(self, hw: GpuSpec) -> float:
        return hw.gpu.request_overhead

    def overhead_keys(self, hw: GpuSpec) -> dict[str, str]:
        return {"op": "gpu.launch_overhead", "step": "gpu.step_overhead",
                "request": "gpu.request_overhead", "attention_unit": "gpu.attention_unit_overhead"}

    def offchip_level(self, hw: GpuSpec) -> str | None:
        return "hbm"

    def main_memory(self, hw: GpuSpec) -> MemoryLevel:
        return hw.memory.hbm

    def kv_capacity(self, hw: GpuSpec, weight_bytes: float, chips: int) -> float:
        return hw.memory.hbm.capacity * chips - weight_bytes

    def onchip_capacity(self, hw: GpuSpec) -> float:
        return hw.memory.l2.capacity

    def die_storage(self, hw: GpuSpec, model: ModelSpec | None) -> tuple[Any, Any]:
        return hw.memory.l2.capacity, 0.0


# The last tilings ``ranks`` evaluated together: (op, mappings, chip, placement, their terms as
# arrays over the mappings).  The mapper asks for the winner's cost right after ranking; the
# same formulas evaluated elementwise are the same IEEE operations as one tiling alone (the
# keys rest on it), so its terms are read out of the arrays instead of evaluated again.
_RANKED: list[Any] = []


def _ranked_terms(op: Op, mappings: Sequence[Mapping], j: int, hw: GpuSpec,
                  placement: Placement) -> Terms | None:
    """Mapping ``j``'s terms from the last ``ranks`` when it ranked this very op, chip and
    placement over these very mappings; else None."""
    last = _RANKED
    if (not last or last[0] is not op or last[2] is not hw or last[3] is not placement
            or len(last[1]) != len(mappings) or any(a is not b for a, b in zip(last[1], mappings))):
        return None
    return _picked(last[4], j)


def _picked(t: Terms, j: int) -> Terms:
    """Element ``j`` of terms evaluated over mappings, as evaluating that mapping alone gives
    it: numbers stay as they are, array elements become Python floats, and a label's detail
    counts (whole numbers as floats: ``ceil_div`` over arrays) become ints, as ``math.ceil``
    gives them one at a time."""
    def one(v: Any) -> Any:
        return v.item(j) if isinstance(v, np.ndarray) and v.ndim == 1 else v

    def count(v: Any) -> Any:
        if not (isinstance(v, np.ndarray) and v.ndim == 1):
            return v
        x = v.item(j)
        return int(x) if isinstance(x, float) and x.is_integer() else x
    return Terms(one(t.time_s), one(t.compute_s), {k: one(v) for k, v in t.memory_s.items()},
                 {k: one(v) for k, v in t.bytes.items()}, {k: one(v) for k, v in t.energy_j.items()},
                 one(t.peak_flops), one(t.overhead_s), {k: count(v) for k, v in t.detail.items()})


def _no_sequence_overhead(hw: GpuSpec) -> bool:
    return not isinstance(hw.gpu.sequence_overhead, np.ndarray) and hw.gpu.sequence_overhead == 0


def _host_step_s(hw: GpuSpec, workload: Workload) -> Any:
    """The engine's host work in one step: a fixed part and a part per sequence the step holds
    (a prefill of ``batch`` prompts or a decode of ``batch`` sequences alike)."""
    if _no_sequence_overhead(hw):  # the common case: the step's figure exactly as configured
        return hw.gpu.step_overhead
    return hw.gpu.step_overhead + hw.gpu.sequence_overhead * workload.batch


def _tilings(tiles: Sequence[Any], gemm: bool) -> list[Mapping]:
    """Every CTA tile of the chip, with each split-K choice for a GEMM."""
    splits = SPLIT_K_CHOICES if gemm else (1,)
    return [Mapping(f"tile {t.m}x{t.n}x{t.k}" + (f" split-k {s}" if s > 1 else ""),
                    {"tm": t.m, "tn": t.n, "tk": t.k, "split": s}) for t in tiles for s in splits]


# A chip's tilings (per ``gpu.tiles`` list of a spec), and their parameters stacked as arrays
# (``ranks``), made once rather than once per op shape.
_TILINGS: ByIdentity[list[Mapping]] = ByIdentity(16)
_STACKED: ByIdentity[Mapping] = ByIdentity(16)


def _datapath_efficiency(hw: GpuSpec) -> dict[str, float]:
    """Format -> achieved share of its datapath's peak, for the formats whose datapath has its
    own measured share (``efficiency.datapath``); the others run at ``efficiency.compute``."""
    given = hw.efficiency.datapath
    fallback = {d: hw.fallback_dtype(d) for d in dtypes.DTYPES}
    return {d: given[cast(dtypes.DType, f)] for d, f in fallback.items() if f in given}


# A MoE layer's two routed-expert GEMM roles (``model.blocks.moe``) -> the stage of
# ``efficiency.expert_gemm`` whose measured share each reads (not transform's EXPERT_ROLES).
MOE_STAGE_OF_ROLE = {"expert_up": "up", "expert_down": "down"}


# (slice width, ((rows per expert, share), ...)) per width, both sorted: one stage's table
ExpertTable = tuple[tuple[int, tuple[tuple[int, float], ...]], ...]


def _expert_gemm_table(hw: GpuSpec) -> tuple[str, dict[str, ExpertTable]] | None:
    """``efficiency.expert_gemm`` as (datapath, {"up"/"down": its table}), or None."""
    given = hw.efficiency.expert_gemm
    if given is None:
        return None

    def table(by_width: dict[int, dict[int, float]]) -> ExpertTable:
        return tuple((w, tuple(sorted(points.items()))) for w, points in sorted(by_width.items()))
    return given.dtype, {"up": table(given.up), "down": table(given.down)}


def _along(points: Sequence[tuple[float, float]], x: float) -> float:
    """The value at ``x``: linear in log(x) between the points, the nearest point's outside them."""
    xs = [a for a, _ in points]
    ys = [b for _, b in points]
    if x <= xs[0]:
        return ys[0]
    if x >= xs[-1]:
        return ys[-1]
    return float(np.interp(math.log(x), [math.log(a) for a in xs], ys))


def expert_share(table: ExpertTable, width: float, rows_per_expert: float) -> float:
    """The measured share of a ``width``-wide expert slice at ``rows_per_expert`` routed rows per
    expert, linear in log(rows) and then in log(width) between measured points, the nearest
    point's share outside them.  The measured shares grow with the rows, so fewer rows than the
    first point never run faster per FLOP than it; there the weight stream, which the memory term
    charges, sets the kernel's time anyway."""
    return _along([(w, _along(points, rows_per_expert)) for w, points in table], width)


def _at_datapath_efficiency(op: Op, p: dict[str, Any]) -> dict[str, Any]:
    """``p`` with ``eff_compute`` set to the share the op's datapath reaches (the same ``p``
    when its datapath has no share of its own); decode attention takes
    ``efficiency.decode_attention`` and a routed-expert GEMM ``efficiency.expert_gemm`` where the
    chip states one for its datapath."""
    if isinstance(op, MatMul):
        datapath = op.compute_dtype
        table = p["eff_expert_gemm"]
        stage = MOE_STAGE_OF_ROLE.get(op.role)
        if table is not None and stage is not None and datapath == table[0]:
            rows = op.rows if op.rows is not None else op.count * op.m
            # a share per real FLOP: the kernel's own tiling is inside the measurement
            width = op.n if stage == "up" else op.k  # the expert slice's N (gate+up) or K (down)
            share = expert_share(table[1][stage], width, rows / op.count)
            return {**p, "eff_compute": share, "untiled": True}
    elif isinstance(op, Attention):
        if op.q_len <= DECODE_QUERIES and p["eff_decode_attention"] is not None:
            return {**p, "eff_compute": p["eff_decode_attention"]}  # the decode kernel's own share
        datapath = attention_datapath(op.compute_dtype, p["attention_dtype"])
    else:
        return p
    share = p["eff_datapath"].get(datapath)
    return p if share is None else {**p, "eff_compute": share}


def _levels(p: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    eff = p["eff_memory"]
    bandwidth = {"hbm": p["hbm_bw"] * eff, "l2": p["l2_bw"] * eff}
    energy = {"hbm": p["hbm_energy"], "l2": p["l2_energy"]}
    return bandwidth, energy


def _waves_time(work_units: int, unit_flops: float, p: dict[str, Any], peak):
    """Time for ``work_units`` equal tiles spread over the SMs in waves."""
    waves = ceil_div(work_units, p["sms"])
    per_sm = peak * p["eff_compute"] / p["sms"]
    return waves * unit_flops / per_sm


def _gemm_terms(op: MatMul, mapping: Mapping, p: dict[str, Any], placement: Placement,
                bandwidth: dict[str, Any], energy: dict[str, Any]) -> Terms:
    tile = mapping.params
    tm, tn, tk, split = tile["tm"], tile["tn"], tile["tk"], tile["split"]
    peak = p["peak"][op.compute_dtype]
    # tile parameters are numbers, or arrays over a GEMM's tilings (``GpuBackend.ranks``)
    k_steps = ceil_div(op.k, tk)
    split = vmin(split, k_steps)
    tiles = op.count * ceil_div(op.m, tm) * ceil_div(op.n, tn)
    unit_flops = 2.0 * tm * tn * ceil_div(k_steps, split) * tk
    kept = common.skip_share(op, placement, p["zero_skipping"])  # zero-skipping datapaths
    # Pointwise work fused into the epilogue/prologue (``sim.fusion``) runs on the vector units.
    if p.get("untiled"):  # a measured kernel share (efficiency.expert_gemm) is per routed FLOP
        tensor_s = op.tensor_flops / (peak * p["eff_compute"])
    else:
        tensor_s = _waves_time(tiles * split, unit_flops, p, peak)
    compute_s = vmax(tensor_s * kept, op.vector_flops / (p["vector"] * p["eff_compute"]))

    moved = _gemm_bytes(op, placement, p, tiles * split, tm, tn, ceil_div(k_steps, split) * tk, split)
    memory_s = {lvl: v / bandwidth[lvl] for lvl, v in moved.items()}
    overhead = p["launch_overhead"] * where(split > 1, 2, 1)
    time = vmax(compute_s, *memory_s.values()) + overhead
    e = {"compute": op.macs * kept * p["mac_energy"][op.compute_dtype],
         "vector": op.vector_flops * p["vector_op"], **memory_energy(moved, energy)}
    return Terms(time, compute_s, memory_s, moved, e, peak, overhead)


def _gemm_bytes(op: MatMul, placement: Placement, p: dict[str, Any], units: int, tm: int, tn: int,
                k_per_unit: int, split: int) -> dict[str, Any]:
    """HBM bytes: the bytes the op reads and writes (``common.gemm_offchip``: a MoE GEMM reads
    only its touched experts), each off-chip operand once while reuse fits in L2.
    L2 bytes: every CTA reads its A and B slabs, the output is written once, and split-K partial
    sums are written and read back."""
    a, b, c = op.inputs[0], op.inputs[1], op.outputs[0]
    hbm = common.gemm_offchip(op, placement, "l2", p["l2_capacity"])
    a_elem, b_elem = a.nbytes / a.elements, b.nbytes / b.elements
    partials = op.count * op.m * op.n * PARTIAL_SUM_BYTES * 2 * (split - 1)
    # A cluster multicasts each operand slab to its CTAs, dividing L2 reads by the cluster size.
    l2 = units * k_per_unit * (tm * a_elem + tn * b_elem) / p["cluster"] + c.nbytes + partials
    return {"hbm": hbm, "l2": l2}


def _attention_terms(op: Attention, mapping: Mapping, p: dict[str, Any], placement: Placement,
                     bandwidth: dict[str, Any], energy: dict[str, Any]) -> Terms:
    """Fused (FlashAttention-style) attention: Q tiles of ``tm`` rows, the score matrix never
    leaves the SM, decode splits the KV length across CTAs (flash-decoding) to fill the SMs.
    With ``gpu.attention: grouped`` the query heads of a GQA group share the rows of one tile and
    K/V stream once per (sequence, KV head); with ``per_query_head`` every query head is its own
    unit and streams its KV head's cache itself."""
    tm = mapping.params["tm"]
    datapath = attention_datapath(op.compute_dtype, p["attention_dtype"])
    peak = p["peak"][datapath]
    group = op.heads // op.kv_heads
    packed = group if p["attention"] == "grouped" else 1
    rows = op.q_len * packed
    row_tiles = ceil_div(rows, tm)  # tm: a number, or an array over the tilings (``ranks``)
    streams = group // packed  # K/V passes per KV head
    units = op.batch * op.kv_heads * streams * row_tiles
    split = vmax(1, vmin(ceil_div(p["sms"], units), ceil_div(op.kv_len, tm)))
    keys_per_row = op.pairs / op.q_len
    unit_flops = 2.0 * tm * keys_per_row * (op.qk_dim + op.v_dim) / split  # rows padded to tm
    tensor_s = _waves_time(units * split, unit_flops, p, peak)
    vector_s = op.vector_flops / (p["vector"] * p["eff_compute"])
    compute_s = vmax(tensor_s, vector_s)
    moved = _attention_bytes(op, placement, streams)
    memory_s = {lvl: v / (bandwidth[lvl] * p["attention_bandwidth"]) for lvl, v in moved.items()}
    # Each wave of work units pays the unit's fixed latency on top of its share of the streams.
    unit_waves = ceil_div(units * split, p["sms"])
    overhead = p["launch_overhead"] * where(split > 1, 2, 1) + unit_waves * p["attention_unit_overhead"]
    time = vmax(compute_s, *memory_s.values()) + overhead
    e = {"compute": op.macs * p["mac_energy"][datapath], "vector": op.vector_flops * p["vector_op"],
         **memory_energy(moved, energy)}
    return Terms(time, compute_s, memory_s, moved, e, peak, overhead, {"split": split})


def attention_datapath(activation: str, narrowest: str | None) -> str:
    """The format the attention kernel computes in: the activations', widened to the kernel
    library's narrowest (``gpu.attention_dtype``)."""
    if narrowest is None or dtypes.bits(activation) >= dtypes.bits(narrowest):
        return activation
    return narrowest


def _attention_bytes(op: Attention, placement: Placement, streams: int) -> dict[str, Any]:
    """Bytes per level when the cached K/V of each KV head is read ``streams`` times."""
    moved = common.bytes_by_level(op, placement)
    if streams == 1:
        return moved
    cached = sum(a.nbytes for a in op.reads() if a.tensor.role == "kv_cache")
    level = placement.level_of["kv_cache"]
    return {**moved, level: moved[level] + (streams - 1) * cached}


BACKEND: Backend = GpuBackend()
