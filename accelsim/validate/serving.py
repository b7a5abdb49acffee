"""Serving validation: measured serving rows replayed through the whole scheduler (``serve``).

``validation/serving.yaml`` names the measurement files, how each was measured (runtime preset,
load, metrics), how their names map to accelsim's, and the calibration split, chosen before
anything was fitted.  Two row formats are read:

- ``trtllm-bench``: one row per max-throughput run (TensorRT-LLM's performance tables), all
  requests queued at once, one metric (output tokens/s);
- ``inferencex``: InferenceX's fixed-concurrency sweeps in ``measured_2025.csv``, one row per
  (run, metric), so one simulated run predicts every metric of its measured run (TTFT,
  interactivity, throughput per GPU);
- ``mlperf``: MLPerf Inference Offline rows of ``measured_2025.csv`` (system output tokens/s),
  replayed as an offline queue on one model replica of the submitter's stated layout, times the
  replicas; a row whose inputs (dataset lengths, layout, model, chip) are not all sourced is
  listed as not predictable with its reason (``mlperf_unpredictable``).

Every row a source selects is either mapped or excluded with a stated reason, so a new row
can never vanish silently.  Errors are summarised per (source, metric, split) group.
"""
from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Literal, Union, get_args

import numpy as np
import pandas as pd
from pydantic import Field, StrictBool, model_validator

from accelsim.config import loader
from accelsim.config.types import PositiveInt, Spec
from accelsim.dtypes import DType
from accelsim.errors import ConfigError
from accelsim.sim.load import Load
from accelsim.sim.runtime import CountSetting, RuntimePreset, SwitchSetting
from accelsim.sim.serving import Request, ServeConfig, ServeResult
from accelsim.validate.points import DEFAULT_POINTS, VALIDATION_DIR, Catalogue, Runtime

DEFAULT_FILE = VALIDATION_DIR / "serving.yaml"
# What a serving row is compared on: the whole group's output tokens/s (TensorRT-LLM tables),
# or InferenceX's per-run medians and per-GPU throughputs.
ServingMetric = Literal["output_throughput", "ttft_p50", "tpot_p50", "interactivity_p50",
                        "output_throughput_per_chip", "total_throughput_per_chip"]
SERVING_METRICS: tuple[str, ...] = get_args(ServingMetric)


class Dtypes(Spec):
    weight: DType
    act: DType
    kv: DType


class TrtllmBenchSource(Spec):
    format: Literal["trtllm-bench"]
    file: str = Field(min_length=1)
    runtime: str = Field(min_length=1)  # a bundled runtime preset (runtimes/)
    load: Literal["offline"]
    metric: Literal["output_throughput"]
    # the precision cell's first word (e.g. "FP8" of "FP8 (nvidia/..., ModelOpt)") -> dtypes
    precisions: dict[str, Dtypes] = Field(min_length=1)
    calibration_models: list[str] = Field(min_length=1)
    source: str = Field(min_length=3)


class Exclusion(Spec):
    """Rows whose ``column`` equals ``value`` are left out, for ``reason``."""
    column: str = Field(min_length=1)
    value: str
    reason: str = Field(min_length=3)


# Runtime preset settings a measured run may set otherwise than its preset (``EngineSetting``):
# on/off switches, and counts.
RUN_SWITCHES = ("prefill_graphs", "overlap_schedule", "mixed_prefill")
RUN_COUNTS = ("max_tokens_per_step",)
# The counts an MLPerf submission's config sets (``MlperfLayout.settings``): the sequences the
# engine keeps in flight per instance (gpu_batch_size per attention rank x ranks, capped by the
# harness's max_concurrency) and the instance's token budget per step (TensorRT-LLM's
# max_num_tokens, per attention rank, x ranks: the serving loop spreads a step's prompt tokens over
# the ranks).
LAYOUT_COUNTS = ("max_batch", "max_tokens_per_step")


class EngineSetting(Spec):
    """Runs whose cells contain the given texts (``where``: column -> text) were served with
    these preset settings (``settings``) otherwise than the preset says, per ``source`` (the
    benchmark script or engine config those runs used)."""
    # a cell contains the empty text whatever it holds: '' would match every run
    where: dict[str, Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    # StrictBool: a quoted 'yes' or 'off' is a typo, not a switch
    settings: dict[str, Union[StrictBool, PositiveInt]] = {}
    # The kernel library those runs ran where it is not the preset's: a key of points.yaml's
    # ``runtimes`` (the same runs' decode points name it), whose gpu settings replace the preset's
    # kernel settings; and the KV-cache format the run kept where it is not the precision's.
    kernels: str | None = None
    kv_dtype: DType | None = None
    source: str = Field(min_length=3)

    @model_validator(mode="after")
    def _known_settings(self):
        if not self.settings and self.kernels is None and self.kv_dtype is None:
            raise ValueError("an engine setting needs settings, kernels or kv_dtype")
        for key, value in self.settings.items():
            if key not in RUN_SWITCHES + RUN_COUNTS:
                raise ValueError(f"unknown engine setting {key}; allowed: {', '.join(RUN_SWITCHES + RUN_COUNTS)}")
            if (key in RUN_SWITCHES) != isinstance(value, bool):
                raise ValueError(f"engine setting {key} must be {'true or false' if key in RUN_SWITCHES else 'a count >= 1'}")
        return self

    def applies(self, row: Mapping[str, str]) -> bool:
        return all(text in row.get(column, "") for column, text in self.where.items())


class InferenceXSource(Spec):
    """InferenceX's runs and client, for both harnesses: the aggregated rows are replayed here,
    the disaggregated ones ("disagg" in parallelism) by ``validate.disagg``."""
    format: Literal["inferencex"]
    file: str = Field(min_length=1)
    scenario: str = Field(min_length=1)  # the rows whose scenario contains this text
    runtimes: dict[str, str] = Field(min_length=1)  # framework -> bundled runtime preset
    metrics: dict[str, ServingMetric] = Field(min_length=1)  # measured metric name -> accelsim's
    unscored: dict[str, str] = {}  # measured metric name -> why it is not compared here
    # measured precision -> measured hardware name (or "*") -> the dtypes that run uses
    precisions: dict[str, dict[str, Dtypes]] = Field(min_length=1)
    requests_per_concurrency: PositiveInt  # the client sends concurrency x this many requests
    length_spread: float = Field(gt=0, le=1)  # lengths uniform over spread..1 of nominal
    exclude: list[Exclusion] = []
    engine_settings: list[EngineSetting] = []
    calibration_metrics: list[ServingMetric] = []
    source: str = Field(min_length=3)


class MlperfBenchmark(Spec):
    """One MLPerf benchmark's dataset, as its documents state it.  ``input_mean`` (tokens per
    prompt) is what the replay needs beside the row's own output length; without a sourced value
    the benchmark's rows are not predictable, for ``input_unsourced``."""
    dataset: str = Field(min_length=3)
    samples: PositiveInt  # the dataset's sample count
    input_max: PositiveInt  # the longest prompt the benchmark admits
    input_mean: PositiveInt | None = None
    input_unsourced: str | None = None
    output_mean: float | None = Field(default=None, gt=0)  # the reference implementation's mean output tokens
    # A per-sample (input_length, output_length) table of the dataset (CSV beside the serving
    # file): prompts are replayed with its lengths.  Outputs: "measured-mean" gives every request
    # the row's measured mean (the engine's generation differs from the table's reference
    # answers); "reference-scaled" keeps the table's output shape (clipped at output_max, the
    # benchmark's generation limit) scaled to the row's measured mean.
    lengths: str | None = None
    outputs: Literal["measured-mean", "reference-scaled"] = "measured-mean"
    output_max: PositiveInt | None = None
    source: str = Field(min_length=3)

    @model_validator(mode="after")
    def _input_or_reason(self):
        if (self.input_mean is None) == (self.input_unsourced is None):
            raise ValueError("give input_mean (with its source) or input_unsourced (why it has none), not both")
        if self.input_mean is not None and self.input_mean > self.input_max:
            raise ValueError(f"input_mean {self.input_mean} exceeds input_max {self.input_max}")
        if self.outputs == "reference-scaled" and self.lengths is None:
            raise ValueError("outputs reference-scaled needs a lengths table")
        return self


class MlperfLayout(Spec):
    """How a submission split its chips (system JSON / code/ configs of the results repository):
    ``replicas`` copies of a tp x pp x dp model instance (ep splits the experts)."""
    submitter: str = Field(min_length=1)  # the row's ``submitter=`` note (system names repeat across submitters)
    system: str = Field(min_length=1)  # the row's ``system=`` note
    model: str = Field(min_length=1)  # the row's model cell
    tp: PositiveInt = 1
    pp: PositiveInt = 1
    dp: PositiveInt = 1
    ep: PositiveInt = 1
    replicas: PositiveInt = 1
    # What the submission's engine and LoadGen ran with, read from its config and log (cited in
    # ``source``): preset counts otherwise than the preset's defaults (``LAYOUT_COUNTS``), and the
    # run's sample count (LoadGen's generated_samples_per_query, the whole system's), which the
    # replay queues, split over the replicas, in place of the source's requests_per_replica.  A
    # long-output benchmark drains its queue for minutes at a shrinking batch: how many samples
    # the run queued sets how much of it that drain is.
    settings: dict[str, PositiveInt] = {}
    samples: PositiveInt | None = None
    source: str = Field(min_length=3)

    @model_validator(mode="after")
    def _known_counts(self):
        for key in self.settings:
            if key not in LAYOUT_COUNTS:
                raise ValueError(f"unknown layout setting {key}; allowed: {', '.join(LAYOUT_COUNTS)}")
        if self.samples is not None and self.samples < self.replicas:
            raise ValueError(f"samples {self.samples} leave a replica of the {self.replicas} without a request")
        return self

    @property
    def chips(self) -> int:
        return self.tp * self.pp * self.dp * self.replicas

    def requests(self, default: int) -> int:
        """Requests one replica serves: its share of the run's samples (rounded up), else ``default``."""
        return default if self.samples is None else -(-self.samples // self.replicas)

    def engine_settings(self) -> tuple[tuple[str, bool | int, str], ...]:
        """The counts this submission set, as a run's settings (key, value, source), by key."""
        return tuple((key, value, self.source) for key, value in sorted(self.settings.items()))


class MlperfSource(Spec):
    """MLPerf Inference rows of one scenario: Offline (``load: offline``, all samples queued at
    t=0) or Server (``load: rate``, Poisson arrivals at the run's measured samples/s)."""
    format: Literal["mlperf"]
    file: str = Field(min_length=1)
    scenario: str = Field(min_length=1)  # the rows whose scenario equals this text
    load: Literal["offline", "rate"] = "offline"
    metrics: dict[str, ServingMetric] = Field(min_length=1)  # compared metric cells -> accelsim's
    unscored: dict[str, str] = {}  # the run's other metric cells -> why they are not compared
    tokens_name: str = Field(min_length=1)  # the run's output tokens/s row (for its mean output)
    samples_name: str = Field(min_length=1)  # the same run's samples/s row (mean output; a Server run's rate)
    runtimes: dict[str, str] = Field(min_length=1)  # the framework cell's first word -> runtime preset
    precisions: dict[str, Dtypes] = Field(min_length=1)  # the precision cell -> dtypes
    benchmarks: dict[str, MlperfBenchmark] = Field(min_length=1)  # measured model name -> dataset
    layouts: list[MlperfLayout] = []
    # Requests queued on one replica: enough for the engine's steady state, fewer than the run's
    # (hundreds of thousands of samples over 600 s), which would cost CPU and not change the rate.
    requests_per_replica: PositiveInt
    # LoadGen issues an Offline run's samples in a random order; the replay takes the first
    # requests_per_replica of the lengths table under this seeded permutation.
    seed: int = 0
    calibration_submitters: list[str] = []
    source: str = Field(min_length=3)


ServingSource = Annotated[Union[TrtllmBenchSource, InferenceXSource, MlperfSource], Field(discriminator="format")]


class ServingFile(Spec):
    sources: dict[str, ServingSource] = Field(min_length=1)
    models: dict[str, str]
    hardware: dict[str, str]


@dataclass(frozen=True)
class ServingRun:
    """One simulated serving run: what the benchmark client and the engine did."""
    runtime: str
    model: str
    hw: str
    tp: int
    ep: int
    dp: int
    weight_dtype: str
    act_dtype: str
    kv_dtype: str
    load: Literal["offline", "concurrency", "rate"]
    concurrency: int  # 0 offline
    requests: int
    input_len: int
    output_len: int
    spread: float
    # Preset settings this run set otherwise: (key, value, source), from ``EngineSetting``.
    settings: tuple[tuple[str, bool | int, str], ...] = ()
    kernels: str | None = None  # a points.yaml runtime whose kernel settings this run ran
    pp: int = 1
    # Independent copies of this instance serving the same queue (MLPerf systems run one model
    # per GPU or per group): the system's throughput is this many times one copy's.
    replicas: int = 1
    # Per-request (prompt, output) lengths, in place of input_len/output_len: queued at t=0
    # offline, Poisson arrivals at ``rate`` (requests/s per replica) under a rate load.
    lengths: tuple[tuple[int, int], ...] = ()
    rate: float = 0.0

    @property
    def chips(self) -> int:
        return self.tp * self.pp * self.dp


@dataclass(frozen=True)
class ServingPoint:
    id: str
    source: str
    metric: str
    run: ServingRun
    measured: float
    split: str
    where: str


def _read_rows(table: Path) -> list[dict[str, str]]:
    try:
        with open(table, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    except OSError as err:
        raise ConfigError(f"cannot read measurements: {err.strerror}", source=str(table)) from None


def _mapped(mapping: Mapping[str, str], key: str, what: str, where: str) -> str:
    if key not in mapping:
        raise ConfigError(f"no {what} mapping for {key!r} (add it to serving.yaml's `{what}`, or exclude the row)",
                          source=where)
    return mapping[key]


def _number(row: Mapping[str, str], column: str, where: str) -> float:
    try:
        value = float(row[column])
    except KeyError:
        raise ConfigError(f"no column {column!r}", source=where) from None
    except ValueError:
        raise ConfigError(f"{column} must be a number, got {row[column]!r}", source=where) from None
    if not np.isfinite(value) or value <= 0:
        raise ConfigError(f"{column} must be a finite number > 0, got {row[column]!r}", source=where)
    return value


def _trtllm_points(name: str, src: TrtllmBenchSource, spec: ServingFile, rows: list[dict[str, str]],
                   table: Path) -> list[ServingPoint]:
    points = []
    for i, row in enumerate(rows, start=2):
        where = f"{table}:{i}"
        model = _mapped(spec.models, row.get("model", ""), "models", where)
        hw = _mapped(spec.hardware, row.get("hardware", ""), "hardware", where)
        dtypes = src.precisions.get(row.get("precision", "").split(" ")[0])
        if dtypes is None:
            raise ConfigError(f"no precisions mapping for {row.get('precision')!r}; known: "
                              f"{', '.join(src.precisions)}", source=where)
        tp, requests = int(_number(row, "chips", where)), int(_number(row, "num_requests", where))
        isl, osl = int(_number(row, "input_len", where)), int(_number(row, "output_len", where))
        run = ServingRun(src.runtime, model, hw, tp, 1, 1, dtypes.weight, dtypes.act, dtypes.kv,
                         "offline", 0, requests, isl, osl, 1.0)
        split = "calibration" if row["model"] in src.calibration_models else "holdout"
        points.append(ServingPoint(f"{name}/{row['hardware']}/{row['model']}/{isl}-{osl}", name, src.metric, run,
                                   _number(row, "value", where), split, where))
    return points


def parse_layout(text: str, chips: int, where: str) -> tuple[int, int, int]:
    """(tp, ep, dp) from an InferenceX parallelism cell such as "TP8 EP8 (single node, 8 GPUs)";
    "DP-attention" puts the attention on data-parallel ranks (dp = the TP count, tp = 1), the layout
    InferenceX's DeepSeek runs use.  The ranks must account for the row's chips."""
    tp_match, ep_match = re.search(r"\bTP(\d+)\b", text), re.search(r"\bEP(\d+)\b", text)
    if tp_match is None:
        raise ConfigError(f"parallelism {text!r} names no TPn (exclude the row with a reason)", source=where)
    ranks, ep = int(tp_match.group(1)), int(ep_match.group(1)) if ep_match else 1
    tp, dp = (1, ranks) if re.search(r"DP[- ]att", text, re.IGNORECASE) else (ranks, 1)
    if ranks < 1 or ep < 1 or tp * dp != chips:
        raise ConfigError(f"parallelism {text!r} does not account for the row's {chips} chips", source=where)
    return tp, ep, dp


def _concurrency(text: str, where: str) -> int:
    match = re.fullmatch(r"\s*concurrency\s+(\d+)\s*", text)
    if match is None or int(match.group(1)) < 1:
        raise ConfigError(f"batch_or_concurrency must read 'concurrency N', got {text!r}", source=where)
    return int(match.group(1))


def _excluded(src: InferenceXSource, row: dict[str, str]) -> bool:
    return any(row.get(e.column) == e.value for e in src.exclude)


def precision_dtypes(src: InferenceXSource, precision: str, hardware: str, where: str) -> Dtypes:
    """The dtypes a run of ``precision`` on ``hardware`` (measured names) uses."""
    by_hw = src.precisions.get(precision)
    dtypes = None if by_hw is None else by_hw.get(hardware, by_hw.get("*"))
    if dtypes is None:
        raise ConfigError(f"no precisions mapping for {precision!r} on {hardware!r}", source=where)
    return dtypes


def client_load(src: InferenceXSource, concurrency: int, input_len: int, output_len: int) -> Load:
    """What InferenceX's client sends: a closed loop of ``concurrency``, that many times
    ``requests_per_concurrency`` requests, lengths over ``length_spread``..1 of nominal."""
    return Load("concurrency", float(concurrency), concurrency * src.requests_per_concurrency, input_len,
                output_len, src.length_spread)


def inferencex(path: Path = DEFAULT_FILE) -> tuple[InferenceXSource, ServingFile]:
    """The serving file's one InferenceX source and the file (its model and hardware names)."""
    spec = loader.validate(ServingFile, loader.read_document(path), str(path))
    found = [s for s in spec.sources.values() if isinstance(s, InferenceXSource)]
    if len(found) != 1:
        raise ConfigError(f"expected one source of format inferencex, found {len(found)}", source=str(path))
    return found[0], spec


def _named_columns(src: InferenceXSource, rows: list[dict[str, str]], table: Path) -> None:
    """Every column ``exclude`` and ``engine_settings`` match on is one of the table's: a
    misspelt column would match no row, so its exclusion or setting would vanish unnoticed."""
    header = set(rows[0]) if rows else set()
    named = {e.column for e in src.exclude} | {column for s in src.engine_settings for column in s.where}
    unknown = sorted(named - header)
    if unknown:
        raise ConfigError(f"exclude / engine_settings name column(s) {', '.join(unknown)} that the table lacks; "
                          f"columns: {', '.join(sorted(header))}", source=str(table))


def _inferencex_points(name: str, src: InferenceXSource, spec: ServingFile, rows: list[dict[str, str]],
                       table: Path) -> list[ServingPoint]:
    _named_columns(src, rows, table)
    points = []
    for i, row in enumerate(rows, start=2):
        where = f"{table}:{i}"
        if src.scenario not in row.get("scenario", "") or "disagg" in row.get("parallelism", ""):
            continue
        if _excluded(src, row) or row.get("metric") in src.unscored:
            continue
        framework, metric_name = row.get("framework", ""), row.get("metric", "")
        runtime = _mapped(src.runtimes, framework, "runtimes", where)
        metric = _mapped(src.metrics, metric_name, "metrics", where)
        model = _mapped(spec.models, row.get("model", ""), "models", where)
        hw = _mapped(spec.hardware, row.get("hardware", ""), "hardware", where)
        dtypes = precision_dtypes(src, row.get("precision", ""), row["hardware"], where)
        chips = int(_number(row, "chips", where))
        tp, ep, dp = parse_layout(row.get("parallelism", ""), chips, where)
        concurrency = _concurrency(row.get("batch_or_concurrency", ""), where)
        isl, osl = int(_number(row, "input_len", where)), int(_number(row, "output_len", where))
        client = client_load(src, concurrency, isl, osl)
        kernels, kv_dtype = run_kernels(src, row, where)
        run = ServingRun(runtime, model, hw, tp, ep, dp, dtypes.weight, dtypes.act, kv_dtype or dtypes.kv,
                         "concurrency", concurrency, client.requests, isl, osl, client.spread,
                         run_settings(src, row), kernels)
        split = "calibration" if metric in src.calibration_metrics else "holdout"
        layout = f"tp{tp}" + (f"-ep{ep}" if ep > 1 else "") + (f"-dp{dp}" if dp > 1 else "")
        points.append(ServingPoint(f"{name}/{hw}/{model}/{row['precision']}/{layout}/c{concurrency}-{isl}-{osl}/{metric}",
                                   name, metric, run, _number(row, "value", where), split, where))
    return points


def run_settings(src: InferenceXSource, row: Mapping[str, str]) -> tuple[tuple[str, bool | int, str], ...]:
    """The preset settings ``row``'s run set otherwise (later entries win), sorted by key."""
    chosen: dict[str, tuple[bool | int, str]] = {}
    for entry in src.engine_settings:
        if entry.applies(row):
            chosen.update({key: (value, entry.source) for key, value in entry.settings.items()})
    return tuple((key, value, source) for key, (value, source) in sorted(chosen.items()))


def run_kernels(src: InferenceXSource, row: Mapping[str, str], where: str) -> tuple[str | None, DType | None]:
    """The kernel library (a points.yaml runtime) and KV format ``row``'s run used where they are
    not its preset's and precision's (later entries win)."""
    kernels: str | None = None
    kv_dtype: DType | None = None
    for entry in src.engine_settings:
        if entry.applies(row):
            kernels = entry.kernels or kernels
            kv_dtype = entry.kv_dtype or kv_dtype
    if kernels is not None and kernels not in points_runtimes():
        raise ConfigError(f"engine setting kernels {kernels!r} is not a runtime of {DEFAULT_POINTS.name}; "
                          f"allowed: {', '.join(sorted(points_runtimes()))}", source=where)
    return kernels, kv_dtype


@cache
def points_runtimes() -> dict[str, Runtime]:
    """The kernel-library runtimes of the points file (``validation/points.yaml``)."""
    return Catalogue(DEFAULT_POINTS).spec.runtimes


def with_kernels(preset: RuntimePreset, name: str) -> RuntimePreset:
    """``preset`` running the kernels of the points file's runtime ``name`` (its gpu settings over
    the preset's own kernel settings)."""
    runtime = points_runtimes()[name]
    return preset.with_kernels(runtime.gpu.model_dump(exclude_none=True), runtime.source)


def with_settings(preset: RuntimePreset, settings: tuple[tuple[str, bool | int, str], ...]) -> RuntimePreset:
    """``preset`` with a run's own settings in place of its defaults."""
    return preset.model_copy(update={
        key: SwitchSetting(value=value, source=source) if isinstance(value, bool)
        else CountSetting(value=value, source=source) for key, value, source in settings})


@dataclass(frozen=True)
class Unpredictable:
    """A measured row a source selects but cannot predict, and why (an input it lacks)."""
    source: str
    where: str
    reason: str


def _note(row: Mapping[str, str], key: str) -> str:
    """``key=value`` from an MLPerf row's notes cell ("submitter=Dell; system=...; ...")."""
    match = re.search(rf"\b{key}=([^;]+)", row.get("notes", ""))
    return match.group(1).strip() if match else ""


def _mlperf_gap(src: MlperfSource, spec: ServingFile, row: Mapping[str, str]) -> str | None:
    """Why ``row`` cannot be predicted from the sourced inputs, or None when it can."""
    bench = src.benchmarks[row["model"]]
    framework = row.get("framework", "").split(" ")[0]
    if bench.input_unsourced is not None:
        return f"{bench.dataset}: mean prompt length not sourced ({bench.input_unsourced})"
    if row["model"] not in spec.models:
        return f"model {row['model']} has no accelsim model config"
    if row.get("hardware", "") not in spec.hardware:
        return f"{row.get('hardware')} has no accelsim hardware config"
    if framework not in src.runtimes:
        return f"engine {row.get('framework')!r} has no runtime preset"
    if row.get("precision", "") not in src.precisions:
        return f"precision {row.get('precision')!r} is not mapped to dtypes"
    if _layout(src, row) is None:
        return f"parallel layout of {_note(row, 'system')} not sourced from its code/ or system JSON"
    return None


def _layout(src: MlperfSource, row: Mapping[str, str]) -> MlperfLayout | None:
    key = (_note(row, "submitter"), _note(row, "system"), row["model"])
    return next((lay for lay in src.layouts if (lay.submitter, lay.system, lay.model) == key), None)


def read_lengths(path: Path, bench: MlperfBenchmark) -> np.ndarray:
    """A dataset's per-sample (input_length, output_length) table: an (n, 2) array of token
    counts >= 1, whose input mean must be the benchmark's stated ``input_mean`` (to the token)
    and whose prompts stay within ``input_max``."""
    where = str(path)
    table = []
    for i, row in enumerate(_read_rows(path), start=2):
        lengths = []
        for column in ("input_length", "output_length"):
            value = _number(row, column, f"{where}:{i}")
            if value != int(value):
                raise ConfigError(f"{column} must be a whole number of tokens, got {row[column]!r}",
                                  source=f"{where}:{i}")
            lengths.append(int(value))
        table.append(lengths)
    if not table:
        raise ConfigError("the lengths table has no rows", source=where)
    array = np.asarray(table, dtype=np.int64)
    if array[:, 0].max() > bench.input_max:
        raise ConfigError(f"a prompt of {array[:, 0].max()} tokens exceeds input_max {bench.input_max}", source=where)
    mean = float(array[:, 0].mean())
    if bench.input_mean is not None and abs(mean - bench.input_mean) > 1:
        raise ConfigError(f"input mean {mean:.1f} differs from the benchmark's input_mean {bench.input_mean}",
                          source=where)
    return array


def replay_lengths(table: np.ndarray, bench: MlperfBenchmark, requests: int, output_mean: float,
                   seed: int) -> tuple[tuple[int, int], ...]:
    """``requests`` (prompt, output) pairs: the table's samples in a seeded random order (cycled
    when it has fewer), outputs per ``bench.outputs`` with mean ``output_mean``."""
    order = np.random.default_rng(seed).permutation(len(table))
    picked = table[np.resize(order, requests)]
    if bench.outputs == "measured-mean":
        outputs = np.full(requests, max(1, round(output_mean)))
    else:
        reference = np.minimum(picked[:, 1], bench.output_max or picked[:, 1].max()).astype(float)
        outputs = np.maximum(1, np.round(reference * output_mean / reference.mean())).astype(np.int64)
    return tuple((int(p), int(o)) for p, o in zip(picked[:, 0], outputs))


def _mlperf_value(row: Mapping[str, str], where: str) -> float:
    """A measured value in the unit accelsim reports (latencies in seconds, not ms)."""
    value = _number(row, "value", where)
    return value / 1000 if row.get("unit") == "ms" else value


def _mlperf_rows(name: str, src: MlperfSource, spec: ServingFile, rows: list[dict[str, str]],
                 table: Path) -> tuple[list[ServingPoint], list[Unpredictable]]:
    """The source's rows of ``metrics``, each a point or not predictable with its reason; one
    simulated run per measured run (its mlperf_log_summary) answers all of its metrics.  A run's
    mean output length is its own tokens/s over its samples/s (the same log), a measured figure;
    a Server run's requests arrive at its measured samples/s."""
    runs = [(i, row) for i, row in enumerate(rows, start=2) if row.get("scenario") == src.scenario]
    logged: dict[str, dict[str, dict[str, str]]] = {}
    for _, row in runs:
        logged.setdefault(row.get("source", ""), {})[row.get("metric", "")] = row
    tables = {model: read_lengths(table.parent / bench.lengths, bench)
              for model, bench in src.benchmarks.items() if bench.lengths is not None}
    known = set(src.metrics) | set(src.unscored) | {src.tokens_name, src.samples_name}
    built: dict[str, ServingRun | str] = {}  # log -> its run, or why it has none
    points, unpredictable = [], []
    for i, row in runs:
        where, metric_name = f"{table}:{i}", row.get("metric", "")
        if metric_name not in known:
            raise ConfigError(f"metric {metric_name!r} is neither compared nor unscored; known: "
                              f"{', '.join(sorted(known))}", source=where)
        if metric_name not in src.metrics:
            continue
        log = row.get("source", "")
        if log not in built:
            built[log] = _mlperf_run(src, spec, row, logged[log], tables, where)
        run = built[log]
        if isinstance(run, str):
            unpredictable.append(Unpredictable(name, where, run))
            continue
        submitter, metric = _note(row, "submitter"), src.metrics[metric_name]
        split = "calibration" if submitter in src.calibration_submitters else "holdout"
        suffix = f"/{metric}" if len(src.metrics) > 1 else ""
        points.append(ServingPoint(f"{name}/{submitter}/{_note(row, 'system')}/{row['model']}{suffix}", name,
                                   metric, run, _mlperf_value(row, where), split, where))
    return points, unpredictable


def _mlperf_run(src: MlperfSource, spec: ServingFile, row: Mapping[str, str], log: Mapping[str, Mapping[str, str]],
                tables: Mapping[str, np.ndarray], where: str) -> ServingRun | str:
    """The simulated run of one measured MLPerf run (``log``: its rows by metric), or why it
    cannot be predicted."""
    if row.get("model", "") not in src.benchmarks:
        raise ConfigError(f"no benchmarks entry for model {row.get('model')!r} (add its dataset figures, "
                          f"with input_unsourced if its prompt lengths have no source)", source=where)
    for needed in (src.tokens_name, src.samples_name):
        if needed not in log:
            raise ConfigError(f"no {needed!r} row from the same log ({row.get('source')})", source=where)
    gap = _mlperf_gap(src, spec, row)
    if gap is not None:
        return gap
    layout, bench = _layout(src, row), src.benchmarks[row["model"]]
    assert layout is not None and bench.input_mean is not None  # _mlperf_gap checked both
    if layout.chips != int(_number(row, "chips", where)):
        raise ConfigError(f"layout of {layout.system} accounts for {layout.chips} chips, the row has "
                          f"{row.get('chips')}", source=where)
    samples = _number(log[src.samples_name], "value", where)
    output_mean = _number(log[src.tokens_name], "value", where) / samples
    requests = layout.requests(src.requests_per_replica)
    lengths = (() if row["model"] not in tables else
               replay_lengths(tables[row["model"]], bench, requests, output_mean, src.seed))
    dtypes = src.precisions[row["precision"]]
    return ServingRun(src.runtimes[row["framework"].split(" ")[0]], spec.models[row["model"]],
                      spec.hardware[row["hardware"]], layout.tp, layout.ep, layout.dp, dtypes.weight, dtypes.act,
                      dtypes.kv, src.load, 0, requests, bench.input_mean, max(1, round(output_mean)),
                      1.0, settings=layout.engine_settings(), pp=layout.pp, replicas=layout.replicas,
                      lengths=lengths, rate=samples / layout.replicas if src.load == "rate" else 0.0)


@dataclass(frozen=True)
class Selection:
    """What a serving file selects: its source names, the points, and the rows it cannot predict."""
    sources: tuple[str, ...]
    points: list[ServingPoint]
    unpredictable: list[Unpredictable]


def read_sources(path: Path = DEFAULT_FILE) -> Selection:
    """Every row the serving file's sources select: a point, or not predictable with its reason."""
    spec = loader.validate(ServingFile, loader.read_document(path), str(path))
    points: list[ServingPoint] = []
    unpredictable: list[Unpredictable] = []
    for name, src in spec.sources.items():
        table = path.parent / src.file
        rows = _read_rows(table)
        if isinstance(src, TrtllmBenchSource):
            points += _trtllm_points(name, src, spec, rows, table)
        elif isinstance(src, InferenceXSource):
            points += _inferencex_points(name, src, spec, rows, table)
        else:
            found, lacking = _mlperf_rows(name, src, spec, rows, table)
            points += found
            unpredictable += lacking
    return Selection(tuple(spec.sources), points, unpredictable)


def load_points(path: Path = DEFAULT_FILE) -> list[ServingPoint]:
    """Every measured row the serving file's sources select, mapped to what accelsim runs."""
    return read_sources(path).points


def reasons(rows: list[Unpredictable]) -> list[tuple[str, int]]:
    """Why rows are not predictable, with how many rows each reason covers (most first)."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.reason] = counts.get(row.reason, 0) + 1
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def simulate(run: ServingRun, step_overhead_s: float | None = None) -> ServeResult:
    """``run`` served under its runtime preset (with the per-step host overhead replaced when
    ``step_overhead_s`` is given): one load, no curve."""
    from accelsim import api
    from accelsim.sim import load
    from accelsim.transform import Parallelism

    preset = with_settings(api.load_runtime(run.runtime), run.settings)
    if run.kernels is not None:
        preset = with_kernels(preset, run.kernels)
    if step_overhead_s is not None:
        preset = preset.model_copy(update={"step_overhead": preset.step_overhead.model_copy(
            update={"value": step_overhead_s})})
    parallelism = Parallelism(tp=run.tp, pp=run.pp, ep=run.ep, dp=run.dp) if run.chips > 1 else None
    costs = api.cost_model(run.model, run.hw, parallelism, runtime=preset, weight_dtype=run.weight_dtype,
                           act_dtype=run.act_dtype, kv_dtype=run.kv_dtype)
    value = {"concurrency": run.concurrency, "rate": run.rate}.get(run.load, run.requests)
    offered = load.Load(run.load, float(value), run.requests, run.input_len, run.output_len, run.spread,
                        trace=_trace(run))
    return load.run(costs, engine_config(preset, run.concurrency if run.load == "concurrency" else None), offered)


def _trace(run: ServingRun) -> tuple[Request, ...] | None:
    """``run``'s per-request lengths as requests: all at t=0, or Poisson arrivals at its rate
    (seeded: the same run replays the same arrivals)."""
    if not run.lengths:
        return None
    if run.load != "rate":
        return tuple(Request(i, 0.0, p, o) for i, (p, o) in enumerate(run.lengths))
    gaps = np.random.default_rng(0).exponential(1.0 / run.rate, len(run.lengths))
    return tuple(Request(i, float(t), p, o) for i, (t, (p, o)) in enumerate(zip(np.cumsum(gaps) - gaps[0], run.lengths)))


def engine_config(preset: RuntimePreset, concurrency: int | None) -> ServeConfig:
    """The engine's settings for a measured run: the preset's, with the batch limit at the
    client's concurrency for a closed loop (the rows do not state the engine's; a lower one
    would keep clients waiting that the measured TTFTs do not show, and a closed loop never
    runs more than its concurrency)."""
    return preset.serve_config(max_batch=concurrency) if concurrency is not None else preset.serve_config()


def measure(result: ServeResult, metric: str, replicas: int = 1) -> float:
    """``metric`` of a simulated run of one replica, in the unit its measurement uses; a
    system's output throughput is its ``replicas`` times one replica's (each serves its share of
    one offline queue)."""
    if metric == "output_throughput":
        return result.throughput_tokens_per_s * replicas
    if metric == "output_throughput_per_chip":
        return result.throughput_tokens_per_s_per_chip
    if metric == "total_throughput_per_chip":
        tokens = sum(r.prompt + r.output for r in result.requests)
        return tokens / result.makespan_s / result.chips
    if metric == "ttft_p50":
        return result.percentiles("ttft_s")["p50"]
    if metric == "tpot_p50":
        return result.percentiles("tpot_s")["p50"]
    if metric == "interactivity_p50":
        return result.tokens_per_s_per_user
    raise ConfigError(f"unknown serving metric {metric!r}; allowed: {', '.join(SERVING_METRICS)}")


# Measured as a rate whose reciprocal is the time a user sees: InferenceX's interactivity
# (tokens/s per user) is 1 / TPOT, so its error is the TPOT's (as points.py compares it).
RECIPROCAL_METRICS = frozenset({"interactivity_p50"})


def error(metric: str, predicted: float, measured: float) -> float:
    """Signed relative error of ``predicted`` against ``measured``, as time for a reciprocal metric."""
    return measured / predicted - 1 if metric in RECIPROCAL_METRICS else predicted / measured - 1


def predict(point: ServingPoint, step_overhead_s: float | None = None) -> float:
    return measure(simulate(point.run, step_overhead_s), point.metric, point.run.replicas)


def evaluate(points: list[ServingPoint], step_overhead_s: float | None = None) -> pd.DataFrame:
    """Predicted against measured for every point; each distinct run is simulated once."""
    results: dict[ServingRun, ServeResult] = {}
    rows = []
    for p in points:
        if p.run not in results:
            results[p.run] = simulate(p.run, step_overhead_s)
        predicted = measure(results[p.run], p.metric, p.run.replicas)
        rows.append({"id": p.id, "source": p.source, "metric": p.metric, "split": p.split, "hw": p.run.hw,
                     "model": p.run.model, "chips": p.run.chips * p.run.replicas, "tp": p.run.tp, "ep": p.run.ep, "dp": p.run.dp,
                     "load": p.run.load, "concurrency": p.run.concurrency, "input_len": p.run.input_len,
                     "output_len": p.run.output_len, "measured": p.measured, "predicted": predicted,
                     "error": error(p.metric, predicted, p.measured), "row": p.where})
    return pd.DataFrame(rows)


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    """Median and mean |error| per (source, metric, split) group."""
    return (frame.assign(abs_error=frame["error"].abs())
            .groupby(["source", "metric", "split"], as_index=False)
            .agg(points=("abs_error", "size"), median_abs_error=("abs_error", "median"),
                 mean_abs_error=("abs_error", "mean"), median_error=("error", "median")))


def fit_step_overhead(points: list[ServingPoint], grid: tuple[float, ...]) -> tuple[float, dict[float, float]]:
    """The per-step host overhead on ``grid`` (seconds) with the least squared log error over
    ``points`` (the calibration subset), and that loss at every grid value."""
    losses = {}
    for value in grid:
        frame = evaluate(points, value)
        losses[value] = float(np.sum(np.log(frame["predicted"] / frame["measured"]) ** 2))
    return min(losses, key=lambda v: losses[v]), losses
