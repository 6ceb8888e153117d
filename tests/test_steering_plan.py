"""The ``Steering`` plan: parity with HF forward hooks, γ = 0, vmap over γ, no retracing.

"Steer at layer l" = add γ·v to the output of block ``l`` = a forward hook on HF's
``model.model.layers[l]``. For ``forward`` the scope ``"prompt"`` covers every real token and
``"generated"`` covers none (decode tests cover it under the cache).
"""

from __future__ import annotations

import numpy as np
import pytest

import jaxsteer
from jaxsteer.errors import InputError
from jaxsteer.model import transformer
from jaxsteer.steering.plan import Steering

TOL = 1e-5


def _vectors(d: int, layers, seed: int = 0) -> dict[int, np.ndarray]:
    rng = np.random.RandomState(seed)
    return {layer: (0.5 * rng.randn(d)).astype(np.float32) for layer in layers}


def _where(scope, batch) -> np.ndarray:
    """Which [B, T] positions a scope steers in a plain forward (real tokens are what is compared)."""
    ids, mask = batch
    if isinstance(scope, np.ndarray):
        return scope
    if scope in ("all", "prompt"):
        return np.ones(ids.shape, bool)
    if scope == "generated":
        return np.zeros(ids.shape, bool)
    return np.maximum(np.cumsum(mask, 1) - 1, 0) >= scope  # a start position: absolute positions


EXPLICIT_MASK = np.random.RandomState(7).rand(3, 11) < 0.5

CASES = {
    "one-layer-all": ({3: 2.0}, "all"),
    "three-layers-all": ({0: 1.5, 5: -2.0, 7: 0.5}, "all"),  # 7 = last block: feeds the final norm
    "prompt": ({2: 2.0, 5: 1.0}, "prompt"),
    "mask": ({1: 2.0, 6: -1.0}, EXPLICIT_MASK),
    "start-position": ({2: 2.0, 4: 1.0}, 4),
    "generated": ({2: 2.0}, "generated"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_matches_hf_forward_hooks(name, hf_tiny, batch, valid, js_tiny_out):
    hf_reference = pytest.importorskip("hf_reference")
    gammas, scope = CASES[name]
    config = hf_tiny.js.config
    vectors = _vectors(config.hidden_size, gammas, seed=len(name))
    steer = Steering.from_layers(config, vectors, gamma=gammas, scope=scope)
    out = jaxsteer.forward(hf_tiny.js, *batch, steering=steer, return_hidden=True)
    deltas = {layer: g * vectors[layer] for layer, g in gammas.items()}
    where = _where(scope, batch)
    ref = hf_reference.run(hf_tiny.hf, *batch, deltas=deltas, where=where)
    assert hf_reference.rel_err(ref.logits, out.logits, valid) <= TOL
    for layer in range(config.num_layers + 1):
        assert hf_reference.rel_err(ref.hidden[layer], out.hidden[layer], valid) <= TOL, f"hidden[{layer}]"
    if where[valid].any():  # the steering bites where it should
        assert not np.allclose(out.logits, js_tiny_out.logits, atol=1e-3)
    else:  # "generated" in a plain forward: nothing changes at all
        np.testing.assert_array_equal(out.logits, js_tiny_out.logits)
        np.testing.assert_array_equal(out.hidden, js_tiny_out.hidden)


def test_delta_lands_on_the_steered_block_output(js_random, batch):
    """hidden[l+1] moves by exactly γ·v at the steered positions; hidden[0..l] do not move."""
    config = js_random.config
    v = _vectors(config.hidden_size, [3])[3]
    plain = jaxsteer.forward(js_random, *batch, return_hidden=True)
    steer = Steering.from_layers(config, {3: v}, gamma=2.0)
    out = jaxsteer.forward(js_random, *batch, steering=steer, return_hidden=True)
    np.testing.assert_array_equal(out.hidden[:4], plain.hidden[:4])
    np.testing.assert_allclose(
        out.hidden[4] - plain.hidden[4], np.broadcast_to(2.0 * v, plain.hidden[4].shape), atol=1e-5
    )


def test_gamma_zero_is_bit_identical(js_random, batch):
    config = js_random.config
    plain = jaxsteer.forward(js_random, *batch, return_hidden=True)
    steer = Steering.from_layers(config, _vectors(config.hidden_size, [2, 5]), gamma=0.0)
    out = jaxsteer.forward(js_random, *batch, steering=steer, return_hidden=True)
    assert np.array_equal(np.asarray(out.logits), np.asarray(plain.logits))
    assert np.array_equal(np.asarray(out.hidden), np.asarray(plain.hidden))


def test_vmap_over_gamma_equals_loop(js_random, batch, valid):
    import jax

    config = js_random.config
    steer = Steering.from_layers(config, _vectors(config.hidden_size, [2, 5]), gamma=1.0)
    base = np.asarray(steer.gamma)
    gammas = np.stack([s * base for s in (-2.0, 0.0, 0.5, 3.0)]).astype(np.float32)

    def run(g):
        out = jaxsteer.forward(js_random, *batch, steering=steer.with_gamma(g), return_hidden=True)
        return out.logits, out.hidden

    logits, hidden = jax.vmap(run)(gammas)
    assert logits.shape == (4, *batch[0].shape, config.vocab_size)
    for i, g in enumerate(gammas):
        ref_logits, ref_hidden = run(g)
        scale = np.abs(np.asarray(ref_logits)[valid]).max()
        assert np.abs(np.asarray(logits[i] - ref_logits)[valid]).max() <= 1e-6 * scale
        scale = np.abs(np.asarray(ref_hidden)[:, valid]).max()
        assert np.abs(np.asarray(hidden[i] - ref_hidden)[:, valid]).max() <= 1e-6 * scale


def test_new_gammas_and_vectors_do_not_retrace(js_random, batch):
    # a config no other test has compiled (the name is not part of equality: an architecture value must differ)
    config = js_random.config.replace(name="retrace-probe", rms_norm_eps=js_random.config.rms_norm_eps * 1.0001)
    model = jaxsteer.Model(config=config, params=js_random.params)
    d = config.hidden_size
    first = Steering.from_layers(config, _vectors(d, [2]), gamma=1.0)
    traces = transformer.forward_core._cache_size  # compiled variants of the jitted forward
    before = traces()
    reference = jaxsteer.forward(model, *batch, steering=first, logits_at="last").logits
    assert traces() == before + 1  # the counter sees the one trace
    plans = [
        first.with_gamma(np.full(config.num_layers, -3.0, np.float32)),
        Steering.from_layers(config, _vectors(d, [0, 7], seed=3), gamma={0: 0.5, 7: 4.0}),
        first.replace(vectors=first.vectors * 2.0),
        Steering.from_layers(config, _vectors(d, [5], seed=4), gamma=0.0),
    ]
    outs = [jaxsteer.forward(model, *batch, steering=p, logits_at="last").logits for p in plans]
    assert traces() == before + 1
    assert not np.allclose(outs[0], reference)  # the new values were used
    # a start position is a value too: one trace for the scope kind, none per value
    count = traces()
    for start in (0, 5, 9):
        jaxsteer.forward(model, *batch, steering=Steering.from_layers(config, _vectors(d, [2]), 1.0, start))
    assert traces() == count + 1


def test_plan_is_dense_per_layer(js_random):
    config = js_random.config
    vectors = _vectors(config.hidden_size, [1, 6])
    steer = Steering.from_layers(config, vectors, gamma={1: 2.0, 6: -1.0})
    assert steer.vectors.shape == (config.num_layers, config.hidden_size)
    assert steer.gamma.shape == (config.num_layers,)
    assert steer.steered_layers == (1, 6)
    expected = np.zeros(config.num_layers, np.float32)
    expected[[1, 6]] = [2.0, -1.0]
    np.testing.assert_array_equal(steer.gamma, expected)
    np.testing.assert_allclose(steer.deltas()[6], -vectors[6])
    np.testing.assert_array_equal(steer.deltas()[0], 0.0)
    with pytest.raises(InputError, match="layer 6 has a steering vector but no gamma"):
        Steering.from_layers(config, vectors, gamma={1: 2.0})  # γ = 0 at 6 would drop its vector silently
