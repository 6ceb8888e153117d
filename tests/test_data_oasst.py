"""OASST1 single-turn top-ranked pairs and OpenAssistantXX."""

import json
from pathlib import Path

import pytest

from jaxsteer.data.oasst import by_language, load_oasst1_pairs, load_oasst_xx, top_ranked_pairs
from jaxsteer.errors import DataError

DATA = Path(__file__).parent / "fixtures" / "data"


def test_top_ranked_english_pairs():
    pairs = load_oasst1_pairs(DATA)
    assert [p.prompt for p in pairs] == [
        "Can you explain what photosynthesis is in simple terms?",
        "Give me three tips for sleeping better.",
        "How do I convert Celsius to Fahrenheit?",
    ]
    # rank 0 child wins even when listed after rank 1; follow-up turns are ignored
    assert pairs[1].response.startswith("1. Go to bed")
    assert pairs[0].response.startswith("Photosynthesis is how plants")
    assert all(p.prompt_en == p.prompt and p.lang == "en" for p in pairs)


def test_language_filter_and_rank0_requirement():
    es = load_oasst1_pairs(DATA, "es")
    assert len(es) == 1 and es[0].prompt.startswith("¿Cuál es la diferencia") and es[0].prompt_en == ""
    assert len(load_oasst1_pairs(DATA, None)) == 4
    rows = [
        {"message_id": "r", "parent_id": None, "role": "prompter", "lang": "en", "text": "hi", "rank": None},
        {"message_id": "a", "parent_id": "r", "role": "assistant", "lang": "en", "text": "ok", "rank": 1},
    ]
    assert top_ranked_pairs(rows) == []
    assert [p.response for p in top_ranked_pairs(rows, require_rank0=False)] == ["ok"]


def test_deleted_and_unranked_messages_are_ignored():
    ids = {p.prompt for p in load_oasst1_pairs(DATA)}
    assert "Write a haiku about autumn." not in ids  # only an unranked and a deleted reply
    assert "What is the tallest mountain in the world?" not in ids  # deleted root


def test_openassistant_xx():
    rows = load_oasst_xx(DATA)
    assert len(rows) == 20
    groups = by_language(rows)
    assert {k: len(v) for k, v in groups.items()} == {"zh": 4, "ko": 4, "es": 3, "id": 3, "el": 3, "fa": 3}
    ko = load_oasst_xx(DATA, ["ko"])
    assert ko[0].prompt == "광합성이 무엇인지 쉽게 설명해 줄 수 있나요?"
    assert ko[0].prompt_en == "Can you explain what photosynthesis is in simple terms?"
    with pytest.raises(DataError, match="unknown language 'klingon'"):
        load_oasst_xx(DATA, ["klingon"])


def test_missing_column(tmp_path):
    (tmp_path / "oasst").mkdir()
    (tmp_path / "oasst" / "oasst_xx.jsonl").write_text('{"id": "1", "lang": "ko", "prompt": "p", "response": "r"}\n')
    with pytest.raises(DataError, match=r"oasst_xx.jsonl: missing column\(s\) prompt_en, response_en"):
        load_oasst_xx(tmp_path)


def test_null_english_originals_are_empty_and_a_null_prompt_is_an_error(tmp_path):
    """``str(None)`` is the truthy text "None": CLO would have trained on ("None", "None") pairs."""
    (tmp_path / "oasst").mkdir()
    path = tmp_path / "oasst" / "oasst_xx.jsonl"
    row = {"id": "1", "lang": "ko", "prompt": "안녕", "response": "네", "prompt_en": None, "response_en": None}
    path.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    (pair,) = load_oasst_xx(tmp_path)
    assert (pair.prompt_en, pair.response_en) == ("", "")
    path.write_text(json.dumps({**row, "prompt": None}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"row 0 \(id '1'\) prompt is empty"):
        load_oasst_xx(tmp_path)


def test_a_null_oasst1_text_gives_no_pair():
    messages = [
        {"message_id": "a", "parent_id": None, "text": None, "role": "prompter", "lang": "en", "rank": None},
        {"message_id": "b", "parent_id": "a", "text": "Hi", "role": "assistant", "lang": "en", "rank": 0},
        {"message_id": "c", "parent_id": None, "text": "Hello?", "role": "prompter", "lang": "en", "rank": None},
        {"message_id": "d", "parent_id": "c", "text": "Hi", "role": "assistant", "lang": "en", "rank": 0},
    ]
    assert [p.id for p in top_ranked_pairs(messages)] == ["c"]


def test_the_released_gzipped_messages_file_is_read(tmp_path):
    """OpenAssistant/oasst1 as downloaded: ``2023-04-12_oasst_ready.messages.jsonl.gz`` under the snapshot root."""
    import gzip

    raw = (DATA / "oasst1" / "oasst1.jsonl").read_bytes()
    (tmp_path / "2023-04-12_oasst_ready.messages.jsonl.gz").write_bytes(gzip.compress(raw))
    assert load_oasst1_pairs(tmp_path) == load_oasst1_pairs(DATA)
    (tmp_path / "2023-04-12_oasst_ready.messages.jsonl.gz").write_bytes(raw)  # named .gz, not compressed: as it is
    assert load_oasst1_pairs(tmp_path) == load_oasst1_pairs(DATA)
    packed = bytearray(gzip.compress(raw))
    packed[20:30] = b"\xff" * 10  # a damaged stream (zlib.error, not OSError)
    (tmp_path / "2023-04-12_oasst_ready.messages.jsonl.gz").write_bytes(bytes(packed))
    with pytest.raises(DataError, match="not a readable gzip file"):
        load_oasst1_pairs(tmp_path)


@pytest.mark.parametrize("rank", ["nan", "", "inf", "1.5", "x"])
def test_a_csv_rank_cell_is_a_number_a_null_or_one_line(tmp_path, rank):
    import csv

    rows = [json.loads(line) for line in (DATA / "oasst1" / "oasst1.jsonl").read_text().splitlines() if line.strip()]
    target = next(r for r in rows if r.get("rank") is not None)
    target["rank"] = rank
    with (tmp_path / "oasst1.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows([{k: ("" if v is None else v) for k, v in r.items()} for r in rows])
    if rank in ("nan", ""):
        load_oasst1_pairs(tmp_path / "oasst1.csv", require_rank0=False)  # a null rank: unranked
    else:
        with pytest.raises(DataError, match="rank .* (is not a number|whole number)"):
            load_oasst1_pairs(tmp_path / "oasst1.csv")
