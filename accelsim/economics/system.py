"""What a deployed system costs: capex (chips or cards, memory, package, board, host share,
network, rack) and opex (wall power at the modelled utilisation), amortised over a deployment
life into $ per hour and $ per million tokens.

A merchant chip (one listed in ``merchant.yaml``) is priced by what a buyer pays: its card
price, or its cloud rent where it is not sold.  Any other chip is custom silicon, priced from
its dies (wafer, yield), memory and package; its design NRE and mask respins are separate
(``nre``), charged against token volume by ``accelsim.economics.tco``.

Functions take numbers or numpy arrays (one element per design point), like the area model.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from accelsim.economics import silicon
from accelsim.economics.tables import MerchantChip, NodeEconomics, Tables
from accelsim.hardware import area, backend
from accelsim.hardware.spec import HardwareBase
from accelsim.model.spec import ModelSpec

HOURS_PER_YEAR = 365.25 * 24
SECONDS_PER_YEAR = HOURS_PER_YEAR * 3600
Basis = Literal["custom silicon", "card price", "cloud rent"]


@dataclass(frozen=True)
class ChipCapex:
    """What one chip costs to put in service.  ``card_usd`` is the part bound to the chip
    (dies, memory, package, board): on a chip whose weights are in silicon it is bought again
    for every model.  ``shared_usd`` (host share, network, rack) outlives a model."""

    dies_usd: Any
    memory_usd: Any
    package_usd: Any
    board_usd: Any
    card_usd: Any
    host_usd: float
    network_usd: float
    rack_usd: Any

    @property
    def shared_usd(self) -> Any:
        return self.host_usd + self.network_usd + self.rack_usd

    @property
    def total_usd(self) -> Any:
        return self.card_usd + self.shared_usd


@dataclass(frozen=True)
class Nre:
    """One-off costs of a custom chip: design (a node's range, the assumed end charged) and the
    first mask set; per model change, the masks that hold the weights and the engineering to
    cut them, ready ``lead_time_months`` after the weights are final."""

    design_usd: float
    design_range_usd: tuple[float, float]
    mask_set_usd: float
    respin_usd: float | None        # None: the chip runs any model, nothing to respin
    respin_masks: int | None
    lead_time_months: float

    @property
    def initial_usd(self) -> float:
        return self.design_usd + self.mask_set_usd


@dataclass(frozen=True)
class Running:
    """A priced system at a utilisation: the figures every report shows."""

    basis: Basis
    chips: int
    capex_usd: Any             # the whole system
    card_capex_usd: Any        # the part tied to the model on a fixed-model chip
    opex_usd_per_year: Any     # electricity at the wall (buy) or rent (cloud)
    it_power_w: Any
    wall_power_w: Any
    usd_per_hour: Any          # capex over the deployment life + opex
    usd_per_mtoken: Any        # at ``utilisation``; custom chips: NRE excluded
    utilisation: float


def merchant_of(hw: HardwareBase, tables: Tables) -> MerchantChip | None:
    return tables.merchant.get(hw.name)


def node_economics(hw: HardwareBase, tables: Tables) -> NodeEconomics:
    return tables.node(area.node_name(hw))


def memory_usd(hw, tables: Tables) -> Any:
    """Off-chip memory bought with the chip: HBM priced per GB as HBM, anything else as DRAM."""
    kind = backend(hw)
    level = kind.offchip_level(hw)
    if level is None:
        return 0.0
    per_gb = tables.system.hbm_usd_per_gb if level == "hbm" else tables.system.dram_usd_per_gb
    return kind.main_memory(hw).capacity / 1e9 * per_gb


def shared_usd(hw, tables: Tables) -> tuple[float, float, Any]:
    """(host share, network, rack) per chip; the rack is charged per kW of TDP."""
    s = tables.system
    return s.host_per_chip, s.network_per_chip, hw.power.tdp / 1e3 * s.rack_usd_per_kw


def custom_capex(hw, model: ModelSpec | None, tables: Tables) -> ChipCapex:
    """Custom silicon: good dies at the node's wafer price and yield, memory, a package (with an
    interposer under every die where there are several dies or HBM stacks), a board."""
    s = tables.system
    split = area.chip_dies(hw, model)
    node = node_economics(hw, tables)
    wafer_scale = hw.area is not None and hw.area.wafer_scale
    wafer = hw.area.wafer_cost if hw.area is not None and hw.area.wafer_cost else None
    dies = split.dies * silicon.good_die_usd(split.die_mm2, node, s.yield_model, wafer, wafer_scale)
    needs_interposer = (split.dies > 1) | (area.memory_phys(hw) > 0)
    interposer_mm2 = split.dies * split.die_mm2 + area.memory_phys(hw) * area.HBM_SHORELINE_MM ** 2
    package = s.package + needs_interposer * interposer_mm2 * s.interposer_usd_per_mm2
    memory = memory_usd(hw, tables)
    host, network, rack = shared_usd(hw, tables)
    card = dies + memory + package + s.board
    return ChipCapex(dies, memory, package, s.board, card, host, network, rack)


def card_capex(hw, price: float, tables: Tables) -> ChipCapex:
    """A merchant card: its price covers dies, memory, package and board."""
    host, network, rack = shared_usd(hw, tables)
    return ChipCapex(0.0, 0.0, 0.0, 0.0, price, host, network, rack)


def nre(hw: Any, tables: Tables) -> Nre:
    """A custom chip's design and first masks; a respin where the chip holds one model's
    weights in silicon (``Backend.fixed_model``)."""
    node = node_economics(hw, tables)
    low, high = node.design_nre_low, node.design_nre_high
    design = low if tables.system.design_nre == "low" else high
    default = tables.system.respin
    stated = hw.respin  # the chip's own figures, where its config gives them
    masks = stated.masks if stated is not None and stated.masks is not None else default.masks
    lead = (stated.lead_time_months if stated is not None and stated.lead_time_months is not None
            else default.lead_time_months)
    fixed = backend(hw).fixed_model(hw) is not None
    respin_usd = masks * node.mask_usd + default.engineering if fixed else None
    return Nre(design, (low, high), node.mask_set, respin_usd, masks if fixed else None,
               lead if fixed else 0.0)


def wall_power(power_w: Any, idle_w: Any, utilisation: float, pue: float) -> tuple[Any, Any]:
    """(IT power, wall power): busy at the modelled power for ``utilisation`` of the time, idle
    at the chips' static power otherwise; the facility adds PUE on top."""
    it = utilisation * power_w + (1 - utilisation) * idle_w
    return it, it * pue


def per_mtoken(usd_per_hour: Any, tokens_per_s: Any, utilisation: float) -> Any:
    return usd_per_hour / (tokens_per_s * utilisation * 3600) * 1e6


def running(capex: ChipCapex | None, chips: int, power_w: Any, idle_w: Any, tokens_per_s: Any,
            tables: Tables, utilisation: float, rent_per_hour: float | None = None,
            basis: Basis = "custom silicon", card_years: float | None = None) -> Running:
    """A system of ``chips`` priced at ``utilisation``: bought (capex over the deployment life
    plus electricity) or, where ``rent_per_hour`` is given, rented by the chip-hour.  A card
    retired before the deployment ends (its model replaced) is paid off over ``card_years``."""
    s = tables.system
    it, wall = wall_power(power_w, idle_w, utilisation, s.pue)
    if rent_per_hour is not None:
        hourly = rent_per_hour * chips
        return Running("cloud rent", chips, 0.0, 0.0, hourly * HOURS_PER_YEAR, it, wall, hourly,
                       per_mtoken(hourly, tokens_per_s, utilisation), utilisation)
    assert capex is not None
    energy_per_year = wall / 1e3 * HOURS_PER_YEAR * s.electricity
    total = capex.total_usd * chips
    card_life = min(card_years, s.deploy_years) if card_years is not None else s.deploy_years
    hourly = (capex.card_usd * chips / (card_life * HOURS_PER_YEAR)
              + capex.shared_usd * chips / (s.deploy_years * HOURS_PER_YEAR)
              + energy_per_year / HOURS_PER_YEAR)
    return Running(basis, chips, total, capex.card_usd * chips, energy_per_year, it, wall, hourly,
                   per_mtoken(hourly, tokens_per_s, utilisation), utilisation)


def idle_power_w(hw, chips: int) -> float:
    """What the chips draw while no step runs: their static power."""
    return hw.power.static * chips


def system_running(hw: Any, model: ModelSpec | None, tables: Tables, chips: int, power_w: Any,
                   tokens_per_s: Any, utilisation: float | None = None,
                   card_years: float | None = None) -> tuple[Running, ChipCapex | None]:
    """Price a system of ``chips`` chips ``hw`` (a spec, or ``dse.columns`` over design points) drawing ``power_w`` while it serves
    ``tokens_per_s`` (numbers, or arrays over design points)."""
    u = tables.system.utilisation if utilisation is None else utilisation
    merchant = merchant_of(hw, tables)
    link_w = area.chip_dies(hw, model).link_power_w * chips
    power = power_w + link_w
    idle = idle_power_w(hw, chips) + link_w
    if merchant is not None and merchant.price is None:
        return running(None, chips, power, idle, tokens_per_s, tables, u,
                       rent_per_hour=merchant.rent_per_hour), None
    if merchant is not None and merchant.price is not None:
        capex = card_capex(hw, merchant.price, tables)
        return running(capex, chips, power, idle, tokens_per_s, tables, u, basis="card price"), capex
    capex = custom_capex(hw, model, tables)
    return running(capex, chips, power, idle, tokens_per_s, tables, u, card_years=card_years), capex


def price(result, hw: HardwareBase, model: ModelSpec | None, tables: Tables,
          utilisation: float | None = None):
    """``result`` with its system $/Mtoken and cost breakdown; a merchant chip's silicon is the
    datasheet's (marked by ``die_basis``), a custom chip's the area model's."""
    run, capex = system_running(hw, model, tables, result.chips, result.power_w, result.tokens_per_s,
                                utilisation)
    merchant = merchant_of(hw, tables)
    cost: dict[str, Any] = {
        "basis": run.basis, "utilisation": run.utilisation, "deploy_years": tables.system.deploy_years,
        "capex_usd": run.capex_usd, "opex_usd_per_year": run.opex_usd_per_year,
        "usd_per_hour": run.usd_per_hour, "it_power_w": run.it_power_w, "wall_power_w": run.wall_power_w,
        "pue": tables.system.pue, "usd_per_kwh": tables.system.electricity,
    }
    if capex is not None:
        cost["per_chip"] = {"dies_usd": capex.dies_usd, "memory_usd": capex.memory_usd,
                            "package_usd": capex.package_usd, "board_usd": capex.board_usd,
                            "card_usd": capex.card_usd, "host_usd": capex.host_usd,
                            "network_usd": capex.network_usd, "rack_usd": capex.rack_usd}
    silicon_fields: dict[str, Any] = {}
    notes = result.notes
    if merchant is not None:
        cost["price_source"] = merchant.source
        if merchant.price is not None:
            cost["card_price_usd"], cost["price_date"] = merchant.price, str(merchant.price_date)
        if merchant.rent_per_hour is not None:
            cost["rent_usd_per_chip_hour"], cost["rent_date"] = merchant.rent_per_hour, str(merchant.rent_date)
            cost["usd_per_mtoken_rent"] = per_mtoken(merchant.rent_per_hour * result.chips,
                                                     result.tokens_per_s, run.utilisation)
        cost["die_basis"] = "modelled: no published die area"
        if merchant.die is not None:
            cost["die_basis"] = merchant.die_basis
            silicon_fields = {"die_mm2": merchant.die, "dies": merchant.dies,
                              "area_mm2": merchant.die * merchant.dies,
                              "reticle_limited": merchant.die * merchant.dies > area.RETICLE_MM2}
        die_usd = None
    else:
        one = nre(hw, tables)
        cost["die_basis"] = "stated in config" if hw.area is not None and hw.area.die else "modelled"
        cost["nre_usd"] = one.initial_usd
        cost["design_nre_range_usd"] = list(one.design_range_usd)
        cost["respin_usd"] = one.respin_usd
        cost["node"] = area.node_name(hw)
        if hw.area is None or not hw.area.node:
            notes = (*notes, f"{hw.name} states no process node: its silicon is priced at 7 nm")
        split = area.chip_dies(hw, model)
        node = node_economics(hw, tables)
        die_usd = silicon.good_die_usd(split.die_mm2, node, tables.system.yield_model,
                                       hw.area.wafer_cost if hw.area is not None else None,
                                       hw.area is not None and hw.area.wafer_scale)
        wafer_scale = hw.area is not None and hw.area.wafer_scale
        cost["die_yield"] = 1.0 if wafer_scale else silicon.die_yield(split.die_mm2, node,
                                                                      tables.system.yield_model)
        cost["yield_model"] = tables.system.yield_model
        notes = (*notes, "custom silicon: $/Mtoken excludes design NRE and masks (see `accelsim tco`)")
    priced = result.replaced(usd_per_mtoken=run.usd_per_mtoken, die_cost_usd=die_usd, cost=cost,
                             **silicon_fields)
    reticle = area.reticle_note(hw.name, priced.dies, priced.die_mm2 or 0.0) if priced.reticle_limited else None
    return priced.replaced(notes=tuple(n for n in (*notes, reticle) if n))
