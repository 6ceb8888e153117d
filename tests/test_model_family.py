"""The model-family seam: Gemma-3 implements the protocol, and the layer runner, the loader's shapes and the
generation defaults go through the config's family — a stub family with another block changes what runs."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsteer
from jaxsteer.config import GemmaConfig, tiny
from jaxsteer.errors import ConfigError
from jaxsteer.model import family as F
from jaxsteer.model.gemma3 import GEMMA3
from jaxsteer.model.transformer import block, layer_shapes, prepare, run_layers


def test_gemma3_implements_the_protocols():
    assert isinstance(GEMMA3, F.Family) and isinstance(tiny(), F.DecoderConfig)
    assert F.family_of(tiny()) is GEMMA3 and GEMMA3.block is block and GEMMA3.layer_shapes is layer_shapes
    assert set(GEMMA3.hf_layer_names.values()) == set(layer_shapes(tiny()))
    assert GEMMA3.eos_ids(tiny()) == (1,) and GEMMA3.eos_ids(tiny(vocab_size=262144)) == (1, 106)


@dataclasses.dataclass(frozen=True)
class OtherConfig(GemmaConfig):
    family = "other"  # a ClassVar: not a field, as on GemmaConfig


def test_the_runner_uses_the_family_block(model_factory, batch):
    """A registered family whose block is Gemma's plus one: every layer adds exactly 1 to the stream."""

    def shifted(p, h, ctx, is_global, config, impl, attend=None, proj=None):
        h, kv = block(p, h, ctx, is_global, config, impl, attend, **({"proj": proj} if proj else {}))
        return h + 1.0, kv

    other = dataclasses.replace(GEMMA3, name="other", block=shifted, eos_ids=lambda c: (7,))
    F.register(other)
    try:
        model = model_factory(tiny(num_layers=2), seed=1)
        cfg = OtherConfig(**{f.name: getattr(model.config, f.name) for f in dataclasses.fields(GemmaConfig)})
        ids, mask = map(jnp.asarray, batch)
        run = jax.jit(lambda params, c: run_layers(params["layers"], *prepare(params, ids, mask, config=c), config=c)[0],
                      static_argnums=1)  # fmt: skip
        first_layer_only = jax.jit(
            lambda params, c: run_layers(params["layers"], *prepare(params, ids, mask, config=c), config=c, stop=1)[0],
            static_argnums=1,
        )
        base = np.asarray(run(model.params, model.config))
        assert np.abs(np.asarray(run(model.params, cfg)) - base).max() > 0.5  # the stub block ran
        h1 = np.asarray(first_layer_only(model.params, cfg))
        np.testing.assert_allclose(h1, np.asarray(first_layer_only(model.params, model.config)) + 1.0, atol=1e-5)
        from jaxsteer.model.decode import default_eos_ids

        assert default_eos_ids(cfg) == (7,)
    finally:
        F.FAMILIES.pop("other", None)
    with pytest.raises(ConfigError, match="model family 'other' is not known"):
        F.family_of(cfg)


def test_real_sizes_through_the_family():
    """The loader's and the mesh check's shapes come from the family: the 12B's parameter count."""
    cfg = jaxsteer.config.gemma3_12b()
    per_layer = sum(int(np.prod(s)) for s in F.family_of(cfg).layer_shapes(cfg).values())
    total = cfg.num_layers * per_layer + cfg.vocab_size * cfg.hidden_size
    assert 11.7e9 < total < 12.3e9
