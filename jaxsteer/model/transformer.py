"""Embed → scanned blocks → norm → logits, with a steering delta threaded through the layer scan.

Parameters are a plain pytree; every per-layer array is stacked on a leading layer axis in the
checkpoint's ``[out, in]`` layout::

    {"embed": [V, D], "final_norm": [D],
     "layers": {"input_layernorm": [L, D], "q_proj": [L, H·Dh, D], "k_proj": [L, K·Dh, D],
                "v_proj": [L, K·Dh, D], "q_norm": [L, Dh], "k_norm": [L, Dh], "o_proj": [L, D, H·Dh],
                "post_attention_layernorm": [L, D], "pre_feedforward_layernorm": [L, D],
                "gate_proj": [L, F, D], "up_proj": [L, F, D], "down_proj": [L, D, F],
                "post_feedforward_layernorm": [L, D]}}

Per-layer inputs of the scan — the layer's weights, its global/local flag and its steering delta —
are scan inputs, never closed-over constants, so one compiled body serves every layer and any
steering values. ``run_layers`` runs any contiguous slice of layers; sweeps and the alignment loss
use it to share or skip work.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from jaxsteer.config import GemmaConfig
from jaxsteer.model.attention import self_attention
from jaxsteer.model.layers import apply_rope, linear, mlp, rms_norm, rope_tables

Params = dict[str, Any]


@flax.struct.dataclass
class ForwardOutput:
    logits: Float[Array, "B T V"] | Float[Array, "B V"] | None
    hidden: Float[Array, "Lp1 B T D"] | None = None


class Context(NamedTuple):
    """What every block needs besides its weights and the residual stream."""

    cos: Float[Array, "2 B T H"]
    sin: Float[Array, "2 B T H"]
    key_valid: Bool[Array, "B T"] | None
    steer_mask: Bool[Array, "B T"] | None


def layer_shapes(config: GemmaConfig) -> dict[str, tuple[int, ...]]:
    d, f, hd = config.hidden_size, config.intermediate_size, config.head_dim
    q, kv = config.num_heads * hd, config.num_kv_heads * hd
    return {
        "input_layernorm": (d,),
        "q_proj": (q, d),
        "k_proj": (kv, d),
        "v_proj": (kv, d),
        "q_norm": (hd,),
        "k_norm": (hd,),
        "o_proj": (d, q),
        "post_attention_layernorm": (d,),
        "pre_feedforward_layernorm": (d,),
        "gate_proj": (f, d),
        "up_proj": (f, d),
        "down_proj": (d, f),
        "post_feedforward_layernorm": (d,),
    }


def init_params(config: GemmaConfig, key: jax.Array, dtype=jnp.float32, norm_std: float = 0.0) -> Params:
    """Random weights (std 0.02); ``norm_std > 0`` randomises the zero-centred norm weights too."""
    shapes = {"embed": (config.vocab_size, config.hidden_size), "final_norm": (config.hidden_size,)}
    shapes.update({f"layers/{k}": (config.num_layers, *v) for k, v in layer_shapes(config).items()})
    keys = dict(zip(sorted(shapes), jax.random.split(key, len(shapes)), strict=True))
    flat = {}
    for name, shape in shapes.items():
        std = norm_std if name.endswith("norm") or name.endswith("layernorm") else 0.02
        flat[name] = (std * jax.random.normal(keys[name], shape, jnp.float32)).astype(dtype)
    layers = {k.split("/", 1)[1]: v for k, v in flat.items() if k.startswith("layers/")}
    return {"embed": flat["embed"], "final_norm": flat["final_norm"], "layers": layers}


def default_positions(attention_mask: Int[Array, "B T"] | None, shape: tuple[int, int]) -> Int[Array, "B T"]:
    """Absolute token positions: left padding does not shift them."""
    if attention_mask is None:
        return jnp.broadcast_to(jnp.arange(shape[1], dtype=jnp.int32), shape)
    return jnp.maximum(jnp.cumsum(attention_mask.astype(jnp.int32), axis=1) - 1, 0)


def embed(params: Params, input_ids: Int[Array, "B T"], config: GemmaConfig) -> Float[Array, "B T D"]:
    table = params["embed"]
    scale = jnp.asarray(np.sqrt(config.hidden_size), table.dtype)  # rounded to the weight dtype first
    return (jnp.take(table, input_ids, axis=0) * scale).astype(jnp.float32)


def block(
    p: Params, h: Float[Array, "B T D"], ctx: Context, is_global, config: GemmaConfig, impl: str, attend=None
) -> tuple[Float[Array, "B T D"], tuple[Array, Array]]:
    """One Gemma-3 decoder block on the fp32 residual stream; also returns its rotated keys/values.

    ``attend(q, k, v)`` replaces causal self-attention (the decode step attends to its KV cache).
    """
    b, t, _ = h.shape
    eps, hd, dtype = config.rms_norm_eps, config.head_dim, p["q_proj"].dtype
    x = rms_norm(h, p["input_layernorm"], eps).astype(dtype)
    q = linear(x, p["q_proj"]).reshape(b, t, config.num_heads, hd)
    k = linear(x, p["k_proj"]).reshape(b, t, config.num_kv_heads, hd)
    v = linear(x, p["v_proj"]).reshape(b, t, config.num_kv_heads, hd)
    q = rms_norm(q, p["q_norm"], eps).astype(dtype)
    k = rms_norm(k, p["k_norm"], eps).astype(dtype)
    cos = jnp.where(is_global, ctx.cos[1], ctx.cos[0])
    sin = jnp.where(is_global, ctx.sin[1], ctx.sin[0])
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    if attend is None:
        attn = self_attention(q, k, v, is_global=is_global, key_valid=ctx.key_valid, config=config, impl=impl)
    else:
        attn = attend(q, k, v)
    attn = linear(attn.reshape(b, t, -1), p["o_proj"])
    h = h + rms_norm(attn, p["post_attention_layernorm"], eps)
    x = rms_norm(h, p["pre_feedforward_layernorm"], eps).astype(dtype)
    h = h + rms_norm(mlp(x, p), p["post_feedforward_layernorm"], eps)
    return h, (k, v)


def run_layers(
    layers: Params,
    h: Float[Array, "B T D"],
    ctx: Context,
    is_global: Bool[Array, "n"],
    deltas: Float[Array, "n Bd D"] | None = None,
    *,
    config: GemmaConfig,
    impl: str = "xla",
    collect=None,
    remat: str | None = None,
):
    """Scan ``block`` over a stack of ``n`` layers; ``deltas[l]`` (``Bd`` = 1 or B) is added to block l's output.

    ``collect(h, kv)`` picks what to keep from each layer (stacked by the scan); ``remat`` names a
    ``jax.checkpoint_policies`` policy (``"nothing_saveable"``, ...) for training.
    """

    def body(h, xs):
        p, flag, delta = xs
        h, kv = block(p, h, ctx, flag, config, impl)
        if delta is not None:
            h = h + jnp.where(ctx.steer_mask[..., None], delta[:, None, :], 0.0)  # the steering line
        return h, (collect(h, kv) if collect is not None else None)

    if remat is not None:
        body = jax.checkpoint(body, policy=getattr(jax.checkpoint_policies, remat), prevent_cse=False)
    return jax.lax.scan(body, h, (layers, is_global, deltas))


def slice_layers(layers: Params, start: int, stop: int) -> Params:
    return jax.tree.map(lambda a: a[start:stop], layers)


def unembed(params: Params, h: Float[Array, "... D"], config: GemmaConfig) -> Float[Array, "... V"]:
    """Final norm and the tied head; logits in fp32."""
    x = rms_norm(h, params["final_norm"], config.rms_norm_eps).astype(params["embed"].dtype)
    return jnp.einsum("...d,vd->...v", x, params["embed"], preferred_element_type=jnp.float32)


def last_valid_index(attention_mask: Int[Array, "B T"] | None, shape: tuple[int, int]) -> Int[Array, "B"]:
    """Index of each row's last real token (left or right padding)."""
    if attention_mask is None:
        return jnp.full((shape[0],), shape[1] - 1, jnp.int32)
    flipped = jnp.argmax(jnp.flip(attention_mask.astype(bool), axis=1), axis=1)
    return (shape[1] - 1 - flipped).astype(jnp.int32)


def gather_positions(x: Float[Array, "B T ..."], index: Int[Array, "B *K"]) -> Float[Array, "B *K ..."]:
    """``x[b, index[b, ...]]`` for every row."""
    flat = index.reshape(index.shape[0], -1)
    picked = jnp.take_along_axis(x, flat.reshape(*flat.shape, *([1] * (x.ndim - 2))), axis=1)
    return picked.reshape(*index.shape, *x.shape[2:])


def make_context(
    config: GemmaConfig,
    positions: Int[Array, "B T"],
    attention_mask: Int[Array, "B T"] | None,
    steer_mask: Bool[Array, "B T"] | None,
) -> Context:
    cos, sin = rope_tables(positions, config)
    key_valid = None if attention_mask is None else attention_mask.astype(bool)
    return Context(cos=cos, sin=sin, key_valid=key_valid, steer_mask=steer_mask)


def steering_inputs(steering, positions, attention_mask, shape):
    """The dense per-layer deltas ``[L, 1, D]`` and the position mask of a ``Steering`` plan."""
    if steering is None:
        return None, None
    prompt_len = (
        jnp.full((shape[0],), shape[1], jnp.int32)
        if attention_mask is None
        else jnp.sum(attention_mask.astype(jnp.int32), axis=1)
    )
    mask = steering.position_mask(positions, prompt_len, jnp.arange(shape[1]))
    return steering.deltas()[:, None, :], mask


TRACE_COUNT = {"forward": 0}


@functools.partial(jax.jit, static_argnames=("config", "return_hidden", "logits_mode", "impl"))
def forward_core(
    params: Params,
    input_ids: Int[Array, "B T"],
    attention_mask: Int[Array, "B T"] | None,
    positions: Int[Array, "B T"] | None,
    steering,
    logits_index: Int[Array, "B *K"] | None,
    *,
    config: GemmaConfig,
    return_hidden: bool,
    logits_mode: str,
    impl: str,
) -> ForwardOutput:
    """The jitted forward; ``logits_mode`` is ``"all"``, ``"last"``, ``"index"`` or ``"none"``."""
    TRACE_COUNT["forward"] += 1  # runs only while tracing: tests count recompiles with it
    shape = input_ids.shape
    if positions is None:
        positions = default_positions(attention_mask, shape)
    deltas, steer_mask = steering_inputs(steering, positions, attention_mask, shape)
    ctx = make_context(config, positions, attention_mask, steer_mask)
    h0 = embed(params, input_ids, config)
    collect = (lambda h, kv: h) if return_hidden else None
    flags = jnp.asarray(config.is_global)
    h, stacked = run_layers(params["layers"], h0, ctx, flags, deltas, config=config, impl=impl, collect=collect)
    hidden = jnp.concatenate([h0[None], stacked], axis=0) if return_hidden else None
    if logits_mode == "none":
        return ForwardOutput(logits=None, hidden=hidden)
    if logits_mode == "last":
        h = gather_positions(h, last_valid_index(attention_mask, shape))
    elif logits_mode == "index":
        h = gather_positions(h, logits_index)
    return ForwardOutput(logits=unembed(params, h, config), hidden=hidden)
