"""The seam between the generic machinery and one model family.

The layer runner, decoding, steering (plans, extraction, sweeps, vector files), CLA training and the mesh
rules read a config only through :class:`DecoderConfig` — sizes, the per-layer global/local flags, special
token ids — and reach the family-specific pieces only through :class:`Family`: its decoder block, its
per-layer weight shapes, its Hugging Face parameter names, its config parser and its EOS defaults.
Gemma-3 (:mod:`jaxsteer.model.gemma3`) is the one family today; another (a Llama-style block, say) is a
module that implements the same protocol and registers itself in :data:`FAMILIES` under the name its
config's ``family`` attribute carries.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class DecoderConfig(Protocol):
    """What the generic code reads of a model config (a frozen, hashable dataclass: it keys compiled code)."""

    family: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    sliding_window: int
    rms_norm_eps: float
    bos_token_id: int
    eos_token_id: int
    pad_token_id: int
    max_position_embeddings: int

    @property
    def is_global(self) -> tuple[bool, ...]: ...

    def config_hash(self) -> str: ...


@runtime_checkable
class Family(Protocol):
    """The pieces of one model family (see the module docstring)."""

    name: str
    # (p, h, ctx, is_global, config, impl, attend=None, proj=project, queries=None) → (h, (k, v)); ``queries``
    # [B, J]: compute only those positions' outputs (keys/values from all), h [B, J, D]
    block: Callable[..., Any]
    layer_shapes: Callable[[Any], dict[str, tuple[int, ...]]]  # per-layer weight shapes, [out, in] layout
    hf_layer_names: Mapping[str, str]  # HF name inside ``layers.{i}.`` → the params key
    config_from_hf: Callable[[Any], Any]  # a checkpoint folder / config.json / dict → its DecoderConfig
    eos_ids: Callable[[Any], tuple[int, ...]]  # the ids generation stops at by default
    # one layer's weights → the same layer for a per-layer copy (the unrolled decode layout): projections that
    # read the same input stacked into one matrix, which ``block`` recognises; the identity for a family without
    fuse_layer: Callable[[Any], Any]


FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    FAMILIES[family.name] = family
    return family


def family_of(config: DecoderConfig) -> Family:
    """The family a config belongs to (its ``family`` attribute)."""
    if not FAMILIES:
        import jaxsteer.model.gemma3  # noqa: F401 - registers itself

    name = getattr(config, "family", "gemma3")
    try:
        return FAMILIES[name]
    except KeyError:
        from jaxsteer.errors import ConfigError

        raise ConfigError(f"model family {name!r} is not known (known: {', '.join(sorted(FAMILIES))})") from None
