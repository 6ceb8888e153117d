"""A word-level tokenizer for the synthetic world, trained locally and loadable by transformers.

One token per word *with its leading space* (``" Zorvak"``, ``" A"``), punctuation and ``"\\n"`` as
tokens of their own, so ``decode(encode(text)) == text`` for every text of the world and the
Global-MMLU continuations ``" A"`` ... ``" D"`` are single tokens. Special tokens follow Gemma's ids where
Gemma fixes them: ``<pad>`` 0, ``<eos>`` 1, ``<bos>`` 2, ``<unk>`` 3, then ``<start_of_turn>`` 4 and
``<end_of_turn>`` 5 (Gemma: 105/106; set the organism's ``GemmaConfig.end_of_turn_token_id`` to 5).
Like Gemma's, the tokenizer prepends ``<bos>`` and its chat template is Gemma's (text turns,
``assistant`` -> ``model``, contents trimmed).

Training runs ``tokenizers``' ``WordLevelTrainer`` over the corpus (special tokens are cut out first, as
in encoding) and then renumbers the words in sorted order after the special and required tokens: the Rust
trainer breaks count ties in hash-map order, which would make ids (and files) differ between runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from jaxsteer.errors import ConfigError
from jaxsteer.results import atomic_write
from jaxsteer.tokens import (  # noqa: F401 - the organism's vocabulary shares Gemma's special tokens
    BOS,
    CHAT_TEMPLATE,
    END_OF_TURN,
    EOS,
    PAD,
    SPECIAL_TOKENS,
    SPLIT_PATTERN,
    START_OF_TURN,
    UNK,
)

REQUIRED_TOKENS: tuple[str, ...] = (
    " A",
    " B",
    " C",
    " D",
    "A",
    "B",
    "C",
    "D",
    "\n",
    "Answer",
    ":",
    "user",
    "model",
)


def pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    """Words with their leading space, punctuation marks, and single whitespace characters."""
    return pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated")


def _base(vocab: dict[str, int]) -> Tokenizer:
    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizer()
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return tok


def train_tokenizer(texts: Iterable[str], *, max_vocab: int = 4096) -> Tokenizer:
    """A ``WordLevel`` tokenizer over every word of ``texts`` plus :data:`REQUIRED_TOKENS`."""
    trained = _base({t: i for i, t in enumerate(SPECIAL_TOKENS)})
    trainer = trainers.WordLevelTrainer(vocab_size=1 << 30, min_frequency=1, show_progress=False,
                                        special_tokens=list(SPECIAL_TOKENS))  # fmt: skip
    trained.train_from_iterator(dict.fromkeys(texts), trainer)
    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    for word in [*REQUIRED_TOKENS, *sorted(trained.get_vocab())]:
        vocab.setdefault(word, len(vocab))
    if len(vocab) > max_vocab:
        raise ConfigError(f"the world has {len(vocab)} distinct words, more than max_vocab={max_vocab}")
    tok = _base(vocab)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B:1", special_tokens=[(BOS, vocab[BOS])]
    )
    return tok


def save_tokenizer(tok: Tokenizer, folder: str | Path, *, model_max_length: int = 64) -> Path:
    """``tokenizer.json``, ``tokenizer_config.json`` and ``special_tokens_map.json`` for transformers."""

    folder = Path(folder)
    specials: dict[str, Any] = {"bos_token": BOS, "eos_token": EOS, "pad_token": PAD, "unk_token": UNK,
                                "additional_special_tokens": [START_OF_TURN, END_OF_TURN]}  # fmt: skip
    config = specials | {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": True,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": model_max_length,
        "chat_template": CHAT_TEMPLATE,
    }
    atomic_write(folder / "tokenizer.json", tok.to_str(pretty=True))
    atomic_write(folder / "tokenizer_config.json", json.dumps(config, ensure_ascii=False, indent=2))
    atomic_write(folder / "special_tokens_map.json", json.dumps(specials, indent=2))
    return folder


def build_tokenizer(texts: Sequence[str], folder: str | Path, *, model_max_length: int = 64) -> Tokenizer:
    """Train on ``texts``, check that every text round-trips without ``<unk>`` and fits, and save."""
    tok = train_tokenizer(texts)
    bad = check_roundtrip(tok, texts, max_tokens=model_max_length)
    if bad:
        raise ConfigError(f"{len(bad)} world texts do not round-trip or exceed {model_max_length} tokens: {bad[0]!r}")
    save_tokenizer(tok, folder, model_max_length=model_max_length)
    return tok


def check_roundtrip(tok: Tokenizer, texts: Iterable[str], *, max_tokens: int | None = None) -> list[str]:
    """The texts that decode differently, contain ``<unk>`` or (with ``<bos>``) exceed ``max_tokens``."""
    unk, texts = tok.token_to_id(UNK), list(dict.fromkeys(texts))
    ids = [e.ids for e in tok.encode_batch_fast(texts, add_special_tokens=True)]
    decoded = tok.decode_batch([i[1:] for i in ids], skip_special_tokens=False)
    limit = max_tokens if max_tokens is not None else float("inf")
    return [t for t, i, d in zip(texts, ids, decoded) if d != t or len(i) > limit or unk in i]


def load_tokenizer(folder: str | Path) -> Any:
    """The saved tokenizer through ``transformers.PreTrainedTokenizerFast.from_pretrained``."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(str(folder))
