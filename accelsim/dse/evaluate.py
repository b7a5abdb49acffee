"""Evaluate design points one by one through ``accelsim.api.simulate`` (the reference path)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from accelsim.api import economics, simulate
from accelsim.dse import metrics
from accelsim.dse.space import Space, point_id, to_number
from accelsim.economics.tables import Tables
from accelsim.errors import ConfigError, DoesNotFitError, NotFiniteError
from accelsim.model.spec import ModelSpec
from accelsim.workload import Workload


@dataclass(frozen=True)
class Job:
    """Everything a worker needs to evaluate points (picklable, sent once per chunk)."""

    space: Space
    model: ModelSpec
    workload: Workload
    # Prices $/Mtoken: the bundled tables without merchant prices, since every point of a sweep
    # is a chip to be built, even one whose base config is a merchant chip.
    economics: Tables = field(default_factory=lambda: economics().custom_only())
    reference: metrics.Reference | None = None  # the merchant chip breakeven is measured against


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
    usd = metrics.usd_per_mtoken(hw, job.model, job.economics, r.power_w, r.tokens_per_s, r.chips)
    breakeven = metrics.breakeven_mtokens(hw, job.model, job.economics, job.reference, r.power_w,
                                          r.tokens_per_s, r.chips)
    values = metrics.step_metrics(r.latency_s, r.tokens_per_s, r.energy_total_j, job.workload,
                                  metrics.silicon(hw, job.model), usd, None if math.isnan(breakeven) else breakeven)
    return {**base_row(point), "status": metrics.STATUS_OK, "reason": "", **values}


def evaluate_points_scalar(job: Job, points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [evaluate_scalar(job, p) for p in points]
