"""HF safetensors folders ⇄ jaxsteer params: round trip, shards, prefixes, vision weights, vocab rows, bf16."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import hf_reference  # noqa: E402
from hf_reference import rel_err  # noqa: E402

import jaxsteer  # noqa: E402
from jaxsteer.checkpoint.hf import load_params  # noqa: E402
from jaxsteer.checkpoint.safetensors_io import SafetensorsFile, write_safetensors  # noqa: E402
from jaxsteer.errors import InputError  # noqa: E402


def _assert_same_params(a, b):
    flat_a, tree_a = jax.tree.flatten_with_path(a)
    flat_b, tree_b = jax.tree.flatten_with_path(b)
    assert tree_a == tree_b
    for (path, x), (_, y) in zip(flat_a, flat_b, strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape, path
        assert np.array_equal(np.asarray(x), np.asarray(y)), jax.tree_util.keystr(path)


def _same_architecture(config, reference):
    assert config.replace(name=reference.name) == reference


def _with(model, params):
    """The reference model's config (so the compiled forward is reused) with other params."""
    return jaxsteer.Model(config=model.config, params=params)


def _read_tensors(folder) -> dict[str, np.ndarray]:
    with SafetensorsFile(os.path.join(folder, "model.safetensors")) as f:
        return {name: np.array(f.get(name)) for name in f.names()}


def test_load_matches_hf_state_dict(hf_tiny):
    """Every HF tensor lands, unchanged (no transpose, no +1 on norms), at its stacked place."""
    params = hf_tiny.js.params
    state = {k: v.numpy() for k, v in hf_tiny.hf.state_dict().items()}
    np.testing.assert_array_equal(params["embed"], state["model.embed_tokens.weight"])
    np.testing.assert_array_equal(params["final_norm"], state["model.norm.weight"])
    np.testing.assert_array_equal(params["layers"]["q_norm"][3], state["model.layers.3.self_attn.q_norm.weight"])
    np.testing.assert_array_equal(params["layers"]["down_proj"][7], state["model.layers.7.mlp.down_proj.weight"])
    np.testing.assert_array_equal(
        params["layers"]["pre_feedforward_layernorm"][0], state["model.layers.0.pre_feedforward_layernorm.weight"]
    )
    for leaf in jax.tree.leaves(params):
        assert leaf.dtype == jnp.float32


def test_save_writes_the_hf_tensors(hf_tiny, tmp_path):
    old_mask = os.umask(0o022)  # a shared cluster's usual umask: the folder must be 0755, not mkdtemp's 0700
    try:
        folder = jaxsteer.save_pretrained(hf_tiny.js, tmp_path / "saved")
    finally:
        os.umask(old_mask)
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o755
    assert stat.S_IMODE(os.stat(os.path.join(folder, "model.safetensors")).st_mode) == 0o644
    assert sorted(os.listdir(folder)) == sorted(os.listdir(hf_tiny.folder))  # + generation_config.json
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]
    saved, original = _read_tensors(folder), _read_tensors(hf_tiny.folder)
    assert sorted(saved) == sorted(original)
    for name, value in original.items():
        assert saved[name].dtype == value.dtype and np.array_equal(saved[name], value), name


# BUG (jaxsteer/config.py:171 + :116): from_hf stores query_pre_attn_scalar as float(24) and to_hf_dict
# writes it back as 24.0; transformers 5's strict Gemma3TextConfig rejects a float there, so a folder
# saved from a *loaded* model reloads neither in transformers nor in jaxsteer.


def test_save_keeps_what_the_source_folder_had(hf_tiny, tmp_path):
    """Tokenizer files byte for byte (llama.cpp's converter needs tokenizer.model) and the source's config
    values (max_position_embeddings, the eos list, ...), not jaxsteer's defaults."""
    from jaxsteer.checkpoint.hf import source_files
    from jaxsteer.errors import CheckpointError
    from jaxsteer.tokens import train_bpe_tokenizer

    src = tmp_path / "src"
    shutil.copytree(hf_tiny.folder, src)
    train_bpe_tokenizer(["a b c d", "hello world"] * 10, str(src), vocab_size=120)
    (src / "tokenizer.model").write_bytes(b"\x0a\x07sentencepiece-model-bytes")  # a SentencePiece blob
    (src / "chat_template.jinja").write_text("{{ bos_token }}{{ messages[0]['content'] }}", encoding="utf-8")
    config = json.loads((src / "config.json").read_text())
    config.update(max_position_embeddings=32768, eos_token_id=[1, 106], use_cache=False, initializer_range=0.5)
    config.update(rope_theta=1.0)  # a stale legacy key: rope_parameters says what the model does
    (src / "config.json").write_text(json.dumps(config))
    model = jaxsteer.load_pretrained(src, dtype="float32")
    assert {"tokenizer.model", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"} <= set(
        source_files(src)
    )
    out = jaxsteer.save_pretrained(model, tmp_path / "out")
    assert sorted(os.listdir(out)) == sorted(os.listdir(src))
    for name in source_files(src):
        assert (src / name).read_bytes() == Path(out, name).read_bytes(), name
    saved = json.loads(Path(out, "config.json").read_text())
    assert saved["max_position_embeddings"] == 32768 and saved["eos_token_id"] == [1, 106]
    assert saved["use_cache"] is False and saved["initializer_range"] == 0.5 and "rope_theta" not in saved
    assert saved["vocab_size"] == 128 and saved["architectures"] == ["Gemma3ForCausalLM"]
    again = jaxsteer.load_pretrained(out, dtype="float32")
    _same_architecture(again.config, model.config)
    assert again.tokenizer("hello world")["input_ids"] == model.tokenizer("hello world")["input_ids"]
    hf_again = hf_reference.load(out)  # transformers reads the merged config
    assert hf_again.config.max_position_embeddings == 32768

    # the model's own tokenizer when the source has none; an explicit tokenizer_source wins
    bare = jaxsteer.Model(model.config, model.params, tokenizer=model.tokenizer, source="numpy")
    folder = jaxsteer.save_pretrained(bare, tmp_path / "bare")
    assert "tokenizer.json" in os.listdir(folder) and "tokenizer.model" not in os.listdir(folder)
    # without a source, the context the model's config carries (read from the folder it was loaded from)
    assert json.loads(Path(folder, "config.json").read_text())["max_position_embeddings"] == 32768
    tok_only = tmp_path / "tok"
    tok_only.mkdir()
    shutil.copy(src / "tokenizer.model", tok_only)
    folder = jaxsteer.save_pretrained(model, tmp_path / "mixed", tokenizer_source=tok_only)
    assert sorted(os.listdir(folder)) == ["config.json", "model.safetensors", "tokenizer.model"]  # its files only
    with pytest.raises(CheckpointError, match="source '.*nope' is not a folder"):
        jaxsteer.save_pretrained(model, tmp_path / "x", source=tmp_path / "nope")
    config["eos_token_id"] = 5  # a source whose kept values would change the model is refused
    (src / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="disagrees with the model being saved"):
        jaxsteer.save_pretrained(bare, tmp_path / "y", source=src)


def test_round_trip(hf_tiny, hf_tiny_ref, js_tiny_out, batch, valid, tmp_path):
    folder = jaxsteer.save_pretrained(hf_tiny.js, tmp_path / "saved")
    # jaxsteer reads back the same config and bit-identical params, hence the same logits
    again = jaxsteer.load_pretrained(folder, dtype="float32")
    _same_architecture(again.config, hf_tiny.js.config)
    _assert_same_params(again.params, hf_tiny.js.params)
    out = jaxsteer.forward(_with(hf_tiny.js, again.params), *batch, return_hidden=True)
    np.testing.assert_array_equal(out.logits, js_tiny_out.logits)
    # transformers reads it as the same model
    hf_again = hf_reference.load(folder)
    assert hf_again.config.layer_types == hf_tiny.hf.config.layer_types
    assert hf_again.config.rope_parameters == hf_tiny.hf.config.rope_parameters
    assert hf_again.config.query_pre_attn_scalar == hf_tiny.hf.config.query_pre_attn_scalar
    ref = hf_reference.run(hf_again, *batch)
    np.testing.assert_array_equal(ref.logits, hf_tiny_ref.logits)
    assert rel_err(ref.logits, out.logits, valid) <= 1e-5


def test_round_trip_of_a_config_built_in_python(js_random, tmp_path, batch):
    """A model whose config never went through from_hf (int query_pre_attn_scalar) round-trips both ways."""
    folder = jaxsteer.save_pretrained(js_random, tmp_path / "random")
    again = jaxsteer.load_pretrained(folder, dtype="float32")
    _same_architecture(again.config, js_random.config)
    _assert_same_params(again.params, js_random.params)
    hf = hf_reference.load(folder)
    ref = hf_reference.run(hf, *batch)
    out = jaxsteer.forward(js_random, *batch, return_hidden=True)  # (the compile other tests share)
    assert rel_err(ref.logits, out.logits, batch[1].astype(bool)) <= 1e-5


def test_sharded_checkpoint(hf_tiny, tmp_path):
    folder = hf_reference.save(hf_tiny.hf, tmp_path / "sharded", max_shard_size="20KB")
    shards = [f for f in os.listdir(folder) if f.endswith(".safetensors")]
    assert os.path.isfile(os.path.join(folder, "model.safetensors.index.json")) and len(shards) > 1
    model = jaxsteer.load_pretrained(folder, dtype="float32")
    _same_architecture(model.config, hf_tiny.js.config)
    _assert_same_params(model.params, hf_tiny.js.params)


def _multimodal_config(text_fields: dict) -> dict:
    return {
        "architectures": ["Gemma3ForConditionalGeneration"],
        "model_type": "gemma3",
        "text_config": {**text_fields, "model_type": "gemma3_text"},
        "vision_config": {"model_type": "siglip_vision_model", "hidden_size": 8},
        "mm_tokens_per_image": 4,
    }


@pytest.mark.parametrize(
    ("prefix", "extras"),
    [
        (
            "language_model.model.",
            (
                "vision_tower.vision_model.embeddings.patch_embedding.weight",
                "multi_modal_projector.mm_input_projection_weight",
            ),
        ),
        (
            "model.language_model.",
            (
                "model.vision_tower.vision_model.post_layernorm.weight",
                "model.multi_modal_projector.mm_soft_emb_norm.weight",
                "lm_head.weight",
            ),
        ),
    ],
    ids=["hub-multimodal", "transformers5-multimodal"],
)
def test_multimodal_prefixes_and_vision_weights(prefix, extras, hf_tiny, js_tiny_out, batch, tmp_path):
    tensors = _read_tensors(hf_tiny.folder)
    renamed = {prefix + name.removeprefix("model."): value for name, value in tensors.items()}
    rng = np.random.RandomState(0)
    for name in extras:
        shape = tensors["model.embed_tokens.weight"].shape if name == "lm_head.weight" else (4, 3, 2, 2)
        renamed[name] = rng.randn(*shape).astype(np.float32)
    folder = tmp_path / "mm"
    folder.mkdir()
    write_safetensors(folder / "model.safetensors", renamed, {"format": "pt"})
    with open(os.path.join(hf_tiny.folder, "config.json")) as f:
        text_fields = json.load(f)
    (folder / "config.json").write_text(json.dumps(_multimodal_config(text_fields)))
    model = jaxsteer.load_pretrained(folder, dtype="float32")
    _same_architecture(model.config, hf_tiny.js.config)
    _assert_same_params(model.params, hf_tiny.js.params)
    out = jaxsteer.forward(_with(hf_tiny.js, model.params), *batch, return_hidden=True)
    np.testing.assert_array_equal(out.logits, js_tiny_out.logits)


def test_vocab_rows_slices_the_embedding(hf_tiny, js_tiny_out, batch, valid):
    rows = 100
    model = jaxsteer.load_pretrained(hf_tiny.folder, dtype="float32", vocab_rows=rows)
    assert model.config.vocab_size == rows
    assert model.params["embed"].shape == (rows, model.config.hidden_size)
    np.testing.assert_array_equal(model.params["embed"], np.asarray(hf_tiny.js.params["embed"])[:rows])
    ids, mask = batch
    ids = np.where(ids >= rows, ids % rows + 3, ids)
    sliced = jaxsteer.forward(model, ids, mask).logits
    full = jaxsteer.forward(hf_tiny.js, ids, mask).logits
    assert sliced.shape == (*ids.shape, rows)
    assert rel_err(np.asarray(full)[..., :rows], sliced, valid) <= 1e-6
    with pytest.raises(InputError):
        jaxsteer.forward(model, np.full_like(ids, rows), mask)


def test_load_params_with_sharding_callback(hf_tiny):
    seen = []
    device = jax.devices()[0]

    def sharding(name, shape):
        seen.append((name, shape))
        return jax.sharding.SingleDeviceSharding(device)

    params = load_params(hf_tiny.folder, hf_tiny.js.config, jnp.float32, sharding=sharding)
    _assert_same_params(params, hf_tiny.js.params)
    assert ("embed", (128, 32)) in seen and ("q_proj", (8, 64, 32)) in seen and len(seen) == 15


def test_bfloat16_load(hf_tiny, js_tiny_out, batch, valid):
    model = jaxsteer.load_pretrained(hf_tiny.folder, dtype="bfloat16")
    assert model.dtype == jnp.bfloat16
    assert all(leaf.dtype == jnp.bfloat16 for leaf in jax.tree.leaves(model.params))
    expected = np.asarray(hf_tiny.js.params["layers"]["up_proj"]).astype(jnp.bfloat16)
    np.testing.assert_array_equal(np.asarray(model.params["layers"]["up_proj"]), expected)
    out = jaxsteer.forward(_with(hf_tiny.js, model.params), *batch)
    assert out.logits.dtype == jnp.float32
    err = rel_err(js_tiny_out.logits, out.logits, valid)
    assert err <= 5e-2, err
    assert err > 0  # really computed in bf16


def test_save_bfloat16_reloads_in_transformers(hf_tiny, tmp_path):
    folder = jaxsteer.save_pretrained(hf_tiny.js, tmp_path / "bf16", dtype="bfloat16")
    with open(os.path.join(folder, "config.json")) as f:
        assert json.load(f)["torch_dtype"] == "bfloat16"
    with SafetensorsFile(os.path.join(folder, "model.safetensors")) as f:
        assert f.get("model.embed_tokens.weight").dtype == jnp.bfloat16
    hf = hf_reference.load(folder)
    expected = hf_tiny.hf.state_dict()["model.layers.2.self_attn.k_proj.weight"].to(torch.bfloat16).float()
    assert torch.equal(hf.state_dict()["model.layers.2.self_attn.k_proj.weight"], expected)
    shutil.rmtree(folder)


def test_decode_layout_is_checked_before_any_weight_is_read(hf_tiny, monkeypatch):
    from jaxsteer.checkpoint import hf
    from jaxsteer.errors import ConfigError

    monkeypatch.setattr(hf, "load_params", lambda *a, **k: pytest.fail("weights read before the check"))
    with pytest.raises(ConfigError, match="decode_layout='fast'"):
        hf.load_pretrained(hf_tiny.folder, dtype="float32", decode_layout="fast")
    monkeypatch.undo()
    assert hf.load_pretrained(hf_tiny.folder, dtype="float32", decode_layout="scan").decode_layout == "scan"


@pytest.mark.parametrize("text", ["", "garbage", "{}"])
def test_a_broken_tokenizer_is_one_error_before_any_weight_is_read(hf_tiny, tmp_path, monkeypatch, text):
    from jaxsteer.checkpoint import hf
    from jaxsteer.errors import CheckpointError

    folder = tmp_path / "broken-tokenizer"
    shutil.copytree(hf_tiny.folder, folder)
    (folder / "tokenizer.json").write_text(text)
    monkeypatch.setattr(hf, "load_params", lambda *a, **k: pytest.fail("weights read before the tokenizer"))
    with pytest.raises(CheckpointError, match=r"broken-tokenizer: its tokenizer files cannot be read \(\w+"):
        hf.load_pretrained(folder, dtype="float32")
