"""Issue 17's second accuracy pass (docs/validation.md, "Second accuracy pass"): all-reduces on an
NVSwitch board cost the measured ring latency, a switch offers no log-depth tree, and the
InferenceX FP4 points run the checkpoints' FP4 activations while attention stays at the KV
cache's format."""
from __future__ import annotations

import pytest
import yaml
from holdout_groups import holdout_group_median

from accelsim.api import resolve_hardware, simulate
from accelsim.graph import Attention, Tensor
from accelsim.hardware import interconnect
from accelsim.transform import Parallelism
from accelsim.validate.points import VALIDATION_DIR, Catalogue
from accelsim.workload import Workload

# NCCL ring all-reduce of 8-128 B, one channel, on a DGX A100 (nccl-tests issue #123), in us.
MEASURED_RING_US = {2: 10.0, 3: 13.76, 4: 16.88, 5: 20.8, 6: 25.2, 7: 29.5, 8: 33.7}


@pytest.mark.parametrize("hw", ["a100-sxm", "h100-sxm", "h200"])
def test_a_small_all_reduce_costs_the_measured_ring_latency(hw):
    links = resolve_hardware(hw).interconnect
    assert links is not None
    for gpus, measured in MEASURED_RING_US.items():
        seconds = interconnect.collective_terms("all_reduce", gpus, 128.0, links, "ring").seconds
        assert seconds * 1e6 == pytest.approx(measured, abs=0.7), gpus


def test_a_switch_offers_the_ring_alone_for_reductions():
    h100 = resolve_hardware("h100-sxm")
    r = simulate("llama-3.1-70b", h100, Workload("decode", batch=8, context=2048), parallelism=Parallelism(tp=8))
    reductions = [c.mapping for c in r.ops if c.kind == "collective" and c.mapping.startswith("all_reduce")]
    assert reductions and all(" ring " in m for m in reductions), set(reductions)


def _attention(kv: str, act: str) -> Attention:
    q = Tensor("q", (4, 1, 128, 576), act, "activation")
    k = Tensor("k", (4, 4096, 1, 576), kv, "kv_cache")
    out = Tensor("o", (4, 1, 128, 512), act, "activation")
    return Attention("sdpa", (q, k), (out,), batch=4, heads=128, kv_heads=1, q_len=1, kv_len=4096,
                     qk_dim=576, v_dim=512)


def test_attention_runs_at_the_wider_of_the_queries_and_the_cache():
    assert _attention("fp8", "nvfp4").compute_dtype == "fp8"  # FP4 activations, FP8 cache
    assert _attention("fp8", "bf16").compute_dtype == "bf16"
    assert _attention("bf16", "fp8").compute_dtype == "bf16"
    assert _attention("fp8", "fp8").compute_dtype == "fp8"


def test_fp4_activations_speed_the_gemms_not_the_attention():
    wl = Workload("decode", batch=64, prompt=4096, context=4096)
    par = Parallelism(tp=8, ep=8)
    runs = {act: simulate("deepseek-v3", "b200", wl, weight_dtype="nvfp4", act_dtype=act, kv_dtype="fp8",
                          parallelism=par) for act in ("fp8", "nvfp4")}
    attention = {act: [o for o in r.ops if o.kind == "attention"] for act, r in runs.items()}
    assert {o.dtype for o in attention["nvfp4"]} == {"fp8"}
    assert sum(o.compute_s for o in attention["nvfp4"]) == pytest.approx(sum(o.compute_s for o in attention["fp8"]))
    # The linear layers run on the narrower datapath (nvfp4 x nvfp4; nvfp4 x fp8 runs at fp8).
    experts = {act: {o.dtype for o in r.ops if o.kind == "matmul" and ".experts." in o.op} for act, r in runs.items()}
    assert experts == {"fp8": {"fp8"}, "nvfp4": {"nvfp4"}}
    assert runs["nvfp4"].latency_s < runs["fp8"].latency_s


def test_fp4_points_take_the_formats_the_serving_description_names():
    # One description of InferenceX's FP4 checkpoints: the step-level points and the serving
    # replay must not cost the same rows in different formats.
    serving = yaml.safe_load((VALIDATION_DIR / "serving.yaml").read_text())
    precisions = serving["sources"]["inferencex"]["precisions"]["fp4"]
    fp4 = [p for p in Catalogue().points if p.weight_dtype in ("nvfp4", "mxfp4")]
    assert fp4
    for p in fp4:
        named = precisions[p.expect["hardware"]]
        assert (p.weight_dtype, p.act_dtype) == (named["weight"], named["act"]), p.id
        # The KV format is a launch flag, not the checkpoint's: the MI355X runs before InferenceX
        # pull 330 kept SGLang's bf16 cache, which their points-file runtime records (issue 17's
        # third pass); every other row takes the description's.
        if p.runtime != "sglang-0.5.2-rocm-triton":
            assert p.dtype == named["kv"], p.id
        else:
            assert p.dtype == "bf16", p.id


@pytest.mark.parametrize("hw, metric", [("h200", "prefill_throughput"), ("b300", "tpot")])
def test_the_groups_this_pass_closed_stay_within_the_bound(hw, metric):
    # Held out, and failing before this pass (15.7 %, 16.0 %); measured values read from the CSVs.
    assert holdout_group_median(hw, metric) <= 0.15
