"""The Python API: the same entry points the CLI uses, returning plain data."""
from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

from accelsim import hardware, pipeline
from accelsim.config import loader
from accelsim.config.study import StudyCell, StudySpec
from accelsim.economics import system as economics_system
from accelsim.economics import tco as economics_tco
from accelsim.economics.tables import Tables, load_tables
from accelsim.errors import AccelsimError, CannotRunError, ConfigError
from accelsim.graph import Graph
from accelsim.hardware.spec import HardwareBase
from accelsim.memo import ByIdentity
from accelsim.model.density import DensityProfile, load_density
from accelsim.model.spec import ModelSpec, load_model
from accelsim.sim import disagg as disaggregated
from accelsim.sim import engine, serving
from accelsim.sim import speculative as spec_decoding
from accelsim.sim.engine import Overlap
from accelsim.sim.load import Capacity, Load, LoadKind, Slo, default_points, offered_value
from accelsim.sim.load import find_capacity as find_load_capacity
from accelsim.sim.load import run as run_load
from accelsim.sim.result import Refusal, Result
from accelsim.sim.runtime import RuntimePreset, on_hardware
from accelsim.sim.timeline import Timeline
from accelsim.transform import Parallelism
from accelsim.trust import Row, Trust, rows_from_records, trust_of
from accelsim.workload import Workload

# The validation table trust labels are computed from (``accelsim.trust``): one row per predicted
# measurement, rewritten by `accelsim validate --subset all --trust-table validation/trust_table.csv`.
TRUST_TABLE = loader.PACKAGE_ROOT.parent / "validation" / "trust_table.csv"


DEFAULT_RUNTIME = "accelsim"


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
    rows = loader.read_csv(path, "trace", max_bytes=MAX_TRACE_BYTES)
    return serving.parse_trace(rows, str(path))


@cache
def economics() -> Tables:
    """The bundled economics tables (``accelsim/economics/data``), read once."""
    return load_tables()


def load_runtime(runtime: RuntimePreset | str | None) -> RuntimePreset:
    """A serving runtime preset: bundled by name (``runtimes/``: accelsim, vllm, sglang,
    tensorrt-llm, nim) or a YAML path; None is the ``accelsim`` preset."""
    if isinstance(runtime, RuntimePreset):
        return runtime
    name = DEFAULT_RUNTIME if runtime is None else runtime  # '' is a typo, not the default
    # Bundled names first: "accelsim" is also the package folder beside runtimes/.
    path = loader.bundled_names("runtimes").get(name) or loader.resolve(name, "runtimes", "runtime preset")
    return loader.validate(RuntimePreset, loader.read_document(path), str(path))


def hardware_under(hw: HardwareBase | str, runtime: RuntimePreset | str | None,
                   power_limit: float | None = None) -> HardwareBase:
    """``hw`` with ``runtime``'s kernels and host overheads (``hw`` itself without a runtime),
    under ``power_limit`` watts per chip when one is given (``power_limited``)."""
    chip = power_limited(hw, power_limit)
    return chip if runtime is None else on_hardware(chip, load_runtime(runtime))


def power_limited(hw: HardwareBase | str, watts: float | None) -> HardwareBase:
    """``hw`` with its power limit set to ``watts`` per chip (a MaxQ-style run: each step's
    power is capped at min(TDP, limit) by ``hardware.power``), or ``hw`` as configured when None.
    A limit outside (idle power, TDP] is one clear error naming the chip and the allowed range."""
    chip = resolve_hardware(hw)
    if watts is None:
        return chip
    try:
        power = chip.power.limited(watts)
    except ValueError as err:
        raise AccelsimError(f"--power-limit: {chip.name} {err}") from None
    return chip.model_copy(update={"power": power})


def cost_model(model: ModelSpec | str, hw: HardwareBase | str, parallelism: Parallelism | None = None,
               density: DensityProfile | str | Path | None = None, runtime: RuntimePreset | str | None = None,
               power_limit: float | None = None, spec_decode: spec_decoding.SpecDecode | None = None,
               **dtypes: str | None) -> serving.CostModel:
    """Memoised serving step costs of ``model`` on ``hw`` (``accelsim.sim.serving``), under the
    kernels and host overheads of ``runtime`` when one is given and ``power_limit`` watts per
    chip when one is given; with ``spec_decode`` every decode step is a speculative round (its
    draft model resolved here)."""
    chip = hardware_under(hw, runtime, power_limit)
    draft = draft_model(spec_decode) if spec_decode is not None else None
    return serving.CostModel(resolve_model(model), chip, parallelism, resolve_density(density),
                             spec_decode, draft, **dtypes)


DISAGG_NO_CAPACITY = ("--find-capacity does not search --disagg runs (not built yet); run --disagg at "
                      "the loads of --rates / --concurrency and read the curve")


def check_disagg_options(spec: object | None, kv_link: str | None, single_system: bool) -> None:
    """--disagg names every pool's hardware and layout, so a single system's --hw / layout
    options cannot go with it, and --kv-link is only its link."""
    if spec is None and kv_link is not None:
        raise AccelsimError("--kv-link is the link between --disagg pools; give --disagg too")
    if spec is not None and single_system:
        raise AccelsimError(f"--disagg names each pool's hardware and layout ({disaggregated.SPEC_FORM}); "
                            "give no --hw, --chips, --tp, --pp, --ep or --dp-attn with it")


def disagg_system(model: ModelSpec | str, spec: disaggregated.DisaggSpec | str, *, kv_link: str | None = None,
                  runtime: RuntimePreset | str | None = None, density: DensityProfile | str | Path | None = None,
                  spec_decode: spec_decoding.SpecDecode | None = None, power_limit: float | None = None,
                  **dtypes: str | None) -> disaggregated.DisaggSystem:
    """The prefill and decode pools of ``spec`` (``--disagg`` text or parsed), each its hardware
    resolved here and costed under ``runtime``, and the KV link between them (``kv_link``, or the
    default of ``disaggregated.kv_link``).  The model must fit a replica of each pool; with
    ``spec_decode`` the decode pool's steps are speculative rounds (its draft in that pool);
    ``power_limit`` caps every chip of both pools."""
    parsed = spec if isinstance(spec, disaggregated.DisaggSpec) else disaggregated.parse_disagg(spec)
    pools = []
    for pool in (parsed.prefill, parsed.decode):
        try:
            costs = cost_model(model, pool.hw, pool.parallelism, density, runtime, power_limit=power_limit,
                               spec_decode=spec_decode if pool is parsed.decode else None, **dtypes)
        except AccelsimError as err:
            raise AccelsimError(f"--disagg {pool.role}={pool.hw}: {err.one_line()}") from None
        pools.append(disaggregated.pool(pool, costs))
    link = disaggregated.kv_link(kv_link, pools[0].costs.hw, pools[1].costs.hw,
                          parsed.prefill.chips + parsed.decode.chips)
    return disaggregated.DisaggSystem(pools[0], pools[1], link)


@dataclass(frozen=True)
class ServeReport:
    """What ``serve`` returns: the main run's summary, the curve over loads, the SLO capacity."""

    summary: dict
    curve: list[dict]
    capacity: dict | None
    runtime: str


def serve(model: ModelSpec | str, hw: HardwareBase | str | None, *, runtime: RuntimePreset | str | None = None,
          rate: float | None = None, concurrency: int | None = None, offline: bool = False,
          requests: int = 2000, prompt: int = 1024, output: int = 256, length_spread: float = 1.0,
          arrival: str = "poisson", cv: float = 2.0, seed: int = 0, trace: str | Path | None = None,
          shared_prefix: int = 0, curve: list[float] | None = None, find_capacity: bool = False, slo_ttft: float = 0.5,
          slo_tpot: float = 0.05, slo_percentile: float = 99.0, parallelism: Parallelism | None = None,
          density: DensityProfile | str | Path | None = None,
          spec_decode: spec_decoding.SpecDecode | None = None, results: bool = False,
          disagg: disaggregated.DisaggSpec | str | None = None, kv_link: str | None = None,
          power_limit: float | None = None,
          **options: Any) -> ServeReport | tuple[ServeReport, Any, list[Any], Capacity | None]:
    """``accelsim serve`` from Python: a load (``rate`` requests/s, ``concurrency`` in flight, or
    ``offline``) under ``runtime``'s scheduler; the summary, the curve over ``curve`` loads
    (default: around the load) and, with ``find_capacity``, the highest load meeting the SLOs.
    ``options`` override the preset's scheduler settings (ServeConfig fields: chunk, max_batch,
    reserve_output, preemption, memory_utilisation, prefix_cache, kv_offload, ...) and pick dtypes
    (weight_dtype, ...).  ``shared_prefix`` P: every synthetic prompt starts with the same P tokens.
    ``spec_decode`` (``SpecDecode(draft, k, accept)``) makes every decode step a speculative
    round; the summary's ``speculative`` section then holds the accepted tokens per step.
    ``results=True`` also returns the runs themselves.

    ``disagg`` (``--disagg`` text, e.g. ``"prefill=h100-sxm:2,decode=hardwired-llama-3.1-8b:4"``)
    serves on separate prefill and decode pools instead of ``hw`` (give ``hw=None``), their KV
    over ``kv_link`` (``accelsim.sim.disagg``); the summary gains a ``disagg`` section (pools,
    where the run is bound, KV moved, the balanced prefill:decode chip ratio) and the runs are
    ``disaggregated.DisaggResult``s.  With ``spec_decode`` the decode pool runs the rounds.
    ``power_limit`` caps every chip (watts), as ``--power-limit`` does."""
    if concurrency is not None and offline:
        raise AccelsimError("--concurrency and --offline are two different loads; give one")
    kind: LoadKind = "concurrency" if concurrency is not None else "offline" if offline else "rate"
    dtypes = {k: options.pop(k) for k in ("weight_dtype", "act_dtype", "kv_dtype") if k in options}
    preset = load_runtime(runtime)
    config = preset.serve_config(slo_ttft_s=slo_ttft, slo_tpot_s=slo_tpot, **options)
    requests_trace = tuple(load_trace(trace)) if trace is not None else None
    base = Load(kind, offered_value(rate, concurrency, requests_trace), requests, prompt, output, length_spread,
                arrival, cv, seed, requests_trace, shared_prefix)
    runs = serve_runs(model, hw, preset, config, base, curve or default_points(base), parallelism=parallelism,
                      density=density, spec_decode=spec_decode, power_limit=power_limit, disagg=disagg,
                      kv_link=kv_link, slo=Slo(slo_ttft, slo_tpot, slo_percentile) if find_capacity else None,
                      **dtypes)
    report = ServeReport(runs.summary(), runs.curve_summaries(),
                         runs.capacity.summary() if runs.capacity is not None else None, preset.name)
    if not results:
        return report
    if runs.split_main is not None:
        return report, runs.split_main, list(runs.split_curve), None
    return report, runs.main, list(runs.curve), runs.capacity


@dataclass(frozen=True)
class ServeRuns:
    """A serving study's runs: the main load, the curve over loads and the SLO capacity; with
    disaggregated pools also their system and its runs (``main`` is then the combined run)."""

    main: serving.ServeResult
    curve: tuple[serving.ServeResult, ...]
    capacity: Capacity | None
    costs: serving.CostModel  # with pools: the decode pool's, whose typical step a report draws
    system: disaggregated.DisaggSystem | None = None
    split_main: disaggregated.DisaggResult | None = None
    split_curve: tuple[disaggregated.DisaggResult, ...] = ()

    def summary(self) -> dict:
        return self.split_main.summary() if self.split_main is not None else self.main.summary()

    def curve_summaries(self) -> list[dict]:
        return [r.summary() for r in (self.split_curve if self.split_main is not None else self.curve)]


def serve_runs(model: ModelSpec | str, hw: HardwareBase | str | None, preset: RuntimePreset,
               config: serving.ServeConfig, base: Load, points: Iterable[float], *,
               parallelism: Parallelism | None = None, density: DensityProfile | str | Path | None = None,
               spec_decode: spec_decoding.SpecDecode | None = None, power_limit: float | None = None,
               disagg: disaggregated.DisaggSpec | str | None = None, kv_link: str | None = None,
               slo: Slo | None = None, each: Callable[[list[float]], Iterable[float]] = list,
               **dtypes: str | None) -> ServeRuns:
    """``accelsim serve``'s runs for the CLI and ``serve``: ``base`` on ``hw`` (or on the pools of
    ``disagg``, given instead of ``hw``), the curve over ``points`` (none offline), and with ``slo``
    the SLO capacity.  ``each`` wraps the curve's loads (a progress bar on a terminal)."""
    check_disagg_options(disagg, kv_link, hw is not None or parallelism is not None)
    loads = each(sorted(set(points))) if base.kind != "offline" else []
    if disagg is not None:
        if slo is not None:
            raise AccelsimError(DISAGG_NO_CAPACITY)
        system = disagg_system(model, disagg, kv_link=kv_link, runtime=preset, density=density,
                               spec_decode=spec_decode, power_limit=power_limit, **dtypes)
        split = disaggregated.run(system, config, base)
        split_curve = tuple(disaggregated.run(system, config, base.at(p)) for p in loads) or (split,)
        return ServeRuns(split.result, tuple(r.result for r in split_curve), None, system.decode.costs, system,
                         split, split_curve)
    assert hw is not None  # check_disagg_options: one system or the other
    costs = cost_model(model, hw, parallelism, density, preset, power_limit=power_limit, spec_decode=spec_decode,
                       **dtypes)
    capacity = find_load_capacity(costs, config, base, slo) if slo is not None else None
    main = run_load(costs, config, base)
    return ServeRuns(main, tuple(run_load(costs, config, base.at(p)) for p in loads) or (main,), capacity, costs)


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
            by_name = {c.name: c for c in chips}
            costs = economics_tco.report([(r, by_name[r.hw]) for r in results], spec, economics(),
                                         economics_tco.Load()) if results else None
            cells.append(StudyCell(case, chips, workload, results, refusals, costs))
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
    return result if note is None else result.replaced(notes=(*result.notes, note))


@cache
def trust_table(path: Path = TRUST_TABLE) -> tuple[Row, ...]:
    """The validation table's rows (empty when the file is absent: every chip is then
    'datasheet', which is what an unvalidated install can honestly say)."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            records = list(csv.DictReader(handle))
    except FileNotFoundError:
        return ()
    except OSError as err:
        raise ConfigError(f"cannot read the trust table ({err.strerror})", source=str(path)) from None
    try:
        return tuple(rows_from_records(records))
    except (KeyError, ValueError) as err:
        raise ConfigError(f"bad row ({err}); columns: hw, metric, split, error, status",
                          source=str(path)) from None


@cache
def _shipped(name: str) -> dict | None:
    """The bundled config of this name as shipped (None when no bundled config has it)."""
    if name not in loader.bundled_names("hw_configs"):
        return None
    return hardware.load_hardware(name).model_dump()


def is_design(hw: HardwareBase) -> bool:
    """Whether ``hw`` differs from the bundled config of its name (or has none): a design point
    that no measurement speaks for."""
    shipped = _shipped(hw.name)
    return shipped is None or shipped != hw.model_dump()


def chip_trust(hw: HardwareBase, phase: str, table: tuple[Row, ...] | None = None) -> Trust:
    """``hw``'s trust label for a step of ``phase`` (``accelsim.trust``); once per (chip, phase,
    table): specs and the read table are frozen."""
    rows = trust_table() if table is None else table
    return _TRUST.get((hw, rows), phase, lambda: _chip_trust(hw, phase, rows))


_TRUST: ByIdentity[Trust] = ByIdentity(64)


def _chip_trust(hw: HardwareBase, phase: str, table: tuple[Row, ...]) -> Trust:
    return trust_of(hw.name, phase, table, design=is_design(hw), family=hw.efficiency.family)


def costed_step(model: ModelSpec | str, hw: HardwareBase | str, workload: Workload | None = None, *,
                weight_dtype: str | None = None, act_dtype: str | None = None,
                kv_dtype: str | None = None, parallelism: Parallelism | None = None) -> pipeline.Costed:
    """``simulate``'s step with the per-chip graphs it costed (what the engine replays), priced
    with the bundled economics tables (``accelsim.economics.system.price``) and carrying the
    chip's trust label (``chip_trust``)."""
    spec, chip = resolve_model(model), resolve_hardware(hw)
    step = pipeline.model_step(spec, chip, workload or Workload(), weight_dtype=weight_dtype,
                               act_dtype=act_dtype, kv_dtype=kv_dtype, parallelism=parallelism)
    priced = economics_system.price(step.result, chip, spec, economics())
    return pipeline.Costed(priced.replaced(trust=chip_trust(chip, priced.workload["phase"])), step.graph)


def draft_model(spec_decode: spec_decoding.SpecDecode) -> ModelSpec | None:
    """The draft model ``spec_decode`` names, resolved; None for ``mtp`` (the target's own module)."""
    return None if spec_decode.uses_mtp else resolve_model(spec_decode.draft)


def speculative(model: ModelSpec | str, hw: HardwareBase | str, workload: Workload | None = None,
                spec_decode: spec_decoding.SpecDecode | None = None, *, weight_dtype: str | None = None,
                act_dtype: str | None = None, kv_dtype: str | None = None,
                parallelism: Parallelism | None = None) -> spec_decoding.SpecResult:
    """Speculative decoding of ``model`` on ``hw``: an ordinary decode step, the verify step
    (K + 1 tokens per sequence) and one draft step, each through the one pipeline, turned into
    effective TPOT and tokens/s per user by ``accelsim.sim.speculative.figures``.  The draft
    (``spec_decode.draft``) is a catalogue model or path run on the same chips, or ``mtp`` for
    the model's own multi-token-prediction module; dtype overrides apply to both models."""
    if spec_decode is None:
        raise AccelsimError("speculative decoding needs a SpecDecode(draft, k, accept)")
    target, chip = resolve_model(model), resolve_hardware(hw)
    wl = workload or Workload()
    if wl.phase != "decode":
        raise AccelsimError("--spec-decode speeds up decode steps; use --phase decode")
    dtypes = {"weight_dtype": weight_dtype, "act_dtype": act_dtype, "kv_dtype": kv_dtype}
    ordinary = replace(wl, spec_tokens=0)
    baseline = pipeline.model_step(target, chip, ordinary, parallelism=parallelism, **dtypes).result
    verify = pipeline.model_step(target, chip, replace(wl, spec_tokens=spec_decode.k),
                                 parallelism=parallelism, **dtypes).result
    draft = pipeline.draft_step(target, draft_model(spec_decode), chip, ordinary, parallelism=parallelism,
                                **dtypes).result
    figures = spec_decoding.figures(spec_decode, verify.latency_s, draft.latency_s, baseline.latency_s,
                                    wl.batch)
    return spec_decoding.SpecResult(baseline, verify, draft, figures)


def simulate_graph(graph: Graph, hw: HardwareBase | str, workload: Workload) -> Result:
    """Map and cost an imported ``graph`` (``accelsim.importers.torch_export``) on ``hw`` exactly
    as ``simulate`` does a lowered model; ``workload`` is the step the graph was traced for."""
    chip = resolve_hardware(hw)
    return economics_system.price(pipeline.graph_step(graph, chip, workload).result, chip, None, economics())


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


def tco(model: ModelSpec | str, hws: list[HardwareBase | str], workload: Workload | None = None, *,
        deploy_years: float | None = None, model_life_months: float | None = None,
        tokens_per_day: float | None = None, utilisation: float | None = None,
        tables: Tables | None = None, parallelism: Parallelism | None = None,
        **dtypes: str | None) -> economics_tco.TcoReport:
    """Total cost of ownership of ``model`` served on each chip of ``hws``: capex, opex, NRE,
    $/Mtoken at the load, and the breakeven of each custom chip against each merchant chip
    (``accelsim.economics.tco``).  The load is ``tokens_per_day`` (whole systems bought to carry
    it) or one system at ``utilisation``; neither: one system at the tables' utilisation."""
    base = tables or economics()
    changes: dict = {}
    if deploy_years is not None:
        changes["deploy_years"] = deploy_years
    if model_life_months is not None:
        changes["model_life_months"] = model_life_months
    priced_tables = base.with_system(**changes) if changes else base
    load = economics_tco.Load(tokens_per_day, utilisation)
    spec = resolve_model(model)
    chips = [resolve_hardware(h) for h in hws]
    if not chips:
        raise AccelsimError("tco needs at least one --hw")
    results, refusals = compare(spec, list(chips), workload, parallelism=parallelism,
                                weight_dtype=dtypes.get("weight_dtype"), act_dtype=dtypes.get("act_dtype"),
                                kv_dtype=dtypes.get("kv_dtype"))
    by_name = {r.hw: r for r in results}
    priced = [(economics_system.price(by_name[c.name], c, spec, priced_tables), c)
              for c in chips if c.name in by_name]
    notes = tuple(f"{r.hw}: {r.reason}" for r in refusals)
    return economics_tco.report(priced, spec, priced_tables, load, notes)
