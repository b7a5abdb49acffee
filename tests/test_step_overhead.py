"""The GPU per-step host overhead (``gpu.step_overhead``): once per model step, never per kernel."""
import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from accelsim.api import resolve_hardware, simulate
from accelsim.report.opcost import matmul_report
from accelsim.report.text import result_summary
from accelsim.transform import Parallelism
from accelsim.validate.points import Catalogue
from accelsim.validate.predict import Calibration, calibrated, current_calibration, predict
from accelsim.workload import Workload

REPO = Path(__file__).resolve().parent.parent
STEP = 1.5e-3


def _with_step(step_s: float):
    hw = resolve_hardware("h100-sxm")
    return hw.model_copy(update={"gpu": hw.gpu.model_copy(update={"step_overhead": step_s})})


@pytest.mark.parametrize("model, workload", [
    ("llama-3.2-1b", Workload("decode", batch=1, context=512)),    # 16 layers
    ("llama-3.1-8b", Workload("decode", batch=8, context=2048)),   # 32 layers: twice the kernels
    ("llama-3.2-1b", Workload("prefill", batch=1, prompt=128, context=0)),
])
def test_latency_grows_by_exactly_one_step_overhead_whatever_the_op_count(model, workload):
    plain, slow = simulate(model, _with_step(0.0), workload), simulate(model, _with_step(STEP), workload)
    assert len(plain.ops) == len(slow.ops)  # not a kernel: the op list is unchanged
    assert [c.time_s for c in slow.ops] == [c.time_s for c in plain.ops]
    assert slow.latency_s - plain.latency_s == pytest.approx(STEP, rel=1e-9)
    assert slow.latency_s == pytest.approx(sum(c.time_s for c in slow.ops) + STEP, rel=1e-12)
    assert slow.step_overhead_s == STEP and plain.step_overhead_s == 0.0
    tokens = workload.tokens if workload.phase == "prefill" else workload.batch
    assert slow.tokens_per_s == pytest.approx(tokens / slow.latency_s)


def test_tensor_parallel_step_pays_it_once():
    workload = Workload("decode", batch=4, context=1024)
    tp = Parallelism(tp=2)
    plain = simulate("llama-3.2-1b", _with_step(0.0), workload, parallelism=tp)
    slow = simulate("llama-3.2-1b", _with_step(STEP), workload, parallelism=tp)
    assert slow.latency_s - plain.latency_s == pytest.approx(STEP, rel=1e-9)
    assert slow.system["step_overhead_s"] == STEP


def test_result_shows_it_as_an_op_independent_line():
    result = simulate("llama-3.2-1b", _with_step(STEP), Workload("decode", batch=1, context=512))
    text = result_summary(result, top=3)
    line = next(row for row in text.splitlines() if row.startswith("step overhead (host)"))
    assert "1.5 ms" in line
    assert result.to_dict()["step_overhead_s"] == STEP


@pytest.mark.parametrize("m, k, n", [(1, 4096, 4096), (1024, 1024, 1024), (8192, 8192, 8192)])
def test_single_kernel_costs_do_not_include_it(m, k, n):
    plain = matmul_report(_with_step(0.0), m=m, k=k, n=n, dtype="fp8").to_dict()
    slow = matmul_report(_with_step(0.25), m=m, k=k, n=n, dtype="fp8").to_dict()
    assert slow["time_s"] == plain["time_s"]


def test_op_cli_ignores_it(cli, write):
    data = yaml.safe_load((REPO / "hw_configs" / "h100-sxm.yaml").read_text())
    data["gpu"]["step_overhead"] = "250 ms"
    slow_path = write("slow.yaml", yaml.safe_dump(data))
    data["gpu"]["step_overhead"] = "0 s"
    plain_path = write("plain.yaml", yaml.safe_dump(data))
    runs = [cli("op", "--hw", str(p), "matmul", "--m", "64", "--k", "4096", "--n", "4096", "--json")
            for p in (slow_path, plain_path)]
    assert all(code == 0 for code, _, _ in runs)
    slow, plain = (json.loads(out)["time_s"] for _, out, _ in runs)
    assert slow == plain < 1e-3


@pytest.mark.parametrize("value, message", [("-1 us", "must be >= 0"), (2, "missing unit"),
                                            ("3 GB", "time")])
def test_bad_values_are_one_line_config_errors(cli, write, value, message):
    data = yaml.safe_load((REPO / "hw_configs" / "h100-sxm.yaml").read_text())
    data["gpu"]["step_overhead"] = value
    path = write("bad.yaml", yaml.safe_dump(data))
    code, _out, err = cli("run", "--model", "llama-3.2-1b", "--hw", str(path))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "gpu.step_overhead" in lines[0] and message in lines[0]
    assert "bad.yaml" in lines[0]


def test_default_is_zero():
    data = yaml.safe_load((REPO / "hw_configs" / "b200.yaml").read_text())
    assert "step_overhead" not in data["gpu"]
    assert resolve_hardware("b200").gpu.step_overhead == 0.0


def test_calibration_sets_it_and_ttft_moves_by_it_but_gemms_do_not():
    catalogue = Catalogue()
    by_kind = {}
    for p in catalogue.points:
        if p.hw == "h100-sxm" and p.chips == 1:
            by_kind.setdefault(p.kind, p)
    base = _with_step(0.0)
    cal = current_calibration(base)
    moved = calibrated(base, dataclasses.replace(cal, step_s=STEP))  # the request overhead stays
    assert moved.gpu.step_overhead == STEP and current_calibration(moved).step_s == STEP
    ttft, gemm = by_kind["ttft"], by_kind["gemm"]
    assert predict(ttft, moved).value - predict(ttft, base).value == pytest.approx(STEP, rel=1e-9)
    assert predict(gemm, moved).value == predict(gemm, base).value


def test_fit_box_pins_the_request_overhead_of_kinds_without_one():
    from accelsim.validate.calibrate import BOUNDS, _bounds, _clip
    tpu, gpu = resolve_hardware("tpu-v5e"), resolve_hardware("h100-sxm")
    assert _bounds(tpu)["step_s"] == _bounds(gpu)["step_s"] == BOUNDS["step_s"]
    assert _bounds(tpu)["request_s"] == (0.0, 0.0) and _bounds(gpu)["request_s"] == BOUNDS["request_s"]
    assert _clip([0.7, 0.8, 5e-6, 3e-4, 3e-3], _bounds(tpu)) == Calibration(0.7, 0.8, 5e-6, 3e-4, 0.0)
    assert calibrated(tpu, Calibration(0.7, 0.8, 5e-6, 3e-4)).systolic.step_overhead == 3e-4
    with pytest.raises(ValueError, match="no per-request overhead"):
        calibrated(tpu, Calibration(0.7, 0.8, 5e-6, 0.0, 1e-3))


def test_systolic_step_overhead_is_paid_once_per_step():
    tpu = resolve_hardware("tpu-v5e")
    slow = tpu.model_copy(update={"systolic": tpu.systolic.model_copy(update={"step_overhead": STEP})})
    workload = Workload("decode", batch=1, prompt=128, context=128)
    base = simulate("llama-3.2-1b", tpu, workload)
    paid = simulate("llama-3.2-1b", slow, workload)
    assert paid.latency_s - base.latency_s == pytest.approx(STEP, rel=1e-9)
    assert paid.step_overhead_s == STEP and base.step_overhead_s == 0.0
    assert any("systolic.step_overhead" in n for n in paid.notes)
