"""Generation: one jitted prefill, then a compiled ``lax.while_loop`` over decode steps.

The KV cache is preallocated for prompt + new tokens and updated in place by the loop (the layer
scan only reads it). Steering is applied by *absolute position*, so scopes such as ``"generated"``
keep steering every new token under the cache — the pitfall of per-call token indices.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, Integer

from jaxsteer import ahead
from jaxsteer.config import GemmaConfig, check_decode_layout
from jaxsteer.errors import InputError
from jaxsteer.model.attention import cache_attention, cached_attention, resolve_impl
from jaxsteer.model.decode_memory import (
    decided_layout,
    fusable,
    moved_layers,
    moved_shapes,
    split_layers,
    split_shapes,
)
from jaxsteer.model.family import family_of
from jaxsteer.model.model import Model, check_new_tokens, check_tokens, on_mesh, ones_mask
from jaxsteer.model.plan_tree import PlanTree, chunked_plans, run_plan_tree
from jaxsteer.model.transformer import (
    default_positions,
    plan_major,
    plan_row_deltas,
    prepare,
    run_layers,
    tile_rows,
    unembed,
)
from jaxsteer.sharding import pin_rows
from jaxsteer.steering.plan import Steering, first_steered_layer


@flax.struct.dataclass
class GenerateOutput:
    tokens: Int[Array, "*G B N"]  # new tokens only; ``pad`` after a row's EOS (``[G, B, N]`` for a grid)
    lengths: Int[Array, "*G B"]  # new tokens up to and including EOS


class KVCache(NamedTuple):
    """Rotated keys and values in ``[B, K, S, Dh]`` (one layer, or ``[L, B, K, S, Dh]`` stacked).

    The scanned decode step keeps one stacked ``KVCache`` of full length; the unrolled step keeps a
    tuple with one ``KVCache`` per layer, sliding-window layers as W-slot ring buffers (:func:`to_ring`).
    """

    k: Float[Array, "*L B K S Dh"]
    v: Float[Array, "*L B K S Dh"]


Cache = KVCache | tuple[KVCache, ...]


def _pick(logits: Float[Array, "B V"], key, temperature: float, top_k: int | None) -> Int[Array, "B"]:
    if temperature == 0.0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits / temperature
    if top_k is not None:
        kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


def prefill(
    params,
    input_ids,
    attention_mask,
    steering,
    *,
    config,
    impl,
    max_new_tokens,
    split_layers,
    plans=None,
    tree=None,
    mesh=None,
) -> tuple[Float[Array, "B T D"], Cache]:
    """The whole prompt at once; returns the last block's output and the cache laid out for the decode step.

    With a grid of ``plans`` (``tree`` = their :func:`~jaxsteer.model.plan_tree.plan_tree`), blocks below
    ``tree.start`` — which no plan steers — run once on the ``B`` prompts, and above it every group of plans
    that agree so far runs once; outputs and cache entries come back on the ``B·G`` plan rows (prompt-major).
    """
    t = input_ids.shape[1]
    positions = default_positions(attention_mask, input_ids.shape)
    prompt_len = jnp.sum(attention_mask, axis=1)
    steer_mask = None if steering is None else steering.position_mask(positions, prompt_len, jnp.arange(t))
    h, ctx = prepare(params, input_ids, attention_mask, positions, config=config, steer_mask=steer_mask)
    pad = [(0, 0), (0, 0), (0, max_new_tokens), (0, 0)]
    # each layer's keys/values go straight into the decode layout [B, K, T + N, Dh]: rearranging the stacked
    # [L, B, T, K, Dh] afterwards held both at once (bench/compile_cost.py)
    kv = lambda h, kv: KVCache(*(jnp.pad(jnp.swapaxes(x, 1, 2), pad) for x in kv))  # noqa: E731
    if plans is None:
        deltas = None if steering is None else steering.deltas()[:, None, :]
        # the unrolled step's per-layer caches are copied out of the parts: scanned in quarters, a part's stack
        # beside them is a quarter of the cache, not all of it (peak ≈ 1.25× instead of 2× the cache)
        step = config.num_layers if split_layers is None else -(-config.num_layers // 4)
        parts = []
        for lo in range(0, config.num_layers, step):
            hi = min(lo + step, config.num_layers)
            h, kept = run_layers(
                params["layers"], h, ctx, config=config, start=lo, stop=hi, deltas=deltas, collect=kv, impl=impl
            )
            parts.append(kept)
    else:
        parts = []
        if tree.start:
            h, shared = run_layers(params["layers"], h, ctx, config=config, stop=tree.start, collect=kv, impl=impl)
            parts.append(jax.tree.map(lambda x: pin_rows(tile_rows(x, tree.num_plans, axis=1), mesh, 1), shared))
        h, kept = run_plan_tree(
            params["layers"], h, tree, plans, positions=positions, attention_mask=attention_mask,
            steer_mask=steer_mask, config=config, collect=kv, impl=impl, mesh=mesh,
        )  # fmt: skip
        parts += kept
    if split_layers is None:  # [L, B, K, T + N, Dh]
        return h, KVCache(*(jnp.concatenate([p[i] for p in parts], axis=0) for i in (0, 1)))
    # the unrolled step's per-layer buffers come from the parts directly (no concatenated stack held beside them)
    layers = [KVCache(k, v) for part in parts for k, v in zip(*part)]
    ring = config.sliding_window < t + max_new_tokens
    return h, tuple(
        KVCache(*(to_ring(x, t, config.sliding_window) for x in entry)) if ring and not config.is_global[i] else entry
        for i, entry in enumerate(layers)
    )


@functools.partial(
    jax.jit,
    static_argnames=(
        "config",
        "max_new_tokens",
        "temperature",
        "top_k",
        "eos_ids",
        "impl",
        "tree",
        "slice_weights",
        "mesh",
    ),
)
def generate_core(
    params,
    input_ids: Int[Array, "B T"],
    attention_mask: Int[Array, "B T"],
    steering,
    seed: Integer[Array, ""],
    *,
    config: GemmaConfig,
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    eos_ids: tuple[int, ...],
    impl: str,
    split_layers: tuple | None = None,
    plans: Float[Array, "G L D"] | None = None,
    tree: PlanTree | None = None,
    slice_weights: bool = False,
    mesh=None,
) -> GenerateOutput:
    """Prefill + decode loop. ``split_layers`` (one weight pytree per layer) selects the unrolled
    decode step, which reads each layer's weights and cache in place; without it the step scans the
    stacked weights, whose per-layer dynamic slices XLA copies (2.6× slower when memory-bound).
    ``slice_weights``: the unrolled step on static slices of the stacked weights taken inside this program
    (no copy made before the call; whether XLA materialises the slices is what the ``"sliced"`` layout of
    :func:`generate` is there to measure).

    ``plans`` (dense deltas ``[G, L, D]``) decodes every prompt under every plan in one loop: the batch
    is ``B·G`` rows, prompt-major; ``steering`` then only says *where* to add (its scope). ``mesh`` (the
    model's) splits those rows over its batch shards (:func:`~jaxsteer.sharding.pin_rows`).
    """
    if slice_weights:
        split_layers = tuple(jax.tree.map(lambda a, i=i: a[i], params["layers"]) for i in range(config.num_layers))
    if isinstance(params["layers"], tuple):  # moved weights (decode_memory.moved_layers): the step's own
        split_layers = params["layers"]
    copies = 1 if plans is None else plans.shape[0]
    prompts = input_ids.shape[0]
    b, t = copies * prompts, input_ids.shape[1]
    total = t + max_new_tokens
    mask = pin_rows(tile_rows(attention_mask, copies), mesh)
    prompt_len = jnp.sum(mask, axis=1)
    full_positions = jnp.concatenate(
        [default_positions(mask, (b, t)), prompt_len[:, None] + jnp.arange(max_new_tokens)], axis=1
    )
    key_valid = jnp.concatenate([mask.astype(bool), jnp.ones((b, max_new_tokens), bool)], axis=1)
    window_size = config.sliding_window
    unrolled = split_layers is not None
    ring = unrolled and window_size < total  # sliding layers keep only a W-slot ring buffer
    h, cache = prefill(
        params, input_ids, attention_mask, steering,
        config=config, impl=impl, max_new_tokens=max_new_tokens, split_layers=split_layers, plans=plans, tree=tree,
        mesh=mesh,
    )  # fmt: skip
    if plans is not None:
        row_deltas = plan_row_deltas(plans, prompts)
        if steering is not None and steering.mask is not None:
            steering = steering.replace(mask=tile_rows(steering.mask, copies))

    def steer(pos, index):
        if steering is None:
            return None, None
        deltas = steering.deltas()[:, None, :] if plans is None else row_deltas
        return deltas, steering.position_mask(pos, prompt_len, index)

    key, sub = jax.random.split(jax.random.PRNGKey(seed))  # made here: an eager PRNGKey compiled two programs
    first = _pick(unembed(params, h[:, -1], config), sub, temperature, top_k)
    is_eos = lambda tok: jnp.isin(tok, jnp.asarray(eos_ids))  # noqa: E731
    tokens = pin_rows(jnp.full((b, max_new_tokens), config.pad_token_id, jnp.int32).at[:, 0].set(first), mesh)

    # --- decode: token `step` (at index t + step) goes in, token `step + 1` comes out ---------------
    def step_layers(h, ctx, deltas, cache: Cache, index, before, at_index, window):
        """The cached step through every layer; returns the new hidden state and the updated cache."""
        if not unrolled:  # the scan reads each layer's cache slice; one in-place write of every new entry after

            def attend(q, k, v, flag, extra):
                visible = jnp.where(flag, before, before & window)
                return cached_attention(q, k, v, extra.k, extra.v, visible, config.attn_scale)

            h, new = run_layers(
                params["layers"], h, ctx, config=config, deltas=deltas, per_layer=cache,
                attend=attend, collect=lambda h, kv: kv, impl=impl,
            )  # fmt: skip
            update = functools.partial(jax.lax.dynamic_update_slice_in_dim, start_index=index, axis=3)
            return h, KVCache(*(update(c, jnp.swapaxes(x, 2, 3)) for c, x in zip(cache, new)))
        # unrolled: each layer writes its new entry first and attends over its updated cache, so the write is
        # the old cache's last use and XLA updates the loop's buffers in place (reading the old cache beside a
        # later write made it copy every layer's cache every step: on a CPU, 12 layers × 32 rows × 1090
        # positions, 123 → 71 ms a step: bench/decode_step.py)
        visible_global, visible_local = before | at_index, (before & window) | at_index
        if ring:  # slot s holds index cur − ((cur − s) mod W) once the current token is written: the last W
            held = index - jnp.mod(index - jnp.arange(window_size), window_size)
            visible_ring = (held >= 0)[None] & jnp.take(key_valid, jnp.maximum(held, 0), axis=1)
        updated = []  # one entry a layer, in order: the unrolled runner calls attend once per layer

        def write_then_attend(q, k, v, flag, extra):
            ring_layer = ring and not flag  # flags are static Python bools when unrolled
            at = jnp.mod(index, window_size) if ring_layer else index
            write = functools.partial(jax.lax.dynamic_update_slice_in_dim, start_index=at, axis=2)
            entry = KVCache(write(extra.k, jnp.swapaxes(k, 1, 2)), write(extra.v, jnp.swapaxes(v, 1, 2)))
            updated.append(entry)
            visible = visible_ring if ring_layer else (visible_global if flag else visible_local)
            return cache_attention(q, entry.k, entry.v, visible, config.attn_scale)

        h, _ = run_layers(split_layers, h, ctx, config=config, deltas=deltas, per_layer=cache,
                          attend=write_then_attend, impl=impl)  # fmt: skip
        return h, tuple(updated)

    def body(state):
        step, tokens, cache, done, key = state
        index = t + step
        pos = prompt_len[:, None] + step
        deltas, steer_mask = steer(pos, index[None])
        token = jax.lax.dynamic_slice_in_dim(tokens, step, 1, axis=1)
        h, ctx = prepare(params, token, None, pos, config=config, steer_mask=steer_mask)
        before = (jnp.arange(total) < index)[None] & key_valid
        at_index = (jnp.arange(total) == index)[None]
        window = (pos - full_positions) < config.sliding_window
        h, cache = step_layers(h, ctx, deltas, cache, index, before, at_index, window)
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
    lengths = jnp.minimum(jnp.min(eos_at, axis=1) + 1, max_new_tokens).astype(jnp.int32)
    if plans is not None:
        tokens, lengths = plan_major(tokens, copies), plan_major(lengths, copies)
    return GenerateOutput(tokens=tokens, lengths=lengths)


def default_eos_ids(config) -> tuple[int, ...]:
    """The ids generation stops at unless told otherwise: the model family's (Gemma-3: EOS, and
    ``<end_of_turn>`` for the real vocabulary, which instruction-tuned checkpoints end turns with)."""

    return family_of(config).eos_ids(config)


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
    decode_layout: str | None = None,
    plans=None,
):
    """Generate ``max_new_tokens`` new tokens ``[B, N]`` (greedy at ``temperature=0``; left-pad prompts).

    Rows that reach an EOS are filled with the pad id afterwards; ``return_lengths=True`` also
    returns how many tokens each row produced (EOS included). Sampling draws from ``PRNGKey(seed)``
    (``seed`` in −2³¹ … 2³² − 1), made inside the compiled call. ``decode_layout`` (default: the model's,
    :attr:`Model.decode_layout`, itself ``"auto"`` unless set): ``"unrolled"`` gives
    the decode step its own copy of each layer's weights (one extra weight copy on the device for the
    call; memory-bound decoding runs ~2.6× faster), ``"scan"`` reads the stacked weights, ``"auto"``
    unrolls when the device has room for the copy; ``"sliced"`` runs the unrolled step on static slices of
    the stacked weights taken inside the compiled call (no copy before it, no fused projections) — for models
    whose copy does not fit, where it may avoid the scan's per-step weight copies (measured by
    ``bench/forward.py gen:MODEL:B:P:N:3``; not chosen by ``"auto"``).

    Many plans in one call: ``plans`` — dense deltas ``[G, L, D]`` or a ``jaxsteer.steering.sweep.Grid`` —
    or a ``Steering`` whose γ has one sweep axis ``[G, L]`` decodes every prompt under every plan in one
    compiled loop (``B·G`` rows) and returns ``[G, B, N]``; ``steering`` then gives the scope (default
    ``"all"``). Blocks below the lowest steered layer run once per prompt for all plans, and above it plans
    that still agree share their prefill rows (:mod:`jaxsteer.model.plan_tree`).
    """
    layout = model.decode_layout if decode_layout is None else check_decode_layout(decode_layout, InputError)
    args = (model, input_ids, attention_mask, max_new_tokens, steering, temperature, top_k, seed, eos_token_id, impl)
    if layout != "moved":
        tokens, lengths = _run_calls(_generate_calls(*args, layout, plans, abstract_copy=False))
    else:  # the calls are made (and bad input refused) with the per-layer weights as shapes, before any moves
        calls = _generate_calls(*args, layout, plans, abstract_copy=True)
        with moved_layers(model) as layers:
            calls = [(_with_layers(run, layers), keep) for run, keep in calls]
            tokens, lengths = jax.block_until_ready(  # done before the per-layer arrays are stacked and freed
                _run_calls(calls)
            )
    return (tokens, lengths) if return_lengths else tokens


def _with_layers(run: functools.partial, layers: tuple) -> functools.partial:
    """A :func:`generate_core` call on these per-layer weights (the ``"moved"`` layout's, in place of shapes)."""
    params, *rest = run.args
    return functools.partial(run.func, {**params, "layers": layers}, *rest, **run.keywords)


def _run_calls(calls) -> tuple[Array, Array]:
    """Tokens and lengths of :func:`generate`'s calls (a grid's chunks concatenated)."""
    if calls[0][1] is None:  # no plans: one call
        out = ahead.call(calls[0][0])
        return out.tokens, out.lengths
    outs = []
    for run, keep in calls:
        out = ahead.call(run)
        outs.append((out.tokens[:keep], out.lengths[:keep]))
    tokens, lengths = (jnp.concatenate(x) for x in zip(*outs))
    return tokens, lengths


def compile_generate_ahead(
    model: Model,
    rows: int,
    width: int,
    max_new_tokens: int,
    steering=None,
    plans=None,
    decode_layout: str | None = None,
    eos_token_id=None,
) -> int:
    """Start compiling, in the background (:mod:`jaxsteer.ahead`), the programs a later greedy
    :func:`generate` of ``rows`` prompts × ``width`` tokens (and these ``steering``/``plans`` — their values do
    not matter, which plans agree where does) will run; returns how many it started. The unrolled layout's
    weight copy is not made: the compile gets its shapes."""
    ids, mask = ahead.placeholder_batch(rows, width)
    calls = _generate_calls(
        model, ids, mask, max_new_tokens, steering, 0.0, None, 0, eos_token_id, "auto", decode_layout,
        plans, abstract_copy=True,
    )  # fmt: skip
    return ahead.start(run for run, _ in calls)


def _generate_calls(
    model, input_ids, attention_mask, max_new_tokens, steering, temperature, top_k, seed, eos_token_id, impl,
    decode_layout, plans, abstract_copy: bool,
) -> list[tuple[functools.partial, int | None]]:  # fmt: skip
    """The checked :func:`generate_core` calls of one :func:`generate` — each a partial with every argument, and
    how many of its plans are real (None without plans) — made by the one code that also plans compiles ahead
    (``abstract_copy``: the unrolled layout's per-layer weights as shapes, not copied)."""
    config = model.config
    input_ids, attention_mask = check_tokens(config, input_ids, attention_mask)
    if attention_mask is None:
        attention_mask = ones_mask(input_ids)
    max_new_tokens = check_new_tokens(config, input_ids.shape[1], max_new_tokens)
    if not 0 <= temperature < float("inf"):  # NaN fails too
        raise InputError(f"temperature={temperature} must be a finite number ≥ 0")
    if not -(2**31) <= int(seed) < 2**32:
        raise InputError(f"seed={seed} must be in -2**31 … 2**32 − 1")
    if top_k is not None and not 0 < int(top_k) <= config.vocab_size:
        raise InputError(f"top_k={top_k} must be in 1..{config.vocab_size}")
    if plans is None and steering is not None and steering.gamma.ndim == 2:
        plans, steering = steering.host_deltas(), steering.replace(gamma=steering.gamma[0])
    plans = _check_plans(config, plans)
    if plans is not None and steering is None:
        steering = Steering.zeros(config)
    if steering is not None:
        total = input_ids.shape[1] + max_new_tokens
        steering.check_applicable(config, (input_ids.shape[0], total), " (prompt + new tokens)")
    eos = default_eos_ids(config) if eos_token_id is None else tuple(np.atleast_1d(np.asarray(eos_token_id)).tolist())
    decode_layout = model.decode_layout if decode_layout is None else check_decode_layout(decode_layout, InputError)
    total = input_ids.shape[1] + max_new_tokens  # sized before the copy exists: the budget subtracts it itself
    unroll, chunk = decided_layout(model, len(input_ids), total, None if plans is None else len(plans), decode_layout)
    params, split = model.params, None
    if decode_layout == "moved":  # the model's own weights cut per layer for the call (moved_layers), as shapes
        # here (generate swaps the arrays in); passed once, as params["layers"], which generate_core reads
        params = {**params, "layers": moved_shapes(params["layers"], config)}
    elif unroll:
        copy = split_shapes if abstract_copy else split_layers
        split = copy(params["layers"], config, fuse=fusable(model))
    input_ids, attention_mask = on_mesh(model, input_ids, attention_mask)
    if steering is not None and steering.mask is not None:
        steering = steering.replace(mask=on_mesh(model, steering.mask)[0])
    run = functools.partial(
        generate_core,
        params,
        input_ids,
        attention_mask,
        steering,
        np.int32(seed) if seed < 2**31 else np.uint32(seed),  # the key is made in the program, as PRNGKey(seed)
        config=config,
        max_new_tokens=max_new_tokens,
        temperature=float(temperature),
        top_k=None if top_k is None else int(top_k),
        eos_ids=tuple(int(e) for e in eos),
        impl=resolve_impl(impl, model.dtype),
        split_layers=split,
        slice_weights=decode_layout == "sliced",
        mesh=model.mesh,
    )
    if plans is None:
        return [(run, None)]
    start = min(first_steered_layer(plans), config.num_layers - 1)
    return [
        (functools.partial(run, plans=part, tree=tree), keep)
        for part, tree, keep in chunked_plans(plans, chunk, start, prompt_steered=steering.scope != "generated")
    ]


def _check_plans(config: GemmaConfig, plans) -> np.ndarray | None:
    """Dense ``[G, L, D]`` deltas (from an array or a Grid), on the host."""
    if plans is None:
        return None
    dense = np.asarray(getattr(plans, "deltas", plans), np.float32)
    if dense.ndim != 3 or dense.shape[1:] != (config.num_layers, config.hidden_size) or len(dense) == 0:
        raise InputError(
            f"plans have shape {dense.shape}, expected (G, {config.num_layers}, {config.hidden_size}) with G ≥ 1"
        )
    if not np.all(np.isfinite(dense)):
        raise InputError("plans contain NaN or inf deltas")
    return dense


def to_ring(cache: Float[Array, "B K S Dh"], prompt_len: int, window: int) -> Float[Array, "B K W Dh"]:
    """Keep the last ``window`` prompt indices, index j at slot j mod W (the decode step's ring layout)."""
    slots = jnp.arange(window)
    held = prompt_len - 1 - jnp.mod(prompt_len - 1 - slots, window)
    return jnp.take(cache, jnp.maximum(held, 0), axis=2)  # slots of negative indices are masked by visibility
