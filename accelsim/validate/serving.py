"""Serving validation: measured serving rows replayed through the whole scheduler (``serve``).

``validation/serving.yaml`` names the measurement files, how each was measured (runtime preset,
load, metric), how their names map to accelsim's, and the calibration split, chosen by model
before anything was fitted.  Each row becomes a ``ServingPoint``; ``predict`` runs it under the
runtime preset the source names; errors are summarised per (source, metric, split) group.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from accelsim.config import loader
from accelsim.config.types import Spec
from accelsim.errors import ConfigError
from accelsim.validate.points import VALIDATION_DIR

DEFAULT_FILE = VALIDATION_DIR / "serving.yaml"
ServingMetric = Literal["output_throughput"]


class ServingSource(Spec):
    file: str = Field(min_length=1)
    runtime: str = Field(min_length=1)  # a bundled runtime preset (runtimes/)
    load: Literal["offline"]
    metric: ServingMetric
    source: str = Field(min_length=3)


class ServingFile(Spec):
    calibration_models: list[str] = Field(min_length=1)
    sources: dict[str, ServingSource] = Field(min_length=1)
    models: dict[str, str]
    hardware: dict[str, str]
    dtype: Literal["fp8", "fp16", "bf16"]


@dataclass(frozen=True)
class ServingPoint:
    id: str
    source: str
    runtime: str
    metric: str
    model: str
    hw: str
    tp: int
    dtype: str
    requests: int
    input_len: int
    output_len: int
    measured: float
    split: str


def _row_point(name: str, src: ServingSource, spec: ServingFile, row: dict[str, str], where: str) -> ServingPoint:
    try:
        model, hw = spec.models[row["model"]], spec.hardware[row["hardware"]]
        tp, requests = int(row["chips"]), int(row["num_requests"])
        isl, osl, value = int(row["input_len"]), int(row["output_len"]), float(row["value"])
    except KeyError as err:
        raise ConfigError(f"no mapping or column for {err}", source=where) from None
    except ValueError:
        raise ConfigError("chips, num_requests, input_len, output_len and value must be numbers",
                          source=where) from None
    split = "calibration" if row["model"] in spec.calibration_models else "holdout"
    return ServingPoint(f"{name}/{row['hardware']}/{row['model']}/{isl}-{osl}", name, src.runtime, src.metric,
                        model, hw, tp, spec.dtype, requests, isl, osl, value, split)


def load_points(path: Path = DEFAULT_FILE) -> list[ServingPoint]:
    """Every measured row the serving file's sources name, mapped to what accelsim runs."""
    spec = loader.validate(ServingFile, loader.read_document(path), str(path))
    points = []
    for name, src in spec.sources.items():
        table = path.parent / src.file
        try:
            with open(table, newline="", encoding="utf-8") as handle:
                rows = list(csv.DictReader(handle))
        except OSError as err:
            raise ConfigError(f"cannot read measurements: {err.strerror}", source=str(table)) from None
        points += [_row_point(name, src, spec, row, f"{table}:{i}") for i, row in enumerate(rows, start=2)]
    return points


def predict(point: ServingPoint, step_overhead_s: float | None = None) -> float:
    """Output tokens/s of the whole TP group, served offline under the point's runtime preset
    (with its per-step host overhead replaced when ``step_overhead_s`` is given)."""
    from accelsim import api
    from accelsim.transform import Parallelism

    preset = api.load_runtime(point.runtime)
    if step_overhead_s is not None:
        preset = preset.model_copy(update={"step_overhead": preset.step_overhead.model_copy(
            update={"value": step_overhead_s})})
    parallelism = Parallelism(tp=point.tp) if point.tp > 1 else None
    report = api.serve(point.model, point.hw, runtime=preset, offline=True, requests=point.requests,
                       prompt=point.input_len, output=point.output_len, parallelism=parallelism,
                       weight_dtype=point.dtype, act_dtype=point.dtype, kv_dtype=point.dtype)
    assert isinstance(report, api.ServeReport)
    return float(report.summary["throughput_tokens_per_s"])


def evaluate(points: list[ServingPoint], step_overhead_s: float | None = None) -> pd.DataFrame:
    rows = []
    for p in points:
        predicted = predict(p, step_overhead_s)
        rows.append({"id": p.id, "source": p.source, "metric": p.metric, "split": p.split, "hw": p.hw,
                     "model": p.model, "tp": p.tp, "input_len": p.input_len, "output_len": p.output_len,
                     "measured": p.measured, "predicted": predicted, "error": predicted / p.measured - 1})
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
        errors = np.array([predict(p, value) / p.measured for p in points])
        losses[value] = float(np.sum(np.log(errors) ** 2))
    return min(losses, key=lambda v: losses[v]), losses
