"""The numbers a sweep records per design point, computed the same way for the scalar and the
vectorised evaluation (every function here works on floats and on numpy arrays)."""
from __future__ import annotations

from dataclasses import dataclass

from accelsim.hardware import area
from accelsim.hardware.spec import HardwareBase
from accelsim.model.spec import ModelSpec
from accelsim.workload import Workload

STATUS_OK = "ok"
STATUS_NO_FIT = "does not fit"
STATUS_INVALID = "invalid"


@dataclass(frozen=True)
class Silicon:
    """Die area and die cost of one design point (from ``accelsim.hardware.area``)."""

    area_mm2: float
    die_usd: float


def silicon(hw: HardwareBase, model: ModelSpec | None = None) -> Silicon:
    return Silicon(area.area_breakdown(hw, model).die_mm2, area.die_cost_usd(hw, model))


def step_metrics(latency_s, tokens_per_s, energy_total_j, workload: Workload, chip: Silicon | None = None,
                 area_mm2=None, die_usd=None) -> dict:
    """Per-point metrics from one simulated step (``Result``-equivalent numbers)."""
    tokens = workload.tokens_credited
    power = energy_total_j / latency_s
    area_mm2 = chip.area_mm2 if chip is not None else area_mm2
    die_usd = chip.die_usd if chip is not None else die_usd
    return {
        "tokens_per_s_per_user": tokens_per_s / workload.batch,
        "tokens_per_s": tokens_per_s,
        "latency_s": latency_s,
        "joules_per_token": energy_total_j / tokens,
        "power_w": power,
        "area_mm2": area_mm2,
        "usd_per_mtoken": area.usd_per_mtoken(die_usd, power, tokens_per_s),
    }
