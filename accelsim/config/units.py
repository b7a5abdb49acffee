"""Physical quantities written as strings with units ("3.35 TB/s", "50 MiB") parsed to SI floats.

Every quantity is stored in its base SI unit: bytes, bytes/s, Hz, FLOP/s, W, J, s, mm^2.
A bare number is refused where a unit is required: a missing unit is the commonest config
mistake and silently guessing one gives answers off by 10^3.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

_DECIMAL = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
_BINARY = {"Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50}
_SMALL = {"": 1.0, "m": 1e-3, "u": 1e-6, "µ": 1e-6, "n": 1e-9, "p": 1e-12, "f": 1e-15}


@dataclass(frozen=True)
class Dimension:
    name: str
    example: str
    units: dict[str, float]

    def allowed(self) -> str:
        return ", ".join(self.units)


def _scaled(base: str, prefixes: dict[str, float], aliases: tuple[str, ...] = ()) -> dict[str, float]:
    table = {f"{p}{base}": s for p, s in prefixes.items()}
    for alias in aliases:
        table.update({f"{p}{alias}": s for p, s in prefixes.items()})
    return table


def _bytes_units() -> dict[str, float]:
    table = {f"{p}B": s for p, s in _DECIMAL.items() if p != "K"}
    table.update({f"{p}B": s for p, s in _BINARY.items()})
    table.update({f"{p}bit": s / 8 for p, s in _DECIMAL.items() if p not in ("K",)})
    table.update({f"{p}b": s / 8 for p, s in _DECIMAL.items() if p not in ("K", "")})
    return table


_BYTES = _bytes_units()

SIZE = Dimension("size", "50 MiB", _BYTES)
BANDWIDTH = Dimension("bandwidth", "3.35 TB/s", {f"{u}/s": s for u, s in _BYTES.items()})
FREQUENCY = Dimension("frequency", "1.755 GHz", _scaled("Hz", _DECIMAL))
THROUGHPUT = Dimension(
    "compute throughput",
    "989 TFLOPS",
    _scaled("FLOPS", _DECIMAL, ("OPS", "FLOP/s", "OP/s")),
)
POWER = Dimension("power", "700 W", {**_scaled("W", {k: v for k, v in _DECIMAL.items() if k != "K"}),
                                     **_scaled("W", _SMALL)})
ENERGY = Dimension("energy", "0.4 pJ", {**_scaled("J", _SMALL), "kJ": 1e3})
ENERGY_PER_BYTE = Dimension(
    "energy per byte", "7 pJ/B",
    {**{f"{e}/B": s for e, s in _scaled("J", _SMALL).items()},
     **{f"{e}/bit": s * 8 for e, s in _scaled("J", _SMALL).items()},
     **{f"{e}/b": s * 8 for e, s in _scaled("J", _SMALL).items()}},
)
TIME = Dimension("time", "4 us", {**_scaled("s", _SMALL), "min": 60.0})
AREA = Dimension("area", "814 mm2", {"mm2": 1.0, "mm^2": 1.0, "mm²": 1.0, "um2": 1e-6, "um^2": 1e-6,
                                       "µm2": 1e-6, "µm²": 1e-6, "cm2": 100.0, "cm^2": 100.0})
BIT_DENSITY = Dimension("storage density", "30 Mbit/mm2",
                        {f"{u}/{a}": s / sa for u, s in _BYTES.items() for a, sa in
                         (("mm2", 1.0), ("mm^2", 1.0), ("mm²", 1.0))})
MONEY = Dimension("cost", "17000 USD", {"USD": 1.0, "$": 1.0, "kUSD": 1e3, "MUSD": 1e6})

_QUANTITY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(\S+)\s*$")


# The largest quantity a config may state, in base SI units: 1e30 is beyond any real size,
# bandwidth, rate or energy (a zettabyte is 1e21 B) and keeps products of a few of them finite.
MAX_QUANTITY = 1e30
MIN_POSITIVE = 1e-24  # a positive quantity below yocto-units is a typo; dividing by it stays finite


class UnitError(ValueError):
    """Raised with a message that says what was expected; wrapped into ConfigError at the edge."""


# Parsed quantities by (text, dimension): a sweep validates the same config strings for every
# section it builds.  Only successful parses are kept (errors are raised afresh each time).
_PARSED: dict[tuple[str, int], tuple[Dimension, float]] = {}


def parse_quantity(text: object, dim: Dimension) -> float:
    """Parse ``text`` (e.g. "3.35 TB/s") as a quantity of dimension ``dim``; return the SI value."""
    if type(text) is str:
        hit = _PARSED.get((text, id(dim)))
        if hit is not None and hit[0] is dim:
            return hit[1]
        value = _parse_quantity(text, dim)
        _remember(text, dim, value)
        return value
    return _parse_quantity(text, dim)


def _remember(text: str, dim: Dimension, value: float) -> None:
    if len(_PARSED) >= 100_000:
        _PARSED.clear()
    _PARSED[(text, id(dim))] = (dim, value)


def quantity_text(number: float, unit: str, dim: Dimension) -> str:
    """``f"{number!r} {unit}"``: the text a sweep writes for a number it computed (a random
    draw, a derived key), with the value ``parse_quantity(text, dim)`` gives for it recorded,
    since the sweep reads every such text back at once and each is new.  That value is known
    without parsing: a finite float's ``repr`` reads back as the same float, so the parser's
    ``float(number) * dim.units[unit]`` is ``number * dim.units[unit]``; anything else (a unit
    not of ``dim``, a non-finite number or product) is left for the parser to judge."""
    text = f"{number!r} {unit}"
    scale = dim.units.get(unit)
    if scale is not None and type(number) is float and math.isfinite(number):
        value = number * scale
        if math.isfinite(value):
            _remember(text, dim, value)
    return text


def _parse_quantity(text: object, dim: Dimension) -> float:
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise UnitError(f"expected a {dim.name} with a unit like '{dim.example}', got {text!r}")
    if isinstance(text, (int, float)):
        raise UnitError(f"missing unit: write the {dim.name} with a unit like '{dim.example}' "
                        f"(units: {dim.allowed()}), got {text!r}")
    match = _QUANTITY.match(text)
    if not match:
        raise UnitError(f"expected a {dim.name} like '{dim.example}' (units: {dim.allowed()}), "
                        f"got {text!r}")
    number, unit = match.groups()
    if unit not in dim.units:
        raise UnitError(f"unit '{unit}' is not a {dim.name} unit (allowed: {dim.allowed()}), "
                        f"got {text!r}")
    value = float(number) * dim.units[unit]
    if not math.isfinite(value):
        raise UnitError(f"{text!r} is not a finite number")
    return value


def format_si(value: float, unit: str, *, digits: int = 3) -> str:
    """Human-readable SI formatting used by reports and the CLI: 3.35e12, 'B/s' -> '3.35 TB/s'."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g} {unit}"
    prefixes = [(1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""),
                (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"), (1e-12, "p")]
    # Round first, so 999.96e6 prints as 1 G rather than 1e+03 M.
    rounded = float(f"{value:.{digits}g}")
    for scale, prefix in prefixes:
        if abs(rounded) >= scale:
            return f"{rounded / scale:.{digits}g} {prefix}{unit}"
    return f"{value:.{digits}g} {unit}"


def format_plain(value: float, digits: int = 3) -> str:
    """``digits`` significant figures in positional notation with thousands separators, never an
    exponent (reports are read by people: 0.000123, 12.3, 45,600)."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    magnitude = math.floor(math.log10(abs(float(f"{value:.{digits}g}"))))
    decimals = max(0, digits - 1 - magnitude)
    return f"{value:,.{decimals}f}"


def format_rate(value: float, unit: str, digits: int = 3) -> str:
    """A count per something ('tokens/s', 'requests/s') as '1,234 tokens/s': counts keep their
    digits rather than an SI prefix, which reads as bytes or hertz to most people."""
    if abs(value) >= 10 ** digits:
        return f"{value:,.0f} {unit}"
    return f"{format_plain(value, digits)} {unit}"
