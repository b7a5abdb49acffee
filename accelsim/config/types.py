"""Pydantic field types for unit-bearing quantities and the strict base model every spec uses."""
from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

from accelsim import units


class Spec(BaseModel):
    """Immutable and strict: unknown keys are errors, and no coercion of '3' into 3."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=False, validate_default=True)


def _quantity(dim: units.Dimension, *, positive: bool = True):
    def parse(value: object) -> float:
        try:
            parsed = units.parse_quantity(value, dim)
        except units.UnitError as err:
            raise ValueError(str(err)) from None
        if positive and parsed <= 0:
            raise ValueError(f"must be > 0, got {value!r}")
        if parsed < 0:
            raise ValueError(f"must be >= 0, got {value!r}")
        return parsed

    return BeforeValidator(parse)


def _require(check, message):
    def validate(value):
        if not check(value):
            raise ValueError(message.format(value=value))
        return value

    return AfterValidator(validate)


Bytes = Annotated[float, _quantity(units.SIZE)]
Bandwidth = Annotated[float, _quantity(units.BANDWIDTH)]
Frequency = Annotated[float, _quantity(units.FREQUENCY)]
Throughput = Annotated[float, _quantity(units.THROUGHPUT)]
Power = Annotated[float, _quantity(units.POWER)]
PowerOrZero = Annotated[float, _quantity(units.POWER, positive=False)]
Energy = Annotated[float, _quantity(units.ENERGY, positive=False)]
EnergyPerByte = Annotated[float, _quantity(units.ENERGY_PER_BYTE, positive=False)]
Seconds = Annotated[float, _quantity(units.TIME, positive=False)]
Area = Annotated[float, _quantity(units.AREA)]
BitDensity = Annotated[float, _quantity(units.BIT_DENSITY)]
Money = Annotated[float, _quantity(units.MONEY, positive=False)]

PositiveInt = Annotated[int, _require(lambda v: v > 0, "must be a positive integer, got {value}")]
NonNegativeInt = Annotated[int, _require(lambda v: v >= 0, "must be >= 0, got {value}")]
Fraction = Annotated[float, _require(lambda v: 0 < v <= 1, "must be a fraction in (0, 1], got {value}")]
Source = Annotated[str, _require(lambda v: len(v.strip()) >= 3,
                                 "must cite where the figures come from (datasheet, paper, URL)")]
