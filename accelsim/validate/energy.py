"""Power and energy against measurements (``validation/measured_power.csv``).

Each row is a published measurement: ML.ENERGY's average GPU power and J/token of vLLM serving
Llama 3.1 at a steady batch (v3: vLLM 0.11.1; v2: vLLM 0.5.4), MLPerf Inference v4.0's
audited whole-node power of a DGX H100 (MaxQ: GPUs limited to 350 W) and v4.1's of an 8 x H200
node (MaxQ: 500 W).  The split is written in the file's ``set`` column, chosen by model and
source before anything was fitted: ML.ENERGY v3 Llama-3.1-8B rows (the H100's ``power.active``)
and the v4.0 MLPerf Offline row (the DGX node's host power) calibrate; every other row is held
out (the H200 rows check the node rule: the DGX H200 is the DGX H100 chassis).

A row is predicted from one decode step at its batch, mid-generation (context = prompt +
output / 2; the prompt length is not in the v3 files, so those rows take the stated default of
256 tokens; the v2 rows take the v2 harness's mean prompt, system prompt and chat template
included: 122 tokens for Llama 3.1, 103 for Gemma 2, docs/validation.md), on the chip under the runtime that measured the row (``PRESETS``: the
``vllm`` preset's step timing was fitted here, ``fit_step_timing``, on the v3 calibration rows'
measured throughput; the ``vllm-0.5.4`` preset's host terms, ``fit_host_terms``, on the v2 8B
ones, and its per-worker term, ``fit_worker_overhead``, on the v2 gemma-2-9b TP1/TP2 pairs):
the step's average power per chip, its energy per output token, or the
node's power (``hardware.power.node_power``) with the 8 GPUs as replicas of the measured
tensor-parallel group.  J/token measured end to end also holds the prompts' prefill, which a
decode step leaves out: with ~256-token prompts and ~400 output tokens that is a few percent
of the compute.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from statistics import median

import pandas as pd

from accelsim.api import hardware_under, load_runtime, simulate
from accelsim.config import loader
from accelsim.errors import ConfigError
from accelsim.hardware import power
from accelsim.hardware.spec import HardwareBase
from accelsim.sim.runtime import RuntimePreset
from accelsim.transform import Parallelism
from accelsim.validate.points import VALIDATION_DIR
from accelsim.validate.predict import model_for
from accelsim.workload import Workload

DEFAULT_POWER_POINTS = VALIDATION_DIR / "measured_power.csv"
METRICS = ("gpu_power_w", "j_per_token", "system_power_w")
REPLICA_CHIPS = 8  # the MLPerf node: 8 GPUs, each replica of the measured group on its own GPUs
# The serving runtime each row's ``runtime`` ran, as a bundled preset (runtimes/): a row is
# predicted under the software that measured it.  The vLLM preset's step timing (host work per
# step, its attention kernel) was fitted on the ML.ENERGY v3 8B calibration rows (vLLM 0.11.1).
# vLLM 0.5.4 (the v2 rows) has its own preset, the ML.ENERGY v2 harness's flags and that
# release's defaults, with host work per step and per sequence fitted on the v2 8B calibration
# rows (``fit_host_terms``).  MLPerf's TensorRT-LLM runs are what the GPU terms
# were calibrated on; their preset leaves the hardware's step timing as it is.
# The model whose one-GPU v2 runs calibrate ``fit_host_terms`` (chosen by model before the fit);
# the v2 gemma-2-9b runs, the only ones of a catalogue model at two tensor-parallel sizes on one
# GPU type, calibrate ``fit_worker_overhead``.  A pair's batches may differ by this many
# sequences (the harness's 63 beside 64: the aggregation keeps the run's own average batch).
HOST_FIT_MODEL = "llama-3.1-8b"
PAIR_BATCH_SLACK = 2
PRESETS = {"vllm-0.11.1": "vllm", "vllm-0.5.4": "vllm-0.5.4",
           "trtllm-mlperf-v4.0": "tensorrt-llm", "trtllm-mlperf-v4.1": "tensorrt-llm"}


@dataclass(frozen=True)
class PowerPoint:
    subset: str          # calibration | holdout
    hw: str
    model: str
    weight_dtype: str
    tp: int
    pp: int
    batch: int
    prompt: int
    output: int
    metric: str          # one of METRICS
    value: float
    power_limit_w: float | None
    throughput: float | None  # the run's measured output tokens/s, where its source gives it
    runtime: str
    source: str


def load(path: Path | None = None) -> list[PowerPoint]:
    """The measured power rows; a malformed row is one clear error naming the file and row."""
    path = path or DEFAULT_POWER_POINTS
    points = []
    for i, row in enumerate(loader.read_csv(path, "power points"), start=2):
        try:
            point = PowerPoint(row["set"], row["hw"], row["model"], row["weight_dtype"],
                               int(row["tp"]), int(row["pp"]), int(row["batch"]),
                               int(row["prompt"]), int(row["output"]), row["metric"],
                               float(row["value"]),
                               float(row["power_limit_w"]) if row["power_limit_w"] else None,
                               float(row["throughput"]) if row["throughput"] else None,
                               row["runtime"], row["source"])
        except (KeyError, ValueError) as err:
            raise ConfigError(f"{path}: row {i}: {err}") from None
        if point.metric not in METRICS or point.subset not in ("calibration", "holdout"):
            raise ConfigError(f"{path}: row {i}: metric must be one of {', '.join(METRICS)} "
                              f"and set calibration or holdout")
        if point.runtime not in PRESETS:
            raise ConfigError(f"{path}: row {i}: runtime '{point.runtime}' must be one of "
                              f"{', '.join(PRESETS)}")
        points.append(point)
    return points


@dataclass(frozen=True)
class SteadyState:
    """Continuous batching at the row's batch, per output token, summed over the row's chips."""

    joules: float
    seconds: float
    chips: int


def steady_state(point: PowerPoint, hw: HardwareBase) -> SteadyState:
    """Per output token, 1/batch of a decode step at context prompt + output / 2 and 1/output of
    a request's prefill, on ``hw`` (the row's chip under its runtime)."""
    chips = point.tp * point.pp
    layout = Parallelism(tp=point.tp, pp=point.pp) if chips > 1 else None
    model = model_for(point.model)
    decode = simulate(model, hw, Workload(phase="decode", batch=point.batch,
                                          context=point.prompt + point.output // 2),
                      weight_dtype=point.weight_dtype, parallelism=layout)
    prefill = simulate(model, hw, Workload(phase="prefill", batch=1, prompt=point.prompt),
                       weight_dtype=point.weight_dtype, parallelism=layout)
    return SteadyState(decode.energy_total_j / point.batch + prefill.energy_total_j / point.output,
                       decode.latency_s / point.batch + prefill.latency_s / point.output, chips)


def chip_under(point: PowerPoint, preset: RuntimePreset | None = None) -> HardwareBase:
    """The row's chip under the runtime that measured it (``preset`` replaces the bundled one)."""
    return hardware_under(point.hw, preset or PRESETS[point.runtime], point.power_limit_w)


def predict(point: PowerPoint) -> float:
    hw = chip_under(point)
    return figure(point, hw, steady_state(point, hw))


def figure(point: PowerPoint, hw: HardwareBase, state: SteadyState) -> float:
    """The row's metric from the steady state on its chip."""
    chip_w = state.joules / state.seconds / state.chips
    if point.metric == "gpu_power_w":
        return chip_w
    if point.metric == "j_per_token":
        return state.joules
    figures = power.node_power(hw, REPLICA_CHIPS, chip_w)
    if not figures:
        raise ConfigError(f"{hw.name}: a system_power_w point needs power.node in its config")
    return float(figures["system_power_w"])


def timed_rows(points: list[PowerPoint], runtime: str, subset: str) -> list[PowerPoint]:
    """One row per measured run (its J/token row) of ``runtime`` in ``subset`` that carries the
    run's throughput."""
    return [p for p in points if p.runtime == runtime and p.subset == subset
            and p.metric == "j_per_token" and p.throughput]


TRIAL = "a trial of an energy fit"


@dataclass(frozen=True)
class StepFit:
    step_overhead_s: float
    attention_bandwidth: float
    rows: int
    median_abs_error: float  # of the predicted time per output token, on the fitted rows


def fit_step_timing(points: list[PowerPoint], runtime: str) -> StepFit:
    """The runtime preset's step timing fitted on ``runtime``'s calibration rows: least squares
    on log(predicted time per output token x measured throughput) over the host work per step
    (``kernels.step_overhead``, 0-5 ms, the GPU idle) and the attention kernel's bandwidth share
    (``kernels.attention_bandwidth``, 0.1-1, the GPU busy).  Power plays no part in the fit."""
    from scipy.optimize import least_squares  # imported here: only calibration needs it

    rows = timed_rows(points, runtime, "calibration")
    if not rows:
        raise ConfigError(f"no calibration rows of runtime '{runtime}' carry a throughput")
    preset = load_runtime(PRESETS[runtime])

    def errors(x) -> list[float]:
        trial = preset.with_kernels({"step_overhead": float(x[0]) * 1e-3,
                                     "attention_bandwidth": float(x[1])}, TRIAL)
        return [math.log(steady_state(p, chip_under(p, trial)).seconds * (p.throughput or 0.0))
                for p in rows]

    found = least_squares(errors, [0.5, 0.5], bounds=([0.0, 0.1], [5.0, 1.0]), diff_step=1e-3)
    residuals = errors(found.x)
    return StepFit(float(found.x[0]) * 1e-3, float(found.x[1]), len(rows),
                   median(abs(math.expm1(r)) for r in residuals))


@dataclass(frozen=True)
class HostFit:
    step_overhead_s: float
    sequence_overhead_s: float
    host_wait_share: float
    rows: int
    median_abs_error: float  # of the predicted time per output token, on the fitted rows
    median_abs_energy_error: float  # of the predicted J/token, on the fitted rows


def fit_host_terms(points: list[PowerPoint], runtime: str, model: str = HOST_FIT_MODEL) -> HostFit:
    """The runtime preset's host terms fitted on ``runtime``'s one-GPU calibration rows of
    ``model`` (the v2 calibration set of these terms: Llama-3.1-8B): least squares on
    log(predicted / measured) of the time per output token (measured: 1 / the run's throughput)
    and of J/token, over the host work per step (``kernels.step_overhead``, 0-50 ms), per
    sequence in the step (``kernels.sequence_overhead``, 0-2 ms) and the share of (TDP - idle)
    the GPU draws while it waits through them (``kernels.host_wait_share``, 0-1); the preset's
    other kernels as they are.  Time alone sets the first two; J/token sets the third."""
    from scipy.optimize import least_squares  # imported here: only calibration needs it

    rows = [p for p in timed_rows(points, runtime, "calibration") if p.model == model and p.tp * p.pp == 1]
    if not rows:
        raise ConfigError(f"no one-GPU calibration rows of runtime '{runtime}' and model '{model}' "
                          f"carry a throughput")
    preset = load_runtime(PRESETS[runtime])

    def errors(x) -> list[float]:
        trial = preset.with_kernels({"step_overhead": float(x[0]) * 1e-3,
                                     "sequence_overhead": float(x[1]) * 1e-3,
                                     "host_wait_share": float(x[2])}, TRIAL)
        out = []
        for p in rows:
            state = steady_state(p, chip_under(p, trial))
            out += [math.log(state.seconds * (p.throughput or 0.0)), math.log(state.joules / p.value)]
        return out

    found = least_squares(errors, [2.0, 0.2, 0.2], bounds=([0.0, 0.0, 0.0], [50.0, 2.0, 1.0]),
                          diff_step=1e-3)
    residuals = errors(found.x)
    return HostFit(float(found.x[0]) * 1e-3, float(found.x[1]) * 1e-3, float(found.x[2]), len(rows),
                   median(abs(math.expm1(r)) for r in residuals[0::2]),
                   median(abs(math.expm1(r)) for r in residuals[1::2]))


@dataclass(frozen=True)
class WorkerFit:
    worker_overhead_s: float
    pairs: int
    per_pair_s: tuple[float, ...]  # each pair's estimate, in the pairs' order (by batch)


def fit_worker_overhead(points: list[PowerPoint], runtime: str) -> WorkerFit:
    """``kernels.worker_overhead`` from ``runtime``'s calibration rows that ran the same model on
    the same GPU at (nearly) the same batch on one GPU and on several: what the several-GPU run
    lost over the one-GPU run beyond what the model predicts, per extra worker.  Each pair
    gives, in time per output token, ((measured - predicted) with N GPUs - (measured -
    predicted) on one) / ((N - 1) x (1/batch + 1/output)) -- the term is paid once per decode
    step (1/batch of one per token) and once per prompt's prefill (1/output); the model's own
    error on that model and GPU, common to both runs, cancels.  The median over the pairs.
    Predictions are under the preset with ``worker_overhead`` 0."""
    rows = timed_rows(points, runtime, "calibration")
    single = {(p.hw, p.model, p.batch): p for p in rows if p.tp * p.pp == 1}
    preset = load_runtime(PRESETS[runtime]).with_kernels({"worker_overhead": 0.0}, TRIAL)

    def excess(p: PowerPoint) -> float:  # measured - predicted seconds per output token
        return 1.0 / (p.throughput or math.inf) - steady_state(p, chip_under(p, preset)).seconds

    estimates = []
    for multi in sorted((p for p in rows if p.tp * p.pp > 1), key=lambda p: p.batch):
        match = [s for (hw, model, batch), s in single.items()
                 if hw == multi.hw and model == multi.model and abs(batch - multi.batch) <= PAIR_BATCH_SLACK]
        if match:
            per_worker_token = (multi.tp * multi.pp - 1) * (1.0 / multi.batch + 1.0 / multi.output)
            estimates.append((excess(multi) - excess(match[0])) / per_worker_token)
    if not estimates:
        raise ConfigError(f"no calibration rows of runtime '{runtime}' pair a one-GPU run with a "
                          f"several-GPU run of the same model, GPU and batch")
    return WorkerFit(max(0.0, median(estimates)), len(estimates), tuple(estimates))


def table(points: list[PowerPoint]) -> pd.DataFrame:
    """Each row predicted, with the run's throughput beside it where measured (the time half of
    J/token: ``throughput_error`` is predicted / measured output tokens/s - 1)."""
    rows = []
    for p in points:
        hw = chip_under(p)
        state = steady_state(p, hw)
        predicted = figure(p, hw, state)
        tokens_s = 1.0 / state.seconds
        rows.append({"set": p.subset, "hw": p.hw, "model": p.model, "runtime": p.runtime,
                     "tp": p.tp, "pp": p.pp, "batch": p.batch, "metric": p.metric,
                     "measured": p.value, "predicted": predicted,
                     "error": predicted / p.value - 1.0,
                     "throughput_error": tokens_s / p.throughput - 1.0 if p.throughput else math.nan})
    return pd.DataFrame(rows)


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Median and max |error| per set, runtime and metric."""
    out = []
    for (subset, runtime, metric), group in frame.groupby(["set", "runtime", "metric"]):
        errors = group["error"].abs().tolist()
        out.append({"set": subset, "runtime": runtime, "metric": metric, "points": len(errors),
                    "median_abs_error": median(errors), "max_abs_error": max(errors)})
    return pd.DataFrame(out)
