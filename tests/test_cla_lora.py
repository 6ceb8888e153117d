"""LoRA: zero-B equals the base model, merged equals unmerged, trainable labels.

(That only the labelled leaves move in a train step is checked on real runs in test_cla_trainer: LoRA
for MIST, attention-only for CLO.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsteer
from jaxsteer.cla import lora as L
from jaxsteer.cla.config import LoraSpec, StepSpec
from jaxsteer.config import tiny

CFG = tiny(num_layers=3)
SPEC = LoraSpec(rank=4, alpha=8.0, dropout=0.0)


@pytest.fixture(scope="module")
def base(model_factory):
    return model_factory(CFG, seed=3).params


FWD = StepSpec(config=CFG, compute_dtype="float32", remat=None, impl="xla", lora_scale=L.lora_scale(SPEC))
_hidden = jax.jit(L.forward_hidden, static_argnames=("spec",))


def hidden(tree, ids, mask):
    return _hidden(tree, ids, mask, spec=FWD)


def test_zero_b_equals_base(base, batch):
    ids, mask = map(jnp.asarray, batch)
    lora = jax.tree.map(jnp.asarray, L.init_lora(CFG, SPEC, seed=0))
    assert all(float(jnp.abs(ab["b"]).max()) == 0 for ab in lora.values())
    assert all(float(jnp.abs(ab["a"]).max()) > 0 for ab in lora.values())
    np.testing.assert_array_equal(np.asarray(hidden({"base": base, "lora": lora}, ids, mask)),
                                  np.asarray(hidden({"base": base, "lora": {}}, ids, mask)))  # fmt: skip
    merged = L.merge_lora(base, lora, L.lora_scale(SPEC))
    for name in base["layers"]:
        np.testing.assert_array_equal(np.asarray(merged["layers"][name]), np.asarray(base["layers"][name]))


def test_merged_equals_unmerged(base, batch):
    """The training forward with LoRA beside the weights = the model's forward on merged weights."""
    ids, mask = map(jnp.asarray, batch)
    lora = jax.tree.map(jnp.asarray, L.init_lora(CFG, SPEC, seed=0))
    rng = np.random.default_rng(0)
    lora = {
        k: {"a": ab["a"], "b": jnp.asarray(0.05 * rng.normal(size=ab["b"].shape), jnp.float32)}
        for k, ab in lora.items()
    }
    ours = np.asarray(hidden({"base": base, "lora": lora}, ids, mask))
    merged = L.merge_lora(base, lora, L.lora_scale(SPEC))
    ref = jaxsteer.forward(jaxsteer.Model(CFG, merged), ids, mask, return_hidden=True, logits_at="none").hidden[-1]
    valid = np.asarray(mask).astype(bool)
    np.testing.assert_allclose(ours[valid], np.asarray(ref)[valid], rtol=1e-5, atol=1e-5)
    assert np.abs(ours[valid] - np.asarray(hidden({"base": base, "lora": {}}, ids, mask))[valid]).max() > 1e-3
    # host (numpy) merge for export = device merge
    host = L.merge_lora(jax.tree.map(np.asarray, base), jax.tree.map(np.asarray, lora), L.lora_scale(SPEC), xp=np)
    for name in merged["layers"]:
        np.testing.assert_allclose(host["layers"][name], np.asarray(merged["layers"][name]), rtol=1e-6, atol=1e-7)


def test_dropout_drops_input_features_of_a():
    layer = {"q_proj": jnp.zeros((4, 6))}
    lo = {"q_proj": {"a": jnp.ones((2, 6)), "b": jnp.ones((4, 2))}}
    plain = L.apply_lora(layer, lo, 1.0)["q_proj"]
    dropped = L.apply_lora(layer, lo, 1.0, dropout=0.5, key=jax.random.PRNGKey(1))["q_proj"]
    np.testing.assert_allclose(np.asarray(plain), 2.0)
    cols = np.asarray(dropped)[0]
    assert set(np.round(cols, 5)) <= {0.0, 4.0} and 0 < (cols == 0).sum() < 6  # whole input columns, rescaled
    assert np.all(np.asarray(dropped) == cols[None, :])


def test_trainable_labels():
    from jaxsteer.model.transformer import init_params

    cfg = tiny(num_layers=1)
    tree = {"base": jax.eval_shape(lambda: init_params(cfg, jax.random.PRNGKey(0))), "lora": L.lora_shapes(cfg, SPEC)}
    flat = {
        jax.tree_util.keystr(p): v
        for p, v in jax.tree_util.tree_leaves_with_path(L.trainable_labels(tree, "attention"))
    }
    trained = sorted(k for k, v in flat.items() if v == "train")
    assert trained == sorted(f"['base']['layers']['{n}']" for n in ("q_proj", "k_proj", "v_proj", "o_proj"))
    lora_labels = jax.tree.leaves(L.trainable_labels(tree, "lora"))
    assert lora_labels.count("train") == 2 * len(SPEC.targets)
    full = L.trainable_labels(tree, "full")
    assert set(jax.tree.leaves(full["base"])) == {"train"} and set(jax.tree.leaves(full["lora"])) == {"frozen"}
    train, frozen = L.split(tree, full)
    assert jax.tree.structure(L.combine(train, frozen)) == jax.tree.structure(tree)
