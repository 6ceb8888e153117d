"""Generation: one jitted prefill, then a compiled ``lax.while_loop`` over decode steps.

The KV cache is preallocated for prompt + new tokens and updated in place by the loop (the layer
scan only reads it). Steering is applied by *absolute position*, so scopes such as ``"generated"``
keep steering every new token under the cache — the pitfall of per-call token indices.
"""

from __future__ import annotations

import functools

import flax.struct
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from jaxsteer.config import GemmaConfig
from jaxsteer.errors import InputError
from jaxsteer.model.attention import cached_attention, resolve_impl
from jaxsteer.model.layers import rope_tables
from jaxsteer.model.model import Model, check_new_tokens, check_tokens
from jaxsteer.model.transformer import (
    Context,
    block,
    default_positions,
    embed,
    make_context,
    run_layers,
    unembed,
)


@flax.struct.dataclass
class GenerateOutput:
    tokens: Int[Array, "B N"]  # new tokens only; ``pad`` after a row's EOS
    lengths: Int[Array, "B"]  # new tokens up to and including EOS


def _pick(logits: Float[Array, "B V"], key, temperature: float, top_k: int | None) -> Int[Array, "B"]:
    if temperature == 0.0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits / temperature
    if top_k is not None:
        kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("config", "max_new_tokens", "temperature", "top_k", "eos_ids", "impl"))
def generate_core(
    params,
    input_ids: Int[Array, "B T"],
    attention_mask: Int[Array, "B T"],
    steering,
    key: jax.Array,
    *,
    config: GemmaConfig,
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    eos_ids: tuple[int, ...],
    impl: str,
    split_layers: tuple | None = None,
) -> GenerateOutput:
    """Prefill + decode loop. ``split_layers`` (one weight pytree per layer) selects the unrolled
    decode step, which reads each layer's weights and cache in place; without it the step scans the
    stacked weights, whose per-layer dynamic slices XLA copies (2.6× slower when memory-bound)."""
    b, t = input_ids.shape
    total = t + max_new_tokens
    prompt_len = jnp.sum(attention_mask, axis=1)
    positions = default_positions(attention_mask, (b, t))
    full_positions = jnp.concatenate([positions, prompt_len[:, None] + jnp.arange(max_new_tokens)], axis=1)
    key_valid = jnp.concatenate([attention_mask.astype(bool), jnp.ones((b, max_new_tokens), bool)], axis=1)
    flags = jnp.asarray(config.is_global)

    def steer(pos, index):
        if steering is None:
            return None, None
        return steering.deltas()[:, None, :], steering.position_mask(pos, prompt_len, index)

    # --- prefill: the whole prompt at once, keeping each layer's rotated keys and values -----------
    deltas, steer_mask = steer(positions, jnp.arange(t))
    ctx = make_context(config, positions, attention_mask, steer_mask)
    h, (ks, vs) = run_layers(
        params["layers"],
        embed(params, input_ids, config),
        ctx,
        flags,
        deltas,
        config=config,
        impl=impl,
        collect=lambda h, kv: kv,
    )
    pad = [(0, 0), (0, 0), (0, 0), (0, max_new_tokens), (0, 0)]
    to_cache = lambda x: jnp.pad(jnp.swapaxes(x, 2, 3), pad)  # noqa: E731  [L, B, K, T + N, Dh]
    cache = (to_cache(ks), to_cache(vs))
    window_size = config.sliding_window
    ring = split_layers is not None and window_size < total  # sliding layers keep only a W-slot ring buffer
    if split_layers is not None:
        cache = tuple(
            (_to_ring(cache[0][i], t, window_size), _to_ring(cache[1][i], t, window_size))
            if ring and not config.is_global[i]
            else (cache[0][i], cache[1][i])
            for i in range(config.num_layers)
        )
    key, sub = jax.random.split(key)
    first = _pick(unembed(params, h[:, -1], config), sub, temperature, top_k)
    is_eos = lambda tok: jnp.isin(tok, jnp.asarray(eos_ids))  # noqa: E731
    tokens = jnp.full((b, max_new_tokens), config.pad_token_id, jnp.int32).at[:, 0].set(first)

    # --- decode: token `step` (at index t + step) goes in, token `step + 1` comes out ---------------
    def one_layer(p, h, ctx, flag, delta, kc, vc, visible_global, visible_local):
        def attend(q, k, v):
            visible = jnp.where(flag, visible_global, visible_local)
            return cached_attention(q, k, v, kc, vc, visible, config.attn_scale)

        h, kv = block(p, h, ctx, flag, config, impl, attend=attend)
        if delta is not None:
            h = h + jnp.where(ctx.steer_mask[..., None], delta[:, None, :], 0.0)  # the steering line
        return h, kv

    def scanned_layers(h, ctx, deltas, cache, index, vis_g, vis_l):
        def step(h, xs):
            p, flag, delta, kc, vc = xs
            return one_layer(p, h, ctx, flag, delta, kc, vc, vis_g, vis_l)

        h, (k_new, v_new) = jax.lax.scan(step, h, (params["layers"], flags, deltas, *cache))
        update = functools.partial(jax.lax.dynamic_update_slice_in_dim, start_index=index, axis=3)
        return h, (update(cache[0], jnp.swapaxes(k_new, 2, 3)), update(cache[1], jnp.swapaxes(v_new, 2, 3)))

    def unrolled_layers(h, ctx, deltas, cache, index, vis_g, vis_l):
        if ring:
            # slot s of a ring holds index cur−1−((cur−1−s) mod W): the last W indices before this token
            slots = jnp.arange(window_size)
            held = index - 1 - jnp.mod(index - 1 - slots, window_size)
            vis_ring = (held >= 0)[None] & jnp.take(key_valid, jnp.maximum(held, 0), axis=1)
            vis_ring &= (index - held < window_size)[None]  # the slot about to be overwritten is out of the window
        new_cache = []
        for i, (p, (kc, vc)) in enumerate(zip(split_layers, cache)):
            delta = None if deltas is None else deltas[i]
            local_ring = ring and not config.is_global[i]
            vis = (vis_ring, vis_ring) if local_ring else (vis_g, vis_l)  # per-layer flags are static here
            h, (k, v) = one_layer(p, h, ctx, config.is_global[i], delta, kc, vc, *vis)
            at = jnp.mod(index, window_size) if local_ring else index
            update = functools.partial(jax.lax.dynamic_update_slice_in_dim, start_index=at, axis=2)
            new_cache.append((update(kc, jnp.swapaxes(k, 1, 2)), update(vc, jnp.swapaxes(v, 1, 2))))
        return h, tuple(new_cache)

    layers_fn = scanned_layers if split_layers is None else unrolled_layers

    def body(state):
        step, tokens, cache, done, key = state
        index = t + step
        pos = prompt_len[:, None] + step
        cos, sin = rope_tables(pos, config)
        deltas, steer_mask = steer(pos, index[None])
        ctx = Context(cos=cos, sin=sin, key_valid=None, steer_mask=steer_mask)
        before = (jnp.arange(total) < index)[None] & key_valid
        window = (pos - full_positions) < config.sliding_window
        h = embed(params, jax.lax.dynamic_slice_in_dim(tokens, step, 1, axis=1), config)
        h, cache = layers_fn(h, ctx, deltas, cache, index, before, before & window)
        key, sub = jax.random.split(key)
        nxt = _pick(unembed(params, h[:, 0], config), sub, temperature, top_k)
        done = done | is_eos(tokens[:, step])
        nxt = jnp.where(done, config.pad_token_id, nxt)
        tokens = jax.lax.dynamic_update_slice_in_dim(tokens, nxt[:, None], step + 1, axis=1)
        return step + 1, tokens, cache, done, key

    def cond(state):
        step, tokens, *_ = state
        done = state[3] | is_eos(tokens[:, step])
        return (step < max_new_tokens - 1) & ~jnp.all(done)

    state = (jnp.int32(0), tokens, cache, jnp.zeros((b,), bool), key)
    _, tokens, *_ = jax.lax.while_loop(cond, body, state)
    eos_at = jnp.where(is_eos(tokens), jnp.arange(max_new_tokens), max_new_tokens)
    lengths = jnp.minimum(jnp.min(eos_at, axis=1) + 1, max_new_tokens)
    return GenerateOutput(tokens=tokens, lengths=lengths.astype(jnp.int32))


def default_eos_ids(config: GemmaConfig) -> tuple[int, ...]:
    """EOS, plus ``<end_of_turn>`` for the real Gemma-3 vocabulary (instruction-tuned checkpoints end turns with it)."""
    if config.vocab_size > 200_000:
        return (config.eos_token_id, config.end_of_turn_token_id)
    return (config.eos_token_id,)


def generate(
    model: Model,
    input_ids,
    max_new_tokens: int = 32,
    attention_mask=None,
    steering=None,
    temperature: float = 0.0,
    top_k: int | None = None,
    seed: int = 0,
    eos_token_id: int | tuple[int, ...] | None = None,
    impl: str = "auto",
    return_lengths: bool = False,
    decode_layout: str = "auto",
):
    """Generate ``max_new_tokens`` new tokens ``[B, N]`` (greedy at ``temperature=0``; left-pad prompts).

    Rows that reach an EOS are filled with the pad id afterwards; ``return_lengths=True`` also
    returns how many tokens each row produced (EOS included). ``decode_layout``: ``"unrolled"`` gives
    the decode step its own copy of each layer's weights (one extra weight copy on the device for the
    call; memory-bound decoding runs ~2.6× faster), ``"scan"`` reads the stacked weights, ``"auto"``
    unrolls when the device has room for the copy.
    """
    config = model.config
    input_ids, attention_mask = check_tokens(config, input_ids, attention_mask)
    if attention_mask is None:
        attention_mask = jnp.ones_like(input_ids)
    max_new_tokens = check_new_tokens(config, input_ids.shape[1], max_new_tokens)
    if temperature < 0 or temperature != temperature:
        raise InputError(f"temperature={temperature} must be ≥ 0")
    if top_k is not None and not 0 < int(top_k) <= config.vocab_size:
        raise InputError(f"top_k={top_k} must be in 1..{config.vocab_size}")
    if steering is not None:
        total = input_ids.shape[1] + int(max_new_tokens)
        steering.check_applicable(config, (input_ids.shape[0], total), " (prompt + new tokens)")
    eos = default_eos_ids(config) if eos_token_id is None else tuple(jnp.atleast_1d(jnp.asarray(eos_token_id)).tolist())
    if decode_layout not in ("auto", "scan", "unrolled"):
        raise InputError(f"decode_layout={decode_layout!r}: expected auto, scan or unrolled")
    unroll = decode_layout == "unrolled" or (decode_layout == "auto" and _room_for_layer_copy(model.params))
    split = _split_layers(model.params["layers"], config.num_layers) if unroll else None
    out = generate_core(
        model.params,
        input_ids,
        attention_mask,
        steering,
        jax.random.PRNGKey(seed),
        config=config,
        max_new_tokens=int(max_new_tokens),
        temperature=float(temperature),
        top_k=None if top_k is None else int(top_k),
        eos_ids=tuple(int(e) for e in eos),
        impl=resolve_impl(impl, model.dtype),
        split_layers=split,
    )
    return (out.tokens, out.lengths) if return_lengths else out.tokens


def _to_ring(cache: Float[Array, "B K S Dh"], prompt_len: int, window: int) -> Float[Array, "B K W Dh"]:
    """Keep the last ``window`` prompt indices, index j at slot j mod W (the decode step's ring layout)."""
    slots = jnp.arange(window)
    held = prompt_len - 1 - jnp.mod(prompt_len - 1 - slots, window)
    return jnp.take(cache, jnp.maximum(held, 0), axis=2)  # slots of negative indices are masked by visibility


@functools.partial(jax.jit, static_argnames=("num_layers",))
def _split_layers(layers, num_layers: int) -> tuple:
    return tuple(jax.tree.map(lambda a, i=i: a[i], layers) for i in range(num_layers))


def _room_for_layer_copy(params) -> bool:
    """True when the device can hold a second copy of the layer weights (always on CPU)."""
    leaves = jax.tree.leaves(params["layers"])
    device = next(iter(leaves[0].devices()))
    stats = device.memory_stats() if device.platform != "cpu" else None
    if not stats or "bytes_limit" not in stats:
        return True
    need = sum(x.nbytes for x in leaves)
    return stats["bytes_limit"] - stats.get("bytes_in_use", 0) > 1.25 * need
