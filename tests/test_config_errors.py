"""Every bundled config loads; every kind of bad config gives one clear line and exit 2."""
from pathlib import Path

import pydantic
import pytest
import yaml

from accelsim import hardware
from accelsim.config import loader
from accelsim.model.spec import load_model

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", sorted(loader.bundled_names("hw_configs")))
def test_every_bundled_hardware_config_loads(name):
    chip = hardware.load_hardware(name)
    assert chip.name == name
    assert chip.kind in hardware.KINDS


@pytest.mark.parametrize("name", sorted(loader.bundled_names("models")))
def test_every_bundled_model_loads(name):
    assert load_model(name).name == name


def _h100() -> dict:
    return yaml.safe_load((REPO / "hw_configs" / "h100-sxm.yaml").read_text())


def _bad(mutate) -> str:
    data = _h100()
    mutate(data)
    return yaml.safe_dump(data)


BAD_HW = {
    "unknown key": (lambda d: d["memory"]["hbm"].update(bandwith="3 TB/s"),
                    "memory.hbm.bandwith", "unknown key"),
    "wrong unit": (lambda d: d["memory"]["hbm"].update(bandwidth="3.35 TB"),
                   "memory.hbm.bandwidth", "not a bandwidth unit"),
    "missing unit": (lambda d: d["memory"]["hbm"].update(capacity=80),
                     "memory.hbm.capacity", "missing unit"),
    "negative": (lambda d: d["compute"].update(clock="-1 GHz"), "compute.clock", "must be > 0"),
    "impossible fraction": (lambda d: d["efficiency"].update(memory=1.5), "efficiency.memory",
                            "fraction"),
    "missing field": (lambda d: d["gpu"].pop("sms"), "gpu.sms", "required key is missing"),
    "missing source": (lambda d: d["memory"]["l2"].pop("source"), "memory.l2.source", "required"),
    "wrong type": (lambda d: d["gpu"].update(sms="many"), "gpu.sms", "integer"),
    "unknown kind": (lambda d: d.update(kind="fpga"), "kind", "allowed: gpu, systolic"),
    "unknown dtype": (lambda d: d["compute"]["matrix"].update(fp6="1 TFLOPS"),
                      "compute.matrix.fp6", "bf16"),
    "static above tdp": (lambda d: d["power"].update(static="900 W"), "power", "cannot exceed TDP"),
}


@pytest.mark.parametrize("case", sorted(BAD_HW))
def test_bad_hardware_config_is_one_line_naming_file_and_key(case, cli, write):
    mutate, key, fragment = BAD_HW[case]
    path = write("bad.yaml", _bad(mutate))
    code, out, err = cli("run", "--hw", str(path))
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert str(path) in lines[0] and key in lines[0] and fragment in lines[0], lines[0]
    assert "Traceback" not in err


def test_duplicate_yaml_key_is_refused(cli, write):
    text = (REPO / "hw_configs" / "h100-sxm.yaml").read_text().replace(
        "kind: gpu\n", "kind: gpu\nkind: gpu\n")
    code, _, err = cli("run", "--hw", str(write("dup.yaml", text)))
    assert code == 2 and "duplicate key 'kind'" in err and len(err.strip().splitlines()) == 1


def test_unsafe_yaml_tags_are_refused(cli, write):
    path = write("evil.yaml", "name: !!python/object/apply:os.system ['echo hi']\n")
    code, _, err = cli("run", "--hw", str(path))
    assert code == 2 and "invalid YAML" in err


def test_unknown_config_name_suggests_close_names(cli):
    code, _, err = cli("run", "--hw", "h100-sx")
    assert code == 2
    assert "unknown hardware config 'h100-sx'" in err and "did you mean 'h100-sxm'" in err
    code, _, err = cli("run", "--model", "lama-3.1-8b")
    assert code == 2 and "did you mean 'llama-3.1-8b'" in err


def test_missing_file_is_one_line(cli, tmp_path):
    code, _, err = cli("run", "--model", str(tmp_path / "nope.yaml"))
    assert code == 2 and "no such model file" in err


def test_bad_model_values(cli, write):
    text = (REPO / "models" / "llama-3.1-8b.yaml").read_text().replace(
        "num_kv_heads: 8", "num_kv_heads: 5")
    code, _, err = cli("run", "--model", str(write("m.yaml", text)))
    assert code == 2 and "attention" in err and "multiple of num_kv_heads" in err


def test_bad_cli_option_value_exits_2(cli):
    code, _, err = cli("run", "--phase", "training")
    assert code == 2 and "training" in err
    code, _, err = cli("run", "--batch", "0")
    assert code == 2


def test_specs_are_immutable():
    chip = hardware.load_hardware("h100-sxm")
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        chip.gpu.sms = 1  # type: ignore[misc]


def test_stated_peak_must_match_the_array_shape(cli, write):
    text = (REPO / "hw_configs" / "tpu-v5e.yaml").read_text().replace("arrays: 4", "arrays: 2")
    code, _, err = cli("run", "--hw", str(write("tpu.yaml", text)))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "compute.matrix.bf16 (197 TFLOPS) disagrees with 2 x arrays x rows x cols" in err
