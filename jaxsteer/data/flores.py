"""FLORES-200 parallel sentences: the aligned pairs MIDALIGN's contrastive step pulls together.

MIDALIGN treats each (English, XX) sentence pair as a positive and the other pairs of the batch as
negatives, so a misalignment silently teaches the wrong thing. Pairs are therefore joined by sentence
``id``, never by position, and ids present on one side only are an error unless ``strict=False``.

Two local layouts are read: the HF-style ``{root}/flores/{split}/{code}.jsonl`` rows (id, URL, domain,
topic, has_image, has_hyperlink, sentence) and the raw release ``{root}/flores200_dataset/{split}/
{code}.{split}`` with one sentence per line (ids are then line numbers starting at 1, as in the HF copy).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from jaxsteer.data.files import (
    PathLike,
    check_columns,
    is_hub_id,
    load_hub,
    locate,
    read_table,
    read_text,
    require_rows,
    text_cell,
)
from jaxsteer.data.languages import flores_code
from jaxsteer.errors import DataError

HUB_ID = "facebook/flores"
SPLITS: tuple[str, ...] = ("dev", "devtest")
COLUMNS: tuple[str, ...] = ("id", "sentence")


@dataclasses.dataclass(frozen=True)
class FloresSentence:
    id: int
    code: str
    sentence: str
    domain: str = ""
    topic: str = ""


@dataclasses.dataclass(frozen=True)
class ParallelPair:
    """The same FLORES sentence in the source and the target language."""

    id: int
    src_code: str
    tgt_code: str
    src: str
    tgt: str


def load_flores(source: PathLike, code: str, split: str = "dev") -> list[FloresSentence]:
    """Sentences of one language (ISO ``ko`` or FLORES ``kor_Hang``) from a data root, a file, or the hub."""
    code = flores_code(code)
    if split not in SPLITS:
        raise DataError(f"unknown FLORES split {split!r}; expected one of {', '.join(SPLITS)}")
    if is_hub_id(source):
        where = f"hub dataset {source} ({code}, {split})"
        rows = _with_sentence(load_hub(str(source), code, split), where)
    else:
        path = _find(Path(source), code, split)
        where = str(path)
        rows = _read_plain(path) if path.suffix == f".{split}" else _with_sentence(read_table(path), path)
    require_rows(rows, where)
    out, seen = [], set()
    for i, row in enumerate(rows):
        try:
            sid = int(row["id"])
        except (TypeError, ValueError):
            raise DataError(f"{where} row {i}: id {row['id']!r} is not an integer") from None
        if sid in seen:
            raise DataError(f"{where} row {i}: duplicate id {sid}")
        seen.add(sid)
        out.append(
            FloresSentence(
                sid,
                code,
                text_cell(row["sentence"], f"{where} row {i} (id {sid}) sentence", required=True),
                text_cell(row.get("domain"), ""),
                text_cell(row.get("topic"), ""),
            )
        )
    return out


def load_flores_pairs(
    source: PathLike, src: str, tgt: str, split: str = "dev", *, strict: bool = True
) -> list[ParallelPair]:
    """(src, tgt) sentence pairs aligned by id, sorted by id (``source``: a data root or the hub; one file holds
    one language)."""
    if not is_hub_id(source) and Path(source).is_file():
        raise DataError(f"FLORES pairs need a file per language: {source} is one file; pass the data root holding them")
    return align(load_flores(source, src, split), load_flores(source, tgt, split), strict=strict)


def align(src: list[FloresSentence], tgt: list[FloresSentence], *, strict: bool = True) -> list[ParallelPair]:
    """Join two languages' sentences by id; ``strict`` requires the same id set on both sides."""
    if not src or not tgt:
        raise DataError("cannot align FLORES sentences: one side is empty")
    by_id = {s.id: s for s in tgt}
    src_ids = {s.id for s in src}
    only_src, only_tgt = sorted(src_ids - set(by_id)), sorted(set(by_id) - src_ids)
    if strict and (only_src or only_tgt):
        raise DataError(
            f"FLORES {src[0].code} has {len(src)} sentences and {tgt[0].code} has {len(tgt)}: ids only in "
            f"{src[0].code} {only_src[:5]}, only in {tgt[0].code} {only_tgt[:5]}"
        )
    pairs = [
        ParallelPair(s.id, s.code, tgt[0].code, s.sentence, by_id[s.id].sentence)
        for s in sorted(src, key=lambda s: s.id)
        if s.id in by_id
    ]
    if not pairs:
        raise DataError(f"FLORES {src[0].code} and {tgt[0].code} share no sentence id")
    return pairs


# FLORES+ (the maintained successor of FLORES-200) names some languages' files differently: same sentences
ALIASES: dict[str, tuple[str, ...]] = {"zho_Hans": ("cmn_Hans",)}


def _find(root: Path, code: str, split: str) -> Path:
    names = (code, *ALIASES.get(code, ()))
    if root.is_file():  # one language's file: a file named for another FLORES language is not this one's
        stem = root.name.split(".")[0]
        if re.fullmatch(r"[a-z]{3}_[A-Z][a-z]{3}", stem) and stem not in names:
            raise DataError(f"{root} is the FLORES file of {stem}, not of {code}")
        return root
    try:
        candidates = [f"{folder}/{name}" for name in names for folder in (f"flores/{split}", split)]
        candidates += [f"{folder}{name}/{split}-*.parquet" for name in names for folder in ("flores/", "")]
        return locate(root, candidates, f"FLORES {code} {split}")
    except DataError:
        for name in names:
            for raw in (root / "flores200_dataset" / split / f"{name}.{split}", root / split / f"{name}.{split}"):
                if raw.is_file():
                    return raw
        raise


def _with_sentence(rows: list[dict], where) -> list[dict]:
    """Rows with ``id`` and ``sentence``; FLORES+ files call the sentence ``text``."""
    if rows and "sentence" not in rows[0]:
        if "text" not in rows[0]:
            raise DataError(
                f"{where}: no sentence column (FLORES-200 names it sentence, FLORES+ text); columns: "
                + ", ".join(map(str, rows[0]))
            )
        rows = [{**row, "sentence": row["text"]} if "text" in row else row for row in rows]
    check_columns(rows, COLUMNS, str(where))
    return rows


def _read_plain(path: Path) -> list[dict]:
    # newlines only: str.splitlines also splits at U+2028/U+0085/\r inside a sentence, shifting every later id
    lines = read_text(path).replace("\r\n", "\n").split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    return [{"id": i, "sentence": line} for i, line in enumerate(lines, 1)]
