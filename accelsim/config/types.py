"""Pydantic field types for unit-bearing quantities and the strict base model every spec uses."""
from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

from accelsim.config import units


class Spec(BaseModel):
    """Immutable and strict: unknown keys are errors, and no coercion of '3' into 3."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=False, validate_default=True,
                              allow_inf_nan=False)


# Sane maxima at the edge: every count and size a config gives is bounded, so arithmetic on it
# stays finite in float64 and nothing allocates per unit of a runaway value.  2**40 (about 1.1e12)
# is far beyond any real count (vocabularies ~1e6, widths ~1e5, MACs on a die ~1e7); layers (8x the
# deepest published model, Llama-3.1-405B with 126) get their own bound: lowering builds ops per layer.
MAX_COUNT = 2**40
MAX_LAYERS = 1024
# A derate below this is a typo (it would make a step last longer than the universe's age).
MIN_FRACTION = 1e-6


def _quantity(dim: units.Dimension, *, positive: bool = True):
    def parse(value: object) -> float:
        try:
            parsed = units.parse_quantity(value, dim)
        except units.UnitError as err:
            raise ValueError(str(err)) from None
        if parsed > units.MAX_QUANTITY:
            raise ValueError(f"must be at most {units.MAX_QUANTITY:g} (in base units), got {value!r}")
        if positive and 0 < parsed < units.MIN_POSITIVE:
            raise ValueError(f"must be at least {units.MIN_POSITIVE:g} (in base units), got {value!r}")
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

def _plain_number(value: object) -> object:
    """YAML's true/false and a quoted '132' are typos for a count, not 1, 0 and 132: pydantic's
    lax mode would convert them silently."""
    if isinstance(value, (bool, str)):
        raise ValueError(f"must be a plain integer, got {value!r}")  # noqa: TRY004 (pydantic reports ValueError)
    return value


_WHOLE = BeforeValidator(_plain_number)


def _plain_fraction(value: object) -> object:
    if isinstance(value, (bool, str)):  # true is no share of 1.0, nor '0.85' a number
        raise ValueError(f"must be a plain number, got {value!r}")  # noqa: TRY004 (pydantic reports ValueError)
    return value


_PLAIN_FRACTION = BeforeValidator(_plain_fraction)
PositiveInt = Annotated[int, _WHOLE, _require(lambda v: 0 < v <= MAX_COUNT,
                                              f"must be a positive integer <= {MAX_COUNT}, got {{value}}")]
NonNegativeInt = Annotated[int, _WHOLE, _require(lambda v: 0 <= v <= MAX_COUNT,
                                                 f"must be an integer in [0, {MAX_COUNT}], got {{value}}")]
LayerCount = Annotated[int, _WHOLE, _require(lambda v: 0 < v <= MAX_LAYERS,
                                             f"must be a positive integer <= {MAX_LAYERS}, got {{value}}")]
Fraction = Annotated[float, _PLAIN_FRACTION, _require(lambda v: MIN_FRACTION <= v <= 1,
                                     f"must be a fraction in [{MIN_FRACTION:g}, 1], got {{value}}")]
Source = Annotated[str, _require(lambda v: len(v.strip()) >= 3,
                                 "must cite where the figures come from (datasheet, paper, URL)")]
