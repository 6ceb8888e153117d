"""BLEnD questions, annotations, skip rule and the multiple-choice file."""

import csv
import json
import shutil
from pathlib import Path

import pytest

from jaxsteer.data.blend import SKIP_REASONS, IdkCounts, load_blend, load_blend_mc, scorable, should_skip, skip_reason
from jaxsteer.errors import DataError

DATA = Path(__file__).parent / "fixtures" / "data"


@pytest.mark.parametrize(
    ("counts", "skipped"),
    [
        (IdkCounts(idk=4), False),
        (IdkCounts(idk=5), True),
        (IdkCounts(no_answer=1, not_applicable=1), False),
        (IdkCounts(no_answer=1, not_applicable=2), True),
        (IdkCounts(not_applicable=3), True),
        (IdkCounts(no_answer=2, not_applicable=0, idk=4), False),
    ],
)
def test_skip_rule_boundaries(counts, skipped):
    assert should_skip(counts) is skipped


def test_skip_rule_accepts_raw_idks_and_no_annotations():
    assert should_skip({"idk": 0, "no-answer": 2, "not-applicable": 1})
    assert not should_skip({"idk": 1})
    assert should_skip({"idk": 0}, n_annotations=0)


def test_questions_joined_with_annotations():
    qs = load_blend(DATA, "South_Korea")
    assert len(qs) == 26 and [q.id for q in qs if q.skipped] == ["Fx-hd-23"]
    q = qs[0]
    assert (q.id, q.country, q.lang, q.topic) == ("Fx-en-01", "South_Korea", "ko", "Food")
    assert q.question == "대한민국에서 가장 인기 있는 과일은 무엇인가요?"
    assert q.question_en == "What is the most popular fruit in South Korea?"
    assert q.answers_local == ("사과", "딸기", "귤") and q.answers_en == (
        "apple",
        "strawberry",
        "tangerine",
        "mandarin",
    )
    assert [a.count for a in q.annotations] == [2, 2, 1]
    assert load_blend(DATA, "ko") == qs  # language code works as country


def test_skipped_questions_per_country():
    skipped = {c: [q.id for q in load_blend(DATA, c) if q.skipped] for c in ("China", "Spain", "Greece", "Iran")}
    assert skipped == {
        "China": ["Fx-ho-11", "Fx-ho-12", "Fx-hd-30"],
        "Spain": ["Fx-wl-17", "Fx-hd-25"],
        "Greece": ["Fx-ho-12", "Fx-wl-17"],
        "Iran": ["Fx-ho-11", "Fx-ho-12"],
    }
    iran = load_blend(DATA, "Iran", include_skipped=False)
    assert len(iran) == 24 and scorable(load_blend(DATA, "Iran")) == iran


def test_skip_reasons():
    assert [skip_reason(c) for c in (IdkCounts(no_answer=2, not_applicable=1), IdkCounts(idk=5))] == list(
        SKIP_REASONS[1:3]
    )
    assert skip_reason(IdkCounts(idk=5, not_applicable=3)) == SKIP_REASONS[1]  # checked in order
    assert skip_reason(IdkCounts(), n_annotations=0) == "no annotated answer"
    assert skip_reason(IdkCounts(), n_annotations=1) is None
    reasons = {q.id: q.skip_reason for q in load_blend(DATA, "China") if q.skipped}
    assert reasons["Fx-hd-30"] == "blank question"  # released China New-en-04 is "  "
    blank = next(q for q in load_blend(DATA, "China") if q.id == "Fx-hd-30")
    # BLEnD's own rule would score it: the annotations are fine; only the empty local text skips it
    assert blank.blank and not should_skip(blank.idk_counts, len(blank.annotations))
    assert [q.skip_reason for q in load_blend(DATA, "Spain") if q.id == "Fx-hd-25"] == [SKIP_REASONS[1]]


def test_annotations_sorted_by_count(tmp_path):
    root = tmp_path
    shutil.copytree(DATA / "blend", root / "blend")
    path = root / "blend" / "annotations" / "Spain_data.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["Fx-en-01"]["annotations"].reverse()
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    assert load_blend(root, "Spain")[0].answers_en[:1] == ("orange",)


def test_explicit_question_file_finds_annotations():
    qfile = DATA / "blend" / "questions" / "Greece_questions.csv"
    assert load_blend(qfile, "Greece") == load_blend(DATA, "Greece")


def test_missing_annotation_file_and_columns(tmp_path):
    (tmp_path / "blend" / "questions").mkdir(parents=True)
    shutil.copy(DATA / "blend" / "questions" / "Spain_questions.csv", tmp_path / "blend" / "questions")
    with pytest.raises(DataError, match="Spain_data.json not found"):
        load_blend(tmp_path, "Spain")
    qs = load_blend(tmp_path, "Spain", require_annotations=False)  # the questions alone, e.g. for ``data check``
    assert len(qs) == 25 and not any(q.skipped for q in qs)  # Fx-hd-25 needs the annotator counts to be skipped
    assert not any(q.annotated or q.annotations for q in qs) and all(q.annotated for q in load_blend(DATA, "Spain"))
    (tmp_path / "blend" / "questions" / "Spain_questions.csv").write_text(",ID,Topic,Question\n0,a,Food,q\n")
    with pytest.raises(DataError, match=r"Spain_questions.csv: missing column\(s\) Source, Translation"):
        load_blend(tmp_path, "Spain")


def test_bad_annotation_count(tmp_path):
    shutil.copytree(DATA / "blend", tmp_path / "blend")
    path = tmp_path / "blend" / "annotations" / "China_data.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["Fx-en-02"]["annotations"][0]["count"] = "three"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(DataError, match=r"China annotation 'Fx-en-02' annotation 0 count: 'three' is not an integer"):
        load_blend(tmp_path, "China")


def test_multiple_choice_file():
    rows = load_blend_mc(DATA)
    assert len(rows) == 6
    kr = load_blend_mc(DATA, "ko")
    assert len(kr) == 1 and kr[0].country == "South_Korea"
    q = kr[0]
    assert q.choices == ("green tea", "coffee", "sweet tea", "mountain tea") and q.answer == 1
    assert q.answer_letter == "B" and q.choice_countries[1] == "South_Korea"
    assert q.prompt.endswith("D. mountain tea\n\nAnswer:")


def test_multiple_choice_bad_answer(tmp_path):
    (tmp_path / "blend").mkdir()
    with open(DATA / "blend" / "mc_questions_file.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    rows[1][-1] = "E"
    with open(tmp_path / "blend" / "mc_questions_file.csv", "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)
    with pytest.raises(DataError, match=r"MCQID 'Fx-en-04_0'\): answer_idx 'E' is not one of A, B, C, D"):
        load_blend_mc(tmp_path)


def test_an_euc_kr_annotation_file_names_the_file_and_the_byte(tmp_path):
    """BLEnD's Korean files re-saved as EUC-KR (as a Windows editor does): the first byte that is not UTF-8."""
    shutil.copytree(DATA / "blend", tmp_path / "blend")
    path = tmp_path / "blend" / "annotations" / "South_Korea_data.json"
    text = path.read_text(encoding="utf-8")
    path.write_bytes(text.encode("euc-kr"))
    raw = path.read_bytes()
    offset = next(i for i, b in enumerate(raw) if b >= 0x80)
    line = raw.count(b"\n", 0, offset) + 1
    with pytest.raises(DataError) as e:
        load_blend(tmp_path, "South_Korea")
    message = str(e.value)
    assert message == f"{path}: not UTF-8: byte 0x{raw[offset]:02x} at offset {offset} (line {line}); save it as UTF-8"


def _edited_copy(tmp_path, country, edit):
    shutil.copytree(DATA / "blend", tmp_path / "blend")
    path = tmp_path / "blend" / "annotations" / f"{country}_data.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    edit(data)
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize(
    ("answers", "message"),
    [("과자", "answers: expected a list of strings, got '과자'"), (["과자", None], r"expected a list of strings")],
)
def test_answers_must_be_a_list_of_strings(tmp_path, answers, message):
    """A bare string would be split into characters (each then matching almost any response); a null would
    become the word "None"."""

    def edit(data):
        data["Fx-en-02"]["annotations"][0]["answers"] = answers

    root = _edited_copy(tmp_path, "China", edit)
    with pytest.raises(DataError, match=message):
        load_blend(root, "China")


def test_a_duplicate_question_id_names_the_file_and_row(tmp_path):
    shutil.copytree(DATA / "blend", tmp_path / "blend")
    path = tmp_path / "blend" / "questions" / "Spain_questions.csv"
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    rows.append(["99", *rows[1][1:]])
    with path.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)
    with pytest.raises(DataError, match=rf"Spain_questions.csv row {len(rows) - 2}: duplicate ID '{rows[1][1]}'"):
        load_blend(tmp_path, "Spain")


def test_an_id_missing_from_the_annotation_file_is_its_own_skip_reason(tmp_path):
    """A stale or other country's annotation file must show, not pass as "no annotated answer"."""
    root = _edited_copy(tmp_path, "Spain", lambda data: data.pop("Fx-en-01"))
    reasons = {q.id: q.skip_reason for q in load_blend(root, "Spain")}
    assert reasons["Fx-en-01"] == "ID not in the annotation file" == SKIP_REASONS[-1]
    assert {q.id: q.skip_reason for q in load_blend(DATA, "Spain")}["Fx-en-01"] is None


def test_the_hub_copy_is_read_by_its_country_code_splits(monkeypatch):
    """The hub's dataset card names BLEnD's splits by country code (KR, CN, ...), not by file spelling."""
    import sys
    import types

    from jaxsteer.data.files import read_json, read_table

    local = read_table(DATA / "blend" / "questions" / "South_Korea_questions.csv")
    ann = read_json(DATA / "blend" / "annotations" / "South_Korea_data.json")
    calls = []

    def load_dataset(hub_id, name, split=None):
        calls.append((hub_id, name, split))
        if split != "KR":
            raise ValueError(f"Unknown split {split!r}")
        return local if name == "short-answer-questions" else [{"ID": k, **v} for k, v in ann.items()]

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    assert load_blend("nayeon212/BLEnD", "ko") == load_blend(DATA, "ko")
    assert [c[2] for c in calls] == ["KR", "KR"]


def test_the_hub_copys_annotation_list_reads_as_the_github_files_dict(tmp_path):
    """nayeon212/BLEnD on the hub ships ``annotations_hf/{Country}_data.json`` as a list of ``{ID, …}``
    entries (with an extra ``idks.other``); the GitHub files are keyed by ID: both give the same questions."""
    root = _edited_copy(tmp_path, "Spain", lambda data: None)
    path = root / "blend" / "annotations" / "Spain_data.json"
    keyed = json.loads(path.read_text(encoding="utf-8"))
    listed = [{"ID": qid, **entry, "idks": {**entry.get("idks", {}), "other": []}} for qid, entry in keyed.items()]
    path.write_text(json.dumps(listed, ensure_ascii=False), encoding="utf-8")
    assert load_blend(root, "Spain") == load_blend(DATA, "Spain")
    path.write_text(json.dumps(listed + listed[:1], ensure_ascii=False), encoding="utf-8")
    with pytest.raises(DataError, match="duplicate ID"):
        load_blend(root, "Spain")
    path.write_text(json.dumps([1, 2]), encoding="utf-8")
    with pytest.raises(DataError, match="or a list of objects with an ID"):
        load_blend(root, "Spain")


def test_annotated_ids_without_a_question_are_reported(tmp_path, caplog):
    """BLEnD's scorer loops over the annotation file, so its denominator counts IDs the questions file lacks;
    ours cannot score them: the loader warns and ``data check`` names them."""
    from jaxsteer.data.check import check_country, format_report

    root = _edited_copy(tmp_path, "Spain", lambda data: data.update({"Zz-en-99": data["Fx-en-01"]}))
    with caplog.at_level("WARNING"):
        load_blend(root, "Spain")
    assert "1 annotated ID(s) have no question" in caplog.text and "Zz-en-99" in caplog.text
    report = check_country(root, "Spain")
    assert report["annotation_only_ids"] == ["Zz-en-99"]
    text = format_report({"data": str(root), "countries": [report], "totals": _totals(report)})
    assert "Spain: 1 annotated ID(s) not in the questions file" in text
    assert check_country(DATA, "Spain")["annotation_only_ids"] == []


def _totals(report):
    d = report["decontext"] or {}
    return {"questions": report["questions"], "scored": report["scored"], "clean": d.get("clean", 0),
            "kept_questions": d.get("kept_questions", 0), "coverage_pct": d.get("coverage_pct", 0.0)}  # fmt: skip


def test_a_blend_hub_snapshot_is_read_from_its_hf_folders(tmp_path):
    """nayeon212/BLEnD as downloaded: ``data/questions_hf/{Country}_questions.*`` and
    ``data/annotations_hf/{Country}_data.json`` (a list of ``{ID, …}``), no renaming."""
    from jaxsteer.data.check import default_countries

    (tmp_path / "data" / "questions_hf").mkdir(parents=True)
    (tmp_path / "data" / "annotations_hf").mkdir(parents=True)
    shutil.copy(DATA / "blend" / "questions" / "Spain_questions.csv", tmp_path / "data" / "questions_hf")
    keyed = json.loads((DATA / "blend" / "annotations" / "Spain_data.json").read_text(encoding="utf-8"))
    listed = [{"ID": qid, **entry} for qid, entry in keyed.items()]
    (tmp_path / "data" / "annotations_hf" / "Spain_data.json").write_text(json.dumps(listed, ensure_ascii=False))
    assert load_blend(tmp_path, "Spain") == load_blend(DATA, "Spain")
    assert "Spain" in default_countries(tmp_path)
