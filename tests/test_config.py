"""GemmaConfig: the released sizes, parsing HF config.json (v5 and legacy keys, multimodal), parameter counts."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsteer.config import FULL, SLIDING, GemmaConfig, gemma3_1b, gemma3_4b, gemma3_12b, gemma3_27b, preset, tiny
from jaxsteer.errors import ConfigError
from jaxsteer.model.transformer import embed, init_params

PRESETS = {"1b": gemma3_1b, "4b": gemma3_4b, "12b": gemma3_12b, "27b": gemma3_27b}

# ANCHORS.md §1: layers, d, intermediate, heads, kv heads, head_dim, query_pre_attn_scalar, window, vocab,
# global rope scaling, sqrt(d) rounded to bf16.
ANCHORS = {
    "1b": (26, 1152, 6912, 4, 1, 256, 256, 512, 262144, 1.0, 34.0),
    "4b": (34, 2560, 10240, 8, 4, 256, 256, 1024, 262208, 8.0, 50.5),
    "12b": (48, 3840, 15360, 16, 8, 256, 256, 1024, 262208, 8.0, 62.0),
    "27b": (62, 5376, 21504, 32, 16, 128, 168, 1024, 262208, 8.0, 73.5),
}


@pytest.mark.parametrize("size", list(PRESETS))
def test_presets_match_the_released_checkpoints(size):
    cfg = PRESETS[size]()
    layers, d, ff, heads, kv, head_dim, qpas, window, vocab, scaling, _ = ANCHORS[size]
    got = (cfg.num_layers, cfg.hidden_size, cfg.intermediate_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim)
    assert got == (layers, d, ff, heads, kv, head_dim)
    assert (cfg.query_pre_attn_scalar, cfg.sliding_window, cfg.vocab_size) == (qpas, window, vocab)
    assert cfg.rope_global_scaling == scaling
    assert (cfg.rope_global_base, cfg.rope_local_base, cfg.rms_norm_eps) == (1e6, 1e4, 1e-6)
    assert (cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id, cfg.end_of_turn_token_id) == (2, 1, 0, 106)
    assert cfg.global_layers == tuple(range(5, layers, 6))
    assert cfg.attn_scale == pytest.approx(qpas**-0.5)
    assert preset(f"gemma-3-{size}") == cfg


@pytest.mark.parametrize("size", list(PRESETS))
def test_embedding_scale_is_rounded_to_the_weight_dtype(size):
    d = PRESETS[size]().hidden_size
    cfg = tiny(hidden_size=d)
    table = jnp.ones((1, d), jnp.bfloat16)
    scaled = embed({"embed": table}, jnp.zeros((1, 1), jnp.int32), cfg)
    assert scaled.dtype == jnp.float32
    assert float(scaled[0, 0, 0]) == ANCHORS[size][-1]  # not sqrt(d) in fp32


V5 = {
    "model_type": "gemma3_text",
    "vocab_size": 262208,
    "hidden_size": 2560,
    "intermediate_size": 10240,
    "num_hidden_layers": 34,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 256,
    "query_pre_attn_scalar": 256,
    "sliding_window": 1024,
    "layer_types": [FULL if (i + 1) % 6 == 0 else SLIDING for i in range(34)],
    "rope_parameters": {
        FULL: {"rope_type": "linear", "factor": 8.0, "rope_theta": 1_000_000.0},
        SLIDING: {"rope_type": "default", "rope_theta": 10_000.0},
    },
}

LEGACY = {
    "model_type": "gemma3_text",
    "vocab_size": 262208,
    "hidden_size": 2560,
    "intermediate_size": 10240,
    "num_hidden_layers": 34,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 256,
    "query_pre_attn_scalar": 256,
    "sliding_window": 1024,
    "sliding_window_pattern": 6,
    "rope_theta": 1_000_000.0,
    "rope_local_base_freq": 10_000.0,
    "rope_scaling": {"rope_type": "linear", "factor": 8.0},
}


def test_legacy_config_equals_v5_config():
    legacy, v5 = GemmaConfig.from_hf(LEGACY), GemmaConfig.from_hf(V5)
    assert legacy == v5
    assert legacy.replace(name="gemma-3-4b") == gemma3_4b()
    assert legacy.rope_global_scaling == 8.0 and legacy.global_layers == tuple(range(5, 34, 6))


def test_multimodal_text_config_parses():
    multimodal = {
        "architectures": ["Gemma3ForConditionalGeneration"],
        "model_type": "gemma3",
        "text_config": {k: v for k, v in LEGACY.items() if k != "model_type"},
        "vision_config": {"model_type": "siglip_vision_model", "hidden_size": 1152},
        "mm_tokens_per_image": 256,
    }
    assert GemmaConfig.from_hf(multimodal) == GemmaConfig.from_hf(LEGACY)


@pytest.mark.parametrize("layers", [1, 4, 5])
def test_fewer_than_six_layers_without_layer_types_have_no_global_layer(layers):
    cfg = GemmaConfig.from_hf({**LEGACY, "num_hidden_layers": layers})
    assert cfg.layer_types == (SLIDING,) * layers and cfg.global_layers == ()


def test_default_pattern_after_groups_of_six():
    assert GemmaConfig.from_hf({**LEGACY, "num_hidden_layers": 8}).global_layers == (5,)
    assert GemmaConfig.from_hf({**LEGACY, "num_hidden_layers": 13}).global_layers == (5, 11)
    assert tiny().global_layers == (5,)


def test_explicit_layer_types_are_kept():
    types = [FULL, SLIDING, SLIDING, FULL]
    cfg = GemmaConfig.from_hf({**V5, "num_hidden_layers": 4, "layer_types": types})
    assert cfg.layer_types == tuple(types) and cfg.global_layers == (0, 3)


def test_no_rope_scaling_is_factor_one():
    cfg = GemmaConfig.from_hf({k: v for k, v in LEGACY.items() if k != "rope_scaling"})
    assert cfg.rope_global_scaling == 1.0


@pytest.mark.parametrize("cfg", [tiny(), tiny(num_layers=5, sliding_window=3), gemma3_1b(), gemma3_27b()])
def test_to_hf_dict_round_trips(cfg, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(cfg.to_hf_dict()))
    assert GemmaConfig.from_hf(tmp_path).replace(name=cfg.name) == cfg
    assert GemmaConfig.from_hf(tmp_path / "config.json").replace(name=cfg.name) == cfg


def test_config_hash_ignores_the_name():
    assert tiny().config_hash() == tiny().replace(name="other").config_hash()
    assert tiny().config_hash() != tiny(sliding_window=5).config_hash()


def test_invalid_configs_are_refused_in_one_line():
    with pytest.raises(ConfigError, match="num_heads=6 is not a multiple of num_kv_heads=4"):
        tiny(num_heads=6, num_kv_heads=4)
    with pytest.raises(ConfigError, match="layer_types has 3 entries for 8 layers"):
        tiny(layer_types=(SLIDING,) * 3)
    with pytest.raises(ConfigError, match="soft-capping"):
        GemmaConfig.from_hf({**LEGACY, "final_logit_softcapping": 30.0})
    with pytest.raises(ConfigError, match="unknown model preset"):
        preset("gemma-3-2b")


def _jax_count(cfg) -> int:
    shapes = jax.eval_shape(lambda: init_params(cfg, jax.random.PRNGKey(0)))
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(shapes))


def _hf_count(cfg) -> int:
    torch = pytest.importorskip("torch")
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    fields = {k: v for k, v in cfg.to_hf_dict().items() if k not in ("architectures", "model_type", "torch_dtype")}
    with torch.device("meta"):
        model = Gemma3ForCausalLM(Gemma3TextConfig(**fields))
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied: counted once
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("size", list(PRESETS))
def test_parameter_counts_match_transformers(size):
    cfg = PRESETS[size]()
    count = _jax_count(cfg)
    assert count == cfg.num_params()
    assert count == _hf_count(cfg)
    assert cfg.num_params(include_embedding=False) == count - cfg.vocab_size * cfg.hidden_size


def test_parameter_count_of_a_tiny_config_matches_transformers():
    cfg = tiny(num_layers=5, num_kv_heads=1)
    assert _jax_count(cfg) == cfg.num_params() == _hf_count(cfg)


def test_the_context_length_is_read_kept_and_not_hashed(tmp_path):
    """max_position_embeddings bounds generation; it is not architecture, so vector files' hashes stay valid."""
    one_b = gemma3_1b()
    assert one_b.max_position_embeddings == 32768 and gemma3_12b().max_position_embeddings == 131072
    (tmp_path / "config.json").write_text(json.dumps(one_b.to_hf_dict()))
    assert GemmaConfig.from_hf(tmp_path).max_position_embeddings == 32768
    assert one_b.replace(max_position_embeddings=4096).config_hash() == one_b.config_hash()
    with pytest.raises(ConfigError, match="max_position_embeddings=0 must be positive"):
        tiny(max_position_embeddings=0)


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"tie_word_embeddings": False}, "tie_word_embeddings=False"),
        ({"attention_bias": True}, "attention_bias=True"),
        ({"hidden_activation": "gelu"}, "hidden_activation='gelu'"),
        ({"use_bidirectional_attention": True}, "use_bidirectional_attention=True"),
        ({"quantization_config": {"quant_method": "bitsandbytes", "load_in_8bit": True}}, "quantization_config="),
    ],
)
def test_a_config_jaxsteer_would_compute_wrongly_is_refused(change, needle):
    """Loaded before as if tied, unbiased, tanh-GELU, causal and unquantized: an untied head gave logits ~100 % off."""
    with pytest.raises(ConfigError, match=rf"config {needle}.* is not supported"):
        GemmaConfig.from_hf({**LEGACY, **change})
    if "quantization_config" in change:  # a multimodal config carries it at the top level
        with pytest.raises(ConfigError, match="quantization_config"):
            GemmaConfig.from_hf({"model_type": "gemma3", "text_config": dict(LEGACY), **change})
