"""The knobs and inventories of the organism's synthetic world (:class:`WorldConfig`).

The world itself (lexicons, grammars, facts, cultures) is built from them in :mod:`jaxsteer.organism.world`.
"""

from __future__ import annotations

import dataclasses

from jaxsteer.errors import ConfigError

ENGLISH = "en"
DEFAULT_LANGUAGES: tuple[str, ...] = ("zh", "ko", "es", "id", "el", "fa")

# lang -> (country token used in text, BLEnD file spelling, FLORES code)
COUNTRIES: dict[str, tuple[str, str, str]] = {
    "en": ("America", "United_States", "eng_Latn"),
    "zh": ("China", "China", "zho_Hans"),
    "ko": ("Korea", "South_Korea", "kor_Hang"),
    "es": ("Spain", "Spain", "spa_Latn"),
    "id": ("Indonesia", "Indonesia", "ind_Latn"),
    "el": ("Greece", "Greece", "ell_Grek"),
    "fa": ("Iran", "Iran", "pes_Arab"),
}

# Concept inventories. English words are the concepts themselves; DECL/QPART are the sentence particles.
FUNCTION_WORDS = ("the", "of", "is", "what", "which", "in", "near", "tell", "me", "about", "DECL", "QPART")
RELATIONS = (  # (relation noun, Global-MMLU subject_category, kind of value)
    ("city", "Social Sciences", "name"), ("color", "Other", "name"), ("year", "Humanities", "year"),
    ("river", "STEM", "name"), ("animal", "STEM", "name"), ("metal", "STEM", "name"),
    ("song", "Humanities", "name"), ("number", "STEM", "number"),
)  # fmt: skip
TOPIC_NOUNS = (  # (noun, BLEnD Topic)
    ("breakfast", "food"), ("festival", "holidays"), ("sport", "sport"), ("dish", "food"),
    ("drink", "food"), ("instrument", "leisure"), ("flower", "leisure"), ("game", "sport"),
    ("dance", "leisure"), ("fruit", "food"), ("snack", "food"), ("dessert", "food"),
)  # fmt: skip
TOPIC_ADJECTIVES = ("usual", "main", "popular", "favorite", "traditional", "common", "famous", "typical",
                    "national", "classic")  # fmt: skip
GENERIC_NOUNS = ("farmer", "child", "bridge", "house", "road", "tree", "boat", "book", "market", "garden",
                 "window", "door", "horse", "dog", "bird", "stone", "hill", "lake", "village", "table",
                 "letter", "lamp", "field", "forest", "ship", "wall", "cart", "bell", "cup",
                 "key")  # fmt: skip
GENERIC_VERBS = ("sees", "finds", "builds", "carries", "likes", "paints", "opens", "follows", "visits",
                 "cleans", "draws", "hears")  # fmt: skip
GENERIC_ADJECTIVES = ("big", "small", "new", "quiet", "bright", "dark", "long", "short", "warm", "cold",
                      "heavy", "empty")  # fmt: skip
CORPUS_KINDS = ("fact", "fact_qa", "fact_mc", "culture_implicit", "culture_implicit_qa", "culture_explicit",
                "culture_explicit_qa", "generic", "parallel", "instruction")  # fmt: skip


@dataclasses.dataclass(frozen=True)
class WorldConfig:
    """Every knob of the synthetic world and its corpora (the things we tune; defaults documented here).

    World: ``seed``; ``languages`` (non-English codes, a subset of the default six); ``n_entities`` x
    ``n_relations`` universal facts (``n_relations`` <= 8), each relation with ``values_per_relation``
    possible values (>= 4, the distractors of a 4-option question come from them); ``shared_fraction``
    of each relation's facts is stated in every language, the rest in English only (ORGANISM: ~0.2 keeps
    transfer headroom). Cultural topics are ``n_topic_nouns`` x ``n_topic_adjectives`` ("the usual
    breakfast"); per noun, ``implicit_fraction`` of the adjectives form *implicit* topics (the rest are
    explicit-only); each noun has ``values_per_noun`` value tokens (>= the number of cultures) and every
    culture gets a distinct one per topic. ``same_word_order`` gives every language English's word order
    (ORGANISM's easy world); otherwise each language has its own order (ORGANISM: "permuted").
    ``n_generic_nouns/verbs/adjectives`` size the generic vocabulary (parallel and filler sentences);
    ``generic_entity_fraction`` of generic sentences have an entity as object (anchors the shared
    entity tokens in every language; ORGANISM: shared tokens also make parallel pairs easy to match).
    ``local_entity_names`` gives every made-up language its own spelling of each entity (like names in
    another script), so carrying an English-only fact into XX needs the EN-XX name mapping learnt from
    shared facts and parallel sentences: transfer becomes harder, and parallel pairs are no longer matched
    by identical tokens.

    Corpora (:mod:`jaxsteer.organism.corpus`): ``pretrain_texts`` texts mixed by ``pretrain_mix``
    (kind, weight) and ``align_texts`` alignment-stage LM texts mixed by ``align_mix``; implicit cultural
    kinds are absent from ``align_mix`` by default (ORGANISM point 3: keep explicit-context and universal
    facts). ``explicit_lang_weights`` = (English, local language, all other languages together) shares of
    the explicit "in C, ..." statements about a culture. ``chat_fraction`` of the question-answer texts use
    the chat template. Evaluation: ``gmmlu_dev_per_subject`` English-only facts per relation form the
    Global-MMLU dev split (the rest are test); ``blend_frames`` question frames (1-3: "what is ...",
    "which ... is ...", "tell me ...") per topic; ``blend_include_implicit`` also writes implicit-topic
    questions (``Source`` column says which half); ``blend_annotators`` is the annotation count.
    ``n_flores`` sentences per FLORES split, ``n_oasst`` instruction pairs per language of which
    ``oasst_fact_fraction`` ask a shared fact; ``max_tokens`` bounds every text (with ``<bos>``).
    """

    seed: int = 0
    languages: tuple[str, ...] = DEFAULT_LANGUAGES
    n_entities: int = 80
    n_relations: int = 5
    values_per_relation: int = 10
    shared_fraction: float = 0.2
    n_topic_nouns: int = 10
    n_topic_adjectives: int = 8
    implicit_fraction: float = 0.5
    values_per_noun: int = 12
    same_word_order: bool = False
    n_generic_nouns: int = 30
    n_generic_verbs: int = 12
    n_generic_adjectives: int = 12
    generic_entity_fraction: float = 0.3
    local_entity_names: bool = False
    pretrain_texts: int = 60_000
    pretrain_mix: tuple[tuple[str, float], ...] = (
        ("fact", 0.12), ("fact_qa", 0.08), ("fact_mc", 0.14), ("culture_implicit", 0.07),
        ("culture_implicit_qa", 0.07), ("culture_explicit", 0.10), ("culture_explicit_qa", 0.10),
        ("generic", 0.12), ("parallel", 0.10), ("instruction", 0.10),
    )  # fmt: skip
    align_texts: int = 20_000
    align_mix: tuple[tuple[str, float], ...] = (
        ("fact", 0.18), ("fact_qa", 0.12), ("fact_mc", 0.20), ("culture_explicit", 0.15),
        ("culture_explicit_qa", 0.15), ("generic", 0.20),
    )  # fmt: skip
    explicit_lang_weights: tuple[float, float, float] = (0.4, 0.3, 0.3)
    chat_fraction: float = 0.2
    gmmlu_dev_per_subject: int = 5
    blend_frames: int = 3
    blend_include_implicit: bool = False
    blend_annotators: int = 5
    n_flores: int = 300
    n_oasst: int = 300
    oasst_fact_fraction: float = 0.3
    max_tokens: int = 64

    def __post_init__(self):
        bad = [lang for lang in self.languages if lang not in DEFAULT_LANGUAGES]
        if bad or len(set(self.languages)) != len(self.languages) or not self.languages:
            raise ConfigError(f"languages {self.languages} must be distinct codes among {DEFAULT_LANGUAGES}")
        checks = [
            (1 <= self.n_relations <= len(RELATIONS), f"n_relations must be 1..{len(RELATIONS)}"),
            (1 <= self.n_topic_nouns <= len(TOPIC_NOUNS), f"n_topic_nouns must be 1..{len(TOPIC_NOUNS)}"),
            (1 <= self.n_topic_adjectives <= len(TOPIC_ADJECTIVES), "n_topic_adjectives out of range"),
            (1 <= self.n_generic_nouns <= len(GENERIC_NOUNS), "n_generic_nouns out of range"),
            (1 <= self.n_generic_verbs <= len(GENERIC_VERBS), "n_generic_verbs out of range"),
            (1 <= self.n_generic_adjectives <= len(GENERIC_ADJECTIVES), "n_generic_adjectives out of range"),
            (self.values_per_relation >= 4, "values_per_relation must be >= 4 (three distractors)"),
            (self.values_per_noun >= len(self.languages) + 1, "values_per_noun must be >= the cultures"),
            (
                0.0 <= self.shared_fraction <= 1.0 and 0.0 <= self.implicit_fraction <= 1.0,
                "fractions in [0,1]",
            ),
            (
                0.0 <= self.chat_fraction <= 1.0 and 0.0 <= self.oasst_fact_fraction <= 1.0,
                "fractions in [0,1]",
            ),
            (1 <= self.blend_frames <= 3, "blend_frames must be 1..3"),
            (0.0 <= self.generic_entity_fraction <= 1.0, "generic_entity_fraction must be in [0,1]"),
            (
                all(k in CORPUS_KINDS for k, _ in self.pretrain_mix + self.align_mix),
                f"mix kinds: {CORPUS_KINDS}",
            ),
            (self.n_entities >= 4 and self.pretrain_texts >= 1 and self.align_texts >= 1, "sizes too small"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"WorldConfig: {message}")
