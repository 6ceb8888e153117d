"""Global-MMLU: four-option questions per language, and the culturally-agnostic subset that measures transfer.

Transfer (the x axis of the transfer–localization plane) is accuracy on *universal* knowledge, so the
default subset is PAPER.md's: rows that were annotated (``is_annotated``) and labelled culturally agnostic
(``cultural_sensitivity_label == "CA"``). The culturally sensitive (``CS``) rows and ``all`` rows are
options. Rows share ``sample_id`` across languages, which is what makes EN/XX parallel pairs possible.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Literal

from jaxsteer.data.files import (
    PathLike,
    as_bool,
    is_hub_id,
    load_hub,
    locate,
    read_table,
    require_rows,
    text_cell,
)
from jaxsteer.data.languages import language
from jaxsteer.errors import DataError

HUB_ID = "CohereLabs/Global-MMLU"
LETTERS: tuple[str, ...] = ("A", "B", "C", "D")
COLUMNS: tuple[str, ...] = (
    "sample_id",
    "subject",
    "subject_category",
    "question",
    "option_a",
    "option_b",
    "option_c",
    "option_d",
    "answer",
    "required_knowledge",
    "time_sensitive",
    "reference",
    "culture",
    "region",
    "country",
    "cultural_sensitivity_label",
    "is_annotated",
)
"""The columns of a Global-MMLU file, exactly as released."""
REQUIRED: tuple[str, ...] = (
    "sample_id", "subject", "subject_category", "question", "option_a", "option_b", "option_c", "option_d",
    "answer", "cultural_sensitivity_label", "is_annotated",
)  # fmt: skip
"""The columns the loader reads: an export that dropped the others (culture, region, reference, …) loads."""

Subset = Literal["CA", "CS", "annotated", "all"]
SUBSETS: tuple[str, ...] = ("CA", "CS", "annotated", "all")


@dataclasses.dataclass(frozen=True)
class MCQuestion:
    """A four-option question; ``answer`` is the 0-based index of the correct option."""

    id: str
    lang: str
    question: str
    options: tuple[str, str, str, str]
    answer: int
    subject: str = ""
    label: str | None = None  # "CA", "CS", or None when not annotated
    subject_category: str = ""
    is_annotated: bool = False

    @property
    def answer_letter(self) -> str:
        return LETTERS[self.answer]


def load_gmmlu(
    source: PathLike, lang: str, split: str = "test", subset: Subset | str = "CA", *, limit: int | None = None
) -> list[MCQuestion]:
    """Questions of one language from a data root, a file, or the hub id, restricted to ``subset``.

    ``subset``: ``"CA"`` (default: annotated and culturally agnostic), ``"CS"`` (annotated and culturally
    sensitive), ``"annotated"`` (both) or ``"all"``. Raises ``DataError`` for missing columns, an answer
    letter outside A–D, duplicate sample ids, or an empty result.
    """
    lang = language(lang).code
    if subset not in SUBSETS:
        raise DataError(f"unknown Global-MMLU subset {subset!r}; expected one of {', '.join(SUBSETS)}")
    if is_hub_id(source):
        where = f"hub dataset {source} ({lang}, {split})"
        rows = load_hub(str(source), lang, split, required=REQUIRED)
    else:
        candidates = [f"global_mmlu/{lang}/{split}", f"{lang}/{split}"]
        candidates += [f"{c}-*.parquet" for c in candidates]  # a hub snapshot's one shard
        path = locate(source, candidates, f"Global-MMLU {lang} {split}")
        where = str(path)
        rows = read_table(path, required=REQUIRED)
    require_rows(rows, where)
    questions = parse_rows(rows, lang, where)
    selected = select_subset(questions, subset)
    if not selected:
        raise DataError(f"{where}: no rows in subset {subset!r} (of {len(questions)} rows)")
    return selected[:limit] if limit is not None else selected


def parse_rows(rows: Iterable[dict], lang: str, where: str = "Global-MMLU") -> list[MCQuestion]:
    """Validated :class:`MCQuestion` objects from raw Global-MMLU rows (in file order)."""
    out: list[MCQuestion] = []
    seen: set[str] = set()
    for i, row in enumerate(rows):
        sample_id = text_cell(row["sample_id"], "").strip()
        at = f"{where} row {i} (sample_id {sample_id!r})"
        if not sample_id:
            raise DataError(f"{where} row {i}: empty sample_id")
        if sample_id in seen:
            raise DataError(f"{at}: duplicate sample_id")
        seen.add(sample_id)
        letter = text_cell(row["answer"], "").strip().upper()
        if letter not in LETTERS:
            raise DataError(f"{at}: answer {row['answer']!r} is not one of A, B, C, D")
        label = text_cell(row["cultural_sensitivity_label"], "").strip().upper()
        out.append(
            MCQuestion(
                id=sample_id,
                lang=lang,
                question=text_cell(row["question"], f"{at} question", required=True),
                # a blank option is shown as "D." and still scored by its letter, as the harness does; a null is
                # blank, never the word "None"
                options=tuple(text_cell(row[f"option_{c}"], "") for c in "abcd"),  # type: ignore[arg-type]
                answer=LETTERS.index(letter),
                subject=text_cell(row["subject"], ""),
                label=label if label in ("CA", "CS") else None,
                subject_category=text_cell(row["subject_category"], ""),
                is_annotated=as_bool(row["is_annotated"], f"{at} is_annotated"),
            )
        )
    return out


def select_subset(questions: Sequence[MCQuestion], subset: Subset = "CA") -> list[MCQuestion]:
    """The questions of ``subset`` (see :func:`load_gmmlu`), in their original order."""
    if subset == "all":
        return list(questions)
    if subset == "annotated":
        return [q for q in questions if q.is_annotated and q.label is not None]
    if subset in ("CA", "CS"):
        return [q for q in questions if q.is_annotated and q.label == subset]
    raise DataError(f"unknown Global-MMLU subset {subset!r}; expected one of {', '.join(SUBSETS)}")


def align_parallel(
    en: Sequence[MCQuestion], xx: Sequence[MCQuestion], *, strict: bool = False
) -> list[tuple[MCQuestion, MCQuestion]]:
    """(English, XX) pairs of the same ``sample_id``, in the order of ``xx``.

    With ``strict`` every XX question must have an English twin; otherwise unmatched ones are dropped
    (Global-MMLU languages can differ by a few rows after filtering).
    """
    by_id = {q.id: q for q in en}
    pairs = [(by_id[q.id], q) for q in xx if q.id in by_id]
    missing = len(xx) - len(pairs)
    if strict and missing:
        example = next(q.id for q in xx if q.id not in by_id)
        raise DataError(f"{missing} {xx[0].lang} question(s) have no English twin, e.g. sample_id {example!r}")
    if not pairs:
        raise DataError("no shared sample_id between the English and the target-language questions")
    return pairs
