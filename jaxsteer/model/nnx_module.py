"""Gemma-3 as a Flax NNX module over the same stacked parameters.

The library computes with pure functions over a params pytree (``transformer.py``); this module wraps
that pytree in ``nnx.Param`` variables so the model composes with NNX code (``nnx.split``/``nnx.merge``,
``nnx.jit``, NNX optimizers and sharding annotations). There is one source of truth for the maths:
``__call__`` runs the same jitted ``forward_core``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxsteer.config import GemmaConfig
from jaxsteer.model.model import Model, forward
from jaxsteer.model.transformer import ForwardOutput, init_params


class Gemma3(nnx.Module):
    """``Gemma3(config, rngs=nnx.Rngs(0))`` for random weights, ``Gemma3.from_model(model)`` to wrap loaded ones."""

    def __init__(
        self,
        config: GemmaConfig,
        *,
        rngs: nnx.Rngs | None = None,
        dtype=jnp.float32,
        params=None,
        decode_layout: str = "auto",
    ):
        self.config = config
        self.decode_layout = decode_layout  # the Model's (to_model); static, not a Param
        if params is None:
            key = (rngs or nnx.Rngs(0)).params()
            params = init_params(config, key, dtype)
        self.embed = nnx.Param(params["embed"])
        self.final_norm = nnx.Param(params["final_norm"])
        # one Param per stacked per-layer array: the leading axis is the layer
        self.layers = nnx.Dict({k: nnx.Param(v) for k, v in params["layers"].items()})

    @classmethod
    def from_model(cls, model: Model) -> Gemma3:
        return cls(model.config, params=model.params, decode_layout=model.decode_layout)

    def params_tree(self) -> dict:
        return {
            "embed": self.embed[...],
            "final_norm": self.final_norm[...],
            "layers": {k: v[...] for k, v in self.layers.items()},
        }

    def to_model(self) -> Model:
        return Model(
            config=self.config,
            params=self.params_tree(),
            source="nnx",
            decode_layout=self.decode_layout,
        )

    def __call__(
        self, input_ids, attention_mask=None, steering=None, return_hidden=False, logits_at=None, impl: str = "auto"
    ) -> ForwardOutput:
        return forward(self.to_model(), input_ids, attention_mask, steering, return_hidden, logits_at, impl=impl)


def count_params(module: Gemma3) -> int:
    return sum(x.size for x in jax.tree.leaves(nnx.state(module, nnx.Param)))
