"""OpenAssistant data for the CLA baselines: single-turn top-ranked OASST1 pairs and their translations.

MIST and MIDALIGN train on OpenAssistantXX responses, and CLO builds preference pairs from each example
and its translation. PAPER.md's *default* reading of OpenAssistantXX is: the top-ranked single-turn
OASST1 English prompt/reply pairs, machine-translated into each target language. This module extracts
those pairs from raw OASST1 messages (so the translation step has a well-defined input) and loads the
translated file ``{id, lang, prompt, response, prompt_en, response_en}``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from jaxsteer.data.files import PathLike, is_hub_id, load_hub, locate, read_table, require_rows, text_cell
from jaxsteer.data.languages import language
from jaxsteer.errors import DataError

OASST1_HUB_ID = "OpenAssistant/oasst1"
OASST1_COLUMNS: tuple[str, ...] = ("message_id", "parent_id", "text", "role", "lang", "rank")
OASST_XX_COLUMNS: tuple[str, ...] = ("id", "lang", "prompt", "response", "prompt_en", "response_en")
REQUIRED_XX: tuple[str, ...] = ("id", "prompt", "response")


@dataclasses.dataclass(frozen=True)
class OasstPair:
    """One single-turn example: a prompt and its reply in ``lang``, with the English originals."""

    id: str
    lang: str
    prompt: str
    response: str
    prompt_en: str = ""
    response_en: str = ""


def top_ranked_pairs(
    messages: Iterable[Mapping[str, Any]], lang: str | None = "en", *, require_rank0: bool = True
) -> list[OasstPair]:
    """Single-turn pairs: each root prompter message and its best-ranked assistant reply.

    A root is a ``prompter`` message with no ``parent_id``; its reply is the direct ``assistant`` child
    with the lowest ``rank`` (0 is best). Deleted messages (``deleted`` true) and messages that failed
    review (``review_result`` false) are ignored. With ``require_rank0`` (default) a tree whose best
    ranked reply is not rank 0, or whose replies are unranked, gives no pair. ``lang`` filters roots by
    language (``None`` keeps all). Pairs come in the order of the roots; ``id`` is the root's message id.
    For English pairs ``prompt_en``/``response_en`` repeat the text.
    """
    rows = [m for m in messages if not _flag(m.get("deleted"), False) and _flag(m.get("review_result"), True)]
    children: dict[str, list[Mapping[str, Any]]] = {}
    for m in rows:
        parent = m.get("parent_id")
        if parent not in (None, ""):
            children.setdefault(str(parent), []).append(m)
    pairs = []
    for m in rows:
        if m.get("parent_id") not in (None, "") or m.get("role") != "prompter":
            continue
        if lang is not None and m.get("lang") != lang:
            continue
        ranked = [c for c in children.get(str(m["message_id"]), []) if c.get("role") == "assistant"]
        ranked = [c for c in ranked if _rank(c) is not None]
        if not ranked:
            continue
        best = min(ranked, key=lambda c: _rank(c))  # type: ignore[arg-type, return-value]
        if require_rank0 and _rank(best) != 0:
            continue
        is_en = m.get("lang") == "en"
        prompt, response = text_cell(m["text"], ""), text_cell(best["text"], "")
        if not prompt.strip() or not response.strip():  # a null or blank text is no example
            continue
        pairs.append(
            OasstPair(
                id=text_cell(m["message_id"], ""),
                lang=text_cell(m.get("lang"), ""),
                prompt=prompt,
                response=response,
                prompt_en=prompt if is_en else "",
                response_en=response if is_en else "",
            )
        )
    return pairs


def load_oasst1_pairs(source: PathLike, lang: str | None = "en", *, require_rank0: bool = True) -> list[OasstPair]:
    """:func:`top_ranked_pairs` of raw OASST1 messages from a data root, a file, or the hub id."""
    if is_hub_id(source):
        rows = load_hub(str(source), None, "train", required=OASST1_COLUMNS)
        where = f"hub dataset {source}"
    else:
        hub = ["*_oasst_ready.messages.jsonl.gz", "data/train-*.parquet"]  # a hub snapshot: the reviewed tree
        path = locate(source, ["oasst1/oasst1", "oasst1", *(f"oasst1/{h}" for h in hub), *hub], "OASST1 messages")
        rows = read_table(path, required=OASST1_COLUMNS)
        where = str(path)
    require_rows(rows, where)
    pairs = top_ranked_pairs(rows, lang, require_rank0=require_rank0)
    if not pairs:
        raise DataError(f"{where}: no single-turn rank-0 prompt/reply pair for language {lang!r}")
    return pairs


def load_oasst_xx(source: PathLike, langs: Sequence[str] | None = None) -> list[OasstPair]:
    """OpenAssistantXX rows (all languages, or those in ``langs``) from a data root or a file."""
    if is_hub_id(source):
        rows = load_hub(str(source), None, "train", required=OASST_XX_COLUMNS)
        where = f"hub dataset {source}"
    else:
        path = locate(source, ["oasst/oasst_xx", "oasst_xx"], "OpenAssistantXX")
        rows = read_table(path, required=OASST_XX_COLUMNS)
        where = str(path)
    require_rows(rows, where)
    wanted = {language(code).code for code in langs} if langs is not None else None
    out = []
    for i, row in enumerate(rows):
        lang = text_cell(row["lang"], "").strip()
        if wanted is not None and lang not in wanted:
            continue
        at = f"{where} row {i} (id {row['id']!r})"
        # the English originals may be blank (then not used as pairs); a null is "", never the text "None"
        out.append(OasstPair(*(text_cell(row[c], f"{at} {c}", required=c in REQUIRED_XX) for c in OASST_XX_COLUMNS)))
    if not out:
        raise DataError(f"{where}: no rows for languages {sorted(wanted or [])}")
    return out


def by_language(pairs: Iterable[OasstPair]) -> dict[str, list[OasstPair]]:
    """Pairs grouped by ``lang`` (insertion order of first appearance)."""
    out: dict[str, list[OasstPair]] = {}
    for p in pairs:
        out.setdefault(p.lang, []).append(p)
    return out


def _rank(message: Mapping[str, Any]) -> int | None:
    value = message.get("rank")
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "nan", "none", "null")):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DataError(f"OASST1 message {message.get('message_id')!r}: rank {value!r} is not a number") from None
    if number != number:  # NaN: a Parquet/pandas null
        return None
    if not math.isfinite(number) or number != int(number) or number < 0:
        raise DataError(f"OASST1 message {message.get('message_id')!r}: rank {value!r} is not a whole number ≥ 0")
    return int(number)


def _flag(value: Any, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)
