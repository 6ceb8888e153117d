"""The NNX module computes the functional forward exactly and composes with nnx transforms."""

import jax
import numpy as np
from flax import nnx

import jaxsteer
from jaxsteer.config import tiny
from jaxsteer.model.nnx_module import Gemma3, count_params


def test_nnx_module_equals_functional_forward_and_jits():
    cfg = tiny()
    model = jaxsteer.Model.random(cfg, seed=3, norm_std=0.2)
    module = Gemma3.from_model(model)
    ids = np.random.RandomState(0).randint(3, cfg.vocab_size, (2, 7))
    mask = np.ones_like(ids)
    mask[1, :2] = 0
    steer = jaxsteer.Steering.from_layers(cfg, {2: np.ones(cfg.hidden_size)}, gamma=1.5)
    want = np.asarray(jaxsteer.forward(model, ids, mask, steering=steer, logits_at="last").logits)
    got = np.asarray(module(ids, mask, steering=steer, logits_at="last").logits)
    np.testing.assert_array_equal(got, want)
    jitted = nnx.jit(lambda m, x: m(x, logits_at="last").logits)
    np.testing.assert_allclose(
        np.asarray(jitted(module, ids)), np.asarray(jaxsteer.forward(model, ids, logits_at="last").logits), rtol=1e-6
    )
    assert count_params(module) == cfg.num_params()


def test_nnx_split_merge_round_trip_and_random_init():
    cfg = tiny()
    module = Gemma3(cfg, rngs=nnx.Rngs(0))
    graph, state = nnx.split(module)
    again = nnx.merge(graph, state)
    ids = np.arange(3, 9)[None]
    np.testing.assert_array_equal(np.asarray(module(ids).logits), np.asarray(again(ids).logits))
    assert jax.tree.leaves(state)[0].shape[0] in (cfg.num_layers, cfg.vocab_size, cfg.hidden_size)
    back = module.to_model()
    np.testing.assert_array_equal(np.asarray(jaxsteer.forward(back, ids).logits), np.asarray(module(ids).logits))


def test_the_module_keeps_the_models_decode_layout():
    import dataclasses

    model = dataclasses.replace(jaxsteer.Model.random(tiny(), seed=0), decode_layout="scan")
    assert Gemma3.from_model(model).to_model().decode_layout == "scan"
