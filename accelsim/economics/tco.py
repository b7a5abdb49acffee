"""Total cost of ownership and the breakeven of a custom chip against merchant chips.

Every system serves the same load (tokens per day).  Capex enters on both sides as its rate
over the life of what was bought (financed or leased, as a fleet is), so a system costs a
steady $ per month at the load; the one thing paid up front is a custom chip's NRE (design and
first masks), and, where the chip holds one model's weights in silicon, a respin (new weight
masks and engineering) every time the model is replaced.  Such a chip also serves each model
only after the respin's lead time, and its cards are retired with the model: they are paid off
over the model's service, not the deployment's.

Months here are months of the custom chip's service: the lead time of each respin is covered by
whatever served before, at the same cost on both sides of the comparison.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from accelsim.economics import system
from accelsim.economics.tables import Tables
from accelsim.errors import AccelsimError
from accelsim.hardware.spec import HardwareBase
from accelsim.model.spec import ModelSpec

DAYS_PER_MONTH = 365.25 / 12
HOURS_PER_MONTH = DAYS_PER_MONTH * 24


@dataclass(frozen=True)
class Load:
    """What the deployment serves: a token volume per day, or one system at a utilisation."""

    tokens_per_day: float | None = None
    utilisation: float | None = None

    def __post_init__(self) -> None:
        if self.tokens_per_day is not None and self.utilisation is not None:
            raise AccelsimError("give --tokens-per-day or --utilisation, not both")
        if self.tokens_per_day is not None and not (math.isfinite(self.tokens_per_day) and self.tokens_per_day > 0):
            raise AccelsimError(f"--tokens-per-day must be a finite number > 0, got {self.tokens_per_day!r}")
        if self.utilisation is not None and not 0 < self.utilisation <= 1:
            raise AccelsimError(f"--utilisation must be in (0, 1], got {self.utilisation!r}")


@dataclass(frozen=True)
class Option:
    """One chip's systems carrying the load."""

    hw: str
    custom: bool
    basis: str
    chips_per_system: int
    tokens_per_s: float            # one system, busy
    systems: int                   # whole systems the load needs
    utilisation: float             # of each system at the load
    tokens_per_day: float
    capex_usd: float               # per system
    opex_usd_per_year: float       # per system at its utilisation (electricity, or rent)
    usd_per_month: float           # all systems: capex rate + opex
    usd_per_mtoken: float          # at the load, NRE excluded
    nre_usd: float                 # up front (0 for merchant chips)
    design_nre_range_usd: tuple[float, float] | None
    respin_usd: float | None       # per model change; None: the chip runs any model
    respin_lead_months: float
    generation_months: float | None  # service per model on a fixed-model chip
    usd_per_mtoken_with_nre: float   # over the deployment at the load

    def cumulative_usd(self, months: float) -> float:
        return cumulative_usd(months, self.nre_usd, self.respin_usd, self.generation_months,
                              self.usd_per_month)


@dataclass(frozen=True)
class Breakeven:
    custom: str
    merchant: str
    months: float | None           # of service at the load; None: never
    tokens: float | None
    within_deployment: bool
    reason: str


@dataclass(frozen=True)
class TcoReport:
    model: str
    workload: dict
    deploy_years: float
    model_life_months: float
    options: list[Option]
    breakevens: list[Breakeven]
    life_curve: list[dict] = field(default_factory=list)  # breakeven vs model service life
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "workload": self.workload, "deploy_years": self.deploy_years,
                "model_life_months": self.model_life_months,
                "systems": [asdict(o) for o in self.options],
                "breakeven": [asdict(b) for b in self.breakevens],
                "breakeven_vs_model_life": self.life_curve, "notes": list(self.notes)}


def cumulative_usd(months: float, nre_usd: float, respin_usd: float | None,
                   generation_months: float | None, usd_per_month: float) -> float:
    """Spent after ``months`` of service: NRE, a respin at the start of every model after the
    first, and the running rate."""
    respins = 0 if respin_usd is None or generation_months is None else math.floor(months / generation_months)
    return nre_usd + (respin_usd or 0.0) * respins + usd_per_month * months


def breakeven_months(nre_usd: float, respin_usd: float | None, generation_months: float | None,
                     custom_per_month: float, merchant_per_month: float) -> tuple[float | None, str]:
    """The first month of service at which the custom chip's cumulative cost is at most the
    merchant chip's, or None and why.

    The custom chip saves s = merchant - custom per month.  During model k (k = 0, 1, ...; each
    G months long) it has paid N + kR up front, so it is even at t = (N + kR) / s if that falls
    inside [kG, (k+1)G).  A model whose savings sG do not cover a respin R never brings it
    nearer, so only the first model can break even; otherwise the first model k that can is
    the smallest k with N + kR < s(k+1)G."""
    saving = merchant_per_month - custom_per_month
    if saving <= 0:
        return None, "the custom chip costs at least as much per month as the merchant chip, before NRE"
    if respin_usd is None or generation_months is None:
        return nre_usd / saving, "NRE recovered by the monthly saving"
    g = generation_months
    if respin_usd >= saving * g:
        t = nre_usd / saving
        if t < g:
            return t, "NRE recovered within the first model's service"
        return None, (f"each model saves ${saving * g:,.0f} over its {g:.1f} months but a respin costs "
                      f"${respin_usd:,.0f}: the NRE is never recovered")
    k = 0 if nre_usd < saving * g else math.floor((nre_usd - saving * g) / (saving * g - respin_usd)) + 1
    return max(k * g, (nre_usd + k * respin_usd) / saving), f"NRE recovered during model {k + 1}"


def whole_systems(load: Load, tokens_per_s: float, default_utilisation: float) -> tuple[int, float, float]:
    """(systems, utilisation of each, tokens per day) for ``load`` on systems that each serve
    ``tokens_per_s`` when busy."""
    per_day = tokens_per_s * 86400
    if load.tokens_per_day is None:
        u = load.utilisation if load.utilisation is not None else default_utilisation
        return 1, u, per_day * u
    systems = max(1, math.ceil(load.tokens_per_day / per_day))
    return systems, load.tokens_per_day / (systems * per_day), load.tokens_per_day


def common_load(load: Load, priced: list[tuple[Any, HardwareBase]], tables: Tables) -> Load:
    """Every system must serve the same tokens to be compared: a load given as a utilisation is
    what one system of the first chip serves at it; no load given, the tables' tokens per day.
    Whole systems of every chip carry it."""
    if load.tokens_per_day is not None or not priced:
        return load
    if load.utilisation is None:
        return Load(tokens_per_day=tables.system.tokens_per_day)
    return Load(tokens_per_day=priced[0][0].tokens_per_s * 86400 * load.utilisation)


def option(result, hw: HardwareBase, model: ModelSpec, tables: Tables, load: Load,
           model_life_months: float) -> Option:
    """The systems of ``hw`` (as simulated in ``result``) carrying ``load``, priced."""
    s = tables.system
    systems, u, per_day = whole_systems(load, result.tokens_per_s, s.utilisation)
    custom = system.merchant_of(hw, tables) is None
    nre = system.nre(hw, tables) if custom else None
    fixed = nre is not None and nre.respin_usd is not None
    generation = model_life_months - nre.lead_time_months if fixed and nre is not None else None
    card_years = generation / 12 if generation is not None and generation > 0 else None
    run, _ = system.system_running(hw, model, tables, result.chips, result.power_w, result.tokens_per_s,
                                   u, card_years=card_years)
    per_month = run.usd_per_hour * HOURS_PER_MONTH * systems
    per_mtoken = per_month / (per_day * DAYS_PER_MONTH) * 1e6
    nre_usd = nre.initial_usd if nre is not None else 0.0
    respin = nre.respin_usd if nre is not None else None
    horizon = s.deploy_years * 12
    usable = generation if generation is not None and generation > 0 else None
    total = cumulative_usd(horizon, nre_usd, respin, usable, per_month)
    return Option(
        hw=hw.name, custom=custom, basis=run.basis, chips_per_system=result.chips,
        tokens_per_s=result.tokens_per_s, systems=systems, utilisation=u, tokens_per_day=per_day,
        capex_usd=float(run.capex_usd), opex_usd_per_year=float(run.opex_usd_per_year),
        usd_per_month=per_month, usd_per_mtoken=per_mtoken, nre_usd=nre_usd,
        design_nre_range_usd=nre.design_range_usd if nre is not None else None,
        respin_usd=respin, respin_lead_months=nre.lead_time_months if nre is not None else 0.0,
        generation_months=generation, usd_per_mtoken_with_nre=total / (per_day * DAYS_PER_MONTH * horizon) * 1e6)


def breakeven(custom: Option, merchant: Option, deploy_years: float) -> Breakeven:
    if custom.generation_months is not None and custom.generation_months <= 0:
        return Breakeven(custom.hw, merchant.hw, None, None, False,
                         f"the model serves no longer than the {custom.respin_lead_months:g}-month respin "
                         f"lead time: each chip arrives after its model is retired")
    months, reason = breakeven_months(custom.nre_usd, custom.respin_usd, custom.generation_months,
                                      custom.usd_per_month, merchant.usd_per_month)
    if months is None:
        return Breakeven(custom.hw, merchant.hw, None, None, False, reason)
    tokens = months * custom.tokens_per_day * DAYS_PER_MONTH
    return Breakeven(custom.hw, merchant.hw, months, tokens, months <= deploy_years * 12, reason)


def breakevens(options: list[Option], deploy_years: float) -> list[Breakeven]:
    """Each custom chip against each merchant chip."""
    return [breakeven(c, m, deploy_years) for c in options if c.custom for m in options if not m.custom]


LIFE_GRID_MONTHS = (3.0, 4.0, 6.0, 9.0, 12.0, 18.0, 24.0, 36.0)


def report(priced: list[tuple[Any, HardwareBase]], model: ModelSpec, tables: Tables, load: Load,
           notes: tuple[str, ...] = ()) -> TcoReport:
    """The TCO of each simulated system in ``priced`` (result, chip) at ``load``, the breakeven
    of every custom chip against every merchant chip, and how that breakeven moves with the
    model's service life."""
    s = tables.system
    life = s.model_life_months
    load = common_load(load, priced, tables)
    options = [option(r, hw, model, tables, load, life) for r, hw in priced]
    curve = []
    for months in (*(m for m in LIFE_GRID_MONTHS if m <= s.deploy_years * 12), life):
        variants = [option(r, hw, model, tables, load, months) for r, hw in priced]
        for b in breakevens(variants, s.deploy_years):
            curve.append({"model_life_months": months, "custom": b.custom, "merchant": b.merchant,
                          "months": b.months, "tokens": b.tokens})
    curve.sort(key=lambda row: (row["custom"], row["merchant"], row["model_life_months"]))
    unique = [row for i, row in enumerate(curve) if i == 0 or row != curve[i - 1]]
    workload = priced[0][0].workload if priced else {}
    return TcoReport(model.name, workload, s.deploy_years, life, options,
                     breakevens(options, s.deploy_years), unique, notes)
