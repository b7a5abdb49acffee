"""The Python API: the same entry points the CLI uses, returning plain data."""
from __future__ import annotations

import csv
import io
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


MAX_TRACE_BYTES = 256 * 2**20  # a million requests are about 30 MiB of CSV


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
    text = loader.read_text(path, "trace", max_bytes=MAX_TRACE_BYTES)
    try:
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
    except csv.Error as err:
        raise AccelsimError(f"not a CSV trace: {err}", source=str(path)) from None
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


def run_study(study: StudySpec) -> list[StudyCell]:
    """Every (case, workload) cell of ``study``: ``compare`` over the case's chips."""
    cells = []
    for case in study.cases:
        chips = tuple(resolve_hardware(h) for h in case.hardware)
        spec = resolve_model(case.model)
        for item in study.workloads:
            workload = item.workload()
            results, refusals = compare(spec, list(chips), workload, weight_dtype=case.weight_dtype,
                                        act_dtype=case.act_dtype, kv_dtype=case.kv_dtype)
            cells.append(StudyCell(case, chips, workload, results, refusals))
    return cells


def simulate(model: ModelSpec | str, hw: HardwareBase | str, workload: Workload | None = None, *,
             weight_dtype: str | None = None, act_dtype: str | None = None,
             kv_dtype: str | None = None, parallelism: Parallelism | None = None) -> Result:
    """Lower ``model`` for ``workload``, map it onto ``hw``, cost every op, combine the step.

    ``parallelism`` spreads the model over several chips (``accelsim.transform``); kinds that
    always span chips (``dataflow``) choose their own when it is None."""
    return costed_step(model, hw, workload, weight_dtype=weight_dtype, act_dtype=act_dtype,
                       kv_dtype=kv_dtype, parallelism=parallelism).result


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
