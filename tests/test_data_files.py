"""Local-file reading: formats, column checks, sources and the offline hub."""

import json
from pathlib import Path

import pytest

from jaxsteer.data import files
from jaxsteer.data.gmmlu import COLUMNS, load_gmmlu
from jaxsteer.errors import DataError, OfflineError

DATA = Path(__file__).parent / "fixtures" / "data"
EN_TEST = DATA / "global_mmlu" / "en" / "test.csv"


def test_csv_cells_stay_strings():
    rows = files.read_table(EN_TEST, required=COLUMNS)
    assert len(rows) == 24
    assert rows[0]["sample_id"] == "elementary_mathematics/test/0"
    assert rows[0]["option_b"] == "56" and isinstance(rows[0]["option_b"], str)
    assert rows[5]["cultural_sensitivity_label"] == "-"  # not turned into NaN


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl", ".json"])
def test_other_formats_load_the_same_questions(tmp_path, suffix):
    rows = files.read_table(EN_TEST)
    for row in rows:
        row["is_annotated"] = row["is_annotated"] == "True"  # real bools, as in the hub's parquet
    folder = tmp_path / "global_mmlu" / "en"
    folder.mkdir(parents=True)
    path = folder / f"test{suffix}"
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    elif suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n")
    else:
        path.write_text(json.dumps(rows, ensure_ascii=False))
    assert load_gmmlu(tmp_path, "en", subset="all") == load_gmmlu(DATA, "en", subset="all")


def test_csv_with_a_ragged_row(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("a,b\n1,2\n3\n")
    with pytest.raises(DataError, match="ragged.csv line 3: 1 fields, the header has 2"):
        files.read_table(path)


def test_missing_columns_message_names_file_and_columns(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("sample_id,question,answer\nx/test/0,What?,A\n")
    with pytest.raises(DataError) as e:
        files.read_table(path, required=COLUMNS)
    msg = str(e.value)
    assert "bad.csv" in msg and "option_a" in msg and "is_annotated" in msg
    assert "sample_id," not in msg.split("expected")[0]  # present columns are not reported missing
    assert "\n" not in msg


def test_jsonl_row_missing_a_column_is_caught(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"id": 1, "sentence": "a"}\n{"id": 2}\n')
    with pytest.raises(DataError, match=r"rows.jsonl: missing column\(s\) sentence"):
        files.read_table(path, required=("id", "sentence"))


def test_bad_json_line_is_reported_with_line_number(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"id": 1}\n{"id": \n')
    with pytest.raises(DataError, match="line 2"):
        files.read_table(path)


def test_locate_lists_tried_files(tmp_path):
    with pytest.raises(DataError, match=r"global_mmlu/ko/test\.csv"):
        load_gmmlu(tmp_path, "ko")
    with pytest.raises(DataError, match="no such file or folder"):
        load_gmmlu(tmp_path / "nowhere", "ko")


def test_hub_id_offline_raises_data_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert files.is_hub_id("CohereLabs/Global-MMLU")
    with pytest.raises(DataError, match="unreachable; pass a local file") as e:
        load_gmmlu("CohereLabs/Global-MMLU", "ko")
    assert isinstance(e.value, OfflineError)


def test_paths_are_not_hub_ids(tmp_path):
    assert not files.is_hub_id(str(tmp_path))
    assert not files.is_hub_id("./data/x.csv") and not files.is_hub_id("data.csv")
    assert not files.is_hub_id("a/b/c")


def test_as_bool_and_as_int():
    assert files.as_bool("True", "x") and not files.as_bool("false", "x") and files.as_bool(1, "x")
    with pytest.raises(DataError, match="is_annotated: 'maybe' is not a boolean"):
        files.as_bool("maybe", "is_annotated")
    assert files.as_int("3", "c") == 3 and files.as_int(4.0, "c") == 4
    with pytest.raises(DataError, match="not an integer"):
        files.as_int("2.5", "count")


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".json"])
def test_a_file_that_is_not_utf8_is_one_line_with_its_byte_and_offset(tmp_path, suffix):
    rows = [{"id": "1", "text": "plain"}, {"id": "2", "text": "caf\u00e9"}]
    text = {
        ".csv": "id,text\n1,plain\n2,caf\u00e9\n",
        ".jsonl": "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
        ".json": json.dumps(rows, ensure_ascii=False),
    }[suffix]
    path = tmp_path / f"t{suffix}"
    path.write_bytes(text.encode("latin-1"))  # é is one byte, 0xe9, not UTF-8
    offset = text.index("\u00e9")
    line = text.count("\n", 0, offset) + 1
    with pytest.raises(DataError) as e:
        files.read_table(path)
    assert str(e.value) == f"{path}: not UTF-8: byte 0xe9 at offset {offset} (line {line}); save it as UTF-8"


def test_a_byte_order_mark_is_skipped_but_counted_in_the_offset(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"\xef\xbb\xbfid,text\n1,\xff\n")
    with pytest.raises(DataError, match=r"byte 0xff at offset 13 \(line 2\)"):
        files.read_table(path)
    path.write_bytes(b"\xef\xbb\xbfid,text\n1,ok\n")
    assert files.read_table(path) == [{"id": "1", "text": "ok"}]


def test_jsonl_lines_split_at_newlines_only(tmp_path):
    """A JSON string may hold U+2028 (a line separator to str.splitlines): the row must stay whole."""
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"text": "a\u2028b"}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert files.read_table(path) == [{"text": "a\u2028b"}]


def test_a_null_cell_is_empty_text_never_the_word_none():
    assert files.text_cell(None, "x") == "" and files.text_cell(float("nan"), "x") == ""
    assert files.text_cell(3, "x") == "3" and files.text_cell(" a ", "x") == " a "
    with pytest.raises(DataError, match="^row 4 question is empty$"):
        files.text_cell(None, "row 4 question", required=True)
    with pytest.raises(DataError, match="is empty"):
        files.text_cell("  ", "row 4 question", required=True)


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_a_byte_order_mark_is_skipped_in_json_too(tmp_path, suffix):
    """A BLEnD annotation file re-saved by a Windows editor starts with a BOM: it is never content."""
    path = tmp_path / f"t{suffix}"
    body = json.dumps([{"id": "1"}]) if suffix == ".json" else json.dumps({"id": "1"}) + "\n"
    path.write_bytes(b"\xef\xbb\xbf" + body.encode())
    assert files.read_table(path) == [{"id": "1"}]


def test_a_mistyped_local_path_reads_as_a_hub_id_and_the_error_says_so(tmp_path, monkeypatch):
    """``data/gmmlu`` (missing) looks like a hub id; so does ``CohereLabs/Global-MMLU`` beside a downloaded
    ``CohereLabs/`` model folder — it must stay a hub id, and the error names the other reading."""
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert files.is_hub_id("data/gmmlu")
    with pytest.raises(DataError, match="if 'data/gmmlu' was meant as a local path: no such folder"):
        load_gmmlu("data/gmmlu", "ko")
    with pytest.raises(DataError, match="unreachable; pass a local file or a data root instead$"):
        load_gmmlu("CohereLabs/Global-MMLU", "ko")


def _stub_datasets(monkeypatch, load_dataset):
    import sys
    import types

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))


def test_a_wrong_split_on_the_hub_is_a_data_error_not_an_offline_one(monkeypatch):
    def load_dataset(hub_id, name, split=None):
        raise ValueError(f"Unknown split \"{split}\". Should be one of ['KR', 'CN'].")

    _stub_datasets(monkeypatch, load_dataset)
    with pytest.raises(DataError, match='Unknown split "South_Korea"') as e:
        files.load_hub("org/data", "questions", "South_Korea")
    assert not isinstance(e.value, OfflineError)

    def unreachable(hub_id, name, split=None):
        raise ConnectionError("Couldn't reach 'org/data' on the Hub")

    _stub_datasets(monkeypatch, unreachable)
    with pytest.raises(OfflineError, match="unreachable"):
        files.load_hub("org/data", "questions", "KR")


def test_gzipped_tables_are_found_under_a_root_and_are_no_hub_ids(tmp_path):
    import gzip

    from jaxsteer.data.files import is_hub_id, locate, read_table

    (tmp_path / "flores" / "dev").mkdir(parents=True)
    (tmp_path / "flores" / "dev" / "kor_Hang.jsonl.gz").write_bytes(gzip.compress(b'{"id": 1, "sentence": "a"}\n'))
    found = locate(tmp_path, ["flores/dev/kor_Hang"], "FLORES")
    assert found.name == "kor_Hang.jsonl.gz" and read_table(found) == [{"id": 1, "sentence": "a"}]
    assert not is_hub_id("gmmlu/ko_test.csv.gz") and is_hub_id("CohereForAI/Global-MMLU")


def test_a_one_line_json_lines_file_under_a_json_name_is_one_row(tmp_path):
    from jaxsteer.data.files import read_table

    (tmp_path / "t.json").write_text('{"id": 1, "sentence": "hello"}\n')
    assert read_table(tmp_path / "t.json") == [{"id": 1, "sentence": "hello"}]
