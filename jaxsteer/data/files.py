"""Reading local data files: the one place that knows formats, layout and column checks.

Every loader in :mod:`jaxsteer.data` goes through this module so that a missing file, a missing column or
an unreachable hub produces the same one-line :class:`~jaxsteer.errors.DataError` everywhere, and so that
the synthetic-world generator can write files that the loaders are guaranteed to read.

A *source* is one of

* a **data root**: a folder laid out as below;
* an explicit **file** (any of ``.csv``, ``.parquet``, ``.jsonl``, ``.json``);
* a **hub id** (``org/name``), tried with ``datasets.load_dataset`` only when the string is not an
  existing path. Offline (``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE`` set, or no network) this raises
  :class:`HubUnavailableError` (a ``DataError``) saying to pass local files.

Data-root layout (tables may be ``.csv``, ``.parquet``, ``.jsonl`` or ``.json`` unless noted)::

    {root}/global_mmlu/{lang}/dev.csv, test.csv     Global-MMLU: sample_id, subject, subject_category,
                                                    question, option_a..option_d, answer (A-D),
                                                    required_knowledge, time_sensitive, reference,
                                                    culture, region, country,
                                                    cultural_sensitivity_label (CA/CS), is_annotated
                                                    (required: those the loader reads, gmmlu.REQUIRED)
    {root}/blend/questions/{Country}_questions.csv  BLEnD short answer: unnamed index, ID, Topic,
                                                    Source, Question (local), Translation (English)
    {root}/blend/annotations/{Country}_data.json    {id: {question, en_question, annotations:
                                                    [{answers, en_answers, count}],
                                                    idks: {idk, no-answer, not-applicable}}}
    {root}/blend/mc_questions_file.csv              MCQID, ID, country, prompt, choices (JSON
                                                    letter->answer), choice_countries, answer_idx
    {root}/oasst/oasst_xx.jsonl                     OpenAssistantXX: id, lang, prompt, response,
                                                    prompt_en, response_en
    {root}/oasst1/oasst1.jsonl                      raw OASST1 messages: message_id, parent_id, text,
                                                    role (prompter/assistant), lang, rank, ...
    {root}/flores/{split}/{flores_code}.jsonl       FLORES-200 (split dev/devtest): id, URL, domain,
                                                    topic, has_image, has_hyperlink, sentence
    {root}/flores200_dataset/{split}/{code}.{split} raw FLORES-200 release: one sentence per line

A hub snapshot as downloaded (``huggingface-cli download … --local-dir``) is a data root too, for the files
that are one shard a split: Global-MMLU ``{lang}/{split}-00000-of-00001.parquet``, FLORES ``{code}/{split}-*.parquet``
(``text`` for ``sentence``: FLORES+), OASST1 ``*_oasst_ready.messages.jsonl.gz`` or ``data/train-*.parquet``,
BLEnD's ``data/questions_hf/`` and ``data/annotations_hf/`` (annotations as a list of ``{ID, …}`` objects).
``.csv``/``.jsonl``/``.json`` may be gzipped (found as ``name.jsonl.gz`` too); JSON Lines saved under a
``.json`` name is read as JSON Lines.

``{Country}`` is BLEnD's file spelling (``South_Korea``, ``Northern_Nigeria``); ``{lang}`` is the ISO code
(``zh``, ``ko``, ...); ``{flores_code}`` is e.g. ``kor_Hang`` (see :mod:`jaxsteer.data.languages`).
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import math
import os
import re
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from jaxsteer.errors import DataError, OfflineError

PathLike = str | os.PathLike

TABLE_SUFFIXES: tuple[str, ...] = (".csv", ".parquet", ".jsonl", ".json")
GZIPPED_SUFFIXES: tuple[str, ...] = (".csv.gz", ".jsonl.gz", ".json.gz")  # text tables may be gzipped
GZIP_MAGIC = b"\x1f\x8b"

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class MissingFileError(DataError):
    """None of the places a dataset's file may be under a data root holds it."""


class HubUnavailableError(DataError, OfflineError):
    """A hub id was given but the hub cannot be reached (offline or no network)."""


# --- sources ---------------------------------------------------------------------------------------
def is_hub_id(source: Any) -> bool:
    """True for an ``org/name`` string that is not an existing local path."""
    if not isinstance(source, str) or os.path.exists(source):
        return False
    if source.startswith((".", "/", "~")) or source.endswith(TABLE_SUFFIXES + GZIPPED_SUFFIXES):
        return False
    return bool(_HUB_ID.match(source))


def locate(source: PathLike, candidates: Sequence[str], what: str) -> Path:
    """The file for ``what``: ``source`` itself if it is a file, else the first existing candidate under it.

    Each candidate is a path relative to ``source`` without a suffix (every suffix of
    :data:`TABLE_SUFFIXES` is tried) or with one (tried as is).
    """
    path = Path(source).expanduser()
    if path.is_file():
        return path
    if not path.is_dir():
        raise DataError(f"{what}: no such file or folder {str(path)!r}")
    tried = []
    for rel in candidates:
        if "*" in rel:  # a hub snapshot's shard name (``ko/test-00000-of-00001.parquet``)
            found = sorted(p for p in path.glob(rel) if p.is_file())
            if len(found) > 1:
                names = ", ".join(str(p.relative_to(path)) for p in found[:4])
                raise DataError(f"{what}: {len(found)} files match {rel} under {str(path)!r} ({names}): "
                                "join the shards into one file, or pass the one to read")  # fmt: skip
            if found:
                return found[0]
            tried.append(rel)
            continue
        stems = [path / rel] if Path(rel).suffix else [path / (rel + s) for s in TABLE_SUFFIXES + GZIPPED_SUFFIXES]
        for p in stems:
            if p.is_file():
                return p
            tried.append(str(p.relative_to(path)))
    raise MissingFileError(f"{what}: none of {', '.join(tried)} exists under {str(path)!r}")


# --- tables ----------------------------------------------------------------------------------------
def read_table(path: PathLike, *, required: Iterable[str] = (), what: str | None = None) -> list[dict]:
    """Rows of a ``.csv``/``.parquet``/``.jsonl``/``.json`` table as plain dicts, after a column check.

    CSV cells are read as strings exactly as written (no ``NaN`` for empty cells or for ``"NA"``);
    JSON and Parquet keep their own types. Loaders convert and validate fields themselves.
    """
    path = Path(path)
    label = what or str(path)
    if not path.is_file():
        raise DataError(f"{label}: no such file {str(path)!r}")
    suffix = path.suffix.lower()
    if suffix == ".gz":  # a compressed text table (the hub's ``….messages.jsonl.gz``): read_text unpacks it
        suffix = Path(path.stem).suffix.lower()
        if suffix not in (".csv", ".jsonl", ".json"):
            raise DataError(f"{path}: unsupported compressed table {suffix + '.gz'!r} (expected .csv/.jsonl/.json.gz)")
    if suffix == ".csv":
        rows = _read_csv(path)
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            rows = pq.read_table(path).to_pylist()
        except Exception as e:  # pyarrow raises several types for a corrupt file
            raise DataError(f"{path}: not a readable Parquet file ({_first_line(e)})") from None
    elif suffix == ".jsonl":
        rows = _read_jsonl(path)
    elif suffix == ".json":
        rows = _json_rows(_json_or_lines(path), path)
    else:
        raise DataError(f"{path}: unsupported table format {suffix!r} (expected {', '.join(TABLE_SUFFIXES)})")
    check_columns(rows, required, str(path))
    return rows


def read_json(path: PathLike) -> Any:
    """Parsed JSON of ``path`` with a one-line error for a missing, non-UTF-8 or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such file {str(path)!r}")
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: invalid JSON at line {e.lineno} ({e.msg})") from None


def _json_or_lines(path: Path) -> Any:
    """A ``.json`` table's content: one JSON value, or JSON Lines under a ``.json`` name (what
    ``datasets.Dataset.to_json`` writes by default) as a list of its objects."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg != "Extra data":
            raise DataError(f"{path}: invalid JSON at line {e.lineno} ({e.msg})") from None
    return [row for _, row in jsonl_objects(path)]


def read_text(path: PathLike) -> str:
    """The UTF-8 text of ``path``, without a leading byte-order mark (Excel and Windows editors write one into
    CSV and JSON files; it is never content).

    Every text file the package reads (tables, JSON/JSONL, pairs, corpora, result files) goes through here,
    so a file in another encoding (an EUC-KR BLEnD file, a Latin-1 CSV) is one ``DataError`` naming the
    file, the first byte that is not UTF-8 and its offset, wherever it is given.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"no such file {str(path)!r}") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a folder; expected a file") from None
    if raw[:2] == GZIP_MAGIC:  # by content, not name: a plain file named .gz (ours, say) reads as it is
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: not a readable gzip file ({_first_line(e)})") from None
    skip = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    try:
        return raw[skip:].decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: {not_utf8(raw, skip + e.start)}; save it as UTF-8") from None


def not_utf8(raw: bytes, offset: int) -> str:
    """``not UTF-8: byte 0xb1 at offset 17 (line 2)`` for the byte of ``raw`` at which decoding failed."""
    line = raw.count(b"\n", 0, offset) + 1
    return f"not UTF-8: byte 0x{raw[offset]:02x} at offset {offset} (line {line})"


def check_columns(rows: Sequence[dict], required: Iterable[str], source: str) -> None:
    """Raise ``DataError`` naming ``source`` and every required column missing from any row."""
    required = list(required)
    if not required or not rows:
        return
    present = set(rows[0])
    for row in rows[1:]:
        present &= set(row)
    missing = [c for c in required if c not in present]
    if missing:
        raise DataError(f"{source}: missing column(s) {', '.join(missing)}; expected columns {', '.join(required)}")


def require_rows(rows: Sequence[Any], source: str) -> None:
    """An empty table is never what the caller wanted: say so instead of returning nothing."""
    if not rows:
        raise DataError(f"{source}: no rows")


def _read_csv(path: Path) -> list[dict]:
    # The standard library reader keeps every cell as the exact string written (no NaN, no type guessing)
    # and imports in milliseconds; quoted fields may span lines, as in BLEnD's multiple-choice prompts.
    text = read_text(path)
    try:
        with io.StringIO(text, newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                return []
            rows = []
            for record in reader:
                if not record:
                    continue
                if len(record) != len(header):
                    raise DataError(
                        f"{path} line {reader.line_num}: {len(record)} fields, the header has {len(header)}"
                    )
                rows.append(dict(zip(header, record)))
            return rows
    except csv.Error as e:
        raise DataError(f"{path}: not a readable CSV file ({_first_line(e)})") from None


def _read_jsonl(path: Path) -> list[dict]:
    return [row for _, row in jsonl_objects(path)]


def jsonl_objects(path: PathLike) -> list[tuple[int, dict]]:
    """``(line number, object)`` of each non-blank line of a JSONL file; one-line errors for bad lines."""
    rows = []
    # StringIO splits at newlines only (str.splitlines would also split at U+2028 inside a JSON string)
    for lineno, line in enumerate(io.StringIO(read_text(path), newline=None), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path} line {lineno}: invalid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path} line {lineno}: expected a JSON object, got {type(row).__name__}")
        rows.append((lineno, row))
    return rows


def _json_rows(data: Any, path: Path) -> list[dict]:
    if isinstance(data, dict):
        for key in ("data", "rows", "records"):
            if isinstance(data.get(key), list):
                data = data[key]
                break
        else:
            if data and all(isinstance(v, list) for v in data.values()):
                lengths = {len(v) for v in data.values()}
                if len(lengths) != 1:
                    raise DataError(f"{path}: columns have different lengths {sorted(lengths)}")
                keys = list(data)
                return [dict(zip(keys, values)) for values in zip(*data.values())]
            if data:  # one object of scalars: one row (a one-line JSON Lines file under a .json name)
                return [data]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DataError(f"{path}: expected a list of objects (or columns of equal length) in the JSON file")
    return data


# --- hub -------------------------------------------------------------------------------------------
def hub_offline() -> bool:
    """True when the environment says the hub must not be contacted."""
    flags = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on") for k in flags)


def load_hub(
    hub_id: str, name: str | None = None, split: str | None = None, *, required: Iterable[str] = ()
) -> list[dict]:
    """Rows of ``datasets.load_dataset(hub_id, name, split=split)``; offline → :class:`HubUnavailableError`."""
    label = hub_id + (f" ({name}" + (f", {split})" if split else ")") if name else "")
    hint = "the hub is unreachable; pass a local file or a data root instead"
    if os.path.isdir(hub_id.split("/", 1)[0]):  # "data/gmmlu" mistyped reads as a hub id: say so
        hint += f" (if {hub_id!r} was meant as a local path: no such folder)"
    if hub_offline():
        raise HubUnavailableError(f"cannot load hub dataset {label}: offline mode is set and {hint}")
    try:
        import datasets
    except ImportError:
        raise HubUnavailableError(f"cannot load hub dataset {label}: the `datasets` package is not installed; "
                                  "pip install datasets, or pass a local file or a data root") from None  # fmt: skip
    try:
        ds = datasets.load_dataset(hub_id, name, split=split)
    except (ValueError, KeyError) as e:  # the hub answered: no such config or split (a wrong name, not the network)
        raise DataError(f"hub dataset {label}: {_first_line(e)}") from None
    except Exception as e:  # network, auth and missing-dataset errors all mean: use local files
        raise HubUnavailableError(f"cannot load hub dataset {label} ({_first_line(e)}): {hint}") from None
    rows = [dict(r) for r in ds]
    check_columns(rows, required, f"hub dataset {label}")
    return rows


# --- field conversion ------------------------------------------------------------------------------
def text_cell(value: Any, where: str, *, required: bool = False) -> str:
    """A table cell as text. A null (Parquet/JSON ``null``, a pandas ``NaN``) is ``""``, never the words
    "None" or "nan" that ``str`` would make of it; ``required``: a blank cell is a one-line error."""
    text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
    if required and not text.strip():
        raise DataError(f"{where} is empty")
    return text


def as_bool(value: Any, where: str) -> bool:
    """``True``/``False`` from a bool, 0/1, or the strings true/false/yes/no/1/0 (any case)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "yes", "1", "t", "y"):
        return True
    if text in ("false", "no", "0", "f", "n", ""):
        return False
    raise DataError(f"{where}: {value!r} is not a boolean (expected True or False)")


def as_int(value: Any, where: str) -> int:
    """An integer from an int or an integral string, else a one-line ``DataError``."""
    if isinstance(value, bool):
        raise DataError(f"{where}: {value!r} is not an integer")
    if isinstance(value, int):
        return value
    try:
        number = float(str(value).strip())
    except ValueError:
        raise DataError(f"{where}: {value!r} is not an integer") from None
    if not number.is_integer():
        raise DataError(f"{where}: {value!r} is not an integer")
    return int(number)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]
