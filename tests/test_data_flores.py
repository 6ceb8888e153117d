"""FLORES-200 parallel sentences aligned by id."""

import json
import shutil
from pathlib import Path

import pytest

from jaxsteer.data.flores import load_flores, load_flores_pairs
from jaxsteer.errors import DataError

DATA = Path(__file__).parent / "fixtures" / "data"


def test_pairs_by_iso_or_flores_code():
    pairs = load_flores_pairs(DATA, "en", "kor_Hang")
    assert len(pairs) == 12 and [p.id for p in pairs] == list(range(1, 13))
    assert pairs[0].src.startswith("The museum opens") and pairs[0].tgt.startswith("박물관은")
    assert (pairs[0].src_code, pairs[0].tgt_code) == ("eng_Latn", "kor_Hang")
    assert load_flores_pairs(DATA, "eng_Latn", "ko") == pairs


def test_alignment_is_by_id_not_position(tmp_path):
    shutil.copytree(DATA / "flores", tmp_path / "flores")
    path = tmp_path / "flores" / "dev" / "spa_Latn.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(reversed(lines)) + "\n", encoding="utf-8")
    pairs = load_flores_pairs(tmp_path, "en", "es")
    assert pairs[2].tgt == "El tren a la capital sale cada hora de la estación central."


def test_missing_ids_are_an_error_unless_not_strict(tmp_path):
    shutil.copytree(DATA / "flores", tmp_path / "flores")
    path = tmp_path / "flores" / "dev" / "ell_Grek.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"ids only in eng_Latn \[12\]"):
        load_flores_pairs(tmp_path, "en", "el")
    assert len(load_flores_pairs(tmp_path, "en", "el", strict=False)) == 11


def test_raw_release_layout(tmp_path):
    folder = tmp_path / "flores200_dataset" / "dev"
    folder.mkdir(parents=True)
    for code in ("eng_Latn", "ind_Latn"):
        rows = [json.loads(x) for x in (DATA / "flores" / "dev" / f"{code}.jsonl").read_text().splitlines()]
        (folder / f"{code}.dev").write_text("\n".join(r["sentence"] for r in rows) + "\n", encoding="utf-8")
    assert load_flores_pairs(tmp_path, "en", "id") == load_flores_pairs(DATA, "en", "id")


def test_bad_split_and_missing_file(tmp_path):
    with pytest.raises(DataError, match="unknown FLORES split 'train'"):
        load_flores(DATA, "en", "train")
    with pytest.raises(DataError, match="FLORES kor_Hang devtest"):
        load_flores(DATA, "ko", "devtest")


def test_a_file_names_its_language(tmp_path):
    """One file holds one language: read for another language, or for both sides of a pair, it is refused
    (MIDALIGN would train on a sentence paired with itself)."""
    ko = DATA / "flores" / "dev" / "kor_Hang.jsonl"
    assert load_flores(ko, "ko") == load_flores(DATA, "ko")
    with pytest.raises(DataError, match="is the FLORES file of kor_Hang, not of eng_Latn"):
        load_flores(ko, "en")
    with pytest.raises(DataError, match="FLORES pairs need a file per language"):
        load_flores_pairs(ko, "en", "ko")


def test_plain_files_split_at_newlines_only_and_refuse_a_blank_sentence(tmp_path):
    folder = tmp_path / "flores200_dataset" / "dev"
    folder.mkdir(parents=True)
    (folder / "eng_Latn.dev").write_text("One.\nTwo\u2028still two.\r\nThree.\n\n", encoding="utf-8")
    assert [s.sentence for s in load_flores(tmp_path, "en")] == ["One.", "Two\u2028still two.", "Three."]
    (folder / "eng_Latn.dev").write_text("One.\n\nThree.\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"row 1 \(id 2\) sentence is empty"):
        load_flores(tmp_path, "en")


def test_flores_plus_file_names_are_read_for_their_language(tmp_path):
    """FLORES+ names Chinese (Simplified) cmn_Hans where FLORES-200 says zho_Hans: the same sentences."""
    folder = tmp_path / "flores" / "dev"
    folder.mkdir(parents=True)
    shutil.copy(DATA / "flores" / "dev" / "eng_Latn.jsonl", folder)
    shutil.copy(DATA / "flores" / "dev" / "zho_Hans.jsonl", folder / "cmn_Hans.jsonl")
    assert load_flores_pairs(tmp_path, "en", "zh") == load_flores_pairs(DATA, "en", "zh")
    assert load_flores(folder / "cmn_Hans.jsonl", "zh") == load_flores(DATA, "zh")


def test_a_hub_snapshot_and_flores_plus_text_columns_are_read(tmp_path):
    """facebook/flores as downloaded (``{code}/dev-00000-of-00001.parquet``, column ``sentence``) and FLORES+
    (openlanguagedata/flores_plus: ``dev/{code}.jsonl``, column ``text``): the same pairs, no renaming."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    ref = load_flores_pairs(DATA, "en", "ko")
    for code in ("eng_Latn", "kor_Hang"):
        rows = [json.loads(line) for line in (DATA / "flores" / "dev" / f"{code}.jsonl").read_text().splitlines()]
        (tmp_path / "hub" / code).mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(rows), tmp_path / "hub" / code / "dev-00000-of-00001.parquet")
        plus = [{"id": r["id"], "iso_639_3": code[:3], "text": r["sentence"]} for r in rows]
        (tmp_path / "plus" / "dev").mkdir(parents=True, exist_ok=True)
        (tmp_path / "plus" / "dev" / f"{code}.jsonl").write_text("\n".join(json.dumps(r) for r in plus))
    assert load_flores_pairs(tmp_path / "hub", "en", "ko") == ref
    assert load_flores_pairs(tmp_path / "plus", "en", "ko") == ref
    (tmp_path / "plus" / "dev" / "kor_Hang.jsonl").write_text(json.dumps({"id": 1, "words": "x"}))
    with pytest.raises(
        DataError, match=r"no sentence column \(FLORES-200 names it sentence, FLORES\+ text\); columns: id, words"
    ):
        load_flores(tmp_path / "plus", "ko")


def test_a_flores_plus_row_without_text_is_a_missing_column_not_a_crash(tmp_path):
    (tmp_path / "dev").mkdir()
    rows = [{"id": 1, "text": "a"}, {"id": 2, "other": "b"}]
    (tmp_path / "dev" / "kor_Hang.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(DataError, match="missing column.*sentence"):
        load_flores(tmp_path, "ko")
