"""One step on several chips: shard the graph, cost each pipeline stage on one of its chips, and
combine the stages as an autoregressive pipeline (the same round rule as a hardwired chip's
layer pipeline, ``hardware.hardwired.pipeline_step``).

Every chip of a stage runs the same sharded graph, so one chip's costs stand for all of them;
energy is one chip's energy times the chips of its stage, and static power is paid by every
chip for the whole round.
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace

from accelsim import hardware
from accelsim.errors import AccelsimError
from accelsim.graph import Graph
from accelsim.hardware import area, common, hardwired, interconnect
from accelsim.hardware.base import OpCost
from accelsim.hardware.spec import HardwareBase
from accelsim.model.spec import ModelSpec
from accelsim.parallel import Parallelism, shard, stage_graphs
from accelsim.sim import fusion
from accelsim.sim.mapper import map_graph
from accelsim.sim.result import Result
from accelsim.workload import Workload

Splitter = Callable[[Graph], list[Graph]]


@dataclass(frozen=True)
class Plan:
    """How a kind spreads a graph over chips: the parallelism and the per-stage graphs."""

    parallelism: Parallelism
    split: Splitter


def default_plan(graph: Graph, chip: HardwareBase, parallelism: Parallelism) -> Plan:
    return Plan(parallelism, lambda g: stage_graphs(shard(g, parallelism)))


def simulate_multichip(name: str, lower_for: Callable[[Workload], Graph], chip: HardwareBase,
                       workload: Workload, spec: ModelSpec | None,
                       parallelism: Parallelism | None) -> Result:
    kind = hardware.backend(chip)
    if chip.kind == "hardwired":
        raise AccelsimError(f"{chip.name} is a single-model chip with its weights in silicon; "
                            f"it does not take --chips/--tp/--pp/--ep")
    full = lower_for(workload)
    plan_for = getattr(kind, "plan", default_plan)
    plan = plan_for(full, chip, parallelism or Parallelism())
    par = plan.parallelism
    if par.chips > 1:
        interconnect.links_of(chip)
    # Fusion runs after sharding: collectives stay kernels of their own.
    def split(g: Graph) -> list[Graph]:
        return [fusion.for_chip(stage, chip) for stage in plan.split(g)]

    full_stages = split(full)
    per_chip = [kind.place(g, chip, spec, workload).footprint for g in full_stages]  # fit check

    groups = min(workload.batch, len(full_stages))
    micro = replace(workload, batch=math.ceil(workload.batch / groups))
    stages = full_stages if groups == 1 else split(lower_for(micro))
    costs: list[OpCost] = []
    stage_s: list[float] = []
    for graph in stages:
        placement = kind.place(graph, chip, spec, micro)
        stage_costs = map_graph(graph, chip, kind, placement, micro.density)
        stage_s.append(kind.schedule(stage_costs, chip, micro, 1).latency_s)
        costs.extend(stage_costs)
    step = hardwired.pipeline_step(list(enumerate(stage_s)), 0.0, workload, groups)

    energy: dict[str, float] = defaultdict(float)
    for c in costs:
        for component, joules in c.energy_j.items():
            energy[component] += joules * groups * par.per_stage
    energy["static"] = chip.power.static * par.chips * step.busy_s
    tokens = workload.tokens if workload.phase == "prefill" else workload.batch
    collective_s = sum(c.time_s for c in costs if c.kind == "collective")
    system = {
        **par.to_dict(),
        "stages": len(stages),
        "stage_latency_s": stage_s,
        "trip_s": sum(stage_s),
        "collective_s": collective_s,
        "tokens_per_s_per_chip": step.throughput_tokens_per_s / par.chips,
        "joules_per_token_per_chip": sum(energy.values()) / tokens / par.chips,
        "per_chip_footprint_bytes": max(per_chip, key=lambda f: sum(f.values())),
        # Kind-specific figures (a GPU's per-step host overhead, paid by each stage's step).
        **(kind.system_figures(chip, workload, common.footprint(full))
           if hasattr(kind, "system_figures") else {}),
    }
    headline = (f"{par.describe()}: per chip {step.throughput_tokens_per_s / par.chips:,.1f} "
                f"tokens/s; collectives {collective_s * 1e6:,.1f} us per trip")
    notes = (headline, *step.notes)
    result = Result(
        model=name, hw=chip.name, hw_kind=chip.kind,
        workload={"phase": workload.phase, "batch": workload.batch, "prompt": workload.prompt,
                  "context": workload.context},
        latency_s=step.latency_s, tokens_per_s=step.throughput_tokens_per_s,
        joules_per_token=sum(energy.values()) / tokens, energy_j=dict(energy), ops=costs,
        footprint_bytes=common.footprint(full), groups=groups, notes=notes, chips=par.chips,
        system=system)
    return _annotate_per_chip(result, chip)


def _annotate_per_chip(result: Result, chip: HardwareBase) -> Result:
    """Die area, $/Mtoken and the TDP check are per die: judge one chip's share (its power and
    tokens/s), which leaves $/Mtoken the same for the system."""
    n = result.chips
    one = replace(result, tokens_per_s=result.tokens_per_s / n,
                  energy_j={k: v / n for k, v in result.energy_j.items()})
    annotated = area.annotate(one, chip)
    return replace(result, area_mm2=annotated.area_mm2, die_cost_usd=annotated.die_cost_usd,
                   usd_per_mtoken=annotated.usd_per_mtoken, notes=annotated.notes)
