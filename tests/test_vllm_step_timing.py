"""The vLLM runtime's step timing (``runtimes/vllm.yaml`` ``kernels``: host work per step and its
attention kernel's share of the memory bandwidth, fitted on the ML.ENERGY v3 8B calibration rows)
and the energy predictor that applies each row's runtime (``accelsim.validate.energy``)."""
from __future__ import annotations

import pytest

from accelsim import api
from accelsim.errors import AccelsimError
from accelsim.validate import energy
from accelsim.workload import Workload

H100 = "h100-sxm"
MODEL = "llama-3.1-8b"


def _by_kind(result) -> dict[str, float]:
    seconds: dict[str, float] = {}
    for op in result.ops:
        seconds[op.kind] = seconds.get(op.kind, 0.0) + op.time_s
    return seconds


@pytest.mark.parametrize("batch", [8, 255])
def test_a_vllm_step_is_the_bare_step_plus_the_presets_terms(batch):
    bare_hw, vllm_hw = api.hardware_under(H100, None), api.hardware_under(H100, "vllm")
    share, host = vllm_hw.gpu.attention_bandwidth, vllm_hw.gpu.step_overhead
    assert 0.0 < share < 1.0 and host > bare_hw.gpu.step_overhead
    step = Workload("decode", batch=batch, context=458)
    bare, vllm = api.simulate(MODEL, bare_hw, step), api.simulate(MODEL, vllm_hw, step)
    # Only attention's K/V reads slow down (memory-bound decode attention: by 1 / share) ...
    attention_extra = 0.0
    for b, v in zip(bare.ops, vllm.ops):
        if b.kind != "attention":
            assert v.time_s == pytest.approx(b.time_s)
            continue
        assert v.memory_s["hbm"] == pytest.approx(b.memory_s["hbm"] / share)
        attention_extra += v.time_s - b.time_s
    assert attention_extra > 0
    # ... and the host's step work replaces the hardware's: the step grows by exactly these terms.
    extra = attention_extra + host - bare_hw.gpu.step_overhead
    assert vllm.latency_s == pytest.approx(bare.latency_s + extra)
    assert vllm.step_overhead_s == pytest.approx(host)


def test_the_extra_time_grows_with_the_batch_as_measured():
    # ML.ENERGY v3 8B on one H100 (vLLM 0.11.1): median ITL 7.3 ms at batch 8, 26.1 ms at 255;
    # the bare hardware runs the two steps at 6.7 and 13.5 ms.  Under the preset (fitted on the
    # runs' throughput, not on the ITL) both land within 15 % of the measured ITL, and the gap the
    # preset adds grows with the batch.
    hw_bare, hw_vllm = api.hardware_under(H100, None), api.hardware_under(H100, "vllm")
    measured = {8: 7.3e-3, 255: 26.1e-3}
    added = {}
    for batch, itl in measured.items():
        step = Workload("decode", batch=batch, context=458)
        bare, vllm = api.simulate(MODEL, hw_bare, step), api.simulate(MODEL, hw_vllm, step)
        assert bare.latency_s < 0.95 * itl  # the TensorRT-LLM-calibrated step is faster
        assert abs(vllm.latency_s / itl - 1) < 0.15
        added[batch] = vllm.latency_s - bare.latency_s
    assert added[255] > 5 * added[8]


def test_the_vllm_kernels_leave_other_kinds_as_they_are():
    # vLLM also runs on TPUs: its GPU kernels and GPU step timing do not exist there.
    assert api.hardware_under("tpu-v5e", "vllm") == api.hardware_under("tpu-v5e", None)


def test_each_row_is_predicted_under_the_runtime_that_measured_it():
    points = energy.load()
    vllm_row = next(p for p in points if p.runtime == "vllm-0.11.1")
    mlperf_row = next(p for p in points if p.runtime.startswith("trtllm-mlperf"))
    preset = api.load_runtime("vllm").kernels
    assert preset is not None
    chip = energy.chip_under(vllm_row)
    assert chip.gpu.step_overhead == preset.value.step_overhead
    assert chip.gpu.attention_bandwidth == preset.value.attention_bandwidth
    assert chip.gpu.custom_all_reduce == preset.value.custom_all_reduce
    # TensorRT-LLM is what the GPU terms were calibrated on: its rows keep the chip's timing.
    bare = api.power_limited(mlperf_row.hw, mlperf_row.power_limit_w)
    assert energy.chip_under(mlperf_row) == bare
    # The predictor uses it: the row's prediction is its steady state under the vLLM chip, which
    # differs from the bare hardware's (vLLM's host gap and attention slow the 405B TP8 step,
    # its own all-reduce speeds it up).
    bare_state = energy.steady_state(vllm_row, api.hardware_under(vllm_row.hw, None))
    assert energy.predict(vllm_row) == pytest.approx(energy.steady_state(vllm_row, chip).joules)
    assert energy.predict(vllm_row) != pytest.approx(bare_state.joules)


def test_an_unknown_runtime_in_the_power_file_is_one_line(tmp_path):
    source = energy.DEFAULT_POWER_POINTS.read_text()
    bad = tmp_path / "power.csv"
    bad.write_text(source.replace(",vllm-0.11.1,", ",vllm-9,", 1))
    with pytest.raises(AccelsimError) as err:
        energy.load(bad)
    line = err.value.one_line()
    assert "power.csv" in line and "row 2" in line and "'vllm-9'" in line and "vllm-0.11.1" in line
    assert "\n" not in line


@pytest.mark.parametrize("batch", [8, 64, 255])
def test_power_under_the_vllm_preset_stays_between_idle_and_tdp(batch):
    hw = api.hardware_under(H100, "vllm")
    r = api.simulate(MODEL, hw, Workload("decode", batch=batch, context=458))
    assert hw.power.static < r.power_w <= hw.power.tdp * (1 + 1e-9)


def test_decode_power_under_the_vllm_preset_still_rises_with_batch():
    # Measured: 486 W at batch 8 rising to ~690 W from batch 192 (validation/measured_power.csv).
    hw = api.hardware_under(H100, "vllm")
    watts = [api.simulate(MODEL, hw, Workload("decode", batch=b, context=458)).power_w
             for b in (1, 8, 32, 128, 255)]
    assert all(a < b for a, b in zip(watts, watts[1:]))


def test_held_out_j_per_token_within_bound():
    # A sample of held-out ML.ENERGY v3 rows (70B on 4 H100s, 405B FP8 on 8), small and large
    # batch: J/token within 15 % median (the full table: docs/validation.md "Power and energy").
    rows = [p for p in energy.load() if p.subset == "holdout" and p.metric == "j_per_token"
            and p.runtime == "vllm-0.11.1" and p.batch in (8, 64, 255)]
    assert len(rows) >= 6
    assert energy.table(rows)["error"].abs().median() <= 0.15


def test_the_fit_reproduces_the_presets_step_timing():
    # The preset's two figures are what energy.fit_step_timing finds on the calibration rows.
    kernels = api.load_runtime("vllm").kernels
    assert kernels is not None
    fit = energy.fit_step_timing(energy.load(), "vllm-0.11.1")
    assert fit.rows == 11 and fit.median_abs_error < 0.05
    assert fit.step_overhead_s == pytest.approx(kernels.value.step_overhead, rel=0.02)
    assert fit.attention_bandwidth == pytest.approx(kernels.value.attention_bandwidth, rel=0.02)
