"""Fused cross-entropy: weighted sums of target log-probs whose gradients come out of the forward pass.

For normed activations ``x [B, T, D]``, the tied head ``E [V, D]`` and logits ``z = x·Eᵀ``, every loss of
:mod:`jaxsteer.cla.losses` that touches the head is a weighted sum of ``log p[b, t] = z[target] − lse(z)``::

    S[k] = Σ_{b,t} W[k, b, t] · log p[b, t]         (K channels: K = 1 for the NLL, one per row for DPO)

and ``∂ log p / ∂ z = onehot(target) − softmax(z)`` is known as soon as the logits are. So one pass over
chunks of ``C`` positions computes, per chunk, the logits (one ``[B, C, V]`` fp32 block), ``log p``, and
from ``r = onehot − softmax``:

* ``A = r·E`` ``[B, C, D]`` — ``∂ log p[b, t] / ∂ x[b, t]``, exact for *any* per-token cotangent ``g``:
  the backward pass returns ``dx = g·A`` with ``g[b, t] = Σ_k c[k]·W[k, b, t]`` (``c``: the output cotangent);
* ``G = Σ_{b,t} W[0, b, t]·r[b, t]ᵀ x[b, t]`` ``[V, D]`` — the head gradient up to the scalar ``c[0]``, so
  only for ``K = 1`` (a ``[V, D]`` accumulator per channel would not fit for per-row channels at 262k × D).

The backward pass then only scales residuals: no second logits matmul. FLOPs per token with ``2·D·V`` the
logits matmul: ``3 × 2DV`` (logits, ``A``, ``G``) against ``4 × 2DV`` for the chunked ``jax.checkpoint``
version (logits, their recompute in the backward, and the two gradient matmuls); ``2 × 2DV`` when ``E`` is
frozen (LoRA, CLO's attention-only training) against 3. Which residuals to build is decided from the
``perturbed`` bits of ``custom_vjp``'s symbolic zeros: a frozen ``E`` never gets an accumulator.

One case cannot be fused: ``K > 1`` with a trainable ``E`` (DPO over a fully trained model). The cotangent
of row ``b``'s sequence log-prob depends on the DPO margin, known only after every chunk, so ``G`` would
be needed per row. There the backward recomputes the logits chunk by chunk with the cotangent known
(``4 × 2DV``, as the chunked version) — exact, just not faster.

Precision: matmul inputs in ``dtype`` (bf16 in training) with fp32 accumulation
(``preferred_element_type``); logits, log-sum-exp, softmax and ``r`` in fp32; ``A`` and ``G`` kept in fp32
and cast to the input dtypes only when returned. At most one chunk's ``[B, C, V]`` exists at a time: the
chunks are a ``lax.scan``, over positions with the batch axis intact, so a batch-sharded ``x`` keeps its
sharding and a vocab-sharded ``E`` is partitioned by XLA as in the plain head.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int


def _chunks(a: Array, chunk: int, pad: int) -> Array:
    """``[B, T, ...]`` → ``[n, B, C, ...]`` (zero-padded to ``n·C`` positions; the batch axis stays whole)."""
    if pad:
        a = jnp.pad(a, [(0, 0), (0, pad)] + [(0, 0)] * (a.ndim - 2))
    b, t = a.shape[:2]
    return a.reshape(b, t // chunk, chunk, *a.shape[2:]).swapaxes(0, 1)


def _unchunk(a: Array, t: int) -> Array:
    """Inverse of :func:`_chunks`: ``[n, B, C, ...]`` → ``[B, T, ...]``."""
    n, b, c = a.shape[:3]
    return a.swapaxes(0, 1).reshape(b, n * c, *a.shape[3:])[:, :t]


def head_pass(
    x: Float[Array, "B T D"],
    embed: Float[Array, "V D"],
    targets: Int[Array, "B T"],
    weights: Float[Array, "B T"] | None,
    *,
    chunk: int,
    dtype: Any,
    want_dx: bool,
    want_de: bool,
) -> tuple[Float[Array, "B T"], Float[Array, "B T D"] | None, Float[Array, "V D"] | None]:
    """One scan over position chunks: ``(log p, A = ∂log p/∂x, G = Σ w·rᵀx)`` (the last two on request).

    Padded positions get weight 0 and are sliced off, so ``T`` need not be a multiple of ``chunk``.
    """
    b, t, d = x.shape
    v = embed.shape[0]
    c = min(chunk, t)
    pad = -t % c
    dtype = jnp.dtype(dtype)
    e = embed.astype(dtype)  # once, outside the loop
    xs = _chunks(x, c, pad)  # in its own dtype: the weighted copy below is rounded once
    ts = _chunks(targets, c, pad)
    ws = _chunks(weights.astype(jnp.float32), c, pad) if want_de else None  # None: no scanned leaf

    def body(g, xs_):
        xc, tc, wc = xs_
        z = jnp.einsum("bcd,vd->bcv", xc.astype(dtype), e, preferred_element_type=jnp.float32)
        lse = jax.nn.logsumexp(z, axis=-1)
        logp = jnp.take_along_axis(z, tc[..., None], axis=-1)[..., 0] - lse
        a = None
        if want_dx or want_de:
            # ∂ log p / ∂ z in fp32, fused by XLA into its cast: one [B, C, V] block read by both matmuls
            r = (jnp.arange(v)[None, None, :] == tc[..., None]).astype(jnp.float32) - jnp.exp(z - lse[..., None])
            r = r.astype(dtype)
            if want_dx:
                a = jnp.einsum("bcv,vd->bcd", r, e, preferred_element_type=jnp.float32)
            if want_de:  # Σ w·rᵀx with the weight on the [B, C, D] side: no second [B, C, V] block
                xw = (wc[..., None] * xc.astype(jnp.float32)).astype(dtype)
                g = g + jnp.einsum("bcv,bcd->vd", r, xw, preferred_element_type=jnp.float32)
        return g, (logp, a)

    g0 = jnp.zeros((v, d), jnp.float32) if want_de else None
    g, (logp, a) = jax.lax.scan(body, g0, (xs, ts, ws))
    return _unchunk(logp, t), (None if a is None else _unchunk(a, t)), g


def _sums(weights: Float[Array, "K B T"], logp: Float[Array, "B T"]) -> Float[Array, "K"]:
    return jnp.einsum("kbt,bt->k", weights.astype(jnp.float32), logp)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _weighted(x, embed, targets, weights, chunk, dtypes):
    logp, _, _ = head_pass(x, embed, targets, None, chunk=chunk, dtype=dtypes[0], want_dx=False, want_de=False)
    return _sums(weights, logp)


def _weighted_fwd(x, embed, targets, weights, chunk, dtypes):
    # symbolic_zeros: every array argument arrives as CustomVJPPrimal(value, perturbed)
    want_dx, want_de = x.perturbed, embed.perturbed
    x, embed, targets, weights = x.value, embed.value, targets.value, weights.value
    fused_de = want_de and weights.shape[0] == 1
    w = weights[0] if fused_de else None
    logp, a, g = head_pass(x, embed, targets, w, chunk=chunk, dtype=dtypes[0], want_dx=want_dx, want_de=fused_de)
    recompute = (x, embed, targets) if want_de and not fused_de else None
    return _sums(weights, logp), (logp, a, g, weights, recompute)


def _weighted_bwd(chunk, dtypes, res, cot):
    logp, a, g, weights, recompute = res
    cot = jnp.asarray(cot, jnp.float32)
    per_token = jnp.einsum("k,kbt->bt", cot, weights.astype(jnp.float32))  # ∂L/∂log p[b, t]
    dx = None if a is None else (per_token[..., None] * a).astype(dtypes[1])
    de = None if g is None else (cot[0] * g).astype(dtypes[2])
    if recompute is not None:  # K > 1 with a trainable head: the per-token cotangent is the chunk weight now
        x, embed, targets = recompute
        _, _, g = head_pass(x, embed, targets, per_token, chunk=chunk, dtype=dtypes[0], want_dx=False, want_de=True)
        de = g.astype(dtypes[2])
    dw = (cot[:, None, None] * logp[None]).astype(weights.dtype)  # ∂S[k]/∂W[k, b, t] = log p[b, t]
    return dx, de, None, dw


_weighted.defvjp(_weighted_fwd, _weighted_bwd, symbolic_zeros=True)


def weighted_logprobs(
    x: Float[Array, "B T D"],
    embed: Float[Array, "V D"],
    targets: Int[Array, "B T"],
    weights: Float[Array, "K B T"],
    *,
    chunk: int,
    dtype: Any = None,
) -> Float[Array, "K"]:
    """``S[k] = Σ_{b,t} W[k,b,t] · log softmax(x[b,t]·Eᵀ)[targets[b,t]]`` with fused head gradients.

    ``x`` are the *normed* activations (the final RMSNorm stays outside, in plain autodiff); ``embed`` is
    the tied head ``[V, D]`` in any dtype (its gradient, in that dtype, adds to the embedding lookup's
    gradient by ordinary autodiff); ``dtype`` is the matmul input dtype (default ``embed.dtype``).
    Gradients w.r.t. ``x``, ``embed`` and ``weights`` are exact; see the module docstring for the cost.
    """
    # strings: custom_vjp's static arguments must be hashable non-array values
    dtypes = tuple(jnp.dtype(d).name for d in (embed.dtype if dtype is None else dtype, x.dtype, embed.dtype))
    return _weighted(x, embed, targets, weights, chunk, dtypes)


def row_weights(weights: Float[Array, "B T"]) -> Float[Array, "B B T"]:
    """One channel per row: ``S[b] = Σ_t weights[b, t]·log p[b, t]`` (the sequence log-probs)."""
    return jnp.eye(weights.shape[0], dtype=weights.dtype)[:, :, None] * weights[None]
