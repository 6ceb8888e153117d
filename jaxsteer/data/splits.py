"""Seeded Dev1 / Dev2 / test splits: vectors from Dev1, layer and γ chosen on Dev2, scores on test only.

The paper extracts steering vectors from 100 samples (Dev1) and selects the layer and γ on another 100
(Dev2); reported numbers must come from rows in neither. A split is a pure function of the sorted set
of stable ids and the seed (``numpy.random.default_rng(seed).permutation``), so the same seed gives the
same split on any machine, and languages that share ids (Global-MMLU ``sample_id``) get the same
partition, keeping EN/XX pairs on the same side. Splits are saved as JSON so runs can be audited.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from jaxsteer.data.files import read_text
from jaxsteer.errors import DataError

PARTS: tuple[str, ...] = ("dev1", "dev2", "test")
FORMAT = "jaxsteer.splits/1"
T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Split:
    """Disjoint id tuples of one language (each in permutation order)."""

    lang: str
    seed: int
    dev1: tuple[str, ...]
    dev2: tuple[str, ...]
    test: tuple[str, ...]

    def part(self, name: str) -> tuple[str, ...]:
        if name not in PARTS:
            raise DataError(f"unknown split part {name!r}; expected one of {', '.join(PARTS)}")
        return getattr(self, name)

    def sizes(self) -> dict[str, int]:
        return {p: len(self.part(p)) for p in PARTS}


def make_split(
    ids: Iterable[str],
    *,
    lang: str = "",
    seed: int = 0,
    dev1: int = 100,
    dev2: int = 100,
    test: int | None = None,
    fractions: Sequence[float] | None = None,
    allow_small: bool = False,
) -> Split:
    """Split ``ids`` into Dev1 / Dev2 / test.

    Sizes are ``dev1``, ``dev2`` and ``test`` (``None``: all the rest). ``fractions=(f1, f2, f3)`` sizes
    the parts by share instead (floors; the remainder goes to test). With ``allow_small``, too few ids
    shrink to thirds instead of raising. Every part must end up non-empty.
    """
    id_list = [str(i) for i in ids]
    unique = sorted(set(id_list))
    where = lang or "ids"
    if len(unique) != len(id_list):
        dup = next(i for i in unique if id_list.count(i) > 1)
        raise DataError(f"{where}: duplicate id {dup!r}; split ids must be unique")
    n = len(unique)
    if n == 0:
        raise DataError(f"{where}: empty split (no ids)")
    if fractions is not None:
        n1, n2, n3 = _sizes_from_fractions(fractions, n)
    else:
        n1, n2 = int(dev1), int(dev2)
        n3 = max(n - n1 - n2, 0) if test is None else int(test)
        if min(n1, n2, n3) < 0:
            raise DataError(f"split sizes must be non-negative, got dev1={n1} dev2={n2} test={test}")
        need, parts = (n1 + n2, "dev1+dev2") if test is None else (n1 + n2 + n3, "dev1+dev2+test")
        if need > n or (test is None and n3 == 0):
            if not allow_small:
                if need > n:
                    raise DataError(f"need {need} rows for {parts}, {where} has {n}")
                raise DataError(f"{where}: split part test would be empty ({n} ids, dev1+dev2 = {need})")
            n1, n2, n3 = _sizes_from_fractions((1 / 3, 1 / 3, 1 / 3), n)
    for name, size in zip(PARTS, (n1, n2, n3)):
        if size <= 0:
            raise DataError(f"{where}: split part {name} would be empty ({n} ids, sizes {n1}/{n2}/{n3})")
    order = np.random.default_rng(seed).permutation(n)
    shuffled = [unique[i] for i in order]
    return Split(
        lang=lang,
        seed=int(seed),
        dev1=tuple(shuffled[:n1]),
        dev2=tuple(shuffled[n1 : n1 + n2]),
        test=tuple(shuffled[n1 + n2 : n1 + n2 + n3]),
    )


def make_splits(ids_by_lang: Mapping[str, Iterable[str]], **kwargs: Any) -> dict[str, Split]:
    """:func:`make_split` for each language with the same seed and sizes."""
    return {lang: make_split(ids, lang=lang, **kwargs) for lang, ids in ids_by_lang.items()}


def select(items: Iterable[T], split: Split, part: str, key: Callable[[T], str] = lambda x: x.id) -> list[T]:
    """The items whose ``key`` is in ``split.part(part)``, in the split's order; every id must be found."""
    wanted = split.part(part)
    by_id = {str(key(x)): x for x in items}
    missing = [i for i in wanted if i not in by_id]
    if missing:
        raise DataError(f"{split.lang or 'split'} {part}: {len(missing)} id(s) not in the data, e.g. {missing[0]!r}")
    return [by_id[i] for i in wanted]


def save_splits(splits: Mapping[str, Split], path: str | os.PathLike) -> Path:
    """Write splits as JSON (atomically: temporary file, then rename)."""
    path = Path(path)
    data = {
        "format": FORMAT,
        "splits": {lang: {"seed": s.seed, **{p: list(s.part(p)) for p in PARTS}} for lang, s in splits.items()},
    }
    from jaxsteer.results import write_json

    write_json(path, data)
    return path


def load_splits(path: str | os.PathLike) -> dict[str, Split]:
    """Splits written by :func:`save_splits`; checks the format and that parts are disjoint."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such split file {str(path)!r}")
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: invalid JSON at line {e.lineno} ({e.msg})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("splits"), dict):
        raise DataError(f"{path}: not a jaxsteer split file (expected format {FORMAT!r})")
    out = {}
    for lang, entry in data["splits"].items():
        missing = [k for k in ("seed", *PARTS) if not isinstance(entry, dict) or k not in entry]
        if missing:
            raise DataError(f"{path}: split {lang!r} lacks {', '.join(missing)}")
        bad = [p for p in PARTS if not isinstance(entry[p], list)]  # a string would split into its characters
        if bad or type(entry["seed"]) is not int:
            what = f"{bad[0]} must be a list of ids" if bad else f"seed {entry['seed']!r} must be an integer"
            raise DataError(f"{path}: split {lang!r}: {what}")
        split = Split(lang, entry["seed"], *(tuple(str(i) for i in entry[p]) for p in PARTS))
        check_disjoint(split, str(path))
        out[lang] = split
    return out


def check_disjoint(split: Split, where: str = "split") -> None:
    """Raise ``DataError`` if an id is in two parts (a leak from dev into test)."""
    seen: dict[str, str] = {}
    for part in PARTS:
        for i in split.part(part):
            if i in seen:
                raise DataError(f"{where}: {split.lang} id {i!r} is in both {seen[i]} and {part}")
            seen[i] = part


def _sizes_from_fractions(fractions: Sequence[float], n: int) -> tuple[int, int, int]:
    if len(fractions) != 3 or any(f < 0 for f in fractions) or sum(fractions) > 1 + 1e-9:
        raise DataError(f"split fractions {tuple(fractions)} must be three non-negative shares summing to <= 1")
    n1, n2 = int(n * fractions[0]), int(n * fractions[1])
    n3 = n - n1 - n2 if abs(sum(fractions) - 1) < 1e-9 else int(n * fractions[2])
    return n1, n2, n3
