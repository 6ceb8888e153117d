"""One experiment's settings and the data they select: splits, benchmark items and contrastive pairs.

``ExperimentConfig`` holds every choice of the paper's pipeline that the paper leaves open (each a
named, documented default); ``configs/experiments/*.yaml`` set them and ``--set key=value`` overrides.
``Benchmarks`` loads Global-MMLU and BLEnD for the chosen languages, applies the seeded Dev1/Dev2/test
split, and builds the EN pairs (English vs XX query of the same question) and LOC pairs
(contextualised vs decontextualised XX cultural question).
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

from jaxsteer.config import DECODE_LAYOUTS
from jaxsteer.data import blend as blend_data
from jaxsteer.data import decontext, gmmlu, prompts, splits
from jaxsteer.data.files import read_text, text_cell
from jaxsteer.data.languages import language
from jaxsteer.errors import ConfigError, DataError
from jaxsteer.sharding import MeshSpec

PARTS = ("dev1", "dev2", "test")
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Settings of the steering/evaluation pipeline (defaults: ``../shared/PAPER.md``)."""

    model: str = ""  # HF Gemma-3 folder (or hub id when online)
    dtype: str = "bfloat16"
    data: str = "tests/fixtures/data"  # data root in the layout of jaxsteer/data/files.py, or hub ids
    blend_source: str = ""  # defaults to `data`
    languages: tuple[str, ...] = ("zh", "ko", "es", "id", "el", "fa")
    seed: int = 0
    dev1: int = 100  # extraction pairs per language
    dev2: int = 100  # layer/γ selection items per language
    allow_small: bool = False  # fixtures: shrink to thirds when a language has < dev1 + dev2 + 1 items
    gmmlu_subset: str = "CA"  # universal questions = annotated, culturally agnostic
    gmmlu_split: str = "test"
    chat: bool = False  # wrap prompts in the tokenizer's chat template
    read: str = "last"  # extraction read position: last | mean
    method: str = "mean_diff"  # mean_diff | pca_diff | pca_center
    normalisation: str = "none"  # none | unit_mean_norm
    pooled: bool = False  # one vector pooled over languages instead of one per language
    batch_size: int = 16
    en_layer: int = -1  # -1: 20/48 of the depth (layer 20 of Gemma-3-12B)
    loc_layer: int = -1  # -1: 28/48 of the depth
    en_gamma: float = 2.0
    loc_gammas: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0)
    select_layers: bool = False  # also sweep layers around the defaults on Dev2
    layer_window: int = 2  # ± layers searched when select_layers
    sweep_gammas: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0)
    sweep_layers: tuple[int, ...] = ()  # empty: every layer
    chunk_size: int = 8  # grid points per compiled sweep call
    max_new_tokens: int = 24  # BLEnD short answers
    blend_eval: str = "decontextualised"  # the implicit (localization) query; or "contextualised"
    blend_local_instruction: bool = True  # BLEnD's instruction in the local language (False: English)
    blend_match: str = "jaxsteer"  # soft exact match: jaxsteer's (casefolded, whole numbers) | "blend" (BLEnD's)
    out: str = "results"
    # devices the models are sharded over (data × fsdp × model; jaxsteer/sharding.py); default: one device
    mesh: MeshSpec | None = None
    # generation's decode layout (jaxsteer.model.Model): auto (a per-layer weight copy where it fits), or scan
    # for a one-off small run whose compiles are on its critical path (compiles ~2× faster, decodes slower), or
    # moved where the copy does not fit (27B on an 80 GB card: the weights themselves cut per layer for each call)
    decode_layout: str = "auto"

    def __post_init__(self):
        if not self.languages:
            raise ConfigError("config key languages is empty: name at least one language (e.g. [ko])")
        if not 0 <= self.seed < 2**32:
            raise ConfigError(f"config key seed={self.seed} must be in 0 … 2**32 − 1")
        for key in ("loc_gammas", "sweep_gammas"):
            if not getattr(self, key):
                raise ConfigError(f"config key {key} is empty: give at least one γ")
        if self.layer_window < 0 or self.dev1 < 1 or self.dev2 < 1:
            raise ConfigError(
                f"layer_window={self.layer_window} must be ≥ 0, dev1={self.dev1} and dev2={self.dev2} ≥ 1"
            )
        twice = sorted({lang for lang in self.languages if self.languages.count(lang) > 1})
        if twice:  # evaluated twice and weighed double in every mean over languages
            raise ConfigError(f"config key languages: {twice[0]} is listed twice")
        for lang in self.languages:
            try:
                language(lang)
            except DataError as e:
                raise ConfigError(f"config key languages: {e}") from None
        choices = {
            "read": ("last", "mean"),
            "method": ("mean_diff", "pca_diff", "pca_center"),
            "normalisation": ("none", "unit_mean_norm"),
            "gmmlu_subset": ("CA", "CS", "annotated", "all"),
            "blend_eval": ("decontextualised", "contextualised"),
            "blend_match": ("jaxsteer", "blend"),
            "decode_layout": DECODE_LAYOUTS,
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"config key {key}={getattr(self, key)!r}: expected one of {', '.join(allowed)}")
        if self.pooled and self.method != "mean_diff":  # PCA directions do not average: no pooled set would come
            raise ConfigError(f"config key pooled=true needs method=mean_diff (got method={self.method!r})")
        if self.batch_size < 1 or self.max_new_tokens < 1 or self.chunk_size < 1:
            raise ConfigError("batch_size, max_new_tokens and chunk_size must be positive")
        for key in ("en_gamma", "loc_gammas", "sweep_gammas"):
            value = getattr(self, key)
            for g in value if isinstance(value, (tuple, list)) else (value,):
                check_gamma(g, f"config key {key}")

    def layers_for(self, num_layers: int) -> tuple[int, int]:
        """(EN layer, LOC layer): explicit values, or 20/48 and 28/48 of the depth."""
        en = self.en_layer if self.en_layer >= 0 else min(round(20 / 48 * num_layers), num_layers - 1)
        loc = self.loc_layer if self.loc_layer >= 0 else min(round(28 / 48 * num_layers), num_layers - 1)
        for name, layer in (("en_layer", en), ("loc_layer", loc)):
            if not 0 <= layer < num_layers:
                raise ConfigError(f"{name}={layer} out of range for a {num_layers}-layer model")
        return en, loc


def real_data_paths(settings: dict) -> dict:
    """``settings`` (a dict of ExperimentConfig fields) with local ``data``/``blend_source`` by their real path: the
    same files however the path is spelled (a run's hash, a result's protocol)."""
    out = dict(settings)
    for key in ("data", "blend_source"):
        if out.get(key) and os.path.exists(out[key]):
            out[key] = os.path.realpath(out[key])
    return out


def check_gamma(value, where: str) -> float:
    """A steering strength γ as a finite float, else a one-line ``ConfigError`` about γ itself (not about the
    vectors it would multiply)."""
    try:
        g = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: γ {value!r} is not a number") from None
    if not math.isfinite(g):
        raise ConfigError(f"{where}: γ = {g} is not a finite number")
    return g


@dataclasses.dataclass(frozen=True)
class BlendItem:
    question: blend_data.BlendQuestion
    contextualised: str
    decontextualised: str


class Benchmarks:
    """Global-MMLU (universal) and BLEnD (cultural) items per language, split Dev1/Dev2/test by seed."""

    def __init__(self, cfg: ExperimentConfig):
        self.cfg = cfg
        self._gmmlu: dict[str, list[gmmlu.MCQuestion]] = {}
        self._blend: dict[str, list[BlendItem]] = {}
        self.splits: dict[str, dict[str, splits.Split]] = {"gmmlu": {}, "blend": {}}
        self._memo: dict[tuple, tuple] = {}

    def remember(self, key: tuple, compute: Callable[[], Any], *named: object) -> Any:
        """``compute()`` once per ``key`` for this experiment (tokenised inputs; padded shapes planned for all
        languages at once: ``study.evaluate.scoring_widths``, ``blend_width``, ``study.surgical``). ``named``:
        the objects ``key`` names by ``id`` (a tokenizer) — held with the value, so that no later object can
        take their id while the entry lives."""
        key = (*key, *map(id, named))
        if key not in self._memo:
            self._memo[key] = (named, compute())
        return self._memo[key][1]

    def _split(self, bench: str, lang: str, ids: Sequence[str]) -> splits.Split:
        if lang not in self.splits[bench]:
            c = self.cfg
            self.splits[bench][lang] = splits.make_split(
                ids, lang=f"{bench}/{lang}", seed=c.seed, dev1=c.dev1, dev2=c.dev2, allow_small=c.allow_small
            )
        return self.splits[bench][lang]

    def gmmlu(self, lang: str, part: str) -> list[gmmlu.MCQuestion]:
        if lang not in self._gmmlu:
            self._gmmlu[lang] = gmmlu.load_gmmlu(self.cfg.data, lang, self.cfg.gmmlu_split, self.cfg.gmmlu_subset)
        items = self._gmmlu[lang]
        # one split per question id, shared by every language, so EN pairs and test sets line up
        anchor = self.cfg.languages[0] if lang == "en" else lang
        if anchor not in self._gmmlu:
            self._gmmlu[anchor] = gmmlu.load_gmmlu(self.cfg.data, anchor, self.cfg.gmmlu_split, self.cfg.gmmlu_subset)
        split = self._split("gmmlu", anchor, [q.id for q in self._gmmlu[anchor]])
        wanted = set(split.part(part))
        return [q for q in items if q.id in wanted]

    def blend(self, lang: str, part: str) -> list[BlendItem]:
        if lang not in self._blend:
            source = self.cfg.blend_source or self.cfg.data
            loaded = blend_data.load_blend(source, lang)
            blank = [q.id for q in loaded if q.blank]
            if blank:  # never prompted, never scored (BLEnD would ask an empty question)
                log.warning(
                    "BLEnD %s: skipped %d blank question(s): %s", loaded[0].country, len(blank), ", ".join(blank)
                )
            questions = [q for q in loaded if not q.skipped]
            self._blend[lang] = [_blend_item(q, source) for q in questions]
        items = self._blend[lang]
        wanted = set(self._split("blend", lang, [it.question.id for it in items]).part(part))
        return [it for it in items if it.question.id in wanted]

    def en_pairs(self, lang: str, part: str = "dev1", tokenizer=None) -> list[tuple[str, str]]:
        """(English query, XX query) of the same questions: positives are English."""
        en = {q.id: q for q in self.gmmlu("en", part)} if lang != "en" else {}
        xx = self.gmmlu(lang, part)
        pairs = [(en[q.id], q) for q in xx if q.id in en]
        if not pairs:
            raise DataError(f"no parallel Global-MMLU questions between en and {lang} in {part}")
        chat = tokenizer if self.cfg.chat else None
        ctx = lambda q: prompts.mc_prompt(q, bool(chat), chat).context  # noqa: E731
        return [(ctx(e), ctx(x)) for e, x in pairs]

    def loc_pairs(self, lang: str, part: str = "dev1", tokenizer=None) -> list[tuple[str, str]]:
        """(contextualised, decontextualised) XX cultural questions: positives name the country."""
        fmt = lambda text: self.blend_prompt(text, lang, tokenizer)  # noqa: E731
        items = self.blend(lang, part)
        if not items:
            raise DataError(f"no BLEnD questions for {lang} in {part}")
        return [(fmt(it.contextualised), fmt(it.decontextualised)) for it in items]

    def blend_prompt(self, question: str, lang: str, tokenizer=None) -> str:
        chat = tokenizer if self.cfg.chat else None
        return prompts.blend_prompt(
            question, lang, local_instruction=self.cfg.blend_local_instruction, chat_template=bool(chat), tokenizer=chat
        )


def _blend_item(q: blend_data.BlendQuestion, source: str) -> BlendItem:
    """The two versions of a question: from ``blend/decontext/{Country}.jsonl`` when the data ships
    them (the synthetic world does), else from the per-language rules of ``jaxsteer.data.decontext``."""
    shipped = _shipped_decontext(source, q.country)
    if q.id in shipped:
        row = shipped[q.id]
        return BlendItem(q, row["contextualised"], row["decontextualised"])
    ctx, dec = decontext.context_pair(q.question, q.lang, q.country)
    return BlendItem(q, ctx, dec)


_SHIPPED: dict[tuple[str, str], dict] = {}


def _shipped_decontext(source: str, country: str) -> dict:
    key = (str(source), country)
    if key not in _SHIPPED:
        path = os.path.join(str(source), "blend", "decontext", f"{country}.jsonl")
        rows = {}
        if os.path.isfile(path):
            for n, line in enumerate(io.StringIO(read_text(path), newline=None), 1):
                if line.strip():
                    try:
                        row = json.loads(line)
                        at = f"{path} line {n}"
                        rows[text_cell(row["id"], f"{at} id", required=True).strip()] = {
                            k: text_cell(row[k], f"{at} {k}", required=True)
                            for k in ("contextualised", "decontextualised")
                        }
                    except (json.JSONDecodeError, KeyError, TypeError):
                        raise DataError(f"{path} line {n}: expected {{id, contextualised, decontextualised}}") from None
        _SHIPPED[key] = rows
    return _SHIPPED[key]
