"""`run`, `compare`, `models`, `hw` end to end, as a user or a script drives them."""
import json
import subprocess
import sys

import pytest


def test_run_json_has_the_stable_keys(cli):
    code, out, err = cli("run", "--model", "llama-3.1-8b", "--hw", "h100-sxm", "--phase", "decode",
                         "--batch", "1", "--context", "2048", "--json")
    assert code == 0, err
    data = json.loads(out)
    for key in ("latency_s", "tokens_per_s", "joules_per_token", "ops"):
        assert key in data
    assert data["latency_s"] > 0 and data["tokens_per_s"] == pytest.approx(1 / data["latency_s"])
    op = data["ops"][0]
    assert {"name", "kind", "time_s", "bound"} <= set(op)
    assert {o["bound"] for o in data["ops"]} <= {"compute", "memory:hbm", "memory:l2", "overhead"}
    # The ops plus the runtime's host work once per step (gpu.step_overhead).
    assert sum(o["time_s"] for o in data["ops"]) + data["step_overhead_s"] == pytest.approx(data["latency_s"])


def test_run_table_names_compute_and_memory_bound_ops(cli):
    # Batch 4: each norm's 32 MB activation spills past its L2 share, so the fused graph still
    # has HBM-bound kernels beside the compute-bound GEMMs.
    code, out, _ = cli("run", "--phase", "prefill", "--prompt", "1024", "--batch", "4")
    assert code == 0
    assert "tokens/s" in out and "J/token" in out
    # The table explains each bound (issue 22): 'compute-bound', 'hbm-bandwidth-bound'.
    assert "compute-bound" in out and "hbm-bandwidth-bound" in out


def test_dtype_override_halves_weight_bytes(cli):
    _, out16, _ = cli("run", "--json")
    _, out8, _ = cli("run", "--json", "--weight-dtype", "fp8")
    w16 = json.loads(out16)["footprint_bytes"]["weight"]
    w8 = json.loads(out8)["footprint_bytes"]["weight"]
    assert w8 == pytest.approx(w16 / 2)


def test_compare_writes_the_report_and_json(cli, tmp_path):
    out_dir = tmp_path / "cmp"
    code, out, err = cli("compare", "--hw", "h100-sxm", "--hw", "tpu-v5e", "--hw",
                         "hardwired-llama-3.1-8b", "--out", str(out_dir), "--json")
    assert code == 0, err
    rows = json.loads(out)
    by_hw = {r["hw"]: r for r in rows}
    assert set(by_hw) == {"h100-sxm", "tpu-v5e", "hardwired-llama-3.1-8b"}
    assert by_hw["hardwired-llama-3.1-8b"]["tokens_per_s"] > by_hw["h100-sxm"]["tokens_per_s"]
    # 16.06 GB of bf16 weights cannot fit 16 GB of HBM: reported as a real cliff, not dropped.
    assert by_hw["tpu-v5e"]["status"] == "cannot run" and "does not fit" in by_hw["tpu-v5e"]["reason"]
    for name in ("report.md", "report.html", "summary.csv", "ops.csv", "time_breakdown.png",
                 "roofline.png"):
        assert (out_dir / name).stat().st_size > 0, name
    html = (out_dir / "report.html").read_text()
    assert "does not fit" in html and "<img" in html
    md = (out_dir / "report.md").read_text()
    assert "hardwired-llama-3.1-8b" in md and "roofline.png" in md


def test_compare_with_int8_weights_fits_the_tpu(cli, tmp_path):
    code, out, _ = cli("compare", "--hw", "tpu-v5e", "--weight-dtype", "int8", "--out",
                       str(tmp_path / "r"), "--json")
    assert code == 0
    assert json.loads(out)[0]["status"] == "ok"


def test_models_and_hw_catalogues(cli):
    code, out, _ = cli("models", "--json")
    assert code == 0
    assert any(m["name"] == "llama-3.1-8b" and m["params_total"] == 8_030_261_248
               for m in json.loads(out))
    code, out, _ = cli("hw", "--json")
    assert code == 0
    assert {"h100-sxm", "tpu-v5e", "hardwired-llama-3.1-8b"} <= {h["name"] for h in json.loads(out)}


def test_models_show_json(cli):
    code, out, _ = cli("models", "show", "llama-3.1-8b", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["params_total"] == 8_030_261_248 and data["params_active"] == 8_030_261_248


def test_console_entry_point_and_module_run_without_traceback():
    done = subprocess.run([sys.executable, "-m", "accelsim", "run", "--hw", "nope"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    done = subprocess.run([sys.executable, "-m", "accelsim", "--help"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "compare" in done.stdout
