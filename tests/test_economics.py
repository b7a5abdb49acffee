"""Silicon economics against hand-worked numbers: dies per wafer, the three yield models, die
cost, the reticle split with its die-to-die links, memory PHY shoreline; system pricing."""
from __future__ import annotations

import math

import pytest

from accelsim import api
from accelsim.config import loader
from accelsim.economics import silicon, system
from accelsim.economics.tables import NodeEconomics, load_tables
from accelsim.errors import ConfigError
from accelsim.hardware import area, load_hardware
from accelsim.model.spec import load_model


@pytest.fixture(scope="module")
def tables():
    return load_tables()


def test_dies_per_wafer_hand_worked():
    # 300 mm wafer, 10 x 10 mm die: pi * 150^2 / 100 = 706.858 gross sites, less the edge
    # pi * 300 / sqrt(2 * 100) = 942.478 / 14.142 = 66.643 partial dies -> 640.215
    assert silicon.dies_per_wafer(100.0) == pytest.approx(640.215, abs=1e-3)
    # an 800 mm2 die: 88.357 - 942.478 / 40 = 88.357 - 23.562 = 64.795
    assert silicon.dies_per_wafer(800.0) == pytest.approx(64.795, abs=1e-3)


def test_yield_models_hand_worked():
    # 1 cm2 at 0.1 defects/cm2: A*D0 = 0.1
    assert silicon.poisson_yield(100.0, 0.1) == pytest.approx(0.904837, abs=1e-6)    # e^-0.1
    assert silicon.murphy_yield(100.0, 0.1) == pytest.approx(0.905592, abs=1e-6)     # (0.0951626/0.1)^2
    assert silicon.negative_binomial_yield(100.0, 0.1, 2.0) == pytest.approx(1.05 ** -2)  # 0.907029
    # 8 cm2: A*D0 = 0.8 -> Poisson e^-0.8 = 0.449329; Murphy ((1 - 0.449329) / 0.8)^2 = 0.473810;
    # negative binomial (1 + 0.8 / 2)^-2 = 1.4^-2 = 0.510204: clustering leaves more good dies
    p, m, nb = (silicon.poisson_yield(800.0, 0.1), silicon.murphy_yield(800.0, 0.1),
                silicon.negative_binomial_yield(800.0, 0.1, 2.0))
    assert (p, m, nb) == pytest.approx((0.449329, 0.473810, 0.510204), abs=1e-6)
    assert p < m < nb
    # clustering -> none (alpha large) gives Poisson back
    assert silicon.negative_binomial_yield(800.0, 0.1, 1e9) == pytest.approx(p, rel=1e-6)
    assert silicon.murphy_yield(100.0, 0.0) == 1.0


def test_die_cost_hand_worked(tables):
    node = tables.nodes["5nm"]  # $16,988 wafer, 0.10 /cm2, alpha 2
    # 640.215 gross dies x 0.907029 yield = 580.694 good dies -> 16,988 / 580.694 = $29.25
    assert silicon.good_die_usd(100.0, node, "negative_binomial") == pytest.approx(29.2546, abs=1e-3)
    override = silicon.good_die_usd(100.0, node, "negative_binomial", wafer_usd=5807.0)
    assert override == pytest.approx(10.0, abs=1e-3)


def test_reticle_is_26_by_33_mm():
    assert area.RETICLE_MM2 == 858.0


def test_1000_mm2_design_splits_into_two_dies_with_their_link():
    # One link end: 1 TB/s over 1.3 TB/s per mm of edge = 0.76923 mm of shoreline, 1 mm deep.
    end = 1.0 / 1.3
    assert area.D2D_LINK_END_MM2 == pytest.approx(end)
    split = area.split_dies(1000.0)
    # n = ceil((1000 - 2 * 0.769) / (858 - 2 * 0.769)) = ceil(1.1658) = 2 dies, 1 link, 2 ends
    assert split.dies == 2 and split.links == 1 and split.reticle_limited
    assert split.link_mm2 == pytest.approx(2 * end)                      # 1.538 mm2
    assert split.die_mm2 == pytest.approx((1000.0 + 2 * end) / 2)        # 500.769 mm2
    assert split.link_power_w == pytest.approx(1e12 * 8 * 0.3e-12)       # 2.4 W at full bandwidth
    assert split.link_bandwidth == 1e12
    one = area.split_dies(858.0)
    assert one.dies == 1 and not one.reticle_limited and one.link_mm2 == 0
    three = area.split_dies(2000.0)  # ceil(1998.46 / 856.46) = 3
    assert three.dies == 3 and three.die_mm2 <= area.RETICLE_MM2


def test_memory_phys_cost_shoreline():
    # 4 HBM stacks along two edges: 2 x 8 mm per edge -> a die at least 16 x 16 = 256 mm2
    assert area.shoreline_mm2(4) == pytest.approx(256.0)
    chip = load_hardware("tpu-v5e")
    # 819 GB/s of HBM needs one 1.2 TB/s stack; a chip with none stated still pays for it
    assert area.memory_phys(chip) == 1
    b = area.area_breakdown(chip)
    assert b.phy_mm2 == pytest.approx(area.PHY_MM2) and b.die_mm2 >= area.shoreline_mm2(1)


def test_every_node_has_the_required_figures(tables):
    for name in ("16nm", "7nm", "6nm", "5nm", "4nm", "3nm"):
        node = tables.nodes[name]
        assert node.wafer_price > 0 and node.mask_set > 0 and node.design_nre_high >= node.design_nre_low
        assert len(node.source) > 20
    assert set(area.NODES) == set(tables.nodes)


def test_bad_node_table_is_one_line():
    with pytest.raises(ConfigError) as err:
        loader.validate(NodeEconomics, {"wafer_price": "1 USD", "defect_density": -1, "clustering": 2,
                                        "mask_set": "1 USD", "masks": 10, "design_nre_low": "1 USD",
                                        "design_nre_high": "2 USD", "source": "test table"}, "n.yaml")
    assert "defect_density" in err.value.one_line() and "\n" not in err.value.one_line()


def test_h100_batch1_llama8b_system_cost_in_published_range():
    """Renting an H100 costs $2-4 an hour; at ~150 tokens/s that is a few $ per Mtoken."""
    r = api.simulate("llama-3.1-8b", "h100-sxm")
    assert 1.5 <= r.usd_per_mtoken <= 10.0
    assert r.cost["basis"] == "card price" and r.cost["die_basis"] == "datasheet"
    assert r.die_mm2 == 814.0 and r.dies == 1 and not r.reticle_limited


def test_custom_capex_parts_add_up(tables):
    hw = load_hardware("hardwired-llama-3.1-8b")
    spec = load_model("llama-3.1-8b")
    capex = system.custom_capex(hw, spec, tables)
    s = tables.system
    assert capex.card_usd == pytest.approx(capex.dies_usd + capex.memory_usd + capex.package_usd + s.board)
    assert capex.total_usd == pytest.approx(capex.card_usd + s.host_per_chip + s.network_per_chip
                                            + 0.25 * s.rack_usd_per_kw)  # 250 W TDP
    nre = system.nre(hw, tables)
    node = tables.nodes["6nm"]
    assert nre.initial_usd == node.design_nre_low + node.mask_set
    assert nre.respin_masks == 2
    assert nre.respin_usd == pytest.approx(2 * node.mask_set / node.masks + s.respin.engineering)


def test_opex_hand_worked(tables):
    # 1,000 W busy at utilisation 0.5, 200 W idle: IT 600 W, wall 780 W at PUE 1.3;
    # a year of it at $0.08/kWh = 0.78 kW x 8766 h x 0.08 = $547.0
    capex = system.ChipCapex(0, 0, 0, 0, 10_000.0, 0.0, 0.0, 0.0)
    run = system.running(capex, 1, 1000.0, 200.0, 100.0, tables, 0.5)
    assert run.it_power_w == pytest.approx(600.0) and run.wall_power_w == pytest.approx(780.0)
    assert run.opex_usd_per_year == pytest.approx(0.78 * 8766 * 0.08)
    hourly = 10_000.0 / (3 * 8766) + 0.78 * 0.08
    assert run.usd_per_hour == pytest.approx(hourly)
    assert run.usd_per_mtoken == pytest.approx(hourly / (100.0 * 0.5 * 3600) * 1e6)
    assert math.isfinite(run.usd_per_mtoken)


def test_hardwired_70b_is_multi_die_within_the_reticle():
    r = api.simulate("llama-3.1-70b", "hardwired-llama-3.1-70b")
    assert r.dies > 1 and r.reticle_limited
    assert r.die_mm2 <= area.RETICLE_MM2  # every die printable: <= 858 mm2
    # the dies hold the modelled silicon plus their link ends
    b = area.area_breakdown(load_hardware("hardwired-llama-3.1-70b"), load_model("llama-3.1-70b"))
    assert r.die_mm2 * r.dies == pytest.approx(b.die_mm2 + 2 * (r.dies - 1) * area.D2D_LINK_END_MM2)
    assert any("reticle" in n for n in r.notes)
    assert r.cost["nre_usd"] > 1e6 and math.isfinite(r.usd_per_mtoken)


def test_run_json_carries_silicon_and_cost(cli):
    code, out, err = cli("run", "--model", "llama-3.1-8b", "--hw", "tpu-v5e", "--weight-dtype", "int8", "--json")
    assert code == 0, err
    import json
    data = json.loads(out)
    for key in ("die_mm2", "dies", "reticle_limited", "area_mm2", "usd_per_mtoken", "cost"):
        assert key in data
    # a TPU is rented, not sold: priced by its chip-hour, its die modelled and marked so
    assert data["cost"]["basis"] == "cloud rent" and data["cost"]["die_basis"].startswith("modelled")
    assert data["usd_per_mtoken"] == pytest.approx(data["cost"]["usd_per_mtoken_rent"])


def test_respin_masks_are_a_config_field_with_a_source(tables):
    import yaml

    from accelsim.config.loader import bundled_names
    from accelsim.hardware import parse_hardware
    doc = yaml.safe_load(bundled_names("hw_configs")["hardwired-llama-3.1-8b"].read_text())
    assert doc["respin"]["masks"] == 2 and "Taalas" in doc["respin"]["source"]
    node = tables.nodes["6nm"]
    doc["respin"]["masks"] = 4
    four = system.nre(parse_hardware(doc, "four.yaml"), tables)
    assert four.respin_usd == pytest.approx(4 * node.mask_set / node.masks + tables.system.respin.engineering)
    # a GPU runs any model: nothing to respin
    assert system.nre(load_hardware("h100-sxm"), tables).respin_usd is None
    doc["respin"]["masks"] = 0
    with pytest.raises(ConfigError) as err:
        parse_hardware(doc, "bad.yaml")
    assert "respin.masks" in err.value.one_line()
    doc["respin"] = {"masks": 2}
    with pytest.raises(ConfigError) as err:
        parse_hardware(doc, "bad.yaml")
    assert "respin.source" in err.value.one_line()
