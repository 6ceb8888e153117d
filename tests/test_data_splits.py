"""Seeded Dev1/Dev2/test splits."""

import json

import pytest

from jaxsteer.data.splits import load_splits, make_split, make_splits, save_splits, select
from jaxsteer.errors import DataError

IDS = [f"subject/test/{i}" for i in range(250)]


def test_disjoint_sizes_and_complete():
    s = make_split(IDS, lang="zh", seed=0)
    assert s.sizes() == {"dev1": 100, "dev2": 100, "test": 50}
    assert not set(s.dev1) & set(s.dev2) and not set(s.dev1) & set(s.test) and not set(s.dev2) & set(s.test)
    assert set(s.dev1) | set(s.dev2) | set(s.test) == set(IDS)


def test_reproducible_and_order_independent():
    a = make_split(IDS, seed=3)
    b = make_split(list(reversed(IDS)), seed=3)
    assert a == b
    assert make_split(IDS, seed=4) != a
    assert set(make_split(IDS, seed=4).dev1) != set(a.dev1)


def test_same_ids_same_partition_across_languages():
    splits = make_splits({"en": IDS, "ko": IDS}, seed=7)
    assert splits["en"].dev1 == splits["ko"].dev1 and splits["ko"].lang == "ko"


def test_explicit_test_size_and_not_enough_rows():
    assert make_split(IDS, dev1=10, dev2=20, test=30).sizes() == {"dev1": 10, "dev2": 20, "test": 30}
    with pytest.raises(DataError, match="need 200 rows for dev1\\+dev2, zh has 57"):
        make_split(IDS[:57], lang="zh")
    with pytest.raises(DataError, match="test would be empty"):
        make_split(IDS[:200], lang="zh")


def test_small_fixtures_shrink_to_thirds():
    s = make_split(IDS[:24], lang="ko", allow_small=True)
    assert s.sizes() == {"dev1": 8, "dev2": 8, "test": 8}
    s = make_split(IDS[:10], fractions=(0.2, 0.3, 0.5))
    assert s.sizes() == {"dev1": 2, "dev2": 3, "test": 5}


def test_empty_and_duplicate_ids():
    with pytest.raises(DataError, match="empty split"):
        make_split([], lang="el")
    with pytest.raises(DataError, match="part dev1 would be empty"):
        make_split(IDS[:2], allow_small=True)
    with pytest.raises(DataError, match="duplicate id 'a'"):
        make_split(["a", "b", "a"])


def test_save_load_roundtrip(tmp_path):
    splits = make_splits({"zh": IDS, "fa": IDS[:30]}, seed=1, allow_small=True)
    path = save_splits(splits, tmp_path / "splits.json")
    assert load_splits(path) == splits
    data = json.loads(path.read_text())
    data["splits"]["zh"]["test"].append(data["splits"]["zh"]["dev1"][0])
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="is in both dev1 and test"):
        load_splits(path)
    path.write_text("{}")
    with pytest.raises(DataError, match="not a jaxsteer split file"):
        load_splits(path)
    good = json.loads(json.dumps(json.loads(save_splits(splits, tmp_path / "ok.json").read_text())))
    for key, value, needle in (("dev1", "q12", "dev1 must be a list of ids"), ("seed", "x", "seed 'x' must be"),
                               ("dev2", None, "dev2 must be a list")):  # fmt: skip
        broken = json.loads(json.dumps(good))
        broken["splits"]["zh"][key] = value  # "q12" read as the ids q, 1, 2 before
        path.write_text(json.dumps(broken))
        with pytest.raises(DataError, match=needle):
            load_splits(path)


def test_select_in_split_order():
    class Row:
        def __init__(self, i):
            self.id = i

    s = make_split(IDS[:30], allow_small=True)
    rows = [Row(i) for i in IDS[:30]]
    assert [r.id for r in select(rows, s, "dev2")] == list(s.dev2)
    with pytest.raises(DataError, match="not in the data"):
        select(rows[:5], s, "test")
