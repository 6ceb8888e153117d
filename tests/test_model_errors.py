"""Bad input → one ``jaxsteer.errors`` exception with a one-line message that names it; nothing written.

Checkpoint folders here are written by ``jaxsteer.save_pretrained`` from a random tiny model (no torch
needed) and then broken one way each.
"""

from __future__ import annotations

import json
import os
import re

import jax.numpy as jnp
import numpy as np
import pytest

import jaxsteer
from jaxsteer.checkpoint.safetensors_io import SafetensorsFile, write_safetensors
from jaxsteer.errors import CheckpointError, ConfigError, InputError, JaxsteerError
from jaxsteer.steering.plan import Steering


def one_line_error(fn, kind=JaxsteerError, match: str | None = None) -> str:
    with pytest.raises(JaxsteerError) as info:
        fn()
    message = str(info.value)
    assert isinstance(info.value, kind), f"{type(info.value).__name__}: {message}"
    assert message and "\n" not in message, repr(message)
    if match is not None:
        assert re.search(match, message), message
    return message


def snapshot(root) -> dict[str, tuple[int, int, bytes]]:
    """Every file under ``root`` (hidden ones too) with its size, mtime and first bytes."""
    files = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            st = os.stat(path)
            with open(path, "rb") as f:
                head = f.read(64)
            files[os.path.relpath(path, root)] = (st.st_size, st.st_mtime_ns, head)
    return files


@pytest.fixture(scope="module")
def good(js_random, tmp_path_factory):
    """A valid checkpoint folder and its tensors."""
    folder = jaxsteer.save_pretrained(js_random, tmp_path_factory.mktemp("ckpt") / "good")
    with SafetensorsFile(os.path.join(folder, "model.safetensors")) as f:
        tensors = {name: np.array(f.get(name)) for name in f.names()}
    return folder, tensors


def _variant(good, root, tensors=None, config=None, weights=True) -> str:
    """A copy of the good folder under ``root/broken`` with other tensors and/or config."""
    folder, original = good
    out = os.path.join(root, "broken")
    os.makedirs(out)
    if config is not False:
        with open(os.path.join(folder, "config.json")) as f:
            cfg = json.load(f)
        cfg.update(config or {})
        with open(os.path.join(out, "config.json"), "w") as f:
            json.dump(cfg, f)
    if weights:
        write_safetensors(os.path.join(out, "model.safetensors"), original if tensors is None else tensors)
    return out


def _load_fails(folder, root, kind, match=None, **kwargs) -> str:
    before = snapshot(root)
    message = one_line_error(lambda: jaxsteer.load_pretrained(folder, **kwargs), kind, match)
    assert snapshot(root) == before  # nothing written, nothing left behind
    return message


# --- checkpoints --------------------------------------------------------------------------------------
def test_missing_folder(tmp_path):
    _load_fails(str(tmp_path / "no" / "such" / "folder"), tmp_path, CheckpointError, "no checkpoint folder")


def test_a_file_instead_of_a_folder(good, tmp_path):
    _load_fails(os.path.join(good[0], "model.safetensors"), good[0], CheckpointError, "is a file")


def test_folder_without_config(good, tmp_path):
    folder = _variant(good, tmp_path, config=False)
    _load_fails(folder, tmp_path, ConfigError, "config.json")


def test_config_that_is_not_gemma3(good, tmp_path):
    folder = _variant(good, tmp_path, config={"model_type": "llama", "architectures": ["LlamaForCausalLM"]})
    _load_fails(folder, tmp_path, ConfigError, "llama")


# BUG (jaxsteer/config.py:153): `str(e).splitlines()[0]` keeps only the header line of transformers'
# validation error ("Validation error for field 'sliding_window':"), dropping what was expected.
@pytest.mark.parametrize(
    ("change", "expected"),
    [({"sliding_window": "big"}, "expected int"), ({"hidden_size": 30}, "not a multiple")],
    ids=["type", "architecture"],
)
def test_invalid_config_says_what_was_expected(change, expected, good, tmp_path):
    folder = _variant(good, tmp_path, config=change)
    _load_fails(folder, tmp_path, ConfigError, expected)


def test_unreadable_config(good, tmp_path):
    folder = _variant(good, tmp_path)
    with open(os.path.join(folder, "config.json"), "w") as f:
        f.write('{"model_type": "gemma3_text", ')
    _load_fails(folder, tmp_path, ConfigError, "config.json")


def test_tensor_with_wrong_shape_names_it_and_both_shapes(good, tmp_path):
    tensors = dict(good[1])
    name = "model.layers.3.self_attn.k_proj.weight"
    assert tensors[name].shape == (32, 32)
    tensors[name] = np.zeros((16, 32), np.float32)
    message = _load_fails(_variant(good, tmp_path, tensors), tmp_path, CheckpointError)
    assert name in message and "(16, 32)" in message and "(32, 32)" in message


def test_missing_tensors(good, tmp_path):
    tensors = {k: v for k, v in good[1].items() if k != "model.layers.5.mlp.up_proj.weight"}
    message = _load_fails(_variant(good, tmp_path, tensors), tmp_path, CheckpointError, "missing 1 tensor")
    assert "model.layers.5.mlp.up_proj.weight" in message


def test_tensor_for_a_layer_the_config_lacks(good, tmp_path):
    tensors = dict(good[1])
    tensors["model.layers.8.mlp.up_proj.weight"] = tensors["model.layers.7.mlp.up_proj.weight"]
    _load_fails(_variant(good, tmp_path, tensors), tmp_path, CheckpointError, "layer 8")


@pytest.mark.parametrize("keep", [0.5, 100, 4], ids=["half", "header-cut", "4-bytes"])
def test_truncated_safetensors(keep, good, tmp_path):
    folder = _variant(good, tmp_path)
    path = os.path.join(folder, "model.safetensors")
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(int(size * keep) if keep < 1 else keep)
    message = _load_fails(folder, tmp_path, CheckpointError)
    assert "model.safetensors" in message


def test_only_a_pickled_checkpoint(good, tmp_path):
    folder = _variant(good, tmp_path, weights=False)
    with open(os.path.join(folder, "pytorch_model.bin"), "wb") as f:
        f.write(b"\x80\x04 not to be unpickled")
    _load_fails(folder, tmp_path, CheckpointError, r"pytorch_model\.bin.*safetensors")


def test_shard_named_in_the_index_is_missing(good, tmp_path):
    folder = _variant(good, tmp_path)
    index = {"metadata": {}, "weight_map": {name: "model-00002-of-00002.safetensors" for name in good[1]}}
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f)
    _load_fails(folder, tmp_path, CheckpointError, "model-00002-of-00002.safetensors")


@pytest.mark.parametrize("dtype", ["float16", "fp16", jnp.float16, np.float16])
def test_float16_is_refused(dtype, good, tmp_path, js_random):
    _load_fails(good[0], good[0], InputError, "float16", dtype=dtype)
    one_line_error(lambda: jaxsteer.Model.random(js_random.config, dtype=dtype), InputError, "float16")
    before = snapshot(tmp_path)
    target = tmp_path / "fp16"
    one_line_error(lambda: jaxsteer.save_pretrained(js_random, target, dtype=dtype), InputError, "float16")
    assert snapshot(tmp_path) == before and not target.exists()


def test_unknown_dtype(good):
    _load_fails(good[0], good[0], InputError, "int8", dtype="int8")


def test_vocab_rows_out_of_range(good):
    _load_fails(good[0], good[0], ConfigError, "vocab_rows", vocab_rows=129, dtype="float32")


def test_save_into_an_existing_folder_is_refused_and_leaves_it_untouched(js_random, tmp_path):
    target = tmp_path / "existing"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    (target / "config.json").write_text("{}")
    before = snapshot(tmp_path)
    one_line_error(lambda: jaxsteer.save_pretrained(js_random, target), CheckpointError, "already exists")
    assert snapshot(tmp_path) == before
    assert sorted(os.listdir(tmp_path)) == ["existing"]  # no temporary folder left beside it


def test_failed_save_leaves_nothing(js_random, tmp_path, monkeypatch):
    """An error mid-write (here: the safetensors writer) leaves neither the folder nor a temporary one."""
    import jaxsteer.checkpoint.hf as hf

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(hf, "write_safetensors", boom)
    with pytest.raises(OSError):
        jaxsteer.save_pretrained(js_random, tmp_path / "out")
    assert os.listdir(tmp_path) == []


# --- steering plans -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def v(js_random):
    return np.random.RandomState(0).randn(js_random.config.hidden_size).astype(np.float32)


@pytest.mark.parametrize("layer", [8, 100, -1])
def test_layer_index_out_of_range(layer, js_random, v):
    message = one_line_error(lambda: Steering.from_layers(js_random.config, {layer: v}), InputError)
    assert f"layer {layer} out of range for a 8-layer model" in message


def test_gamma_for_an_unsteered_layer(js_random, v):
    one_line_error(lambda: Steering.from_layers(js_random.config, {2: v}, gamma={3: 1.0}), InputError, "layer 3")


# BUG (jaxsteer/steering/plan.py:133): check_layer accepts a bool (bool is an int subclass) and
# `dense[True] = vec` at plan.py:68 is then boolean indexing: IndexError instead of InputError.
def test_bool_layer_key(js_random, v):
    one_line_error(lambda: Steering.from_layers(js_random.config, {True: v}), InputError)


@pytest.mark.parametrize("shape", [(31,), (33,), (2, 32), ()])
def test_steering_vector_of_the_wrong_width(shape, js_random):
    message = one_line_error(
        lambda: Steering.from_layers(js_random.config, {2: np.ones(shape, np.float32)}), InputError
    )
    assert "layer 2" in message and "(32,)" in message


def test_dense_vectors_of_the_wrong_shape(js_random, batch, v):
    steer = Steering.from_layers(js_random.config, {2: v})
    bad = steer.replace(vectors=jnp.zeros((8, 16)))
    one_line_error(lambda: jaxsteer.forward(js_random, *batch, steering=bad), InputError, r"\(8, 16\)")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_gamma(bad, js_random, batch, v):
    cfg = js_random.config
    one_line_error(lambda: Steering.from_layers(cfg, {2: v}, gamma=bad), InputError, "NaN or inf")
    one_line_error(lambda: Steering.from_layers(cfg, {2: v, 4: v}, gamma={2: 1.0, 4: bad}), InputError, "NaN or inf")
    one_line_error(lambda: Steering.from_layers(cfg, {2: np.full_like(v, bad)}), InputError, "NaN or inf")
    steer = Steering.from_layers(cfg, {2: v}).with_gamma(np.full(cfg.num_layers, bad, np.float32))
    one_line_error(lambda: jaxsteer.forward(js_random, *batch, steering=steer), InputError, "NaN or inf")
    one_line_error(
        lambda: jaxsteer.generate(js_random, batch[0], 2, batch[1], steering=steer), InputError, "NaN or inf"
    )


def test_bad_scopes(js_random, batch, v):
    cfg = js_random.config
    one_line_error(lambda: Steering.from_layers(cfg, {}), InputError)
    one_line_error(lambda: Steering.from_layers(cfg, {2: v}, scope="everything"), InputError, "everything")
    one_line_error(lambda: Steering.from_layers(cfg, {2: v}, scope=-3), InputError, "-3")
    one_line_error(lambda: Steering.from_layers(cfg, {2: v}, scope=np.ones((3, 11))), InputError, "boolean")
    wrong = Steering.from_layers(cfg, {2: v}, scope=np.ones((3, 10), bool))
    one_line_error(lambda: jaxsteer.forward(js_random, *batch, steering=wrong), InputError, r"\(3, 10\)")
    one_line_error(
        lambda: jaxsteer.generate(js_random, batch[0], 4, batch[1], steering=wrong), InputError, r"\(3, 15\)"
    )


def test_gamma_sweep_axes_in_forward(js_random, batch, v):
    steer = Steering.from_layers(js_random.config, {2: v}, gamma=np.ones((3, 8), np.float32))
    one_line_error(lambda: jaxsteer.forward(js_random, *batch, steering=steer), InputError, "sweep axes")


# BUG (jaxsteer/model/decode.py:179-186): generate validates the plan but, unlike forward
# (model.py:123), does not refuse gamma with sweep axes; the layer scan then fails with a raw ValueError.
def test_gamma_sweep_axes_in_generate(js_random, batch, v):
    """One sweep axis on γ is a grid of plans (tests/test_decode_plans.py); two are refused."""
    steer = Steering.from_layers(js_random.config, {2: v}, gamma=np.ones((2, 3, 8), np.float32))
    one_line_error(lambda: jaxsteer.generate(js_random, batch[0], 2, batch[1], steering=steer), InputError)


# --- token ids and masks -------------------------------------------------------------------------
@pytest.mark.parametrize("bad_id", [128, 1000, -1])
def test_token_ids_outside_the_vocabulary(bad_id, js_random, batch):
    ids, mask = batch
    ids = ids.copy()
    ids[1, 5] = bad_id
    one_line_error(lambda: jaxsteer.forward(js_random, ids, mask), InputError, f"token id {bad_id} is outside")
    one_line_error(lambda: jaxsteer.generate(js_random, ids, 2, mask), InputError, f"token id {bad_id} is outside")


@pytest.mark.parametrize("shape", [(3, 10), (2, 11), (3,), (3, 11, 1)])
def test_attention_mask_of_the_wrong_shape(shape, js_random, batch):
    ids = batch[0]
    mask = np.ones(shape, np.int32)
    one_line_error(lambda: jaxsteer.forward(js_random, ids, mask), InputError, "attention_mask has shape")
    one_line_error(lambda: jaxsteer.generate(js_random, ids, 2, mask), InputError, "attention_mask has shape")


def test_other_bad_token_inputs(js_random, batch):
    ids, mask = batch
    one_line_error(lambda: jaxsteer.forward(js_random, ids[0], None), InputError, r"\[batch, time\]")
    one_line_error(lambda: jaxsteer.forward(js_random, ids.astype(np.float32)), InputError, "integers")
    one_line_error(lambda: jaxsteer.forward(js_random, ids[:, :0]), InputError, "empty")
    empty_row = mask.copy()
    empty_row[0] = 0
    one_line_error(lambda: jaxsteer.forward(js_random, ids, empty_row), InputError, "no real token")
    one_line_error(lambda: jaxsteer.forward(js_random, ids, mask, logits_at="first"), InputError, "logits_at")
    one_line_error(lambda: jaxsteer.forward(js_random, ids, mask, logits_at=np.zeros(2, int)), InputError)
    one_line_error(lambda: jaxsteer.forward(js_random, ids, mask, positions=np.zeros((3, 4), int)), InputError)


def test_bad_generation_settings(js_random, batch):
    ids, mask = batch
    one_line_error(lambda: jaxsteer.generate(js_random, ids, 0, mask), InputError, "max_new_tokens")
    one_line_error(lambda: jaxsteer.generate(js_random, ids, 2, mask, temperature=-1.0), InputError, "temperature")
    one_line_error(lambda: jaxsteer.generate(js_random, ids, 2, mask, temperature=1.0, top_k=0), InputError, "top_k")
    one_line_error(lambda: jaxsteer.generate(js_random, ids, 2, mask, temperature=1.0, top_k=129), InputError, "top_k")


def test_errors_are_one_family():
    for kind in (CheckpointError, ConfigError, InputError):
        assert issubclass(kind, JaxsteerError)


def test_the_test_session_checks_shape_annotations():
    """conftest switches jaxtyping + beartype on for the package: a [.., 3] input against a [4] weight fails."""
    import jaxtyping

    from jaxsteer.model.layers import rms_norm

    if os.environ.get("JAXSTEER_TYPECHECK", "1") == "0":
        pytest.skip("annotation checks switched off (JAXSTEER_TYPECHECK=0)")
    with pytest.raises(jaxtyping.TypeCheckError, match="rms_norm"):
        rms_norm(jnp.ones((2, 3)), jnp.ones((4,)), 1e-6)


def test_a_config_that_is_not_utf8(good, tmp_path):
    folder = _variant(good, tmp_path)
    with open(os.path.join(folder, "config.json"), "wb") as f:
        f.write(b'{"model_type": "gemma3_text", "_name_or_path": "caf\xe9"}')
    _load_fails(folder, tmp_path, ConfigError, r"config.json: .*can't decode byte 0xe9 in position 51")


# --- generation length ---------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [10**10, 10**6, 131062])
def test_max_new_tokens_past_the_context_says_both_numbers(n, js_random, batch):
    """10¹⁰ overflowed int32 in the cache shape; 10⁶ ran silently past positions the model never saw."""
    ids, mask = batch  # 11 tokens wide: at most 131072 − 11 = 131061 new tokens
    message = one_line_error(lambda: jaxsteer.generate(js_random, ids, n, mask), InputError)
    assert message == (
        f"max_new_tokens={n} exceeds the model's context: 11 prompt + {n} new tokens > 131072 positions "
        "(max_position_embeddings); at most 131061 new tokens fit"
    )


def test_max_new_tokens_follows_the_checkpoints_context(js_random, batch):
    short = jaxsteer.Model(config=js_random.config.replace(max_position_embeddings=16), params=js_random.params)
    one_line_error(lambda: jaxsteer.generate(short, *batch[:1], 6, batch[1]), InputError, "at most 5 new tokens fit")
    for bad in (0, -3):
        one_line_error(lambda b=bad: jaxsteer.generate(short, batch[0], b, batch[1]), InputError, "max_new_tokens")


def test_an_int8_quantized_weight_is_refused_not_loaded_as_numbers(good, tmp_path):
    tensors = dict(good[1])
    name = "model.layers.3.self_attn.q_proj.weight"
    tensors[name] = np.clip(np.asarray(tensors[name], np.float32) * 100, -127, 127).astype(np.int8)
    _load_fails(_variant(good, tmp_path, tensors), tmp_path, CheckpointError, rf"{re.escape(name)} is I8, not floating")


def _raw_safetensors(path, header: bytes, data: bytes = b"") -> str:
    with open(path, "wb") as f:
        f.write(len(header).to_bytes(8, "little") + header + data)
    return str(path)


@pytest.mark.parametrize(
    "header, needle",
    [
        (b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}}', "malformed header entry"),
        (
            b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
            "starts at byte 0 of the data, expected 4",
        ),
        (b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', "starts at byte 4 of the data, expected 0"),
        (b'{"__metadata__":{"n":3},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', "strings to strings"),
        (b"[1,2]", "not an object of tensors"),
        (b'{"a":"x"}', "malformed header entry"),
        (b'{"a":{"dtype":"F32","shape":[1]}}', "malformed header entry"),
        (b'{"a":{"dtype":"F32","shape":"ab","data_offsets":[0,4]}}', "malformed header entry"),
        (b"[" * 100000 + b"]" * 100000, "unreadable safetensors header|not an object"),
    ],
)
def test_a_malformed_safetensors_header_is_one_checkpoint_error(header, needle, tmp_path):
    """Negative or overlapping offsets read the header's or another tensor's bytes as weights; other shapes of
    header escaped as TypeError/KeyError/RecursionError tracebacks (the safetensors library refuses them all)."""
    path = _raw_safetensors(tmp_path / "bad.safetensors", header, b"\0" * 8)
    with pytest.raises(CheckpointError, match=needle) as e:
        SafetensorsFile(path)
    assert len(str(e.value).splitlines()) == 1


def test_a_scalar_keeps_its_shape(tmp_path):
    path = tmp_path / "s.safetensors"
    write_safetensors(path, {"scalar": np.array(3.5, np.float32)})
    with SafetensorsFile(path) as f:
        assert f.shape("scalar") == () and float(f.get("scalar")) == 3.5
