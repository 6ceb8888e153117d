"""The final block computed only at the positions logits are read (``run_layers(queries=…)``) gives the full
forward's logits there: last position and index arrays, left padding, a window shorter than the prompt,
steering, a local and a global final layer."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import jaxsteer
from jaxsteer.config import default_layer_types, tiny
from jaxsteer.model.transformer import run_layers

T = 9


def _prompts(cfg):
    rng = np.random.RandomState(0)
    ids = rng.randint(3, cfg.vocab_size, size=(3, T))
    mask = np.ones_like(ids)
    mask[1, :3] = 0
    mask[2, :6] = 0
    return ids, mask


@pytest.mark.parametrize("layers", [8, 6])  # the final layer local (8: …, global, local, local) or global (6)
def test_logits_at_read_positions_equal_the_full_forward(layers):
    jax.config.update("jax_default_matmul_precision", "highest")
    cfg = tiny(num_layers=layers, layer_types=default_layer_types(layers), sliding_window=3)
    assert cfg.is_global[-1] == (layers == 6)
    model = jaxsteer.Model.random(cfg, seed=4, norm_std=0.3)
    ids, mask = _prompts(cfg)
    steer = jaxsteer.Steering.from_layers(cfg, {layers - 1: np.random.RandomState(1).randn(cfg.hidden_size)}, 2.0)
    full = np.asarray(jaxsteer.forward(model, ids, mask, steering=steer, logits_at="all").logits)
    last = np.asarray(jaxsteer.forward(model, ids, mask, steering=steer, logits_at="last").logits)
    np.testing.assert_allclose(last, full[:, -1], rtol=1e-5, atol=1e-5)
    index = np.array([[8, 4], [5, 8], [6, -2]], np.int32)  # [B, K]: several positions a row, out of order,
    picked = np.asarray(jaxsteer.forward(model, ids, mask, steering=steer, logits_at=index).logits)  # -2 from the end
    np.testing.assert_allclose(picked, np.take_along_axis(full, index[..., None], axis=1), rtol=1e-5, atol=1e-5)
    minus_one = np.asarray(jaxsteer.forward(model, ids, mask, steering=steer, logits_at=np.full(3, -1)).logits)
    np.testing.assert_allclose(minus_one, full[:, -1], rtol=1e-5, atol=1e-5)


def test_queries_refuse_collect_attend_and_an_empty_range():
    cfg = tiny()
    model = jaxsteer.Model.random(cfg, seed=0)
    import jax.numpy as jnp

    from jaxsteer.model.transformer import make_context

    h = jnp.zeros((1, 4, cfg.hidden_size), jnp.float32)
    ctx = make_context(cfg, jnp.arange(4)[None], None, None)
    queries = jnp.zeros((1, 1), jnp.int32)
    with pytest.raises(ValueError, match="queries with collect or attend"):
        run_layers(model.params["layers"], h, ctx, config=cfg, queries=queries, collect=lambda h, kv: h)
    with pytest.raises(ValueError, match=r"at least one block \(start=3, stop=3\)"):
        run_layers(model.params["layers"], h, ctx, config=cfg, start=3, stop=3, queries=queries)
