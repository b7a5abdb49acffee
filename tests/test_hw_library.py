"""The bundled hardware library: every config loads, figures agree with refdata, bad configs
fail with one line naming the file and key."""
from __future__ import annotations

import math

import pytest
import yaml

from accelsim.config.loader import bundled_names
from accelsim.economics import silicon
from accelsim.economics.tables import load_tables
from accelsim.errors import ConfigError
from accelsim.hardware import area, load_hardware, parse_hardware
from accelsim.model.spec import load_model

NAMES = sorted(bundled_names("hw_configs"))
EXPECTED = {"a100-sxm", "h100-sxm", "h200", "b200", "mi300x", "tpu-v4", "tpu-v5e", "tpu-v5p",
            "tpu-v6e", "hardwired-llama-3.1-8b", "fpga-ternary-mmfree"}


def test_library_has_the_issue_configs():
    assert EXPECTED <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_every_bundled_config_loads_and_cites_sources(name):
    hw = load_hardware(name)
    assert hw.name == name
    doc = yaml.safe_load(bundled_names("hw_configs")[name].read_text())
    for section, body in doc.items():
        if isinstance(body, dict) and section not in ("memory",):
            assert "source" in body, f"{name}: section {section} has no source"
    for level, body in doc["memory"].items():
        assert "source" in body, f"{name}: memory.{level} has no source"


@pytest.mark.parametrize("name, bf16_tflops, hbm_tbs, tdp_w", [
    ("a100-sxm", 312, 2.039, 400), ("h200", 989.4, 4.8, 700), ("b200", 2250, 8.0, 1000),
    ("mi300x", 1307.4, 5.3, 750), ("tpu-v4", 275, 1.2, 192), ("tpu-v5p", 459, 2.765, 320),
    ("tpu-v6e", 918, 1.638, 300)])
def test_headline_figures_match_refdata(name, bf16_tflops, hbm_tbs, tdp_w):
    hw = load_hardware(name)
    assert hw.matrix_peak("bf16") == pytest.approx(bf16_tflops * 1e12)
    assert hw.memory.hbm.bandwidth == pytest.approx(hbm_tbs * 1e12)
    assert hw.power.tdp == pytest.approx(tdp_w)


def test_a100_has_no_fp8_and_falls_back_to_bf16():
    hw = load_hardware("a100-sxm")
    assert "fp8" not in hw.compute.matrix
    assert hw.fallback_dtype("fp8") in ("bf16", "fp16")


def test_ternary_add_energy_only_where_a_ternary_datapath_exists():
    fpga, gpu = load_hardware("fpga-ternary-mmfree"), load_hardware("h100-sxm")
    assert fpga.has_datapath("ternary") and not gpu.has_datapath("ternary")
    assert fpga.mac_energy("ternary") == pytest.approx(fpga.energy.mac["ternary"])
    # On a GPU ternary weights run on an 8-bit multiplier datapath and pay for it.
    assert gpu.mac_energy("ternary") >= gpu.energy.mac["fp8"]
    assert fpga.compute.zero_skipping and not gpu.compute.zero_skipping


def test_murphy_yield_and_dies_per_wafer_hand_values():
    # AD = 1 cm2 x 0.1 /cm2 -> ((1 - e^-0.1) / 0.1)^2
    assert silicon.murphy_yield(100.0, 0.1) == pytest.approx(((1 - math.exp(-0.1)) / 0.1) ** 2)
    # 300 mm wafer, 100 mm2 die: pi*150^2/100 - pi*300/sqrt(200)
    assert silicon.dies_per_wafer(100.0) == pytest.approx(math.pi * 225 - math.pi * 300 / math.sqrt(200))


def test_die_cost_grows_faster_than_area():
    small, big = 100.0, 800.0
    node = load_tables().nodes["5nm"]
    for model in ("poisson", "murphy", "negative_binomial"):
        cost = [silicon.good_die_usd(a, node, model) for a in (small, big)]
        assert cost[1] / cost[0] > big / small


def test_stated_die_area_wins_and_hardwired_rom_is_modelled():
    hw = load_hardware("hardwired-llama-3.1-8b")
    b = area.area_breakdown(hw, load_model("llama-3.1-8b"))
    assert b.stated and b.die_mm2 == pytest.approx(815.0)
    assert b.rom_mm2 > 0 and b.modelled_mm2 <= b.die_mm2


def _doc(name: str) -> dict:
    return yaml.safe_load(bundled_names("hw_configs")[name].read_text())


@pytest.mark.parametrize("mutate, key_fragment", [
    (lambda d: d["area"].update(node="2nm"), "area.node"),
    (lambda d: d["compute"].update(zero_skipping="sometimes"), "compute.zero_skipping"),
    (lambda d: d["compute"]["matrix"].update(bf16=300), "compute.matrix.bf16"),
    (lambda d: d["power"].update(static="900 W"), "power"),
    (lambda d: d.update(kind="fpga"), "kind"),
    (lambda d: d["energy"].pop("source"), "energy.source"),
])
def test_bad_configs_fail_with_one_line(mutate, key_fragment):
    doc = _doc("tpu-v4")
    mutate(doc)
    with pytest.raises(ConfigError) as err:
        parse_hardware(doc, "bad.yaml")
    line = err.value.one_line()
    assert "\n" not in line and line.startswith("bad.yaml") and key_fragment in line


def test_bad_config_through_cli_exits_2(cli, write):
    doc = _doc("h200")
    doc["gpu"]["sms"] = 0
    path = write("bad-h200.yaml", yaml.safe_dump(doc))
    code, _, err = cli("op", "--hw", str(path), "matmul", "--m", "8", "--k", "8", "--n", "8")
    assert code == 2 and "gpu.sms" in err and len(err.strip().splitlines()) == 1


def test_zero_skipping_hook_gains_only_what_density_allows():
    from accelsim.hardware.common import datapath_macs
    assert datapath_macs(1000.0, False, density=0.3) == 1000.0
    assert datapath_macs(1000.0, True, density=0.3) == pytest.approx(300.0)
    # groups of 4 are skipped only when all four are zero: 1 - 0.7^4 of the work remains
    assert datapath_macs(1000.0, True, density=0.3, granularity=4) == pytest.approx(1000 * (1 - 0.7 ** 4))


def test_wafer_scale_engine_costs_one_wafer_not_infinity():
    """A 46,225 mm2 engine has no room for a second die and no yield by discard: its spares route
    around defects, so the chip costs a wafer (the die-per-wafer formula alone gives zero)."""
    from accelsim import hardware

    chip = hardware.load_hardware("cerebras-wse3")
    node = load_tables().nodes["5nm"]
    assert silicon.dies_per_wafer(46225) == 0
    cost = silicon.good_die_usd(46225, node, "negative_binomial", wafer_scale=True)
    assert math.isfinite(cost) and cost == node.wafer_price
    assert area.chip_dies(chip).dies == 1  # stitched across reticles by design, never split
