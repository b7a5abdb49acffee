"""Physical bounds a user checks: never faster than the roofline; the expected regimes."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accelsim import hardware
from accelsim.api import simulate
from accelsim.graph import Graph, MatMul, Tensor
from accelsim.sim.mapper import best_cost
from accelsim.workload import Workload

HBM_CHIPS = ("h100-sxm", "tpu-v5e")


def _offchip_bw(chip):
    return chip.memory.hbm.bandwidth


def test_decode_batch1_on_h100_is_memory_bound_and_not_faster_than_weights_over_bandwidth():
    chip = hardware.load_hardware("h100-sxm")
    r = simulate("llama-3.1-8b", chip, Workload("decode", batch=1, context=2048))
    floor = (r.footprint_bytes["weight"] + r.footprint_bytes["kv_cache"]) / chip.memory.hbm.bandwidth
    assert r.latency_s >= floor
    # ...and no slower than the bytes at the calibrated bandwidth plus the fixed costs a step
    # pays (one launch per kernel, one host step), within 10 %: decode is a bandwidth problem.
    explained = (floor / chip.efficiency.memory + len(r.ops) * chip.gpu.launch_overhead
                 + chip.gpu.step_overhead)
    assert r.latency_s < 1.1 * explained
    assert r.latency_s < 1.6 * floor
    frame = r.ops_frame()
    memory_time = frame.loc[frame["bound"] == "memory:hbm", "time_s"].sum()
    assert memory_time > 0.8 * frame["time_s"].sum()


def test_prefill_2048_on_h100_is_compute_bound_and_not_faster_than_flops_over_peak():
    chip = hardware.load_hardware("h100-sxm")
    r = simulate("llama-3.1-8b", chip, Workload("prefill", batch=1, prompt=2048))
    assert r.latency_s >= r.flops / chip.compute.matrix["bf16"]
    frame = r.ops_frame()
    matmul = frame[frame["kind"] == "matmul"]
    compute_time = matmul.loc[matmul["bound"] == "compute", "time_s"].sum()
    assert compute_time > 0.5 * frame["time_s"].sum()


def test_hardwired_beats_h100_at_batch1_because_no_weight_traffic():
    wl = Workload("decode", batch=1, context=2048)
    gpu = simulate("llama-3.1-8b", "h100-sxm", wl)
    asic = simulate("llama-3.1-8b", "hardwired-llama-3.1-8b", wl)
    assert asic.tokens_per_s > 10 * gpu.tokens_per_s
    assert asic.joules_per_token < gpu.joules_per_token / 10
    asic_weight_bytes = sum(c.bytes.get("hbm", 0) + c.bytes.get("dram", 0) for c in asic.ops)
    gpu_weight_bytes = sum(c.bytes.get("hbm", 0) for c in gpu.ops if c.kind == "matmul")
    # every weight but the embedding table and the 65 RMSNorm vectors
    matmul_weights = (8_030_261_248 - 128256 * 4096 - 65 * 4096) * 2
    assert asic_weight_bytes == 0 and gpu_weight_bytes >= matmul_weights


def test_hardwired_refuses_another_model_and_an_oversized_kv_cache():
    from accelsim.errors import AccelsimError, DoesNotFitError
    with pytest.raises(DoesNotFitError, match="SRAM only"):
        simulate("llama-3.1-8b", "hardwired-llama-3.1-8b", Workload("decode", batch=64, context=8192))
    spec = __import__("accelsim.model.spec", fromlist=["load_model"]).load_model("llama-3.1-8b")
    other = spec.model_copy(update={"name": "not-llama"})
    with pytest.raises(AccelsimError, match="fixed in silicon"):
        simulate(other, "hardwired-llama-3.1-8b", Workload("decode"))


def test_hardwired_pipeline_throughput_grows_with_users_until_the_slowest_stage():
    chip = "hardwired-llama-3.1-8b"
    rates = [simulate("llama-3.1-8b", chip, Workload("decode", batch=b, context=32)).tokens_per_s
             for b in (1, 2, 8, 33)]
    assert rates == sorted(rates) and rates[-1] > 5 * rates[0]


def test_more_context_never_makes_decode_faster():
    times = [simulate("llama-3.1-8b", "h100-sxm", Workload("decode", batch=8, context=c)).latency_s
             for c in (0, 512, 2048, 8192)]
    assert times == sorted(times)


def _gemm(m, k, n, dtype="bf16"):
    a = Tensor("a", (m, k), dtype, "activation")
    b = Tensor("w", (k, n), dtype, "weight")
    c = Tensor("c", (m, n), dtype, "activation")
    return MatMul("gemm", (a, b), (c,), m=m, k=k, n=n)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 8192), st.integers(1, 8192), st.integers(1, 8192), st.sampled_from(HBM_CHIPS))
def test_no_gemm_beats_its_roofline(m, k, n, name):
    chip = hardware.load_hardware(name)
    backend = hardware.backend(chip)
    op = _gemm(m, k, n)
    graph = Graph()
    graph.add(op)
    placement = backend.place(graph, chip, None, Workload())
    cost = best_cost(op, chip, backend, placement)
    weight_bytes = op.inputs[1].nbytes
    assert cost.time_s >= op.flops / chip.compute.matrix["bf16"]
    assert cost.time_s >= weight_bytes / _offchip_bw(chip)
    assert cost.utilisation <= 1.0
    assert sum(cost.energy_j.values()) > 0
