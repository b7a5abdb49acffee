"""Issue 17: trust labels and error bands, computed from the validation table."""
from __future__ import annotations

import json

import pytest
import yaml

from accelsim import api
from accelsim.config import loader
from accelsim.hardware import load_hardware
from accelsim.trust import LABELS, Row, trust_of


def _rows(hw: str, *specs: tuple[str, str, float]) -> list[Row]:
    return [Row(hw, metric, split, error, "measured (vendor-published)") for metric, split, error in specs]


TABLE = _rows("chip-a", ("tpot", "holdout", 0.05), ("tpot", "holdout", -0.10), ("tpot", "holdout", 0.02),
              ("tpot", "calibration", 0.01), ("ttft", "holdout", 0.30), ("ttft", "calibration", 0.2))


def test_validated_with_the_held_out_band_of_the_phase():
    t = trust_of("chip-a", "decode", TABLE)
    assert t.label == "validated"
    assert t.error_band == (-0.10, 0.05)          # lowest and highest held-out tpot error
    assert t.median_abs_error == pytest.approx(0.05)
    assert t.points == 3


def test_held_out_median_above_the_bound_is_only_calibrated():
    t = trust_of("chip-a", "prefill", TABLE)       # the one held-out ttft row is 30 % off
    assert t.label == "calibrated" and t.error_band == (0.30, 0.30)


def test_label_changes_when_held_out_rows_are_removed():
    without_holdout = [r for r in TABLE if r.split != "holdout"]
    assert trust_of("chip-a", "decode", TABLE).label == "validated"
    t = trust_of("chip-a", "decode", without_holdout)
    assert t.label == "calibrated" and t.error_band is None
    assert trust_of("chip-a", "decode", []).label == "datasheet"


def test_claims_only_and_design():
    claims = [Row("chip-c", "tpot", "holdout", 0.01, "claim (marketing)")]
    assert trust_of("chip-c", "decode", claims).label == "vendor-claim"
    assert trust_of("chip-a", "decode", TABLE, design=True).label == "design"
    assert set(LABELS) == {"validated", "calibrated", "vendor-claim", "datasheet", "design"}


# --- the bundled validation table --------------------------------------------------------------

def test_bundled_table_labels_follow_its_rows():
    """h100-sxm's decode label in the bundled table, then the same table without h100-sxm's
    held-out rows: the label must move off 'validated' (the table, not a typed value, decides)."""
    table = api.trust_table()
    assert table, "validation/trust_table.csv is missing or empty"
    h100 = load_hardware("h100-sxm")
    before = api.chip_trust(h100, "decode", table)
    assert before.label == "validated"
    assert before.error_band is not None and before.error_band[0] <= 0 <= before.error_band[1]
    stripped = tuple(r for r in table if not (r.hw == "h100-sxm" and r.split == "holdout"))
    after = api.chip_trust(h100, "decode", stripped)
    assert after.label == "calibrated" and after.error_band is None
    only_other_chips = tuple(r for r in table if r.hw != "h100-sxm")
    assert api.chip_trust(h100, "decode", only_other_chips).label == "datasheet"


def test_every_bundled_chip_has_a_computed_label():
    for name in loader.bundled_names("hw_configs"):
        t = api.chip_trust(load_hardware(name), "decode")
        assert t.label in LABELS and t.label != "design", name


def test_run_json_carries_trust_and_band(cli):
    code, out, err = cli("run", "--model", "llama-3.2-1b", "--hw", "h100-sxm", "--context", "64", "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["trust"] == "validated"
    low, high = r["error_band"]
    assert low <= high


def test_an_edited_config_is_a_design(cli, tmp_path):
    doc = yaml.safe_load((loader.PACKAGE_ROOT.parent / "hw_configs" / "h100-sxm.yaml").read_text())
    doc["memory"]["hbm"]["bandwidth"] = "4 TB/s"
    path = tmp_path / "h100-faster.yaml"
    path.write_text(yaml.safe_dump(doc))
    code, out, err = cli("run", "--model", "llama-3.2-1b", "--hw", str(path), "--context", "64", "--json")
    assert code == 0, err
    assert json.loads(out)["trust"] == "design"
    code, out, err = cli("run", "--model", "llama-3.2-1b", "--hw", "h100-sxm", "--context", "64")
    assert "trust" in out and "validated" in out


def test_compare_and_study_tables_show_trust(cli, tmp_path):
    code, out, err = cli("compare", "--model", "llama-3.2-1b", "--hw", "h100-sxm", "--hw", "tpu-v5p",
                         "--context", "64", "--out", str(tmp_path / "cmp"), "--json")
    assert code == 0, err
    payload = json.loads(out)
    text = json.dumps(payload)
    assert "validated" in text and "datasheet" in text
    study = tmp_path / "s.yaml"
    study.write_text(yaml.safe_dump({"name": "t", "title": "t", "cases": [{"model": "llama-3.2-1b",
                                                             "hardware": ["h100-sxm", "tpu-v5p"]}],
                                     "workloads": [{"phase": "decode", "batch": 1, "context": 64}]}))
    code, out, err = cli("study", str(study), "--out", str(tmp_path / "study"))
    assert code == 0, err
    csv_text = (tmp_path / "study" / "study.csv").read_text()
    assert "trust" in csv_text.splitlines()[0] and "datasheet" in csv_text
    assert "trust (held-out error band)" in (tmp_path / "study" / "index.md").read_text()


def test_family_member_without_rows_is_judged_by_its_family():
    kin = [Row("chip-a", "tpot", "holdout", e, "measured", "fam") for e in (0.05, -0.02, 0.08)]
    t = trust_of("chip-b", "decode", kin, family="fam")
    assert t.label == "validated" and "fam family" in t.basis and "chip-a" in t.basis
    assert trust_of("chip-b", "decode", kin).label == "datasheet"
    assert trust_of("chip-b", "decode", kin, family="other").label == "datasheet"


def test_family_members_without_rows_follow_the_bundled_family_rows():
    """gb200 has no measurement of its own: its label comes from the blackwell family's rows
    (b200 calibration, b300 held out) and says so; a chip outside any family stays datasheet."""
    t = api.chip_trust(load_hardware("gb200"), "decode")
    assert "blackwell family" in t.basis and t.label in ("validated", "calibrated")
    assert api.chip_trust(load_hardware("tpu-v7"), "decode").label == "datasheet"
