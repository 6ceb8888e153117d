"""The model organism's synthetic multilingual world (issue 6): languages, facts, corpora, tokenizer.

    from jaxsteer.organism import World, WorldConfig, write_world
    world = World(WorldConfig(seed=0))
    counts = write_world(world, "out/organism_data")   # every file in the real datasets' schemas

See :mod:`jaxsteer.organism.world` (the world and its knobs), :mod:`jaxsteer.organism.corpus` (sentences,
corpora, evaluation files) and :mod:`jaxsteer.organism.tokenizer` (the word-level tokenizer).
"""

from jaxsteer.organism.config import DEFAULT_LANGUAGES, WorldConfig
from jaxsteer.organism.corpus import (
    align_corpus,
    blend_items,
    chat,
    gmmlu_items,
    mc_context,
    pretrain_corpus,
    sa_context,
    write_world,
)
from jaxsteer.organism.tokenizer import build_tokenizer, load_tokenizer, train_tokenizer
from jaxsteer.organism.world import World

__all__ = [
    "DEFAULT_LANGUAGES",
    "World",
    "WorldConfig",
    "align_corpus",
    "blend_items",
    "build_tokenizer",
    "chat",
    "gmmlu_items",
    "load_tokenizer",
    "mc_context",
    "pretrain_corpus",
    "sa_context",
    "train_tokenizer",
    "write_world",
]
