"""The serving runtime's per-request overhead (``gpu.request_overhead``): once per request, with
its first token -- never per step, never per kernel."""
from pathlib import Path

import pytest
import yaml

from accelsim.api import cost_model, resolve_hardware, simulate
from accelsim.sim.serving import ServeConfig, serve, synthetic_requests
from accelsim.validate.points import Catalogue
from accelsim.validate.predict import Calibration, calibrated, current_calibration, predict
from accelsim.workload import Workload

REPO = Path(__file__).resolve().parent.parent
REQUEST = 4.5e-3


def _with_request(request_s: float, hw: str = "h100-sxm"):
    chip = resolve_hardware(hw)
    return chip.model_copy(update={"gpu": chip.gpu.model_copy(update={"request_overhead": request_s})})


def _first_point(kind: str, hw: str = "h100-sxm"):
    return next(p for p in Catalogue().points if p.hw == hw and p.chips == 1 and p.kind == kind)


def test_ttft_prediction_grows_by_exactly_the_request_overhead():
    point = _first_point("ttft")
    plain, slow = predict(point, _with_request(0.0)), predict(point, _with_request(REQUEST))
    assert slow.value - plain.value == pytest.approx(REQUEST, rel=1e-9)


def test_static_batch_pays_it_once_per_run_not_per_step():
    point = _first_point("static_batch")
    plain, slow = predict(point, _with_request(0.0)), predict(point, _with_request(REQUEST))
    tokens = point.batch * point.output_len / (point.chips if point.per_chip else 1)
    # Throughput = tokens / run time, so the run time grows by one overhead however many steps.
    assert tokens / slow.value - tokens / plain.value == pytest.approx(REQUEST, rel=1e-6)


@pytest.mark.parametrize("kind", ["gemm", "bandwidth"])
def test_single_kernel_points_never_pay_it(kind):
    point = _first_point(kind)
    assert predict(point, _with_request(REQUEST)).value == predict(point, _with_request(0.0)).value


@pytest.mark.parametrize("workload", [Workload("decode", batch=1, context=512),
                                      Workload("prefill", batch=1, prompt=128, context=0)])
def test_run_step_latency_is_unchanged_and_the_note_says_why(workload):
    plain = simulate("llama-3.2-1b", _with_request(0.0), workload)
    slow = simulate("llama-3.2-1b", _with_request(REQUEST), workload)
    assert slow.latency_s == plain.latency_s
    assert not any("request overhead" in n for n in plain.notes)
    assert any("request overhead 4.50 ms" in n for n in slow.notes)


def test_serve_ttft_and_e2e_grow_by_it_and_tpot_does_not():
    requests = synthetic_requests(12, 4.0, prompt=256, output=32, seed=2)
    config = ServeConfig(max_batch=8)
    plain = serve(requests, cost_model("llama-3.2-1b", _with_request(0.0)), config, 4.0)
    slow = serve(requests, cost_model("llama-3.2-1b", _with_request(REQUEST)), config, 4.0)
    assert [s.end_s for s in slow.steps] == [s.end_s for s in plain.steps]  # steps untouched
    for a, b in zip(plain.requests, slow.requests):
        assert b.ttft_s - a.ttft_s == pytest.approx(REQUEST, rel=1e-9)
        assert b.e2e_s - a.e2e_s == pytest.approx(REQUEST, rel=1e-9)
        assert b.tpot_s == a.tpot_s
    assert any("gpu.request_overhead" in n for n in slow.notes)


def test_calibration_round_trips_it_and_kinds_without_one_pin_it():
    from accelsim.validate.calibrate import BOUNDS, _bounds
    base = _with_request(0.0)
    cal = current_calibration(base)
    moved = calibrated(base, Calibration(cal.compute, cal.memory, cal.overhead_s, cal.step_s, REQUEST))
    assert current_calibration(moved).request_s == REQUEST
    assert BOUNDS["request_s"] == (0.0, 10e-3) and BOUNDS["step_s"] == (0.0, 0.5e-3)
    tpu = resolve_hardware("tpu-v5e")
    assert _bounds(tpu)["request_s"] == (0.0, 0.0)
    with pytest.raises(ValueError, match="per-request"):
        calibrated(tpu, Calibration(0.7, 0.8, 5e-6, 0.0, 1e-3))


def test_default_is_zero():
    data = yaml.safe_load((REPO / "hw_configs" / "b200.yaml").read_text())
    assert "request_overhead" not in data["gpu"]
    assert resolve_hardware("b200").gpu.request_overhead == 0.0


@pytest.mark.parametrize("value, message", [("-1 ms", "must be >= 0"), (3, "missing unit"),
                                            ("3 GB", "time")])
def test_bad_values_are_one_line_config_errors(cli, write, value, message):
    data = yaml.safe_load((REPO / "hw_configs" / "h100-sxm.yaml").read_text())
    data["gpu"]["request_overhead"] = value
    path = write("bad.yaml", yaml.safe_dump(data))
    code, _out, err = cli("run", "--model", "llama-3.2-1b", "--hw", str(path))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "gpu.request_overhead" in lines[0] and message in lines[0]
    assert "bad.yaml" in lines[0]
