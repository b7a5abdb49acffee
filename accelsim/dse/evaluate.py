"""Evaluate design points one by one through ``accelsim.api.simulate`` (the reference path)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from accelsim.api import simulate
from accelsim.dse import metrics
from accelsim.dse.space import Space, point_id, to_number
from accelsim.errors import ConfigError, DoesNotFitError, NotFiniteError
from accelsim.model.spec import ModelSpec
from accelsim.workload import Workload


@dataclass(frozen=True)
class Job:
    """Everything a worker needs to evaluate points (picklable, sent once per chunk)."""

    space: Space
    model: ModelSpec
    workload: Workload


def base_row(point: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"point_id": point_id(point)}
    for key, value in point.items():
        try:
            row[key] = to_number(value)
        except ValueError:
            row[key] = str(value)
    return row


def failed_row(point: dict[str, Any], status: str, reason: str) -> dict[str, Any]:
    return {**base_row(point), "status": status, "reason": reason}


def evaluate_scalar(job: Job, point: dict[str, Any]) -> dict[str, Any]:
    try:
        hw = job.space.hardware(point)
    except ConfigError as err:
        return failed_row(point, metrics.STATUS_INVALID, err.one_line())
    try:
        r = simulate(job.model, hw, job.workload)
    except DoesNotFitError as err:
        return failed_row(point, metrics.STATUS_NO_FIT, err.one_line())
    except NotFiniteError as err:
        return failed_row(point, metrics.STATUS_INVALID, err.one_line())
    values = metrics.step_metrics(r.latency_s, r.tokens_per_s, r.energy_total_j, job.workload,
                                  area_mm2=r.area_mm2, die_usd=r.die_cost_usd)
    return {**base_row(point), "status": metrics.STATUS_OK, "reason": "", **values}


def evaluate_points_scalar(job: Job, points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [evaluate_scalar(job, p) for p in points]
