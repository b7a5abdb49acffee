"""`gpu.attention`: how the attention kernel treats grouped-query heads.

A GQA-aware kernel (``grouped``) streams each KV head's cache once per sequence; a 2023-style
masked-MHA decode kernel (``per_query_head``) streams it once per query head.  The difference is
a property of the kernel library, so it must change GQA decode and nothing else.
"""
from __future__ import annotations

import pytest
import yaml

from accelsim.api import resolve_hardware, simulate
from accelsim.config.loader import bundled_names
from accelsim.errors import ConfigError
from accelsim.hardware import parse_hardware
from accelsim.model.spec import load_model
from accelsim.validate.points import Catalogue
from accelsim.validate.predict import under_runtime
from accelsim.workload import Workload


def _with_attention(kernel: str):
    hw = resolve_hardware("h100-sxm")
    return hw.model_copy(update={"gpu": hw.gpu.model_copy(update={"attention": kernel})})


def _attention_hbm(model: str, kernel: str, workload: Workload) -> tuple[float, float]:
    result = simulate(model, _with_attention(kernel), workload)
    ops = [op for op in result.ops if op.kind == "attention"]
    return sum(op.bytes["hbm"] for op in ops), result.latency_s


def test_per_query_head_streams_the_cache_once_per_query_head():
    spec = load_model("llama-3.1-8b")
    group = spec.attention.num_heads // spec.attention.num_kv_heads
    assert group == 4
    decode = Workload("decode", batch=16, prompt=4096, context=4096)
    grouped, fast = _attention_hbm("llama-3.1-8b", "grouped", decode)
    per_head, slow = _attention_hbm("llama-3.1-8b", "per_query_head", decode)
    # the cached K/V dominates a long-context decode step's attention bytes
    assert per_head / grouped == pytest.approx(group, rel=0.01)
    assert slow > fast


def test_multi_head_models_and_the_default_are_unaffected():
    decode = Workload("decode", batch=8, prompt=2048, context=2048)
    mha = [_attention_hbm("llama-2-7b", kernel, decode) for kernel in ("grouped", "per_query_head")]
    assert mha[0] == pytest.approx(mha[1])
    assert resolve_hardware("h100-sxm").gpu.attention == "grouped"


def test_bad_attention_kernel_is_one_line_error():
    doc = yaml.safe_load(bundled_names("hw_configs")["h100-sxm"].read_text())
    doc["gpu"]["attention"] = "per_head"
    with pytest.raises(ConfigError) as err:
        parse_hardware(doc, "h100-bad.yaml")
    line = err.value.one_line()
    assert "gpu.attention" in line and "grouped" in line and "\n" not in line


def test_points_runtime_applies_its_kernel_to_the_point_only():
    catalogue = Catalogue()
    point = next(p for p in catalogue.points if p.runtime is not None)
    hw = resolve_hardware(point.hw)
    assert under_runtime(hw, catalogue.runtime(point)).gpu.attention == "per_query_head"
    assert hw.gpu.attention == "grouped"
    with pytest.raises(ConfigError):
        under_runtime(resolve_hardware("tpu-v4"), catalogue.runtime(point))


def test_unknown_runtime_name_is_refused(tmp_path):
    text = (Catalogue().path).read_text().replace("runtime: tensorrt-llm-2023", "runtime: trtllm", 1)
    bad = tmp_path / "points.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigError) as err:
        Catalogue(bad)
    assert "runtime 'trtllm'" in err.value.one_line() and "tensorrt-llm-2023" in err.value.one_line()


def test_attention_dtype_runs_fp8_attention_on_the_fp16_datapath():
    # a 4096-token fp8 prefill is compute-bound in attention: the fp16 datapath has half the
    # fp8 peak (989 vs 1979 TFLOPS, H100 SXM datasheet) and reaches its own measured share of it
    # (efficiency.datapath, 80 %) where fp8 reaches the fitted efficiency.compute, so attention
    # takes 2 x compute / datapath share as long
    hw = resolve_hardware("h100-sxm")
    slower = 2.0 * hw.efficiency.compute / hw.efficiency.datapath["fp16"]
    wide = hw.model_copy(update={"gpu": hw.gpu.model_copy(update={"attention_dtype": "fp16"})})
    prefill = Workload("prefill", batch=1, prompt=4096)
    spec = load_model("llama-3.1-8b")
    fp8 = spec.model_copy(update={"dtypes": spec.dtypes.model_copy(update={"activation": "fp8"})})

    def attention(chip, model):
        result = simulate(model, chip, prefill)
        return sum(op.compute_s for op in result.ops if op.kind == "attention")

    assert attention(wide, fp8) / attention(hw, fp8) == pytest.approx(slower, rel=0.05)
    # activations already 16-bit: nothing to widen
    assert attention(wide, spec) == pytest.approx(attention(hw, spec))


def test_runtime_must_set_something(tmp_path):
    text = Catalogue().path.read_text()
    start = text.index("    gpu: {attention: per_query_head")
    end = text.index("\n", start)
    bad = tmp_path / "points.yaml"
    bad.write_text(text[:start] + "    gpu: {}" + text[end:])
    with pytest.raises(ConfigError) as err:
        Catalogue(bad)
    line = err.value.one_line()
    assert "attention" in line and "unfused" in line and "\n" not in line
