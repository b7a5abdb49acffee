"""vLLM 0.5.4 as the ML.ENERGY leaderboard v2 harness ran it (``runtimes/vllm-0.5.4.yaml``): the
harness's flags, host work per step and per sequence (``gpu.sequence_overhead``) and the GPU's
power while it waits on the host (``gpu.host_wait_share``), and the v2 rows predicted under it."""
from __future__ import annotations

import pytest

from accelsim import api
from accelsim.transform import Parallelism
from accelsim.validate import energy
from accelsim.workload import Workload

MODEL = "llama-3.1-8b"


def test_every_setting_of_the_preset_carries_a_source():
    preset = api.load_runtime("vllm-0.5.4")
    for name, setting in preset.settings().items():
        assert len(setting.source) > 20, name
    # every fitted or stated kernel key is named in the kernels' source, with its value
    assert preset.kernels is not None
    for key, value in preset.kernels.value.model_dump(exclude_none=True).items():
        assert key in preset.kernels.source, key
    assert "fit_host_terms" in preset.kernels.source


def test_the_preset_holds_the_harness_flags():
    # benchmark_one_datapoint.py: --gpu-memory-utilization 0.95, --enable-chunked-prefill False,
    # --max-model-len 4096 (so max_num_batched_tokens = max(4096, 2048)), --preemption-mode recompute
    preset = api.load_runtime("vllm-0.5.4")
    config = preset.serve_config()
    assert preset.kv_memory.value == 0.95 and preset.kv_memory.basis == "total"
    assert config.chunk == 4096 and config.mixed_prefill is False
    assert config.preemption == "recompute" and config.overlap_schedule is False
    assert preset.prefix_cache is not None and preset.prefix_cache.value is False


@pytest.mark.parametrize("hw_name", ["h100-sxm", "a100-sxm"])
@pytest.mark.parametrize("batch", [1, 64, 512])
def test_host_work_is_per_step_plus_per_sequence(hw_name, batch):
    # Hand-worked: the step grows by exactly step_overhead + sequence_overhead x batch over the
    # same step with no host work, and Result.step_overhead_s reports that sum.
    hw = api.hardware_under(hw_name, "vllm-0.5.4")
    quiet = hw.model_copy(update={"gpu": hw.gpu.model_copy(update={
        "step_overhead": 0.0, "sequence_overhead": 0.0})})
    step = Workload("decode", batch=batch, context=458)
    with_host, without = api.simulate(MODEL, hw, step), api.simulate(MODEL, quiet, step)
    host = 7.78e-3 + 0.360e-3 * batch  # the preset's two figures
    assert with_host.step_overhead_s == pytest.approx(host)
    assert with_host.latency_s - without.latency_s == pytest.approx(host, rel=1e-9)


def test_the_gpu_waits_on_the_host_at_its_wait_share():
    # Hand-worked: energy above idle while waiting = share x (TDP - idle) x host seconds x chips;
    # at 0.226 on the H100 (TDP 700 W) that is idle + 0.226 x (700 - idle), ~210 W, per GPU.
    hw = api.hardware_under("h100-sxm", "vllm-0.5.4")
    result = api.simulate(MODEL, hw, Workload("decode", batch=128, context=458))
    wait_w = 0.226 * (hw.power.tdp - hw.power.static)
    assert result.energy_j["host_wait"] == pytest.approx(wait_w * result.step_overhead_s)
    assert 180.0 < hw.power.static + wait_w < 220.0
    # the step's average power stays between idle and TDP, and below the GPU-busy part's
    assert hw.power.static < result.power_w < hw.power.tdp


def test_configs_as_calibrated_have_no_sequence_or_wait_terms():
    # Defaults 0: a chip without the runtime keeps its step exactly, with no waiting energy.
    for name in ("h100-sxm", "a100-sxm"):
        hw = api.hardware_under(name, None)
        assert hw.gpu.sequence_overhead == 0.0 and hw.gpu.host_wait_share == 0.0
        assert hw.gpu.worker_overhead == 0.0
        result = api.simulate(MODEL, hw, Workload("decode", batch=64, context=458))
        assert "host_wait" not in result.energy_j
        assert result.step_overhead_s == pytest.approx(hw.gpu.step_overhead)


def test_the_fit_reproduces_the_presets_host_terms():
    kernels = api.load_runtime("vllm-0.5.4").kernels
    assert kernels is not None
    fit = energy.fit_host_terms(energy.load(), "vllm-0.5.4")
    assert fit.rows == 14
    assert fit.median_abs_error < 0.10 and fit.median_abs_energy_error < 0.10
    assert fit.step_overhead_s == pytest.approx(kernels.value.step_overhead, rel=0.02)
    assert fit.sequence_overhead_s == pytest.approx(kernels.value.sequence_overhead, rel=0.02)
    assert fit.host_wait_share == pytest.approx(kernels.value.host_wait_share, rel=0.02)


def test_held_out_v2_rows_under_their_own_preset():
    # The 22 70B (H100 TP4, A100 TP8) and 405B (H100 TP8 PP2) runs, never fitted: J/token within
    # the 15 % bound, median and every group (46.6 % under the V1 preset, 16.8 % before the
    # per-worker term; docs/validation.md "Power and energy").
    rows = [p for p in energy.load() if p.runtime == "vllm-0.5.4" and p.subset == "holdout"]
    assert len(rows) == 22 and {p.model for p in rows} == {"llama-3.1-70b", "llama-3.1-405b"}
    frame = energy.table(rows)
    assert frame["error"].abs().median() <= 0.15
    for _, group in frame.groupby(["hw", "model", "tp", "pp"]):
        assert group["error"].abs().median() <= 0.15


@pytest.mark.parametrize("tp", [1, 2, 4])
def test_each_gpu_beyond_the_first_costs_the_worker_overhead_per_step(tp):
    # Hand-worked: 3.84 ms x (GPUs - 1) per step on top of the same step without the term, in
    # Result.step_overhead_s too; nothing on one GPU.
    hw = api.hardware_under("h100-sxm", "vllm-0.5.4")
    quiet = hw.model_copy(update={"gpu": hw.gpu.model_copy(update={"worker_overhead": 0.0})})
    layout = Parallelism(tp=tp) if tp > 1 else None
    step = Workload("decode", batch=64, context=300)
    with_workers = api.simulate(MODEL, hw, step, parallelism=layout)
    without = api.simulate(MODEL, quiet, step, parallelism=layout)
    assert with_workers.latency_s - without.latency_s == pytest.approx(3.84e-3 * (tp - 1), abs=1e-12)
    assert with_workers.step_overhead_s - without.step_overhead_s == pytest.approx(3.84e-3 * (tp - 1))


def test_the_gpus_wait_through_the_coordination_at_the_wait_share():
    # Hand-worked: host-wait energy = share x (TDP - idle) x (host work + coordination) x GPUs.
    hw = api.hardware_under("h100-sxm", "vllm-0.5.4")
    result = api.simulate("llama-3.1-70b", hw, Workload("decode", batch=64, context=300),
                          parallelism=Parallelism(tp=4))
    host = 7.78e-3 + 0.360e-3 * 64 + 3 * 3.84e-3
    assert result.step_overhead_s == pytest.approx(host)
    assert result.energy_j["host_wait"] == pytest.approx(0.226 * (hw.power.tdp - hw.power.static) * host * 4)


def test_the_fit_reproduces_the_presets_worker_overhead():
    # Three gemma-2-9b TP1/TP2 pairs on the A100 (batch 32, 63/64, 127); the median of their
    # estimates is the preset's figure, and the 70B/405B rows play no part.
    kernels = api.load_runtime("vllm-0.5.4").kernels
    assert kernels is not None
    points = energy.load()
    fit = energy.fit_worker_overhead(points, "vllm-0.5.4")
    assert fit.pairs == 3 and fit.worker_overhead_s == pytest.approx(kernels.value.worker_overhead, rel=0.02)
    no_holdout = [p for p in points if p.subset == "calibration"]
    assert energy.fit_worker_overhead(no_holdout, "vllm-0.5.4") == fit


def test_a_worker_fit_without_pairs_is_one_clear_error():
    from accelsim.errors import ConfigError
    eight_b = [p for p in energy.load() if p.model == MODEL]
    with pytest.raises(ConfigError, match="pair a one-GPU run"):
        energy.fit_worker_overhead(eight_b, "vllm-0.5.4")


@pytest.mark.parametrize(("preset", "good", "bad", "key"), [
    ("vllm-0.5.4", "worker_overhead: 3.84 ms", "worker_overhead: -1 ms", "worker_overhead"),
    ("vllm-0.5.4", "host_wait_share: 0.226", "host_wait_share: 1.5", "host_wait_share"),
    ("vllm", "attention_bandwidth: 0.366", "attention_bandwidth: 1.5", "attention_bandwidth"),
])
def test_a_preset_kernel_value_out_of_range_is_one_line(tmp_path, capsys, preset, good, bad, key):
    from accelsim.cli import main
    from accelsim.config import loader
    text = loader.bundled_names("runtimes")[preset].read_text()
    assert good in text, f"{preset} no longer holds {good!r}"
    path = tmp_path / "rt.yaml"
    path.write_text(text.replace(good, bad))
    code = main(["serve", "--model", MODEL, "--runtime", str(path), "--requests", "5",
                 "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "rt.yaml" in err and key in err and len(err.splitlines()) == 1
