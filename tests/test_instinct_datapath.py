"""Measured GEMM datapath shares of the Instinct configs (issue 17, Instinct dense pass;
docs/validation.md, "Instinct dense GEMMs: measured datapath shares"): bf16 from the MAMF table,
fp8 from measured hipBLASLt rates (MI300X) or AMD's stress-test floor (MI325X); every other format keeps the family's fitted share."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from accelsim.api import resolve_hardware
from accelsim.graph import MatMul, Tensor
from accelsim.pipeline import cost_alone
from accelsim.validate.predict import gemm_op

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name, measured", [
    ("mi300x", {"bf16": 668.4 / 1307.4, "fp16": 668.4 / 1307.4, "fp8": 1222.9 / 2614.9}),
    ("mi325x", {"bf16": 784.9 / 1307.4, "fp16": 784.9 / 1307.4, "fp8": 1438 / 2614.9}),
    ("mi355x", {"bf16": 1565.0 / 2516.6, "fp16": 1565.0 / 2516.6}),
])
def test_the_shares_are_the_measured_rates_over_the_configured_peaks(name, measured):
    hw = resolve_hardware(name)
    assert set(hw.efficiency.datapath) == set(measured)
    for dtype, share in measured.items():
        assert hw.efficiency.datapath[dtype] == pytest.approx(share, abs=6e-4)  # three decimals
    assert hw.efficiency.compute == pytest.approx(0.300)  # the family fit is untouched


def test_a_large_fp8_gemm_on_mi325x_costs_its_measured_share():
    # Hand-worked: Llama-2-70B's fused gate+up projection over 8,192 prefill tokens on one
    # MI325X, 8192 x 57344 x 8192 (N = 2 x 28,672): 2 x 8192 x 57344 x 8192 = 7.696e12 FLOPs at
    # 0.550 x 2614.9 TFLOPS = 1438 TFLOPS -> 5.352 ms (the family share, 0.300, would give 9.81 ms).
    hw = resolve_hardware("mi325x")
    gemm = gemm_op(8192, 57344, 8192, "fp8")
    assert gemm.flops == pytest.approx(7.696e12, rel=1e-3)
    assert cost_alone(gemm, hw).time_s == pytest.approx(5.352e-3, rel=0.03)


def _int8_gemm(n: int) -> MatMul:
    a = Tensor("a", (n, n), "int8", "activation")
    b = Tensor("b", (n, n), "int8", "weight")
    return MatMul("gemm", (a, b), (Tensor("c", (n, n), "bf16", "activation"),), m=n, k=n, n=n)


@pytest.mark.parametrize("dtype, share", [("bf16", 0.600), ("fp8", 0.550), ("int8", 0.300)])
def test_each_format_runs_at_its_own_share_and_an_unmeasured_one_at_the_fitted(dtype, share):
    hw = resolve_hardware("mi325x")
    n = 16384  # large enough for tile padding and partial waves to vanish
    gemm = gemm_op(n, n, n, dtype) if dtype != "int8" else _int8_gemm(n)
    achieved = gemm.flops / cost_alone(gemm, hw).time_s
    assert achieved / hw.matrix_peak(dtype) == pytest.approx(share, rel=0.03)


def test_mi325x_fp8_gemm_is_faster_than_mi300x_by_the_ratio_of_their_shares():
    # Same silicon and peak: the two configs differ only in the measured share (0.550 / 0.468).
    gemm = gemm_op(16384, 16384, 16384, "fp8")
    mi300x = cost_alone(gemm, resolve_hardware("mi300x")).time_s
    mi325x = cost_alone(gemm, resolve_hardware("mi325x")).time_s
    assert mi300x / mi325x == pytest.approx(0.550 / 0.468, rel=1e-3)  # fixed launch costs aside


def _with_datapath(write, datapath) -> Path:
    data = yaml.safe_load((REPO / "hw_configs" / "mi325x.yaml").read_text())
    data["efficiency"]["datapath"] = datapath
    return write("mi325x.yaml", yaml.safe_dump(data))


@pytest.mark.parametrize("datapath, names", [
    ({"fp8": 1.4}, "efficiency.datapath.fp8"),   # above the peak
    ({"fp8": 0}, "efficiency.datapath.fp8"),     # a datapath that never finishes
    ({"fp8": -0.5}, "efficiency.datapath.fp8"),
    ({"fp8": "fast"}, "efficiency.datapath.fp8"),
    ({"fp9": 0.5}, "efficiency.datapath"),        # no such format
    ({"mxfp4": 0.5}, "efficiency.datapath.mxfp4"),  # CDNA 3 has no FP4 datapath
])
def test_a_bad_share_is_refused_in_one_line(cli, write, datapath, names):
    code, out, err = cli("run", "--model", "llama-3.2-1b", "--hw", str(_with_datapath(write, datapath)))
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and names in lines[0]
    assert "Traceback" not in err
