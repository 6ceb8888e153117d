"""The model organism's synthetic multilingual world (issue 6): languages, facts, corpora, tokenizer.

    from jaxsteer.organism import World, WorldConfig, write_world
    world = World(WorldConfig(seed=0))
    counts = write_world(world, "out/organism_data")   # every file in the real datasets' schemas

See :mod:`jaxsteer.organism.world` (the world and its knobs), :mod:`jaxsteer.organism.corpus` (sentences,
corpora, evaluation files) and :mod:`jaxsteer.organism.tokenizer` (the word-level tokenizer).
"""

from __future__ import annotations

import importlib

# Loaded on first use (PEP 562): `jaxsteer demo --help` reads the pretraining defaults from
# jaxsteer.organism.model, which must not pull NumPy and the tokenizer library in with this package.
_EXPORTS = {
    "DEFAULT_LANGUAGES": "jaxsteer.organism.config",
    "WorldConfig": "jaxsteer.organism.config",
    "align_corpus": "jaxsteer.organism.corpus",
    "blend_items": "jaxsteer.organism.corpus",
    "chat": "jaxsteer.organism.corpus",
    "gmmlu_items": "jaxsteer.organism.corpus",
    "mc_context": "jaxsteer.organism.corpus",
    "pretrain_corpus": "jaxsteer.organism.corpus",
    "sa_context": "jaxsteer.organism.corpus",
    "write_world": "jaxsteer.organism.corpus",
    "build_tokenizer": "jaxsteer.organism.tokenizer",
    "load_tokenizer": "jaxsteer.organism.tokenizer",
    "train_tokenizer": "jaxsteer.organism.tokenizer",
    "World": "jaxsteer.organism.world",
}

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


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'jaxsteer.organism' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
