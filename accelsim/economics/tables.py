"""The economics tables: per process node silicon figures, system assumptions and merchant
prices, each validated once from its YAML file (``accelsim/economics/data``) with a ``source``.

Only ``load_tables`` reads files; ``accelsim.api`` and the CLI call it and pass the validated
``Tables`` down, so everything below them stays a pure function of its inputs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from accelsim.config import loader
from accelsim.config.types import Area, Fraction, Money, PositiveInt, Source, Spec
from accelsim.errors import ConfigError

DATA = Path(__file__).resolve().parent / "data"

YieldModel = Literal["poisson", "murphy", "negative_binomial"]


def _positive(value: float) -> float:
    if not value > 0:
        raise ValueError(f"must be > 0, got {value!r}")
    return value


def _non_negative(value: float) -> float:
    if not value >= 0:
        raise ValueError(f"must be >= 0, got {value!r}")
    return value


def _at_least_one(value: float) -> float:
    if not value >= 1:
        raise ValueError(f"must be >= 1, got {value!r}")
    return value


Positive = Annotated[float, AfterValidator(_positive)]
NonNegative = Annotated[float, AfterValidator(_non_negative)]


class NodeEconomics(Spec):
    """One process node: a 300 mm wafer's price, its defect density (per cm2) and clustering
    (negative-binomial alpha), a full mask set and its mask count, and design NRE (low..high)."""

    wafer_price: Money
    defect_density: NonNegative
    clustering: Positive
    mask_set: Money
    masks: PositiveInt
    design_nre_low: Money
    design_nre_high: Money
    source: Source

    @model_validator(mode="after")
    def _range(self):
        if self.design_nre_low > self.design_nre_high:
            raise ValueError("design_nre_low cannot exceed design_nre_high")
        return self

    @property
    def mask_usd(self) -> float:
        """Average price of one mask of the set (upper metal masks cost less than the
        critical front-end ones, so a respin charged at this average errs high)."""
        return self.mask_set / self.masks


class Respin(Spec):
    """What changing the weights of a chip that holds them in silicon costs."""

    masks: PositiveInt
    engineering: Money
    lead_time_months: NonNegative
    source: Source


class SystemAssumptions(Spec):
    deploy_years: Positive
    model_life_months: Positive
    utilisation: Fraction
    tokens_per_day: Positive
    pue: Annotated[float, AfterValidator(_at_least_one)]  # facility power over IT power
    electricity: NonNegative       # USD per kWh
    yield_model: YieldModel
    design_nre: Literal["low", "high"]
    hbm_usd_per_gb: NonNegative
    dram_usd_per_gb: NonNegative
    package: Money
    interposer_usd_per_mm2: NonNegative
    board: Money
    host_per_chip: Money
    network_per_chip: Money
    rack_usd_per_kw: NonNegative
    respin: Respin
    source: Source


class MerchantChip(Spec):
    """A chip priced by what a buyer pays: its card price, its cloud rent, or both."""

    price: Money | None = None
    price_date: str | int | None = None
    rent_per_hour: Money | None = None
    rent_date: str | int | None = None
    die: Area | None = None
    dies: PositiveInt = 1
    die_basis: str | None = None
    source: Source

    @model_validator(mode="after")
    def _priced(self):
        if self.price is None and self.rent_per_hour is None:
            raise ValueError("a merchant chip needs a price or a rent_per_hour")
        if self.price is not None and self.price_date is None:
            raise ValueError("price needs price_date (prices move)")
        if self.rent_per_hour is not None and self.rent_date is None:
            raise ValueError("rent_per_hour needs rent_date (prices move)")
        if self.die is not None and not self.die_basis:
            raise ValueError("die needs die_basis (datasheet, press estimate, ...)")
        return self


class NodeTable(Spec):
    nodes: dict[str, NodeEconomics] = Field(min_length=1)


class MerchantTable(Spec):
    chips: dict[str, MerchantChip]


@dataclass(frozen=True)
class Tables:
    """Everything the economics needs besides the chip and its simulated step."""

    nodes: dict[str, NodeEconomics]
    system: SystemAssumptions
    merchant: dict[str, MerchantChip]

    def node(self, name: str | None) -> NodeEconomics:
        """A chip without a stated node is priced as 7 nm (and says so: ``price``'s notes)."""
        key = name or DEFAULT_NODE
        if key not in self.nodes:
            raise ConfigError(f"no economics for process node {key!r}; known: {', '.join(self.nodes)}",
                              key="area.node")
        return self.nodes[key]

    def custom_only(self) -> Tables:
        """The tables with no merchant prices: every chip is priced as silicon one would build
        (a design point of a sweep is a new chip, whatever its base config is called)."""
        return Tables(self.nodes, self.system, {})

    def with_system(self, **changes: float) -> Tables:
        """The same tables with some numeric system assumptions (deploy_years,
        model_life_months, ...) replaced; each must be a finite number > 0."""
        for key, value in changes.items():
            if key not in SystemAssumptions.model_fields:
                raise ConfigError(f"unknown economics assumption {key!r}")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value <= 0:
                raise ConfigError(f"{key} must be a finite number > 0, got {value!r}")
        return Tables(self.nodes, self.system.model_copy(update=changes), self.merchant)


DEFAULT_NODE = "7nm"


def load_tables(folder: Path | None = None) -> Tables:
    """Read and validate ``nodes.yaml``, ``system.yaml`` and ``merchant.yaml`` from ``folder``
    (the bundled tables by default)."""
    root = folder or DATA

    def read(name: str) -> tuple[dict, str]:
        path = root / name
        return loader.read_document(path), str(path)

    nodes = loader.validate(NodeTable, *read("nodes.yaml"))
    system = loader.validate(SystemAssumptions, *read("system.yaml"))
    merchant = loader.validate(MerchantTable, *read("merchant.yaml"))
    return Tables(nodes.nodes, system, merchant.chips)
