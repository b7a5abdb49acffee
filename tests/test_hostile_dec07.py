"""Hostile inputs on the keys merged on 2026-12-07 (``--disagg`` pool key ``batchN``, the
eager-prefill preset fields, ``gpu.host_wait_share``, validation ``engine_settings``): each is
typed as a user would, through the CLI in-process, and must end with exit 2 and one line naming
the option or file and the key -- never ``internal error``, a coerced value or a setting that
silently applies nowhere.  Each test failed before its fix."""
import shutil
from pathlib import Path

import pytest
import yaml
from fuzz_inputs import assert_one_line_error

REPO = Path(__file__).resolve().parent.parent
SERVE = ["serve", "--requests", "4", "--rate", "4", "--prompt", "64", "--output", "4", "--json"]




def _serve(cli, tmp_path, *args: str):
    return cli(*SERVE, "--out", str(tmp_path / "out"), *args)


# --- --disagg: counts in ASCII digits only ------------------------------------------------------

@pytest.mark.parametrize("spec, needle", [
    # '²'.isdigit() is true but int('²') raises: was "internal error: ValueError".
    ("prefill=h100-sxm:²,decode=h100-sxm:4", "chips must be an integer"),
    # \d took other scripts' digits: 'batch٣' ran as batch3.
    ("prefill=h100-sxm:2,decode=h100-sxm:4:batch٣", "batchN"),
    ("prefill=h100-sxm:2,decode=h100-sxm:4:tp²", "tpN"),
])
def test_disagg_counts_other_than_ascii_digits(cli, tmp_path, spec, needle):
    code, _, err = _serve(cli, tmp_path, "--disagg", spec)
    assert_one_line_error(code, err, "--disagg", needle)


def test_disagg_with_single_system_options_names_the_whole_pool_form(cli, tmp_path):
    # The message gave HW:N[:tpX][:epY][:dpZ], leaving out the pp and batch keys a pool takes.
    code, _, err = _serve(cli, tmp_path, "--hw", "h100-sxm", "--disagg",
                          "prefill=h100-sxm:1,decode=h100-sxm:1:batch8")
    assert_one_line_error(code, err, "--disagg", ":ppW", ":batchB", "--hw")


# --- runtime presets: switches are booleans, host seconds are numbers ----------------------------

def _preset(tmp_path, key: str, value) -> str:
    doc = yaml.safe_load((REPO / "runtimes" / "sglang.yaml").read_text(encoding="utf-8"))
    doc[key]["value"] = value
    path = tmp_path / "preset.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("key, value", [
    ("prefill_graphs", 1),          # was read as true
    ("prefill_graphs", "false"),    # a quoted string: was read as false
    ("prefill_graphs", "maybe"),
    ("eager_kernel_host", True),    # was read as 1 second per kernel
    ("eager_kernel_host", "6.5e-5"),  # a quoted string: was read as a number
    ("eager_kernel_host", -1),
    ("eager_kernel_host", float("nan")),
])
def test_runtime_preset_eager_fields_refuse_coercion(cli, tmp_path, key, value):
    path = _preset(tmp_path, key, value)
    code, _, err = _serve(cli, tmp_path, "--runtime", path)
    assert_one_line_error(code, err, path, f"{key}.value")


def test_runtime_preset_eager_kernel_host_without_prefill_graphs(cli, tmp_path):
    # It applied nowhere (every step then replays graphs), silently.
    doc = yaml.safe_load((REPO / "runtimes" / "sglang.yaml").read_text(encoding="utf-8"))
    del doc["prefill_graphs"]
    path = tmp_path / "preset.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    code, _, err = _serve(cli, tmp_path, "--runtime", str(path))
    assert_one_line_error(code, err, str(path), "eager_kernel_host", "prefill_graphs")


def test_runtime_preset_eager_fields_take_plain_values(cli, tmp_path):
    # An int where seconds go stays valid (YAML writes 0, not 0.0); so does an explicit false.
    code, out, err = _serve(cli, tmp_path, "--runtime", _preset(tmp_path, "eager_kernel_host", 0))
    assert code == 0, err
    assert "nan" not in out.lower() and "infinity" not in out.lower()


def test_runtime_preset_kernels_host_wait_share_is_a_number(cli, tmp_path):
    doc = yaml.safe_load((REPO / "runtimes" / "vllm-0.5.4.yaml").read_text(encoding="utf-8"))
    doc["kernels"]["value"]["host_wait_share"] = True  # was read as 1.0
    path = tmp_path / "preset.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    code, _, err = _serve(cli, tmp_path, "--runtime", str(path))
    assert_one_line_error(code, err, str(path), "host_wait_share")


# --- hardware configs: gpu.host_wait_share --------------------------------------------------------

@pytest.mark.parametrize("value", [True, "0.5", 2, -0.1, float("nan")])
def test_hardware_host_wait_share_is_a_share(cli, tmp_path, value):
    doc = yaml.safe_load((REPO / "hw_configs" / "h100-sxm.yaml").read_text(encoding="utf-8"))
    doc["gpu"]["host_wait_share"] = value
    path = tmp_path / "hw.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    code, _, err = cli("run", "--hw", str(path), "--json")
    assert_one_line_error(code, err, str(path), "gpu.host_wait_share")


@pytest.mark.parametrize("value, needle", [(-1, "unit"), ("-1 ms", ">= 0"), (".inf", "time"), ("1e400 s", "finite")])
def test_hardware_sequence_overhead_is_a_time(cli, tmp_path, value, needle):
    doc = yaml.safe_load((REPO / "hw_configs" / "h100-sxm.yaml").read_text(encoding="utf-8"))
    doc["gpu"]["sequence_overhead"] = value
    path = tmp_path / "hw.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    code, _, err = cli("run", "--hw", str(path), "--json")
    assert_one_line_error(code, err, str(path), "gpu.sequence_overhead", needle)


# --- validation/serving.yaml engine_settings --------------------------------------------------------

def _serving_file(tmp_path, change) -> Path:
    from accelsim.validate.serving import DEFAULT_FILE
    document = yaml.safe_load(DEFAULT_FILE.read_text(encoding="utf-8"))
    change(document["sources"]["inferencex"])
    for name in ("measured_2025.csv", "measured_trtllm_v1.0.csv"):
        (tmp_path / name).write_text((DEFAULT_FILE.parent / name).read_text(encoding="utf-8"), encoding="utf-8")
    shutil.copytree(DEFAULT_FILE.parent / "mlperf_lengths", tmp_path / "mlperf_lengths")
    path = tmp_path / "serving.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


# Checked through load_points, where the CLI's validate --serving reads the file: a file that loads
# would go on to replay every run (minutes), so a regression must fail here, not run on.

def test_engine_setting_switch_given_as_a_quoted_word(tmp_path):
    from accelsim.errors import ConfigError
    from accelsim.validate.serving import load_points

    def change(src):
        src["engine_settings"][0]["settings"] = {"prefill_graphs": "yes"}  # was read as true
    path = _serving_file(tmp_path, change)
    with pytest.raises(ConfigError, match="prefill_graphs") as err:
        load_points(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("part", ["engine_settings", "exclude"])
def test_engine_setting_or_exclusion_on_a_column_the_table_lacks(tmp_path, part):
    from accelsim.errors import ConfigError
    from accelsim.validate.serving import load_points

    def change(src):
        if part == "engine_settings":
            src["engine_settings"][0]["where"] = {"hardwre": "B200"}  # misspelt: applied to no run
        else:
            src["exclude"].append({"column": "framwork", "value": "SGLang", "reason": "a misspelt column"})
    path = _serving_file(tmp_path, change)
    with pytest.raises(ConfigError, match="hardwre" if part == "engine_settings" else "framwork") as err:
        load_points(path)
    assert "measured_2025.csv" in str(err.value) and "columns: " in str(err.value)


def test_engine_setting_matching_on_an_empty_text(tmp_path):
    from accelsim.errors import ConfigError
    from accelsim.validate.serving import load_points

    def change(src):
        src["engine_settings"][0]["where"] = {"hardware": ""}  # every cell contains '': all runs
    path = _serving_file(tmp_path, change)
    with pytest.raises(ConfigError, match="where.hardware") as err:
        load_points(path)
    assert str(path) in str(err.value)
