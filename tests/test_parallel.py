"""Multi-chip parallelism: sharding invariants, collective costs, pipelines, CLI."""
import dataclasses
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accelsim.api import resolve_hardware, resolve_model, simulate
from accelsim.errors import AccelsimError, DoesNotFitError
from accelsim.graph import Collective, Graph, MatMul, Tensor
from accelsim.hardware import interconnect
from accelsim.hardware.common import footprint
from accelsim.hardware.spec import Interconnect
from accelsim.model.lower import lower
from accelsim.transform import Parallelism, shard, stage_graphs
from accelsim.workload import Workload

MODEL = "llama-3.1-70b"


@pytest.fixture(scope="module")
def graph70():
    return lower(resolve_model(MODEL), Workload(phase="decode", batch=1, context=2048))


def test_70b_decode_does_not_fit_one_h100():
    with pytest.raises(DoesNotFitError, match="does not fit on h100-sxm"):
        simulate(MODEL, "h100-sxm")


@pytest.mark.parametrize("tp", [4, 8])
def test_70b_runs_on_tp_with_collectives_in_breakdown(tp):
    r = simulate(MODEL, "h100-sxm", parallelism=Parallelism(tp=tp))
    kinds = r.by_kind()
    assert "collective" in kinds.index and kinds.loc["collective", "time_s"] > 0
    # 2 all-reduces per layer, the embedding's all-reduce and the logits' all-gather.
    assert kinds.loc["collective", "count"] == 2 * 80 + 2
    assert r.chips == tp and r.system["tp"] == tp
    assert r.energy_j["static"] == pytest.approx(70.0 * tp * r.latency_s)  # every chip's idle power
    assert r.to_dict()["tokens_per_s_per_chip"] == pytest.approx(r.tokens_per_s / tp)


def test_more_tp_is_faster_for_memory_bound_decode():
    t4 = simulate(MODEL, "h100-sxm", parallelism=Parallelism(tp=4)).latency_s
    t8 = simulate(MODEL, "h100-sxm", parallelism=Parallelism(tp=8)).latency_s
    assert t8 < t4


@pytest.mark.parametrize("tp", [2, 4, 8])
def test_sharded_flops_times_chips_equal_unsharded(graph70, tp):
    sharded = shard(graph70, Parallelism(tp=tp))
    assert sharded.total("tensor_flops") * tp == pytest.approx(graph70.total("tensor_flops"))
    replicated = [op for op in graph70 if op.kind in ("norm", "embedding")
                  or op.name.endswith("residual")]
    reductions = sum(op.vector_flops for op in sharded if isinstance(op, Collective))
    expected = (graph70.total("flops") + (tp - 1) * graph70.total("flops", replicated)
                + tp * reductions)
    assert sharded.total("flops") * tp == pytest.approx(expected)


@pytest.mark.parametrize("tp", [2, 8])
def test_per_chip_weight_bytes_are_total_over_tp(graph70, tp):
    sharded = shard(graph70, Parallelism(tp=tp))
    full, local = graph70.weights(), sharded.weights()
    for name in ("layers.0.attn.qkv.weight", "layers.0.attn.o_proj.weight", "layers.3.mlp.up.weight",
                 "layers.3.mlp.down.weight", "embed.weight", "lm_head.weight"):
        assert local[name].nbytes == full[name].nbytes / tp
    assert local["layers.0.attn_norm.weight"].nbytes == full["layers.0.attn_norm.weight"].nbytes
    assert footprint(sharded)["kv_cache"] == pytest.approx(footprint(graph70)["kv_cache"] / tp)


def test_kv_heads_replicated_past_their_count(graph70):
    sharded = shard(graph70, Parallelism(tp=16))  # 8 KV heads, 64 query heads
    sdpa = next(op for op in sharded if op.name == "layers.0.attn.sdpa")
    assert (sdpa.heads, sdpa.kv_heads) == (4, 1)
    qkv = next(op for op in sharded if op.name == "layers.0.attn.qkv")
    assert qkv.n == (4 + 2 * 1) * 128
    assert footprint(sharded)["kv_cache"] == pytest.approx(footprint(graph70)["kv_cache"] / 8)


def test_op_names_stay_unique(graph70):
    sharded = shard(graph70, Parallelism(tp=4, pp=4))
    names = [op.name for op in sharded]
    assert len(names) == len(set(names))


def test_ring_all_reduce_hand_worked():
    # 8 chips, 16 MiB per chip, 450 GB/s each way, 1 us per hop:
    # 2*7/8 * 16777216 B / 450e9 B/s = 65.2447 us of transfer, + 14 hops x 1 us = 79.2447 us.
    links = Interconnect(bandwidth="450 GB/s", latency="1 us", energy="1.3 pJ/bit", topology="ring",
                         source="test")
    link = interconnect.collective_terms("all_reduce", 8, 16 * 2**20, links, "ring")
    seconds, sent = link.seconds, link.sent
    assert sent == pytest.approx(2 * 7 / 8 * 16 * 2**20)
    assert seconds == pytest.approx(2 * 7 / 8 * 16 * 2**20 / 450e9 + 14e-6)
    assert seconds == pytest.approx(79.2447e-6, rel=1e-5)
    tree_s = interconnect.collective_terms("all_reduce", 8, 16 * 2**20, links, "tree").seconds
    assert tree_s == pytest.approx(6e-6 + 2 * 16 * 2**20 / 450e9)


@settings(max_examples=40, deadline=None)
@given(p=st.integers(2, 64), payload=st.floats(1.0, 1e9))
def test_ring_collectives_follow_alpha_beta(p, payload):
    links = Interconnect(bandwidth="100 GB/s", latency="2 us", energy="0 pJ/B", topology="ring",
                         source="test")
    ar = interconnect.collective_terms("all_reduce", p, payload, links, "ring").seconds
    rs = interconnect.collective_terms("reduce_scatter", p, payload, links, "ring").seconds
    ag = interconnect.collective_terms("all_gather", p, payload / p, links, "ring").seconds
    assert ar == pytest.approx(rs + ag)  # all-reduce = reduce-scatter + all-gather
    assert ar >= 2 * (p - 1) * 2e-6


def test_collective_energy_is_link_bytes_times_energy():
    hw = resolve_hardware("h100-sxm")
    t = Tensor("x", (1, 8192), "bf16")
    op = Collective("ar", (t,), (Tensor("y", (1, 8192), "bf16"),), pattern="all_reduce", group=4)
    cost = min((interconnect.cost(op, m, hw) for m in interconnect.mappings(op, hw)),
               key=lambda c: c.time_s)
    assert cost.energy_j["interconnect"] == pytest.approx(cost.bytes["link"] * hw.interconnect.energy)


def test_pp_stages_and_sends(graph70):
    sharded = shard(graph70, Parallelism(pp=4))
    stages = stage_graphs(sharded)
    assert len(stages) == 4
    sends = [op for op in sharded if isinstance(op, Collective) and op.pattern == "send"]
    assert len(sends) == 3
    assert all(op.payload_bytes == 8192 * 2 for op in sends)  # the residual stream, bf16
    layers = [sorted({op.layer for op in s if op.layer is not None}) for s in stages]
    assert [len(ls) for ls in layers] == [20, 20, 20, 20]


def test_pp_throughput_set_by_slowest_stage():
    wl = Workload(phase="decode", batch=8, context=2048)
    r = simulate(MODEL, "h100-sxm", wl, parallelism=Parallelism(pp=4))
    stage_s = r.system["stage_latency_s"]
    assert r.groups == 4
    round_s = max(sum(stage_s), 4 * max(stage_s))
    assert r.latency_s == pytest.approx(round_s)
    assert r.tokens_per_s == pytest.approx(8 / round_s)
    one = simulate(MODEL, "h100-sxm", Workload(phase="decode", batch=1, context=2048),
                   parallelism=Parallelism(pp=4))
    assert one.latency_s == pytest.approx(one.system["trip_s"])  # one micro-batch: sum of stages
    assert r.tokens_per_s > one.tokens_per_s


def test_expert_parallel_splits_experts_and_all_reduces_over_tp():
    # Experts spread over the 4 tensor-parallel chips (--chips 4 --tp 4 --ep 4): one expert
    # group per chip; every chip holds every token (no attention DP), runs the rows routed to
    # its experts, and the partial sums are all-reduced over tp (vLLM's TP + EP).
    x = Tensor("x", (64, 512), "bf16")
    w1 = Tensor("e.up.weight", (8, 512, 1024), "bf16", "weight")
    h = Tensor("e.up.out", (64, 1024), "bf16")
    w2 = Tensor("e.down.weight", (8, 1024, 512), "bf16", "weight")
    y = Tensor("e.down.out", (64, 512), "bf16")
    g = Graph(name="moe", batch=64)
    g.add(MatMul("e.up", (x, w1), (h,), layer=0, role="expert_up", m=8, k=512, n=1024, count=8, rows=64))
    g.add(MatMul("e.down", (h, w2), (y,), layer=0, role="expert_down", m=8, k=1024, n=512, count=8,
                 rows=64))
    out = shard(g, Parallelism(tp=4, ep=4))
    collectives = [op for op in out if isinstance(op, Collective)]
    assert [(c.pattern, c.group) for c in collectives] == [("all_reduce", 4)]
    assert out.total("tensor_flops") * 4 == pytest.approx(g.total("tensor_flops"))
    assert out.weight_bytes * 4 == pytest.approx(g.weight_bytes)
    up = next(op for op in out if op.name == "e.up")
    assert (up.count, up.rows, up.n, up.inputs[1].shape) == (2, 16, 1024, (2, 512, 1024))
    with pytest.raises(AccelsimError, match="--ep 4 must divide the 6 experts"):
        shard(replace_experts(g, 6), Parallelism(tp=4, ep=4))
    with pytest.raises(AccelsimError, match=r"--ep 3 must divide the tp x dp chips of a stage \(4 x 1 = 4\)"):
        Parallelism(tp=4, ep=3)


def replace_experts(g: Graph, experts: int) -> Graph:
    out = Graph(name=g.name, batch=g.batch)
    for op in g:
        w = op.inputs[1]
        out.add(dataclasses.replace(op, inputs=(op.inputs[0], Tensor(w.name, (experts, *w.shape[1:]),
                                                                      w.dtype, "weight"))))
    return out


def test_parallelism_validation():
    assert Parallelism.from_options(chips=8) == Parallelism(tp=8)
    assert Parallelism.from_options(chips=8, pp=2) == Parallelism(tp=4, pp=2)
    assert Parallelism.from_options() is None
    with pytest.raises(AccelsimError, match="must equal"):
        Parallelism(tp=2, chips=8)
    with pytest.raises(AccelsimError, match="must divide the attention heads"):
        simulate(MODEL, "h100-sxm", parallelism=Parallelism(tp=3))
    with pytest.raises(AccelsimError, match="exceeds the model's 80 layers"):
        simulate(MODEL, "h100-sxm", parallelism=Parallelism(pp=81))


def test_cli_run_tp8_json(cli):
    code, out, err = cli("run", "--model", MODEL, "--hw", "h100-sxm", "--tp", "8", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["chips"] == 8 and data["system"]["tp"] == 8
    assert any(op["kind"] == "collective" for op in data["ops"])
    assert data["tokens_per_s_per_chip"] == pytest.approx(data["tokens_per_s"] / 8)
    assert math.isfinite(data["joules_per_token"]) and data["joules_per_token"] > 0


@pytest.mark.parametrize("args, message", [
    (("--tp", "3"), "must divide the attention heads"),
    (("--tp", "2", "--pp", "2", "--chips", "8"), "must equal"),
    (("--chips", "6", "--pp", "4"), "not a multiple"),
])
def test_cli_bad_parallelism_is_one_line_exit_2(cli, args, message):
    code, _, err = cli("run", "--model", MODEL, "--hw", "h100-sxm", *args)
    assert code == 2
    assert err.startswith("error: ") and message in err
    assert len(err.strip().splitlines()) == 1


def test_cli_non_positive_tp_is_a_usage_error(cli):
    code, _, err = cli("compare", "--model", MODEL, "--hw", "h100-sxm", "--tp", "0")
    assert code == 2 and "--tp" in err and "Traceback" not in err


def test_cli_single_chip_70b_refused(cli):
    code, _, err = cli("run", "--model", MODEL, "--hw", "h100-sxm")
    assert code == 2 and "does not fit" in err and len(err.strip().splitlines()) == 1


def test_fp8_partial_sums_are_reduced_in_16_bits():
    # An FP8 engine's row-parallel matmuls read fp8 and write bf16 partial sums, and the all-reduce
    # sums those: 128 tokens x 8192 wide x 2 bytes per call, not 1 byte.
    spec = resolve_model(MODEL)
    fp8 = spec.model_copy(update={"dtypes": spec.dtypes.model_copy(update={"weight": "fp8", "activation": "fp8"})})
    sharded = shard(lower(fp8, Workload(phase="prefill", batch=1, prompt=128, context=0)), Parallelism(tp=4))
    reduces = [op for op in sharded.ops if isinstance(op, Collective) and op.pattern == "all_reduce"]
    assert reduces and all(op.inputs[0].dtype == op.outputs[0].dtype == "bf16" for op in reduces)
    assert {op.inputs[0].nbytes for op in reduces} == {128 * 8192 * 2}
    down = next(op for op in sharded.ops if op.name == "layers.0.mlp.down")
    assert (down.inputs[0].dtype, down.outputs[0].dtype, down.compute_dtype) == ("fp8", "bf16", "fp8")
