"""Numbers of the transfer–localization plane: BLEnD soft match and accuracy (Δ and quadrants: :mod:`jaxsteer.study.delta`).

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

import dataclasses
import re
import string
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from jaxsteer.errors import DataError

if TYPE_CHECKING:
    from jaxsteer.data.blend import BlendQuestion

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


# Δ and the plane live in jaxsteer.study.delta; their names stay importable from here (the public contract)
from jaxsteer.study.delta import (  # noqa: E402, F401
    QUADRANTS,
    DeltaTable,
    MethodResult,
    PlanePoint,
    ResultLike,
    check_comparable,
    common_languages,
    delta_table,
    load_result,
    mean_spread,
    plane_points,
    quadrant,
    results_of,
)
