"""The numbers a sweep records per design point, computed the same way for the scalar and the
vectorised evaluation (every function here works on floats and on numpy arrays)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from accelsim.dse.columns import SectionColumns
from accelsim.economics import system, tco
from accelsim.economics.tables import Tables
from accelsim.hardware import area
from accelsim.hardware.spec import HardwareBase
from accelsim.model.spec import ModelSpec
from accelsim.workload import Workload

STATUS_OK = "ok"
STATUS_NO_FIT = "does not fit"
STATUS_INVALID = "invalid"


@dataclass(frozen=True)
class Silicon:
    """The silicon of one design point, or of many as arrays (``accelsim.hardware.area``)."""

    area_mm2: Any         # per chip, link ends included
    die_mm2: Any
    dies: Any
    reticle_limited: Any  # 1 where the design spans several reticle-sized dies, else 0


def silicon(hw: HardwareBase | SectionColumns, model: ModelSpec | None = None) -> Silicon:
    split = area.chip_dies(hw, model)
    return Silicon(area.area_breakdown(hw, model).die_mm2 + split.link_mm2, split.die_mm2, split.dies,
                   split.reticle_limited * 1)


def usd_per_mtoken(hw: HardwareBase | SectionColumns, model: ModelSpec | None, tables: Tables, power_w, tokens_per_s,
                   chips: int = 1):
    """The system $/Mtoken at the tables' utilisation (``economics.system``; NRE excluded, as in
    ``Result.usd_per_mtoken``)."""
    run, _ = system.system_running(hw, model, tables, chips, power_w, tokens_per_s)
    return run.usd_per_mtoken


@dataclass(frozen=True)
class Reference:
    """The merchant chip a sweep's designs are weighed against (``accelsim tco``'s other side):
    its system $/Mtoken on the sweep's model and workload."""

    hw: str
    usd_per_mtoken: float


def breakeven_mtokens(hw: HardwareBase | SectionColumns, model: ModelSpec | None, tables: Tables,
                      reference: Reference | None, power_w, tokens_per_s, chips: int = 1):
    """Millions of tokens, at the tables' load and model life, after which a design's NRE (and
    respins, where its weights are in silicon) is paid back by its saving per token against
    ``reference`` (``economics.tco.breakeven_months``); NaN where it never is or no reference
    was given (written as an empty cell)."""
    if reference is None:
        return np.full(np.shape(tokens_per_s), np.nan) if np.ndim(tokens_per_s) else math.nan
    s = tables.system
    nre = system.nre(hw, tables)
    generation = s.model_life_months - nre.lead_time_months if nre.respin_usd is not None else None
    if generation is not None and generation <= 0:
        return np.full(np.shape(tokens_per_s), np.nan) if np.ndim(tokens_per_s) else math.nan
    run, _ = system.system_running(hw, model, tables, chips, power_w, tokens_per_s,
                                   card_years=generation / 12 if generation is not None else None)
    per_month = s.tokens_per_day * tco.DAYS_PER_MONTH / 1e6  # Mtokens a month at the load

    def one(custom_usd_per_mtoken: float) -> float:
        months, _ = tco.breakeven_months(nre.initial_usd, nre.respin_usd, generation,
                                         custom_usd_per_mtoken * per_month,
                                         reference.usd_per_mtoken * per_month)
        return math.nan if months is None else months * per_month

    usd = run.usd_per_mtoken
    return np.vectorize(one, otypes=[float])(usd) if np.ndim(usd) else one(usd)


def step_metrics(latency_s, tokens_per_s, energy_total_j, workload: Workload, chip: Silicon,
                 usd_per_mtoken, breakeven=math.nan) -> dict:
    """Per-point metrics from one simulated step (``Result``-equivalent numbers)."""
    tokens = workload.tokens_credited
    power = energy_total_j / latency_s
    return {
        "tokens_per_s_per_user": tokens_per_s / workload.batch,
        "tokens_per_s": tokens_per_s,
        "latency_s": latency_s,
        "joules_per_token": energy_total_j / tokens,
        "power_w": power,
        "area_mm2": chip.area_mm2,
        "die_mm2": chip.die_mm2,
        "dies": chip.dies,
        "reticle_limited": chip.reticle_limited,
        "usd_per_mtoken": usd_per_mtoken,
        "breakeven_mtokens": breakeven,
    }
