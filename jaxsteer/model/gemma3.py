"""Gemma-3 as a :class:`~jaxsteer.model.family.Family`: the block, the weight shapes, the HF names, the config
parser and the EOS defaults in one object (the maths stays in ``transformer.py``, the parser in ``config.py``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from jaxsteer.config import GemmaConfig
from jaxsteer.model.family import register
from jaxsteer.model.transformer import block, fuse_projections, layer_shapes

HF_LAYER_NAMES: Mapping[str, str] = MappingProxyType(
    {
        "input_layernorm": "input_layernorm",
        "self_attn.q_proj": "q_proj",
        "self_attn.k_proj": "k_proj",
        "self_attn.v_proj": "v_proj",
        "self_attn.o_proj": "o_proj",
        "self_attn.q_norm": "q_norm",
        "self_attn.k_norm": "k_norm",
        "post_attention_layernorm": "post_attention_layernorm",
        "pre_feedforward_layernorm": "pre_feedforward_layernorm",
        "mlp.gate_proj": "gate_proj",
        "mlp.up_proj": "up_proj",
        "mlp.down_proj": "down_proj",
        "post_feedforward_layernorm": "post_feedforward_layernorm",
    }
)


def eos_ids(config: GemmaConfig) -> tuple[int, ...]:
    """EOS, plus ``<end_of_turn>`` for the real Gemma-3 vocabulary (instruction-tuned checkpoints end turns with it)."""
    if config.vocab_size > 200_000:
        return (config.eos_token_id, config.end_of_turn_token_id)
    return (config.eos_token_id,)


@dataclasses.dataclass(frozen=True)
class Gemma3Family:
    name: str = "gemma3"
    block: Callable[..., Any] = block
    layer_shapes: Callable[[Any], dict[str, tuple[int, ...]]] = layer_shapes
    hf_layer_names: Mapping[str, str] = dataclasses.field(default_factory=lambda: HF_LAYER_NAMES)
    config_from_hf: Callable[[Any], Any] = GemmaConfig.from_hf
    eos_ids: Callable[[Any], tuple[int, ...]] = eos_ids
    fuse_layer: Callable[[Any], Any] = fuse_projections


GEMMA3 = register(Gemma3Family())
