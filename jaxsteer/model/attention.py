"""Attention: the only place that picks a kernel.

Two kernels compute the same function. ``"xla"`` is a plain einsum softmax that runs anywhere and is
the parity reference on CPU; ``"cudnn"`` is ``jax.nn.dot_product_attention``'s fused kernel, which
needs a *static* window, so local and global layers are two calls behind a ``lax.cond`` on the
per-layer flag that the layer scan feeds in. ``"auto"`` picks cuDNN on a GPU for 16-bit inputs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from jaxsteer.config import GemmaConfig

_NEG = -1e30  # finite so that a fully masked (padding) query row stays NaN-free


def resolve_impl(impl: str, dtype) -> str:
    if impl not in ("auto", "xla", "cudnn"):
        raise ValueError(f"attention implementation {impl!r}: expected auto, xla or cudnn")
    if impl != "auto":
        return impl
    on_gpu = jax.default_backend() == "gpu"
    return "cudnn" if on_gpu and jnp.dtype(dtype) in (jnp.bfloat16, jnp.float16) else "xla"


def causal_mask(t: int, key_valid: Bool[Array, "B S"] | None, window: int | None) -> Bool[Array, "#B T T"]:
    """Query i sees key j iff j ≤ i, the key is not padding and (for a window W) i − W < j (``[1, T, T]``
    without ``key_valid``)."""
    i = jnp.arange(t)[:, None]
    j = jnp.arange(t)[None, :]
    mask = j <= i
    if window is not None:
        mask &= (i - j) < window
    mask = mask[None]
    if key_valid is not None:
        mask = mask & key_valid[:, None, :]
    return mask


def _softmax_attend(
    q: Float[Array, "B T H Dh"],
    k: Float[Array, "B S K Dh"],
    v: Float[Array, "B S K Dh"],
    mask: Bool[Array, "#B T S"],
    scale: float,
) -> Float[Array, "B T H Dh"]:
    b, t, h, dh = q.shape
    kv = k.shape[2]
    qg = q.reshape(b, t, kv, h // kv, dh)
    scores = jnp.einsum("btkgd,bskd->bkgts", qg, k, preferred_element_type=jnp.float32) * scale
    scores = jnp.where(mask[:, None, None], scores, _NEG)
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    out = jnp.einsum("bkgts,bskd->btkgd", probs, v)
    return out.reshape(b, t, h, dh)


def self_attention(
    q: Float[Array, "B T H Dh"],
    k: Float[Array, "B T K Dh"],
    v: Float[Array, "B T K Dh"],
    *,
    is_global,
    key_valid: Bool[Array, "B T"] | None,
    config: GemmaConfig,
    impl: str,
) -> Float[Array, "B T H Dh"]:
    """Causal self-attention over one sequence; ``is_global`` may be a traced per-layer flag."""
    t = q.shape[1]
    window = config.sliding_window
    if impl == "cudnn":
        mask = None if key_valid is None else jnp.broadcast_to(key_valid[:, None, None, :], (q.shape[0], 1, t, t))

        def call(local_window):
            return jax.nn.dot_product_attention(
                q,
                k,
                v,
                mask=mask,
                scale=config.attn_scale,
                is_causal=True,
                local_window_size=local_window,
                implementation="cudnn",
            )

        if window >= t:  # the window cannot bite: one kernel for every layer
            return call(None)
        return jax.lax.cond(is_global, lambda: call(None), lambda: call((window - 1, 0)))
    full = causal_mask(t, key_valid, None)
    local = causal_mask(t, key_valid, window) if window < t else full
    return _softmax_attend(q, k, v, jnp.where(is_global, full, local), config.attn_scale)


def cached_attention(
    q: Float[Array, "B 1 H Dh"],
    k_self: Float[Array, "B 1 K Dh"],
    v_self: Float[Array, "B 1 K Dh"],
    k_cache: Float[Array, "B K S Dh"],
    v_cache: Float[Array, "B K S Dh"],
    cache_visible: Bool[Array, "B S"],
    scale: float,
) -> Float[Array, "B 1 H Dh"]:
    """One decode step: the new token attends to the visible cache slots and to itself.

    The new key is scored apart from the cache and the two softmax parts are joined by their shared
    maximum, so the layer scan only *reads* the cache (no concatenated copy per step) and the loop
    writes all layers' new entries with one in-place update.
    """
    b, _, h, dh = q.shape
    kv = k_cache.shape[1]
    qg = q.reshape(b, kv, h // kv, dh)
    # the cache is [B, K, S, Dh] so that both products are batched matmuls without a transpose
    s_cache = jnp.einsum("bkgd,bksd->bkgs", qg, k_cache, preferred_element_type=jnp.float32) * scale
    s_cache = jnp.where(cache_visible[:, None, None, :], s_cache, _NEG)
    s_self = jnp.einsum("bkgd,bkd->bkg", qg, k_self[:, 0].astype(qg.dtype), preferred_element_type=jnp.float32)
    s_self = s_self * scale
    top = jnp.maximum(jnp.max(s_cache, axis=-1), s_self)
    p_cache = jnp.exp(s_cache - top[..., None])
    p_self = jnp.exp(s_self - top)
    denom = jnp.sum(p_cache, axis=-1) + p_self
    mixed = jnp.einsum("bkgs,bksd->bkgd", p_cache.astype(v_cache.dtype), v_cache, preferred_element_type=jnp.float32)
    mixed = mixed + p_self[..., None] * v_self[:, 0, :, None, :].astype(jnp.float32)
    out = (mixed / denom[..., None]).astype(q.dtype)
    return out.reshape(b, 1, h, dh)
