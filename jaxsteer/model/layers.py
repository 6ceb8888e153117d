"""The small pieces of a Gemma-3 block: RMSNorm, rotary embeddings, the gated MLP.

Numerics follow the reference implementation: norms and rotary tables in fp32, weights stored
zero-centred (the norm multiplies by ``1 + w``), tanh-approximate GELU.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from jaxsteer.config import GemmaConfig


def rms_norm(x: Float[Array, "... D"], weight: Float[Array, "D"], eps: float) -> Float[Array, "... D"]:
    """``x · rsqrt(mean(x²) + eps) · (1 + w)`` in fp32, whatever the input dtype."""
    x = x.astype(jnp.float32)
    normed = x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps)
    return normed * (1.0 + weight.astype(jnp.float32))


def inv_frequencies(head_dim: int, base: float, scaling: float = 1.0) -> Float[np.ndarray, " R"]:
    """Rotary inverse frequencies in fp32 as transformers computes them (linear scaling divides them)."""
    exponents = np.arange(0, head_dim, 2, dtype=np.float32) / np.float32(head_dim)
    inv = np.float32(1.0) / np.power(np.float32(base), exponents, dtype=np.float32)
    return (inv / np.float32(scaling)).astype(np.float32)


def rope_tables(
    positions: Int[Array, "B T"], config: GemmaConfig
) -> tuple[Float[Array, "2 B T R"], Float[Array, "2 B T R"]]:
    """cos and sin for local (index 0) and global (index 1) layers; ``R = head_dim // 2``, the rotary half-width."""
    local = inv_frequencies(config.head_dim, config.rope_local_base)
    glob = inv_frequencies(config.head_dim, config.rope_global_base, config.rope_global_scaling)
    inv = jnp.asarray(np.stack([local, glob]))  # [2, R]
    angles = positions.astype(jnp.float32)[None, :, :, None] * inv[:, None, None, :]
    return jnp.cos(angles), jnp.sin(angles)


def apply_rope(
    x: Float[Array, "B T _heads Dh"], cos: Float[Array, "B T R"], sin: Float[Array, "B T R"]
) -> Float[Array, "B T _heads Dh"]:
    """Rotate-half layout: the first and second halves of ``head_dim`` form the rotated pairs.

    ``x`` is queries (``H`` heads) or keys (``K`` heads): ``_heads`` is either, left unchecked.
    """
    half = x.shape[-1] // 2
    x32 = x.astype(jnp.float32)
    x1, x2 = x32[..., :half], x32[..., half:]
    c, s = cos[:, :, None, :], sin[:, :, None, :]
    return jnp.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], axis=-1).astype(x.dtype)


def linear(x: Float[Array, "... I"], w: Float[Array, "O I"]) -> Float[Array, "... O"]:
    """``x @ wᵀ`` with weights in the checkpoint's ``[out, in]`` layout (no transpose on load)."""
    return jnp.einsum("...i,oi->...o", x.astype(w.dtype), w)


def project(x: Float[Array, "... I"], p: dict, name: str) -> Float[Array, "... O"]:
    """The default projection hook of a block: ``x @ p[name]ᵀ`` (LoRA passes its own, see ``cla/lora.py``)."""
    return linear(x, p[name])


def mlp(x: Float[Array, "B T D"], p: dict, proj=project) -> Float[Array, "B T D"]:
    if "gate_up_proj" in p:  # gate and up stacked on the output axis (transformer.fuse_projections)
        gate, up = jnp.split(proj(x, p, "gate_up_proj"), 2, axis=-1)
    else:
        gate, up = proj(x, p, "gate_proj"), proj(x, p, "up_proj")
    return proj(jax.nn.gelu(gate, approximate=True) * up, p, "down_proj")
