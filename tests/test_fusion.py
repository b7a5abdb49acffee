"""Kernel fusion (accelsim.transform.fusion): conserved work, fewer bytes, the kernel count a
production engine launches, and an exact no-op under policy ``none``."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accelsim import hardware
from accelsim.api import simulate
from accelsim.errors import AccelsimError, ConfigError
from accelsim.graph import Collective
from accelsim.model.lower import lower
from accelsim.model.spec import load_model
from accelsim.sim.mapper import map_graph
from accelsim.transform import Parallelism, fusion, shard
from accelsim.workload import Workload

MODELS = ("llama-3.1-8b", "mixtral-8x7b", "mamba2-2.7b", "gemma-2-9b", "qwen2.5-7b")
WORKLOADS = (Workload("decode", batch=4, context=512), Workload("prefill", batch=1, prompt=256))


def _graphs(model: str, workload: Workload):
    graph = lower(load_model(model), workload)
    return graph, fusion.fuse(graph, "epilogue")


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("workload", WORKLOADS, ids=("decode", "prefill"))
def test_fusion_conserves_flops_and_never_adds_bytes(model, workload):
    graph, fused = _graphs(model, workload)
    assert fused.total("flops") == pytest.approx(graph.total("flops"), rel=1e-12)
    assert fused.total("tensor_flops") == graph.total("tensor_flops")
    assert fused.total("bytes_moved") <= graph.total("bytes_moved")
    assert len(fused) < len(graph)
    # Weights and caches are read exactly as before: only activations stop crossing memory.
    assert fused.param_count == graph.param_count
    static = ("weight", "kv_cache", "state")
    for role in static:
        before = sum(op.bytes_by_role().get(role, 0.0) for op in graph)
        after = sum(op.bytes_by_role().get(role, 0.0) for op in fused)
        assert after == pytest.approx(before, rel=1e-12)


def test_llama_layer_runs_as_seven_kernels():
    """Per layer: RMSNorm, QKV GEMM (+RoPE), attention, o_proj (+residual), RMSNorm, gate/up GEMM
    (+SiLU x mul), down (+residual) -- 11 ops become 7 kernels, as TensorRT-LLM launches."""
    graph, fused = _graphs("llama-3.1-8b", Workload("decode", batch=1, context=1024))
    layers = 32  # Llama-3.1-8B num_hidden_layers (its Hugging Face config)
    assert len(graph) == 11 * layers + 3  # embedding, final norm, LM head
    assert len(fused) == 7 * layers + 3
    layer0 = [(op.kind, op.name.split(".", 2)[2], getattr(op, "fused", ())) for op in fused
              if op.layer == 0]
    assert layer0 == [
        ("norm", "attn_norm", ()),
        ("matmul", "attn.qkv", ("rope",)),
        ("attention", "attn.sdpa", ()),
        ("matmul", "attn.o_proj", ("attn_residual",)),
        ("norm", "mlp_norm", ()),
        ("matmul", "mlp.up", ("act",)),
        ("matmul", "mlp.down", ("mlp_residual",)),
    ]


def test_glu_apart_runs_the_gated_activation_as_its_own_kernel():
    """TensorRT-LLM before its fused GEMM + SwiGLU kernel: per layer the gate/up GEMM writes
    2 x 14336 per token, a separate SiLU x mul kernel reads it back and writes 14336, and
    everything else fuses as under ``epilogue``."""
    workload = Workload("prefill", batch=1, prompt=512)
    graph = lower(load_model("llama-3.1-8b"), workload)
    fused, apart = fusion.fuse(graph, "epilogue"), fusion.fuse(graph, "epilogue", ("gated_activation",))
    assert len(apart) == len(fused) + 32  # one more kernel in each of the 32 layers
    layer0 = [(op.kind, op.name.split(".", 2)[2], getattr(op, "fused", ())) for op in apart
              if op.layer == 0]
    assert layer0[5:] == [("matmul", "mlp.up", ()), ("elementwise", "mlp.act", ()),
                          ("matmul", "mlp.down", ("mlp_residual",))]
    act = next(op for op in apart if op.name == "layers.0.mlp.act")
    assert act.bytes_moved == pytest.approx(512 * 3 * 14336 * 2)  # bf16: read 2 x 14336, write 14336
    extra = apart.total("bytes_moved") - fused.total("bytes_moved")
    # per layer: the act kernel's own traffic, plus the gate/up GEMM writing 2 x 14336 instead of 14336
    assert extra == pytest.approx(32 * (act.bytes_moved + 512 * 14336 * 2))
    assert apart.total("flops") == pytest.approx(graph.total("flops"), rel=1e-12)
    # a plain (ungated) MLP has no such op: the policy changes nothing there
    gpt2 = lower(load_model("gpt2"), workload)
    assert len(fusion.fuse(gpt2, "epilogue", ("gated_activation",))) == len(fusion.fuse(gpt2, "epilogue"))


def test_context_rope_is_its_own_kernel_in_prefill_only():
    """TensorRT-LLM's context phase applies RoPE (and writes the KV cache) in a kernel of its own
    before the fused attention; in decode its attention kernel applies RoPE itself."""
    spec = load_model("llama-3.1-8b")
    prefill = lower(spec, Workload("prefill", batch=1, prompt=512))
    apart = fusion.fuse(prefill, "epilogue", ("context_rope",))
    assert len(apart) == len(fusion.fuse(prefill, "epilogue")) + 32
    layer0 = [(op.kind, op.name.split(".", 2)[2], getattr(op, "fused", ())) for op in apart if op.layer == 0]
    assert layer0[1:4] == [("matmul", "attn.qkv", ()), ("elementwise", "attn.rope", ()),
                           ("attention", "attn.sdpa", ())]
    rope = next(op for op in apart if op.name == "layers.0.attn.rope")
    assert rope.bytes_moved == pytest.approx(2 * 512 * (32 + 2 * 8) * 128 * 2)  # read and write q, k, v (bf16)
    decode = lower(spec, Workload("decode", batch=4, context=512))
    assert len(fusion.fuse(decode, "epilogue", ("context_rope",))) == len(fusion.fuse(decode, "epilogue"))


def test_unknown_unfused_op_is_one_clear_error():
    graph = lower(load_model("gpt2"), Workload("decode", batch=1, context=8))
    with pytest.raises(AccelsimError) as err:
        fusion.fuse(graph, "epilogue", ("rope",))
    assert "gated_activation" in str(err.value) and "context_rope" in str(err.value)


def test_fused_gemm_writes_only_what_leaves_the_kernel():
    """Gate/up GEMM + SiLU x mul at batch 1: the 2 x 14336 GEMM output and the activation's read
    of it stay on chip; only the 14336-wide product is written (bf16, 2 B)."""
    graph, fused = _graphs("llama-3.1-8b", Workload("decode", batch=1, context=1024))
    up = {op.name: op for op in graph}
    kernel = {op.name: op for op in fused}["layers.0.mlp.up"]
    unfused = up["layers.0.mlp.up"].bytes_moved + up["layers.0.mlp.act"].bytes_moved
    assert unfused - kernel.bytes_moved == 2 * (28672 + 28672)
    assert kernel.outputs[0].shape == (1, 14336)
    assert kernel.vector_flops == up["layers.0.mlp.act"].flops == 5 * 14336


def test_policy_none_reproduces_unfused_costs_exactly():
    chip = hardware.load_hardware("h100-sxm")
    plain = chip.model_copy(update={"gpu": chip.gpu.model_copy(update={"fusion": "none"})})
    workload = Workload("decode", batch=8, context=2048)
    graph = lower(load_model("llama-3.1-8b"), workload)
    assert fusion.fuse(graph, "none") is graph
    kind = hardware.backend(plain)
    costs = map_graph(graph, plain, kind, kind.place(graph, plain, None, workload))
    result = simulate("llama-3.1-8b", plain, workload)
    assert [c.time_s for c in result.ops] == [c.time_s for c in costs]
    # The kernels back to back, plus the runtime's host work once per step (gpu.step_overhead).
    assert result.latency_s == sum(c.time_s for c in costs) + plain.gpu.step_overhead


@pytest.mark.parametrize("hw", ("h100-sxm", "a100-sxm", "tpu-v5e"))
def test_fusion_makes_decode_faster_and_pays_one_launch_per_kernel(hw):
    chip = hardware.load_hardware(hw)
    section = chip.kind
    plain = chip.model_copy(update={section: getattr(chip, section).model_copy(update={"fusion": "none"})})
    workload = Workload("decode", batch=1, context=512)
    fused, unfused = simulate("llama-3.2-1b", chip, workload), simulate("llama-3.2-1b", plain, workload)
    assert len(fused.ops) < len(unfused.ops)
    assert fused.latency_s < unfused.latency_s
    assert fused.flops == pytest.approx(unfused.flops, rel=1e-12)


def test_collectives_are_never_fused_and_fusion_runs_after_sharding():
    workload = Workload("decode", batch=2, context=256)
    sharded = shard(lower(load_model("llama-3.1-8b"), workload), Parallelism(tp=2))
    fused = fusion.fuse(sharded)
    collectives = [op for op in sharded if isinstance(op, Collective)]
    assert [op.name for op in fused if isinstance(op, Collective)] == [op.name for op in collectives]
    # The all-reduce sits between o_proj and the residual add, so the add cannot ride o_proj.
    o_proj = {op.name: op for op in fused}["layers.0.attn.o_proj"]
    assert getattr(o_proj, "fused", ()) == ()
    assert fused.total("flops") == pytest.approx(sharded.total("flops"), rel=1e-12)


def test_spatial_kinds_do_not_fuse_and_off_chip_kinds_default_to_epilogue():
    for name, policy in (("hardwired-llama-3.1-8b", "none"), ("groq-lpu", "none"),
                         ("h100-sxm", "epilogue"), ("tpu-v5e", "epilogue")):
        chip = hardware.load_hardware(name)
        assert hardware.backend(chip).fusion_policy(chip)[0] == policy


def test_unknown_policy_is_one_clear_error(write):
    with pytest.raises(AccelsimError, match="fusion policy must be one of none, epilogue"):
        fusion.fuse(lower(load_model("llama-3.2-1b"), Workload()), "greedy")
    text = (hardware.loader.resolve("h100-sxm", "hw_configs", "hardware config")
            .read_text().replace("  cluster: 2\n", "  cluster: 2\n  fusion: greedy\n"))
    with pytest.raises(ConfigError, match="gpu.fusion"):
        hardware.load_hardware(str(write("bad.yaml", text)))
    text = text.replace("  fusion: greedy\n", "  unfused: [rope]\n")
    with pytest.raises(ConfigError) as err:
        hardware.load_hardware(str(write("bad2.yaml", text)))
    line = err.value.one_line()
    assert "gpu.unfused" in line and "context_rope" in line and "\n" not in line


@settings(max_examples=15, deadline=None)
@given(batch=st.integers(1, 64), context=st.integers(1, 4096))
def test_fused_decode_is_never_slower_than_unfused(batch, context):
    chip = hardware.load_hardware("h100-sxm")
    plain = chip.model_copy(update={"gpu": chip.gpu.model_copy(update={"fusion": "none"})})
    workload = Workload("decode", batch=batch, context=context)
    assert (simulate("llama-3.2-1b", chip, workload).latency_s
            <= simulate("llama-3.2-1b", plain, workload).latency_s)

