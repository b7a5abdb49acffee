import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accelsim.config import units


@pytest.mark.parametrize("text, dim, expected", [
    ("3.35 TB/s", units.BANDWIDTH, 3.35e12),
    ("819 GB/s", units.BANDWIDTH, 819e9),
    ("50 MiB", units.SIZE, 50 * 2**20),
    ("80 GB", units.SIZE, 80e9),
    ("60 Mbit/mm2", units.BIT_DENSITY, 60e6 / 8),
    ("1.755 GHz", units.FREQUENCY, 1.755e9),
    ("989 TFLOPS", units.THROUGHPUT, 989e12),
    ("393 TOPS", units.THROUGHPUT, 393e12),
    ("700 W", units.POWER, 700.0),
    ("0.084 pJ", units.ENERGY, 0.084e-12),
    ("4.05 pJ/bit", units.ENERGY_PER_BYTE, 4.05e-12 * 8),
    ("2 us", units.TIME, 2e-6),
    ("814 mm2", units.AREA, 814.0),
])
def test_parses_unit_strings(text, dim, expected):
    assert units.parse_quantity(text, dim) == pytest.approx(expected)


@pytest.mark.parametrize("value, dim, fragment", [
    (3.35, units.BANDWIDTH, "missing unit"),
    ("3.35 TB", units.BANDWIDTH, "not a bandwidth unit"),
    ("fast", units.FREQUENCY, "expected a frequency"),
    (True, units.POWER, "expected a power"),
    ("1e999 W", units.POWER, "finite"),
])
def test_rejects_bad_quantities_with_the_allowed_units(value, dim, fragment):
    with pytest.raises(units.UnitError, match=fragment):
        units.parse_quantity(value, dim)


@given(st.floats(min_value=1e-6, max_value=1e6, allow_nan=False),
       st.sampled_from(sorted(units.SIZE.units)))
def test_any_number_with_any_size_unit_round_trips(number, unit):
    parsed = units.parse_quantity(f"{number!r} {unit}", units.SIZE)
    assert math.isclose(parsed, number * units.SIZE.units[unit], rel_tol=1e-12)


@given(st.text(max_size=12))
def test_arbitrary_text_is_parsed_or_refused_never_crashes(text):
    try:
        value = units.parse_quantity(text, units.BANDWIDTH)
    except units.UnitError:
        return
    assert math.isfinite(value)


@pytest.mark.parametrize("value, unit, text", [
    (3.35e12, "B/s", "3.35 TB/s"),
    (999_960_000, "", "1 G"),
    (2.5e-6, "s", "2.5 µs"),
    (0.0, "J", "0 J"),
])
def test_format_si(value, unit, text):
    assert units.format_si(value, unit) == text
