"""Issue 17: Blackwell / Instinct / TPU7x configs with interconnects, block-scaled FP4/FP6/FP8.

Byte counts are worked by hand from the format definitions (NVFP4: 16 FP4 values share one FP8
scale byte; MX formats: 32 values share one E8M0 scale byte); datapath rates from the configs'
published peaks."""
from __future__ import annotations

import json

import pytest

from accelsim import dtypes
from accelsim.api import resolve_hardware
from accelsim.graph import MatMul, Tensor
from accelsim.pipeline import cost_alone

NEW = ("gb200", "b300", "gb300", "mi325x", "mi355x", "tpu-v7")
MULTI_GPU = ("b200", "mi300x", *NEW)


# --- block-scaled formats: bytes -----------------------------------------------------------

@pytest.mark.parametrize("dtype, expected", [
    # 4096 x 4096 = 16,777,216 values.
    ("nvfp4", 16_777_216 // 2 + 16_777_216 // 16),      # 4-bit values + 1 byte per 16
    ("mxfp4", 16_777_216 // 2 + 16_777_216 // 32),      # 4-bit values + 1 byte per 32
    ("mxfp6", 16_777_216 * 6 // 8 + 16_777_216 // 32),  # 6-bit values + 1 byte per 32
    ("mxfp8", 16_777_216 + 16_777_216 // 32),           # 8-bit values + 1 byte per 32
])
def test_block_scaled_tensor_bytes_count_their_scales(dtype, expected):
    t = Tensor("w", (4096, 4096), dtype, "weight")
    assert t.nbytes == expected
    # 9,437,184 B for nvfp4: 12.5 % above plain 4-bit storage.
    if dtype == "nvfp4":
        assert t.nbytes == 9_437_184


def test_block_scaled_bits_per_value():
    assert dtypes.bits("nvfp4") == 4.5 and dtypes.bits("mxfp4") == 4.25
    assert dtypes.bits("mxfp6") == 6.25 and dtypes.bits("mxfp8") == 8.25
    assert dtypes.element_bits("nvfp4") == 4 and dtypes.is_float("mxfp4")
    # Tensor-parallel partial sums of any block-scaled matmul are reduced in bf16.
    assert all(dtypes.reduction_dtype(d) == "bf16" for d in dtypes.BLOCK_SCALED)


def test_run_weight_bytes_scale_with_the_format(cli):
    """The weight footprint of a run is the model's weights at 4.5 bits (nvfp4) vs 8 (fp8),
    except what a model keeps in another format (none for Llama 3.2 1B: every weight tensor
    follows --weight-dtype)."""
    def weights(dtype):
        code, out, err = cli("run", "--model", "llama-3.2-1b", "--hw", "b200", "--weight-dtype", dtype,
                             "--json")
        assert code == 0, err
        return json.loads(out)["footprint_bytes"]["weight"]
    assert weights("nvfp4") / weights("fp8") == pytest.approx(4.5 / 8, rel=1e-9)
    assert weights("mxfp4") / weights("fp8") == pytest.approx(4.25 / 8, rel=1e-9)


# --- datapath rates per chip ---------------------------------------------------------------

@pytest.mark.parametrize("hw, dtype, runs_on, tflops", [
    ("b200", "nvfp4", "nvfp4", 9000), ("b200", "mxfp6", "mxfp6", 4500),
    ("gb300", "nvfp4", "nvfp4", 15000), ("b300", "mxfp4", "mxfp4", 14000),
    ("h100-sxm", "nvfp4", "fp8", 1978.9),   # Hopper has no FP4 tensor cores: the fp8 path
    ("h100-sxm", "mxfp8", "fp8", 1978.9),   # per-block scales outside the fp8 MMA
    ("a100-sxm", "nvfp4", "bf16", 312),     # no fp8 either: the 16-bit float path
    ("mi300x", "mxfp4", "fp8", 2614.9),     # CDNA 3: no FP4
    ("mi355x", "mxfp4", "mxfp4", 10066.3), ("mi355x", "mxfp6", "mxfp6", 10066.3),
    ("tpu-v7", "nvfp4", "fp8", 4614),
])
def test_block_scaled_datapath_per_chip(hw, dtype, runs_on, tflops):
    chip = resolve_hardware(hw)
    assert chip.fallback_dtype(dtype) == runs_on
    assert chip.matrix_peak(dtype) == pytest.approx(tflops * 1e12)


def _gemm(dtype: str, m: int = 8192, n: int = 8192, k: int = 8192) -> MatMul:
    a = Tensor("a", (m, k), dtype, "activation")
    b = Tensor("b", (k, n), dtype, "weight")
    c = Tensor("c", (m, n), "bf16", "activation")
    return MatMul("gemm", (a, b), (c,), m=m, k=k, n=n)


def test_fp4_gemm_is_faster_only_where_fp4_tensor_cores_exist():
    """A compute-bound 8192^3 GEMM: nvfp4 about twice as fast as fp8 on B200 (9000 vs 4500
    TFLOPS), no faster than fp8 on H100 (same datapath; fewer bytes do not help a compute-bound
    GEMM)."""
    b200, h100 = resolve_hardware("b200"), resolve_hardware("h100-sxm")
    speedup_b200 = cost_alone(_gemm("fp8"), b200).time_s / cost_alone(_gemm("nvfp4"), b200).time_s
    speedup_h100 = cost_alone(_gemm("fp8"), h100).time_s / cost_alone(_gemm("nvfp4"), h100).time_s
    assert 1.8 < speedup_b200 <= 2.0 + 1e-9
    assert speedup_h100 == pytest.approx(1.0, abs=0.02)


# --- the configs ---------------------------------------------------------------------------

@pytest.mark.parametrize("hw", MULTI_GPU)
def test_each_config_runs_a_multi_chip_decode(cli, hw):
    code, out, err = cli("run", "--model", "llama-3.1-70b", "--hw", hw, "--chips", "8", "--batch", "16",
                         "--context", "1024", "--weight-dtype", "fp8", "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["chips"] == 8
    assert r["energy_j"]["interconnect"] > 0
    assert r["tokens_per_s"] > 0


@pytest.mark.parametrize("hw, chips, ok", [("b200", 16, False), ("mi355x", 16, False),
                                           ("gb200", 16, True), ("gb300", 64, True)])
def test_nvlink_domain_bounds_the_tensor_parallel_group(cli, hw, chips, ok):
    """An HGX board joins 8 GPUs; an NVL72 rack 72: a 16-way all-reduce runs only on the rack."""
    code, out, err = cli("run", "--model", "llama-3.1-70b", "--hw", hw, "--chips", str(chips),
                         "--batch", "16", "--context", "256", "--weight-dtype", "fp8")
    if ok:
        assert code == 0, err
    else:
        assert code == 2 and "interconnect.domain" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("hw, bf16, hbm_tbs, hbm_gb, tdp", [
    ("gb200", 2500, 8.0, 186, 1200), ("b300", 2250, 8.0, 270, 1100), ("gb300", 2500, 8.0, 279, 1400),
    ("mi325x", 1307.4, 6.0, 256, 1000), ("mi355x", 2516.6, 8.0, 288, 1400),
])
def test_new_gpu_headline_figures(hw, bf16, hbm_tbs, hbm_gb, tdp):
    chip = resolve_hardware(hw)
    assert chip.matrix_peak("bf16") == pytest.approx(bf16 * 1e12)
    assert chip.memory.hbm.bandwidth == pytest.approx(hbm_tbs * 1e12)
    assert chip.memory.hbm.capacity == pytest.approx(hbm_gb * 1e9)
    assert chip.power.tdp == pytest.approx(tdp)


@pytest.mark.parametrize("command", [
    ("run", "--context", "128"),
    ("compare", "--hw", "h100-sxm", "--context", "128"),
    ("serve", "--requests", "3", "--rate", "2", "--rates", "2", "--prompt", "64", "--output", "4"),
])
def test_weight_dtype_nvfp4_on_the_commands(cli, tmp_path, command):
    args = [*command, "--model", "llama-3.2-1b", "--hw", "b200", "--weight-dtype", "nvfp4",
            "--kv-dtype", "mxfp8"]
    if command[0] in ("compare", "serve"):
        args += ["--out", str(tmp_path / command[0])]
    code, out, err = cli(*args)
    assert code == 0, err
