"""CLA losses against hand-computed NumPy values on tiny inputs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsteer.cla import losses
from jaxsteer.config import tiny
from jaxsteer.model.transformer import unembed

# jitted once per function: eager calls would compile every primitive separately
nll = jax.jit(losses.masked_nll)
logprobs = jax.jit(losses.target_logprobs)
info_nce = jax.jit(losses.info_nce, static_argnames=("tau", "symmetric"))
dpo = jax.jit(losses.dpo_loss, static_argnames=("beta",))


def np_log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_masked_nll_scores_response_tokens_only():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 5, 7)).astype(np.float32)
    targets = rng.integers(0, 7, size=(2, 5))
    weights = np.array([[0, 0, 1, 1, 0], [0, 1, 1, 1, 1]], np.float32)  # prompt and padding carry 0
    logp = logprobs(jnp.asarray(logits), jnp.asarray(targets))
    lsm = np_log_softmax(logits)
    picked = np.take_along_axis(lsm, targets[..., None], -1)[..., 0]
    np.testing.assert_allclose(np.asarray(logp), picked, rtol=1e-6, atol=1e-6)
    expected = -(picked * weights).sum() / weights.sum()
    np.testing.assert_allclose(float(nll(logp, jnp.asarray(weights))), expected, rtol=1e-6)
    # changing a prompt-position logit leaves the loss unchanged
    logits2 = logits.copy()
    logits2[0, 0] += 5.0
    logp2 = logprobs(jnp.asarray(logits2), jnp.asarray(targets))
    assert float(nll(logp2, jnp.asarray(weights))) == pytest.approx(expected, rel=1e-6)
    # an explicit denominator (accumulation over micro-batches) replaces Σw
    np.testing.assert_allclose(float(nll(logp, jnp.asarray(weights), 10.0)), -(picked * weights).sum() / 10)


@pytest.mark.parametrize("t,chunk", [(11, 4), (5, 16)])  # a ragged last chunk; one chunk larger than T
def test_chunked_cross_entropy_equals_naive_with_gradients(t, chunk):
    cfg = tiny(vocab_size=40, hidden_size=8)
    rng = np.random.default_rng(1)
    head = {
        "embed": jnp.asarray(rng.normal(size=(40, 8)).astype(np.float32)),
        "final_norm": jnp.asarray(0.1 * rng.normal(size=8).astype(np.float32)),
    }
    h = jnp.asarray(rng.normal(size=(2, t, 8)).astype(np.float32))
    targets = jnp.asarray(rng.integers(0, 40, size=(2, t)))
    w = jnp.asarray(rng.random((2, t)).astype(np.float32))

    def naive(head, h):
        return jnp.sum(w * losses.target_logprobs(unembed(head, h, cfg), targets))

    def chunked(head, h):
        return jnp.sum(w * losses.chunked_target_logprobs(head, h, targets, config=cfg, chunk=chunk))

    (v1, g1), (v2, g2) = (jax.jit(jax.value_and_grad(f, argnums=(0, 1)))(head, h) for f in (chunked, naive))
    np.testing.assert_allclose(float(v1), float(v2), rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_chunked_cross_entropy_never_builds_full_logits():
    cfg = tiny(vocab_size=64, hidden_size=8)
    head = {"embed": jnp.ones((64, 8)), "final_norm": jnp.zeros(8)}
    h, targets = jnp.ones((2, 32, 8)), jnp.zeros((2, 32), jnp.int32)
    fn = jax.grad(lambda h: jnp.sum(losses.chunked_target_logprobs(head, h, targets, config=cfg, chunk=8)))
    text = jax.jit(fn).lower(h).as_text()
    assert "2x32x64" not in text and "2x8x64" in text  # [B, chunk, V] only


def test_mean_pool_ignores_padding():
    h = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)
    mask = np.array([[1, 1, 0], [0, 1, 1]])
    out = np.asarray(losses.mean_pool(jnp.asarray(h), jnp.asarray(mask)))
    np.testing.assert_allclose(out, [h[0, :2].mean(0), h[1, 1:].mean(0)])


def np_info_nce(p0, p1, tau):
    z0 = p0 / np.linalg.norm(p0, axis=1, keepdims=True)
    z1 = p1 / np.linalg.norm(p1, axis=1, keepdims=True)
    logits = np.array([[z0[j] @ z1[i] / tau for j in range(len(p0))] for i in range(len(p1))])  # [i, j]
    return float(np.mean([-np_log_softmax(logits[i])[i] for i in range(len(p1))])), logits


def test_info_nce_leaves_out_other_pairs_of_the_same_english_sentence():
    """Pairs 0 and 2 share their English sentence (FLORES in two languages): column 2 is not a negative of row 0
    (its logit equals the positive's) nor column 0 of row 2; the other entries stay."""
    p0 = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], np.float32)  # EN_0 == EN_2
    p1 = np.array([[0.9, 0.3, 0.1], [0.2, 1.0, 0.0], [0.8, 0.1, 0.4]], np.float32)
    tau = 0.5
    _, logits = np_info_nce(p0, p1, tau)
    rows = [[0, 1], [0, 1, 2], [1, 2]]  # the columns each anchor's softmax keeps
    expected = np.mean([-np_log_softmax(logits[i, keep])[keep.index(i)] for i, keep in enumerate(rows)])
    source = jnp.asarray([7, 3, 7], jnp.int32)
    got = float(losses.info_nce(jnp.asarray(p0), jnp.asarray(p1), tau=tau, source=source))
    assert got == pytest.approx(expected, rel=1e-5)
    assert got < float(losses.info_nce(jnp.asarray(p0), jnp.asarray(p1), tau=tau))  # the false negatives cost
    assert float(losses.info_nce(jnp.asarray(p0), jnp.asarray(p1), tau=tau, source=jnp.arange(3))) == pytest.approx(
        np_info_nce(p0, p1, tau)[0], rel=1e-5
    )  # distinct sentences: the plain loss


def test_info_nce_direction_and_temperature():
    # p1_0 is close to p0_0 AND to p0_1; p1_1 is close to p0_1 only. Rows (anchors p1_i) therefore differ
    # from columns (anchors p0_j): the asymmetric loss tells the two directions apart.
    p0 = np.array([[1.0, 0.0, 0.0], [0.7, 0.7, 0.0], [0.0, 0.0, 1.0]], np.float32)
    p1 = np.array([[0.9, 0.4, 0.0], [0.0, 1.0, 0.1], [0.1, 0.0, 1.0]], np.float32)
    for tau in (0.1, 0.5):
        expected, logits = np_info_nce(p0, p1, tau)
        got = float(info_nce(jnp.asarray(p0), jnp.asarray(p1), tau=tau))
        assert got == pytest.approx(expected, rel=1e-5)
        swapped, _ = np_info_nce(p1, p0, tau)
        assert abs(swapped - expected) > 1e-3  # the direction matters on these inputs
        sym = float(info_nce(jnp.asarray(p0), jnp.asarray(p1), tau=tau, symmetric=True))
        assert sym == pytest.approx(0.5 * (expected + swapped), rel=1e-5)
    # temperature: a smaller τ sharpens a correct match → lower loss
    assert float(info_nce(jnp.asarray(p0), jnp.asarray(p0), tau=0.05)) < float(
        info_nce(jnp.asarray(p0), jnp.asarray(p0), tau=1.0)
    )
    # scale invariance: cosine similarity
    assert float(info_nce(jnp.asarray(3 * p0), jnp.asarray(p1), tau=0.1)) == pytest.approx(
        np_info_nce(p0, p1, 0.1)[0], rel=1e-5
    )


def test_dpo_value_and_sign():
    pc, pr = np.array([-3.0, -5.0]), np.array([-4.0, -2.0])
    rc, rr = np.array([-3.5, -5.0]), np.array([-3.5, -2.5])
    beta = 0.1
    margin = beta * ((pc - rc) - (pr - rr))
    expected = float(np.mean(-np.log(1 / (1 + np.exp(-margin)))))
    got = float(dpo(*map(jnp.asarray, (pc, pr, rc, rr)), beta=beta))
    assert got == pytest.approx(expected, rel=1e-6)
    # at the reference the loss is log 2; raising the chosen log-prob lowers it, raising the rejected raises it
    assert float(dpo(*map(jnp.asarray, (rc, rr, rc, rr)), beta=beta)) == pytest.approx(np.log(2), rel=1e-6)
    up = float(dpo(*map(jnp.asarray, (rc + 1, rr, rc, rr)), beta=beta))
    down = float(dpo(*map(jnp.asarray, (rc, rr + 1, rc, rr)), beta=beta))
    assert up < np.log(2) < down
    g = jax.grad(lambda c: losses.dpo_loss(c, jnp.asarray(pr), jnp.asarray(rc), jnp.asarray(rr), beta))(jnp.asarray(pc))
    assert np.all(np.asarray(g) < 0)  # gradient descent increases the chosen log-prob


def test_sequence_logprob_and_clo_mix():
    logp = jnp.asarray([[-1.0, -2.0, -3.0], [-0.5, -0.5, -0.5]])
    w = jnp.asarray([[0.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    np.testing.assert_allclose(np.asarray(losses.sequence_logprob(logp, w)), [-5.0, -1.0])
    assert float(losses.clo_loss(jnp.asarray(2.0), jnp.asarray(0.5), lam=0.25)) == pytest.approx(0.25 * 2 + 0.75 * 0.5)
