"""Pieces the kinds share: placement and fit check of kinds that keep weights and KV in an
off-chip memory (GPU, systolic), the bytes an op moves per level (always from its accesses,
``Op.reads``/``Op.writes``, so a MoE op reads only its touched experts' share of the stacked
weight), and the cost of ops that run on a vector unit."""
from __future__ import annotations

import operator
from collections.abc import Sequence
from functools import reduce
from typing import Any

import numpy as np

from accelsim.config.units import format_si
from accelsim.dtypes import DTYPES
from accelsim.errors import DoesNotFitError
from accelsim.graph import Access, Graph, MatMul, Op, firsts  # noqa: F401  (firsts: re-exported)
from accelsim.hardware import power
from accelsim.hardware.arraymath import vmax, where
from accelsim.hardware.base import (  # noqa: F401  (Demand, Terms, to_cost: re-exported)
    Demand,
    Mapping,
    Placement,
    StepTime,
    Terms,
    memory_energy,
    to_cost,
)
from accelsim.memo import GRAPHS_KEPT, ByIdentity
from accelsim.model.density import effective_macs
from accelsim.sim.traffic import gemm_offchip_bytes

# An activation stays on chip between ops when it takes at most this share of the on-chip level
# (the rest holds operand tiles of the running kernel and other live tensors).
ONCHIP_ACTIVATION_SHARE = 0.25

VECTOR = Mapping("vector unit")


_FOOTPRINTS: ByIdentity[dict[str, float]] = ByIdentity(2 * GRAPHS_KEPT, weak=True)  # lowered and fused
_PEAKS: ByIdentity[float] = ByIdentity(GRAPHS_KEPT, weak=True)


def resident_demand(graph: Graph) -> Demand:
    """The demand of kinds that keep everything resident in one memory pool (GPU, systolic):
    the step's footprint, whatever the chip."""
    return Demand(graph.name, footprint(graph))


# base_params of the last few specs: a step costs every op under every mapping with the same
# chip, and specs (and the fast path's column views) never change once built.
_PARAMS: dict[int, tuple[Any, dict[str, Any]]] = {}


def base_params(hw) -> dict[str, Any]:
    """The numbers every kind's formulas read, flattened so the fast path can stack them into
    one array per field across design points (computed once per spec object; read-only)."""
    hit = _PARAMS.get(id(hw))
    if hit is not None and hit[0] is hw:
        return hit[1]
    if len(_PARAMS) >= 8:
        _PARAMS.clear()
    params = _base_params(hw)
    _PARAMS[id(hw)] = (hw, params)
    return params


def _base_params(hw) -> dict[str, Any]:
    return {
        "clock": hw.compute.clock, "vector": hw.compute.vector, "vector_op": hw.energy.vector_op,
        "eff_compute": hw.efficiency.compute, "eff_memory": hw.efficiency.memory,
        "static": hw.power.static, "cap": power.cap_w(hw), "zero_skipping": hw.compute.zero_skipping,
        "peak": {d: hw.matrix_peak(d) for d in DTYPES},
        "mac_energy": {d: hw.mac_energy(d) for d in DTYPES},
    }


def footprint(graph: Graph) -> dict[str, float]:
    """Bytes resident across steps: every weight once, and the KV cache / recurrent state as it
    stands at the end of the step (cached entries read plus new entries written).  Once per
    graph (a memoised graph is placed on many chips); the caller gets its own dict."""
    return dict(_FOOTPRINTS.get((graph,), None, lambda: _footprint(graph)))


# Both read whole tensors: an op's reads()/writes() are its inputs/outputs in order (an access
# only changes the bytes moved, e.g. a gather's rows), so they walk the tensors directly.
def _footprint(graph: Graph) -> dict[str, float]:
    resident = {"weight": graph.weight_bytes, "kv_cache": 0.0, "state": 0.0}
    ops, originals, first = _made(graph)
    adds: dict[int, list[tuple[str, float]]] = {}  # per made op that adds any, what, in order
    for i in first:
        op = ops[i]
        assert op is not None  # an op that copies none is made
        found: list[tuple[str, float]] = [(t.role, t.nbytes) for t in op.inputs if t.role in ("kv_cache", "state")]
        found += [("kv_cache", t.nbytes) for t in op.outputs if t.role == "kv_cache"]
        if found:
            adds[i] = found
    # a renamed copy (a deferred one included) holds its original's tensor sizes; each role's
    # sizes are added op by op in graph order from 0.0, as a running total over the ops gives
    held = list(map(adds.__getitem__, filter(adds.__contains__, originals)))  # in graph order
    for role in ("kv_cache", "state"):
        resident[role] = reduce(operator.add, [b for found in held for r, b in found if r == role], 0.0)
    return resident


def _made(graph: Graph) -> tuple[Sequence[Op | None], Sequence[int], Sequence[int]]:
    """The graph's ops as known (a deferred copy is None), per op the index of the op it
    copies (itself when it copies none) and the ops that copy none, so walks read the made ops
    only."""
    originals, first = graph.originals(), graph.firsts()
    if originals is None or first is None:
        ops = graph.ops
        return ops, range(len(ops)), range(len(ops))
    return graph.known(), originals, first




def peak_activation_bytes(graph: Graph) -> float:
    """The largest activation working set of one op (its activation inputs and outputs): what
    must be live at once beside the resident weights and cache, for the memory-footprint view."""
    return _PEAKS.get((graph,), None, lambda: _peak_activation_bytes(graph))


def _peak_activation_bytes(graph: Graph) -> float:
    peak = 0.0
    ops, _, first = _made(graph)
    for i in first:  # a renamed copy holds its original's sizes: the same working set
        op = ops[i]
        assert op is not None  # an op that copies none is made
        live = sum(t.nbytes for t in (*op.inputs, *op.outputs) if t.role == "activation")
        peak = max(peak, live)
    return peak


def offchip_allocate(demand: Demand, hw_name: str, offchip: str, offchip_capacity: float,
                     onchip: str, onchip_capacity: float) -> Placement:
    resident = demand.resident
    need = sum(resident.values())
    if need > offchip_capacity:
        parts = ", ".join(f"{role} {format_si(b, 'B')}" for role, b in resident.items() if b)
        shortfall = (f"needs {format_si(need, 'B')} ({parts}) but {offchip} holds "
                     f"{format_si(offchip_capacity, 'B')}")
        raise DoesNotFitError(
            f"{demand.graph_name} does not fit on {hw_name}: {shortfall}; use more chips (--tp/--pp), a "
            f"narrower --weight-dtype/--kv-dtype, or a smaller --batch/--context", shortfall=shortfall)
    return Placement(level_of=_offchip_levels(offchip, onchip), footprint=resident,
                     capacity={offchip: offchip_capacity, onchip: onchip_capacity})


def _offchip_levels(offchip: str, onchip: str) -> dict[str, str]:
    return {"weight": offchip, "kv_cache": offchip, "state": offchip, "activation": onchip}


def offchip_allocate_columns(demand: Demand, offchip: str, offchip_capacity: Any, onchip: str,
                             onchip_capacity: Any, n: int) -> tuple[np.ndarray, list[Placement]] | None:
    """``offchip_allocate`` over ``n`` design points (``Backend.allocate_columns``): the same
    comparison elementwise, one placement whose capacities are float arrays over the points
    (as the fast path builds them from per-point placements).  A capacity read as float64 may
    be a rounded integer; the comparison then agrees with Python's exact one everywhere except
    where the need equals the rounded capacity, so there the points are placed one by one (None)."""
    resident = demand.resident
    need = sum(resident.values())
    offchip_column = np.broadcast_to(np.asarray(offchip_capacity, dtype=float), (n,))
    onchip_column = np.broadcast_to(np.asarray(onchip_capacity, dtype=float), (n,))
    if np.any(offchip_column == need):
        return None
    placement = Placement(level_of=_offchip_levels(offchip, onchip), footprint=resident,
                          capacity={offchip: offchip_column, onchip: onchip_column})
    return np.where(need > offchip_column, -1, 0), [placement]


def accesses(op: Op) -> tuple[Access, ...]:
    """Every tensor ``op`` reads, then every one it writes, with the bytes it moves of each:
    the one source of every backend's byte count (a gather reads some rows of its table, a MoE
    GEMM only the touched experts' slices of its stacked weight, ``MatMul.b_fraction``)."""
    return (*op.reads(), *op.writes())


def crossing_bytes(access: Access, placement: Placement, onchip: str) -> Any:
    """Bytes of ``access`` that cross the off-chip interface when ``onchip`` is the on-chip
    level: all of them for a tensor placed elsewhere; for one placed on chip, all of them when
    the whole tensor is too large for its share of that level (which may differ per design
    point), else none."""
    if placement.level_of[access.tensor.role] != onchip:
        return access.nbytes
    limit = placement.capacity[onchip] * ONCHIP_ACTIVATION_SHARE
    return where(access.tensor.nbytes > limit, access.nbytes, 0.0)


def bytes_by_level(op: Op, placement: Placement) -> dict[str, Any]:
    """Each access's bytes at the level that holds it, an activation too large for its share
    of the on-chip level counted off chip (kinds with one off-chip and one on-chip level)."""
    onchip = placement.level_of["activation"]
    offchip = placement.level_of["weight"]
    totals: dict[str, Any] = {offchip: 0.0, onchip: 0.0}
    for access in accesses(op):
        if access.tensor.role == "activation":
            crossing = crossing_bytes(access, placement, onchip)
            totals[offchip] = totals[offchip] + crossing
            totals[onchip] = totals[onchip] + where(crossing, 0.0, access.nbytes)
        else:
            totals[placement.level_of[access.tensor.role]] += access.nbytes
    return totals


def gemm_offchip(op: MatMul, placement: Placement, onchip: str, reuse_capacity: Any) -> Any:
    """Off-chip bytes of a GEMM: its A, B and C accesses' crossing bytes through the reuse rule of
    ``sim.traffic`` (each once while the smaller operand fits half the on-chip level), plus any
    further operands (bias) once.  B is the bytes the op reads of its weight, so a MoE GEMM
    moves only its touched experts."""
    # The mapper costs one op under each of its mappings in turn, and these bytes do not depend
    # on the mapping: the last answer is kept for the very same (frozen) op and placement and
    # the same capacity number (not for arrays of design points, which could change in place).
    args = (op, placement, onchip, reuse_capacity)
    last = _LAST_OFFCHIP.get("args")
    if (last is not None and last[0] is op and last[1] is placement and last[2] == onchip
            and type(reuse_capacity) is float and type(last[3]) is float and last[3] == reuse_capacity):
        return _LAST_OFFCHIP["bytes"]
    value = _gemm_offchip(op, placement, onchip, reuse_capacity)
    _LAST_OFFCHIP.update(args=args, bytes=value)
    return value


_LAST_OFFCHIP: dict[str, Any] = {}


def _gemm_offchip(op: MatMul, placement: Placement, onchip: str, reuse_capacity: Any) -> Any:
    reads, writes = op.reads(), op.writes()
    a, b = (crossing_bytes(x, placement, onchip) for x in reads[:2])
    c = crossing_bytes(writes[0], placement, onchip)
    extra = sum((crossing_bytes(x, placement, onchip) for x in (*reads[2:], *writes[1:])), 0.0)
    # ``count`` independent GEMMs (a MoE layer's experts, heads, blocks) share no operand, so
    # the reuse rule applies to each one's A, B and C: a grouped GEMM re-reads an operand only
    # when one group's operand is too large for the on-chip level, never because all groups'
    # operands together are (which at a long prefill's routed rows would re-read every
    # expert's tokens once per L2-sized slice of all experts' weights).
    count = op.count
    return count * gemm_offchip_bytes(a / count, b / count, c / count, reuse_capacity) + extra


def vector_terms(op: Op, p: dict[str, Any], placement: Placement, bandwidth: dict[str, Any],
                 energy_per_byte: dict[str, Any], overhead_s) -> Terms:
    """An op on the vector unit: arithmetic at the vector peak, bytes at each level's bandwidth."""
    peak = p["vector"]
    compute_s = op.flops / (peak * p["eff_compute"])
    moved = bytes_by_level(op, placement)
    memory_s = {lvl: b / bandwidth[lvl] for lvl, b in moved.items()}
    time = vmax(compute_s, *memory_s.values(), 0.0) + overhead_s
    energy = {"vector": op.flops * p["vector_op"], **memory_energy(moved, energy_per_byte)}
    return Terms(time, compute_s, memory_s, moved, energy, peak, overhead_s)


def datapath_macs(macs: float, zero_skipping: bool, density: float = 1.0, granularity: int = 1) -> float:
    """MACs the datapath actually performs: all of them on dense hardware; on hardware with
    ``compute.zero_skipping`` only those ``accelsim.model.density.effective_macs`` leaves for the
    op's input-activation density.  Pure cost hook, read by every kind through ``skip_share``."""
    if not zero_skipping:
        return macs
    return effective_macs(macs, density, granularity)


def op_density(op: Op, placement: Placement) -> float:
    """Input-activation density of ``op`` from the step's profile (``Placement.density``); 1
    without a profile and for every op but a matmul: profiles measure the inputs of linear
    layers (``importers.density``), and attention reads dense Q/K/V projections."""
    if placement.density is None or not isinstance(op, MatMul):
        return 1.0
    return placement.density.density_of(op.name)


def skip_share(op: Op, placement: Placement, zero_skipping) -> Any:
    """Share of ``op``'s MACs the datapath performs (scales its compute time and energy): 1 on
    dense hardware; on ``compute.zero_skipping`` hardware what ``datapath_macs`` leaves.
    ``zero_skipping`` is a flag, or an array of flags over design points."""
    density = op_density(op, placement)
    if density >= 1.0 or not op.macs:
        return 1.0
    return where(zero_skipping, datapath_macs(op.macs, True, density) / op.macs, 1.0)


def host_stepped(kernels: StepTime, extra: Any, key: str) -> StepTime:
    """``kernels`` followed by the runtime's host-side work per step (``key``: scheduling,
    input preparation, sampling, the host/device synchronisation between steps).  The chip idles
    through it, so it adds to the latency and to the busy time, never to the tokens."""
    latency = kernels.latency_s + extra
    tokens = kernels.throughput_tokens_per_s * kernels.latency_s
    notes = kernels.notes
    if not isinstance(extra, np.ndarray) and extra > 0:  # one design point: say it is there
        notes = (*notes, f"step overhead {extra * 1e6:,.0f} us per step ({key}, host-side)")
    return StepTime(latency, tokens / latency, kernels.busy_s + extra, notes)


def step_figures(extra: float) -> dict[str, Any]:
    """The per-step host overhead for ``Result.step_overhead_s`` (absent when zero)."""
    return {"step_overhead_s": extra} if extra > 0 else {}
