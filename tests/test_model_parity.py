"""jaxsteer's forward pass is the same function as transformers' ``Gemma3ForCausalLM`` (fp32, eager).

Two tiny configs between them exercise GQA (4/2) and MQA (4/1), ``query_pre_attn_scalar`` ≠ head_dim,
sliding windows (4 and 3) shorter than the 11-token sequence, linear RoPE ×8 on global layers, 8 layers
with no explicit ``layer_types`` (global at 5 only) and 6 layers with explicit, off-pattern
``layer_types``, legacy rope keys, randomised norm weights everywhere and a left-padded batch.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

import hf_reference  # noqa: E402
from hf_reference import rel_err  # noqa: E402

import jaxsteer  # noqa: E402
from jaxsteer.model.layers import rms_norm  # noqa: E402

TOL = 1e-5


@pytest.fixture(scope="module")
def hf_mqa(tmp_path_factory, batch):
    model = hf_reference.build_model(hf_reference.TINY_MQA, seed=1)
    folder = hf_reference.save(model, tmp_path_factory.mktemp("hf") / "tiny-mqa")
    js = jaxsteer.load_pretrained(folder, dtype="float32")
    return js, hf_reference.run(model, *batch), jaxsteer.forward(js, *batch, return_hidden=True)


@pytest.fixture(scope="module", params=["gqa", "mqa"])
def case(request, hf_tiny, hf_tiny_ref, js_tiny_out, hf_mqa):
    """(jaxsteer model, HF reference outputs, jaxsteer outputs) for each parity config."""
    if request.param == "gqa":
        return hf_tiny.js, hf_tiny_ref, js_tiny_out
    return hf_mqa


def test_configs_exercise_the_features(hf_tiny, hf_mqa):
    gqa, mqa = hf_tiny.js.config, hf_mqa[0].config
    assert gqa.global_layers == (5,)  # 8 layers: one group of six, then a remainder of two sliding layers
    assert (gqa.num_heads, gqa.num_kv_heads, gqa.head_dim, gqa.query_pre_attn_scalar) == (4, 2, 16, 24)
    assert gqa.rope_global_scaling == 8.0 and gqa.sliding_window < 11
    assert mqa.global_layers == (1, 4)  # explicit layer_types
    assert (mqa.num_heads, mqa.num_kv_heads, mqa.head_dim, mqa.query_pre_attn_scalar) == (4, 1, 8, 32)
    assert (mqa.rope_global_base, mqa.rope_local_base, mqa.rope_global_scaling) == (500_000.0, 20_000.0, 1.0)


def test_norm_weights_are_randomised(hf_tiny):
    """Every norm weight (zero-centred in the checkpoint) is far from 0, so `w` vs `1 + w` cannot pass."""
    params = hf_tiny.js.params
    norms = {"final_norm": params["final_norm"]}
    norms.update({k: v for k, v in params["layers"].items() if k.endswith("norm")})
    assert len(norms) == 7
    for name, w in norms.items():
        assert float(np.std(np.asarray(w))) > 0.2, name


def test_logits_match(case, valid):
    _, ref, out = case
    assert out.logits.dtype == np.float32
    assert out.logits.shape == ref.logits.shape
    assert rel_err(ref.logits, out.logits, valid) <= TOL


def test_hidden_states_match(case, valid):
    js, ref, out = case
    n = js.config.num_layers
    assert out.hidden.shape == (n + 1, *valid.shape, js.config.hidden_size)
    assert out.hidden.dtype == np.float32
    # HF hidden_states[0..L-1]: scaled embeddings, then the (un-normed) output of blocks 0..L-2.
    for layer in range(n):
        assert rel_err(ref.hf_hidden[layer], out.hidden[layer], valid) <= TOL, f"hidden_states[{layer}]"
    # HF's last entry is after the final norm: compare ours through the same norm ...
    normed = rms_norm(out.hidden[n], js.params["final_norm"], js.config.rms_norm_eps)
    assert rel_err(ref.hf_hidden[n], normed, valid) <= TOL
    # ... and the raw output of the last block against the one recorded by a hook.
    assert rel_err(ref.hidden[n], out.hidden[n], valid) <= TOL


def test_hook_recording_matches_hf_hidden_states(case, valid):
    """The hook-recorded states used by the steering tests agree with HF's own (unsteered)."""
    js, ref, _ = case
    n = js.config.num_layers
    for layer in range(n):
        assert rel_err(ref.hf_hidden[layer], ref.hidden[layer], valid) <= 1e-7


def test_left_padding_keeps_absolute_positions(js_tiny_out, batch):
    """Row 2 is row 0's first five tokens behind six pads: its logits equal row 0's at positions 0..4."""
    ids, mask = batch
    pad = int((mask[2] == 0).sum())
    np.testing.assert_array_equal(ids[2, pad:], ids[0, : ids.shape[1] - pad])
    logits = np.asarray(js_tiny_out.logits)
    assert rel_err(logits[0, : ids.shape[1] - pad], logits[2, pad:]) <= TOL


def test_logits_at_last_and_index(hf_tiny, js_tiny_out, batch):
    ids, mask = batch
    full = np.asarray(js_tiny_out.logits)
    last = np.asarray(jaxsteer.forward(hf_tiny.js, ids, mask, logits_at="last").logits)
    np.testing.assert_allclose(last, full[:, -1], rtol=0, atol=1e-6 * np.abs(full).max())
    index = np.array([[10, 4], [3, 7], [6, 8]])
    picked = np.asarray(jaxsteer.forward(hf_tiny.js, ids, mask, logits_at=index).logits)
    expected = np.take_along_axis(full, index[..., None], axis=1)
    np.testing.assert_allclose(picked, expected, rtol=0, atol=1e-6 * np.abs(full).max())
