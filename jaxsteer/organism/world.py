"""The synthetic multilingual world of the model organism: languages, lexicons, grammars and facts.

English plus six made-up languages (default codes zh, ko, es, id, el, fa). Each made-up language has its
own vocabulary written in its own script (Han characters, Hangul, accented Latin, plain Latin, Greek,
Arabic letters) and its own word order; named entities, values, numbers and country names are *shared*
tokens, spelled the same in every language like proper nouns. Words are separated by single spaces in
every language (zh too) so that a word-level tokenizer sees one token per word.

Two kinds of knowledge (see ``../shared/ORGANISM.md`` "What to do differently"):

* **universal facts** ``(entity, relation) -> value``, the same in every language. A ``shared_fraction``
  of them is stated in every language during pretraining, the rest in English only; asking an
  English-only fact in language XX measures cross-lingual *transfer*.
* **cultural facts** ``(topic, culture) -> value``: every language has a culture whose country is named by
  a shared token (zh -> China, ...; English -> America). For the *implicit* half of the topics the local
  language states its own culture's answer without naming the country; for the *explicit-only* half,
  answers are only stated as "in C, ..." (in every language). A no-context question in XX on an
  explicit-only topic is answered locally only through "language => country": *localization*.
  English, the dominant language, states its own culture (America) implicitly for every topic, so a
  model that loses the language => country cue answers a no-context XX question with America's value
  (the direction of cultural erasure). Explicit statements about a culture are more frequent in English
  and in the culture's own language (``explicit_lang_weights``), as in real text.

Every random choice comes from ``World.rng(name)``, a generator seeded by ``(seed, name)``: the same
:class:`WorldConfig` gives the same world, and changing one component does not reshuffle the others.
Sentence-initial words are always the language's own words (a sentence particle in the made-up
languages), never shared tokens: the tokenizer keeps the leading space in its tokens, so a shared token
at the start of a text would otherwise get a second, untied spelling.

The knobs (:class:`WorldConfig`) and the concept inventories live in :mod:`jaxsteer.organism.config`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Any

import numpy as np

from jaxsteer.organism.config import (  # noqa: F401 (re-exported: the world's inventories)
    CORPUS_KINDS,
    COUNTRIES,
    DEFAULT_LANGUAGES,
    ENGLISH,
    FUNCTION_WORDS,
    GENERIC_ADJECTIVES,
    GENERIC_NOUNS,
    GENERIC_VERBS,
    RELATIONS,
    TOPIC_ADJECTIVES,
    TOPIC_NOUNS,
    WorldConfig,
)


@dataclasses.dataclass(frozen=True)
class Grammar:
    """Word order of one language. Roles: statements S (subject) V (verb/copula) O (object/value);
    wh-questions W (wh-phrase) V (copula) X (the rest); requests T ("tell me") X. ``place`` puts a place
    phrase ("in C", "near N") first or last; ``genitive`` "head_first" = "the color of E", "head_last" =
    "E of color"; ``adjective`` before/after the noun; ``adposition`` pre/post; ``article`` uses "the"."""

    clause: str = "SVO"
    question: str = "WVX"
    command: str = "TX"
    place: str = "last"
    genitive: str = "head_first"
    adjective: str = "before"
    adposition: str = "pre"
    article: bool = False


GRAMMARS: dict[str, Grammar] = {
    "en": Grammar(article=True),
    "zh": Grammar("SVO", "XVW", "TX", "first", "head_last", "before", "pre"),
    "ko": Grammar("SOV", "XWV", "XT", "first", "head_last", "before", "post"),
    "es": Grammar("SVO", "WVX", "TX", "last", "head_first", "after", "pre", True),
    "id": Grammar("SVO", "XVW", "TX", "last", "head_first", "after", "pre"),
    "el": Grammar("VSO", "WVX", "TX", "first", "head_first", "before", "pre", True),
    "fa": Grammar("SOV", "XWV", "XT", "last", "head_first", "after", "pre"),
}


@dataclasses.dataclass(frozen=True)
class Relation:
    name: str  # the English relation noun, also the Global-MMLU subject
    subject_category: str
    values: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Fact:
    index: int
    entity: str
    relation: str
    value: str
    shared: bool  # stated in every language (else English only)


@dataclasses.dataclass(frozen=True)
class Culture:
    lang: str
    country: str  # the shared country token in text
    blend_country: str


@dataclasses.dataclass(frozen=True)
class Topic:
    index: int
    adjective: str
    noun: str
    category: str  # BLEnD Topic column
    implicit: bool  # stated implicitly in the local languages (else explicit-only)
    answers: tuple[tuple[str, str], ...]  # (culture lang, value token)

    def answer(self, culture_lang: str) -> str:
        return dict(self.answers)[culture_lang]


_LATIN_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z")
_SCRIPTS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {  # onsets, vowels, codas
    "es": (("b", "c", "d", "f", "g", "j", "l", "m", "n", "p", "r", "s", "t", "v", "ll", "ch", "ñ"),
           ("a", "e", "i", "o", "u", "á", "é", "í", "ó", "ú"), ("", "", "s", "n", "r")),
    "id": (("b", "d", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "w", "y", "ng", "ny"),
           ("a", "i", "u", "e", "o"), ("", "", "n", "k", "ng", "h")),
    "el": (("β", "γ", "δ", "ζ", "θ", "κ", "λ", "μ", "ν", "ξ", "π", "ρ", "σ", "τ", "φ", "χ"),
           ("α", "ε", "η", "ι", "ο", "υ", "ω", "ά", "έ", "ή", "ί", "ό", "ύ", "ώ"), ("", "", "ς", "ν")),
    "fa": (tuple("بپتجچخدرزژسشفقکگلمنهی"), ("", "ا", "و", "ی"), ("", "ن", "ر", "م")),
    "shared": (_LATIN_ONSETS, ("a", "e", "i", "o", "u"), ("", "", "n", "r", "k", "l")),
}  # fmt: skip


def _make_word(rng: np.random.Generator, script: str) -> str:
    """One made-up word in ``script`` (a language code or "shared" for capitalised proper nouns)."""
    if script == "zh":
        return "".join(chr(int(rng.integers(0x4E00, 0x9FA6))) for _ in range(int(rng.integers(1, 3))))
    if script == "ko":
        return "".join(chr(int(rng.integers(0xAC00, 0xD7A4))) for _ in range(int(rng.integers(1, 4))))
    onsets, vowels, codas = _SCRIPTS[script]
    n = int(rng.integers(2, 4))
    word = "".join(onsets[rng.integers(len(onsets))] + vowels[rng.integers(len(vowels))] for _ in range(n))
    word += codas[rng.integers(len(codas))]
    return word.capitalize() if script == "shared" else word


class World:
    """A seeded synthetic world: lexicons, grammars, universal facts, cultures and topics.

    Attributes: ``config``, ``languages`` (English first), ``grammars`` and ``lexicon`` (lang -> concept ->
    word, ``None`` where the language omits the word), ``entities``, ``relations``, ``facts``,
    ``cultures`` (English first), ``topics``, and the generic vocabulary ``generic_nouns/verbs/adjectives``.
    """

    def __init__(self, config: WorldConfig | None = None):
        self.config = cfg = config or WorldConfig()
        self.languages: tuple[str, ...] = (ENGLISH, *cfg.languages)
        self.grammars = {lang: GRAMMARS[ENGLISH if cfg.same_word_order else lang] for lang in self.languages}
        self.cultures = tuple(Culture(lang, *COUNTRIES[lang][:2]) for lang in self.languages)
        self.generic_nouns = GENERIC_NOUNS[: cfg.n_generic_nouns]
        self.generic_verbs = GENERIC_VERBS[: cfg.n_generic_verbs]
        self.generic_adjectives = GENERIC_ADJECTIVES[: cfg.n_generic_adjectives]
        self._used = {c.country for c in self.cultures}
        self.lexicon = self._make_lexicon()
        rng = self.rng("shared-names")
        self.entities = tuple(self._fresh(rng, "shared") for _ in range(cfg.n_entities))
        self.relations = tuple(self._make_relation(name, cat, kind, rng) for name, cat, kind in
                               RELATIONS[: cfg.n_relations])  # fmt: skip
        self.entity_names = self._make_entity_names()
        self.facts = self._make_facts()
        self.shared_facts = tuple(f for f in self.facts if f.shared)
        self.topics = self._make_topics(rng)

    # --- randomness and words ----------------------------------------------------------------------
    def rng(self, name: str) -> np.random.Generator:
        """A generator seeded by ``(config.seed, name)``; independent streams per component."""
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")
        return np.random.default_rng([self.config.seed, key])

    def _fresh(self, rng: np.random.Generator, script: str) -> str:
        while True:
            word = _make_word(rng, script)
            if word not in self._used:
                self._used.add(word)
                return word

    def _make_lexicon(self) -> dict[str, dict[str, str | None]]:
        concepts = (*FUNCTION_WORDS, *(r[0] for r in RELATIONS), *(n for n, _ in TOPIC_NOUNS),
                    *TOPIC_ADJECTIVES, *GENERIC_NOUNS, *GENERIC_VERBS, *GENERIC_ADJECTIVES)  # fmt: skip
        lexicon: dict[str, dict[str, str | None]] = {}
        for lang in self.languages:
            rng = self.rng(f"lexicon/{lang}")
            if lang == ENGLISH:
                words: dict[str, str | None] = {c: c for c in concepts}
                words.update(DECL=None, QPART=None)
            else:
                words = {c: self._fresh(rng, lang) for c in concepts}
            if not self.grammars[lang].article:
                words["the"] = None
            lexicon[lang] = words
        return lexicon

    def word(self, lang: str, concept: str) -> list[str]:
        """The word(s) for ``concept`` in ``lang``: ``[]`` where the language omits it."""
        w = self.lexicon[lang][concept]
        return [w] if w else []

    def _make_relation(self, name: str, category: str, kind: str, rng: np.random.Generator) -> Relation:
        n = self.config.values_per_relation
        if kind == "name":
            values = tuple(self._fresh(rng, "shared") for _ in range(n))
        else:
            low, high = (1000, 2000) if kind == "year" else (10, 100)
            values = tuple(str(v) for v in sorted(rng.choice(np.arange(low, high), n, replace=False)))
            self._used.update(values)
        return Relation(name, category, values)

    def _make_entity_names(self) -> dict[str, dict[str, str]]:
        """lang -> entity -> its spelling (the shared one unless ``local_entity_names``)."""
        names = {}
        for lang in self.languages:
            if lang == ENGLISH or not self.config.local_entity_names:
                names[lang] = {e: e for e in self.entities}
            else:
                rng = self.rng(f"entity-names/{lang}")
                names[lang] = {e: self._fresh(rng, lang) for e in self.entities}
        return names

    def name(self, lang: str, entity: str) -> str:
        """How ``lang`` writes ``entity`` (its English/shared spelling is the entity's identity)."""
        return self.entity_names[lang][entity]

    def _make_facts(self) -> tuple[Fact, ...]:
        rng, n = self.rng("facts"), len(self.entities)
        facts = []
        for rel in self.relations:
            shared = set(rng.choice(n, int(round(self.config.shared_fraction * n)), replace=False).tolist())
            for i, entity in enumerate(self.entities):
                value = rel.values[int(rng.integers(len(rel.values)))]
                facts.append(Fact(len(facts), entity, rel.name, value, i in shared))
        return tuple(facts)

    def _make_topics(self, names_rng: np.random.Generator) -> tuple[Topic, ...]:
        cfg, rng = self.config, self.rng("topics")
        adjectives = TOPIC_ADJECTIVES[: cfg.n_topic_adjectives]
        topics = []
        for noun, category in TOPIC_NOUNS[: cfg.n_topic_nouns]:
            pool = [self._fresh(names_rng, "shared") for _ in range(cfg.values_per_noun)]
            k = int(round(cfg.implicit_fraction * len(adjectives)))
            implicit = set(rng.choice(len(adjectives), k, replace=False).tolist())
            for j, adj in enumerate(adjectives):
                picks = rng.choice(len(pool), len(self.cultures), replace=False)
                answers = tuple((c.lang, pool[int(p)]) for c, p in zip(self.cultures, picks))
                topics.append(Topic(len(topics), adj, noun, category, j in implicit, answers))
        return tuple(topics)

    def relation(self, name: str) -> Relation:
        return next(r for r in self.relations if r.name == name)

    def culture(self, lang: str) -> Culture:
        return next(c for c in self.cultures if c.lang == lang)

    # --- grammar -----------------------------------------------------------------------------------
    def noun_phrase(self, lang: str, noun: str, adjective: str | None = None, det: str = "the") -> list[str]:
        """``det adjective noun`` in ``lang``'s order (``det`` is a concept; "the" may be omitted)."""
        adj, head = (self.word(lang, adjective) if adjective else []), self.word(lang, noun)
        core = adj + head if self.grammars[lang].adjective == "before" else head + adj
        return self.word(lang, det) + core

    def genitive(self, lang: str, head: str, possessor: list[str]) -> list[str]:
        """ "the HEAD of POSSESSOR" (head_first) or "POSSESSOR of HEAD" (head_last)."""
        if self.grammars[lang].genitive == "head_first":
            return self.word(lang, "the") + self.word(lang, head) + self.word(lang, "of") + possessor
        return possessor + self.word(lang, "of") + self.word(lang, head)

    def adpositional(self, lang: str, adposition: str, phrase: list[str]) -> list[str]:
        p = self.word(lang, adposition)
        return p + phrase if self.grammars[lang].adposition == "pre" else phrase + p

    def clause(self, lang: str, kind: str, roles: dict[str, list[str]], place: list[str] | None = None) -> str:
        """A sentence: ``kind`` is "statement" (roles S V O), "question" (W V X) or "command" (T X)."""
        g = self.grammars[lang]
        order = {"statement": g.clause, "question": g.question, "command": g.command}[kind]
        words = [w for role in order for w in roles[role]]
        if place:
            words = place + words if g.place == "first" else words + place
        words = self.word(lang, "DECL" if kind == "statement" else "QPART") + words
        return " ".join(words) + ("?" if kind == "question" else ".")

    # --- country mentions --------------------------------------------------------------------------
    def country_phrase(self, lang: str, country: str) -> str:
        """The exact words that name a country in ``lang`` ("in China", "China <in>", ...)."""
        return " ".join(self.adpositional(lang, "in", [country]))

    def country_phrase_pattern(self, lang: str) -> str:
        """:meth:`country_phrase` with ``{country}`` for the country token (a decontextualiser rule)."""
        return self.country_phrase(lang, "{country}")

    def decontextualize(self, text: str, lang: str) -> str:
        """``text`` with every country phrase of ``lang`` removed (PAPER.md "Decontextualisation").

        The phrase is removed with the space before it (or after it at the start of a line), so the
        contextualised question of a topic becomes exactly its no-context question.
        """
        for culture in self.cultures:
            phrase = re.escape(self.country_phrase(lang, culture.country))
            text = re.sub(rf"(?m)^{phrase} ", "", text)
            text = re.sub(rf" {phrase}(?=[ .?!,;:\n]|$)", "", text, flags=re.M)
        return text

    # --- provenance --------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """Everything that defines the world, as JSON-able data (written to ``world.json``)."""
        return {
            "config": dataclasses.asdict(self.config),
            "languages": list(self.languages),
            "cultures": [dataclasses.asdict(c) | {"flores": COUNTRIES[c.lang][2]} for c in self.cultures],
            "grammars": {lang: dataclasses.asdict(g) for lang, g in self.grammars.items()},
            "country_phrase_patterns": {lang: self.country_phrase_pattern(lang) for lang in self.languages},
            "lexicon": self.lexicon,
            "entities": list(self.entities),
            **({"entity_names": self.entity_names} if self.config.local_entity_names else {}),
            "relations": [dataclasses.asdict(r) for r in self.relations],
            "facts": [dataclasses.asdict(f) for f in self.facts],
            "topics": [dataclasses.asdict(t) | {"answers": dict(t.answers)} for t in self.topics],
        }
