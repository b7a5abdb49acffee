"""Hostile-input and every-config review of 2026-12-08: each case below failed before its fix,
driven through ``accelsim.cli.main`` in-process as a user would type it."""
import json
from pathlib import Path

import pytest
from fuzz_inputs import assert_one_line_error

REPO = Path(__file__).resolve().parent.parent




# --- dataflow systems choose a split the model allows ------------------------------------------

@pytest.mark.parametrize("model, hw, extra", [
    # 4 query heads (1 KV head) cannot be split 8 ways (a GroqNode) nor 16 (an SN40L node)
    ("gemma-3-1b", "groq-lpu", ()),
    ("gemma-3-1b", "sn40l", ()),
    ("recurrentgemma-2b", "groq-lpu", ()),
    ("bitnet-b1.58-2b4t", "sn40l", ("--phase", "prefill", "--prompt", "256")),
    # Mamba-2's chunked prefill has activation-by-activation matmuls tensor parallelism cannot cut
    ("mamba2-2.7b", "groq-lpu", ("--phase", "prefill", "--prompt", "256")),
    # a lone --chips gives the system's size; its split is the system's choice
    ("gemma-3-1b", "groq-lpu", ("--chips", "16")),
])
def test_dataflow_default_split_fits_the_model(cli, model, hw, extra):
    """Refused before with 'the 8 ranks that split heads must divide the attention heads (4)'
    although the chips hold the model: the default layout now falls back to a smaller
    tensor-parallel split (whole-layer pipeline stages at worst)."""
    code, out, err = cli("run", "--model", model, "--hw", hw, *extra, "--json")
    assert code == 0, err
    row = json.loads(out)
    tp = int(row["layout"].split("tp=")[1].split()[0]) if "tp=" in row["layout"] else 1
    assert row["chips"] % tp == 0 and row["latency_s"] > 0, row["layout"]


def test_dataflow_explicit_split_still_refused_in_one_line(cli):
    """--tp with --pp is the user's own split: not silently changed."""
    code, _, err = cli("run", "--model", "gemma-3-1b", "--hw", "groq-lpu", "--tp", "8", "--pp", "2")
    assert_one_line_error(code, err, "8 ranks", "attention heads (4)")


# --- request traces: ragged rows and a byte-order mark -----------------------------------------

HEADER = "arrival_s,prompt_tokens,output_tokens\n"


@pytest.mark.parametrize("rows, needles", [
    # a fourth field was dropped silently (csv.DictReader's restkey)
    ("0,10,10\n1,10,10,5\n", ("line 3", "4 fields", "header names 3", "arrival_s, prompt_tokens, output_tokens")),
    # a short row left output_tokens None, refused only as "must be integers"
    ("0,10\n", ("line 2", "2 fields", "header names 3")),
])
def test_trace_rows_must_match_the_header(cli, tmp_path, rows, needles):
    trace = tmp_path / "t.csv"
    trace.write_text(HEADER + rows, encoding="utf-8")
    code, _, err = cli("serve", "--model", "llama-3.2-1b", "--trace", str(trace), "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, str(trace), *needles)


def test_trace_saved_with_a_byte_order_mark_reads(cli, tmp_path):
    """Excel's 'CSV UTF-8' starts with a BOM; it was read as part of the first column's name and
    the trace refused as lacking arrival_s."""
    trace = tmp_path / "t.csv"
    trace.write_bytes(b"\xef\xbb\xbf" + (HEADER + "0,64,4\n0.5,64,4\n").encode())
    code, out, err = cli("serve", "--model", "llama-3.2-1b", "--trace", str(trace), "--rates", "1",
                         "--json", "--out", str(tmp_path / "o"))
    assert code == 0, err
    assert json.loads(out)["summary"]["rate"] == pytest.approx(2.0)


# --- serve: a load option the load does not read is refused, not ignored -----------------------

@pytest.mark.parametrize("args, needles", [
    (("--rates", "1,,2"), ("--rates", "'1,,2'")),  # the empty item was dropped
    (("--offline", "--rate", "3"), ("--rate is not read", "--offline")),
    (("--concurrency", "4", "--rate", "3"), ("--rate is not read", "--concurrency")),
    (("--concurrency", "4", "--arrival", "gamma"), ("--arrival is not read",)),
    (("--cv", "3"), ("--cv is not read", "--arrival gamma")),
])
def test_serve_load_options_not_read_are_refused(cli, tmp_path, args, needles):
    code, _, err = cli("serve", "--model", "llama-3.2-1b", "--requests", "4", *args, "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, *needles)


def test_serve_trace_lengths_come_from_the_trace(cli, tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text(HEADER + "0,64,4\n", encoding="utf-8")
    code, _, err = cli("serve", "--model", "llama-3.2-1b", "--trace", str(trace), "--prompt", "100",
                       "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, "--prompt is not read", "--trace")


# --- sweep: conditions, the breakeven reference and the pick -----------------------------------

def _sweep(cli, tmp_path, *args):
    return cli("sweep", "--space", "hardwired", "--search", "random", "--samples", "2",
               "--no-report", "--out", str(tmp_path / "dse"), *args)


@pytest.mark.parametrize("option, text", [
    ("--constraint", "power_w<=-1e400"),  # read as -inf: internal error (pydantic finite_number)
    ("--target", "tokens_per_s>=1.2.3"),  # passed the pattern, then float() raised: internal error
])
def test_sweep_condition_numbers_must_be_finite(cli, tmp_path, option, text):
    code, _, err = _sweep(cli, tmp_path, option, text)
    assert_one_line_error(code, err, option, text, "finite")


def test_sweep_contradictory_conditions_are_refused(cli, tmp_path):
    """The space's own power_w<=250 and a target above it: every design was evaluated and the
    sweep ended with 'no design meets every target and constraint'."""
    code, _, err = _sweep(cli, tmp_path, "--target", "power_w>=300")
    assert_one_line_error(code, err, "power_w>=300", "power_w<=250", "contradict")


def test_sweep_refusal_stays_one_line_when_the_reference_cannot_run(cli, tmp_path):
    """mixtral-8x7b neither fits one H100 (the breakeven reference) nor runs on the hardwired
    Llama chip: a 'note: no breakeven_mtokens' line came before the error."""
    code, _, err = _sweep(cli, tmp_path, "--model", "mixtral-8x7b")
    assert_one_line_error(code, err, "fixed in silicon", "mixtral-8x7b")


def test_sweep_pick_skips_a_breakeven_that_never_comes(cli, tmp_path):
    """Against another custom chip no design ever breaks even (every breakeven_mtokens NaN): the
    report's pick ended in 'internal error: ValueError: Encountered all NA values'."""
    code, out, err = cli("sweep", "--space", "hardwired", "--search", "random", "--samples", "2",
                         "--breakeven-vs", "hardwired-llama-3.1-8b", "--pick", "breakeven_mtokens",
                         "--out", str(tmp_path / "dse"), "--json")
    assert code == 0, err
    assert json.loads(out)["chosen"]["breakeven_mtokens"] is None


def test_pick_never_prefers_a_nan():
    """np.argmin returns the first NaN: a design that never breaks even was 'min breakeven'."""
    import numpy as np

    from accelsim.dse.reading import best
    values = np.array([np.nan, 3.0, 1.0, np.nan])
    assert best(values, "min") == 2 and best(values, "max") == 1
    assert best(np.array([np.nan, np.nan]), "min") == 0


# --- calibrate: a --hw with nothing to fit -----------------------------------------------------

@pytest.mark.parametrize("hw, needles", [
    ("nope", ("--hw nope", "no calibration points", "allowed: a100-sxm")),
    ("b200", ("--hw b200", "--family blackwell")),  # a family member is fitted with its family
])
def test_calibrate_hw_without_points_is_refused(cli, hw, needles):
    """Printed nothing and exited 0."""
    code, out, err = cli("calibrate", "--hw", hw)
    assert_one_line_error(code, err, *needles)
    assert out == ""


# --- study: a size the workload's phase does not read ------------------------------------------

@pytest.mark.parametrize("workload, unread", [
    ("{phase: decode, batch: 1, context: 512, prompt: 4096}", "prompt"),
    ("{phase: prefill, batch: 1, prompt: 512, context: 4096}", "context"),
])
def test_study_workload_size_the_phase_does_not_read(cli, tmp_path, workload, unread):
    """Ran as if the size were not there (the CLI refuses `run --phase decode --prompt N`)."""
    study = tmp_path / "s.yaml"
    study.write_text("name: s\ntitle: t\ncases:\n  - {model: llama-3.2-1b, hardware: [h100-sxm]}\n"
                     f"workloads:\n  - {workload}\n", encoding="utf-8")
    code, _, err = cli("study", str(study), "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, str(study), "workloads[0]", f"{unread} is not read")


def test_dataflow_system_beyond_the_chip_bound_is_refused(cli):
    """--batch 1048576 on groq-lpu needs ~306,000 chips: the layout of ~38,000 pipeline stages
    ran for more than five minutes; --chips itself is bounded at 65,536."""
    code, _, err = cli("run", "--model", "llama-3.2-1b", "--hw", "groq-lpu", "--batch", "1048576")
    assert_one_line_error(code, err, "306,114 groq-lpu chips", "65,536")


@pytest.mark.parametrize("hw", ["tpu-v5p", "tpu-v6e"])
def test_multi_chip_tpus_take_a_tensor_parallel_layout(cli, hw):
    """'tpu-v5p has no interconnect section, so it cannot run on more than one chip': both are
    sold as ICI-joined pods (Google Cloud docs, refdata hardware.csv); a 70B model over 8 chips
    now runs with its all-reduces over ICI."""
    code, out, err = cli("run", "--model", "llama-3.1-70b", "--hw", hw, "--tp", "8", "--json", "--top", "0")
    assert code == 0, err
    row = json.loads(out)
    assert row["chips"] == 8 and row["latency_s"] > 0
    reduces = [op for op in row["ops"] if op["name"] == "layers.0.mlp.down.all_reduce"]
    assert reduces and reduces[0]["kind"] == "collective" and reduces[0]["time_s"] > 0


# --- Hugging Face config.json ------------------------------------------------------------------

def test_hf_width_the_heads_do_not_divide(cli, tmp_path):
    """hidden_size 4097 over 32 heads and no head_dim: head_dim was floored to 128 and the model
    ran with 4096 of its 4097 columns split into heads (Transformers refuses it)."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "llama", "hidden_size": 4097, "num_hidden_layers": 2,
                                "num_attention_heads": 32, "num_key_value_heads": 8,
                                "intermediate_size": 1024, "vocab_size": 1000}), encoding="utf-8")
    code, _, err = cli("models", "show", str(path))
    assert_one_line_error(code, err, str(path), "hidden_size", "4097", "num_attention_heads (32)", "head_dim")
    # an explicit head_dim is the config's own choice (Gemma's 256 over a 3072 width)
    path.write_text(json.dumps({"model_type": "llama", "hidden_size": 4097, "num_hidden_layers": 2,
                                "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
                                "intermediate_size": 1024, "vocab_size": 1000}), encoding="utf-8")
    code, _, err = cli("models", "show", str(path))
    assert code == 0, err


# --- counts and fractions in YAML: no silent conversion ----------------------------------------

@pytest.mark.parametrize("old, new, key", [
    ("  sms: 132", "  sms: true", "gpu.sms"),     # ran as a 1-SM H100
    ("  sms: 132", "  sms: '132'", "gpu.sms"),    # the quoted count was converted
    ("  compute: 0.", "  compute: true #", "efficiency.compute"),  # a derate of 1.0
])
def test_yaml_counts_and_fractions_are_plain_numbers(cli, tmp_path, old, new, key):
    text = (REPO / "hw_configs" / "h100-sxm.yaml").read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "hw.yaml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    code, _, err = cli("run", "--hw", str(path), "--model", "llama-3.2-1b")
    assert_one_line_error(code, err, str(path), key, "plain")


# --- serve on every kind: the system's own layout, a draft on a dataflow system, vLLM's pool ---

def _serve(cli, tmp_path, *args):
    return cli("serve", *args, "--requests", "2", "--prompt", "128", "--output", "2", "--rates", "1",
               "--json", "--out", str(tmp_path / "o"))


def test_serve_on_a_dataflow_system_keeps_the_layout_it_chose(cli, tmp_path):
    """gpt-oss-120b on groq-lpu: `run` lays it out as tp=8 x pp=128, but serve re-ran every step
    as pp=1024 stages of one chip, where a 128-token prefill's op does not fit one chip's SRAM."""
    code, out, err = _serve(cli, tmp_path, "--model", "gpt-oss-120b", "--hw", "groq-lpu")
    assert code == 0, err
    assert json.loads(out)["summary"]["throughput_tokens_per_s"] > 0


def test_serve_speculative_draft_on_a_dataflow_system(cli, tmp_path):
    """The draft was costed on one stage of the target's layout (tp=1, one chip): 'needs at least
    14 groq-lpu chips, not 1'.  It now sizes its own system, as `run --spec-decode` does."""
    code, out, err = _serve(cli, tmp_path, "--model", "llama-3.2-1b", "--hw", "groq-lpu", "--spec-decode",
                            "llama-3.2-1b", "--spec-k", "2", "--spec-accept", "0.5")
    assert code == 0, err
    assert json.loads(out)["summary"]["throughput_tokens_per_s"] > 0


def test_serve_hardwired_under_a_runtime_that_sizes_its_pool_from_total_memory(cli, tmp_path):
    """vLLM sizes its KV pool as a share of all memory less the weights; on a hardwired chip the
    weights are in silicon, yet their bytes were taken from the SRAM: 'llama-3.1-8b weights take
    more than 0.9 of hardwired-llama-3.1-8b's memory'."""
    code, out, err = _serve(cli, tmp_path, "--model", "llama-3.1-8b", "--hw", "hardwired-llama-3.1-8b",
                            "--runtime", "vllm")
    assert code == 0, err
    assert json.loads(out)["summary"]["throughput_tokens_per_s"] > 0


def test_scalesim_topology_empty_cell_is_not_skipped(cli, tmp_path):
    """'q, 4,, 4, 4,': every empty cell was dropped, so K's 4 moved into N and the next 4 into K,
    and the layer ran as 4x4x4 without a word.  Only the trailing comma's empty cell goes."""
    topo = tmp_path / "topo.csv"
    topo.write_text("Layer, M, N, K,\nq, 4,, 4, 4,\n", encoding="utf-8")
    code, _, err = cli("op", "--scalesim-cfg", str(REPO / "examples" / "scalesim" / "scale.cfg"),
                       "--topology", str(topo))
    assert_one_line_error(code, err, str(topo), "line 2 N", "positive integer")


# --- empty names -------------------------------------------------------------------------------

@pytest.mark.parametrize("args, needles", [
    (("run", "--runtime", ""), ("empty runtime preset name", "vllm")),    # ran with the default preset
    (("run", "--hw", ""), ("empty hardware config name", "h100-sxm")),   # 'no such hardware config file', unnamed
    (("calibrate", "--family", ""), ("no chip family ''", "blackwell")),  # fitted every chip (minutes)
])
def test_empty_names_are_refused(cli, args, needles):
    code, _, err = cli(*args)
    assert_one_line_error(code, err, *needles)


def test_op_too_big_names_ops_own_options(cli):
    """The refusal advised '--tp/--pp ... a smaller --batch/--context', options `op` lacks."""
    code, _, err = cli("op", "--hw", "h100-sxm", "matmul", "--m", "1", "--k", "1", "--n", "1",
                       "--count", "1099511627776")
    assert_one_line_error(code, err, "matmul does not fit on h100-sxm", "--m/--k/--n/--count", "--dtype")
    assert "--tp" not in err and "--batch" not in err
