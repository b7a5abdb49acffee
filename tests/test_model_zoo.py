"""The model catalogue: every block family lowers; counts, per-token costs and state sizes match
the reference data (validation/models/catalogue.csv, copied from shared/refdata/models, and
that folder's README.md section 5)."""
import csv
import json
import math
import re
from functools import cache
from pathlib import Path

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accelsim.config import loader
from accelsim.errors import ConfigError
from accelsim.graph import Attention, MatMul, Scan
from accelsim.model.blocks.moe import expected_distinct_experts
from accelsim.model.describe import active_params, describe_model, kv_bytes
from accelsim.model.lower import lower
from accelsim.model.spec import ModelSpec, load_model
from accelsim.workload import Workload

REPO = Path(__file__).resolve().parent.parent
# A copy of shared/refdata/models/catalogue.csv (with its source columns) travels with the repo.
CATALOGUE = REPO / "validation" / "models" / "catalogue.csv"
MODELS = sorted(loader.bundled_names("models"))
DECODE = Workload("decode", batch=1, prompt=1, context=0)

# model file -> the catalogue.csv row (its `model` column starts with this)
CATALOGUE_ROW = {
    "gpt2": "GPT-2 small", "llama-2-7b": "Llama-2-7B", "llama-3.1-8b": "Llama-3.1-8B",
    "llama-3.1-70b": "Llama-3.1-70B", "llama-3.1-405b": "Llama-3.1-405B", "llama-3.2-1b": "Llama-3.2-1B",
    "mistral-7b": "Mistral-7B", "mixtral-8x7b": "Mixtral-8x7B", "gemma-2-9b": "Gemma-2-9B",
    "gemma-3-1b": "Gemma-3-1B", "qwen2.5-7b": "Qwen2.5-7B", "deepseek-v3": "DeepSeek-V3",
    "mamba-2.8b": "Mamba-2.8B", "mamba2-2.7b": "Mamba2-2.7B", "jamba-v0.1": "Jamba-v0.1",
    "recurrentgemma-2b": "RecurrentGemma-2B", "recurrentgemma-9b": "RecurrentGemma-9B",
    "rwkv7-2.9b": "RWKV-7 World3 2.9B", "stripedhyena-7b": "StripedHyena-Nous-7B",
    "mmfreelm-370m": "MatMul-free LM 370M", "mmfreelm-1.3b": "MatMul-free LM 1.3B",
    "mmfreelm-2.7b": "MatMul-free LM 2.7B", "bitnet-b1.58-2b4t": "BitNet b1.58 2B4T",
}


@cache
def model(name: str) -> ModelSpec:
    return load_model(name)


@cache
def decode_graph(name: str):
    return lower(model(name), DECODE)


def catalogue_rows() -> dict[str, dict]:
    if not CATALOGUE.is_file():
        pytest.fail(f"reference catalogue missing at {CATALOGUE}")
    with CATALOGUE.open(encoding="utf-8") as f:
        return {row["model"]: row for row in csv.DictReader(f)}


def leading_int(text: str) -> int | None:
    found = re.match(r"~?(\d+)", text.strip())
    return int(found.group(1)) if found else None


def test_the_catalogue_has_every_required_model():
    assert set(CATALOGUE_ROW) <= set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_every_model_lowers_for_prefill_and_decode(name):
    spec = model(name)
    for wl in (Workload("prefill", batch=2, prompt=300), Workload("decode", batch=3, context=700)):
        graph = lower(spec, wl)
        assert nx.is_directed_acyclic_graph(graph.dag)
        # ~2 FLOPs per active weight per token (the embedding gather and head rows aside)
        assert graph.total("flops") > active_params(decode_graph(name)) * wl.tokens
        assert graph.param_count == decode_graph(name).param_count  # weights do not depend on the step


@pytest.mark.parametrize("name", sorted(CATALOGUE_ROW))
def test_parameter_counts_match_the_catalogue(name):
    rows = catalogue_rows()
    row = next(r for key, r in rows.items() if key.startswith(CATALOGUE_ROW[name]))
    graph = decode_graph(name)
    assert graph.param_count == pytest.approx(leading_int(row["params_computed"]), rel=1e-3)
    active = leading_int(row["params_active_computed"])
    if active is not None:
        assert active_params(graph) == pytest.approx(active, rel=1e-3)
    assert model(name).published.params_total == graph.param_count  # the YAML cites the exact count


def test_llama_3_1_8b_count_is_exact():
    assert decode_graph("llama-3.1-8b").param_count == 8_030_261_248


def layer_ops(graph, layer, kind=None):
    return [op for op in graph if op.layer == layer and (kind is None or isinstance(op, kind))]


def state_elements(graph, layer):
    return sum(t.elements for op in layer_ops(graph, layer) for t in op.inputs if t.role == "state")


def matmul_flops(graph, layer):
    return sum(op.tensor_flops for op in layer_ops(graph, layer, MatMul))


def test_mamba1_decode_matches_readme_formulas():
    # README 5.1, Mamba-2.8B: D 2560, E 5120, N 16, K 4, R 160.
    g, d, e, n, r = decode_graph("mamba-2.8b"), 2560, 5120, 16, 160
    assert matmul_flops(g, 0) == 2 * (3 * d * e + 2 * e * r + 2 * e * n)  # 82.2 MFLOP
    assert matmul_flops(g, 0) == pytest.approx(82.2e6, rel=1e-3)
    scan = layer_ops(g, 0, Scan)[0]
    assert scan.flops == 7 * e * n + e * n  # 7EN FLOPs plus EN exponentials
    assert state_elements(g, 0) == 81_920 + 15_360
    assert sum(state_elements(g, i) for i in range(64)) == 64 * (81_920 + 15_360)


def test_mamba2_decode_matches_readme_formulas():
    g, d, e, n, hs = decode_graph("mamba2-2.7b"), 2560, 5120, 128, 80
    assert matmul_flops(g, 0) == 2 * (d * (2 * e + 2 * n + hs) + e * d)
    assert layer_ops(g, 0, Scan)[0].flops == 5 * e * n
    assert state_elements(g, 0) == 655_360 + 16_128


def test_mamba2_prefill_is_chunked_matmuls():
    spec = model("mamba2-2.7b")
    g = lower(spec, Workload("prefill", batch=1, prompt=1024))
    ssd = [op for op in layer_ops(g, 0, MatMul) if ".ssd." in op.name]
    e, n, q, t = 5120, 128, 256, 1024
    # README 5.2: total SSD ~ 2TQ(GN + E) + 4TNE (+ the short inter-chunk scan)
    assert sum(op.flops for op in ssd) == 2 * t * q * (n + e) + 4 * t * n * e
    passing = next(op for op in layer_ops(g, 0, Scan))
    assert passing.steps == t // q and passing.flops == 2 * (t // q) * e * n


def test_rglru_decode_matches_readme_formulas():
    g = decode_graph("recurrentgemma-2b")
    assert model("recurrentgemma-2b").layer_kinds[0].mixers == ("rglru",)
    d = r = 2560
    mixer = [op for op in layer_ops(g, 0, MatMul) if ".rglru." in op.name]
    assert sum(op.flops for op in mixer) == 2 * (2 * d * r + r * d) + 4 * r * r // 10 == 41_943_040
    assert state_elements(g, 0) == r + 3 * r == 10_240


def test_mlgru_is_ternary_and_add_only_with_readme_costs():
    spec, g = model("mmfreelm-2.7b"), decode_graph("mmfreelm-2.7b")
    d, i = 2560, 6912
    block = layer_ops(g, 0, MatMul)
    assert all(op.add_only and op.b_dtype == "ternary" and op.a_dtype == "int8" for op in block)
    assert sum(op.macs for op in block) == 4 * d * d + 3 * d * i  # 79.3M ternary accumulations
    head = next(op for op in g if op.name == "lm_head")
    assert head.add_only
    assert sum(state_elements(g, layer) for layer in range(spec.num_layers)) == 81_920
    weights = g.weights()
    ternary = sum(t.elements for t in weights.values() if t.dtype == "ternary")
    assert weights["layers.0.mlgru.i_proj.weight"].nbytes == d * d * math.log2(3) / 8  # 1.58 bits
    assert ternary == spec.num_layers * (4 * d * d + 3 * d * i) + d * spec.vocab_size


def test_bitnet_ternary_body_but_full_precision_head():
    g = decode_graph("bitnet-b1.58-2b4t")
    assert all(op.add_only for op in g if isinstance(op, MatMul) and op.layer is not None)
    assert not next(op for op in g if op.name == "lm_head").add_only


def test_rwkv7_decode_matches_readme_formulas():
    g, c, n = decode_graph("rwkv7-2.9b"), 2560, 64
    assert matmul_flops(g, 1) == 2 * (12 * c * c + 2 * c * (96 + 96 + 64 + 320)) == pytest.approx(163.2e6, rel=1e-3)
    wkv = next(op for op in layer_ops(g, 1, Scan))
    assert wkv.flops == 9 * c * n
    assert state_elements(g, 1) == c * n + 2 * c  # S plus the two token-shift vectors


def test_hyena_state_matches_readme():
    g = decode_graph("stripedhyena-7b")
    assert model("stripedhyena-7b").layer_kinds[0].mixers == ("hyena",)
    assert state_elements(g, 0) == 24_576 + 16_384
    assert state_elements(g, 1) == 0  # attention layer: KV cache, no state


def attention_cost(name, context):
    g = lower(model(name), Workload("decode", batch=1, context=context))
    return g.total("flops", [op for op in g if isinstance(op, Attention)]), kv_bytes(model(name), context)


def test_sliding_window_decode_cost_stops_growing_past_the_window():
    before, at, past = (attention_cost("mistral-7b", c) for c in (2000, 4095, 12000))
    assert before[0] < at[0] == past[0]
    assert before[1] < at[1] == past[1] == 32 * 4096 * 2 * 8 * 128 * 2
    # Llama has no window: its cost keeps growing.
    assert attention_cost("llama-3.1-8b", 12000)[0] > attention_cost("llama-3.1-8b", 4095)[0]


def test_local_global_patterns():
    g2 = [k.window for k in model("gemma-2-9b").layer_kinds]
    assert g2[:4] == [4096, None, 4096, None] and g2.count(None) == 21
    g3 = model("gemma-3-1b").layer_kinds
    assert [i for i, k in enumerate(g3) if k.window is None] == [5, 11, 17, 23]
    jamba = [k.label() for k in model("jamba-v0.1").layer_kinds]
    assert [i for i, k in enumerate(jamba) if k.startswith("attention")] == [4, 12, 20, 28]
    assert [i for i, k in enumerate(jamba) if k.endswith("moe")] == list(range(1, 32, 2))
    # Gemma-3: past the 512 window only the 4 global layers grow (MQA, head_dim 256, bf16).
    assert describe_model(model("gemma-3-1b"))["kv_bytes_per_token_past_window"] == 4 * 2 * 256 * 2


def test_mla_caches_the_latent_only_and_absorption_keeps_the_weights():
    spec = model("deepseek-v3")
    assert describe_model(spec)["kv_bytes_per_token"] == 61 * 576 * 2
    naive = spec.model_copy(update={"mla": spec.mla.model_copy(update={"absorbed": False})})
    wl = Workload("decode", batch=1, context=4096)
    g_abs, g_naive = lower(spec, wl), lower(naive, wl)
    assert g_abs.param_count == g_naive.param_count
    assert kv_bytes(spec, 4096) == kv_bytes(naive, 4096)
    # Not absorbed, every step re-expands all 4097 cached latents into per-head K and V.
    assert g_naive.total("flops") > 2 * g_abs.total("flops")


def expert_weight_bytes(name, batch):
    g = lower(model(name), Workload("decode", batch=batch, context=16))
    return sum(a.nbytes for op in layer_ops(g, 0, MatMul) if ".experts." in op.name
               for a in op.reads() if a.tensor.role == "weight")


@settings(max_examples=15, deadline=None)
@given(batch=st.integers(min_value=1, max_value=64))
def test_moe_weight_bytes_follow_expected_distinct_experts(batch):
    spec = model("mixtral-8x7b")
    e, k, d, i = 8, 2, 4096, 14336
    full = e * 3 * d * i * 2  # all experts of one layer, bf16
    expected = expected_distinct_experts(e, k, batch)
    assert expert_weight_bytes("mixtral-8x7b", batch) == pytest.approx(full * expected / e, rel=1e-9)
    g = lower(spec, Workload("decode", batch=batch, context=16))
    routed = [op for op in layer_ops(g, 0, MatMul) if ".experts." in op.name]
    assert sum(op.flops for op in routed) == 2 * batch * k * 3 * d * i  # FLOPs follow tokens, not experts
    assert all(op.count == math.ceil(expected - 1e-9) for op in routed)


def test_moe_distinct_experts_grow_with_batch_to_saturation():
    touched = [expected_distinct_experts(256, 8, b) for b in (1, 2, 8, 64, 1024)]
    assert touched[0] == pytest.approx(8) and touched == sorted(touched) and touched[-1] == pytest.approx(256)
    assert expert_weight_bytes("mixtral-8x7b", 1) * 4 == pytest.approx(expert_weight_bytes("mixtral-8x7b", 10**4))


def test_layer_rules_that_name_a_missing_section_are_one_line_errors():
    data = {"name": "x", "source": "test", "vocab_size": 10, "hidden_size": 8, "num_layers": 4,
            "max_context": 16, "attention": {"num_heads": 2, "num_kv_heads": 1, "head_dim": 4},
            "layers": [{"every": 2, "mixer": "mamba1"}]}
    with pytest.raises(ConfigError, match="mixer 'mamba1' but the file has no 'mamba1:' section"):
        loader.validate(ModelSpec, data, "x.yaml")
    data["layers"] = [{"indices": [9], "mixer": "attention"}]
    with pytest.raises(ConfigError, match="must be < num_layers"):
        loader.validate(ModelSpec, data, "x.yaml")


def test_parallel_mixers_sum_on_the_same_input():
    data = {"name": "par", "source": "test", "vocab_size": 32, "hidden_size": 64, "num_layers": 2,
            "max_context": 128, "attention": {"num_heads": 4, "num_kv_heads": 2, "head_dim": 16},
            "mamba2": {"d_state": 16, "headdim": 16, "chunk_size": 8},
            "mlp": {"kind": "swiglu", "intermediate_size": 128},
            "layers": [{"mixer": ["attention", "mamba2"]}]}
    spec = loader.validate(ModelSpec, data, "par.yaml")
    g = lower(spec, Workload("decode", batch=1, context=4))
    assert spec.layer_kinds[0].label() == "attention||mamba2+mlp"
    summed = next(op for op in g if op.name == "layers.0.mixer_sum")
    assert {t.name for t in summed.inputs} == {"layers.0.attn.o_proj.out", "layers.0.mamba.out_proj.out"}


def test_models_show_json_reports_sizes(cli):
    code, out, _ = cli("models", "show", "recurrentgemma-2b", "--json")
    info = json.loads(out)
    assert code == 0
    assert info["state_bytes_per_sequence"] == 18 * 10_240 * 4  # fp32 state
    assert info["kv_bytes_per_token"] == 8 * 2 * 256 * 2 and info["kv_bytes_per_token_past_window"] == 0
    assert info["layer_kinds"][:3] == ["rglru+mlp", "rglru+mlp", "attention(window 2048)+mlp"]
    code, _, err = cli("models", "show", "no-such-model")
    assert code == 2 and len(err.strip().splitlines()) == 1
