"""Issue 22: reports and CLI a person would rather use.  Each test names the defect it guards."""
import csv
import json
from pathlib import Path

import pytest


def _rows(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# --- every table, CSV and --json names the formats, chips and layout of each row -----------

def test_run_json_names_formats_and_layout(cli):
    code, out, err = cli("run", "--hw", "hardwired-llama-3.1-8b", "--json")
    assert code == 0, err
    data = json.loads(out)
    # The hardwired chip's silicon holds int4 weights whatever the model file says.
    assert data["dtypes"] == {"weight": "int4", "activation": "bf16", "kv": "bf16"}
    assert data["chips"] == 1 and data["layout"] == "1 chip"


def test_run_json_of_a_dataflow_system_says_how_many_chips(cli):
    code, out, err = cli("run", "--hw", "groq-lpu", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["chips"] > 1
    assert _layout_accounts_for_every_chip(data["layout"], data["chips"])


def _layout_accounts_for_every_chip(layout: str, chips: int | str) -> bool:
    """'16 chips: tp=8 pp=2' names all 16 chips: tp x pp x dp of the parts is the count."""
    head, _, parts = layout.partition(": ")
    sizes = dict(part.split(" as ")[0].split("=") for part in parts.split() if "=" in part)
    product = 1
    for key in ("tp", "pp", "dp"):
        product *= int(sizes.get(key, 1))
    return head == f"{chips} chips" and product == int(chips)


def test_run_text_names_formats_and_only_the_phase_sizes(cli):
    code, out, _ = cli("run", "--model", "mamba-2.8b", "--hw", "h100-sxm")
    assert code == 0
    assert "formats: w bf16 / a bf16 / state fp32" in out  # no KV cache in a Mamba model
    assert "decode batch=1 context=2048" in out.splitlines()[0]
    assert "prompt" not in out.splitlines()[0]


def test_compare_of_unlike_precisions_says_so(cli, tmp_path):
    code, out, err = cli("compare", "--hw", "h100-sxm", "--hw", "hardwired-llama-3.1-8b",
                         "--out", str(tmp_path), "--force")
    assert code == 0, err
    assert "not like for like (unlike precisions: weights bf16 on h100-sxm, int4 on " \
           "hardwired-llama-3.1-8b)" in out
    rows = {r["hw"]: r for r in _rows(tmp_path / "summary.csv")}
    assert rows["h100-sxm"]["weight_dtype"] == "bf16"
    assert rows["hardwired-llama-3.1-8b"]["weight_dtype"] == "int4"
    for row in rows.values():
        assert row["act_dtype"] == "bf16" and row["kv_dtype"] == "bf16"
        assert row["chips"] == "1" and row["layout"] == "1 chip"
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "(unlike precisions)</h1>" in page and "Not like for like" in page
    assert "formats w / a / kv" in page and "int4 / bf16 / bf16" in page


def test_compare_of_like_precisions_has_no_warning(cli, tmp_path):
    code, out, _ = cli("compare", "--hw", "h100-sxm", "--hw", "a100-sxm", "--out", str(tmp_path), "--force")
    assert code == 0
    assert "not like for like" not in out
    assert "unlike precisions" not in (tmp_path / "report.html").read_text(encoding="utf-8")


def test_study_csv_names_formats_and_layout(cli, write, tmp_path):
    spec = write("s.yaml", "name: s\ntitle: t\ncases:\n  - {model: llama-3.2-1b, hardware: "
                           "[h100-sxm, groq-lpu]}\nworkloads:\n  - {phase: decode, batch: 1, "
                           "context: 512}\n")
    code, _, err = cli("study", str(spec), "--out", str(tmp_path / "out"))
    assert code == 0, err
    rows = {r["hw"]: r for r in _rows(tmp_path / "out" / "study.csv")}
    assert rows["h100-sxm"]["weight_dtype"] == "bf16" and rows["h100-sxm"]["layout"] == "1 chip"
    assert _layout_accounts_for_every_chip(rows["groq-lpu"]["layout"], rows["groq-lpu"]["chips"])


# --- impossible workloads are refused ---------------------------------------------------------

def test_context_beyond_max_context_is_refused(cli):
    code, out, err = cli("run", "--model", "gpt2", "--context", "100000")
    assert code == 2 and out == ""
    assert "context 100,000 is beyond gpt2's max_context 1,024" in err
    assert "--allow-long-context" in err and len(err.strip().splitlines()) == 1


def test_prompt_beyond_max_context_is_refused_on_compare(cli, tmp_path):
    code, _, err = cli("compare", "--model", "gpt2", "--phase", "prefill", "--prompt", "2k",
                       "--out", str(tmp_path), "--force")
    assert code == 2 and "prompt 2,048 is beyond gpt2's max_context 1,024" in err


def test_long_context_allowed_with_a_note(cli):
    code, out, err = cli("run", "--model", "gpt2", "--context", "100000", "--allow-long-context", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["workload"]["context"] == 100000
    assert any("beyond gpt2's max_context" in n for n in data["notes"])


def test_default_context_fits_a_short_model(cli):
    code, out, err = cli("run", "--model", "gpt2", "--json")
    assert code == 0, err
    assert json.loads(out)["workload"]["context"] == 1024


@pytest.mark.parametrize("args, ignored", [
    (("--phase", "prefill", "--context", "4096"), "--context"),
    (("--phase", "decode", "--prompt", "512"), "--prompt"),
])
def test_an_option_the_phase_ignores_is_refused(cli, args, ignored):
    code, _, err = cli("run", *args)
    assert code == 2
    assert f"{ignored} is ignored by --phase" in err


def test_bad_size_list_is_one_line(cli):
    code, _, err = cli("run", "--batch", "1,eight")
    assert code == 2 and "'eight' is not a whole number" in err and len(err.strip().splitlines()) == 1


# --- list-valued sizes, --csv, --perfetto ------------------------------------------------------

def test_run_with_lists_runs_every_point_and_keeps_cliffs(cli):
    code, out, err = cli("run", "--batch", "1,32", "--context", "1k,32k", "--json")
    assert code == 0, err
    data = json.loads(out)
    ran = [(d["workload"]["batch"], d["workload"]["context"]) for d in data if "latency_s" in d]
    refused = [(d["workload"]["batch"], d["workload"]["context"]) for d in data if d.get("status") == "cannot run"]
    assert ran == [(1, 1024), (1, 32768), (32, 1024)]
    assert refused == [(32, 32768)]  # 137 GB of KV cache does not fit an 80 GB H100


def test_run_csv_has_one_row_per_point_with_formats(cli):
    code, out, err = cli("run", "--phase", "prefill", "--prompt", "512,2k", "--csv")
    assert code == 0, err
    rows = list(csv.DictReader(out.splitlines()))
    assert [r["prompt"] for r in rows] == ["512", "2048"]
    assert all(r["weight_dtype"] == "bf16" and r["layout"] == "1 chip" for r in rows)
    assert float(rows[1]["latency_s"]) > float(rows[0]["latency_s"])


def test_run_perfetto_writes_a_trace(cli, tmp_path):
    path = tmp_path / "step.json"
    code, out, err = cli("run", "--model", "llama-3.2-1b", "--perfetto", str(path))
    assert code == 0, err
    events = json.loads(path.read_text())["traceEvents"]
    assert any(e["ph"] == "X" for e in events)
    assert f"trace: {path}" in out


def test_run_perfetto_refuses_a_list(cli, tmp_path):
    code, _, err = cli("run", "--batch", "1,2", "--perfetto", str(tmp_path / "t.json"))
    assert code == 2 and "--perfetto traces one step" in err


def test_op_table_groups_layers(cli):
    code, out, _ = cli("run", "--hw", "tpu-v5e", "--weight-dtype", "int8")
    assert code == 0
    table = out.split("Slowest ops")[1]
    assert "layers.*.mlp.up" in table and "layers.0.mlp.up" not in table
    # a batch-1 GEMM on 128x128 arrays is busy well under 10 % of peak: not "compute-bound"
    assert "latency-bound" in table


# --- small CLI defects -----------------------------------------------------------------------

def test_sweep_no_report_prints_no_report_path(cli, tmp_path):
    out = tmp_path / "dse"
    code, stdout, err = cli("sweep", "--space", "hardwired", "--out", str(out),
                            "--search", "random", "--samples", "8", "--no-report")
    assert code == 0, err
    assert "report:" not in stdout and not (out / "report.html").exists()
    assert f"results: {out / 'results.csv'}" in stdout
    code, stdout, err = cli("sweep", "--space", "hardwired", "--out", str(out),
                            "--search", "random", "--samples", "8", "--no-report", "--json")
    assert code == 0 and json.loads(stdout)["report"] is None


def test_sweep_refuses_context_beyond_the_model(cli, tmp_path):
    code, _, err = cli("sweep", "--model", "gpt2", "--space", "hardwired",
                       "--out", str(tmp_path), "--context", "5000")
    assert code == 2 and "beyond gpt2's max_context" in err


def test_op_help_reads_as_a_sentence(cli):
    code, out, _ = cli("op", "--help")
    assert code == 0
    assert "One GEMM: A (m x k) times B (k x n)." in out and "(m x k) ." not in out


# --- a Hugging Face model folder works wherever a config path does ----------------------------

LLAMA_32_1B_HF = {"model_type": "llama", "hidden_size": 2048, "num_hidden_layers": 16,
                  "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 8192,
                  "vocab_size": 128256, "max_position_embeddings": 131072, "hidden_act": "silu",
                  "tie_word_embeddings": True}  # huggingface.co/meta-llama/Llama-3.2-1B config.json


def test_hf_model_folder_works_for_run_compare_and_models_show(cli, tmp_path):
    folder = tmp_path / "Llama-3.2-1B"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(LLAMA_32_1B_HF), encoding="utf-8")
    code, out, err = cli("models", "show", str(folder), "--json")
    assert code == 0, err
    assert json.loads(out)["params_total"] == 1_235_814_400  # the published Llama-3.2-1B count
    code, out, err = cli("run", "--model", str(folder), "--json")
    assert code == 0, err
    code, out, err = cli("compare", "--model", str(folder), "--hw", "h100-sxm", "--out",
                         str(tmp_path / "cmp"), "--json")
    assert code == 0, err


def test_folder_without_config_json_is_one_line(cli, tmp_path):
    code, _, err = cli("run", "--model", str(tmp_path))
    assert code == 2
    assert "must hold a Hugging Face config.json" in err and len(err.strip().splitlines()) == 1


# --- SCALE-Sim files as they are --------------------------------------------------------------

def test_scalesim_v2_and_v3_gemm_headers_read_alike(write):
    from accelsim.importers.scalesim import read_topology
    v2 = write("v2.csv", "Layer,M,N,K\nfc,1,4096,4096\n")
    v3 = write("v3.csv", "Layer Name, M, N, K,\nfc, 1, 4096, 4096,\n")
    assert read_topology(v2) == read_topology(v3)
    assert read_topology(v2)[0].m == 1 and read_topology(v2)[0].k == 4096


def test_scalesim_conv_topology_lowers_as_scalesim_does(write):
    from accelsim.importers.scalesim import read_topology
    conv = write("conv.csv", "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, "
                             "Channels, Num Filter, Strides,\nconv1, 230, 230, 7, 7, 3, 64, 2,\n")
    layer = read_topology(conv)[0]
    # output ceil((230 - 7 + 2) / 2) = 113 per side; window 7 x 7 x 3
    assert (layer.m, layer.n, layer.k) == (113 * 113, 64, 147)


def test_scalesim_unknown_header_names_the_accepted_ones(cli, write):
    topo = write("t.csv", "name,rows,cols\nx,1,2\n")
    code, _, err = cli("op", "--scalesim-cfg", str(Path(__file__).resolve().parent.parent / "examples" / "scalesim" / "scale.cfg"), "--topology", str(topo))
    assert code == 2 and "'Layer, M, N, K,' (GEMM, v2)" in err and len(err.strip().splitlines()) == 1


def test_bundled_scalesim_example_runs_with_the_worked_cycles(cli):
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent / "examples" / "scalesim"
    code, out, err = cli("op", "--scalesim-cfg", str(root / "scale.cfg"), "--topology",
                         str(root / "llama_decode_gemms.csv"), "--json")
    assert code == 0, err
    cycles = {r["layer"]: r["total_cycles"] for r in json.loads(out)["layers"]}
    # SCALE-Sim's own report for these shapes on 128x128 OS (/work/shared/PEERS.md)
    assert cycles["o_proj_b1"] == 139199 and cycles["square_256"] == 2039


# --- live progress: on a terminal only, never in --json ---------------------------------------

@pytest.fixture
def terminal(monkeypatch):
    """stderr as a terminal, and no delay before a bar appears."""
    from accelsim.cli import progress
    monkeypatch.setattr(progress, "on_terminal", lambda: True)
    monkeypatch.setattr(progress, "DELAY_S", 0.0)


def test_progress_bar_on_a_terminal(cli, terminal, write, tmp_path):
    spec = write("s.yaml", "name: s\ntitle: t\ncases:\n  - {model: llama-3.2-1b, hardware: [h100-sxm]}\n"
                           "workloads:\n  - {phase: decode, batch: 1, context: 512}\n"
                           "  - {phase: decode, batch: 4, context: 512}\n")
    code, out, err = cli("study", str(spec), "--out", str(tmp_path), "--force")
    assert code == 0
    assert "cells/s" in err and "0/2" in err  # tqdm's bar and count on stderr
    assert "cells" not in out


def test_no_progress_bar_in_json(cli, terminal):
    code, out, err = cli("run", "--batch", "1,2", "--json")
    assert code == 0 and err == ""
    json.loads(out)


def test_no_progress_bar_off_a_terminal(cli, write, tmp_path):
    spec = write("s.yaml", "name: s\ntitle: t\ncases:\n  - {model: llama-3.2-1b, hardware: [h100-sxm]}\n"
                           "workloads:\n  - {phase: decode, batch: 1, context: 512}\n")
    code, _, err = cli("study", str(spec), "--out", str(tmp_path), "--force")
    assert code == 0 and err == ""
