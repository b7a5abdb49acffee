"""vLLM 0.5.4 as the ML.ENERGY leaderboard v2 harness ran it (``runtimes/vllm-0.5.4.yaml``): the
harness's flags, host work per step and per sequence (``gpu.sequence_overhead``) and the GPU's
power while it waits on the host (``gpu.host_wait_share``), and the v2 rows predicted under it."""
from __future__ import annotations

import pytest

from accelsim import api
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
    host = 7.19e-3 + 0.349e-3 * batch  # the preset's two figures
    assert with_host.step_overhead_s == pytest.approx(host)
    assert with_host.latency_s - without.latency_s == pytest.approx(host, rel=1e-9)


def test_the_gpu_waits_on_the_host_at_its_wait_share():
    # Hand-worked: energy above idle while waiting = share x (TDP - idle) x host seconds x chips;
    # at 0.206 on the H100 (TDP 700 W) that is idle + 0.206 x (700 - idle), ~200 W, per GPU.
    hw = api.hardware_under("h100-sxm", "vllm-0.5.4")
    result = api.simulate(MODEL, hw, Workload("decode", batch=128, context=458))
    wait_w = 0.206 * (hw.power.tdp - hw.power.static)
    assert result.energy_j["host_wait"] == pytest.approx(wait_w * result.step_overhead_s)
    assert 180.0 < hw.power.static + wait_w < 220.0
    # the step's average power stays between idle and TDP, and below the GPU-busy part's
    assert hw.power.static < result.power_w < hw.power.tdp


def test_configs_as_calibrated_have_no_sequence_or_wait_terms():
    # Defaults 0: a chip without the runtime keeps its step exactly, with no waiting energy.
    for name in ("h100-sxm", "a100-sxm"):
        hw = api.hardware_under(name, None)
        assert hw.gpu.sequence_overhead == 0.0 and hw.gpu.host_wait_share == 0.0
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
    # The 70B (H100 TP4, A100 TP8) and 405B (H100 TP8 PP2) runs, never fitted: J/token within
    # 20 % median (46.6 % under the V1 preset; docs/validation.md "Power and energy").
    rows = [p for p in energy.load() if p.runtime == "vllm-0.5.4" and p.subset == "holdout"
            and p.batch in (64, 127, 128, 507, 510, 509)]
    assert len(rows) >= 6 and {p.model for p in rows} == {"llama-3.1-70b", "llama-3.1-405b"}
    frame = energy.table(rows)
    assert frame["error"].abs().median() <= 0.20


def test_a_preset_wait_share_above_1_is_one_line(tmp_path, capsys):
    from accelsim.cli import main
    from accelsim.config import loader
    text = loader.bundled_names("runtimes")["vllm-0.5.4"].read_text()
    bad = tmp_path / "rt.yaml"
    bad.write_text(text.replace("host_wait_share: 0.206", "host_wait_share: 1.5"))
    code = main(["serve", "--model", MODEL, "--runtime", str(bad), "--requests", "5",
                 "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "rt.yaml" in err and "host_wait_share" in err and len(err.splitlines()) == 1
