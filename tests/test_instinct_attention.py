"""Issue 17 (third pass): decode attention on Instinct.

MI355X's MLA decode kernel (AITER, FP8 latent cache) has its own measured share of the FP8 peak
(``efficiency.decode_attention``), and the 2025 SGLang release whose triton decode kernel the older
InferenceX rows ran is a points-file runtime whose attention share the family fit sets."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from accelsim.api import simulate
from accelsim.hardware import load_hardware
from accelsim.sim.runtime import RuntimeGpu
from accelsim.transform import Parallelism
from accelsim.validate.calibrate import _predicted, fitted_runtimes
from accelsim.validate.points import Catalogue, Runtime, select
from accelsim.validate.predict import predict_measured
from accelsim.workload import Workload

# DeepSeek-V3 absorbed MLA decode: 128 query heads over a 576-wide latent (512 + 64 RoPE) for
# the scores and the 512-wide latent for the values, 2 FLOPs per MAC.
FLOPS_PER_CACHED_TOKEN = 128 * 2 * (576 + 512)
MI355X_FP8 = 5033.2e12
AITER_SHARE = 0.232  # hw_configs/mi355x.yaml efficiency.decode_attention (ROCm/aiter pull 3072)
PER_RANK = 256       # 2048 sequences over 8 ranks of attention data parallelism


def _sdpa(hw, batch: int, context: int):
    """Layer 0's decode attention op of DeepSeek-V3 on 8 chips (dp-attention 8, ep 8)."""
    r = simulate("deepseek-v3", hw, Workload("decode", batch=batch, prompt=context, context=context),
                 weight_dtype="mxfp4", act_dtype="mxfp4", kv_dtype="fp8",
                 parallelism=Parallelism(tp=1, dp=8, ep=8), allow_long_context=True)
    return next(o for o in r.ops if o.op == "layers.0.attn.sdpa")


def test_mla_decode_time_grows_with_context_at_the_measured_rate():
    """Hand-worked: 256 sequences x 278,528 FLOPs per cached token at 23.2 % of 5,033 TFLOPS
    is 61.06 ns per cached token per layer; the step is compute-bound there."""
    hw = load_hardware("mi355x")
    short, long = _sdpa(hw, 8 * PER_RANK, 8192), _sdpa(hw, 8 * PER_RANK, 16384)
    per_token = (long.time_s - short.time_s) / 8192
    expected = PER_RANK * FLOPS_PER_CACHED_TOKEN / (MI355X_FP8 * AITER_SHARE)
    assert expected == pytest.approx(61.06e-9, rel=1e-3)
    assert per_token == pytest.approx(expected, rel=1e-6)
    assert long.bound == "compute"


def test_reproduces_the_sourced_kernel_time():
    """ROCm/aiter pull 3072 (MI355, 128 heads, 8-bit KV): the ASM kernel takes 1,422 us for 256
    sequences of 23,333 cached tokens -- the figure the share was derived from."""
    op = _sdpa(load_hardware("mi355x"), 8 * PER_RANK, 23333)
    assert op.time_s == pytest.approx(1422e-6, rel=0.01)


def test_attention_share_replaces_the_datapath_share_only_where_stated():
    """Without ``efficiency.decode_attention`` the kernel runs at ``efficiency.compute`` like a GEMM:
    the compute time scales by exactly the ratio of the two shares."""
    hw = load_hardware("mi355x")
    plain = hw.model_copy(update={"efficiency": hw.efficiency.model_copy(update={"decode_attention": None})})
    with_share, without = _sdpa(hw, 8 * PER_RANK, 8192), _sdpa(plain, 8 * PER_RANK, 8192)
    assert with_share.compute_s / without.compute_s == pytest.approx(
        hw.efficiency.compute / AITER_SHARE, rel=1e-9)


@pytest.mark.parametrize("name", ["h100-sxm", "h200", "b200", "gb200", "b300", "gb300", "mi300x", "mi325x"])
def test_no_other_chip_states_an_attention_share(name):
    """The measured share is MI355X's (its kernel on its chip); every other config keeps
    attention at its datapath's share, so their figures do not move."""
    assert load_hardware(name).efficiency.decode_attention is None


def test_attention_share_is_a_fraction():
    hw = load_hardware("mi355x")
    with pytest.raises(ValidationError):
        type(hw.efficiency).model_validate({**hw.efficiency.model_dump(), "decode_attention": 1.5})


def test_a_fitted_runtime_needs_its_start_value():
    with pytest.raises(ValidationError, match="attention_bandwidth"):
        Runtime(gpu=RuntimeGpu(attention="grouped"), fitted=True, source="a test runtime")


def test_fitted_runtime_belongs_to_the_instinct_calibration_rows_only():
    """The triton-era runtime is fitted on, and applies to, the 2025-10-06 aggregated MI355X rows
    (calibration); no held-out row names it."""
    catalogue = Catalogue()
    calibration = [p for p in select(catalogue, "calibration") if p.hw == "mi355x"]
    fitted = fitted_runtimes(calibration, catalogue)
    assert list(fitted) == ["sglang-0.5.2-rocm-triton"]
    named = [p for p in calibration if p.runtime in fitted]
    assert len(named) == 8 and all(p.dtype == "bf16" for p in named)  # no --kv-cache-dtype then
    assert not [p for p in select(catalogue, "holdout") if p.runtime in fitted]


def test_fit_trial_share_moves_the_triton_rows_only():
    """A slower trial share slows a row that ran the triton kernel; at the file's share the
    trial prediction is the catalogue's own."""
    catalogue = Catalogue()
    calibration = [p for p in select(catalogue, "calibration") if p.hw == "mi355x"]
    fitted = fitted_runtimes(calibration, catalogue)
    row = next(p for p in calibration if p.runtime in fitted and p.batch == 4 and p.output_len == 1024)
    hw = load_hardware("mi355x")
    share = fitted[row.runtime].gpu.attention_bandwidth
    assert share is not None
    at_file = _predicted(row, hw, catalogue, fitted, {row.runtime: share})
    assert at_file == pytest.approx(predict_measured(row, hw, catalogue).value, rel=1e-12)
    assert _predicted(row, hw, catalogue, fitted, {row.runtime: share / 2}) > at_file


def test_other_kinds_refuse_an_attention_share(tmp_path, cli):
    """One clear line and exit 2 when a non-GPU config states efficiency.decode_attention."""
    src = Path(__file__).resolve().parents[1] / "hw_configs" / "tpu-v5e.yaml"
    data = yaml.safe_load(src.read_text())
    data["efficiency"]["decode_attention"] = 0.5
    path = tmp_path / "tpu.yaml"
    path.write_text(yaml.safe_dump(data))
    code, out, err = cli("run", "--model", "llama-3.1-8b", "--hw", str(path))
    assert code == 2
    assert "efficiency.decode_attention" in err and "Traceback" not in out + err


def test_prefill_attention_keeps_the_datapath_share():
    """The measured share is a decode kernel's: a prefill's attention (thousands of queries per
    sequence) runs the prefill kernel and is costed as before."""
    hw = load_hardware("mi355x")
    plain = hw.model_copy(update={"efficiency": hw.efficiency.model_copy(update={"decode_attention": None})})

    def prefill_sdpa(chip):
        r = simulate("deepseek-v3", chip, Workload("prefill", batch=1, prompt=4096, context=0),
                     weight_dtype="mxfp4", act_dtype="mxfp4", kv_dtype="fp8",
                     parallelism=Parallelism(tp=8, ep=8))
        return next(o for o in r.ops if o.op == "layers.0.attn.sdpa")

    assert prefill_sdpa(hw).time_s == prefill_sdpa(plain).time_s
