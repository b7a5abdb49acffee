"""The lowered graph: published parameter count and FLOPs from first principles."""
import pytest

from accelsim.graph import Attention, MatMul
from accelsim.model.lower import lower
from accelsim.model.spec import load_model
from accelsim.workload import Workload

LLAMA_8B_PARAMS = 8_030_261_248  # HF checkpoint count (shared/refdata/models/catalogue.csv)


@pytest.fixture(scope="module")
def llama():
    return load_model("llama-3.1-8b")


def test_llama_3_1_8b_parameter_count_equals_the_checkpoint(llama):
    graph = lower(llama, Workload("decode", batch=1, context=0))
    assert graph.param_count == LLAMA_8B_PARAMS
    assert graph.weight_bytes == LLAMA_8B_PARAMS * 2  # bf16


@pytest.mark.parametrize("batch, prompt", [(1, 2048), (4, 512), (2, 1)])
def test_prefill_flops_are_two_per_param_per_token_plus_attention(llama, batch, prompt):
    graph = lower(llama, Workload("prefill", batch=batch, prompt=prompt))
    d, v, layers = llama.hidden_size, llama.vocab_size, llama.num_layers
    a = llama.attention
    embed_and_head = 2 * v * d
    body = graph.param_count - embed_and_head  # non-embedding weights (norm weights are tiny)
    tokens = batch * prompt
    causal_pairs = prompt * (prompt + 1) // 2
    attention = layers * batch * a.num_heads * causal_pairs * 2 * (2 * a.head_dim)
    head = 2 * d * v * batch  # logits only for each sequence's last position
    expected = 2 * body * tokens + attention + head
    assert graph.total("flops") == pytest.approx(expected, rel=0.01)
    assert graph.total("tensor_flops") == pytest.approx(expected, rel=0.001)


def test_decode_attention_reads_the_whole_kv_cache(llama):
    wl = Workload("decode", batch=3, context=1000)
    graph = lower(llama, wl)
    attn = [op for op in graph if isinstance(op, Attention)]
    assert len(attn) == llama.num_layers
    per_layer_cache = 3 * 2 * 8 * 1000 * 128 * 2
    assert sum(acc.nbytes for acc in attn[0].reads() if acc.tensor.role == "kv_cache") == per_layer_cache
    assert attn[0].pairs == 1001


def test_graph_edges_follow_tensors(llama):
    graph = lower(llama, Workload("decode", batch=1, context=16))
    assert graph.predecessors("layers.0.attn.qkv") == ["layers.0.attn_norm"]
    assert set(graph.predecessors("layers.0.attn_residual")) == {"embed", "layers.0.attn.o_proj"}
    import networkx as nx
    assert nx.is_directed_acyclic_graph(graph.dag)


def test_matmul_shapes_for_decode(llama):
    graph = lower(llama, Workload("decode", batch=8, context=10))
    qkv = next(op for op in graph if op.name == "layers.0.attn.qkv")
    assert isinstance(qkv, MatMul)
    assert (qkv.m, qkv.k, qkv.n) == (8, 4096, (32 + 2 * 8) * 128)


@pytest.mark.parametrize("q_len, kv_len, window, expected", [
    (4, 4, None, 1 + 2 + 3 + 4),
    (1, 10, None, 10),
    (1, 10, 4, 4),
    (6, 6, 3, 1 + 2 + 3 + 3 + 3 + 3),
    (2, 7, 3, 3 + 3),
])
def test_attention_pairs_respect_causality_and_window(q_len, kv_len, window, expected):
    op = Attention("a", (), (), q_len=q_len, kv_len=kv_len, window=window)
    assert op.pairs == expected
