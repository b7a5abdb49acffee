"""How a number in a report table reads, chosen by what its column measures: an SI prefix on
its unit (ms, µs, GB/s, mm²), counts with thousands separators, never an exponent."""
from __future__ import annotations

import math

from accelsim.config.units import format_plain, format_rate, format_si

# column name (or the last part of a dotted design key) -> the unit its numbers are in;
# checked in order, first match wins
_BY_SUFFIX: tuple[tuple[str, str], ...] = (
    ("tokens_per_s_per_user", "tokens/s"), ("tokens_per_s_per_chip", "tokens/s"),
    ("tokens_per_s", "tokens/s"), ("req_per_s", "requests/s"), ("joules_per_token", "J"),
    ("usd_per_mtoken", "$/Mtoken"), ("area_mm2", "mm²"), ("power_w", "W"), ("_w", "W"),
    ("_bytes", "B"), ("capacity", "B"), ("bandwidth", "B/s"), ("clock", "Hz"), ("_hz", "Hz"),
    ("_s", "s"), ("_j", "J"), ("flops", "FLOP/s"),
)
COUNT_UNITS = ("tokens/s", "requests/s")


def unit_of(column: str) -> str | None:
    """The unit of a column's numbers, or None for a plain count or label."""
    name = column.split(".")[-1].lower()
    for suffix, unit in _BY_SUFFIX:
        if name.endswith(suffix):
            return unit
    return None


def format_cell(column: str, value: object) -> str:
    """One table cell: numbers with their column's unit, anything else as it is."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "" if value is None else str(value)
    if not math.isfinite(value):
        return "–"
    unit = unit_of(column)
    if unit is None:
        return f"{value:,.0f}" if float(value).is_integer() else format_plain(float(value))
    if unit in COUNT_UNITS:
        return format_rate(float(value), unit)
    if unit == "$/Mtoken":
        return f"${format_plain(float(value))}/Mtoken"
    if unit == "mm²":
        return f"{format_plain(float(value))} mm²"
    return format_si(float(value), unit)
