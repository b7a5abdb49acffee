"""Layouts as engines run them: chips = tp x pp x dp, ep splits the experts over the tp x dp
chips of a stage; MLA, absorbed or not, splits correctly under TP, EP and PP."""

import pytest

from accelsim.errors import AccelsimError
from accelsim.graph import Collective, Graph
from accelsim.model.blocks.moe import expected_distinct_experts
from accelsim.model.lower import lower
from accelsim.model.spec import load_model
from accelsim.transform import Parallelism, shard, stage_graphs
from accelsim.workload import Workload

DECODE1 = Workload("decode", batch=1, context=2048)
DECODE8 = Workload("decode", batch=8, context=2048)
MLA_SPLIT = ("q_b", "q_absorb", "attention", "v_absorb", "o_proj", "kv_b")
MLA_REPLICATED = ("q_a", "kv_a", "norm")


def _layer(graph: Graph, layer: int, prefix: str = "attn") -> dict:
    return {op.name: op for op in graph
            if op.layer == layer and f".{prefix}" in op.name and not isinstance(op, Collective)}


@pytest.fixture(scope="module")
def deepseek():
    return load_model("deepseek-v3")


@pytest.mark.parametrize("absorbed", [True, False])
def test_mla_under_tp8_splits_by_heads(deepseek, absorbed):
    # Hand-worked: at tp=8 each chip runs 128/8 = 16 heads of every per-head piece of MLA, so the
    # split parts cost 1/8 of their unsharded FLOPs; q_a, kv_a and the latent norms are the
    # replicated parts (vLLM's ReplicatedLinear), each chip running them whole.
    spec = deepseek if absorbed else deepseek.model_copy(
        update={"mla": deepseek.mla.model_copy(update={"absorbed": False})})
    full = _layer(lower(spec, DECODE1), 0)
    local = _layer(shard(lower(spec, DECODE1), Parallelism(tp=8)), 0)
    assert set(local) == set(full)
    split = sum(op.flops for op in full.values() if op.role in MLA_SPLIT)
    assert sum(op.flops for op in local.values() if op.role in MLA_SPLIT) == pytest.approx(split / 8, rel=1e-6)
    for op in local.values():
        if op.role in MLA_REPLICATED:
            assert op.flops == full[op.name].flops and op.replicas == 8
    if absorbed:
        v = local["layers.0.attn.v_absorb"]
        assert (v.count, v.k, v.n) == (16, 512, 128)  # 16 heads of rank 512 -> v 128
        assert v.flops == pytest.approx(full["layers.0.attn.v_absorb"].flops / 8)
        sdpa, full_sdpa = local["layers.0.attn.sdpa"], full["layers.0.attn.sdpa"]
        # The latent cache is one MQA-like head: every rank holds and reads all of it, while
        # the query heads (and FLOPs) split.
        assert (sdpa.heads, sdpa.kv_heads, sdpa.replicas) == (16, 1, 1)
        assert [t.shape for t in sdpa.inputs[1:]] == [t.shape for t in full_sdpa.inputs[1:]]
    else:
        kv_b = local["layers.0.attn.kv_b"]
        assert kv_b.n == full["layers.0.attn.kv_b"].n // 8
        assert any(t.role == "kv_cache" for t in kv_b.outputs)  # the latent write is kept


def test_mla_under_pp_and_ep_keeps_every_flop(deepseek):
    graph = lower(deepseek, DECODE8)
    total = graph.total("tensor_flops")
    pp = shard(graph, Parallelism(pp=4))
    assert sum(g.total("tensor_flops") for g in stage_graphs(pp)) == pytest.approx(total)
    for par in (Parallelism(tp=8, ep=8), Parallelism(dp=8, ep=8)):
        local = shard(graph, par)
        attn = _layer(local, 0)
        full = _layer(graph, 0)
        # Attention per chip: tp splits heads, dp splits sequences; either way 1/8 of the work.
        got = sum(op.tensor_flops * 8 for op in attn.values() if op.role in MLA_SPLIT)
        assert got == pytest.approx(sum(op.tensor_flops for op in full.values() if op.role in MLA_SPLIT))


def test_mla_refuses_the_2d_grid(deepseek):
    with pytest.raises(AccelsimError, match="multi-head latent attention"):
        shard(lower(deepseek, DECODE1), Parallelism(tp=8, tp_x=2))


@pytest.mark.parametrize("model", ["mixtral-8x7b", "deepseek-v3"])
@pytest.mark.parametrize("options", [dict(chips=8, tp=8, ep=8), dict(chips=8, dp=8, ep=8),
                                     dict(chips=8, tp=8), dict(chips=8, tp=4, dp=2, ep=4)])
def test_one_node_layouts_build_and_conserve_expert_work(model, options):
    spec = load_model(model)
    par = Parallelism.from_options(**options)
    assert par.chips == 8 and par.per_stage == 8
    graph = lower(spec, DECODE8)
    local = shard(graph, par)
    experts = [op for op in graph if op.role in ("expert_up", "expert_down")]
    mine = {op.name: op for op in local if op.role in ("expert_up", "expert_down")}
    assert mine
    for op in experts:
        chip = mine[op.name]
        # Every chip of the stage runs the same graph: 8 chips do the experts' work once.
        assert chip.tensor_flops * 8 == pytest.approx(op.tensor_flops, rel=0.02)
        # Weight bytes read: the expected distinct experts of the whole batch, spread over ep.
        w_full, w_chip = op.reads()[1].nbytes, chip.reads()[1].nbytes
        assert w_chip * 8 == pytest.approx(w_full, rel=1e-6)
    patterns = {op.pattern for op in local if isinstance(op, Collective) and ".experts." in op.name}
    if par.dp > 1:  # attention DP: tokens travel to their experts and back
        assert patterns == ({"all_to_all"} if par.ep > 1 else {"all_gather", "reduce_scatter"})
    else:  # every chip holds every token: the partial sums reduce once, after the MoE's combine
        assert not patterns
        assert {op.pattern for op in local if isinstance(op, Collective) and ".moe." in op.name} == {"all_reduce"}


def test_mixtral_batch1_reads_two_of_eight_experts_per_node():
    spec = load_model("mixtral-8x7b")
    graph = lower(spec, DECODE1)
    up = next(op for op in graph if op.role == "expert_up")
    stacked = up.inputs[1].nbytes
    touched = expected_distinct_experts(8, 2, 1)
    assert touched == pytest.approx(2.0)
    for par in (Parallelism(tp=8, ep=8), Parallelism(tp=8), Parallelism(tp=2, ep=2)):
        chip = next(op for op in shard(graph, par) if op.name == up.name)
        assert chip.reads()[1].nbytes * par.per_stage == pytest.approx(stacked * 2 / 8)


@pytest.mark.parametrize("model, tp", [("llama-3.1-8b", 4), ("mamba-2.8b", 2), ("rwkv7-2.9b", 2),
                                       ("recurrentgemma-2b", 2), ("gemma-2-9b", 2)])
def test_dense_dp_ranks_are_replicas_of_the_tp_layout(model, tp):
    # A dense model at --dp-attn 2: each rank runs the tp layout on half the sequences.
    spec = load_model(model)
    with_dp = shard(lower(spec, DECODE8), Parallelism(tp=tp, dp=2))
    half = shard(lower(spec, Workload("decode", batch=4, context=2048)), Parallelism(tp=tp))
    for attribute in ("tensor_flops", "vector_flops", "bytes_moved"):
        assert with_dp.total(attribute) == pytest.approx(half.total(attribute)), attribute
    assert with_dp.weight_bytes == pytest.approx(half.weight_bytes)


def test_batch_smaller_than_dp_idles_ranks(deepseek):
    # Batch-1 decode at --dp-attn 8 --ep 8: one rank runs the sequence, the experts still serve
    # the batch's tokens (2 of 8 rows... here 8 of 256 experts, over 8 chips).
    full = lower(deepseek, DECODE1)
    local = shard(full, Parallelism(dp=8, ep=8))
    assert local.batch == 1
    sdpa = next(op for op in local if op.name == "layers.0.attn.sdpa")
    assert sdpa.batch == 1 and sdpa.heads == 128
    up = next(op for op in full if op.name == "layers.5.moe.experts.up")
    mine = next(op for op in local if op.name == up.name)
    assert mine.reads()[1].nbytes * 8 == pytest.approx(up.reads()[1].nbytes)


def test_layout_rule_and_options():
    assert Parallelism.from_options(chips=8) == Parallelism(tp=8)
    assert Parallelism.from_options(chips=8, dp=2) == Parallelism(tp=4, dp=2)
    assert Parallelism.from_options(chips=8, tp=8, ep=8) == Parallelism(tp=8, ep=8, chips=8)
    assert Parallelism.from_options(chips=8, dp=8, ep=8) == Parallelism(dp=8, ep=8)
    par = Parallelism(tp=4, pp=2, dp=2, ep=8)
    assert (par.chips, par.per_stage, par.expert_tp) == (16, 8, 1)
    assert par.describe() == "16 chips (tp=4 pp=2 dp=2 ep=8)"
    assert par.to_dict() == {"chips": 16, "tp": 4, "tp_x": 1, "pp": 2, "dp": 2, "ep": 8,
                             "attention": "heads"}


@pytest.mark.parametrize("make, message", [
    (lambda: Parallelism(tp=8, ep=8, chips=64), r"--chips 64 must equal --tp x --pp x --dp-attn \(8 x 1 x 1 = 8\)"),
    (lambda: Parallelism(tp=4, ep=8), r"--ep 8 must divide the tp x dp chips of a stage \(4 x 1 = 4\); allowed: 1, 2, 4"),
    (lambda: Parallelism(dp=0), r"--dp-attn must be an integer >= 1"),
    (lambda: Parallelism.from_options(chips=8, dp=3), r"--chips 8 is not a multiple of --pp x --dp-attn"),
    (lambda: shard(lower(load_model("mixtral-8x7b"), DECODE8), Parallelism(tp=16, ep=16)),
     r"--ep 16 must divide the 8 experts"),
    (lambda: shard(lower(load_model("llama-3.1-8b"), DECODE8), Parallelism(tp=2, dp=3)),
     r"--dp-attn 3 must divide the batch \(8\) or exceed it"),
])
def test_bad_layouts_are_one_clear_line(make, message):
    with pytest.raises(AccelsimError, match=message) as info:
        make()
    assert "\n" not in str(info.value)


def test_cli_layouts(cli):
    code, out, err = cli("run", "--model", "mixtral-8x7b", "--hw", "h200", "--chips", "8", "--dp-attn", "8",
                         "--ep", "8", "--batch", "8", "--json")
    assert code == 0, err
    code, _, err = cli("run", "--model", "mixtral-8x7b", "--hw", "h200", "--chips", "8", "--dp-attn", "3")
    assert code == 2 and err.startswith("error: ") and "--dp-attn" in err
    assert len(err.strip().splitlines()) == 1
    code, out, _ = cli("run", "--help")
    flat = " ".join(out.split())
    assert "--dp-attn" in flat and "tp x pp x dp-attn" in flat and "--ep does not multiply" in flat


def test_mla_prefill_attends_as_mha_and_decode_in_the_latent(deepseek):
    """Serving engines prefill MLA in its not-absorbed (MHA) form and decode absorbed (vLLM's
    MLA backend; SGLang's MHA forward for extend): a prefill's attention is 128 heads of qk 192
    / v 128 over decompressed K and V, 320 / 1088 of the absorbed form's FLOPs, with one kv_b GEMM
    over the prompt's latents; a decode step still attends in the 576 / 512 latent space."""
    prefill = Workload("prefill", 1, 4096, 0)
    ops = _layer(lower(deepseek, prefill), 0)
    sdpa = ops["layers.0.attn.sdpa"]
    assert (sdpa.heads, sdpa.kv_heads, sdpa.qk_dim, sdpa.v_dim) == (128, 128, 192, 128)
    assert "layers.0.attn.q_absorb" not in ops and "layers.0.attn.kv_b" in ops
    latent_form = _layer(lower(deepseek, Workload("decode", 1, 1, 4095)), 0)["layers.0.attn.sdpa"]
    assert (latent_form.kv_heads, latent_form.qk_dim, latent_form.v_dim) == (1, 576, 512)
    # Same query and key counts, so the FLOPs scale with the dims: (192 + 128) / (576 + 512).
    absorbed_prefill = 2.0 * sdpa.pairs * 128 * (576 + 512)
    assert sdpa.tensor_flops == pytest.approx(absorbed_prefill * 320 / 1088, rel=1e-9)


def test_expert_tp_under_dp_attention_gathers_tokens_not_routed_rows():
    """--dp-attn 4 without --ep: every chip computes a slice of every expert for all four
    ranks' tokens.  The all_gather before the experts moves the tokens (4 x 512 rows of the
    hidden state), not their top-2 routed copies, and the reduce_scatter after moves each
    token's summed partial output: the routed rows (4,096) exist only on the chip."""
    spec = load_model("mixtral-8x7b")
    graph = shard(lower(spec, Workload("prefill", 4, 512, 0)), Parallelism(dp=4))
    ops = {op.name: op for op in graph}
    gather, scatter = ops["layers.0.moe.experts.up.gather"], ops["layers.0.moe.experts.down.reduce_scatter"]
    assert (gather.inputs[0].shape[0], gather.outputs[0].shape[0]) == (512, 2048)
    assert (scatter.inputs[0].shape[0], scatter.outputs[0].shape[0]) == (2048, 512)
    assert ops["layers.0.moe.experts.up"].rows == 2 * 2048
