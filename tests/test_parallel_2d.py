"""2D weight-stationary tensor parallelism (Pope et al. 2022, Sec. 3.2.2): per-chip shares,
hand-worked collective payloads, the layout's advantage at large chip counts, bad input."""
import json

import pytest

from accelsim.api import resolve_model, simulate
from accelsim.errors import AccelsimError
from accelsim.graph import Collective
from accelsim.hardware.common import footprint
from accelsim.hardware.interconnect import ring_steps
from accelsim.model.lower import lower
from accelsim.transform import Parallelism, shard
from accelsim.workload import Workload

MODEL = "llama-3.1-70b"  # 80 layers, width 8192, 64 heads / 8 KV heads of 128, MLP 28672
B = 2  # bytes per bf16 element


@pytest.fixture(scope="module")
def decode70():
    return lower(resolve_model(MODEL), Workload(phase="decode", batch=8, context=1024))


@pytest.fixture(scope="module")
def prefill70():
    return lower(resolve_model(MODEL), Workload(phase="prefill", batch=1, prompt=2048))


def by_name(graph):
    return {op.name: op for op in graph}


def test_each_chip_does_one_tpth_of_every_matmul_and_holds_one_tpth_of_weights(decode70):
    sharded = shard(decode70, Parallelism(tp=16, tp_x=4))  # 4 x 4: 16 heads, 2 KV heads, 2 sequences
    assert sharded.total("tensor_flops") * 16 == pytest.approx(decode70.total("tensor_flops"))
    full, local = decode70.weights(), sharded.weights()
    for name in ("layers.0.attn.qkv.weight", "layers.0.attn.o_proj.weight", "layers.3.mlp.up.weight",
                 "layers.3.mlp.down.weight", "embed.weight", "lm_head.weight"):
        assert local[name].nbytes == full[name].nbytes / 16
    # The residual stream and its norms are split over x only.
    assert local["layers.0.attn_norm.weight"].nbytes == full["layers.0.attn_norm.weight"].nbytes / 4
    assert footprint(sharded)["kv_cache"] == pytest.approx(footprint(decode70)["kv_cache"] / 16)
    sdpa = by_name(sharded)["layers.0.attn.sdpa"]
    assert (sdpa.heads, sdpa.kv_heads, sdpa.batch) == (16, 2, 2)


def test_collective_payloads_hand_worked(prefill70):
    """One layer of a 2048-token prefill on a 4 x 16 grid: the bytes each collective carries."""
    ops = by_name(shard(prefill70, Parallelism(tp=64, tp_x=4)))
    rows, width, mlp = 2048, 8192, 28672

    def coll(name):
        op = ops[f"layers.0.{name}"]
        assert isinstance(op, Collective)
        return op.pattern, op.group, op.payload_bytes

    # gate+up: 2 x 28672 columns over 16 y ranks, partial sums reduce-scattered over 4 x ranks
    assert coll("mlp.up.reduce_scatter") == ("reduce_scatter", 4, rows * 2 * mlp / 16 * B)
    # the activation (1/64 of rows x 28672) is gathered back to all rows over x
    assert coll("mlp.down.gather_x") == ("all_gather", 4, rows * mlp / 64 * B)
    # down: 1/4 of the width out, partial sums all-reduced over y
    assert coll("mlp.down.all_reduce") == ("all_reduce", 16, rows * width / 4 * B)
    # the norm's row statistics: one fp32 figure per row over x
    assert coll("mlp_norm.stats.all_reduce") == ("all_reduce", 4, rows * 4)
    down = ops["layers.0.mlp.down"]
    assert (down.m, down.k, down.n) == (rows, mlp // 16, width // 4)


def sent_per_layer(graph, layer=0):
    return sum(ring_steps(op.pattern, op.group, op.payload_bytes).sent for op in graph
               if isinstance(op, Collective) and op.layer == layer and op.group > 1)


def test_2d_sends_fewer_bytes_than_megatron_at_64_chips(prefill70):
    """Pope et al.: 1D sends ~2 x 2BLE per layer whatever the chip count; the 2D grid about
    2BLE/x + 2BLF/y (here x = 4, y = 16)."""
    one_d = sent_per_layer(shard(prefill70, Parallelism(tp=64)))
    two_d = sent_per_layer(shard(prefill70, Parallelism(tp=64, tp_x=4)))
    ble = 2048 * 8192 * B
    assert one_d == pytest.approx(2 * 2 * 63 / 64 * ble, rel=1e-3)
    assert two_d < 0.6 * one_d


def test_2d_is_faster_than_megatron_for_a_large_model_on_64_tpu_chips():
    wl = Workload(phase="prefill", batch=1, prompt=2048)
    one_d = simulate("llama-3.1-405b", "tpu-v4", wl, parallelism=Parallelism(tp=64))
    two_d = simulate("llama-3.1-405b", "tpu-v4", wl, parallelism=Parallelism(tp=64, tp_x=4))
    assert two_d.latency_s < one_d.latency_s
    assert two_d.system["tp_x"] == 4 and two_d.chips == 64


def test_grid_of_one_row_is_megatron(decode70):
    assert Parallelism(tp=8, tp_x=1) == Parallelism(tp=8)
    one_d = shard(decode70, Parallelism(tp=8))
    assert [op.name for op in one_d] == [op.name for op in shard(decode70, Parallelism(tp=8, tp_x=1))]
    assert not any(op.name.endswith(("gather_x", "stats.all_reduce", "reduce_scatter")) for op in one_d)


def test_bad_grids_are_refused():
    with pytest.raises(AccelsimError, match="--tp-x 3 must divide --tp 8"):
        Parallelism(tp=8, tp_x=3)
    with pytest.raises(AccelsimError, match="give --tp or --chips too"):
        Parallelism.from_options(tp_x=2)
    assert Parallelism.from_options(chips=16, tp_x=4) == Parallelism(tp=16, tp_x=4)
    with pytest.raises(AccelsimError, match="run this model with --tp-x 1"):
        simulate("mamba-2.8b", "tpu-v4", parallelism=Parallelism(tp=4, tp_x=2))
    with pytest.raises(AccelsimError, match="must divide the attention heads"):
        simulate(MODEL, "tpu-v4", parallelism=Parallelism(tp=48, tp_x=16))  # 64 heads over y = 3


def test_cli_run_2d_json(cli):
    code, out, err = cli("run", "--model", MODEL, "--hw", "tpu-v4", "--tp", "16", "--tp-x", "4",
                         "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["chips"] == 16 and data["system"]["tp_x"] == 4
    assert any(op["name"].endswith("reduce_scatter") for op in data["ops"])


def test_cli_bad_grid_is_one_line_exit_2(cli):
    code, _, err = cli("run", "--model", MODEL, "--hw", "tpu-v4", "--tp", "8", "--tp-x", "3")
    assert code == 2 and err.startswith("error: ") and "--tp-x 3 must divide --tp 8" in err
    assert len(err.strip().splitlines()) == 1


def test_cli_run_text_names_the_grid(cli):
    code, out, err = cli("run", "--model", MODEL, "--hw", "tpu-v4", "--tp", "16", "--tp-x", "4",
                         "--phase", "prefill", "--prompt", "512")
    assert code == 0, err
    assert "chips: 16 (tp=16 as 4x4 pp=1 dp=1 ep=1)" in out


# --- batch-sharded attention (Pope et al. 2022, Sec. 3.3) ----------------------------------

PALM62 = "validation/models/palm-62b.yaml"  # 32 heads, one shared K/V head (multi-query)


@pytest.fixture(scope="module")
def palm_decode():
    from accelsim.validate.predict import model_for
    return lower(model_for(PALM62), Workload(phase="decode", batch=32, context=2048))


def test_batch_sharding_keeps_one_copy_of_the_multiquery_cache(palm_decode):
    heads = shard(palm_decode, Parallelism(tp=16, tp_x=2))
    batch = shard(palm_decode, Parallelism(tp=16, tp_x=2, attention="batch"))
    full_kv = footprint(palm_decode)["kv_cache"]
    # by heads the single K/V head is replicated over the 8 y ranks: 1/2 of the cache per chip
    assert footprint(heads)["kv_cache"] == pytest.approx(full_kv / 2)
    assert footprint(batch)["kv_cache"] == pytest.approx(full_kv / 16)
    sdpa = by_name(batch)["layers.0.attn.sdpa"]
    assert (sdpa.batch, sdpa.heads, sdpa.kv_heads) == (2, 32, 1)  # 16 sequences per x rank over 8
    attention = [op for op in palm_decode if op.kind == "attention"]
    per_chip = [op for op in batch if op.kind == "attention"]
    assert sum(op.flops for op in per_chip) * 16 == pytest.approx(sum(op.flops for op in attention))


def test_batch_sharding_moves_only_the_queries(palm_decode):
    ops = by_name(shard(palm_decode, Parallelism(tp=16, tp_x=2, attention="batch")))
    to_batch, to_heads = ops["layers.0.attn.sdpa.to_batch"], ops["layers.0.attn.sdpa.to_heads"]
    assert (to_batch.pattern, to_batch.group, to_heads.group) == ("all_to_all", 8, 8)
    # 16 sequences x 4 query heads of 256 (bf16) leave each chip, and as many outputs come back
    assert to_batch.payload_bytes == 16 * 4 * 256 * B
    assert to_heads.payload_bytes == 16 * 4 * 256 * B


def test_batch_sharding_needs_sequences_to_split():
    wl = Workload(phase="decode", batch=1, context=2048)
    graph = lower(resolve_model(MODEL), wl)
    heads = shard(graph, Parallelism(tp=8))
    batch = shard(graph, Parallelism(tp=8, attention="batch"))
    assert [op.name for op in batch] == [op.name for op in heads]  # one sequence: nothing to move


def test_bad_attention_sharding_is_refused(cli):
    with pytest.raises(AccelsimError, match="not one of heads, batch"):
        Parallelism(tp=8, attention="rows")
    with pytest.raises(AccelsimError, match="give --tp or --chips too"):
        Parallelism.from_options(attention="batch")
    code, _, err = cli("run", "--model", MODEL, "--hw", "tpu-v4", "--tp", "8", "--attention-sharding", "rows")
    assert code == 2 and "--attention-sharding" in err and "Traceback" not in err


def test_cli_run_names_batch_sharded_attention(cli):
    code, out, err = cli("run", "--model", MODEL, "--hw", "tpu-v4", "--tp", "16", "--tp-x", "4",
                         "--attention-sharding", "batch", "--batch", "16")
    assert code == 0, err
    assert "chips: 16 (tp=16 as 4x4 pp=1 dp=1 ep=1 attention=batch)" in out
