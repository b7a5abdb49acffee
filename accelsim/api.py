"""The Python API: the same entry points the CLI uses, returning plain data."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from accelsim import hardware
from accelsim.errors import CannotRunError
from accelsim.graph import Graph
from accelsim.hardware import area
from accelsim.hardware.spec import HardwareBase
from accelsim.model.lower import lower
from accelsim.model.spec import ModelSpec, load_model
from accelsim.parallel import Parallelism
from accelsim.sim import fusion
from accelsim.sim.mapper import map_graph
from accelsim.sim.multichip import simulate_multichip
from accelsim.sim.result import Refusal, Result
from accelsim.workload import Workload


def resolve_model(model: ModelSpec | str) -> ModelSpec:
    return model if isinstance(model, ModelSpec) else load_model(model)


def resolve_hardware(hw: HardwareBase | str) -> HardwareBase:
    return hw if isinstance(hw, HardwareBase) else hardware.load_hardware(hw)


def simulate(model: ModelSpec | str, hw: HardwareBase | str, workload: Workload | None = None, *,
             weight_dtype: str | None = None, act_dtype: str | None = None,
             kv_dtype: str | None = None, parallelism: Parallelism | None = None) -> Result:
    """Lower ``model`` for ``workload``, map it onto ``hw``, cost every op, combine the step.

    ``parallelism`` spreads the model over several chips (``accelsim.parallel``); kinds that
    always span chips (``dataflow``) choose their own when it is None."""
    workload = workload or Workload()
    spec = resolve_model(model)
    chip = resolve_hardware(hw)
    forced_weight = getattr(getattr(chip, "hardwired", None), "weight_dtype", None)
    spec = spec.with_dtypes(weight=forced_weight or weight_dtype, activation=act_dtype, kv=kv_dtype)
    if parallelism is not None or hasattr(hardware.backend(chip), "plan"):
        return simulate_multichip(spec.name, lambda w: lower(spec, w), chip, workload, spec,
                                  parallelism)
    return simulate_lowered(spec.name, lambda w: lower(spec, w), chip, workload, spec)


def simulate_lowered(name: str, lower_for: Callable[[Workload], Graph], chip: HardwareBase,
                     workload: Workload, spec: ModelSpec | None = None) -> Result:
    """Map the graph ``lower_for(workload)`` onto ``chip``, cost every op, combine the step.

    ``lower_for`` is called again when the backend splits the batch into groups (hardwired
    pipelines); ``spec`` reaches backends that must know the model (a hardwired chip checks
    that its weights are this model's) and may be None for graphs without a ModelSpec."""
    kind = hardware.backend(chip)
    full_graph = fusion.for_chip(lower_for(workload), chip)  # the kernels the chip runs
    full_placement = kind.place(full_graph, chip, spec, workload)  # the whole step must fit
    group_workload, groups = kind.microbatch(chip, spec, workload)
    if group_workload == workload:
        graph, placement = full_graph, full_placement
    else:  # one group of users in flight is what each op processes at a time
        graph = fusion.for_chip(lower_for(group_workload), chip)
        placement = kind.place(graph, chip, spec, group_workload)
    costs = map_graph(graph, chip, kind, placement, workload.density)
    step = kind.schedule(costs, chip, workload, groups)

    energy: dict[str, float] = defaultdict(float)
    for c in costs:
        for component, joules in c.energy_j.items():
            energy[component] += joules * groups
    energy["static"] = chip.power.static * step.busy_s
    tokens = workload.tokens if workload.phase == "prefill" else workload.batch
    full_footprint = full_placement.footprint
    return area.annotate(Result(
        model=name, hw=chip.name, hw_kind=chip.kind,
        workload={"phase": workload.phase, "batch": workload.batch, "prompt": workload.prompt,
                  "context": workload.context},
        latency_s=step.latency_s, tokens_per_s=step.throughput_tokens_per_s,
        joules_per_token=sum(energy.values()) / tokens, energy_j=dict(energy), ops=costs,
        footprint_bytes=full_footprint, groups=groups, notes=step.notes,
        system=kind.system_figures(chip, workload, full_footprint) if hasattr(kind, "system_figures") else {}),
        chip)


def compare(model: ModelSpec | str, hws: list[HardwareBase | str], workload: Workload | None = None,
            parallelism: Parallelism | None = None, **dtypes: str | None
            ) -> tuple[list[Result], list[Refusal]]:
    """One model on several chips: the results, and a refusal for each chip that cannot run it."""
    spec = resolve_model(model)
    results, refusals = [], []
    for hw in hws:
        chip = resolve_hardware(hw)
        try:
            results.append(simulate(spec, chip, workload, parallelism=parallelism, **dtypes))
        except CannotRunError as err:
            refusals.append(Refusal(chip.name, err.one_line()))
    return results, refusals
