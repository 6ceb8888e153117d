"""The CLA optimizer: a learning-rate schedule and AdamW on the trainable leaves only."""

from __future__ import annotations

import jax.numpy as jnp
import optax

from jaxsteer.cla.config import TrainConfig, warmup_steps


def make_schedule(cfg: TrainConfig) -> optax.Schedule:
    """Linear warmup to ``lr``, then ``lr·√(W/step)`` (inverse-sqrt), cosine to ``min_lr_ratio·lr``, or constant."""
    o, w = cfg.optim, warmup_steps(cfg)
    if o.schedule == "cosine":  # shifted by one like the others: optax's is 0 at count 0, a wasted first update
        cosine = optax.warmup_cosine_decay_schedule(0.0, o.lr, w, max(cfg.steps, w + 1), o.lr * o.min_lr_ratio)
        return lambda step: cosine(jnp.asarray(step) + 1)

    def schedule(step):
        s = jnp.asarray(step, jnp.float32) + 1.0  # the first update already uses a non-zero rate
        warm = o.lr * jnp.minimum(1.0, s / max(w, 1))
        if o.schedule == "constant":
            return warm
        return jnp.where(s <= w, warm, o.lr * jnp.sqrt(max(w, 1) / s))

    return schedule


def make_optimizer(cfg: TrainConfig, labels: dict, decay_mask) -> optax.GradientTransformation:
    """Clip + AdamW on the ``train`` leaves, nothing (no state) on the ``frozen`` ones; ``decay_mask(params)``."""
    o = cfg.optim
    inner = optax.chain(
        optax.clip_by_global_norm(o.clip_norm) if o.clip_norm > 0 else optax.identity(),
        optax.adamw(make_schedule(cfg), o.b1, o.b2, o.eps, weight_decay=o.weight_decay, mask=decay_mask),
    )
    return optax.multi_transform({"train": inner, "frozen": optax.set_to_zero()}, labels)
