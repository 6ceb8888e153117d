"""LoRA: zero-B equals the base model, merged equals unmerged, trainable labels.

(That only the labelled leaves move in a train step is checked on real runs in test_cla_trainer: LoRA
for MIST, attention-only for CLO.)
"""

from __future__ import annotations

import dataclasses

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


def test_dropout_is_per_token_on_the_lora_input_like_peft():
    """PEFT: ``y = x Wᵀ + s·B(A(dropout(x)))`` — each input element of the LoRA path dropped on its own."""
    rng = np.random.default_rng(0)
    w, a, b = (jnp.asarray(rng.normal(size=s), jnp.float32) for s in ((4, 6), (2, 6), (4, 2)))
    key = jax.random.PRNGKey(1)
    p = {"q_proj": w, "lora": {"q_proj": {"a": a, "b": b}}, "dropout_key": key}
    x = jnp.ones((2, 500, 6), jnp.float32)  # identical tokens: only dropout can tell them apart
    y = np.asarray(L.lora_projection(0.5, 0.25)(x, p, "q_proj"))
    # the same masks by hand: one Bernoulli draw per element of x, kept elements scaled by 1/(1-p)
    keep = jax.random.bernoulli(jax.random.fold_in(key, sorted(L.PROJ.values()).index("q_proj")), 0.75, x.shape)
    dropped = np.where(np.asarray(keep), 1.0 / 0.75, 0.0)
    expected = np.ones((2, 500, 6)) @ np.asarray(w).T + 0.5 * (dropped @ np.asarray(a).T) @ np.asarray(b).T
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    assert len(np.unique(np.round(y[..., 0], 4))) > 10  # tokens (and rows) get their own masks
    plain = np.asarray(L.lora_projection(0.5, 0.0)(x, p, "q_proj"))
    assert np.allclose(plain, plain[0, 0])  # without dropout every token is the same
    np.testing.assert_allclose(y.mean(axis=(0, 1)), plain[0, 0], atol=0.15 * np.abs(plain).max())  # unbiased
    # a projection without LoRA factors is the plain base projection, never dropped
    np.testing.assert_array_equal(np.asarray(L.lora_projection(0.5, 0.25)(x, {**p, "k_proj": w}, "k_proj")),
                                  np.asarray(x @ w.T))  # fmt: skip


def test_forward_dropout_needs_a_key(base, batch):
    """With ``lora_dropout`` set, a key turns dropout on (different keys, different outputs); no key is eval."""
    ids, mask = map(jnp.asarray, batch)
    lora = jax.tree.map(jnp.asarray, L.init_lora(CFG, SPEC, seed=0))
    lora = {k: {"a": ab["a"], "b": ab["b"] + 0.05} for k, ab in lora.items()}
    tree = {"base": base, "lora": lora}
    spec = dataclasses.replace(FWD, lora_dropout=0.5)
    run = jax.jit(L.forward_hidden, static_argnames=("spec",))
    eval_out = np.asarray(run(tree, ids, mask, spec=spec))
    np.testing.assert_array_equal(eval_out, np.asarray(hidden(tree, ids, mask)))
    one = np.asarray(run(tree, ids, mask, spec=spec, key=jax.random.PRNGKey(0)))
    two = np.asarray(run(tree, ids, mask, spec=spec, key=jax.random.PRNGKey(1)))
    valid = np.asarray(mask).astype(bool)
    assert np.abs(one - eval_out)[valid].max() > 1e-4 and np.abs(one - two)[valid].max() > 1e-4


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


@pytest.mark.parametrize("remat", [None, "nothing_saveable"])
def test_unrolled_layer_loop_equals_the_scan_value_and_gradients(base, batch, remat):
    """``train.layer_loop: unrolled`` (static per-layer slices) computes the scan's hidden states and the same
    gradients for the base weights and the LoRA factors, with LoRA dropout on and rematerialisation."""
    ids, mask = map(jnp.asarray, batch)
    rng = np.random.default_rng(1)
    lora = {
        k: {"a": ab["a"], "b": jnp.asarray(0.05 * rng.normal(size=ab["b"].shape), jnp.float32)}
        for k, ab in L.init_lora(CFG, SPEC, seed=0).items()
    }
    tree = {"base": base, "lora": jax.tree.map(jnp.asarray, lora)}
    key = jax.random.PRNGKey(5)

    def loss(tree, loop):
        spec = dataclasses.replace(FWD, remat=remat, lora_dropout=0.3, layer_loop=loop)
        h = L.forward_hidden(tree, ids, mask, spec, key=key)
        return jnp.sum(jnp.sin(h) * mask[..., None])

    (v_scan, g_scan), (v_unrolled, g_unrolled) = (
        jax.jit(jax.value_and_grad(loss), static_argnums=1)(tree, loop) for loop in ("scan", "unrolled")
    )
    np.testing.assert_allclose(float(v_unrolled), float(v_scan), rtol=1e-5, atol=1e-4)  # a sum of ~10³ terms
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(g_scan), jax.tree.leaves(g_unrolled)):
        scale = float(np.abs(np.asarray(a)).max())  # fp32 reordering: compared against each leaf's largest entry
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=0, atol=1e-5 * scale + 1e-7, err_msg=str(path))
    assert float(jnp.abs(g_scan["lora"]["q_proj"]["a"]).max()) > 0  # the gradients compared are not all zero


def test_the_layer_loop_switch_is_validated_and_keeps_the_run_hash(monkeypatch):
    import jax

    from jaxsteer.cla import config as C
    from jaxsteer.errors import ConfigError

    auto, scan, unrolled = (C.load(None, {"train": {"layer_loop": v}}) for v in ("auto", "scan", "unrolled"))
    assert C.load(None).train.layer_loop == "auto"
    assert C.StepSpec.from_config(unrolled, tiny()).layer_loop == "unrolled"
    assert C.StepSpec.from_config(auto, tiny()).layer_loop == "scan"  # this CPU
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert C.StepSpec.from_config(auto, tiny()).layer_loop == "unrolled"
    assert C.StepSpec.from_config(scan, tiny()).layer_loop == "scan"  # asked for: kept on a GPU
    # the same computation: a run resumes across the switch
    assert auto.config_hash() == scan.config_hash() == unrolled.config_hash()
    with pytest.raises(ConfigError, match=r"train.layer_loop='loop'; expected one of auto, scan, unrolled"):
        C.load(None, {"train": {"layer_loop": "loop"}})
