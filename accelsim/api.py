"""The Python API: the same entry points the CLI uses, returning plain data."""
from __future__ import annotations

from accelsim import hardware, pipeline
from accelsim.errors import CannotRunError
from accelsim.hardware.spec import HardwareBase
from accelsim.model.lower import lower
from accelsim.model.spec import ModelSpec, load_model
from accelsim.sim import engine
from accelsim.sim.engine import Overlap
from accelsim.sim.result import Refusal, Result
from accelsim.sim.timeline import Timeline
from accelsim.transform import Parallelism
from accelsim.workload import Workload


def resolve_model(model: ModelSpec | str) -> ModelSpec:
    return model if isinstance(model, ModelSpec) else load_model(model)


def resolve_hardware(hw: HardwareBase | str) -> HardwareBase:
    return hw if isinstance(hw, HardwareBase) else hardware.load_hardware(hw)


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
    workload = workload or Workload()
    chip = resolve_hardware(hw)
    spec = pipeline.typed_model(resolve_model(model), chip, weight=weight_dtype,
                                activation=act_dtype, kv=kv_dtype)
    return pipeline.run(spec.name, lambda w: lower(spec, w), chip, workload, spec, parallelism)


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
