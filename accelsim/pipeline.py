"""The step, written once: lower -> transform -> place -> map + cost -> schedule -> figures.

Every way accelsim costs a step goes through ``run``: ``accelsim.simulate`` on one chip or
many, the event-driven engine (which replays the graphs ``run`` costed, never lowering again),
serving (one ``run`` per bucketed step shape), validation and the DSE reference path.  The
vectorised fast path (``accelsim.dse.fastpath``) evaluates the same stages over arrays of design
points and takes every rule it shares with this one from here: the typed model, the chip's
kernels and the energy of a step.  ``cost_alone`` is the one rule for an op costed by itself
(``accelsim op``, validation's GEMM and stream points).

Nothing here reads a file or resolves a name (``accelsim.api`` does), and nothing asks which
kind of hardware it holds: each stage is a hook of the backend protocol
(``accelsim.hardware.base.Backend``).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from operator import attrgetter
from typing import Any

import numpy as np

from accelsim import hardware
from accelsim.errors import AccelsimError, NotFiniteError
from accelsim.graph import Graph, MatMul, Op
from accelsim.hardware import area, common, power
from accelsim.hardware.base import (
    Backend,
    Mapping,
    OpCost,
    Placement,
    StepTime,
    pipelined_round,
    streamed_prefill,
)
from accelsim.hardware.spec import HardwareBase
from accelsim.memo import GRAPHS_KEPT, ByIdentity, collector_paused, hashable
from accelsim.model.lower import lower, lower_mtp
from accelsim.model.spec import ModelSpec
from accelsim.sim.mapper import best_cost, map_graph
from accelsim.sim.result import Result
from accelsim.sim.speculative import draft_layout
from accelsim.transform import Parallelism, fuse
from accelsim.workload import Workload

LowerFor = Callable[[Workload], Graph]

# Stages memoised across steps (``accelsim.memo``): the typed model per (model, formats), its
# lowered graph per workload, the fused graph per (graph, fusion policy).  A graph depends on
# the model and the step's shape, never on the chip beyond its fusion policy, so one lowering
# serves every chip a loop compares; nothing mutates a graph once its stage returns it.
_TYPED: ByIdentity[ModelSpec] = ByIdentity(64)
_LOWERED: ByIdentity[Graph] = ByIdentity(GRAPHS_KEPT, doorkeeper=True)
_FUSED: ByIdentity[Graph] = ByIdentity(GRAPHS_KEPT, weak=True)
_JOINED: ByIdentity[Graph] = ByIdentity(GRAPHS_KEPT, weak=True)


@dataclass(frozen=True)
class Costed:
    """A costed step: its ``Result`` and the one-chip graph of each pipeline stage for one group
    of users in flight, joined in stage order (what the engine replays against ``result.ops``)."""

    result: Result
    graph: Graph


def typed_model(spec: ModelSpec, hw: HardwareBase, *, weight: str | None = None,
                activation: str | None = None, kv: str | None = None) -> ModelSpec:
    """The model with the asked-for storage formats; a chip whose weights are fixed in silicon
    overrides the weight format with its own."""
    forced = hardware.backend(hw).forced_weight_dtype(hw)
    formats = (forced or weight, activation, kv)
    return _TYPED.get((spec,), formats, lambda: spec.with_dtypes(weight=formats[0], activation=activation,
                                                                  kv=kv))


def lowered(spec: ModelSpec, workload: Workload) -> Graph:
    """``lower(spec, workload)``, once per (typed model, workload)."""
    if not hashable(workload):
        return lower(spec, workload)
    return _LOWERED.get((spec,), workload, lambda: lower(spec, workload))


def chip_graph(graph: Graph, hw: HardwareBase) -> Graph:
    """The kernels ``hw``'s software launches for ``graph`` (fusion after any sharding, so a
    collective stays a kernel of its own)."""
    policy, unfused = hardware.backend(hw).fusion_policy(hw)
    return _FUSED.get((graph,), (policy, unfused), lambda: fuse(graph, policy, unfused))


def step_joules(op_joules: Any, groups: int, chips_per_stage: int, static_w: Any, chips: int,
                busy_s: Any) -> Any:
    """Joules of one step: the ops' energy (one chip, one group of users) for each group and
    each chip of its stage, plus the static power of every chip while the step keeps it busy.
    Numbers, or arrays over design points (the fast path)."""
    return op_joules * groups * chips_per_stage + static_w * chips * busy_s


def capped(step: StepTime, dynamic_j: Any, idle_w: Any, cap_w: Any) -> StepTime:
    """``step`` under the chip's power cap (``hardware.power``): stretched until one chip's
    idle + dynamic power (``dynamic_j`` over the busy time) fits the cap.  Numbers, or arrays
    over design points (the fast path)."""
    k = power.stretch(dynamic_j, step.busy_s, idle_w, cap_w)
    notes = step.notes
    if not isinstance(k, np.ndarray):
        if k <= 1.0:
            return step
        notes = (*notes, f"power-capped at {cap_w:,.0f} W: the clock drops and the step "
                         f"stretches {k:.2f}x")
    return StepTime(step.latency_s * k, step.throughput_tokens_per_s / k, step.busy_s * k, notes)


def step_energy(costs: Sequence[OpCost], groups: int, chips_per_stage: int, static_w: float,
                chips: int, busy_s: float) -> dict[str, float]:
    """``step_joules`` by component (``static`` for the chips' static power)."""
    # Ops of one shape share their cost's energy dict: scale each distinct one once, then add
    # each component's terms in op order.  ``np.add.accumulate`` down a column is a running
    # total, one IEEE addition per op in order (never reduce's pairwise sum), from a row of
    # 0.0: the additions of a loop adding op by op into a dict of zeros, so every figure is the
    # same to the bit.  An op without a component adds 0.0 to it, which changes no running
    # total (one started at +0.0 is never -0.0).  Components come in the order such a loop
    # first meets them: the distinct dicts in order of their first op, each in its own order.
    shapes = list(map(id, map(_ENERGY_OF, costs)))
    distinct = dict(zip(shapes, costs))  # one id: the very same dict (every cost is alive)
    columns: dict[str, int] = {}
    for c in distinct.values():
        for component in c.energy_j:
            columns.setdefault(component, len(columns))
    energy: dict[str, float] = {}
    if columns:
        rows = [[0.0] * len(columns)]  # row 0: the zeros the totals start from
        for c in distinct.values():
            terms = [0.0] * len(columns)
            for component, joules in c.energy_j.items():
                terms[columns[component]] = step_joules(joules, groups, chips_per_stage, 0.0, chips, 0.0)
            rows.append(terms)
        row = dict(zip(distinct, range(1, len(distinct) + 1)))
        order = [0, *map(row.__getitem__, shapes)]  # the zeros first, then each op's row
        totals = np.add.accumulate(np.array(rows)[np.array(order, dtype=np.intp)], axis=0)[-1].tolist()
        energy = dict(zip(columns, totals))
    energy["static"] = step_joules(0.0, groups, chips_per_stage, static_w, chips, busy_s)
    return energy


_ENERGY_OF = attrgetter("energy_j")


def model_step(spec: ModelSpec, hw: HardwareBase, workload: Workload, *, weight_dtype: str | None = None,
               act_dtype: str | None = None, kv_dtype: str | None = None,
               parallelism: Parallelism | None = None) -> Costed:
    """One step of a catalogue-style model (validated objects, no names): ``spec`` in the asked-for
    formats, lowered for each workload ``run`` asks about."""
    typed = typed_model(spec, hw, weight=weight_dtype, activation=act_dtype, kv=kv_dtype)
    return run(typed.name, lambda w: lowered(typed, w), hw, workload, typed, parallelism)


def micro_batch_step(spec: ModelSpec, hw: HardwareBase, workload: Workload, *, weight_dtype: str | None = None,
                     act_dtype: str | None = None, kv_dtype: str | None = None,
                     parallelism: Parallelism | None = None) -> Costed:
    """``model_step`` for one micro-batch of a pipeline-parallel engine that keeps its own
    micro-batches in flight (serving): the workload is one group (``run``'s ``one_group``)."""
    typed = typed_model(spec, hw, weight=weight_dtype, activation=act_dtype, kv=kv_dtype)
    return run(typed.name, lambda w: lowered(typed, w), hw, workload, typed, parallelism, one_group=True)


def mtp_step(spec: ModelSpec, hw: HardwareBase, workload: Workload, *, weight_dtype: str | None = None,
             act_dtype: str | None = None, kv_dtype: str | None = None,
             parallelism: Parallelism | None = None) -> Costed:
    """One step of ``spec``'s multi-token-prediction module alone (``lower_mtp``): the draft
    step of speculative decoding with ``--spec-decode mtp``, in the formats the model runs in."""
    typed = typed_model(spec, hw, weight=weight_dtype, activation=act_dtype, kv=kv_dtype)
    return run(f"{typed.name} mtp", lambda w: lower_mtp(typed, w), hw, workload, typed, parallelism)


def draft_step(target: ModelSpec, draft: ModelSpec | None, hw: HardwareBase, workload: Workload, *,
               weight_dtype: str | None = None, act_dtype: str | None = None, kv_dtype: str | None = None,
               parallelism: Parallelism | None = None) -> Costed:
    """One draft step of speculative decoding on the target's chips: ``draft`` (a catalogue model)
    or, with None, ``target``'s own multi-token-prediction module, in the draft's layout
    (``sim.speculative.draft_layout`` of the target's ``parallelism``).  The one rule for
    ``accelsim run --spec-decode`` and for serving with it."""
    dtypes = {"weight_dtype": weight_dtype, "act_dtype": act_dtype, "kv_dtype": kv_dtype}
    if draft is None:
        if target.mtp is None:
            raise AccelsimError(f"--spec-decode mtp: model '{target.name}' has no multi-token-"
                                f"prediction module ('mtp:' section); name a draft model instead")
        experts = target.layer_kinds[-1].ffn == "moe"
        return mtp_step(target, hw, workload, parallelism=draft_layout(parallelism, experts), **dtypes)
    return model_step(draft, hw, workload, parallelism=draft_layout(parallelism, draft.moe is not None),
                      **dtypes)


def graph_step(graph: Graph, hw: HardwareBase, workload: Workload) -> Costed:
    """One step of a graph that did not come from a ModelSpec (an imported torch module), costed
    exactly as a lowered model.  ``workload`` must describe the step the graph was traced for (it
    sets the tokens throughput and energy per token are divided by, and carries the density)."""
    fixed = hardware.backend(hw).fixed_model(hw)
    if fixed is not None:
        # The chip holds one catalogue model's weights in silicon: nothing else runs on it.
        raise AccelsimError(f"{hw.name} is hardwired for '{fixed}'; an imported "
                            f"graph cannot run on it (choose a gpu or systolic chip)")

    def fixed_graph(asked: Workload) -> Graph:
        if asked != workload:
            raise AccelsimError(f"{graph.name}: an imported graph is fixed by its example inputs and "
                                f"cannot be re-lowered for {asked.describe()}")
        return graph

    return run(graph.name, fixed_graph, hw, workload, None)


def run(name: str, lower_for: LowerFor, hw: HardwareBase, workload: Workload,
        spec: ModelSpec | None, parallelism: Parallelism | None = None, one_group: bool = False) -> Costed:
    """One step of the graph ``lower_for(workload)`` on ``hw`` (spread over chips as the backend
    plans it from ``parallelism``).

    ``lower_for`` is called again when users are split into groups in flight (a layer or stage
    pipeline runs one group per stage); ``spec`` reaches backends that must know the model (a
    hardwired chip checks that its weights are this model's) and is None for imported graphs.

    ``one_group``: the caller keeps its own groups in flight over the pipeline stages (serving's
    micro-batches, ``sim.serving``), so the whole workload is one group: the step is its trip
    through every stage and ``Result.system["stage_latency_s"]`` each stage's time at its batch."""
    with collector_paused():
        return _run(name, lower_for, hw, workload, spec, parallelism, one_group)


def _run(name: str, lower_for: LowerFor, hw: HardwareBase, workload: Workload,
         spec: ModelSpec | None, parallelism: Parallelism | None, one_group: bool = False) -> Costed:
    backend = hardware.backend(hw)
    full = lower_for(workload)
    plan = backend.plan(full, hw, parallelism)
    layout = plan.parallelism

    def stages_of(graph: Graph) -> list[Graph]:
        return [chip_graph(stage, hw) for stage in plan.split(graph)]

    full_stages = stages_of(full)
    full_placements = [backend.place(g, hw, spec, workload) for g in full_stages]  # it must fit
    micro, groups = (workload, 1) if one_group else _groups(backend, hw, spec, workload, len(full_stages))
    if micro == workload:
        stages, placements = full_stages, full_placements
    else:  # one group of users in flight is what each op processes at a time
        stages = stages_of(lower_for(micro))
        placements = [backend.place(g, hw, spec, micro) for g in stages]
    stage_costs = [map_graph(g, hw, backend, pl, micro.density) for g, pl in zip(stages, placements)]
    step, stage_s = _schedule(backend, hw, stage_costs, workload, micro, groups)
    chips = layout.chips or 1
    coordination = backend.worker_step_s(hw, chips)
    step = _coordinated(step, coordination)

    # one stage: its rows as the mapper listed them (a new list each step, read only from here)
    costs = stage_costs[0] if len(stage_costs) == 1 else [c for stage in stage_costs for c in stage]
    ops_energy = step_energy(costs, groups, layout.per_stage, 0.0, chips, 0.0)
    dynamic = math.fsum(ops_energy.values())
    step = capped(step, dynamic / chips, hw.power.static, power.cap_w(hw))
    # the ops' share does not depend on the static power or the busy time: only "static" changes
    energy = {**ops_energy, "static": step_joules(0.0, groups, layout.per_stage, hw.power.static, chips,
                                                  step.busy_s)}
    footprint = common.footprint(full)
    figures = _with_coordination(backend.system_figures(hw, workload, footprint), coordination)
    waiting = power.host_wait_j(figures, chips)
    if waiting > 0:  # only where a runtime says the chip waits above idle on its host
        energy["host_wait"] = waiting
    system = {**figures, **power.node_power(hw, chips, sum(energy.values()) / step.latency_s / chips)}
    notes = step.notes
    if layout.chips > 1:
        system = {**_spread_figures(layout, stage_s, costs, step, energy, workload, full_placements),
                  **system}
        notes = (_headline(layout, step, costs), *notes)
    result = Result(
        model=name, hw=hw.name, hw_kind=hw.kind,
        workload=workload.to_dict(),
        latency_s=step.latency_s, tokens_per_s=step.throughput_tokens_per_s,
        joules_per_token=sum(energy.values()) / workload.tokens_credited, energy_j=energy, ops=costs,
        footprint_bytes={**footprint, "activation": common.peak_activation_bytes(full)}, groups=groups, notes=notes, chips=layout.chips, system=system,
        dtypes=step_dtypes(spec, full, footprint))
    _require_finite(result)
    joined_name = full.name if len(stages) == 1 else f"{full.name} [{layout.describe()}]"
    joined = _JOINED.get(tuple(stages), joined_name, lambda: _joined(joined_name, stages))
    return Costed(_per_chip_silicon(result, hw, spec), joined)


def _joined(name: str, stages: Sequence[Graph]) -> Graph:
    if len(stages) == 1:  # the stage's ops (deferred parts shared, not made) under the step's name
        return stages[0].copy(name)
    joined = Graph(name=name)
    for graph in stages:
        for op in graph:
            joined.add(op)
    return joined


def step_dtypes(spec: ModelSpec | None, graph: Graph, footprint: dict[str, float]) -> dict[str, str]:
    """The storage formats a step ran in: the typed model's (a cache or state the model does not
    keep is left out), or for an imported graph those its matmuls read (weights, activations)."""
    if spec is not None:
        held = {"kv": footprint.get("kv_cache", 0.0) > 0, "state": footprint.get("state", 0.0) > 0}
        return {k: v for k, v in spec.dtypes.model_dump().items() if held.get(k, True)}
    found: dict[str, str] = {}
    for op in graph:
        if isinstance(op, MatMul):
            found.setdefault("weight", op.b_dtype)
            found.setdefault("activation", op.a_dtype)
    return found


def _require_finite(result: Result) -> None:
    """A refusal, never NaN or inf in a result: configs are bounded at the edge, but a product of
    extreme (each allowed) figures can still overflow or divide by an underflowed zero."""
    figures = {"latency_s": result.latency_s, "tokens_per_s": result.tokens_per_s,
               "joules_per_token": result.joules_per_token}
    bad = [k for k, v in figures.items() if not (math.isfinite(v) and v >= 0)]
    if bad or not result.latency_s > 0:
        raise NotFiniteError(f"the step's {', '.join(bad) or 'latency_s'} would not be a finite positive "
                            f"number ({', '.join(f'{k} {v:g}' for k, v in figures.items())}); check "
                            f"the config's extreme figures (efficiency, bandwidth, clock, sizes)",
                            source=result.hw)


def _groups(backend: Backend, hw: HardwareBase, spec: ModelSpec | None, workload: Workload,
            stages: int) -> tuple[Workload, int]:
    """Users in flight at once: the backend's own rule on one chip (a hardwired layer pipeline),
    one group per stage across chips."""
    if stages == 1:
        return backend.microbatch(hw, spec, workload)
    groups = min(workload.batch, stages)
    return replace(workload, batch=math.ceil(workload.batch / groups)), groups


def _schedule(backend: Backend, hw: HardwareBase, stage_costs: list[list[OpCost]],
              workload: Workload, micro: Workload, groups: int) -> tuple[StepTime, list[float]]:
    """The step and each stage's time.  One chip: the backend's schedule.  Several stages: each
    stage's one-group time, combined as an autoregressive pipeline (the round rule a hardwired
    layer pipeline uses too)."""
    if len(stage_costs) == 1:
        step = backend.schedule(stage_costs[0], hw, workload, groups)
        return step, [step.latency_s]
    stage_s = [backend.schedule(c, hw, micro, 1).latency_s for c in stage_costs]
    if workload.phase == "prefill" and backend.streams_prefill(hw):  # spatial: the prompt streams
        return streamed_prefill(stage_s, workload), stage_s
    return pipelined_round(stage_s, workload, groups), stage_s


def _coordinated(step: StepTime, coordination: Any) -> StepTime:
    """The step followed by the runtime's per-step coordination of a model's chips
    (``Backend.worker_step_s``): host work, every chip idle through it."""
    if not isinstance(coordination, np.ndarray) and coordination == 0:
        return step
    return common.host_stepped(step, coordination, "gpu.worker_overhead x (chips - 1)")


def _with_coordination(figures: dict[str, Any], coordination: Any) -> dict[str, Any]:
    """``Result.system`` figures with the coordination counted in the step's host work
    (``step_overhead_s``), so the chips draw their host-wait power through it too."""
    if not isinstance(coordination, np.ndarray) and coordination == 0:
        return figures
    return {**figures, "step_overhead_s": figures.get("step_overhead_s", 0.0) + coordination}


def _spread_figures(layout: Parallelism, stage_s: list[float], costs: Sequence[OpCost],
                    step: StepTime, energy: dict[str, float], workload: Workload,
                    placements: Sequence[Placement]) -> dict[str, Any]:
    """Per-chip figures of a step spread over several chips."""
    per_chip = [pl.footprint for pl in placements]
    return {
        **layout.to_dict(),
        "stages": len(stage_s),
        "stage_latency_s": stage_s,
        "trip_s": sum(stage_s),
        "collective_s": _collective_s(costs),
        "tokens_per_s_per_chip": step.throughput_tokens_per_s / layout.chips,
        "joules_per_token_per_chip": sum(energy.values()) / workload.tokens_credited / layout.chips,
        "per_chip_footprint_bytes": max(per_chip, key=lambda f: sum(f.values())),
    }


def _collective_s(costs: Sequence[OpCost]) -> float:
    return sum(c.time_s for c in costs if c.kind == "collective")


def _headline(layout: Parallelism, step: StepTime, costs: Sequence[OpCost]) -> str:
    return (f"{layout.describe()}: per chip {step.throughput_tokens_per_s / layout.chips:,.1f} "
            f"tokens/s; collectives {_collective_s(costs) * 1e6:,.1f} us per trip")


def _per_chip_silicon(result: Result, hw: HardwareBase, spec: ModelSpec | None) -> Result:
    """Silicon (area, dies, reticle) and the TDP check are per chip: judge one chip's share of
    the system's power.  What it costs is ``accelsim.economics.price``'s, above the pipeline."""
    n = result.chips
    one = result.replaced(tokens_per_s=result.tokens_per_s / n,
                          energy_j={k: v / n for k, v in result.energy_j.items()})
    annotated = area.annotate(one, hw, spec)
    return result.replaced(area_mm2=annotated.area_mm2, die_mm2=annotated.die_mm2, dies=annotated.dies,
                           reticle_limited=annotated.reticle_limited, notes=annotated.notes)


def cost_alone(op: Op, hw: HardwareBase, keep: Callable[[Mapping], bool] | None = None) -> OpCost:
    """``op`` run by itself on ``hw`` under its best mapping (among those ``keep`` accepts): its
    operands start and end in off-chip memory, as in a kernel benchmark that times one GEMM or
    one stream over arrays larger than any cache."""
    backend = hardware.backend(hw)
    backend.check_lone_op(hw)
    graph = Graph(name=op.name)
    graph.add(op)
    placement = backend.place(graph, hw, None, None)
    offchip = placement.level_of["weight"]
    placement = replace(placement, level_of={role: offchip for role in placement.level_of})
    return best_cost(op, hw, backend, placement, keep)
