"""Global-MMLU loading, subsets and parallel ids."""

import shutil
from pathlib import Path

import pytest

from jaxsteer.data.gmmlu import align_parallel, load_gmmlu
from jaxsteer.data.languages import DEFAULT_LANGUAGES
from jaxsteer.errors import DataError

DATA = Path(__file__).parent / "fixtures" / "data"


def test_default_subset_is_annotated_culturally_agnostic():
    qs = load_gmmlu(DATA, "ko")
    assert len(qs) == 17 and all(q.label == "CA" and q.is_annotated for q in qs)
    assert len(load_gmmlu(DATA, "ko", subset="CS")) == 5
    assert len(load_gmmlu(DATA, "ko", subset="annotated")) == 22
    assert len(load_gmmlu(DATA, "ko", subset="all")) == 24
    assert len(load_gmmlu(DATA, "ko", split="dev", subset="all")) == 5


def test_question_fields():
    q = load_gmmlu(DATA, "zh")[0]
    assert q.id == "elementary_mathematics/test/0" and q.lang == "zh"
    assert q.question == "7乘以8等于多少？" and q.options == ("54", "56", "63", "64")
    assert q.answer == 1 and q.answer_letter == "B" and q.subject == "elementary_mathematics"


def test_sample_ids_and_answers_are_parallel_across_languages():
    en = load_gmmlu(DATA, "en", subset="all")
    for code in DEFAULT_LANGUAGES:
        xx = load_gmmlu(DATA, code, subset="all")
        assert [q.id for q in xx] == [q.id for q in en]
        assert [q.answer for q in xx] == [q.answer for q in en]
        assert [q.label for q in xx] == [q.label for q in en]
        pairs = align_parallel(en, xx, strict=True)
        assert all(e.id == x.id for e, x in pairs) and len(pairs) == 24


def test_align_parallel_drops_or_rejects_orphans():
    en = load_gmmlu(DATA, "en")[:-1]
    ko = load_gmmlu(DATA, "ko")
    assert len(align_parallel(en, ko)) == len(ko) - 1
    with pytest.raises(DataError, match="1 ko question"):
        align_parallel(en, ko, strict=True)


def _copy_test_csv(tmp_path: Path, edit) -> Path:
    folder = tmp_path / "global_mmlu" / "es"
    folder.mkdir(parents=True)
    text = (DATA / "global_mmlu" / "es" / "test.csv").read_text(encoding="utf-8")
    (folder / "test.csv").write_text(edit(text), encoding="utf-8")
    return tmp_path


def test_answer_letter_e_names_the_row(tmp_path):
    root = _copy_test_csv(tmp_path, lambda t: t.replace(",64,B,", ",64,E,", 1))
    with pytest.raises(DataError) as e:
        load_gmmlu(root, "es")
    msg = str(e.value)
    assert "row 0" in msg and "elementary_mathematics/test/0" in msg and "'E' is not one of A, B, C, D" in msg


def test_missing_column_names_the_file(tmp_path):
    root = _copy_test_csv(tmp_path, lambda t: t.replace("option_d,", "option_x,", 1))
    with pytest.raises(DataError, match=r"test\.csv: missing column\(s\) option_d"):
        load_gmmlu(root, "es")


def test_empty_file_and_empty_subset(tmp_path):
    root = _copy_test_csv(tmp_path, lambda t: t.splitlines()[0] + "\n")
    with pytest.raises(DataError, match="no rows"):
        load_gmmlu(root, "es")
    shutil.rmtree(tmp_path / "global_mmlu")
    root = _copy_test_csv(tmp_path, lambda t: t.replace(",CS,True", ",CA,True"))
    assert load_gmmlu(root, "es", subset="CA")  # all CA now
    with pytest.raises(DataError, match="no rows in subset 'CS'"):
        load_gmmlu(root, "es", subset="CS")


def test_unknown_language_and_subset():
    with pytest.raises(DataError, match="unknown language 'xx'"):
        load_gmmlu(DATA, "xx")
    with pytest.raises(DataError, match="unknown Global-MMLU subset 'universal'"):
        load_gmmlu(DATA, "ko", subset="universal")  # type: ignore[arg-type]


def test_a_null_question_or_option_in_parquet_is_an_error_not_the_word_none(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from jaxsteer.data.files import read_table

    rows = read_table(DATA / "global_mmlu" / "es" / "test.csv")
    for row in rows:
        row["is_annotated"] = row["is_annotated"] == "True"
    rows[1]["question"] = None
    rows[2]["subject_category"] = None  # optional: empty, not "None"
    rows[3]["option_d"] = None  # blank, scored by its letter as the harness does: not "None"
    folder = tmp_path / "global_mmlu" / "es"
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / "test.parquet")
    with pytest.raises(DataError, match=r"row 1 \(sample_id '.+'\) question is empty"):
        load_gmmlu(tmp_path, "es", subset="all")
    rows[1]["question"] = "¿Cuánto es 7 × 8?"
    pq.write_table(pa.Table.from_pylist(rows), folder / "test.parquet")
    questions = load_gmmlu(tmp_path, "es", subset="all")
    assert questions[2].subject_category == "" and questions[3].options[3] == ""


def test_a_hub_snapshot_is_read_as_downloaded(tmp_path):
    """``huggingface-cli download CohereForAI/Global-MMLU --local-dir D``: ``D/ko/test-00000-of-00001.parquet``
    (the released file names; ``is_annotated`` a boolean there), read without renaming; two shards of one
    split are one line asking to join them, not half the questions."""
    import csv

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = list(csv.DictReader((DATA / "global_mmlu" / "ko" / "test.csv").open(encoding="utf-8")))
    for r in rows:
        r["is_annotated"] = r["is_annotated"] == "True"
    (tmp_path / "ko").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "ko" / "test-00000-of-00001.parquet")
    got = load_gmmlu(tmp_path, "ko", subset="all")
    assert [q.id for q in got] == [q.id for q in load_gmmlu(DATA, "ko", subset="all")]
    pq.write_table(pa.Table.from_pylist(rows[:2]), tmp_path / "ko" / "test-00001-of-00002.parquet")
    with pytest.raises(DataError, match=r"2 files match ko/test-\*\.parquet .*join the shards"):
        load_gmmlu(tmp_path, "ko")


def test_json_lines_saved_under_a_json_name_is_read(tmp_path):
    """``datasets.Dataset.to_json("test.json")`` writes JSON Lines: read as such, not "invalid JSON"."""
    import csv
    import json

    rows = list(csv.DictReader((DATA / "global_mmlu" / "ko" / "test.csv").open(encoding="utf-8")))
    (tmp_path / "ko").mkdir()
    (tmp_path / "ko" / "test.json").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n")
    assert len(load_gmmlu(tmp_path, "ko", subset="all")) == len(rows)
    (tmp_path / "ko" / "test.json").write_text('{"sample_id": 1,\n')
    with pytest.raises(DataError, match="invalid JSON at line 2"):
        load_gmmlu(tmp_path, "ko")


def test_an_export_without_the_unused_columns_loads_and_a_used_one_is_named(tmp_path):
    """Only the columns the loader reads are required: an export that dropped culture, region, reference, … loads
    the same questions; one without ``cultural_sensitivity_label`` (which the subsets need) is one line."""
    import csv

    from jaxsteer.data.gmmlu import COLUMNS, REQUIRED

    rows = list(csv.DictReader((DATA / "global_mmlu" / "ko" / "test.csv").open(encoding="utf-8")))
    (tmp_path / "ko").mkdir()
    for keep, ok in ((REQUIRED, True), ([c for c in REQUIRED if c != "cultural_sensitivity_label"], False)):
        assert set(keep) < set(COLUMNS)
        with (tmp_path / "ko" / "test.csv").open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(keep))
            w.writeheader()
            w.writerows([{c: r[c] for c in keep} for r in rows])
        if ok:
            assert load_gmmlu(tmp_path, "ko", subset="all") == load_gmmlu(DATA, "ko", subset="all")
        else:
            with pytest.raises(DataError, match="missing column.*cultural_sensitivity_label"):
                load_gmmlu(tmp_path, "ko")
