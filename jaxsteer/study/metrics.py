"""Numbers of the transfer–localization plane: BLEnD soft match, accuracy, Δ tables and quadrants.

Pure Python/NumPy on already-computed responses and scores, so every number in a report can be checked
by hand. Conventions: accuracy is in percent (0–100); Δ = accuracy(method) − accuracy(unaligned base) in
percentage points, per language, then averaged over languages (PAPER.md "Evaluation"); with several
seeds a cell is the mean over seeds and the spread is their sample standard deviation.

BLEnD short-answer scoring follows the BLEnD paper: skip questions that annotators could not answer,
and count a response correct if any annotated answer, local or English, occurs in it. Two matchers
(``ExperimentConfig.blend_match``):

* ``"jaxsteer"`` (default): the answer occurs in the response after Unicode normalisation, case folding
  of *both* sides, accent and Arabic-letter folding and whitespace/hyphen folding; every decimal digit made
  ASCII (Persian "۷" is "7"); a number at either end of an answer matches only as a whole number ("5" is not
  in "15", "1" not in "1.5 hours", "3:00" not in "13:00", "8시" not in "18시"); an answer in Arabic script or
  Hangul also matches with spaces ignored from the start of a response word (قرمه‌سبزی / قرمه سبزی /
  قرمهسبزی, 떡국 먹기 / 떡국먹기); an empty answer matches nothing.
* ``"blend"``: BLEnD's ``evaluation/exact_match.py`` (``soft_exact_match`` → ``lemma_check``) step by
  step — the response cleaned as ``evaluation_utils.get_llm_response_by_id`` does (prompt removed,
  full-width ``：、，。`` made ASCII, a leading ``word:`` echoed from the prompt dropped, outer dots
  stripped, lower-cased; the *answer* is not lower-cased), then the raw substring test with hyphen/space
  variants, then "every answer token is a response token" on lower-cased, acute-stripped tokens. The
  one step we cannot run is BLEnD's lemmatisation (spaCy, Spark NLP, konlpy Okt, jieba, hazm, nlp-id,
  CLTK, qalsadi — none is a dependency): tokens are compared as written, split as BLEnD splits where it
  splits on whitespace (fa, id, ha) and into words and punctuation elsewhere. A lemmatiser maps two
  forms to one lemma, so this can only miss matches BLEnD finds (김치를 vs 김치, "dumplings" vs
  "dumpling", jieba's word split of Chinese): numbers from ``"blend"`` are a lower bound of BLEnD's own.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import re
import string
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from jaxsteer.data.files import read_text
from jaxsteer.errors import DataError

if TYPE_CHECKING:
    from jaxsteer.data.blend import BlendQuestion

QUADRANTS: tuple[str, ...] = ("desirable", "transfer_only", "localization_only", "degraded")
"""Quadrant names: desirable (Δx > 0, Δy ≥ 0), transfer_only (Δx > 0, Δy < 0: cultural erasure),
localization_only (Δx ≤ 0, Δy ≥ 0), degraded (Δx ≤ 0, Δy < 0)."""

# --- BLEnD soft exact match ----------------------------------------------------------------------
# Arabic/Persian letter variants, the tatweel, the joiner; the zero-width non-joiner (Persian's half-space) is a
# space here, and answers in scripts whose writers space compounds by habit are also compared without spaces
# (_SPACING_SCRIPTS). "ۀ" (heh with hamza, the ezafe) is also written "هٔ": both fold to "ه" (NFD would leave
# "ۀ" as "ە" + a stripped hamza).
_FOLD = str.maketrans(
    {"ي": "ی", "ى": "ی", "ك": "ک", "ة": "ه", "ۀ": "ه", "ە": "ه", "ـ": "", "\u200d": "", "\u200c": " ",
     "٫": ".", "٬": ","}  # the Arabic decimal and thousands separators: ۳٫۵ is 3.5
)  # fmt: skip
# Persian compounds are written with a half-space, a space or joined (قرمه‌سبزی, قرمه سبزی, قرمهسبزی); Korean
# spacing varies as much (떡국 먹기, 떡국먹기): an answer in Arabic script or Hangul also matches without spaces
_SPACING_SCRIPTS = re.compile("[\u0600-\u06ff\uac00-\ud7a3]")
_COMBINING = re.compile("[\u0300-\u036f\u064b-\u065f\u0670]")  # Latin/Greek accents, Arabic harakat
_SPACE = re.compile(r"[\s\-\u2010-\u2015_]+")


def normalize_answer(text: str) -> str:
    """Casefolded NFC text without accents or Arabic vowel marks, every decimal digit ASCII (Persian "۷" and
    Arabic-Indic "٧" are "7"; NFKC folds only full-width ones); runs of spaces and hyphens → one space."""
    # a full-width comma lists (5，6个 is "5 or 6"); NFKC would make it the decimal comma of 5,6
    text = unicodedata.normalize("NFKC", str(text).replace("，", ", ")).translate(_FOLD)
    text = _COMBINING.sub("", unicodedata.normalize("NFD", text))
    text = unicodedata.normalize("NFC", text).casefold()
    text = re.sub(r"\d", lambda m: str(unicodedata.decimal(m.group())), text)
    return _SPACE.sub(" ", text).strip()


def answer_in_response(answer: str, response: str) -> bool:
    """True when the normalised ``answer`` occurs in the normalised ``response``. A number at either end of the
    answer must be a whole number there: "5" is not in "15", "1" not in "1.5 hours", "3:00" not in "13:00",
    "5 hours" not in "15 hours", "8시" not in "18시" (but "5" is in "答：5" and "5,6个"). An answer in Arabic
    script or Hangul without digits also matches with spaces ignored, from the start of a response word."""
    a, r = normalize_answer(answer), normalize_answer(response)
    if not a:
        return False
    if a[0].isdigit() or a[-1].isdigit():
        before = r"(?<!\d)(?<!\d[.,:/])" if a[0].isdigit() else ""
        after = r"(?![.,:/]?\d)" if a[-1].isdigit() else ""
        return re.search(before + re.escape(a) + after, r) is not None
    if a in r:
        return True
    return bool(_SPACING_SCRIPTS.search(a)) and not any(c.isdigit() for c in a) and _joined_match(a, r)


def _joined_match(answer: str, response: str) -> bool:
    """``answer`` without spaces in ``response`` without spaces, starting where a response word starts (so
    국수 "noodles" is not found across 한국 수박 "Korean watermelon")."""
    target = answer.replace(" ", "")
    chars, word_start, after_space = [], [], True
    for c in response:
        if c == " ":
            after_space = True
            continue
        chars.append(c)
        word_start.append(after_space)
        after_space = False
    joined = "".join(chars)
    at = joined.find(target)
    while at != -1:
        if word_start[at]:
            return True
        at = joined.find(target, at + 1)
    return False


def blend_soft_match(response: str, answers_local: Iterable[str], answers_en: Iterable[str]) -> bool:
    """BLEnD's soft exact match: any annotated answer (local script or English) occurs in ``response``."""
    if not response or not str(response).strip():
        return False
    return any(answer_in_response(a, response) for a in (*answers_local, *answers_en))


# --- BLEnD's own matcher (evaluation/exact_match.py), as far as our dependencies allow -----------------
MATCH_MODES: tuple[str, ...] = ("jaxsteer", "blend")
_WHITESPACE_SPLIT = ("fa", "id", "ha")  # BLEnD lemmatises str.split() terms for Persian, Indonesian, Hausa
_BLEND_TOKEN = re.compile(r"\w+|[^\w\s]")  # where BLEnD runs a library tokeniser (spaCy, Okt, jieba, ...)
_FULLWIDTH = (("：", ":"), ("、", ","), ("，", ","), ("。", "."))


def blend_clean_response(response: str, prompt: str = "") -> str:
    """The response as BLEnD scores it (``delete_prompt_from_answer`` then ``.strip('.').lower()``)."""
    text, prompt = str(response).replace(prompt, "") if prompt else str(response), str(prompt)
    for wide, ascii_ in _FULLWIDTH:
        text, prompt = text.replace(wide, ascii_), prompt.replace(wide, ascii_)
    text, prompt = text.lower(), prompt.lower()
    found = re.findall(r"^(\w+:)\s", text)
    extracted = ""
    for m in found:  # the longest leading "word:" whose word occurs in the prompt ("answer: kimchi")
        if len(m) > len(extracted) and m.replace(":", "") in prompt:
            extracted = m
    text = text.replace(extracted, "").strip() if found else text.strip()
    return text.strip(".").lower()


def _blend_tokens(text: str, lang: str) -> list[str]:
    tokens = text.split() if lang in _WHITESPACE_SPLIT else _BLEND_TOKEN.findall(text)
    # BLEnD: NFD, drop COMBINING ACUTE ACCENT only (no re-composition), lower; skip punctuation and ''
    folded = [unicodedata.normalize("NFD", t).replace("\u0301", "").lower() for t in tokens]
    return [t for t in folded if t and t not in string.punctuation]  # `in` a str: BLEnD's substring test


def blend_lemma_check(answer: str, response: str, lang: str) -> bool:
    """BLEnD's ``lemma_check`` with an identity lemmatiser; ``response`` already cleaned."""
    if answer in response or answer.replace("-", " ") in response or answer.replace(" ", "-") in response:
        return True  # BLEnD's first test: raw substring (an empty answer matches, as in BLEnD)
    have = set(_blend_tokens(response, lang))
    return all(t in have for t in _blend_tokens(answer, lang))


def blend_exact_match(
    response: str, answers_local: Iterable[str], answers_en: Iterable[str], lang: str, prompt: str = ""
) -> bool:
    """BLEnD's soft exact match for a question asked in ``lang``: local answers (unless ``lang`` is English),
    then English answers, each through :func:`blend_lemma_check`."""
    cleaned = blend_clean_response(response, prompt)
    if not cleaned:
        return False
    if lang != "en" and any(blend_lemma_check(str(a), cleaned, lang) for a in answers_local):
        return True
    return any(blend_lemma_check(str(a), cleaned, "en") for a in answers_en)


@dataclasses.dataclass(frozen=True)
class BlendScore:
    accuracy: float  # percent of scored questions answered correctly
    n_scored: int
    n_skipped: int
    n_missing: int  # scored questions without a response (counted wrong, as BLEnD does)
    correct: Mapping[str, bool]


def blend_accuracy(
    responses: Mapping[str, str],
    questions: Sequence[BlendQuestion],
    match: str = "jaxsteer",
    prompts: Mapping[str, str] | None = None,
) -> BlendScore:
    """BLEnD short-answer accuracy of ``responses`` (question id → text) over the non-skipped questions.

    ``match``: ``"jaxsteer"`` (:func:`blend_soft_match`) or ``"blend"`` (:func:`blend_exact_match`, which
    also removes each question's ``prompts[id]`` from its response, as BLEnD does).
    """
    if match not in MATCH_MODES:
        raise DataError(f"unknown BLEnD matcher {match!r}; expected one of {', '.join(MATCH_MODES)}")
    correct: dict[str, bool] = {}
    skipped = missing = 0
    for q in questions:
        if q.skipped:
            skipped += 1
            continue
        response = responses.get(q.id)
        missing += response is None
        if response is None:
            correct[q.id] = False
        elif match == "blend":
            prompt = (prompts or {}).get(q.id, "")
            correct[q.id] = blend_exact_match(response, q.answers_local, q.answers_en, q.lang or "en", prompt)
        else:
            correct[q.id] = blend_soft_match(response, q.answers_local, q.answers_en)
    if not correct:
        raise DataError(f"no BLEnD question left to score ({skipped} of {len(questions)} skipped)")
    return BlendScore(accuracy(list(correct.values())), len(correct), skipped, missing, correct)


# --- accuracy --------------------------------------------------------------------------------------
def accuracy(correct: Sequence[bool | int | float]) -> float:
    """Percentage of true entries (0–100)."""
    if len(correct) == 0:
        raise DataError("cannot compute accuracy of zero examples")
    return 100.0 * float(np.mean(np.asarray(correct, dtype=np.float64)))


def argmax_accuracy(scores: Sequence[Sequence[float]], answers: Sequence[int]) -> float:
    """Multiple-choice accuracy (%) from per-option scores (e.g. log-likelihoods); ties go to the first."""
    if len(scores) != len(answers):
        raise DataError(f"{len(scores)} score rows for {len(answers)} answers")
    return accuracy([int(np.argmax(s)) == int(a) for s, a in zip(scores, answers)])


def mean_spread(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value) over seeds."""
    if len(values) == 0:
        raise DataError("cannot average zero values")
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


# --- results and Δ -------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class MethodResult:
    """Per-language accuracy (%) of one method and one seed, with the provenance that makes Δ valid."""

    method: str
    scores: Mapping[str, float]
    config_hash: str | None = None
    base_model: str | None = None  # the unaligned model the method starts from
    seed: int | None = None
    source: str = ""
    protocol: Mapping[str, Any] | None = None  # what decides the items and their scoring (seed aside)
    identity: str | None = None  # provenance and scores: equal for a file and its copy, never for two runs


def load_result(path: str | os.PathLike) -> MethodResult:
    """A result JSON: ``method``, ``accuracy`` ({lang: %}; ``scores`` also accepted), ``config_hash``,
    ``base_model`` and ``seed``, at top level or under ``provenance``."""
    if not os.path.isfile(path):
        raise DataError(f"no such result file {str(path)!r}")
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: invalid JSON at line {e.lineno} ({e.msg})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object with method and accuracy")
    prov = data.get("provenance") or {}
    scores = data.get("accuracy", data.get("scores"))
    if not isinstance(scores, dict) or not scores:
        raise DataError(f"{path}: missing 'accuracy' (an object language -> accuracy in percent)")
    method = data.get("method") or prov.get("method")
    if not method:
        raise DataError(f"{path}: missing 'method'")
    seed = data.get("seed", prov.get("seed"))
    try:
        values = {str(k): float(v) for k, v in scores.items()}
    except (TypeError, ValueError):
        raise DataError(f"{path}: 'accuracy' values must be numbers (percent)") from None
    protocol = data.get("protocol")
    if protocol is not None and not isinstance(protocol, dict):
        raise DataError(f"{path}: 'protocol' must be an object of settings")
    identity = json.dumps([prov, values], sort_keys=True, default=str) if prov else None
    return MethodResult(
        method=str(method),
        scores=values,
        config_hash=data.get("config_hash", prov.get("config_hash")),
        base_model=data.get("base_model", prov.get("base_model")),
        seed=int(seed) if seed is not None else None,
        source=str(path),
        protocol=protocol,
        identity=identity,
    )


def check_comparable(result: MethodResult, base: MethodResult) -> None:
    """Raise ``DataError`` when ``result`` was not produced from the same model/config as ``base``, or on other
    items or scoring (its ``protocol``: data, splits, subset, generation and matching settings)."""
    name = result.source or result.method
    for field in ("config_hash", "base_model"):
        mine, theirs = getattr(result, field), getattr(base, field)
        if field == "base_model" and not ("/" in str(mine) and "/" in str(theirs)):
            continue  # a bare model name (files written before the model's path was recorded) identifies nothing
        if mine is not None and theirs is not None and mine != theirs:
            raise DataError(
                f"{name}: {field} {mine!r} differs from the base's {theirs!r} ({base.source or base.method}); "
                "Δ is only defined against the same model"
            )
    if result.protocol is not None and base.protocol is not None:
        keys = sorted(set(result.protocol) | set(base.protocol))
        differ = [k for k in keys if result.protocol.get(k) != base.protocol.get(k)]
        if differ:
            k = differ[0]
            raise DataError(
                f"{name}: {k}={result.protocol.get(k)!r} but the base's {base.source or base.method} has "
                f"{k}={base.protocol.get(k)!r}; Δ is only defined on the same items, scored the same way"
            )


def _refuse_copies(name: str, runs: Sequence[MethodResult]) -> None:
    """The same result twice (a folder and its copy given together) would count as two seeds agreeing."""
    seen: dict[str, MethodResult] = {}
    for r in runs:
        if r.identity is not None and r.identity in seen:
            raise DataError(
                f"{r.source or name} is the same result as {seen[r.identity].source} (a copy?): "
                "it would count twice, as two seeds that agree"
            )
        if r.identity is not None:
            seen[r.identity] = r


def _paired_base(result: MethodResult, base_runs: Sequence[MethodResult], langs) -> dict[str, float]:
    """The base accuracy ``result`` is compared with: the base of its own seed (the seed draws the test split),
    averaged when the base has several results of that seed; all base results when no seed is recorded."""
    seeds = sorted({b.seed for b in base_runs if b.seed is not None})
    if result.seed is not None and result.seed in seeds:
        paired = [b for b in base_runs if b.seed == result.seed]
    elif not seeds:
        paired = list(base_runs)
    elif result.seed is None and len(seeds) == 1:
        paired = [b for b in base_runs if b.seed == seeds[0]]
    else:
        has = f"seed {result.seed}" if result.seed is not None else "no seed"
        raise DataError(
            f"{result.source or result.method} has {has}, the base results seed(s) {', '.join(map(str, seeds))}: "
            "Δ pairs each seed with the base of the same seed (evaluate the base with it)"
        )
    return {lang: float(np.mean([_score(b, lang) for b in paired])) for lang in langs}


def _settled(value: float) -> float:
    """Δ rounded far below any reported digit: an exact zero computed as 2e-15 must not pick a quadrant."""
    return round(float(value), 9) + 0.0


@dataclasses.dataclass(frozen=True)
class DeltaTable:
    """Δ (points) per method and language, their mean over languages, and the spread over seeds."""

    langs: tuple[str, ...]
    delta: Mapping[str, Mapping[str, float]]  # method -> lang -> mean Δ over seeds
    mean: Mapping[str, float]  # method -> mean over seeds of the language-averaged Δ
    spread: Mapping[str, Mapping[str, float]]  # method -> lang -> std over seeds
    mean_spread: Mapping[str, float]
    n_seeds: Mapping[str, int]

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(self.delta)

    def _with_sd(self) -> bool:
        return any(n > 1 for n in self.n_seeds.values())

    def to_csv(self, precision: int = 2) -> str:
        """CSV text: method, one column per language, mean (and ``*_sd`` columns with several seeds)."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        header = ["method", *self.langs, "mean"]
        sd = self._with_sd()
        writer.writerow(header + ([f"{c}_sd" for c in header[1:]] + ["n_seeds"] if sd else []))
        for m in self.methods:
            row = [
                m,
                *(_fixed(self.delta[m][lang], precision) for lang in self.langs),
                _fixed(self.mean[m], precision),
            ]
            if sd:
                one = self.n_seeds[m] < 2  # no spread to report: not a spread of zero
                row += ["" if one else _fixed(self.spread[m][lang], precision) for lang in self.langs]
                row += ["" if one else _fixed(self.mean_spread[m], precision), str(self.n_seeds[m])]
            writer.writerow(row)
        return out.getvalue()

    def to_markdown(self, precision: int = 2) -> str:
        """Markdown table with signed cells (``+1.23``, or ``+1.23 ± 0.40`` with several seeds)."""
        sd = self._with_sd()

        def cell(value: float, spread: float, seeds: int) -> str:
            signed = _fixed(value, precision, "+")
            if not sd:
                return signed
            return signed + (" ± n/a" if seeds < 2 else f" ± {_fixed(spread, precision)}")

        lines = [
            "| method | " + " | ".join((*self.langs, "mean")) + " |",
            "|---|" + "---:|" * (len(self.langs) + 1),
        ]
        for m in self.methods:
            cells = [cell(self.delta[m][lang], self.spread[m][lang], self.n_seeds[m]) for lang in self.langs]
            cells.append(cell(self.mean[m], self.mean_spread[m], self.n_seeds[m]))
            lines.append(f"| {_md(m)} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def _fixed(value: float, precision: int, sign: str = "") -> str:
    """``value`` with ``precision`` decimals, never ``-0.00`` (a Δ that rounds to zero is zero)."""
    return f"{round(float(value), precision) + 0.0:{sign}.{precision}f}"


def _md(text: str) -> str:
    """A Markdown table cell: ``|`` would end it."""
    return str(text).replace("|", "\\|")


ResultLike = MethodResult | Mapping[str, float]


def delta_table(
    results_by_method: Mapping[str, ResultLike | Sequence[ResultLike]],
    base: str | ResultLike | Sequence[ResultLike] = "base",
    langs: Sequence[str] | None = None,
) -> DeltaTable:
    """Δ of every method against ``base`` (a key of ``results_by_method``, or the base result(s) itself).

    A method's value is one result or a list of results over seeds; a plain mapping lang → accuracy is a
    result without provenance. Languages default to the base's; every method must cover all of them.
    Results whose ``config_hash``/``base_model`` differ from the base's raise ``DataError``.
    """
    if isinstance(base, str):
        if base not in results_by_method:
            raise DataError(f"base {base!r} is not among the methods {', '.join(results_by_method)}")
        base_runs = _runs(base, results_by_method[base])
        methods = {k: v for k, v in results_by_method.items() if k != base}
    else:
        base_runs = _runs("base", base)
        methods = dict(results_by_method)
    langs = tuple(langs) if langs is not None else tuple(base_runs[0].scores)
    twice = sorted({lang for lang in langs if langs.count(lang) > 1})
    if twice:  # it would weigh double in the mean over languages
        raise DataError(f"language {twice[0]} is given twice")
    _refuse_copies("base", base_runs)
    for r in base_runs[1:]:  # the bases of several seeds: one model, one protocol
        check_comparable(r, base_runs[0])
    delta, mean, spread, mean_sd, n_seeds = {}, {}, {}, {}, {}
    for name, value in methods.items():
        runs = _runs(name, value)
        _refuse_copies(name, runs)
        per_seed = []
        for r in runs:
            paired = [b for b in base_runs if b.seed == r.seed] or base_runs
            check_comparable(r, paired[0])
            base_acc = _paired_base(r, base_runs, langs)
            per_seed.append({lang: _score(r, lang) - base_acc[lang] for lang in langs})
        delta[name], spread[name] = {}, {}
        for lang in langs:
            d, sd = mean_spread([d[lang] for d in per_seed])
            delta[name][lang], spread[name][lang] = _settled(d), sd
        d, sd = mean_spread([float(np.mean([d[lang] for lang in langs])) for d in per_seed])
        mean[name], mean_sd[name] = _settled(d), sd
        n_seeds[name] = len(runs)
    return DeltaTable(langs, delta, mean, spread, mean_sd, n_seeds)


def common_languages(
    runs: Mapping[str, Mapping[str, Sequence[MethodResult]]], base: str
) -> tuple[tuple[str, ...], dict[str, list[str]]]:
    """The languages every result of ``runs[bench][method]`` has, in the base's order, and for each language
    some result lacks, the methods lacking it (``{"zh": ["EN"]}``): the comparison a folder supports when
    methods were evaluated on different languages (``jaxsteer eval --lang ko`` beside a full base run)."""
    order: list[str] = []
    for bench in runs.values():
        for result in [*bench.get(base, ()), *(r for rs in bench.values() for r in rs)]:
            order += [lang for lang in result.scores if lang not in order]
    missing: dict[str, list[str]] = {}
    for bench in runs.values():
        for method, results in bench.items():
            for lang in order:
                if any(lang not in r.scores for r in results) and method not in missing.get(lang, []):
                    missing.setdefault(lang, []).append(method)
    return tuple(lang for lang in order if lang not in missing), missing


def results_of(name: str, value: Any) -> list[MethodResult]:
    """A method's results (one, or a list over seeds) as :class:`MethodResult` objects."""
    return _runs(name, value)


def _runs(name: str, value: Any) -> list[MethodResult]:
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if not items:
        raise DataError(f"method {name!r} has no results")
    return [v if isinstance(v, MethodResult) else MethodResult(name, dict(v)) for v in items]


def _score(result: MethodResult, lang: str) -> float:
    if lang not in result.scores:
        raise DataError(
            f"{result.source or result.method}: no accuracy for language {lang!r} (it has {', '.join(result.scores)}); "
            "compare on the languages every result has (leave --lang out) or evaluate it on that language"
        )
    value = float(result.scores[lang])
    if not math.isfinite(value):
        raise DataError(f"{result.source or result.method}: accuracy for {lang!r} is {value}")
    return value


# --- the plane ----------------------------------------------------------------------------------
def quadrant(dx: float, dy: float) -> str:
    """Quadrant of a point (see :data:`QUADRANTS`); the desirable one is Δx > 0 and Δy ≥ 0."""
    if dx > 0:
        return "desirable" if dy >= 0 else "transfer_only"
    return "localization_only" if dy >= 0 else "degraded"


@dataclasses.dataclass(frozen=True)
class PlanePoint:
    """One method on the plane: x = ΔGMMLU, y = ΔBLEnD (points), with spreads over seeds."""

    method: str
    dx: float
    dy: float
    dx_err: float = 0.0
    dy_err: float = 0.0

    @property
    def quadrant(self) -> str:
        return quadrant(self.dx, self.dy)


def plane_points(gmmlu: DeltaTable, blend: DeltaTable) -> list[PlanePoint]:
    """Points of the methods present in both tables (language-averaged Δ), in ``gmmlu``'s order."""
    missing = [m for m in gmmlu.methods if m not in blend.mean] + [m for m in blend.methods if m not in gmmlu.mean]
    if missing:
        raise DataError(f"method(s) {', '.join(missing)} lack a GMMLU or a BLEnD result")
    return [
        PlanePoint(m, gmmlu.mean[m], blend.mean[m], gmmlu.mean_spread[m], blend.mean_spread[m]) for m in gmmlu.methods
    ]
