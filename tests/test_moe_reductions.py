"""MoE under tensor parallelism reduces once per layer, as engines do (routed + shared experts
summed before one all-reduce), and a collective whose fixed latency outweighs its bytes is
labelled latency-bound."""

import pytest

from accelsim.api import resolve_hardware, simulate
from accelsim.graph import Collective, Elementwise, Graph, Tensor
from accelsim.hardware import interconnect
from accelsim.model.lower import lower
from accelsim.model.spec import load_model
from accelsim.transform import Parallelism, shard, sharding
from accelsim.transform.reductions import merged_reductions
from accelsim.workload import Workload

DECODE8 = Workload("decode", batch=8, context=1024)
BF16 = 2  # bytes per element of the partial sums (at least 16 bits)


def _all_reduces(graph, layer: int) -> dict[str, float]:
    """name -> payload bytes of the layer's all-reduces."""
    return {op.name: op.payload_bytes for op in graph
            if isinstance(op, Collective) and op.pattern == "all_reduce" and op.layer == layer}


# DeepSeek-V3: layers 0-2 dense, layer 3 the first MoE layer (256 routed experts, top-8, one
# shared expert), hidden 7168.  Mixtral: every layer MoE (8 experts, top-2, no shared expert),
# hidden 4096.
@pytest.mark.parametrize(("model", "layer", "hidden", "top_k", "shared"),
                         [("deepseek-v3", 3, 7168, 8, True), ("mixtral-8x7b", 0, 4096, 2, False)])
def test_a_tp_moe_layer_all_reduces_twice_attention_and_the_moe(model, layer, hidden, top_k, shared):
    graph = lower(load_model(model), DECODE8)
    found = _all_reduces(shard(graph, Parallelism(tp=8)), layer)
    # Hand count: o_proj's partial sums, then the MoE's (routed + shared summed first): two.
    moe = f"layers.{layer}.moe.{'add_shared' if shared else 'combine'}.all_reduce"
    assert set(found) == {f"layers.{layer}.attn.o_proj.all_reduce", moe}
    # Each moves one row per token of the model width, in bf16.
    assert found[moe] == 8 * hidden * BF16
    assert found[f"layers.{layer}.attn.o_proj.all_reduce"] == 8 * hidden * BF16


@pytest.mark.parametrize(("model", "layer", "hidden", "top_k", "shared"),
                         [("deepseek-v3", 3, 7168, 8, True), ("mixtral-8x7b", 0, 4096, 2, False)])
def test_the_merge_drops_the_routed_experts_all_reduce_and_its_top_k_rows(model, layer, hidden,
                                                                          top_k, shared, monkeypatch):
    """Without the merge (as before): o_proj, the routed experts (top-k rows per token) and the
    shared expert each all-reduce.  The merge leaves one row per token for the whole MoE: it
    drops the routed experts' top-k rows (and, without a shared expert, adds the combined row)."""
    graph = lower(load_model(model), DECODE8)
    merged = _all_reduces(shard(graph, Parallelism(tp=8)), layer)
    monkeypatch.setattr(sharding, "merged_reductions", lambda g: g)
    unmerged = _all_reduces(shard(graph, Parallelism(tp=8)), layer)
    row = hidden * BF16
    expected = {f"layers.{layer}.attn.o_proj.all_reduce": 8 * row,
                f"layers.{layer}.moe.experts.down.all_reduce": 8 * top_k * row}
    if shared:
        expected[f"layers.{layer}.moe.shared.down.all_reduce"] = 8 * row
    assert unmerged == expected
    assert sum(merged.values()) == 8 * row + 8 * row
    assert sum(unmerged.values()) - sum(merged.values()) == 8 * (top_k if shared else top_k - 1) * row


def test_a_dense_layer_keeps_its_two_all_reduces():
    graph = lower(load_model("deepseek-v3"), DECODE8)
    assert set(_all_reduces(shard(graph, Parallelism(tp=8)), 0)) == {
        "layers.0.attn.o_proj.all_reduce", "layers.0.mlp.down.all_reduce"}


def test_tp_with_ep_all_reduces_once_and_attention_dp_keeps_its_all_to_alls():
    """--tp 8 --ep 8: every chip holds every token, so the experts' partial sums join the shared
    expert's in one all-reduce (vLLM: all-to-all kernels only with dp > 1).  --dp-attn 8 --ep 8:
    the routed rows travel by all-to-all, which no all-reduce merges with."""
    graph = lower(load_model("deepseek-v3"), DECODE8)
    tp_ep = shard(graph, Parallelism(tp=8, ep=8))
    assert _all_reduces(tp_ep, 3) == {"layers.3.attn.o_proj.all_reduce": 8 * 7168 * BF16,
                                      "layers.3.moe.add_shared.all_reduce": 8 * 7168 * BF16}
    assert not [op for op in tp_ep if isinstance(op, Collective) and op.pattern == "all_to_all"]
    dp_ep = shard(graph, Parallelism(dp=8, ep=8))
    assert {op.name for op in dp_ep if isinstance(op, Collective) and op.layer == 3} == {
        "layers.3.moe.experts.up.dispatch", "layers.3.moe.experts.down.combine"}


def test_deepseek_v3_tp8_batch1_saves_one_all_reduce_per_moe_layer():
    """61 layers, 58 of them MoE: 182 all-reduces (three per MoE layer) become 124: one per
    attention (61), one per dense MLP (3), one per MoE layer (58), the embedding's (1) and the
    LM head's all-gather (1)."""
    result = simulate(load_model("deepseek-v3"), "h200", Workload("decode", batch=1, context=2048),
                      weight_dtype="fp8", parallelism=Parallelism(tp=8))
    collectives = [c for c in result.ops if c.kind == "collective"]
    assert len(collectives) == 124
    assert sum(".moe." in c.op for c in collectives) == 58


# --- labels: latency-bound when the latency term exceeds the bytes term --------------------

def _all_reduce_cost(payload_bytes: int):
    hw = resolve_hardware("h200")
    x = Tensor("x.partial", (payload_bytes // 2,), "bf16", "activation")
    op = Collective("x.all_reduce", (x,), (Tensor("x", x.shape, "bf16", "activation"),),
                    role="collective", pattern="all_reduce", group=8)
    ring = next(m for m in interconnect.mappings(op, hw) if m.params["algorithm"] == "ring")
    return interconnect.cost(op, ring, hw)


# H200 NVSwitch (hw_configs/h200.yaml): 5.56 us base + 1.98 us per ring step; an 8-GPU ring
# all-reduce takes 14 steps, so its latency term is 5.56 + 14 x 1.98 = 33.28 us.  Its bytes term
# is 2 x 7/8 x B over 450 GB/s x 0.822 = 369.9 GB/s: equal at B = 33.28 us x 369.9e9 / 1.75 =
# 7.03 MB.
@pytest.mark.parametrize(("payload", "bytes_us", "label"), [
    (14_336, 0.0678, "latency-bound"),       # a DeepSeek-V3 batch-1 row (7168 x bf16)
    (6_000_000, 28.39, "latency-bound"),     # just under the crossing
    (8_000_000, 37.85, "link-bandwidth-bound"),
    (64 * 2**20, 317.5, "link-bandwidth-bound"),
])
def test_a_collective_is_latency_bound_when_its_latency_term_exceeds_its_bytes_term(payload, bytes_us,
                                                                                      label):
    cost = _all_reduce_cost(payload)
    assert cost.time_s == pytest.approx(33.28e-6 + bytes_us * 1e-6, rel=1e-3)
    assert cost.regime == label
    assert cost.bound == ("latency" if label == "latency-bound" else "memory:link")


def _two_reduced_branches(role: str) -> Graph:
    """Two partial sums, each all-reduced over 8 ranks, then read by one elementwise op."""
    g = Graph(name="branches")
    for b in ("a", "b"):
        partial = Tensor(f"{b}.partial", (8, 64), "bf16")
        g.add(Collective(f"{b}.all_reduce", (partial,), (Tensor(b, (8, 64), "bf16"),),
                         role="collective", group=8))
    g.add(Elementwise("out", (Tensor("a", (8, 64), "bf16"), Tensor("b", (8, 64), "bf16")),
                      (Tensor("y", (8, 64), "bf16"),), role=role, elements=8 * 64))
    return g


def test_only_a_sum_of_branches_reduces_once():
    """Partial sums may be added before their all-reduce only when the op adds them: a product
    of two reduced tensors (a gate) is not the reduction of the product of partials."""
    summed_once = merged_reductions(_two_reduced_branches("residual"))
    assert [op.name for op in summed_once if isinstance(op, Collective)] == ["out.all_reduce"]
    gated = merged_reductions(_two_reduced_branches("gate"))
    assert [op.name for op in gated if isinstance(op, Collective)] == ["a.all_reduce", "b.all_reduce"]
