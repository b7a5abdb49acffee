"""Issue 22: reports and CLI a person would rather use.  Each test names the defect it guards."""
import csv
import json

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
    assert data["layout"] == f"{data['chips']} chips: pp={data['chips']}"


def test_run_text_names_formats_and_only_the_phase_sizes(cli):
    code, out, _ = cli("run", "--model", "mamba-2.8b", "--hw", "h100-sxm")
    assert code == 0
    assert "formats: w bf16 / a bf16 / state fp32" in out  # no KV cache in a Mamba model
    assert "decode batch=1 context=2048" in out.splitlines()[0]
    assert "prompt" not in out.splitlines()[0]


def test_compare_of_unlike_precisions_says_so(cli, tmp_path):
    code, out, err = cli("compare", "--hw", "h100-sxm", "--hw", "hardwired-llama-3.1-8b",
                         "--out", str(tmp_path))
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
    assert "w int4 / a bf16 / kv bf16" in page


def test_compare_of_like_precisions_has_no_warning(cli, tmp_path):
    code, out, _ = cli("compare", "--hw", "h100-sxm", "--hw", "a100-sxm", "--out", str(tmp_path))
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
    assert rows["groq-lpu"]["layout"].endswith(f"pp={rows['groq-lpu']['chips']}")
