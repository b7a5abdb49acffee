"""The 2025 serving models (issue 16, deliverable 4): DeepSeek-R1 with its MTP module, gpt-oss-120b
and Qwen3-235B-A22B.  Their counts match the published figures, their Hugging Face config.json
files import to the same models, they run under tensor and expert parallelism, and the MTP
module leaves an ordinary step alone."""
import json

import pytest

from accelsim import simulate
from accelsim.errors import AccelsimError, ConfigError
from accelsim.graph import Attention, MatMul
from accelsim.model.describe import active_params, describe_model
from accelsim.model.lower import lower, lower_mtp
from accelsim.model.spec import load_model
from accelsim.transform import Parallelism, shard
from accelsim.workload import Workload

DECODE = Workload("decode", batch=1, prompt=1, context=0)

# Hand-written config.json files holding the published fields (no downloads).
# source: https://huggingface.co/openai/gpt-oss-120b/blob/main/config.json
GPT_OSS_120B = {
    "model_type": "gpt_oss", "architectures": ["GptOssForCausalLM"], "attention_bias": True,
    "experts_per_token": 4, "num_experts_per_tok": 4, "head_dim": 64, "hidden_act": "silu",
    "hidden_size": 2880, "intermediate_size": 2880, "initial_context_length": 4096,
    "layer_types": ["sliding_attention", "full_attention"] * 18, "max_position_embeddings": 131072,
    "num_attention_heads": 64, "num_hidden_layers": 36, "num_key_value_heads": 8,
    "num_local_experts": 128, "rms_norm_eps": 1e-05, "rope_theta": 150000, "sliding_window": 128,
    "swiglu_limit": 7.0, "tie_word_embeddings": False, "vocab_size": 201088,
    "quantization_config": {"quant_method": "mxfp4"}}
# source: https://huggingface.co/Qwen/Qwen3-235B-A22B/blob/main/config.json
QWEN3_235B = {
    "model_type": "qwen3_moe", "architectures": ["Qwen3MoeForCausalLM"], "attention_bias": False,
    "decoder_sparse_step": 1, "head_dim": 128, "hidden_act": "silu", "hidden_size": 4096,
    "intermediate_size": 12288, "max_position_embeddings": 40960, "max_window_layers": 94,
    "mlp_only_layers": [], "moe_intermediate_size": 1536, "norm_topk_prob": True,
    "num_attention_heads": 64, "num_experts": 128, "num_experts_per_tok": 8,
    "num_hidden_layers": 94, "num_key_value_heads": 4, "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0, "sliding_window": None, "tie_word_embeddings": False,
    "use_sliding_window": False, "vocab_size": 151936}
# source: https://huggingface.co/deepseek-ai/DeepSeek-R1/blob/main/config.json
DEEPSEEK_R1 = {
    "model_type": "deepseek_v3", "architectures": ["DeepseekV3ForCausalLM"], "first_k_dense_replace": 3,
    "hidden_act": "silu", "hidden_size": 7168, "intermediate_size": 18432, "kv_lora_rank": 512,
    "max_position_embeddings": 163840, "moe_intermediate_size": 2048, "n_group": 8,
    "n_routed_experts": 256, "n_shared_experts": 1, "num_attention_heads": 128,
    "num_experts_per_tok": 8, "num_hidden_layers": 61, "num_key_value_heads": 128,
    "num_nextn_predict_layers": 1, "q_lora_rank": 1536, "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64, "tie_word_embeddings": False, "topk_group": 4, "v_head_dim": 128,
    "vocab_size": 129280}


@pytest.fixture
def config(tmp_path):
    def make(data, name="config.json"):
        path = tmp_path / name
        path.write_text(json.dumps(data), encoding="utf-8")
        return str(path)
    return make


def embedding_params(name: str) -> int:
    spec = load_model(name)
    return spec.vocab_size * spec.hidden_size


def test_gpt_oss_120b_matches_its_model_card():
    d = describe_model(load_model("gpt-oss-120b"))
    # source: gpt-oss model card (arXiv 2508.10925) Table 1: 116.83B total, 5.13B active
    assert round(d["params_total"] / 1e9, 2) == 116.83
    # the card's active count leaves the embedding table out (the head stays in)
    assert round((d["params_active"] - embedding_params("gpt-oss-120b")) / 1e9, 2) == 5.13
    assert d["params_total"] == d["published_params_total"]
    assert d["params_active"] == d["published_params_active"]


def test_gpt_oss_parts_match_the_model_card_breakdown():
    # source: the model card's Table 1 breakdown: MLP 114.71B, attention 0.96B, embed+unembed 1.16B
    graph = lower(load_model("gpt-oss-120b"), DECODE)
    weights = graph.weights()
    moe = sum(w.elements for n, w in weights.items() if ".moe." in n)
    attn = sum(w.elements for n, w in weights.items() if ".attn." in n)
    assert round(moe / 1e9, 2) == 114.71
    assert round(attn / 1e9, 2) == 0.96
    assert weights["embed.weight"].elements + weights["lm_head.weight"].elements == pytest.approx(1.16e9, abs=5e6)
    assert weights["layers.0.attn.sinks"].elements == 64  # one sink logit per query head


def test_gpt_oss_alternates_a_128_token_window_with_full_attention():
    kinds = load_model("gpt-oss-120b").layer_kinds
    assert [k.window for k in kinds[:4]] == [128, None, 128, None]
    assert sum(k.window == 128 for k in kinds) == 18
    graph = lower(load_model("gpt-oss-120b"), Workload("decode", batch=1, context=4096))
    sdpa = {op.layer: op for op in graph if isinstance(op, Attention)}
    assert sdpa[0].pairs == 128 and sdpa[1].pairs == 4097  # a windowed query sees 128 keys


def test_qwen3_235b_a22b_matches_its_published_counts():
    d = describe_model(load_model("qwen3-235b-a22b"))
    # source: Qwen3 technical report (arXiv 2505.09388) Table 2: 235B total, 22B activated
    assert round(d["params_total"] / 1e9) == 235
    assert round(d["params_active"] / 1e9) == 22
    assert d["params_total"] == d["published_params_total"] == 235_093_634_560
    assert d["params_active"] == d["published_params_active"]


def test_qwen3_normalises_every_q_and_k_head():
    graph = lower(load_model("qwen3-235b-a22b"), DECODE)
    norms = [op for op in graph if op.role == "qk_norm" and op.layer == 0]
    assert len(norms) == 1 and norms[0].rows == 64 + 4 and norms[0].cols == 128


@pytest.mark.parametrize("name", ["deepseek-r1", "deepseek-v3"])
def test_deepseek_mtp_module_matches_the_readme(name):
    d = describe_model(load_model(name))
    # source: DeepSeek-V3 README: 671B main model, 37B activated; README_WEIGHTS.md: the MTP
    # module has 11.5B unique parameters (its decoder layer) and the checkpoint 685B in all
    assert round(d["params_total"] / 1e9) == 671
    assert d["params_mtp"] == d["published_params_mtp"]
    own = ("layers.61.enorm", "layers.61.hnorm", "layers.61.eh_proj", "layers.61.shared_head")
    layer = sum(w.elements for n, w in lower_mtp(load_model(name), DECODE).weights().items()
                if n.startswith("layers.61.") and not n.startswith(own))
    assert round(layer / 1e9, 1) == 11.5
    with_copies = d["params_total"] + d["params_mtp"] + 2 * embedding_params(name)
    # the checkpoint stores its own embedding and head copies (and FP8 block scales, not
    # parameters here): 684.5B against the README's 685B
    assert with_copies / 1e9 == pytest.approx(685, abs=0.6)


def test_mtp_does_not_change_the_normal_step():
    spec = load_model("deepseek-v3")
    without = spec.model_copy(update={"mtp": None})
    wl = Workload("decode", batch=4, context=512)
    assert [op for op in lower(spec, wl)] == [op for op in lower(without, wl)]
    assert simulate(spec, "h200", wl, parallelism=Parallelism(dp=8, ep=8)).latency_s == \
        simulate(without, "h200", wl, parallelism=Parallelism(dp=8, ep=8)).latency_s


def test_mtp_is_its_own_ops_with_the_mtp_role_and_shared_tables():
    spec = load_model("deepseek-r1")
    graph = lower_mtp(spec, Workload("decode", batch=2, context=100))
    roles = {op.name: op.role for op in graph}
    assert roles["layers.61.eh_proj"] == "mtp" and roles["layers.61.concat"] == "mtp"
    eh = next(op for op in graph if op.name == "layers.61.eh_proj")
    assert isinstance(eh, MatMul) and (eh.k, eh.n) == (2 * 7168, 7168)
    assert {"embed.weight", "lm_head.weight"} <= set(graph.weights())
    assert any(op.layer == 61 and op.role == "expert_up" for op in graph)  # the MoE block of layer 61
    with pytest.raises(AccelsimError, match="no multi-token-prediction module"):
        lower_mtp(load_model("llama-3.1-8b"), DECODE)


@pytest.mark.parametrize("name, dtype, layout", [
    ("gpt-oss-120b", "fp8", Parallelism(tp=8, ep=8)),
    ("gpt-oss-120b", "fp8", Parallelism(tp=4)),
    ("qwen3-235b-a22b", "fp8", Parallelism(tp=8, ep=8)),
    ("qwen3-235b-a22b", "fp8", Parallelism(tp=4, dp=2, ep=8)),
    ("deepseek-r1", None, Parallelism(dp=8, ep=8)),
])
def test_the_new_models_run_under_tp_and_ep(name, dtype, layout):
    wl = Workload("decode", batch=16, context=2048)
    spread = simulate(name, "h200", wl, weight_dtype=dtype, parallelism=layout)
    assert spread.chips == layout.chips and 0 < spread.latency_s < 1
    # the sharded graph keeps every expert and attention sink exactly once per ep group
    sharded = shard(lower(load_model(name).with_dtypes(weight=dtype), wl), layout)
    assert all(op.role for op in sharded)


def test_sinks_split_with_the_heads_under_tp():
    wl = Workload("decode", batch=2, context=256)
    sharded = shard(lower(load_model("gpt-oss-120b"), wl), Parallelism(tp=8))
    sdpa = next(op for op in sharded if isinstance(op, Attention) and op.layer == 0)
    sinks = [t for t in sdpa.inputs if t.role == "weight"]
    assert sdpa.heads == 8 and [t.elements for t in sinks] == [8]


def test_expert_biases_are_read_only_for_the_touched_experts():
    graph = lower(load_model("gpt-oss-120b"), DECODE)
    up = next(op for op in graph if op.role == "expert_up" and op.layer == 0)
    bias = up.inputs[2]
    assert bias.name.endswith(".bias") and bias.shape == (128, 5760)
    read = next(a for a in up.reads() if a.tensor.name == bias.name)
    assert read.nbytes == pytest.approx(bias.nbytes * 4 / 128)  # batch 1: 4 of 128 experts
    assert active_params(graph) == load_model("gpt-oss-120b").published.params_active


@pytest.mark.parametrize("data, yaml_name", [(GPT_OSS_120B, "gpt-oss-120b"),
                                             (QWEN3_235B, "qwen3-235b-a22b"),
                                             (DEEPSEEK_R1, "deepseek-r1")])
def test_hf_configs_import_to_the_catalogue_models(config, data, yaml_name):
    imported = load_model(config(data))
    bundled = load_model(yaml_name)
    assert imported.layer_kinds == bundled.layer_kinds
    got, want = describe_model(imported), describe_model(bundled)
    for key in ("params_total", "params_active", "kv_bytes_per_token"):
        assert got[key] == want[key], key
    assert got.get("params_mtp") == want.get("params_mtp")
    assert imported.attention == bundled.attention and imported.moe == bundled.moe
    assert imported.mtp == bundled.mtp


def test_qwen3_moe_dense_layers_follow_the_config(config):
    data = {**QWEN3_235B, "num_hidden_layers": 4, "mlp_only_layers": [0], "decoder_sparse_step": 2}
    kinds = load_model(config(data)).layer_kinds
    assert [k.ffn for k in kinds] == ["mlp", "moe", "mlp", "moe"]


@pytest.mark.parametrize("data, needle", [
    ({**GPT_OSS_120B, "layer_types": ["sliding_attention"] * 3}, "layer_types"),
    ({**GPT_OSS_120B, "layer_types": ["chunked_attention"] * 36}, "unknown layer type"),
    ({k: v for k, v in GPT_OSS_120B.items() if k != "sliding_window"}, "sliding_window"),
    ({k: v for k, v in QWEN3_235B.items() if k != "moe_intermediate_size"}, "moe_intermediate_size"),
])
def test_bad_configs_name_the_key(config, data, needle):
    with pytest.raises(ConfigError, match=needle):
        load_model(config(data))
