"""The fused cross-entropy (custom VJP): values and gradients equal plain autodiff; no head recompute.

References are the materialised ``[B, T, V]`` log-softmax (tiny shapes) and the chunked ``jax.checkpoint``
version (``train.ce_impl: chunked``). The structural test counts the matmuls that produce ``[.., V]``
logits in the jaxpr of the gradient: one for the fused version, two for the chunked one (its recompute).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend import core as jcore

from jaxsteer.cla import fused_ce, losses
from jaxsteer.cla.config import StepSpec
from jaxsteer.config import tiny
from jaxsteer.model.transformer import init_params, unembed

ROOT = Path(__file__).resolve().parents[1]


def naive_sums(x, embed, targets, weights):
    """``Σ W·log p`` from the full logits, in plain autodiff."""
    logp = losses.target_logprobs(jnp.einsum("btd,vd->btv", x, embed), targets)
    return jnp.einsum("kbt,bt->k", weights, logp)


def channels(kind, w, rng):
    """``[K, B, T]`` weights: one NLL channel, one per row (DPO's sequence log-probs), or CLO's rows + NLL."""
    if kind == "nll":
        return w[None]
    rows = fused_ce.row_weights(w)
    if kind == "rows":
        return rows
    return jnp.concatenate([rows, (w * jnp.asarray(rng.random(w.shape[0]) < 0.5, w.dtype)[:, None])[None]])


def problem(b, t, d, v, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(b, t, d)).astype(np.float32))
    embed = jnp.asarray(rng.normal(size=(v, d)).astype(np.float32))
    targets = jnp.asarray(rng.integers(0, v, size=(b, t)).astype(np.int32))
    w = (rng.random((b, t)) < 0.7).astype(np.float32) * rng.random((b, t)).astype(np.float32)
    w[0, -3:] = 0.0  # padding at the end of a row
    return x, embed, targets, jnp.asarray(w), rng


@pytest.mark.parametrize("kind", ["nll", "rows", "clo"])
@pytest.mark.parametrize("t,v,chunk", [(11, 37, 4), (5, 40, 16), (8, 33, 8)])  # ragged last chunk; C > T; C = T
@pytest.mark.parametrize("argnums", [(0, 1, 3), (0,)], ids=["head-trains", "head-frozen"])
def test_values_and_gradients_equal_plain_autodiff(kind, t, v, chunk, argnums):
    x, embed, targets, w, rng = problem(3, t, 8, v)
    weights = channels(kind, w, rng)
    c = jnp.asarray(rng.normal(size=weights.shape[0]).astype(np.float32))  # an arbitrary output cotangent

    def fused(x, embed, targets, weights):
        return c @ fused_ce.weighted_logprobs(x, embed, targets, weights, chunk=chunk)

    def naive(x, embed, targets, weights):
        return c @ naive_sums(x, embed, targets, weights)

    (v1, g1), (v2, g2) = (jax.jit(jax.value_and_grad(f, argnums))(x, embed, targets, weights) for f in (fused, naive))
    np.testing.assert_allclose(float(v1), float(v2), rtol=1e-6, atol=1e-6)
    for a, b in zip(g1, g2):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    # the primal (no gradient: CLO's reference log-probs) is the same function
    sums = jax.jit(fused_ce.weighted_logprobs, static_argnames=("chunk",))(x, embed, targets, weights, chunk=chunk)
    np.testing.assert_allclose(np.asarray(sums), np.asarray(naive_sums(x, embed, targets, weights)), rtol=1e-6)


def test_padding_gets_no_gradient_and_dtypes_follow_the_inputs():
    x, embed, targets, w, _ = problem(2, 9, 8, 21)

    def loss(x, embed, targets):
        return fused_ce.weighted_logprobs(x, embed, targets, w[None], chunk=4, dtype=jnp.bfloat16)[0]

    grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
    dx, de = grad(x, embed, targets)
    assert dx.dtype == de.dtype == jnp.float32  # fp32 masters in, fp32 gradients out (bf16 only in the matmuls)
    np.testing.assert_array_equal(np.asarray(dx)[np.asarray(w) == 0], 0.0)
    # a padded position's target changes nothing
    t2 = targets.at[0, -1].set((targets[0, -1] + 1) % 21)
    for a, b in zip((dx, de), grad(x, embed, t2)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # bf16 matmul inputs with fp32 accumulation stay close to the fp32 gradient
    ref = jax.grad(lambda x, e: naive_sums(x, e, targets, w[None])[0], argnums=(0, 1))(x, embed)
    for a, b in zip((dx, de), ref):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0.05, atol=0.05 * float(jnp.max(jnp.abs(b))))


# --- the structure: no second logits matmul in the backward ---------------------------------------------
def dot_outputs(jaxpr) -> list[tuple[int, ...]]:
    """Output shapes of every ``dot_general`` in a jaxpr, sub-jaxprs (scan, custom_vjp, remat) included."""
    out = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            out.append(tuple(eqn.outvars[0].aval.shape))
        for p in eqn.params.values():
            for sub in p if isinstance(p, (list, tuple)) else [p]:
                if isinstance(sub, jcore.ClosedJaxpr):
                    out += dot_outputs(sub.jaxpr)
                elif isinstance(sub, jcore.Jaxpr):
                    out += dot_outputs(sub)
    return out


def logits_matmuls(fn, *args, b, chunk, v) -> int:
    """How many matmuls produce a ``[B, chunk, V]`` block in the jaxpr of ``fn``."""
    return dot_outputs(jax.make_jaxpr(fn)(*args).jaxpr).count((b, chunk, v))


def test_backward_has_no_second_logits_matmul():
    x, embed, targets, w, rng = problem(2, 12, 8, 37)
    n = {"b": 2, "chunk": 4, "v": 37}

    def fused(x, embed, weights):
        return jnp.sum(fused_ce.weighted_logprobs(x, embed, targets, weights, chunk=4))

    def chunked(x, embed, weights):
        head = {"embed": embed, "final_norm": jnp.zeros(8)}
        logp = losses.chunked_target_logprobs(head, x, targets, config=tiny(hidden_size=8), chunk=4)
        return jnp.sum(jnp.einsum("kbt,bt->k", weights, logp))

    nll, clo = w[None], channels("clo", w, rng)
    assert logits_matmuls(jax.grad(chunked, (0, 1)), x, embed, nll, **n) == 2  # the detector sees the recompute
    assert logits_matmuls(jax.grad(fused, (0, 1)), x, embed, nll, **n) == 1
    assert logits_matmuls(jax.grad(fused, 0), x, embed, clo, **n) == 1  # frozen head: any number of channels
    # per-row channels with a trainable head need the margin before G: the one documented recompute
    assert logits_matmuls(jax.grad(fused, (0, 1)), x, embed, clo, **n) == 2
    # FLOPs: every matmul touching V is a 2·D·V-per-token unit — 3 fused (logits, A, G) vs 4 chunked
    dots = dot_outputs(jax.make_jaxpr(jax.grad(fused, (0, 1)))(x, embed, nll).jaxpr)
    assert sorted(s for s in dots if 37 in s or s == (2, 4, 8)) == [(2, 4, 8), (2, 4, 37), (37, 8)]  # A, z, G


# --- end to end through the trainer's objectives --------------------------------------------------------
CFG = tiny(num_layers=2, vocab_size=61)  # an odd vocabulary: nothing is a multiple of the chunk


def spec(ce_impl, chunk=5):
    return StepSpec(config=CFG, compute_dtype="float32", remat="nothing_saveable", chunk=chunk, ce_impl=ce_impl)


def micro_batch(rows=4, t=13, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, CFG.vocab_size, size=(rows, t)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, 9:] = 0  # right padding
    w = (rng.random(ids.shape) < 0.8).astype(np.float32) * mask
    w[:, -1] = 0.0
    mb = {"ids": ids, "mask": mask, "targets": np.roll(ids, -1, -1), "weights": w}
    mb.update(index=np.arange(rows // 2, dtype=np.int32), nll=np.asarray([1.0, 0.0], np.float32)[: rows // 2])
    return {k: jnp.asarray(v) for k, v in mb.items()}


def naive_objective(kind):
    """The objective with the head as full ``[B, T, V]`` logits (``unembed``), in plain autodiff."""

    def fn(tree, mb, den, spec, key, constrain, ref=None):
        from jaxsteer.cla.lora import forward_hidden, head

        h = forward_hidden(tree, mb["ids"], mb.get("mask"), spec, key=key, constrain=constrain)
        logp = losses.target_logprobs(unembed(head(tree, spec), h, spec.config), mb["targets"])
        if kind == "task":
            return losses.masked_nll(logp, mb["weights"], den["tokens"]), {}
        m = logp.shape[0] // 2
        seq = losses.sequence_logprob(logp, mb["weights"])
        dpo = jnp.sum(losses.dpo_terms(seq[:m], seq[m:], ref[:, 0], ref[:, 1], spec.beta)) / den["pairs"]
        nll = losses.masked_nll(logp[:m], mb["weights"][:m] * mb["nll"][:, None], den["nll_tokens"])
        return losses.clo_loss(nll, dpo, spec.lam), {}

    return fn


@pytest.mark.parametrize("kind,trainable", [("task", "full"), ("clo", "full"), ("clo", "attention")])
def test_objective_gradients_match_plain_autodiff(kind, trainable):
    tree = {"base": init_params(CFG, jax.random.PRNGKey(0), jnp.float32, norm_std=0.1), "lora": {}}
    mb = micro_batch()
    den = losses.denominators(kind, jax.tree.map(lambda a: a[None], mb))
    ref = jnp.asarray([[-60.0, -62.0], [-58.0, -57.0]], jnp.float32)

    def is_train(path):
        return trainable == "full" or any(
            getattr(k, "key", None) in ("q_proj", "k_proj", "v_proj", "o_proj") for k in path
        )

    train = jax.tree_util.tree_map_with_path(lambda p, a: a if is_train(p) else None, tree)
    frozen = jax.tree_util.tree_map_with_path(lambda p, a: None if is_train(p) else a, tree)

    def loss_of(objective, s):
        def loss(t):
            full = jax.tree.map(lambda a, b: b if a is None else a, t, frozen, is_leaf=lambda a: a is None)
            return objective(full, mb, den, s, None, lambda h: h, ref)[0]

        return loss

    v0, g0 = jax.jit(jax.value_and_grad(loss_of(naive_objective(kind), spec("chunked"))))(train)
    for impl in ("fused", "chunked"):
        v, g = jax.jit(jax.value_and_grad(loss_of(losses.OBJECTIVES[kind], spec(impl))))(train)
        np.testing.assert_allclose(float(v), float(v0), rtol=1e-6)
        for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g0)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=1e-6)
    # the trainer's loss: one logits matmul per chunk with the fused head (two for CLO with a trainable
    # embedding, the documented recompute), two with the chunked one
    n = {"b": 4, "chunk": 5, "v": CFG.vocab_size}
    for impl, expected in (("fused", 1 if kind == "task" or trainable == "attention" else 2), ("chunked", 2)):
        assert logits_matmuls(jax.grad(loss_of(losses.OBJECTIVES[kind], spec(impl))), train, **n) == expected, impl


def test_reference_logprobs_match_between_implementations():
    tree = {"base": init_params(CFG, jax.random.PRNGKey(1), jnp.float32), "lora": {}}
    mb = micro_batch(seed=2)
    a, b = (np.asarray(losses.reference_fn(spec(impl))(tree, mb)) for impl in ("fused", "chunked"))
    assert a.shape == (4,)
    np.testing.assert_allclose(a, b, rtol=1e-6)


# --- under a mesh: the head sharded over fsdp along vocab rows ----------------------------------------
SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P
    import jaxsteer.sharding as M
    from jaxsteer.cla import fused_ce

    rng = np.random.default_rng(0)
    b, t, d, v = 8, 10, 16, 64
    x = rng.normal(size=(b, t, d)).astype(np.float32)
    embed = rng.normal(size=(v, d)).astype(np.float32)
    targets = rng.integers(0, v, size=(b, t)).astype(np.int32)
    w = (rng.random((b, t)) < 0.7).astype(np.float32)
    rows = np.concatenate([np.asarray(fused_ce.row_weights(jnp.asarray(w))), w[None]])

    def run(mesh, weights):
        def loss(x, e):
            s = fused_ce.weighted_logprobs(x, e, targets, weights, chunk=4, dtype=jnp.bfloat16)
            return jnp.sum(jnp.arange(1, s.shape[0] + 1) * s)

        put = lambda a, spec: jax.device_put(a, NamedSharding(mesh, spec))
        args = put(x, P(M.BATCH)), put(embed, P("fsdp"))
        val, (dx, de) = jax.jit(jax.value_and_grad(loss, (0, 1)))(*args)
        return float(val), np.asarray(dx), np.asarray(de)

    assert jax.device_count() == 8
    for weights in (w[None], rows):
        one = run(M.make_mesh(M.MeshSpec(), jax.devices()[:1]), weights)
        many = run(M.make_mesh(M.MeshSpec(data=2, fsdp=4)), weights)
        np.testing.assert_allclose(many[0], one[0], rtol=1e-5)
        for a, c in zip(many[1:], one[1:]):
            np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-4)
    print("OK")
    """
)


def test_sharded_head_equals_single_device():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-3000:]


def test_the_switch_is_validated_and_keeps_the_run_hash():
    from jaxsteer.cla import config as C
    from jaxsteer.errors import ConfigError

    fused, chunked = (C.load(None, {"train": {"ce_impl": impl}}) for impl in ("fused", "chunked"))
    assert C.StepSpec.from_config(chunked, tiny()).ce_impl == "chunked"
    assert fused.config_hash() == chunked.config_hash()  # the same loss: a run resumes across the switch
    with pytest.raises(ConfigError, match=r"train.ce_impl='naive'; expected one of fused, chunked"):
        C.load(None, {"train": {"ce_impl": "naive"}})
