"""Vector files: safetensors round trip, GGUF control vectors (llama.cpp layer mapping), lm-eval export, checks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import gguf
import numpy as np
import pytest

from jaxsteer.checkpoint.safetensors_io import SafetensorsFile, write_safetensors
from jaxsteer.config import tiny
from jaxsteer.errors import CheckpointError, InputError
from jaxsteer.steering.vectors_io import (
    VectorMeta,
    VectorSet,
    check_compatible,
    export_gguf,
    export_lm_eval,
    import_gguf,
    load_vectors,
    save_vectors,
    to_steering,
)

CFG = tiny()


def make_set(layers=(0, 2, 5, 7), seed=0, config=CFG, **meta) -> VectorSet:
    rng = np.random.default_rng(seed)
    v = np.zeros((config.num_layers, config.hidden_size), np.float32)
    for layer in layers:
        v[layer] = rng.standard_normal(config.hidden_size).astype(np.float32)
    fields = dict(kind="EN", num_pairs=100, languages=("ko", "zh"), extra={"dev": "dev1", "seed": 3})
    fields.update(meta)
    return VectorSet.from_config(config, v, **fields)


def one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


# --- safetensors -----------------------------------------------------------------------------------
def test_safetensors_round_trip_is_bit_exact(tmp_path):
    vset = make_set(layers=range(CFG.num_layers))
    path = save_vectors(tmp_path / "en.safetensors", vset)
    back = load_vectors(path)
    assert back.vectors.dtype == np.float32
    np.testing.assert_array_equal(back.vectors.view(np.uint32), vset.vectors.view(np.uint32))
    assert back.meta == vset.meta
    assert back.meta.languages == ("ko", "zh") and back.meta.extra == {"dev": "dev1", "seed": 3}
    with SafetensorsFile(path) as f:  # readable by any safetensors reader: strings, JSON where structured
        assert json.loads(f.metadata["languages"]) == ["ko", "zh"]
        assert f.metadata["layer_convention"] == "block_output"
        assert "hidden_states[l+1]" in f.metadata["layer_convention_doc"]
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp")]


def test_load_rejects_bad_files(tmp_path):
    with pytest.raises(CheckpointError) as e:
        load_vectors(tmp_path / "missing.safetensors")
    assert "no vector file" in one_line(e)
    (tmp_path / "text.safetensors").write_text("hello, not a tensor file at all")
    with pytest.raises(CheckpointError) as e:
        load_vectors(tmp_path / "text.safetensors")
    one_line(e)
    write_safetensors(tmp_path / "bare.safetensors", {"vectors": np.zeros((8, 32), np.float32)})
    with pytest.raises(CheckpointError) as e:
        load_vectors(tmp_path / "bare.safetensors")
    assert "not a jaxsteer vector file" in one_line(e)
    meta = make_set().meta.to_strings()
    del meta["config_hash"], meta["num_pairs"]
    write_safetensors(tmp_path / "partial.safetensors", {"vectors": np.zeros((8, 32), np.float32)}, meta)
    with pytest.raises(CheckpointError) as e:
        load_vectors(tmp_path / "partial.safetensors")
    assert "config_hash" in one_line(e) and "num_pairs" in str(e.value)


def test_nan_and_bad_shapes_are_refused():
    v = np.ones((CFG.num_layers, CFG.hidden_size), np.float32)
    v[3, 5] = np.nan
    with pytest.raises(InputError) as e:
        VectorSet.from_config(CFG, v)
    assert one_line(e) == "vectors contain NaN at layer 3"
    v[3, 5], v[6, 0] = 1.0, np.inf
    with pytest.raises(InputError, match="vectors contain inf at layer 6"):
        VectorSet.from_config(CFG, v)
    with pytest.raises(InputError, match="shape"):
        VectorSet.from_config(CFG, np.ones((CFG.num_layers, 31), np.float32))
    with pytest.raises(InputError, match="method"):
        VectorMeta.for_config(CFG, method="svm")


# --- applying -----------------------------------------------------------------------------------------
def test_check_compatible_width_layers_and_hash():
    wide = make_set(config=tiny(hidden_size=48))
    with pytest.raises(InputError) as e:
        check_compatible(wide, CFG)
    assert one_line(e) == "vector file has width 48, the model has 32"
    with pytest.raises(InputError, match="vector file has 6 layers, the model has 8"):
        check_compatible(make_set(layers=(1,), config=tiny(num_layers=6)), CFG)
    other = tiny(rms_norm_eps=1e-5, name="tiny-eps")  # same shapes, another architecture hash
    vset = make_set(config=other)
    with pytest.raises(InputError) as e:
        check_compatible(vset, CFG)
    msg = one_line(e)
    assert other.config_hash() in msg and CFG.config_hash() in msg and "tiny-eps" in msg and "tiny" in msg
    check_compatible(vset, CFG, force=True)
    with pytest.raises(InputError, match="width"):
        check_compatible(wide, CFG, force=True)  # force never skips the width check


def test_to_steering_uses_the_chosen_rows():
    vset = make_set()
    plan = to_steering(vset, CFG, {2: 1.5, 5: -0.5})
    np.testing.assert_array_equal(np.asarray(plan.vectors)[[2, 5]], vset.vectors[[2, 5]])
    assert plan.steered_layers == (2, 5)
    np.testing.assert_allclose(np.asarray(plan.gamma)[[2, 5, 7]], [1.5, -0.5, 0.0])
    plan = to_steering(vset, CFG, [7], gamma=2.0, scope="prompt")
    assert plan.steered_layers == (7,) and plan.scope == "prompt" and float(plan.gamma[7]) == 2.0
    with pytest.raises(InputError, match="layer 3 has a zero vector"):
        to_steering(vset, CFG, [3])
    with pytest.raises(InputError, match="out of range"):
        to_steering(vset, CFG, [8])
    with pytest.raises(InputError, match="not both"):
        to_steering(vset, CFG, {2: 1.0}, gamma=2.0)
    with pytest.raises(InputError, match="was made for"):
        to_steering(make_set(config=tiny(rms_norm_eps=1e-5)), CFG, [2])


# --- GGUF ---------------------------------------------------------------------------------------------
def _field(reader, key):
    f = reader.get_field(key)
    return None if f is None else f.contents()


def test_gguf_round_trip_names_layers_like_llama_cpp(tmp_path):
    vset = make_set()
    path = tmp_path / "en.gguf"
    with pytest.warns(UserWarning, match="layer 0"):
        export_gguf(vset, path)
    reader = gguf.GGUFReader(path)
    assert _field(reader, "general.architecture") == "controlvector"
    assert _field(reader, "controlvector.model_hint") == "gemma3"
    assert _field(reader, "controlvector.layer_count") == 3
    tensors = {t.name: np.asarray(t.data) for t in reader.tensors}
    assert sorted(tensors) == ["direction.2", "direction.5", "direction.7"]  # jaxsteer layer l ↔ direction.l
    for layer in (2, 5, 7):
        assert tensors[f"direction.{layer}"].dtype == np.float32
        np.testing.assert_array_equal(tensors[f"direction.{layer}"], vset.vectors[layer])
    back = import_gguf(path, CFG)
    expected = vset.vectors.copy()
    expected[0] = 0.0
    np.testing.assert_array_equal(back.vectors, expected)
    assert back.meta.config_hash == CFG.config_hash() and back.meta.languages == ("ko", "zh")
    assert back.meta.extra["dev"] == "dev1" and back.meta.extra["gguf_scale"] == 1.0


def _llama_cpp_layer_of(name: str, n_layer: int) -> int:
    """llama.cpp, transcribed: common_control_vector_load_one puts direction.K at data[n_embd*(K-1)];
    llama_adapter_cvec::apply reads data[n_embd*(il-1)] into tensors[il]; gemma3.cpp adds tensors[il]
    after block il (0-based). Returns the 0-based block whose output receives the tensor."""
    k = int(name.split(".")[1])
    assert k != 0, "llama.cpp rejects direction.0"
    offset = k - 1  # loader
    for il in range(1, n_layer):  # llama_adapter_cvec::apply
        if il - 1 == offset:
            return il
    raise AssertionError(f"{name} is never applied")


def test_gguf_layers_land_on_the_same_block_in_llama_cpp(tmp_path):
    vset = make_set(layers=(1, 4, 7))
    export_gguf(vset, tmp_path / "v.gguf", scale=2.0)
    reader = gguf.GGUFReader(tmp_path / "v.gguf")
    for t in reader.tensors:
        block = _llama_cpp_layer_of(t.name, CFG.num_layers)
        np.testing.assert_array_equal(np.asarray(t.data), vset.vectors[block] * np.float32(2.0))
    with pytest.raises(InputError, match="direction.0"):
        export_gguf(make_set(), tmp_path / "zero.gguf", layers=[0, 2])
    export_gguf(vset, tmp_path / "sub.gguf", layers=[4])
    assert [t.name for t in gguf.GGUFReader(tmp_path / "sub.gguf").tensors] == ["direction.4"]


def test_gguf_import_of_foreign_and_bad_files(tmp_path):
    rng = np.random.default_rng(1)
    rows = {3: rng.standard_normal(32).astype(np.float32), 6: rng.standard_normal(32).astype(np.float32)}
    w = gguf.GGUFWriter(str(tmp_path / "repeng.gguf"), "controlvector")  # what repeng's export_gguf writes
    w.add_string("controlvector.model_hint", "gemma3_text")
    w.add_uint32("controlvector.layer_count", len(rows))
    for layer, row in rows.items():
        w.add_tensor(f"direction.{layer}", row)
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()
    vset = import_gguf(tmp_path / "repeng.gguf", CFG)
    assert vset.nonzero_layers() == (3, 6) and vset.meta.extra["config_hash_assumed"]
    np.testing.assert_array_equal(vset.vectors[6], rows[6])
    assert vset.meta.model_name == "gemma3_text" and vset.meta.method == "unknown"
    with pytest.raises(InputError) as e:
        import_gguf(tmp_path / "repeng.gguf", tiny(hidden_size=48))
    assert one_line(e) == "vector file has width 32, the model has 48"
    w = gguf.GGUFWriter(str(tmp_path / "model.gguf"), "gemma3")
    w.add_tensor("token_embd.weight", np.zeros((4, 4), np.float32))
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()
    with pytest.raises(CheckpointError, match="expected 'controlvector'"):
        import_gguf(tmp_path / "model.gguf", CFG)
    (tmp_path / "junk.gguf").write_bytes(b"not a gguf file")
    with pytest.raises(CheckpointError) as e:
        import_gguf(tmp_path / "junk.gguf", CFG)
    one_line(e)
    export_gguf(make_set(layers=(2,), config=tiny(rms_norm_eps=1e-5)), tmp_path / "o.gguf")
    with pytest.raises(InputError, match="was made for"):  # our own files keep their hash
        import_gguf(tmp_path / "o.gguf", CFG)


def test_gguf_import_warns_about_direction_0(tmp_path):
    """repeng writes direction.0 when asked for layer 0; llama.cpp then rejects the whole file."""
    import warnings

    rng = np.random.default_rng(2)
    rows = {0: rng.standard_normal(32).astype(np.float32), 4: rng.standard_normal(32).astype(np.float32)}
    w = gguf.GGUFWriter(str(tmp_path / "zero.gguf"), "controlvector")
    w.add_string("controlvector.model_hint", "gemma3_text")
    for layer, row in rows.items():
        w.add_tensor(f"direction.{layer}", row)
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()
    with pytest.warns(UserWarning, match=r"zero.gguf holds direction.0: llama.cpp rejects this file whole"):
        vset = import_gguf(tmp_path / "zero.gguf", CFG)
    assert vset.nonzero_layers() == (0, 4) and vset.meta.extra["gguf_direction_0"] is True
    np.testing.assert_array_equal(vset.vectors[0], rows[0])  # still usable in jaxsteer (after block 0)
    with pytest.warns(UserWarning, match="layer 0"):  # and re-exported without it, for llama.cpp
        export_gguf(vset, tmp_path / "fixed.gguf")
    assert [t.name for t in gguf.GGUFReader(tmp_path / "fixed.gguf").tensors] == ["direction.4"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a file without direction.0 imports silently
        assert "gguf_direction_0" not in import_gguf(tmp_path / "fixed.gguf", CFG, force=True).meta.extra


# --- lm-evaluation-harness ------------------------------------------------------------------------------
def test_lm_eval_export_without_pickle(tmp_path):
    vset = make_set()
    json_path, st_path = export_lm_eval(vset, tmp_path / "sur", {2: 2.0, 5: 1.5})
    doc = json.loads(Path(json_path).read_text())
    assert doc["hookpoints"]["layers.2"] == {
        "action": "add",
        "steering_coefficient": 2.0,
        "tensor": "layers.2",
        "bias": None,
        "head_index": None,
    }
    assert doc["hookpoints"]["layers.5"]["steering_coefficient"] == 1.5
    assert "torch.save" in doc["convert"] and doc["jaxsteer"]["config_hash"] == CFG.config_hash()
    with SafetensorsFile(st_path) as f:
        np.testing.assert_array_equal(f.get("layers.5"), vset.vectors[5])
    assert Path(st_path).read_bytes()[:2] not in (b"PK", b"\x80\x02")  # not a torch zip / pickle
    json_path, _ = export_lm_eval(vset, tmp_path / "mm.json", [7], gamma=3.0, hookpoint="language_model.layers.{layer}")
    assert list(json.loads(Path(json_path).read_text())["hookpoints"]) == ["language_model.layers.7"]
    with pytest.raises(InputError, match="hook_action"):
        export_lm_eval(vset, tmp_path / "x", [2], hook_action="multiply")


def test_steering_at_a_zero_layer_is_refused_naming_the_file():
    from jaxsteer.steering.vectors_io import check_nonzero_at

    vset = make_set()  # layers 3 and 4 are zero
    check_nonzero_at(vset, [2, 5], "en.safetensors")
    with pytest.raises(InputError, match=r"^layer 4 has a zero vector in en.safetensors \(non-zero layers: .*\)$"):
        check_nonzero_at(vset, [2, 4], "en.safetensors")
