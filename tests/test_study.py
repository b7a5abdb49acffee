"""`accelsim study`: models x chips x workloads, refusals kept, one report folder."""
import json

import pandas as pd

STUDY = """
name: tiny
title: "Llama on two chips"
cases:
  - model: llama-3.1-8b
    hardware: [h100-sxm, hardwired-llama-3.1-8b, tpu-v5e]
  - model: llama-3.2-1b
    hardware: [h100-sxm, hardwired-llama-3.1-8b]
workloads:
  - {phase: decode, batch: 1, context: 512}
"""


def test_study_runs_every_cell_and_keeps_refusals(cli, write, tmp_path):
    out = tmp_path / "out"
    code, stdout, err = cli("study", str(write("s.yaml", STUDY)), "--out", str(out), "--json")
    assert code == 0, err
    rows = pd.DataFrame(json.loads(stdout))
    assert len(rows) == 5
    by = {(r.model, r.hw): r for r in rows.itertuples()}
    assert by[("llama-3.1-8b", "hardwired-llama-3.1-8b")].status == "ok"
    # Another model's weights are in the hardwired chip's silicon: a refusal, not a crash.
    assert "fixed in silicon" in by[("llama-3.2-1b", "hardwired-llama-3.1-8b")].status
    assert "does not fit" in by[("llama-3.1-8b", "tpu-v5e")].status
    assert by[("llama-3.2-1b", "h100-sxm")].tokens_per_s > by[("llama-3.1-8b", "h100-sxm")].tokens_per_s
    index = (out / "index.md").read_text()
    assert "tokens/s" in index and "llama-3.2-1b_decode_b1_c512/report.md" in index
    assert (out / "llama-3.1-8b_decode_b1_c512" / "report.html").is_file()
    assert (out / "study.csv").is_file()


def test_bad_study_file_is_one_line(cli, write):
    bad = STUDY.replace("phase: decode", "phase: train")
    code, _, err = cli("study", str(write("s.yaml", bad)))
    assert code == 2 and "workloads[0].phase" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("study", "missing.yaml")
    assert code == 2 and "no such study file" in err


def test_cases_differing_only_in_dtype_get_their_own_reports(cli, write, tmp_path):
    study = STUDY.replace("  - model: llama-3.2-1b\n    hardware: [h100-sxm, hardwired-llama-3.1-8b]",
                          "  - model: llama-3.1-8b\n    weight_dtype: int8\n    hardware: [tpu-v5e]")
    out = tmp_path / "out"
    code, stdout, _ = cli("study", str(write("s.yaml", study)), "--out", str(out), "--json")
    assert code == 0
    rows = pd.DataFrame(json.loads(stdout))
    tpu = rows[rows.hw == "tpu-v5e"].set_index("model")
    assert "does not fit" in tpu.loc["llama-3.1-8b", "status"]
    assert tpu.loc["llama-3.1-8b (weights int8)", "status"] == "ok"
    assert (out / "llama-3.1-8b_w-int8_decode_b1_c512" / "report.md").is_file()
    assert (out / "llama-3.1-8b_decode_b1_c512" / "report.md").is_file()
