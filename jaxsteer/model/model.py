"""The public face of the decoder: ``Model`` (config + params) and ``forward`` with its input checks.

Checks run in Python on concrete inputs (and are skipped, but for shapes, under ``jit``/``vmap``)
so that a user mistake is a one-line ``InputError`` rather than silent garbage: out-of-range ids
gather a clipped row in XLA instead of failing.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxsteer import ahead
from jaxsteer.config import GemmaConfig, check_decode_layout
from jaxsteer.errors import InputError
from jaxsteer.model.attention import resolve_impl
from jaxsteer.model.transformer import ForwardOutput, Params, forward_core, init_params
from jaxsteer.steering.plan import Steering

_DTYPES = {"bfloat16": jnp.bfloat16, "bf16": jnp.bfloat16, "float32": jnp.float32, "fp32": jnp.float32}


def resolve_dtype(dtype: Any):
    """``"bfloat16"``/``"float32"`` (or the jnp types); fp16 is refused: Gemma's residual overflows it."""
    name = jnp.dtype(dtype).name if not isinstance(dtype, str) else dtype.lower()
    if name in ("float16", "fp16", "half"):
        raise InputError("float16 is not supported: Gemma-3's residual stream overflows it; use bfloat16")
    if name not in _DTYPES:
        raise InputError(f"dtype {dtype!r}: expected bfloat16 or float32")
    return _DTYPES[name]


@dataclasses.dataclass(frozen=True)
class Model:
    """A Gemma-3 decoder: its config, its params pytree and (when loaded from a folder) a tokenizer.

    ``mesh`` (a ``jax.sharding.Mesh``) is where the params live when they are sharded: every inference
    entry point then splits its batch rows over the mesh's batch shards (``jaxsteer.sharding``).
    ``decode_layout`` is how every generation of this model decodes unless a call says otherwise
    (:func:`jaxsteer.model.decode.generate`): ``"auto"`` (a per-layer weight copy where it fits: the faster
    decode step), or ``"scan"`` for a one-off run whose compiles are on its critical path (on one H200 the
    12B's 9-plan selection program compiles in 14.6 s instead of 27.6 s, and decodes ≈ 13 ms a step slower).
    """

    config: GemmaConfig
    params: Params
    tokenizer: Any = None
    source: str | None = None
    mesh: Any = None
    decode_layout: str = "auto"

    def __post_init__(self):
        check_decode_layout(self.decode_layout, InputError)

    @classmethod
    def random(cls, config: GemmaConfig, seed: int = 0, dtype="float32", norm_std: float = 0.0) -> Model:
        params = init_params(config, jax.random.PRNGKey(seed), resolve_dtype(dtype), norm_std)
        return cls(config=config, params=params, source=f"random(seed={seed})")

    @property
    def dtype(self):
        return self.params["embed"].dtype


def on_mesh(model: Model, *arrays) -> tuple:
    """Batch-major arrays split over the model's mesh (unchanged without one; ``None`` stays ``None``)."""
    if model.mesh is None or any(isinstance(x, jax.core.Tracer) for x in arrays):
        return arrays
    from jaxsteer.sharding import place_rows

    return tuple(None if x is None else place_rows(model.mesh, x) for x in arrays)


def batch_shards(model: Model) -> int:
    """How many ways the model's mesh splits a batch's rows (``data × fsdp``; 1 without a mesh): rows that are
    a multiple of it are split, other row counts run replicated on every shard."""
    if model.mesh is None:
        return 1
    from jaxsteer.sharding import batch_devices

    return batch_devices(model.mesh)


def _concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def check_tokens(config: GemmaConfig, input_ids, attention_mask=None):
    """``input_ids`` and ``attention_mask`` as int32 ``[B, T]``, checked (one-line ``InputError``s). Host
    arrays stay numpy: a jitted call transfers them as they are, whereas ``jnp.asarray`` of a host array
    compiles a copy program for every new shape (one XLA compile per batch width)."""
    input_ids = np.asarray(input_ids) if _is_host(input_ids) else input_ids
    if not jnp.issubdtype(input_ids.dtype, jnp.integer):
        raise InputError(f"input_ids must be integers, got {input_ids.dtype}")
    input_ids = host_or_device(input_ids, np.int32)
    if input_ids.ndim != 2:
        raise InputError(f"input_ids must be [batch, time], got shape {tuple(input_ids.shape)}")
    if input_ids.shape[1] == 0:
        raise InputError("input_ids is empty along time")
    if _concrete(input_ids):
        ids = np.asarray(input_ids)
        bad = ids[(ids < 0) | (ids >= config.vocab_size)]
        if bad.size:
            raise InputError(f"token id {int(bad[0])} is outside the vocabulary (0..{config.vocab_size - 1})")
    if attention_mask is None:
        return input_ids, None
    if _is_host(attention_mask):
        attention_mask = np.asarray(attention_mask)
    if attention_mask.shape != input_ids.shape:
        raise InputError(f"attention_mask has shape {tuple(attention_mask.shape)}, expected {tuple(input_ids.shape)}")
    if _concrete(attention_mask):
        m = np.asarray(attention_mask)
        if not np.isin(m, (0, 1)).all():
            raise InputError("attention_mask must hold only 0 (padding) and 1 (real token)")
        if not np.all(m.sum(1) > 0):
            raise InputError("attention_mask has a row with no real token")
    return input_ids, host_or_device(attention_mask, np.int32)


def ones_mask(input_ids):
    """The all-real mask of ``input_ids``, where the ids are (host or device)."""
    xp = np if _is_host(input_ids) else jnp
    return xp.ones(input_ids.shape, xp.int32)


def host_or_device(x, dtype):
    """``x`` as ``dtype``, left where it is: a host array stays numpy (see :func:`check_tokens`)."""
    if _is_host(x):
        return np.asarray(x, dtype)
    return x if x.dtype == dtype else x.astype(dtype)


def _is_host(x) -> bool:
    return not isinstance(x, jax.Array | jax.core.Tracer)


def check_new_tokens(config: GemmaConfig, prompt_len: int, max_new_tokens: Any) -> int:
    """``max_new_tokens`` as an int in 1 .. context − prompt length, else a one-line ``InputError`` saying both
    numbers: past ``max_position_embeddings`` the model has never seen the positions (and 10¹⁰ overflows)."""
    if isinstance(max_new_tokens, float) and max_new_tokens.is_integer():
        max_new_tokens = int(max_new_tokens)
    if isinstance(max_new_tokens, (bool, np.bool_)) or not isinstance(max_new_tokens, (int, np.integer)):
        raise InputError(f"max_new_tokens={max_new_tokens!r} must be a whole number of tokens")
    n, context = int(max_new_tokens), int(config.max_position_embeddings)
    if n < 1:
        raise InputError(f"max_new_tokens={n} must be at least 1")
    if prompt_len + n > context:
        room = max(context - prompt_len, 0)
        raise InputError(
            f"max_new_tokens={n} exceeds the model's context: {prompt_len} prompt + {n} new tokens > "
            f"{context} positions (max_position_embeddings); at most {room} new tokens fit"
        )
    return n


def _logits_request(logits_at, batch: int):
    if logits_at is None or (isinstance(logits_at, str) and logits_at == "all"):
        return "all", None
    if isinstance(logits_at, str):
        if logits_at not in ("last", "none"):
            raise InputError(f"logits_at={logits_at!r}: expected None, 'all', 'last', 'none' or an index array")
        return logits_at, None
    index = host_or_device(logits_at, np.int32)
    if index.ndim == 0 or index.shape[0] != batch:
        raise InputError(f"logits_at index array has shape {tuple(index.shape)}, expected [{batch}] or [{batch}, K]")
    return "index", index


def forward(
    model: Model,
    input_ids,
    attention_mask=None,
    steering: Steering | None = None,
    return_hidden: bool = False,
    logits_at=None,
    positions=None,
    impl: str = "auto",
) -> ForwardOutput:
    """Run the decoder.

    Args:
      input_ids: ``[B, T]`` token ids (left padding allowed).
      attention_mask: ``[B, T]`` 1 for real tokens; positions then count real tokens only.
      steering: a ``Steering`` plan; ``None`` runs the plain model.
      return_hidden: also return ``[L+1, B, T, D]`` fp32 hidden states (``[0]`` scaled embeddings,
        ``[l+1]`` the output of block ``l`` including its steering delta, not normed).
      logits_at: ``None``/``"all"`` → ``[B, T, V]``; ``"last"`` → ``[B, V]`` at each row's last real
        token; an index array ``[B]`` or ``[B, K]`` → logits there; ``"none"`` → no head at all.
      impl: attention kernel, ``"auto"`` | ``"xla"`` | ``"cudnn"`` | ``"splash"`` (see ``attention.resolve_impl``).
    """
    run = _forward_call(model, input_ids, attention_mask, steering, return_hidden, logits_at, positions, impl)
    return ahead.call(run)


def compile_forward_ahead(model: Model, rows: int, width: int, steering=None, logits_at="last") -> int:
    """Start compiling, in the background (:mod:`jaxsteer.ahead`), the program a later :func:`forward` of
    ``rows`` × ``width`` tokens with this steering's structure and this logits request runs."""
    ids, mask = ahead.placeholder_batch(rows, width)
    return ahead.start([_forward_call(model, ids, mask, steering, False, logits_at, None, "auto")])


def _forward_call(model, input_ids, attention_mask, steering, return_hidden, logits_at, positions, impl):
    """The checked :func:`forward_core` call of one :func:`forward`, every argument given."""
    config = model.config
    input_ids, attention_mask = check_tokens(config, input_ids, attention_mask)
    if steering is not None:
        steering.check_applicable(config, input_ids.shape)
    mode, index = _logits_request(logits_at, input_ids.shape[0])
    if positions is not None:
        positions = host_or_device(positions, np.int32)
        if positions.shape != input_ids.shape:
            raise InputError(f"positions have shape {tuple(positions.shape)}, expected {tuple(input_ids.shape)}")
    input_ids, attention_mask, positions, index = on_mesh(model, input_ids, attention_mask, positions, index)
    if steering is not None and steering.mask is not None:
        steering = steering.replace(mask=on_mesh(model, steering.mask)[0])
    return functools.partial(
        forward_core,
        model.params,
        input_ids,
        attention_mask,
        positions,
        steering,
        index,
        config=config,
        return_hidden=bool(return_hidden),
        logits_mode=mode,
        impl=resolve_impl(impl, model.dtype),
    )
