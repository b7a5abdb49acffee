"""Power and energy against measurements (``validation/measured_power.csv``).

Each row is a published measurement: ML.ENERGY's average GPU power and J/token of vLLM serving
Llama 3.1 at a steady batch (v3: vLLM 0.11.1; v2: vLLM 0.5.4), MLPerf Inference v4.0's
audited whole-node power of a DGX H100 (MaxQ: GPUs limited to 350 W) and v4.1's of an 8 x H200
node (MaxQ: 500 W).  The split is written in the file's ``set`` column, chosen by model and
source before anything was fitted: ML.ENERGY v3 Llama-3.1-8B rows (the H100's ``power.active``)
and the v4.0 MLPerf Offline row (the DGX node's host power) calibrate; every other row is held
out (the H200 rows check the node rule: the DGX H200 is the DGX H100 chassis).

A row is predicted from one decode step at its batch, mid-generation (context = prompt +
output / 2; the prompt length is not in the files, so every ML.ENERGY row takes the stated
default of 256 tokens): the step's average power per chip, its energy per output token, or the
node's power (``hardware.power.node_power``) with the 8 GPUs as replicas of the measured
tensor-parallel group.  J/token measured end to end also holds the prompts' prefill, which a
decode step leaves out: with ~256-token prompts and ~400 output tokens that is a few percent
of the compute.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from statistics import median

import pandas as pd

from accelsim.api import power_limited, simulate
from accelsim.config import loader
from accelsim.errors import ConfigError
from accelsim.hardware import power
from accelsim.transform import Parallelism
from accelsim.validate.points import VALIDATION_DIR
from accelsim.validate.predict import model_for
from accelsim.workload import Workload

DEFAULT_POWER_POINTS = VALIDATION_DIR / "measured_power.csv"
METRICS = ("gpu_power_w", "j_per_token", "system_power_w")
REPLICA_CHIPS = 8  # the MLPerf node: 8 GPUs, each replica of the measured group on its own GPUs


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
                               row["runtime"], row["source"])
        except (KeyError, ValueError) as err:
            raise ConfigError(f"{path}: row {i}: {err}") from None
        if point.metric not in METRICS or point.subset not in ("calibration", "holdout"):
            raise ConfigError(f"{path}: row {i}: metric must be one of {', '.join(METRICS)} "
                              f"and set calibration or holdout")
        points.append(point)
    return points


def predict(point: PowerPoint) -> float:
    hw = power_limited(point.hw, point.power_limit_w)
    chips = point.tp * point.pp
    layout = Parallelism(tp=point.tp, pp=point.pp) if chips > 1 else None
    model = model_for(point.model)
    decode = simulate(model, hw, Workload(phase="decode", batch=point.batch,
                                          context=point.prompt + point.output // 2),
                      weight_dtype=point.weight_dtype, parallelism=layout)
    prefill = simulate(model, hw, Workload(phase="prefill", batch=1, prompt=point.prompt),
                       weight_dtype=point.weight_dtype, parallelism=layout)
    # Steady state of continuous batching: per output token, 1/batch of a decode step and
    # 1/output of a request's prefill.
    joules = decode.energy_total_j / point.batch + prefill.energy_total_j / point.output
    seconds = decode.latency_s / point.batch + prefill.latency_s / point.output
    chip_w = joules / seconds / chips
    if point.metric == "gpu_power_w":
        return chip_w
    if point.metric == "j_per_token":
        return joules
    figures = power.node_power(hw, REPLICA_CHIPS, chip_w)
    if not figures:
        raise ConfigError(f"{hw.name}: a system_power_w point needs power.node in its config")
    return float(figures["system_power_w"])


def table(points: list[PowerPoint]) -> pd.DataFrame:
    rows = []
    for p in points:
        predicted = predict(p)
        rows.append({"set": p.subset, "hw": p.hw, "model": p.model, "runtime": p.runtime,
                     "tp": p.tp, "pp": p.pp, "batch": p.batch, "metric": p.metric,
                     "measured": p.value, "predicted": predicted,
                     "error": predicted / p.value - 1.0})
    return pd.DataFrame(rows)


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Median and max |error| per set, runtime and metric."""
    out = []
    for (subset, runtime, metric), group in frame.groupby(["set", "runtime", "metric"]):
        errors = group["error"].abs().tolist()
        out.append({"set": subset, "runtime": runtime, "metric": metric, "points": len(errors),
                    "median_abs_error": median(errors), "max_abs_error": max(errors)})
    return pd.DataFrame(out)
