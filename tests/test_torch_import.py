"""torch.nn.Module import: FLOPs against torch's own counter, parameter counts, simulation."""
from __future__ import annotations

from dataclasses import replace

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from accelsim import hardware, pipeline
from accelsim.api import simulate_graph
from accelsim.errors import AccelsimError
from accelsim.graph import Attention, MatMul, Norm, Scan
from accelsim.importers import torch_export
from accelsim.importers.torch_export import import_module
from accelsim.model.lower import lower
from accelsim.model.spec import ModelSpec
from accelsim.workload import Workload

VOCAB, HIDDEN, HEADS, KV_HEADS, FFN, LAYERS = 96, 64, 4, 2, 160, 2
BATCH, SEQ = 2, 16


class RMSNorm(nn.Module):
    """Written out (pow, mean, rsqrt) as Llama reference code does, to exercise norm fusion."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))


class Attn(nn.Module):
    def __init__(self):
        super().__init__()
        self.head_dim = HIDDEN // HEADS
        self.q_proj = nn.Linear(HIDDEN, HEADS * self.head_dim, bias=False)
        self.k_proj = nn.Linear(HIDDEN, KV_HEADS * self.head_dim, bias=False)
        self.v_proj = nn.Linear(HIDDEN, KV_HEADS * self.head_dim, bias=False)
        self.o_proj = nn.Linear(HEADS * self.head_dim, HIDDEN, bias=False)

    def forward(self, x):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, HEADS, -1).transpose(1, 2)
        k = self.k_proj(x).view(b, t, KV_HEADS, -1).transpose(1, 2)
        v = self.v_proj(x).view(b, t, KV_HEADS, -1).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        return self.o_proj(y.transpose(1, 2).reshape(b, t, -1))


class SwiGLU(nn.Module):
    def __init__(self):
        super().__init__()
        self.gate_proj = nn.Linear(HIDDEN, FFN, bias=False)
        self.up_proj = nn.Linear(HIDDEN, FFN, bias=False)
        self.down_proj = nn.Linear(FFN, HIDDEN, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn_norm, self.attn = RMSNorm(HIDDEN), Attn()
        self.mlp_norm, self.mlp = RMSNorm(HIDDEN), SwiGLU()

    def forward(self, x):
        x = x + self.attn(self.attn_norm(x))
        return x + self.mlp(self.mlp_norm(x))


class TinyLlama(nn.Module):
    def __init__(self, last_only: bool = False):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, HIDDEN)
        self.layers = nn.ModuleList(Block() for _ in range(LAYERS))
        self.norm = RMSNorm(HIDDEN)
        self.lm_head = nn.Linear(HIDDEN, VOCAB, bias=False)
        self.last_only = last_only

    def forward(self, ids):
        x = self.embed(ids)
        for layer in self.layers:
            x = layer(x)
        x = self.norm(x)
        return self.lm_head(x[:, -1:] if self.last_only else x)


class GRUBlock(nn.Module):
    """A recurrent mixer block: norm, projection, GRU over time, projection, residual."""

    def __init__(self, dim: int = 32, hidden: int = 48):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.in_proj = nn.Linear(dim, hidden)
        self.rnn = nn.GRU(hidden, hidden, batch_first=True)
        self.out_proj = nn.Linear(hidden, dim)

    def forward(self, x):
        y, _ = self.rnn(self.in_proj(self.norm(x)))
        return x + self.out_proj(y)


def counted_flops(module, *inputs) -> tuple[float, dict]:
    # FlopCounterMode has no formula for the fused CPU attention kernels (they count 0), so
    # attention runs on the MATH backend, whose two bmm's torch counts over the full T x T scores.
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, torch.no_grad():
        module(*inputs)
    return counter.get_total_flops(), counter.get_flop_counts()


def unmasked_tensor_flops(ops) -> float:
    """Tensor FLOPs with causal attention charged as full attention, as FlopCounterMode does
    (it multiplies every masked-out score too); accelsim counts only the (T+1)T/2 live pairs."""
    return sum(replace(op, causal=False).tensor_flops if isinstance(op, Attention) else op.tensor_flops
               for op in ops)


@pytest.fixture(scope="module")
def llama():
    torch.manual_seed(0)
    model = TinyLlama()
    ids = torch.randint(0, VOCAB, (BATCH, SEQ))
    return model, ids, import_module(model, (ids,), name="tiny-llama")


def test_llama_imported_through_export_with_typed_ops(llama):
    _, _, imported = llama
    assert imported.tracer == "torch.export" and imported.fallback_reason is None
    assert imported.unmapped == {}
    graph = imported.graph
    norms = [op for op in graph if isinstance(op, Norm)]
    # two hand-written RMSNorms per layer plus the final one, each fused into one Norm
    assert [op.name for op in norms] == ["layers.0.attn_norm", "layers.0.mlp_norm", "layers.1.attn_norm",
                                         "layers.1.mlp_norm", "norm"]
    assert all(op.rows == BATCH * SEQ and op.cols == HIDDEN for op in norms)
    (attn, *_) = [op for op in graph if isinstance(op, Attention)]
    assert (attn.batch, attn.heads, attn.kv_heads, attn.q_len, attn.kv_len, attn.qk_dim, attn.causal) == \
        (BATCH, HEADS, KV_HEADS, SEQ, SEQ, HIDDEN // HEADS, True)
    q = next(op for op in graph if op.name == "layers.1.attn.q_proj")
    assert isinstance(q, MatMul) and (q.m, q.k, q.n, q.layer) == (BATCH * SEQ, HIDDEN, HIDDEN, 1)
    assert q.inputs[1].role == "weight" and q.inputs[1].name == "layers.1.attn.q_proj.weight"


def test_llama_flops_match_flop_counter(llama):
    model, ids, imported = llama
    total, _ = counted_flops(model, ids)
    assert unmasked_tensor_flops(imported.graph) == pytest.approx(total, rel=0.02)


def test_llama_param_count_and_simulation(llama):
    model, _, imported = llama
    assert imported.param_count == sum(p.numel() for p in model.parameters())
    assert imported.graph.param_count == imported.param_count  # no buffers in this model
    result = simulate_graph(imported.graph, "h100-sxm", Workload(phase="prefill", batch=BATCH, prompt=SEQ))
    assert result.latency_s > 0 and result.tokens_per_s > 0
    # One cost per kernel of the graph the chip runs (pointwise ops fused, accelsim.transform.fusion).
    kernels = pipeline.chip_graph(imported.graph, hardware.load_hardware("h100-sxm"))
    assert result.model == "tiny-llama" and len(result.ops) == len(kernels) < len(imported.graph)


def test_dtype_overrides_change_weight_bytes(llama):
    model, ids, imported = llama
    bf16 = import_module(model, (ids,), weight_dtype="bf16", act_dtype="bf16")
    assert bf16.graph.weight_bytes == pytest.approx(imported.graph.weight_bytes / 2)
    with pytest.raises(AccelsimError, match="allowed: fp32"):
        import_module(model, (ids,), weight_dtype="fp12")


def test_gru_block_flops_params_state_and_simulation():
    torch.manual_seed(0)
    block = GRUBlock()
    x = torch.randn(3, 10, 32)
    imported = import_module(block, (x,))
    total, _ = counted_flops(block, x)
    assert unmasked_tensor_flops(imported.graph) == pytest.approx(total, rel=0.02)
    assert imported.param_count == sum(p.numel() for p in block.parameters())
    # one recurrent matmul per time step (steps depend on each other), and one Scan
    steps = [op for op in imported.graph if op.name.startswith("rnn.l0d0.step")]
    assert len(steps) == 10 and all((op.m, op.k, op.n) == (3, 48, 3 * 48) for op in steps)
    (scan,) = [op for op in imported.graph if isinstance(op, Scan)]
    assert (scan.batch, scan.steps, scan.channels) == (3, 10, 48)
    state = [t for t in scan.inputs if t.role == "state"]
    assert state and state[0].nbytes == 3 * 48 * 4  # fp32 hidden state per sequence
    result = simulate_graph(imported.graph, "h100-sxm", Workload(phase="prefill", batch=3, prompt=10))
    assert result.latency_s > 0


def test_fx_fallback_gives_the_same_flops(llama, monkeypatch):
    model, ids, exported = llama

    def broken_export(*args, **kwargs):
        raise RuntimeError("simulated export failure")

    monkeypatch.setattr(torch.export, "export", broken_export)
    traced = import_module(model, (ids,))
    assert traced.tracer == "torch.fx"
    assert "simulated export failure" in traced.fallback_reason
    assert traced.graph.total("tensor_flops") == exported.graph.total("tensor_flops")
    assert traced.param_count == exported.param_count
    assert sum(isinstance(op, Norm) for op in traced.graph) == 5


def test_conv_mapping_depthwise_and_dense():
    class Convs(nn.Module):
        def __init__(self):
            super().__init__()
            self.dw = nn.Conv1d(8, 8, 4, groups=8, padding=3)
            self.dense = nn.Conv1d(8, 16, 3)

        def forward(self, x):
            return self.dense(self.dw(x))

    module, x = Convs(), torch.randn(2, 8, 20)
    ops = {op.name: op for op in import_module(module, (x,)).graph}
    assert (ops["dw"].kind, ops["dw"].channels, ops["dw"].width, ops["dw"].length) == ("conv", 8, 4, 23)
    dense = ops["dense"]
    assert (dense.kind, dense.m, dense.k, dense.n) == ("matmul", 2 * 21, 8 * 3, 16)
    total, _ = counted_flops(module, x)
    assert ops["dw"].vector_flops + dense.tensor_flops == pytest.approx(total)


def test_unknown_op_is_zero_flop_data_movement():
    class Sorts(nn.Module):
        def forward(self, x):
            return torch.sort(x, dim=-1).values * 2

    imported = import_module(Sorts(), (torch.randn(4, 8),))
    assert imported.unmapped == {"sort": 1}
    (sort,) = [op for op in imported.graph if op.name.startswith("sort")]
    assert sort.flops == 0 and sort.bytes_moved > 0


def test_hardwired_chip_refuses_imported_graph(llama):
    _, _, imported = llama
    with pytest.raises(AccelsimError, match="hardwired"):
        simulate_graph(imported.graph, "hardwired-llama-3.1-8b", Workload(phase="prefill", batch=BATCH, prompt=SEQ))


def test_untraceable_module_gives_one_clear_error(monkeypatch):
    class Branchy(nn.Module):
        def forward(self, x):
            return x * 2 if x.sum() > 0 else x  # data-dependent control flow

    monkeypatch.setattr(torch.export, "export", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no")))
    with pytest.raises(AccelsimError, match="cannot trace Branchy"):
        torch_export.import_module(Branchy(), (torch.randn(3),))


def test_accelsim_lowering_matches_flop_counter_per_block():
    """accelsim's own Llama lowering against an equivalent torch model, block by block."""
    spec = ModelSpec.model_validate({
        "name": "tiny", "source": "in-test equivalent of TinyLlama", "vocab_size": VOCAB,
        "hidden_size": HIDDEN, "num_layers": LAYERS, "max_context": 64,
        "attention": {"num_heads": HEADS, "num_kv_heads": KV_HEADS, "head_dim": HIDDEN // HEADS},
        "mlp": {"kind": "swiglu", "intermediate_size": FFN}, "dtypes": {"weight": "fp32", "activation": "fp32",
                                                                         "kv": "fp32"}})
    graph = lower(spec, Workload(phase="prefill", batch=BATCH, prompt=SEQ))
    # accelsim computes logits for each sequence's last position only: so does this model
    model, ids = TinyLlama(last_only=True), torch.randint(0, VOCAB, (BATCH, SEQ))
    total, by_module = counted_flops(model, ids)
    for layer in range(LAYERS):
        ours = unmasked_tensor_flops(op for op in graph if op.layer == layer)
        assert ours == pytest.approx(sum(by_module[f"TinyLlama.layers.{layer}"].values()), rel=0.02)
    head = unmasked_tensor_flops(op for op in graph if op.layer is None)
    assert head == pytest.approx(sum(by_module["TinyLlama.lm_head"].values()), rel=0.02)
    assert unmasked_tensor_flops(graph) == pytest.approx(total, rel=0.02)
