"""The three model terms issue 17's accuracy pass added (docs/validation.md, "The README's validate
commands"): a fixed time per wave of attention work units (``gpu.attention_unit_overhead``), a
measured per-datapath compute share (``efficiency.datapath``) and the collective library's share
of the link rate (``interconnect.efficiency``)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from holdout_groups import holdout_group_median

from accelsim.api import resolve_hardware, simulate
from accelsim.hardware import interconnect
from accelsim.pipeline import cost_alone
from accelsim.validate.predict import Calibration, calibrated, current_calibration, gemm_op
from accelsim.workload import Workload

REPO = Path(__file__).resolve().parent.parent


def _gpu(name: str = "h100-sxm", **gpu):
    hw = resolve_hardware(name)
    return hw.model_copy(update={"gpu": hw.gpu.model_copy(update=gpu)})


FP8 = {"weight_dtype": "fp8", "act_dtype": "fp8", "kv_dtype": "fp8"}


def _attention(result) -> tuple[float, float]:
    """(summed time, summed fixed overhead) of a step's attention ops."""
    ops = [op for op in result.ops if op.kind == "attention"]
    return sum(op.time_s for op in ops), sum(op.overhead_s for op in ops)


def test_unit_overhead_is_paid_once_per_wave_of_work_units():
    # Llama-2-7B (MHA, 32 heads) decoding 896 sequences: 896 x 32 = 28,672 (sequence, head) units
    # per layer, 218 waves on 132 SMs, 32 layers.
    unit = 1e-6
    decode = Workload("decode", batch=896, prompt=192, context=192)
    plain = _attention(simulate("llama-2-7b", _gpu(attention_unit_overhead=0.0), decode, **FP8))
    slow = _attention(simulate("llama-2-7b", _gpu(attention_unit_overhead=unit), decode, **FP8))
    waves = -(-896 * 32 // 132) * 32
    assert slow[1] - plain[1] == pytest.approx(waves * unit, rel=1e-9)
    assert slow[0] - plain[0] == pytest.approx(waves * unit, rel=1e-9)


def test_it_costs_many_short_contexts_more_than_few_long_ones_with_the_same_kv_bytes():
    # The same cached tokens (896 x 192 = 56 x 3072): the KV bytes agree, the units do not.
    hw = _gpu(attention_unit_overhead=1e-6)
    short = _attention(simulate("llama-2-7b", hw, Workload("decode", batch=896, prompt=192, context=192), **FP8))
    long = _attention(simulate("llama-2-7b", hw, Workload("decode", batch=56, prompt=3072, context=3072), **FP8))
    assert short[1] > 5 * long[1]


def test_default_is_zero_and_calibration_round_trips_it():
    assert resolve_hardware("b200").gpu.attention_unit_overhead == 0.0
    hw = resolve_hardware("h100-sxm")
    cal = Calibration(0.6, 0.8, 4e-6, 1e-4, 2e-3, 1.5e-6)
    assert current_calibration(calibrated(hw, cal)) == cal
    with pytest.raises(ValueError, match="attention unit overhead"):
        calibrated(resolve_hardware("tpu-v4"), Calibration(0.7, 0.8, 5e-6, unit_s=1e-6))


def test_a_16_bit_gemm_runs_at_its_measured_share_and_fp8_at_the_fitted_one():
    hw = resolve_hardware("h100-sxm")
    assert hw.efficiency.datapath["bf16"] == pytest.approx(0.801)  # MAMF 792.1 / 989 TFLOPS
    n = 16384  # large enough for tile padding and partial waves to vanish
    for dtype, share in (("fp16", hw.efficiency.datapath["fp16"]), ("fp8", hw.efficiency.compute)):
        gemm = gemm_op(n, n, n, dtype)
        achieved = gemm.flops / cost_alone(gemm, hw).time_s
        assert achieved / hw.matrix_peak(dtype) == pytest.approx(share, rel=0.03)


def test_datapath_share_is_refused_where_no_backend_reads_it(cli, write):
    data = yaml.safe_load((REPO / "hw_configs" / "tpu-v5e.yaml").read_text())
    data["efficiency"]["datapath"] = {"bf16": 0.8}
    code, _out, err = cli("run", "--model", "llama-3.2-1b", "--hw", str(write("tpu.yaml", yaml.safe_dump(data))))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "efficiency.datapath" in lines[0] and "only gpu" in lines[0]


def test_datapath_share_of_a_missing_datapath_is_refused(cli, write):
    data = yaml.safe_load((REPO / "hw_configs" / "a100-sxm.yaml").read_text())
    data["efficiency"]["datapath"] = {"fp8": 0.7}  # A100 has no FP8 tensor cores
    code, _out, err = cli("run", "--model", "llama-3.2-1b", "--hw", str(write("a100.yaml", yaml.safe_dump(data))))
    assert code == 2
    assert "efficiency.datapath.fp8" in err and "allowed:" in err


def test_link_efficiency_divides_the_bandwidth_term_only():
    links = resolve_hardware("h100-sxm").interconnect
    assert links is not None and links.efficiency == pytest.approx(370 / 450, rel=1e-3)
    line_rate = links.model_copy(update={"efficiency": 1.0})
    payload = 64e6
    slow = interconnect.collective_terms("all_reduce", 8, payload, links, "ring")
    fast = interconnect.collective_terms("all_reduce", 8, payload, line_rate, "ring")
    fixed = interconnect.collective_terms("all_reduce", 8, 0.0, links, "ring").seconds
    assert slow.sent == fast.sent  # the same bytes, moved slower
    assert slow.seconds - fixed == pytest.approx((fast.seconds - fixed) / links.efficiency, rel=1e-9)


@pytest.mark.parametrize("hw, metric", [("h200", "decode_throughput"), ("h200", "bandwidth"),
                                        ("h100-sxm", "prefill_throughput")])
def test_the_groups_this_pass_closed_stay_within_the_bound(hw, metric):
    # The held-out rows of the three groups `validate --subset holdout` failed on before these
    # terms (22.4 %, 15.3 %, 17.3 %); the measured values come from the CSVs, never retyped.
    assert holdout_group_median(hw, metric) <= 0.15
