"""BLEnD: short-answer cultural questions per country, their human annotations, and the MCQ file.

Localization (the y axis of the transfer–localization plane) is BLEnD short-answer accuracy, so this
module joins each question (``{Country}_questions.csv``) with its annotations (``{Country}_data.json``)
by ``ID`` and applies BLEnD's validity rule: a question is skipped when annotators mostly could not
answer it (``no-answer + not-applicable >= 3`` or ``idk >= 5``) or when it has no annotated answer.
jaxsteer also skips a question whose local text is blank (China ``New-en-04`` is ``"  "`` in the
released file): BLEnD would prompt it as an empty question; we never prompt or score it.
The multiple-choice file is loaded as released; scoring it by log-likelihood is our variant, not BLEnD's.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jaxsteer.data.files import (
    PathLike,
    as_int,
    is_hub_id,
    load_hub,
    locate,
    read_json,
    read_table,
    require_rows,
    text_cell,
)
from jaxsteer.data.languages import LANGUAGES, blend_country, normalize_country
from jaxsteer.errors import DataError

log = logging.getLogger(__name__)

HUB_ID = "nayeon212/BLEnD"
QUESTION_COLUMNS: tuple[str, ...] = ("ID", "Topic", "Source", "Question", "Translation")
MC_COLUMNS: tuple[str, ...] = (
    "MCQID",
    "ID",
    "country",
    "prompt",
    "choices",
    "choice_countries",
    "answer_idx",
)
ANNOTATION_KEYS: tuple[str, ...] = ("annotations", "idks")
HUB_SPLITS: dict[str, str] = {
    "Algeria": "DZ", "Assam": "AS", "Azerbaijan": "AZ", "China": "CN", "Ethiopia": "ET", "Greece": "GR",
    "Indonesia": "ID", "Iran": "IR", "Mexico": "MX", "North_Korea": "KP", "Northern_Nigeria": "NG",
    "South_Korea": "KR", "Spain": "ES", "UK": "GB", "US": "US", "West_Java": "JB",
}  # fmt: skip
"""The hub copy's split names (its dataset card's country codes) by BLEnD file spelling."""

SKIP_NO_ANSWER = 3  # skip when no-answer + not-applicable >= 3 (BLEnD paper)
SKIP_IDK = 5  # skip when idk >= 5

SKIP_BLANK = "blank question"
# where a data root keeps BLEnD's files: ours (blend/…), the GitHub repo's data/ (questions/, annotations/) and
# the hub copy's (data/questions_hf/, data/annotations_hf/)
QUESTION_FOLDERS: tuple[str, ...] = (
    "blend/questions",
    "questions",
    "data/questions",
    "questions_hf",
    "data/questions_hf",
)
ANNOTATION_FOLDERS: tuple[str, ...] = (
    "blend/annotations", "annotations", "data/annotations", "annotations_hf", "data/annotations_hf",
)  # fmt: skip

SKIP_NOT_IN_ANNOTATIONS = "ID not in the annotation file"
SKIP_REASONS: tuple[str, ...] = (
    SKIP_BLANK,
    f"no-answer + not-applicable >= {SKIP_NO_ANSWER}",
    f"idk >= {SKIP_IDK}",
    "no annotated answer",
    SKIP_NOT_IN_ANNOTATIONS,
)
"""Why a question is not scored, in the order they are checked (:attr:`BlendQuestion.skip_reason`)."""


@dataclasses.dataclass(frozen=True)
class IdkCounts:
    """How many annotators could not answer: "I don't know", no answer, or "not applicable"."""

    idk: int = 0
    no_answer: int = 0
    not_applicable: int = 0


@dataclasses.dataclass(frozen=True)
class BlendAnswer:
    """One aggregated annotated answer: its local and English spellings and how many annotators gave it."""

    answers: tuple[str, ...]
    en_answers: tuple[str, ...]
    count: int


@dataclasses.dataclass(frozen=True)
class BlendQuestion:
    """A BLEnD short-answer question joined with its annotations (answers ordered by count, descending)."""

    id: str
    country: str  # BLEnD spelling, e.g. "South_Korea"
    lang: str | None  # ISO code of the local language, None for countries outside the language table
    topic: str
    question: str  # in the local language, naming the country
    question_en: str
    annotations: tuple[BlendAnswer, ...] = ()
    idk_counts: IdkCounts = IdkCounts()
    source: str = ""
    annotated: bool = True  # False: loaded without an annotation file (``require_annotations=False``)
    in_annotation_file: bool = True  # False: the annotation file has no entry for this ID (a stale or other file)

    @property
    def answers_local(self) -> tuple[str, ...]:
        return tuple(a for ann in self.annotations for a in ann.answers)

    @property
    def answers_en(self) -> tuple[str, ...]:
        return tuple(a for ann in self.annotations for a in ann.en_answers)

    @property
    def blank(self) -> bool:
        """The local question is empty or whitespace only (nothing to prompt)."""
        return not self.question.strip()

    @property
    def skip_reason(self) -> str | None:
        """The first of :data:`SKIP_REASONS` that applies, or None when the question is scored.

        Without annotations (``annotated`` False) only a blank question is known to be skipped.
        """
        if self.blank:
            return SKIP_BLANK
        if not self.annotated:
            return None
        if not self.in_annotation_file:  # apart from "no annotated answer": a mismatched file must show
            return SKIP_NOT_IN_ANNOTATIONS
        return skip_reason(self.idk_counts, len(self.annotations))

    @property
    def skipped(self) -> bool:
        """Not scored: BLEnD's rule (:func:`should_skip`) or a blank local question."""
        return self.skip_reason is not None


@dataclasses.dataclass(frozen=True)
class BlendMCQuestion:
    """A row of BLEnD's multiple-choice file; ``answer`` is the 0-based index into ``choices``."""

    mcq_id: str
    id: str
    country: str
    prompt: str
    letters: tuple[str, ...]
    choices: tuple[str, ...]
    choice_countries: tuple[str, ...]
    answer: int

    @property
    def answer_letter(self) -> str:
        return self.letters[self.answer]


def should_skip(idk_counts: IdkCounts | Mapping[str, Any], n_annotations: int | None = None) -> bool:
    """True when BLEnD excludes the question from scoring.

    ``no-answer + not-applicable >= 3`` or ``idk >= 5``; also when ``n_annotations`` is given and zero.
    """
    return skip_reason(idk_counts, n_annotations) is not None


def skip_reason(idk_counts: IdkCounts | Mapping[str, Any], n_annotations: int | None = None) -> str | None:
    """Which part of BLEnD's rule excludes the question (a :data:`SKIP_REASONS` entry), or None."""
    counts = idk_counts if isinstance(idk_counts, IdkCounts) else parse_idks(idk_counts, "idks")
    if counts.no_answer + counts.not_applicable >= SKIP_NO_ANSWER:
        return SKIP_REASONS[1]
    if counts.idk >= SKIP_IDK:
        return SKIP_REASONS[2]
    if n_annotations is not None and n_annotations == 0:
        return SKIP_REASONS[3]
    return None


def parse_idks(raw: Mapping[str, Any] | None, where: str) -> IdkCounts:
    """``{idk, no-answer, not-applicable}`` (missing keys count 0; other keys are ignored)."""
    raw = raw or {}
    if not isinstance(raw, Mapping):
        raise DataError(f"{where}: idks must be an object with idk, no-answer, not-applicable")
    return IdkCounts(
        idk=as_int(raw.get("idk", 0), f"{where} idk"),
        no_answer=as_int(raw.get("no-answer", 0), f"{where} no-answer"),
        not_applicable=as_int(raw.get("not-applicable", 0), f"{where} not-applicable"),
    )


def parse_annotations(raw: Sequence[Mapping[str, Any]], where: str) -> tuple[BlendAnswer, ...]:
    """Aggregated answers sorted by count (descending, stable), each with its local and English forms."""
    if not isinstance(raw, (list, tuple)):
        raise DataError(f"{where}: annotations must be a list of {{answers, en_answers, count}}")
    out = []
    for j, ann in enumerate(raw):
        at = f"{where} annotation {j}"
        if not isinstance(ann, Mapping) or "count" not in ann:
            raise DataError(f"{at}: expected an object with answers, en_answers, count")
        out.append(
            BlendAnswer(
                answers=_answer_list(ann.get("answers"), f"{at} answers"),
                en_answers=_answer_list(ann.get("en_answers"), f"{at} en_answers"),
                count=as_int(ann["count"], f"{at} count"),
            )
        )
    return tuple(sorted(out, key=lambda a: -a.count))


def _answer_list(raw: Any, where: str) -> tuple[str, ...]:
    """An annotation's answers: a list of strings (a bare string would be split into characters, each then
    matching almost any response; a null would become the word "None")."""
    if raw is None:
        return ()
    if not isinstance(raw, (list, tuple)) or not all(isinstance(a, str) for a in raw):
        raise DataError(f"{where}: expected a list of strings, got {raw!r:.60}")
    return tuple(raw)


def load_blend(
    source: PathLike,
    country: str,
    *,
    annotations: PathLike | None = None,
    include_skipped: bool = True,
    require_annotations: bool = True,
) -> list[BlendQuestion]:
    """BLEnD questions of one country (BLEnD name or language code) joined with annotations by ``ID``.

    ``source`` is a data root, the ``{Country}_questions.csv`` file (annotations are then looked up in
    ``../annotations/{Country}_data.json`` unless ``annotations`` is given), or the hub id. Questions
    without annotations are kept with no answers (and count as skipped). With ``require_annotations``
    False a missing local annotation file is not an error: every question comes back with
    ``annotated=False`` (what ``jaxsteer data check`` needs to audit the questions alone).
    """
    country = blend_country(country)
    lang = _country_lang(country)
    if is_hub_id(source):
        split = HUB_SPLITS.get(country)
        if split is None:
            raise DataError(f"BLEnD country {country!r} is not in the hub copy (known: {', '.join(HUB_SPLITS)})")
        rows = load_hub(str(source), "short-answer-questions", split, required=QUESTION_COLUMNS)
        where = f"hub dataset {source} ({country})"
        raw_ann = {
            text_cell(r["ID"], "").strip(): r for r in load_hub(str(source), "annotations", split, required=("ID",))
        }
    else:
        qpath = _questions_path(source, country)
        where = str(qpath)
        rows = read_table(qpath, required=QUESTION_COLUMNS)
        apath = Path(annotations) if annotations is not None else _annotation_path(source, qpath, country)
        if apath is None and require_annotations:
            raise DataError(f"BLEnD annotations for {country}: {country}_data.json not found next to {qpath}")
        raw_ann = _keyed_annotations(read_json(apath), apath) if apath is not None else None
    require_rows(rows, where)
    out: list[BlendQuestion] = []
    seen: set[str] = set()
    for i, row in enumerate(rows):
        qid = text_cell(row["ID"], f"{where} row {i} ID", required=True).strip()
        if qid in seen:
            raise DataError(f"{where} row {i}: duplicate ID {qid!r}")
        seen.add(qid)
        ann = (raw_ann.get(qid) if raw_ann is not None else None) or {}
        at = f"{country} annotation {qid!r}"
        if not isinstance(ann, Mapping):
            raise DataError(f"{at}: expected an object with annotations and idks")
        ann_list = _decoded(ann.get("annotations") or [], f"{at} annotations")
        idks = _decoded(ann.get("idks"), f"{at} idks")
        q = BlendQuestion(
            id=qid,
            country=country,
            lang=lang,
            topic=text_cell(row["Topic"], ""),
            question=text_cell(row["Question"], ""),  # blank: kept, and skipped as SKIP_BLANK
            question_en=text_cell(row["Translation"], ""),
            annotations=parse_annotations(ann_list, at),
            idk_counts=parse_idks(idks, at),
            source=text_cell(row["Source"], ""),
            annotated=raw_ann is not None,
            in_annotation_file=raw_ann is None or qid in raw_ann,
        )
        if include_skipped or not q.skipped:
            out.append(q)
    extra = [qid for qid in raw_ann or {} if qid not in seen]
    if extra:  # BLEnD's scorer loops over the annotations: its denominator counts these, ours cannot
        log.warning(
            "BLEnD %s: %d annotated ID(s) have no question in %s (e.g. %s); BLEnD's own scorer would count them",
            country, len(extra), where, ", ".join(extra[:3]),
        )  # fmt: skip
    return out


def annotation_only_ids(source: PathLike, country: str) -> list[str]:
    """IDs of a country's local annotation file that its questions file lacks (none without either file)."""
    country = blend_country(country)
    if is_hub_id(source):
        return []
    try:
        qpath = _questions_path(source, country)
    except DataError:
        return []
    apath = _annotation_path(source, qpath, country)
    if apath is None:
        return []
    ids = {text_cell(r["ID"], "").strip() for r in read_table(qpath, required=QUESTION_COLUMNS)}
    return [qid for qid in _keyed_annotations(read_json(apath), apath) if qid not in ids]


def _keyed_annotations(raw: Any, path) -> dict[str, Any]:
    """An annotation file as ``{ID: entry}``: BLEnD's GitHub files are keyed by ID; the hub's copy
    (``annotations_hf/{Country}_data.json``) is a list of entries that carry their ``ID``."""
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, list) and all(isinstance(e, Mapping) and "ID" in e for e in raw):
        keyed: dict[str, Any] = {}
        for j, entry in enumerate(raw):
            qid = text_cell(entry["ID"], f"{path} entry {j} ID", required=True).strip()
            if qid in keyed:
                raise DataError(f"{path} entry {j}: duplicate ID {qid!r}")
            keyed[qid] = entry
        return keyed
    raise DataError(f"{path}: expected a JSON object keyed by question ID, or a list of objects with an ID")


def load_blend_mc(source: PathLike, country: str | None = None) -> list[BlendMCQuestion]:
    """Rows of BLEnD's ``mc_questions_file.csv`` (all countries, or one: BLEnD name or language code)."""
    if is_hub_id(source):
        rows = load_hub(str(source), "multiple-choice-questions", "test", required=MC_COLUMNS)
        where = f"hub dataset {source} (multiple-choice-questions)"
    else:
        path = locate(source, ["blend/mc_questions_file", "mc_questions_file"], "BLEnD multiple-choice file")
        where = str(path)
        rows = read_table(path, required=MC_COLUMNS)
    require_rows(rows, where)
    wanted = blend_country(country) if country is not None else None
    out = []
    for i, row in enumerate(rows):
        row_country = normalize_country(text_cell(row["country"], ""))
        if wanted is not None and row_country != wanted:
            continue
        at = f"{where} row {i} (MCQID {row['MCQID']!r})"
        choices = _json_object(row["choices"], f"{at} choices")
        countries = _json_object(row["choice_countries"], f"{at} choice_countries") if row["choice_countries"] else {}
        letters = tuple(sorted(choices))
        answer = str(row["answer_idx"]).strip()
        if answer.isdigit() and answer not in letters:
            index = int(answer)
        elif answer in letters:
            index = letters.index(answer)
        else:
            raise DataError(f"{at}: answer_idx {row['answer_idx']!r} is not one of {', '.join(letters)}")
        if not 0 <= index < len(letters):
            raise DataError(f"{at}: answer_idx {row['answer_idx']!r} is out of range for {len(letters)} choices")
        out.append(
            BlendMCQuestion(
                mcq_id=text_cell(row["MCQID"], f"{where} row {i} MCQID", required=True),
                id=text_cell(row["ID"], ""),
                country=row_country,
                prompt=text_cell(row["prompt"], f"{at} prompt", required=True),
                letters=letters,
                choices=tuple(text_cell(choices[k], f"{at} choice {k}", required=True) for k in letters),
                choice_countries=tuple(normalize_country(text_cell(countries.get(k), "")) for k in letters),
                answer=index,
            )
        )
    if not out:
        raise DataError(f"{where}: no multiple-choice rows for country {wanted!r}")
    return out


def scorable(questions: Sequence[BlendQuestion]) -> list[BlendQuestion]:
    """The questions that are scored (not skipped by BLEnD's rule, not blank)."""
    return [q for q in questions if not q.skipped]


def _questions_path(source: PathLike, country: str) -> Path:
    return locate(
        source, [f"{folder}/{country}_questions" for folder in QUESTION_FOLDERS], f"BLEnD questions for {country}"
    )


def _annotation_path(source: PathLike, qpath: Path, country: str) -> Path | None:
    root = Path(source)
    candidates = [
        *(root / folder for folder in ANNOTATION_FOLDERS),
        *(qpath.parent.parent / Path(folder).name for folder in ANNOTATION_FOLDERS),
        qpath.parent,
    ]
    for folder in candidates:
        if (folder / f"{country}_data.json").is_file():
            return folder / f"{country}_data.json"
    return None


def _decoded(value: Any, where: str) -> Any:
    """Hub rows may carry nested fields as JSON strings; local JSON files carry them as objects."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        raise DataError(f"{where}: {value[:60]!r} is not valid JSON") from None


def _json_object(text: Any, where: str) -> dict[str, Any]:
    if isinstance(text, dict):
        return text
    try:
        value = json.loads(str(text))
    except json.JSONDecodeError:
        raise DataError(f"{where}: {str(text)[:60]!r} is not a JSON object") from None
    if not isinstance(value, dict) or not value:
        raise DataError(f"{where}: expected a non-empty JSON object letter -> text")
    return value


def _country_lang(country: str) -> str | None:
    for lang in LANGUAGES.values():
        if lang.blend_country == country:
            return lang.code
    return None


__all__ = [
    "BlendAnswer",
    "BlendMCQuestion",
    "BlendQuestion",
    "IdkCounts",
    "load_blend",
    "load_blend_mc",
    "parse_annotations",
    "parse_idks",
    "scorable",
    "should_skip",
    "skip_reason",
]
