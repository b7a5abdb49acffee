"""Hostile inputs found by fuzzing (issue 21): each ends, through the CLI, within seconds with
exit 2 and one line naming the file or option, the key and what is allowed, or, where the input
is legitimate, with finite results.  Never ``internal error``, a hang or NaN/inf in the output."""
import json
import math
from pathlib import Path

import pytest
import yaml

LLAMA_31_8B = {"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32,
               "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 14336,
               "vocab_size": 128256, "max_position_embeddings": 131072, "hidden_act": "silu"}
MAMBA = {"model_type": "mamba", "hidden_size": 2560, "num_hidden_layers": 64, "vocab_size": 50277,
         "pad_vocab_size_multiple": 8, "state_size": 16, "conv_kernel": 4, "expand": 2}
RECURRENT_GEMMA_2B = {"model_type": "recurrent_gemma", "hidden_size": 2560, "num_hidden_layers": 26,
                      "num_attention_heads": 10, "num_key_value_heads": 1, "head_dim": 256,
                      "intermediate_size": 15360, "vocab_size": 256000, "lru_width": 2560,
                      "conv1d_width": 4, "attention_window_size": 2048,
                      "block_types": ["recurrent", "recurrent", "attention"]}

REPO = Path(__file__).resolve().parent.parent


def _one_line_error(code: int, err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def _hw_doc(name: str = "h100-sxm") -> dict:
    return yaml.safe_load((REPO / "hw_configs" / f"{name}.yaml").read_text(encoding="utf-8"))


@pytest.fixture
def hf(tmp_path):
    def make(data, name="config.json"):
        path = tmp_path / name
        path.write_text(json.dumps(data, allow_nan=True), encoding="utf-8")
        return str(path)
    return make


# --- types before arithmetic ------------------------------------------------------------------

def test_hardware_kind_as_a_list(cli, tmp_path):
    doc = _hw_doc()
    doc["kind"] = [1]
    path = tmp_path / "hw.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    code, _, err = cli("run", "--hw", str(path))
    _one_line_error(code, err, str(path), "kind", "gpu")


@pytest.mark.parametrize("change, key", [
    ({"model_type": ["llama"]}, "model_type"),
    ({"hidden_size": "4096"}, "hidden_size"),
    ({"num_attention_heads": 0}, "num_attention_heads"),
    ({"vocab_size": 10 ** 400}, "vocab_size"),
    ({"vocab_size": float("inf")}, "vocab_size"),
    ({"num_hidden_layers": 10 ** 12}, "num_hidden_layers"),
    ({"num_hidden_layers": True}, "num_hidden_layers"),
    ({"hidden_act": ["silu"]}, "hidden_act"),
    ({"num_key_value_heads": 3.5}, "num_key_value_heads"),
])
def test_hf_llama_fields_are_typed_before_arithmetic(cli, hf, change, key):
    path = hf({**LLAMA_31_8B, **change})
    code, _, err = cli("models", "show", path)
    _one_line_error(code, err, path, key)


@pytest.mark.parametrize("change, key", [
    ({"pad_vocab_size_multiple": 0}, "pad_vocab_size_multiple"),
    ({"vocab_size": float("inf")}, "vocab_size"),
    ({"num_hidden_layers": 262_145, "expand": None}, "num_hidden_layers"),
])
def test_hf_mamba_fields(cli, hf, change, key):
    data = {k: v for k, v in {**MAMBA, **change}.items() if v is not None}
    path = hf(data)
    code, _, err = cli("models", "show", path)
    _one_line_error(code, err, path, key)


def test_hf_block_types_holding_a_mapping(cli, hf):
    path = hf({**RECURRENT_GEMMA_2B, "block_types": [{"a": 1}, "attention"]})
    code, _, err = cli("models", "show", path)
    _one_line_error(code, err, path, "block_types")


def test_yaml_model_vocab_overflow_and_huge_layers(cli, tmp_path):
    text = (REPO / "models" / "llama-3.1-8b.yaml").read_text(encoding="utf-8")
    doc = yaml.safe_load(text)
    for key, value in (("vocab_size", 10 ** 400), ("num_layers", 10 ** 12)):
        path = tmp_path / f"m-{key}.yaml"
        path.write_text(yaml.safe_dump({**doc, key: value}), encoding="utf-8")
        code, _, err = cli("models", "show", str(path))
        _one_line_error(code, err, str(path), key)


# --- decoding, depth, size --------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_non_utf8_config(cli, tmp_path, suffix):
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(b"name: \xff\xfe broken\n")
    code, _, err = cli("run", "--hw", str(path))
    _one_line_error(code, err, str(path), "UTF-8")


def test_non_utf8_trace(cli, tmp_path):
    path = tmp_path / "trace.csv"
    path.write_bytes(b"arrival_s,prompt_tokens,output_tokens\n0,\xff,3\n")
    code, _, err = cli("serve", "--trace", str(path), "--out", str(tmp_path / "o"))
    _one_line_error(code, err, str(path), "UTF-8")


@pytest.mark.parametrize("suffix, text", [
    (".yaml", "a: " + "[" * 5000 + "]" * 5000 + "\n"),
    (".json", "{\"a\": " + "[" * 5000 + "]" * 5000 + "}"),
    (".yaml", "a:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 400)) + "  " * 400 + "x: 1\n"),
])
def test_deep_nesting_is_refused_before_parsing(cli, tmp_path, suffix, text):
    path = tmp_path / f"deep{suffix}"
    path.write_text(text, encoding="utf-8")
    code, _, err = cli("run", "--hw", str(path))
    _one_line_error(code, err, str(path), "nest")


def test_huge_file_is_refused_before_reading(cli, tmp_path):
    path = tmp_path / "huge.yaml"
    with path.open("wb") as handle:
        handle.truncate(200 * 1024 * 1024)  # sparse: no disk or time spent
    code, _, err = cli("run", "--hw", str(path))
    _one_line_error(code, err, str(path), "MiB")


# --- design spaces ----------------------------------------------------------------------------

def _space(tmp_path, parameter: dict) -> str:
    doc = {"name": "s", "base": "tpu-v5e", "parameters": [parameter],
           "objectives": {"tokens_per_s": "max"}}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("parameter, needle", [
    ({"key": "compute.clock", "values": ["abc"]}, "values[0]"),
    ({"key": "compute.clock", "linear": {"start": "1 GHz", "stop": "2 GHz", "num": 7e12}}, "num"),
    ({"key": "compute.clock", "linear": {"start": "1 GHz", "stop": "2 GHz", "num": 100_000_000}}, "num"),
    ({"key": "compute.clock", "log": {"start": "1 GHz", "stop": "inf GHz", "num": 3}}, "stop"),
    ({"key": "compute.clock", "values": [[1, 2]]}, "values[0]"),
    ({"key": "systolic.rows", "values": [10 ** 400]}, "values[0]"),
])
def test_space_parameters(cli, tmp_path, parameter, needle):
    path = _space(tmp_path, parameter)
    code, _, err = cli("sweep", "--space", path, "--out", str(tmp_path / "o"), "--no-report")
    _one_line_error(code, err, path, needle)


# --- SCALE-Sim --------------------------------------------------------------------------------

def test_scalesim_cfg_percent(cli, tmp_path):
    cfg = tmp_path / "s.cfg"
    cfg.write_text("[architecture_presets]\nArrayHeight: 128 %\nArrayWidth: 128\nDataflow: os\n",
                   encoding="utf-8")
    topo = tmp_path / "t.csv"
    topo.write_text("Layer Name, M, N, K,\nl0, 8, 8, 8,\n", encoding="utf-8")
    code, _, err = cli("op", "--scalesim-cfg", str(cfg), "--topology", str(topo))
    _one_line_error(code, err, str(cfg), "ArrayHeight")


def test_scalesim_topology_huge_dimension(cli, tmp_path):
    cfg = tmp_path / "s.cfg"
    cfg.write_text("[architecture_presets]\nArrayHeight: 128\nArrayWidth: 128\nDataflow: os\n",
                   encoding="utf-8")
    topo = tmp_path / "t.csv"
    topo.write_text("Layer Name, M, N, K,\nl0, 8, 8, " + "9" * 500 + ",\n", encoding="utf-8")
    code, _, err = cli("op", "--scalesim-cfg", str(cfg), "--topology", str(topo))
    _one_line_error(code, err, str(topo), "K")


# --- traces and serving -----------------------------------------------------------------------

@pytest.mark.parametrize("arrival", ["nan", "inf", "-inf", "1e400"])
def test_trace_rows_with_non_finite_arrivals(cli, tmp_path, arrival):
    path = tmp_path / "trace.csv"
    path.write_text(f"arrival_s,prompt_tokens,output_tokens\n0,8,4\n{arrival},8,4\n", encoding="utf-8")
    code, _, err = cli("serve", "--trace", str(path), "--out", str(tmp_path / "o"))
    _one_line_error(code, err, str(path), "arrival_s")


@pytest.mark.parametrize("args, option", [
    (("--rate", "inf"), "--rate"),
    (("--rate", "nan"), "--rate"),
    (("--slo-ttft", "nan"), "--slo-ttft"),
    (("--slo-tpot", "inf"), "--slo-tpot"),
    (("--cv", "nan"), "--cv"),
    (("--requests", "100000000"), "--requests"),
    (("--prompt", "0"), "--prompt"),
    (("--max-batch", "0"), "--max-batch"),
    (("--rates", "1,inf"), "--rates"),
    (("--rates", "nan"), "--rates"),
])
def test_serve_options_are_finite_and_bounded(cli, tmp_path, args, option):
    code, _, err = cli("serve", *args, "--out", str(tmp_path / "o"))
    _one_line_error(code, err, option)


# --- results that would not be finite ---------------------------------------------------------

def test_tiny_efficiency_is_refused_not_inf(cli, tmp_path):
    doc = _hw_doc()
    doc["efficiency"] = {**doc.get("efficiency", {}), "memory": 1e-320}
    path = tmp_path / "hw.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    code, out, err = cli("run", "--hw", str(path), "--json")
    if code == 0:  # a legitimate (if odd) chip: then every number is finite
        data = json.loads(out)
        assert math.isfinite(data["latency_s"]) and math.isfinite(data["tokens_per_s"])
    else:
        _one_line_error(code, err, str(path), "efficiency")


# --- output safety ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../../x", "/abs/path", "a/b", "..", ".hidden", ""])
def test_compare_name_is_a_name(cli, tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("compare", "--hw", "h100-sxm", "--name", name)
    _one_line_error(code, err, "--name", "path separators")
    assert not any(tmp_path.iterdir()) and not (tmp_path.parent / "x").exists()


def test_unwritable_out_is_refused_in_one_line(cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    for args in (("compare", "--hw", "h100-sxm"), ("sweep", "--space", "systolic", "--no-report")):
        code, _, err = cli(*args, "--out", str(blocker / "sub"))
        _one_line_error(code, err, "--out", "cannot write")
    code, _, err = cli("compare", "--hw", "h100-sxm", "--out", "/proc/x")
    _one_line_error(code, err, "--out")


def test_existing_report_is_kept_unless_forced(cli, tmp_path):
    out = tmp_path / "cmp"
    assert cli("compare", "--hw", "h100-sxm", "--out", str(out))[0] == 0
    (out / "mine.txt").write_text("keep", encoding="utf-8")
    code, stdout, err = cli("compare", "--hw", "h100-sxm", "--out", str(out))
    assert code == 0 and len(err.strip().splitlines()) == 1 and "--force" in err
    assert (out / "mine.txt").read_text(encoding="utf-8") == "keep"
    assert (tmp_path / "cmp-2" / "report.html").is_file() and str(tmp_path / "cmp-2") in stdout
    code, _, err = cli("compare", "--hw", "h100-sxm", "--out", str(out), "--force")
    assert code == 0 and not (out / "mine.txt").exists() and (out / "report.html").is_file()
    # No temporary folders are left beside the reports.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cmp", "cmp-2"]


def test_study_case_slug_is_one_folder(tmp_path):
    from accelsim.config.study import StudyCase, StudyCell
    from accelsim.workload import Workload
    cell = StudyCell(StudyCase(model="../../models/x.yaml", hardware=["h100-sxm"]), (), Workload(), [], [])
    assert "/" not in cell.slug and not cell.slug.startswith(".")


# --- concurrency ------------------------------------------------------------------------------

def test_second_sweep_on_one_folder_is_refused(cli, tmp_path):
    from accelsim.dse import runner
    out = tmp_path / "dse"
    with runner.locked_folder(out):
        code, _, err = cli("sweep", "--space", "systolic", "--out", str(out), "--no-report")
        _one_line_error(code, err, "--out", "another sweep", str(out))
    assert not (out / "results.csv").exists()


def test_pool_workers_die_with_their_parent(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    # A parent that starts a worker with the pool's initializer, prints its pid, then is killed.
    script = (
        "import os, sys, time, multiprocessing as mp\n"
        "from accelsim.dse import runner\n"
        "def work(parent):\n"
        "    runner.die_with_parent(parent)\n"
        "    time.sleep(60)\n"
        "p = mp.get_context('fork').Process(target=work, args=(os.getpid(),))\n"
        "p.start(); print(p.pid, flush=True); time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    child = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    for _ in range(100):  # the worker must be gone within seconds, not minutes
        try:
            state = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            break
        if state in ("Z", "X"):  # dead, waiting for a reaper that may not be init
            break
        time.sleep(0.05)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the worker outlived its parent")


# --- more hostile files -----------------------------------------------------------------------

def test_a_device_file_is_not_read_forever(cli, tmp_path):
    code, _, err = cli("serve", "--trace", "/dev/zero", "--out", str(tmp_path / "o"))
    _one_line_error(code, err, "/dev/zero", "not a regular file")


@pytest.mark.parametrize("expr", ["2 ** 100000", "1 / 0", "sqrt(0 - 1)", "compute.clock ** 40"])
def test_derived_expressions_that_cannot_be_evaluated(cli, tmp_path, expr):
    doc = {"name": "s", "base": "tpu-v5e", "objectives": {"tokens_per_s": "max"},
           "parameters": [{"key": "systolic.rows", "values": [128]}],
           "derived": {"compute.matrix.bf16": expr}}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    code, _, err = cli("sweep", "--space", str(path), "--out", str(tmp_path / "o"), "--no-report")
    if code == 0:  # recorded as an invalid point, said in one line
        assert "not valid" in err
    else:
        _one_line_error(code, err, "derived.compute.matrix.bf16")


def test_positive_quantities_have_a_floor(cli, tmp_path):
    doc = _hw_doc()
    doc["compute"]["clock"] = "1e-40 GHz"
    path = tmp_path / "hw.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    code, _, err = cli("run", "--hw", str(path))
    _one_line_error(code, err, "compute.clock", "at least 1e-24")


def test_a_name_too_long_for_the_file_system_is_one_line(cli, tmp_path):
    """Found by the long fuzz profile: a space's ``base:`` (or any --hw/--model) of thousands of
    characters made the path check itself raise (ENAMETOOLONG)."""
    code, _, err = cli("run", "--hw", "x" * 5000)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "not a usable hardware config name or path" in err and len(err) < 400
    space = tmp_path / "s.yaml"
    space.write_text("name: s\nbase: " + "y" * 5000 + "\nparameters:\n  - key: compute.clock\n"
                     "    values: [1 GHz]\nobjectives: {tokens_per_s: max}\n", encoding="utf-8")
    code, _, err = cli("sweep", "--space", str(space), "--out", str(tmp_path / "out"))
    assert code == 2 and "not a usable hardware config name or path" in err


def test_a_sweep_report_lands_whole_and_leaves_no_staging_folder(cli, tmp_path):
    """A sweep's folder also holds its results, so its report files are renamed in one by one
    from a staging folder inside it; nothing of the staging folder is left behind."""
    out = tmp_path / "sweep"
    code, _, err = cli("sweep", "--space", "hardwired", "--out", str(out), "--search", "random",
                       "--samples", "6")
    assert code == 0, err
    assert (out / "report.html").is_file() and (out / "pareto.csv").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".report.tmp-")]
    code, _, err = cli("report", str(out))
    assert code == 0, err
    assert not [p for p in out.iterdir() if p.name.startswith(".report.tmp-")]


def test_serve_of_a_model_too_big_names_serve_options_not_its_probe(cli):
    """``serve`` probes one request of one token; a model whose weights do not fit is refused in
    serve's terms (was: "decode batch=1 context=0 ... a smaller --batch/--context")."""
    code, _, err = cli("serve", "--model", "llama-3.1-70b", "--hw", "h100-sxm")
    _one_line_error(code, err, "llama-3.1-70b cannot be served on h100-sxm: one request needs",
                    "--tp/--pp")
    assert "context=0" not in err and "--batch" not in err
