"""The ``Steering`` pytree: what to add, how strongly, and where.

"Steer at layer l" adds ``γ_l · v_l`` to the output of decoder block ``l`` (0-based) — HF's
``hidden_states[l + 1]`` and the output of a forward hook on ``model.layers[l]``. Vectors are dense
``[L, D]`` (zero rows where unsteered) and gammas ``[..., L]``, so the forward pass feeds one row
per layer into its layer scan and changing a value never recompiles. Leading axes on ``gamma`` are
sweep axes: ``jax.vmap`` over them works, and so does the library's shared-prefix sweep.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from jaxsteer.errors import InputError
from jaxsteer.model.family import DecoderConfig

SCOPES = ("all", "prompt", "generated", "from", "mask")


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


@flax.struct.dataclass
class Steering:
    """Per-layer additive steering.

    Attributes:
      vectors: ``[L, D]`` fp32 directions, zero where a layer is not steered.
      gamma: ``[..., L]`` fp32 strengths; leading axes are sweep axes.
      mask: ``[B, T]`` explicit position mask (scope ``"mask"``), in the index space of the input
        (for ``generate``: prompt indices then generated indices).
      start: first absolute position steered (scope ``"from"``).
      scope: ``"all"`` | ``"prompt"`` | ``"generated"`` | ``"from"`` | ``"mask"``.
    """

    vectors: Float[Array, "L D"]
    gamma: Float[Array, "*G L"]
    mask: Bool[Array, "B T"] | None = None
    start: Int[Array, ""] | None = None
    scope: str = flax.struct.field(pytree_node=False, default="all")

    @classmethod
    def from_layers(
        cls,
        config: DecoderConfig,
        vectors: Mapping[int, Any],
        gamma: float | Mapping[int, float] | Any = 1.0,
        scope: str | int | Any = "all",
    ) -> Steering:
        """Build a plan from ``{layer: vector}``; ``gamma`` is one value, ``{layer: value}`` or ``[..., L]``."""
        if not vectors:
            raise InputError("no steering vectors given: pass {layer: vector}")
        num_layers, width = config.num_layers, config.hidden_size
        dense = np.zeros((num_layers, width), np.float32)
        for layer, vec in vectors.items():
            check_layer(layer, num_layers)
            vec = np.asarray(vec, np.float32)
            if vec.shape != (width,):
                raise InputError(f"steering vector for layer {layer} has shape {vec.shape}, expected ({width},)")
            dense[layer] = vec
        if isinstance(gamma, Mapping):
            g = np.zeros(num_layers, np.float32)
            for layer, value in gamma.items():
                check_layer(layer, num_layers)
                if layer not in vectors:
                    raise InputError(f"gamma given for layer {layer}, which has no steering vector")
                g[layer] = value
            missing = sorted(set(vectors) - set(gamma))
            if missing:  # γ = 0 there would drop the vector silently while steered_layers still lists it
                raise InputError(f"layer {missing[0]} has a steering vector but no gamma in the mapping")
            gammas = jnp.asarray(g)
        elif np.ndim(gamma) == 0:
            g = np.zeros(num_layers, np.float32)
            g[list(vectors)] = float(gamma)
            gammas = jnp.asarray(g)
        else:
            gammas = jnp.asarray(gamma, jnp.float32)
        mask, start, kind = _parse_scope(scope)
        plan = cls(vectors=jnp.asarray(dense), gamma=gammas, mask=mask, start=start, scope=kind)
        plan.validate(config)
        return plan

    @classmethod
    def zeros(cls, config: DecoderConfig, scope: str = "all") -> Steering:
        return cls.from_layers(config, {0: np.zeros(config.hidden_size)}, 0.0, scope)

    def with_gamma(self, gamma) -> Steering:
        return self.replace(gamma=jnp.asarray(gamma, jnp.float32))

    @property
    def steered_layers(self) -> tuple[int, ...]:
        """Layers whose vector is non-zero (needs concrete vectors)."""
        return tuple(int(i) for i in np.flatnonzero(np.any(np.asarray(self.vectors) != 0, axis=-1)))

    def deltas(self) -> Float[Array, "*G L D"]:
        return self.gamma.astype(jnp.float32)[..., None] * self.vectors.astype(jnp.float32)

    def host_deltas(self) -> Float[np.ndarray, "*G L D"]:
        """:meth:`deltas` on the host, for building plan grids (the same fp32 products; eagerly on the device
        each new shape compiled small programs that a first run waited for)."""
        return np.asarray(self.gamma, np.float32)[..., None] * np.asarray(self.vectors, np.float32)

    def position_mask(
        self, positions: Int[Array, "B T"], prompt_lengths: Int[Array, "B"], index: Int[Array, "T"]
    ) -> Bool[Array, "B T"]:
        """Which tokens get the delta, by absolute position (so it survives KV-cache decoding)."""
        if self.scope == "all":
            return jnp.ones(positions.shape, bool)
        if self.scope == "prompt":
            return positions < prompt_lengths[:, None]
        if self.scope == "generated":
            return positions >= prompt_lengths[:, None]
        if self.scope == "from":
            return positions >= self.start
        return jnp.take(self.mask, index, axis=1, mode="fill", fill_value=False)

    def check_applicable(self, config: DecoderConfig, mask_shape: tuple[int, int], mask_meaning: str = "") -> None:
        """One plan for one run: valid, no sweep axes on γ, an explicit mask of ``mask_shape``."""
        self.validate(config)
        if self.gamma.ndim != 1:
            raise InputError(
                f"gamma has sweep axes {tuple(self.gamma.shape[:-1])}: apply one plan at a time "
                "(vmap over them, or use jaxsteer.steering.sweep)"
            )
        if self.scope == "mask" and tuple(self.mask.shape) != tuple(mask_shape):
            raise InputError(
                f"steering mask has shape {tuple(self.mask.shape)}, expected {tuple(mask_shape)}{mask_meaning}"
            )

    def validate(self, config: DecoderConfig) -> None:
        """Shape checks always; value checks (NaN/inf) when the arrays are concrete."""
        if self.vectors.shape != (config.num_layers, config.hidden_size):
            raise InputError(
                f"steering vectors have shape {tuple(self.vectors.shape)}, expected "
                f"({config.num_layers}, {config.hidden_size}) for this model"
            )
        if self.gamma.shape[-1:] != (config.num_layers,):
            raise InputError(f"gamma has shape {tuple(self.gamma.shape)}, expected (..., {config.num_layers})")
        for name in ("vectors", "gamma"):
            value = getattr(self, name)
            if _is_concrete(value) and not bool(np.all(np.isfinite(np.asarray(value)))):
                what = "gamma (γ) contains" if name == "gamma" else "vectors contain"
                raise InputError(f"steering {what} NaN or inf")


def first_steered_layer(deltas: Float[np.ndarray, "G L D"]) -> int:
    """The lowest layer any of a grid's dense deltas steers (``L`` when none does): blocks below it are shared."""
    rows = np.flatnonzero(np.any(np.asarray(deltas) != 0, axis=(0, 2)))
    return int(rows[0]) if rows.size else np.shape(deltas)[1]


def check_layer(layer: int, num_layers: int) -> None:
    if isinstance(layer, (bool, np.bool_)) or not isinstance(layer, (int, np.integer)):
        raise InputError(f"layer {layer!r} is not an integer layer index")
    if not 0 <= int(layer) < num_layers:
        raise InputError(f"layer {layer} out of range for a {num_layers}-layer model (0..{num_layers - 1})")


def _parse_scope(scope):
    if isinstance(scope, str):
        if scope not in ("all", "prompt", "generated"):
            raise InputError(f"steering scope {scope!r}: expected all, prompt, generated, a start position or a mask")
        return None, None, scope
    if isinstance(scope, (int, np.integer)):
        if scope < 0:
            raise InputError(f"steering start position {scope} is negative")
        return None, jnp.asarray(scope, jnp.int32), "from"
    mask = jnp.asarray(scope)
    if mask.dtype != jnp.bool_ or mask.ndim != 2:
        raise InputError(f"steering mask must be a boolean [B, T] array, got {mask.dtype}{tuple(mask.shape)}")
    return mask, None, "mask"
