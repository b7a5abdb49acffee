"""The Python API: the same entry points the CLI uses, returning plain data."""
from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path

from accelsim import hardware, pipeline
from accelsim.density import DensityProfile, load_density
from accelsim.config import loader
from accelsim.errors import AccelsimError, CannotRunError, ConfigError
from accelsim.graph import Graph
from accelsim.hardware.spec import HardwareBase
from accelsim.model.spec import ModelSpec, load_model
from accelsim.sim import engine, serving
from accelsim.sim.engine import Overlap
from accelsim.sim.result import Refusal, Result
from accelsim.sim.timeline import Timeline
from accelsim.study import StudyCell, StudySpec
from accelsim.transform import Parallelism
from accelsim.workload import Workload


def resolve_model(model: ModelSpec | str) -> ModelSpec:
    return model if isinstance(model, ModelSpec) else load_model(model)


def resolve_hardware(hw: HardwareBase | str) -> HardwareBase:
    return hw if isinstance(hw, HardwareBase) else hardware.load_hardware(hw)


def resolve_density(density: DensityProfile | str | Path | None) -> DensityProfile | None:
    """A profile as given, or read from its path (``Workload.density`` takes the profile)."""
    if density is None or isinstance(density, DensityProfile):
        return density
    if isinstance(density, (str, Path)):
        return load_density(density)
    raise AccelsimError(f"density must be a DensityProfile or a path to one, got {type(density).__name__}")


def load_trace(path: str | Path) -> list[serving.Request]:
    """A request trace: a CSV with columns arrival_s, prompt_tokens, output_tokens."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as err:
        raise AccelsimError(f"cannot read trace: {err.strerror}", source=str(path)) from None
    return serving.parse_trace(rows, str(path))


def cost_model(model: ModelSpec | str, hw: HardwareBase | str, parallelism: Parallelism | None = None,
               density: DensityProfile | str | Path | None = None,
               **dtypes: str | None) -> serving.CostModel:
    """Memoised serving step costs of ``model`` on ``hw`` (``accelsim.sim.serving``)."""
    return serving.CostModel(resolve_model(model), resolve_hardware(hw), parallelism,
                             resolve_density(density), **dtypes)


def load_study(path: str) -> StudySpec:
    """A study file (models x chips x workloads), validated."""
    resolved = Path(path)
    if not resolved.is_file():
        raise ConfigError("no such study file", source=path)
    return loader.validate(StudySpec, loader.read_document(resolved), path)


def run_study(study: StudySpec, done: Callable[[], None] | None = None) -> list[StudyCell]:
    """Every (case, workload) cell of ``study``: ``compare`` over the case's chips (``done`` is
    called after each cell, for a progress bar)."""
    cells = []
    for case in study.cases:
        chips = tuple(resolve_hardware(h) for h in case.hardware)
        spec = resolve_model(case.model)
        for item in study.workloads:
            workload = item.workload()
            results, refusals = compare(spec, list(chips), workload, weight_dtype=case.weight_dtype,
                                        act_dtype=case.act_dtype, kv_dtype=case.kv_dtype)
            cells.append(StudyCell(case, chips, workload, results, refusals))
            if done is not None:
                done()
    return cells


def long_context_note(spec: ModelSpec, workload: Workload, allow: bool) -> str | None:
    """Refuse a prompt or cached context longer than the model's ``max_context`` (positions it
    has no trained embedding or RoPE scaling for; a KV cache nobody can fill), or, when
    ``allow``, the note the result carries instead.  The tokens already in the sequence are
    compared (the prompt a prefill reads, the context a decode step attends to)."""
    size_name, size = ("prompt", workload.prompt) if workload.phase == "prefill" else ("context", workload.context)
    if size <= spec.max_context:
        return None
    message = (f"{size_name} {size:,} is beyond {spec.name}'s max_context {spec.max_context:,}")
    if not allow:
        raise AccelsimError(f"--{size_name}: {message}; use --{size_name} <= {spec.max_context:,} "
                            f"or --allow-long-context to cost it anyway")
    return f"{message} (--allow-long-context): the cost is what the shapes cost; the model was never trained this long"


def simulate(model: ModelSpec | str, hw: HardwareBase | str, workload: Workload | None = None, *,
             weight_dtype: str | None = None, act_dtype: str | None = None,
             kv_dtype: str | None = None, parallelism: Parallelism | None = None,
             allow_long_context: bool = False) -> Result:
    """Lower ``model`` for ``workload``, map it onto ``hw``, cost every op, combine the step.

    ``parallelism`` spreads the model over several chips (``accelsim.transform``); kinds that
    always span chips (``dataflow``) choose their own when it is None.  A prompt or context
    beyond the model's ``max_context`` is refused unless ``allow_long_context``."""
    spec = resolve_model(model)
    asked = workload or Workload()
    note = long_context_note(spec, asked, allow_long_context)
    result = costed_step(spec, hw, asked, weight_dtype=weight_dtype, act_dtype=act_dtype,
                         kv_dtype=kv_dtype, parallelism=parallelism).result
    return result if note is None else replace(result, notes=(*result.notes, note))


def costed_step(model: ModelSpec | str, hw: HardwareBase | str, workload: Workload | None = None, *,
                weight_dtype: str | None = None, act_dtype: str | None = None,
                kv_dtype: str | None = None, parallelism: Parallelism | None = None) -> pipeline.Costed:
    """``simulate``'s step with the per-chip graphs it costed (what the engine replays)."""
    return pipeline.model_step(resolve_model(model), resolve_hardware(hw), workload or Workload(),
                               weight_dtype=weight_dtype, act_dtype=act_dtype, kv_dtype=kv_dtype,
                               parallelism=parallelism)


def simulate_graph(graph: Graph, hw: HardwareBase | str, workload: Workload) -> Result:
    """Map and cost an imported ``graph`` (``accelsim.importers.torch_export``) on ``hw`` exactly
    as ``simulate`` does a lowered model; ``workload`` is the step the graph was traced for."""
    return pipeline.graph_step(graph, resolve_hardware(hw), workload).result


def timeline(model: ModelSpec | str, hw: HardwareBase | str, workload: Workload, *,
             overlap: Overlap = "double_buffered", rounds: int = 1, quantise: bool = False,
             parallelism: Parallelism | None = None, **dtypes: str | None) -> Timeline:
    """One step costed the analytical way, then replayed in simulated time (``sim.engine``)."""
    chip = resolve_hardware(hw)
    step = costed_step(model, chip, workload, parallelism=parallelism, **dtypes)
    return engine.replay(step, chip, overlap=overlap, rounds=rounds, quantise=quantise)


def sweep_points(model: ModelSpec | str, hw: HardwareBase | str, workloads: Iterable[Workload],
                 parallelism: Parallelism | None = None, allow_long_context: bool = False,
                 **dtypes: str | None) -> tuple[list[Result], list[Refusal]]:
    """One model on one chip at several workload points (a list-valued ``--batch``/``--context``):
    the results, and a refusal for each point the chip cannot run."""
    spec, chip = resolve_model(model), resolve_hardware(hw)
    results, refusals = [], []
    for workload in workloads:
        try:
            results.append(simulate(spec, chip, workload, parallelism=parallelism,
                                    allow_long_context=allow_long_context, **dtypes))
        except CannotRunError as err:
            refusals.append(Refusal(chip.name, err.one_line(), workload.to_dict()))
    return results, refusals


def compare(model: ModelSpec | str, hws: Sequence[HardwareBase | str], workload: Workload | None = None,
            parallelism: Parallelism | None = None, allow_long_context: bool = False,
            **dtypes: str | None) -> tuple[list[Result], list[Refusal]]:
    """One model on several chips: the results, and a refusal for each chip that cannot run it."""
    spec = resolve_model(model)
    long_context_note(spec, workload or Workload(), allow_long_context)  # the model's limit, not a chip's
    results, refusals = [], []
    for hw in hws:
        chip = resolve_hardware(hw)
        try:
            results.append(simulate(spec, chip, workload, parallelism=parallelism,
                                    allow_long_context=allow_long_context, **dtypes))
        except CannotRunError as err:
            refusals.append(Refusal(chip.name, err.one_line(), (workload or Workload()).to_dict()))
    return results, refusals
