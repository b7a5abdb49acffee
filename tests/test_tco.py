"""`accelsim tco`: breakeven against hand-worked two-system cases, its monotony in the model's
service life, the acceptance command end to end, and bad input."""
from __future__ import annotations

import itertools
import json
import math

import pytest

from accelsim import api
from accelsim.economics import tco
from accelsim.errors import AccelsimError


def test_breakeven_two_systems_hand_worked():
    # Custom: NRE $10M, $100k a month at the load; merchant: $600k a month at the same load.
    # It saves $500k a month, so the NRE is back after 10M / 0.5M = 20 months.
    months, _ = tco.breakeven_months(10e6, None, None, 100e3, 600e3)
    assert months == pytest.approx(20.0)
    # At 1e10 tokens a day that is 20 x 30.4375 days x 1e10 = 6.0875e12 tokens.
    assert months * 30.4375 * 1e10 == pytest.approx(6.0875e12)


def test_breakeven_with_respins_hand_worked():
    # Same chips; every 6 months a respin of $2M.  Each model saves 6 x 0.5M = $3M > $2M, so the
    # gap closes by $1M a model.  Model k (from 0) breaks even if 10M + 2M k < 0.5M x 6 (k + 1):
    # k > (10 - 3) / (3 - 2) = 7, so k = 8, which starts at month 48 with 10 + 16 = $26M paid:
    # even at 26 / 0.5 = 52 months (inside model 8's [48, 54)).
    months, reason = tco.breakeven_months(10e6, 2e6, 6.0, 100e3, 600e3)
    assert months == pytest.approx(52.0) and "model 9" in reason
    assert tco.cumulative_usd(52.0, 10e6, 2e6, 6.0, 100e3) == pytest.approx(600e3 * 52.0)
    # A respin ($4M) dearer than a model's savings ($3M): only the first model could, and 20 > 6.
    never, why = tco.breakeven_months(10e6, 4e6, 6.0, 100e3, 600e3)
    assert never is None and "never" in why
    # A custom system no cheaper per month never breaks even.
    assert tco.breakeven_months(1e6, None, None, 600e3, 600e3)[0] is None


@pytest.fixture(scope="module")
def hardwired_vs_h100():
    return api.tco("llama-3.1-8b", ["hardwired-llama-3.1-8b", "h100-sxm"], tokens_per_day=1e10)


def test_breakeven_falls_as_model_life_grows(hardwired_vs_h100):
    curve = [row for row in hardwired_vs_h100.life_curve if row["merchant"] == "h100-sxm"]
    lives = [row["model_life_months"] for row in curve]
    assert lives == sorted(lives) and len(lives) >= 5
    months = [math.inf if row["months"] is None else row["months"] for row in curve]
    assert all(a >= b for a, b in itertools.pairwise(months))
    assert months[0] > months[-1] and math.isfinite(months[-1])
    # too short a life: the chip arrives after its model is retired
    short = api.tco("llama-3.1-8b", ["hardwired-llama-3.1-8b", "h100-sxm"], model_life_months=1.5)
    assert short.breakevens[0].months is None and "lead time" in short.breakevens[0].reason


def test_tco_report_figures(hardwired_vs_h100):
    custom, merchant = hardwired_vs_h100.options
    assert custom.custom and not merchant.custom
    assert custom.nre_usd > 1e6 and custom.respin_usd is not None and custom.respin_usd > 0
    assert merchant.nre_usd == 0 and merchant.basis == "card price"
    # both carry the same load with whole systems
    assert custom.tokens_per_day == merchant.tokens_per_day == 1e10
    for o in (custom, merchant):
        assert o.systems * o.tokens_per_s * 86400 * o.utilisation == pytest.approx(1e10)
    b = hardwired_vs_h100.breakevens[0]
    assert b.months is not None and b.tokens == pytest.approx(b.months * 30.4375 * 1e10)
    # at breakeven the cumulative costs meet
    assert custom.cumulative_usd(b.months) == pytest.approx(merchant.cumulative_usd(b.months), rel=1e-9)


def test_acceptance_command_json(cli):
    code, out, err = cli("tco", "--model", "llama-3.1-8b", "--hw", "hardwired-llama-3.1-8b", "--hw", "h100-sxm",
                         "--json")
    assert code == 0, err
    data = json.loads(out)
    hardwired = next(s for s in data["systems"] if s["hw"] == "hardwired-llama-3.1-8b")
    assert hardwired["nre_usd"] > 1e6
    assert data["breakeven"] and data["breakeven"][0]["merchant"] == "h100-sxm"
    assert data["breakeven"][0]["tokens"] > 0
    assert "NaN" not in out and "Infinity" not in out


def test_tco_writes_plots(cli, tmp_path):
    code, out, err = cli("tco", "--hw", "hardwired-llama-3.1-8b", "--hw", "h100-sxm", "--deploy-years", "4",
                         "--model-life", "9", "--out", str(tmp_path / "tco"))
    assert code == 0, err
    assert "breakeven" in out
    for name in ("tco.json", "tco.txt", "cost_vs_tokens.png", "breakeven_vs_life.png"):
        assert (tmp_path / "tco" / name).stat().st_size > 0
    assert json.loads((tmp_path / "tco" / "tco.json").read_text())["deploy_years"] == 4


@pytest.mark.parametrize("args, fragment", [
    (["--tokens-per-day", "1e9", "--utilisation", "0.5"], "not both"),
    (["--tokens-per-day", "-3"], "--tokens-per-day"),
    (["--model-life", "0"], "--model-life"),
    (["--deploy-years", "nan"], "--deploy-years"),
    (["--utilisation", "1.5"], "--utilisation"),
    (["--hw", "h100-sxmm"], "h100-sxm"),
])
def test_bad_input_is_one_line_exit_2(cli, args, fragment):
    code, _, err = cli("tco", *args)
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1


def test_load_validation_in_python():
    with pytest.raises(AccelsimError):
        tco.Load(tokens_per_day=1.0, utilisation=0.5)
    with pytest.raises(AccelsimError):
        tco.Load(utilisation=0.0)


def test_study_report_gains_the_economics(tmp_path):
    from accelsim.config.study import StudySpec
    from accelsim.report.study import write_study
    spec = StudySpec.model_validate({
        "name": "econ", "title": "economics", "workloads": [{"phase": "decode", "batch": 1, "context": 2048}],
        "cases": [{"model": "llama-3.1-8b", "hardware": ["hardwired-llama-3.1-8b", "h100-sxm"]}]})
    cells = api.run_study(spec)
    assert cells[0].tco is not None and cells[0].tco.breakevens
    files = write_study(spec, cells, tmp_path / "study")
    text = files["markdown"].read_text()
    assert "When the custom chip pays off" in text and "hardwired-llama-3.1-8b" in text
    assert "breakeven_months" in files["economics"].read_text()


def test_breakeven_from_nre_capex_opex_and_tokens_per_s_hand_worked():
    """Two systems from first principles (3-year life, PUE 1.3, $0.08/kWh, 8.64e8 tokens/day):
    custom: $10,000 capex, 500 W, 10,000 tokens/s, NRE $5M -> one system;
      $/h = 10,000 / (3 x 8766) + 0.5 kW x 1.3 x 0.08 = 0.380257 + 0.052 = 0.432257
    merchant: $40,000 capex, 700 W, 100 tokens/s -> 8.64e8 / (100 x 86,400) = 100 systems;
      $/h = 40,000 / 26,298 + 0.7 x 1.3 x 0.08 = 1.521028 + 0.0728 = 1.593828 each
    per month (730.5 h): custom $315.76, merchant $116,429.1 -> saving $116,113.3 a month;
    breakeven 5e6 / 116,113.3 = 43.06 months = 43.06 x 30.4375 x 8.64e8 = 1.1325e12 tokens."""
    from accelsim.economics import system
    from accelsim.economics.tables import load_tables
    tables = load_tables()
    custom = system.running(system.ChipCapex(0, 0, 0, 0, 10_000.0, 0.0, 0.0, 0.0), 1, 500.0, 0.0, 10_000.0,
                            tables, 1.0)
    merchant = system.running(system.ChipCapex(0, 0, 0, 0, 40_000.0, 0.0, 0.0, 0.0), 1, 700.0, 0.0, 100.0,
                              tables, 1.0)
    assert custom.usd_per_hour == pytest.approx(0.432257, abs=1e-6)
    assert merchant.usd_per_hour == pytest.approx(1.593828, abs=1e-6)
    systems_c, u_c, _ = tco.whole_systems(tco.Load(8.64e8), 10_000.0, 1.0)
    systems_m, u_m, _ = tco.whole_systems(tco.Load(8.64e8), 100.0, 1.0)
    assert (systems_c, u_c, systems_m, u_m) == (1, 1.0, 100, 1.0)
    per_month_c = custom.usd_per_hour * tco.HOURS_PER_MONTH * systems_c
    per_month_m = merchant.usd_per_hour * tco.HOURS_PER_MONTH * systems_m
    assert (per_month_c, per_month_m) == pytest.approx((315.764, 116_429.1), abs=0.1)
    months, _ = tco.breakeven_months(5e6, None, None, per_month_c, per_month_m)
    assert months == pytest.approx(43.06, abs=0.01)
    assert months * tco.DAYS_PER_MONTH * 8.64e8 == pytest.approx(1.1325e12, rel=1e-3)
