"""Hugging Face config.json import: published architectures come back with their exact counts,
and bad or unsupported configs are one-line errors (exit 2 through the CLI)."""
import json

import pytest

from accelsim.errors import ConfigError
from accelsim.model.describe import describe_model
from accelsim.model.spec import load_model

LLAMA_31_8B = {"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32,
               "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 14336,
               "vocab_size": 128256, "max_position_embeddings": 131072, "hidden_act": "silu",
               "tie_word_embeddings": False}
MIXTRAL = {**LLAMA_31_8B, "model_type": "mixtral", "vocab_size": 32000, "num_local_experts": 8,
           "num_experts_per_tok": 2}
JAMBA = {"model_type": "jamba", "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
         "num_key_value_heads": 8, "intermediate_size": 14336, "vocab_size": 65536, "num_experts": 16,
         "num_experts_per_tok": 2, "attn_layer_period": 8, "attn_layer_offset": 4,
         "expert_layer_period": 2, "expert_layer_offset": 1, "mamba_d_state": 16, "mamba_d_conv": 4,
         "mamba_expand": 2, "mamba_dt_rank": 256, "mamba_conv_bias": True, "mamba_proj_bias": False}
MAMBA = {"model_type": "mamba", "hidden_size": 2560, "num_hidden_layers": 64, "vocab_size": 50277,
         "pad_vocab_size_multiple": 8, "state_size": 16, "conv_kernel": 4, "expand": 2}
RECURRENT_GEMMA_2B = {"model_type": "recurrent_gemma", "hidden_size": 2560, "num_hidden_layers": 26,
                      "num_attention_heads": 10, "num_key_value_heads": 1, "head_dim": 256,
                      "intermediate_size": 15360, "vocab_size": 256000, "lru_width": 2560,
                      "conv1d_width": 4, "attention_window_size": 2048,
                      "block_types": ["recurrent", "recurrent", "attention"]}
GEMMA2_9B = {"model_type": "gemma2", "hidden_size": 3584, "num_hidden_layers": 42, "num_attention_heads": 16,
             "num_key_value_heads": 8, "head_dim": 256, "intermediate_size": 14336, "vocab_size": 256000,
             "sliding_window": 4096, "hidden_activation": "gelu_pytorch_tanh"}


@pytest.fixture
def config(tmp_path):
    def make(data, name="config.json"):
        path = tmp_path / name
        path.write_text(json.dumps(data), encoding="utf-8")
        return str(path)
    return make


@pytest.mark.parametrize("data, total, active", [
    (LLAMA_31_8B, 8_030_261_248, None),
    (MIXTRAL, 46_702_792_704, 12_879_925_248),
    (JAMBA, 51_570_323_328, 12_110_311_296),
    (MAMBA, 2_768_345_600, None),
    (RECURRENT_GEMMA_2B, 2_682_862_080, None),
    (GEMMA2_9B, 9_241_705_984, None),
])
def test_published_configs_import_with_exact_counts(config, data, total, active):
    info = describe_model(load_model(config(data)))
    assert info["params_total"] == total
    if active is not None:
        assert info["params_active"] == active


def test_imported_patterns_match_the_catalogue_yaml(config):
    assert load_model(config(JAMBA)).layer_kinds == load_model("jamba-v0.1").layer_kinds
    assert load_model(config(GEMMA2_9B)).layer_kinds == load_model("gemma-2-9b").layer_kinds


def test_falcon_h1_runs_attention_and_mamba2_in_parallel(config):
    data = {"model_type": "falcon_h1", "hidden_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "head_dim": 64, "intermediate_size": 512, "vocab_size": 1000,
            "mamba_d_ssm": 256, "mamba_d_head": 64, "mamba_d_state": 16, "mamba_n_groups": 1}
    spec = load_model(config(data))
    assert spec.layer_kinds[0].mixers == ("attention", "mamba2")


def test_unsupported_model_type_names_it(config):
    with pytest.raises(ConfigError, match="unsupported model_type 'bert'; supported: llama"):
        load_model(config({"model_type": "bert"}))


def test_missing_field_names_it(config):
    data = {k: v for k, v in LLAMA_31_8B.items() if k != "intermediate_size"}
    with pytest.raises(ConfigError, match="intermediate_size: required field is missing"):
        load_model(config(data))


def test_cli_models_show_reads_a_config(cli, config):
    code, out, _ = cli("models", "show", config(MIXTRAL), "--json")
    assert code == 0
    assert json.loads(out)["params_active"] == 12_879_925_248


@pytest.mark.parametrize("data, needle", [
    ({"model_type": "t5"}, "unsupported model_type 't5'"),
    ({"model_type": "mamba", "hidden_size": 8}, "vocab_size: required field is missing"),
])
def test_cli_bad_configs_exit_2_with_one_line(cli, config, data, needle):
    code, _, err = cli("models", "show", config(data))
    assert code == 2
    assert needle in err and len(err.strip().splitlines()) == 1


def test_cli_bad_json_exits_2(cli, tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json", encoding="utf-8")
    code, _, err = cli("models", "show", str(path))
    assert code == 2 and "invalid JSON" in err
