"""Attention: the only place that picks a kernel.

Three kernels compute the same function. ``"xla"`` is a plain einsum softmax that runs anywhere and
is the parity reference on CPU; ``"cudnn"`` is ``jax.nn.dot_product_attention``'s fused kernel and
``"splash"`` the Pallas TPU splash-attention kernel. Both fused kernels need a *static* window, so
local and global layers are two calls behind a ``lax.cond`` on the per-layer flag that the layer scan
feeds in. ``"auto"`` picks cuDNN on a GPU for 16-bit inputs and splash on a single TPU device.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from jaxsteer.config import GemmaConfig
from jaxsteer.errors import ConfigError

_NEG = -1e30  # finite so that a fully masked (padding) query row stays NaN-free
IMPLS = ("auto", "xla", "cudnn", "splash")


def splash_module():
    """The Pallas splash-attention kernel and mask modules, or None where the installed jax lacks them."""
    try:
        from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel, splash_attention_mask
    except ImportError:
        return None
    return splash_attention_kernel, splash_attention_mask


def resolve_impl(impl: str, dtype) -> str:
    """The kernel that ``impl`` names; ``"auto"`` follows the default backend.

    On TPU, ``"auto"`` takes splash only when the process sees one device: a Pallas call has no
    partitioning rule, so under a multi-device mesh XLA would gather the whole batch onto every
    device; there the partitionable ``"xla"`` path is used unless ``"splash"`` is asked for.
    """
    if impl not in IMPLS:
        raise ConfigError(f"attention implementation {impl!r}: expected one of {', '.join(IMPLS)}")
    if impl != "auto":
        return impl
    backend = jax.default_backend()
    if backend == "gpu" and jnp.dtype(dtype) in (jnp.bfloat16, jnp.float16):
        return "cudnn"
    if backend == "tpu" and jax.device_count() == 1 and splash_module() is not None:
        return "splash"
    return "xla"


def causal_mask(
    t: int, key_valid: Bool[Array, "B S"] | None, window: int | None, queries: Int[Array, "B J"] | None = None
) -> Bool[Array, "#B Q T"]:
    """Query i sees key j iff j ≤ i, the key is not padding and (for a window W) i − W < j (``[1, T, T]``
    without ``key_valid``). ``queries``: only the rows of those query positions (``[B, J, T]``)."""
    i = jnp.arange(t)[None, :, None] if queries is None else queries[:, :, None]
    j = jnp.arange(t)[None, None, :]
    mask = j <= i
    if window is not None:
        mask &= (i - j) < window
    if key_valid is not None:
        mask = mask & key_valid[:, None, :]
    return mask


def query_attention(
    q: Float[Array, "B J H Dh"],
    k: Float[Array, "B T K Dh"],
    v: Float[Array, "B T K Dh"],
    queries: Int[Array, "B J"],
    *,
    is_global,
    key_valid: Bool[Array, "B T"] | None,
    config: GemmaConfig,
) -> Float[Array, "B J H Dh"]:
    """Causal attention of ``J`` query positions (array indices ``queries``) over the whole sequence: the rows
    of :func:`self_attention` at those positions."""
    t = k.shape[1]
    full = causal_mask(t, key_valid, None, queries)
    local = causal_mask(t, key_valid, config.sliding_window, queries)
    return _softmax_attend(q, k, v, jnp.where(is_global, full, local), config.attn_scale)


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
    if impl == "splash":
        return _splash_attention(q, k, v, is_global=is_global, key_valid=key_valid, config=config)
    full = causal_mask(t, key_valid, None)
    local = causal_mask(t, key_valid, window) if window < t else full
    return _softmax_attend(q, k, v, jnp.where(is_global, full, local), config.attn_scale)


_LANES = 128  # splash's kv blocks are multiples of the TPU lane width


def splash_blocks(t: int) -> tuple[int, int]:
    """``(padded length, block size)``: ``t`` rounded up to the lane width, tiled by the largest of
    512/256/128 that divides it (bigger tiles, fewer grid steps; no padding beyond the lane width)."""
    padded = -(-t // _LANES) * _LANES
    block = next(b for b in (512, 256, _LANES) if padded % b == 0)
    return padded, block


def splash_segments(key_valid: Bool[Array, "B T"], padded: int) -> Int[Array, "B Tp"]:
    """Segment ids standing in for the padding mask (splash has no mask argument): real tokens are
    segment 1, padding and the tail added up to ``padded`` segment 0. A padding query still sees
    itself (same segment, on the causal diagonal), so its softmax row is never empty and stays
    finite; its output is discarded by the caller."""
    seg = key_valid.astype(jnp.int32)
    return jnp.pad(seg, ((0, 0), (0, padded - seg.shape[1])))


@functools.lru_cache(maxsize=16)
def _splash_kernel(padded: int, block: int, heads: int, window: int | None, interpret: bool):
    """One per-example kernel ``[H, Tp, Dh] × [K, Tp, Dh]² → [H, Tp, Dh]`` (built once per shape: the
    mask's block structure is worked out in numpy)."""
    kernel_lib, mask_lib = splash_module()
    shape = (padded, padded)
    # LocalMask(window=(W-1, 0)) keeps i - (W-1) ≤ j ≤ i, i.e. the model's i − W < j ≤ i
    one = mask_lib.CausalMask(shape) if window is None else mask_lib.LocalMask(shape, (window - 1, 0), 0)
    sizes = kernel_lib.BlockSizes(
        block_q=block,
        block_kv=block,
        block_kv_compute=block,
        block_q_dkv=block,
        block_kv_dkv=block,
        block_kv_dkv_compute=block,
        block_q_dq=block,
        block_kv_dq=block,
    )
    extra = {"interpret": True} if interpret else {}  # only off TPU; older kernels lack the argument
    mask = mask_lib.MultiHeadMask([one] * heads)
    with jax.ensure_compile_time_eval():  # the cached mask tables are constants, never one trace's tracers
        return kernel_lib.make_splash_mha(mask, block_sizes=sizes, head_shards=1, q_seq_shards=1, **extra)


def _splash_attention(
    q: Float[Array, "B T H Dh"],
    k: Float[Array, "B T K Dh"],
    v: Float[Array, "B T K Dh"],
    *,
    is_global,
    key_valid: Bool[Array, "B T"] | None,
    config: GemmaConfig,
) -> Float[Array, "B T H Dh"]:
    """Splash attention: heads-major layout, ``T`` padded to whole blocks, the scale folded into ``q``.

    Grouped-query heads need no copy: the MHA kernel maps query head h to key head h // (H/K), the
    grouping ``_softmax_attend`` uses. Padded tail positions come after every real query, so the
    causal mask already hides them. Off TPU the kernel runs in Pallas interpret mode (tests only).
    """
    if splash_module() is None:
        raise ConfigError(f"attention implementation 'splash': jax {jax.__version__} has no Pallas splash kernel")
    _, t, h, _ = q.shape
    padded, block = splash_blocks(t)
    interpret = jax.default_backend() != "tpu"

    def heads_major(x):
        return jnp.pad(x.transpose(0, 2, 1, 3), ((0, 0), (0, 0), (0, padded - t), (0, 0)))

    qh = heads_major((q * config.attn_scale).astype(q.dtype))
    kh, vh = heads_major(k), heads_major(v)
    segments = None if key_valid is None else splash_segments(key_valid, padded)
    kernel_lib, _ = splash_module()

    def call(window):
        kernel = _splash_kernel(padded, block, h, window, interpret)
        if segments is None:
            return jax.vmap(kernel)(qh, kh, vh)
        ids = kernel_lib.SegmentIds(q=segments, kv=segments)
        return jax.vmap(lambda qe, ke, ve, ids_e: kernel(qe, ke, ve, segment_ids=ids_e))(qh, kh, vh, ids)

    window = config.sliding_window
    out = call(None) if window >= t else jax.lax.cond(is_global, lambda: call(None), lambda: call(window))
    return out[:, :, :t].transpose(0, 2, 1, 3)


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


def cache_attention(
    q: Float[Array, "B 1 H Dh"],
    k_cache: Float[Array, "B K S Dh"],
    v_cache: Float[Array, "B K S Dh"],
    visible: Bool[Array, "B S"],
    scale: float,
) -> Float[Array, "B 1 H Dh"]:
    """One decode step over a cache that already holds the new token's key and value (the unrolled step
    writes first: the write is then the cache's last use and XLA updates it in place). Not
    ``_softmax_attend`` with a cache layout: its ``t`` axis in the einsums made the CPU step 1.7× slower."""
    b, _, h, dh = q.shape
    kv = k_cache.shape[1]
    qg = q.reshape(b, kv, h // kv, dh)
    scores = jnp.einsum("bkgd,bksd->bkgs", qg, k_cache, preferred_element_type=jnp.float32) * scale
    scores = jnp.where(visible[:, None, None, :], scores, _NEG)
    p = jax.nn.softmax(scores, axis=-1)
    out = jnp.einsum("bkgs,bksd->bkgd", p.astype(v_cache.dtype), v_cache, preferred_element_type=jnp.float32)
    return out.astype(q.dtype).reshape(b, 1, h, dh)
