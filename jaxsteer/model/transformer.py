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
from collections.abc import Sequence
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, Shaped

from jaxsteer.config import GemmaConfig
from jaxsteer.model.attention import query_attention, self_attention
from jaxsteer.model.family import family_of
from jaxsteer.model.layers import apply_rope, mlp, project, rms_norm, rope_tables

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
    p: Params,
    h: Float[Array, "B T D"],
    ctx: Context,
    is_global,
    config: GemmaConfig,
    impl: str,
    attend=None,
    proj=project,
    queries: Int[Array, "B J"] | None = None,
) -> tuple[Float[Array, "B T D"] | Float[Array, "B J D"], tuple[Array, Array]]:
    """One Gemma-3 decoder block on the fp32 residual stream; also returns its rotated keys/values.

    ``attend(q, k, v)`` replaces causal self-attention (the decode step attends to its KV cache);
    ``proj(x, p, name)`` computes the seven projections (LoRA adds its path there). ``queries`` (array
    indices ``[B, J]``): only those positions' outputs are computed — keys and values still come from every
    position — and ``h`` comes back ``[B, J, D]`` (a forward's final block when logits are read at J positions).
    """
    b, t, _ = h.shape
    j = t if queries is None else queries.shape[1]
    at = (lambda a: a) if queries is None else (lambda a: gather_positions(a, queries))  # noqa: E731
    eps, hd = config.rms_norm_eps, config.head_dim
    dtype = (p["qkv_proj"] if FUSED_QKV in p else p["q_proj"]).dtype
    x = rms_norm(h, p["input_layernorm"], eps).astype(dtype)
    if FUSED_QKV in p:  # one matmul for q, k and v (see fuse_projections)
        q, k, v = jnp.split(proj(x, p, FUSED_QKV), np.cumsum(qkv_widths(config))[:2], axis=-1)
        q = at(q)
    else:
        q, k, v = proj(at(x), p, "q_proj"), proj(x, p, "k_proj"), proj(x, p, "v_proj")
    q = q.reshape(b, j, config.num_heads, hd)
    k = k.reshape(b, t, config.num_kv_heads, hd)
    v = v.reshape(b, t, config.num_kv_heads, hd)
    q = rms_norm(q, p["q_norm"], eps).astype(dtype)
    k = rms_norm(k, p["k_norm"], eps).astype(dtype)
    cos = jnp.where(is_global, ctx.cos[1], ctx.cos[0])
    sin = jnp.where(is_global, ctx.sin[1], ctx.sin[0])
    q, k = apply_rope(q, at(cos), at(sin)), apply_rope(k, cos, sin)
    if attend is not None:
        attn = attend(q, k, v)
    elif queries is not None:
        attn = query_attention(q, k, v, queries, is_global=is_global, key_valid=ctx.key_valid, config=config)
    else:
        attn = self_attention(q, k, v, is_global=is_global, key_valid=ctx.key_valid, config=config, impl=impl)
    attn = proj(attn.reshape(b, j, -1), p, "o_proj")
    h = at(h) + rms_norm(attn, p["post_attention_layernorm"], eps)
    x = rms_norm(h, p["pre_feedforward_layernorm"], eps).astype(dtype)
    h = h + rms_norm(mlp(x, p, proj), p["post_feedforward_layernorm"], eps)
    return h, (k, v)


FUSED_QKV, FUSED_GATE_UP = "qkv_proj", "gate_up_proj"


def qkv_widths(config: GemmaConfig) -> tuple[int, int, int]:
    """Output widths of the q, k and v projections (their order in the fused ``qkv_proj``)."""
    return (
        config.num_heads * config.head_dim,
        config.num_kv_heads * config.head_dim,
        config.num_kv_heads * config.head_dim,
    )


def fuse_projections(p: Params) -> Params:
    """One layer's weights with q/k/v stacked into ``qkv_proj`` and gate/up into ``gate_up_proj`` (output rows).

    For a per-layer weight copy that is made anyway (the unrolled decode layout): a memory-bound decode
    step then reads two wide matrices instead of five narrow ones, which runs closer to the bandwidth
    floor. Not for tensor-parallel weights (the model axis splits each projection's rows on its own).
    """
    fused = {k: v for k, v in p.items() if k not in ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj")}
    fused[FUSED_QKV] = jnp.concatenate([p["q_proj"], p["k_proj"], p["v_proj"]], axis=0)
    fused[FUSED_GATE_UP] = jnp.concatenate([p["gate_proj"], p["up_proj"]], axis=0)
    return fused


# --- the layer runner: prepare → run_layers → head ---------------------------------------------------------
def prepare(
    params: Params,
    input_ids: Int[Array, "B T"],
    attention_mask: Int[Array, "B T"] | None,
    positions: Int[Array, "B T"] | None = None,
    *,
    config: GemmaConfig,
    steer_mask: Bool[Array, "#B T"] | None = None,
) -> tuple[Float[Array, "B T D"], Context]:
    """The scaled embeddings and the :class:`Context` every block reads (positions default to
    :func:`default_positions`: left padding does not shift them)."""
    if positions is None:
        positions = default_positions(attention_mask, input_ids.shape)
    return embed(params, input_ids, config), make_context(config, positions, attention_mask, steer_mask)


def run_layers(
    layers: Params | Sequence[Params],
    h: Float[Array, "B T D"],
    ctx: Context,
    *,
    config: GemmaConfig,
    start: int = 0,
    stop: int | None = None,
    deltas: Float[Array, "L Bd D"] | None = None,
    per_layer=None,
    collect=None,
    attend=None,
    weights_fn=None,
    proj=project,
    constrain=None,
    impl: str = "xla",
    remat: str | None = None,
    differentiable: bool = False,
    queries: Int[Array, "B J"] | None = None,
):
    """Blocks ``start … stop−1`` on the residual stream ``h``; returns ``(h, collected)``.

    Every input with a layer axis covers the whole model (``L``) and is sliced here:
      - ``layers``: the stacked layer params ``[L, ...]`` — run by ``lax.scan`` — or a sequence of ``L``
        per-layer pytrees — run unrolled, each layer reading its own buffers (the decode step: XLA copies
        the dynamic weight slices of a scan) with static global/local flags;
      - ``deltas[l]`` (``Bd`` = 1 or B rows) is added to block ``l``'s output where ``ctx.steer_mask`` is set;
      - ``per_layer``: a stacked pytree (scan) or a sequence (unrolled) of per-layer extras (a KV cache,
        LoRA factors, dropout keys) handed to the hooks.
    Hooks (all optional): ``weights_fn(p, extra) → p`` prepares a layer's weights (dtype casts, LoRA
    factors); ``proj(x, p, name)`` computes a projection; ``attend(q, k, v, flag, extra)`` replaces
    causal self-attention; ``collect(h, kv)`` picks what to keep per layer (stacked on a leading layer axis,
    scanned or unrolled); ``constrain(h)`` pins the activations' sharding. ``remat`` names a
    ``jax.checkpoint_policies`` policy (``"nothing_saveable"``, ...) for training.

    A scan over part of the stack (``start > 0`` or ``stop < L``) reads each layer by index from the whole
    stack: slicing ``[start:stop]`` first copied those layers' weights (a 12B plan-tree prefill held its
    segments' slices at once: +18.5 GiB of temporaries in fp32, ``bench/compile_cost.py``). That read is for
    inference: the gradient of a stack read by index is a full-size cotangent added at every step, so a
    caller that differentiates passes ``differentiable=True`` and gets the slice (whose transpose is a pad).

    ``queries`` (array indices ``[B, J]``): the final block computes only those positions and ``h`` comes back
    ``[B, J, D]`` — for a forward whose logits are read there (its last block's other positions feed nothing:
    ≈ 1/L of the forward's FLOPs saved; keys and values still come from every position). Not with ``collect``.
    """
    stop = config.num_layers if stop is None else stop
    family_block = family_of(config).block  # Gemma-3's ``block`` below, or another family's

    def body(h, xs, queries=None):
        p, flag, delta, extra = xs
        if weights_fn is not None:
            p = weights_fn(p, extra)
        att = None if attend is None else functools.partial(attend, flag=flag, extra=extra)
        if queries is None:
            h, kv = family_block(p, h, ctx, flag, config, impl, attend=att, proj=proj)
            steer_mask = ctx.steer_mask
        else:
            h, kv = family_block(p, h, ctx, flag, config, impl, attend=att, proj=proj, queries=queries)
            steer_mask = None if delta is None else gather_positions(ctx.steer_mask, queries)
        if delta is not None:
            h = h + jnp.where(steer_mask[..., None], delta[:, None, :], 0.0)  # the steering line
        if constrain is not None:
            h = constrain(h)
        return h, (collect(h, kv) if collect is not None else None)

    if queries is not None:  # blocks start … stop−2 as usual, then the final block at the query positions only
        if collect is not None or attend is not None:
            raise ValueError("run_layers: queries with collect or attend are not supported")
        if stop <= start:
            raise ValueError(f"run_layers: queries need at least one block (start={start}, stop={stop})")
        kw = dict(config=config, start=start, stop=stop - 1, deltas=deltas, per_layer=per_layer, attend=attend,
                  weights_fn=weights_fn, proj=proj, constrain=constrain, impl=impl, remat=remat,
                  differentiable=differentiable)  # fmt: skip
        if stop - 1 > start:
            h, _ = run_layers(layers, h, ctx, **kw)
        last = stop - 1

        def pick(tree):  # layer `last` of a per-layer sequence or of a stacked pytree
            return tree[last] if isinstance(tree, (tuple, list)) else jax.tree.map(lambda a: a[last], tree)

        xs = (pick(layers), config.is_global[last], None if deltas is None else deltas[last],
              None if per_layer is None else pick(per_layer))  # fmt: skip
        return body(h, xs, queries)[0], None

    def checkpointed(fn):
        return jax.checkpoint(fn, policy=getattr(jax.checkpoint_policies, remat), prevent_cse=False)

    if isinstance(layers, (tuple, list)):
        collected = []
        for i in range(start, stop):
            flag = config.is_global[i]  # static: closed over, not traced
            step = lambda h, p, delta, extra, flag=flag: body(h, (p, flag, delta, extra))  # noqa: E731
            step = checkpointed(step) if remat is not None else step
            h, out = step(
                h, layers[i], None if deltas is None else deltas[i], None if per_layer is None else per_layer[i]
            )
            collected.append(out)
        if collect is None:
            return h, None
        return h, jax.tree.map(lambda *xs: jnp.stack(xs), *collected)  # stacked, as the scan stacks it
    if remat is not None:
        body = checkpointed(body)
    flags = jnp.asarray(config.is_global[start:stop])
    if (start, stop) == (0, config.num_layers) or differentiable:
        cut = functools.partial(slice_layers, start=start, stop=stop)
        return jax.lax.scan(body, h, (cut(layers), flags, cut(deltas), cut(per_layer)))

    def indexed(h, xs):
        i, flag = xs
        at = lambda tree: jax.tree.map(lambda a: jax.lax.dynamic_index_in_dim(a, i, keepdims=False), tree)  # noqa: E731
        return body(h, (at(layers), flag, at(deltas), at(per_layer)))

    return jax.lax.scan(indexed, h, (jnp.arange(start, stop), flags))


def slice_layers(layers, start: int, stop: int):
    """Layers ``start … stop−1`` of any pytree stacked on a leading layer axis (``None`` stays ``None``)."""
    return jax.tree.map(lambda a: a[start:stop], layers)


def head(
    params: Params, h: Float[Array, "B T D"], config: GemmaConfig, index: Int[Array, "B *J"] | None = None
) -> Float[Array, "B T V"] | Float[Array, "B *J V"]:
    """Logits in fp32: everywhere, or only at ``index`` (``[B]`` or ``[B, J]`` positions per row)."""
    if index is not None:
        h = gather_positions(h, index)
    return unembed(params, h, config)


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


def wrap_positions(index: Int[Array, "B J"], t: int) -> Int[Array, "B J"]:
    """Negative read positions count from the end (``-1``: the last column), as a gather reads them; the
    final block's causal mask needs the position itself."""
    return jnp.where(index < 0, index + t, index)


def gather_positions(x: Shaped[Array, "B T ..."], index: Int[Array, "B *J"]) -> Shaped[Array, "B *J ..."]:
    """``x[b, index[b, ...]]`` for every row."""
    flat = index.reshape(index.shape[0], -1)
    picked = jnp.take_along_axis(x, flat.reshape(*flat.shape, *([1] * (x.ndim - 2))), axis=1)
    return picked.reshape(*index.shape, *x.shape[2:])


def make_context(
    config: GemmaConfig,
    positions: Int[Array, "B T"],
    attention_mask: Int[Array, "B T"] | None,
    steer_mask: Bool[Array, "#B T"] | None,
) -> Context:
    cos, sin = rope_tables(positions, config)
    key_valid = None if attention_mask is None else attention_mask.astype(bool)
    return Context(cos=cos, sin=sin, key_valid=key_valid, steer_mask=steer_mask)


def tile_rows(x: Array, copies: int, axis: int = 0) -> Array:
    """``copies`` copies of each row of ``x`` along ``axis``, prompt-major (row ``b·G + g`` is row ``b`` under
    plan ``g``): the batch layout of a grid of steering plans (sweeps, ``generate`` with ``plans``). Split over
    a mesh's batch shards, each shard holds whole prompts with all their plans, so copying a prompt's rows to
    its plans — and a plan tree taking one group's rows — never leaves the shard."""
    return jnp.repeat(x, copies, axis=axis)


def plan_row_deltas(plans: Float[Array, "G L D"], rows: int) -> Float[Array, "L Bd D"]:
    """Per-row deltas ``[L, B·G, D]`` of a grid of plans over ``B = rows`` prompts, in :func:`tile_rows`' order."""
    return jnp.tile(jnp.swapaxes(plans.astype(jnp.float32), 0, 1), (1, rows, 1))


def plan_major(x: Array, copies: int) -> Array:
    """Rows in :func:`tile_rows`' order ``[B·G, ...]`` as ``[G, B, ...]``."""
    return jnp.swapaxes(x.reshape(-1, copies, *x.shape[1:]), 0, 1)


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
    shape = input_ids.shape
    if positions is None:
        positions = default_positions(attention_mask, shape)
    deltas, steer_mask = steering_inputs(steering, positions, attention_mask, shape)
    h0, ctx = prepare(params, input_ids, attention_mask, positions, config=config, steer_mask=steer_mask)
    index = {"last": last_valid_index(attention_mask, shape), "index": logits_index}.get(logits_mode)
    if index is not None and not return_hidden:  # the final block only where logits are read
        queries = wrap_positions(index.reshape(shape[0], -1), shape[1])
        h, _ = run_layers(params["layers"], h0, ctx, config=config, deltas=deltas, impl=impl, queries=queries)
        return ForwardOutput(logits=unembed(params, h.reshape(*index.shape, -1), config))
    collect = (lambda h, kv: h) if return_hidden else None
    h, stacked = run_layers(params["layers"], h0, ctx, config=config, deltas=deltas, collect=collect, impl=impl)
    hidden = jnp.concatenate([h0[None], stacked], axis=0) if return_hidden else None
    if logits_mode == "none":
        return ForwardOutput(logits=None, hidden=hidden)
    return ForwardOutput(logits=head(params, h, config, index), hidden=hidden)
