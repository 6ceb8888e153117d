"""BLEnD soft match, accuracy, Δ tables and quadrants on hand-computed numbers."""

import dataclasses
import json
from pathlib import Path

import pytest

from jaxsteer.data.blend import load_blend
from jaxsteer.errors import DataError
from jaxsteer.study.metrics import (
    MethodResult,
    accuracy,
    argmax_accuracy,
    blend_accuracy,
    blend_clean_response,
    blend_exact_match,
    blend_soft_match,
    common_languages,
    delta_table,
    load_result,
    mean_spread,
    normalize_answer,
    plane_points,
    quadrant,
)

DATA = Path(__file__).parent / "fixtures" / "data"


@pytest.mark.parametrize(
    ("response", "local", "en", "expected"),
    [
        (
            "한국에서 가장 인기 있는 과일은 사과입니다.",
            ["사과"],
            ["apple"],
            True,
        ),  # Korean, answer inside a sentence
        ("딸기", ["사과"], ["apple"], False),
        ("Kimchi", ["김치"], ["kimchi"], True),  # English answer in a Korean setting
        ("我觉得是春节。", ["春节"], ["spring festival"], True),  # Chinese, no spaces
        ("中秋节", ["春节"], ["spring festival"], False),
        ("چاي", ["چای"], ["tea"], True),  # Persian: Arabic yeh folded to Persian yeh
        ("قورمه سبزی با برنج", ["قورمه‌سبزی"], [], True),  # zero-width non-joiner vs space
        ("ΜΟΥΣΑΚΑΣ, φυσικά", ["μουσακάς"], ["moussaka"], True),  # Greek: case and accent folded
        ("Το σουβλάκι", ["μουσακάς"], ["moussaka"], False),
        ("Creo que es el futbol", ["fútbol"], ["football"], True),  # Spanish accent folded
        ("El   baloncesto", ["baloncesto"], [], True),
        ("Son Heung Min", ["손흥민"], ["son heung-min"], True),  # hyphen vs space
        ("15", ["5"], ["5"], False),  # numbers match whole numbers only
        ("1.5시간", ["1"], [], False),  # ... decimals and times too
        ("13:00", ["3:00"], [], False),
        ("13.5 hours", ["3.5"], [], False),
        ("3,5 horas", ["3,5"], [], True),
        ("۷ ساعت", ["۷"], ["7"], True),  # Persian digits are digits (the released Iran file mixes both)
        ("7 ساعت", ["۷"], [], True),
        ("۳ وعده", ["3"], [], True),
        ("خانۀ ما", ["خانه"], [], True),  # the ezafe ۀ vs هٔ
        ("قرمهسبزی", ["قورمه‌سبزی", "قرمه‌سبزی"], [], True),  # half-space, space or joined
        ("떡국먹기를 해요", ["떡국 먹기"], [], True),  # Korean spacing
        ("te a", [], ["tea"], False),  # Latin script: spaces count
        ("答：5", ["5"], [], True),  # a number after a colon or a full-width comma is whole
        ("5，6个", ["6"], [], True),
        ("۳٫۵", ["5"], [], False),  # ٫ is the Arabic decimal point
        ("۱٬۰۰۰ تومان", ["1"], [], False),  # ٬ the thousands separator
        ("15 hours", [], ["5 hours"], False),  # a number at an answer's end or start is whole with units too
        ("18시", ["8시"], [], False),
        ("한국 수박", ["국수"], [], False),  # spaces ignored only from the start of a response word
        ("12개월", ["1-2개월"], [], False),  # ... and never for answers with digits
        ("5세", ["5"], ["5"], True),
        ("", ["사과"], ["apple"], False),
    ],
)
def test_blend_soft_match(response, local, en, expected):
    assert blend_soft_match(response, local, en) is expected


def test_normalize_answer():
    assert normalize_answer("  Tae-Kwon   DO ") == "tae kwon do"
    assert normalize_answer("Ελλάδα") == "ελλαδα"
    assert normalize_answer("대한민국") == "대한민국"  # Hangul survives decomposition


def test_blend_accuracy_skips_and_missing():
    qs = [q for q in load_blend(DATA, "China") if not q.id.startswith("Fx-hd") or q.blank]
    scorable = [q for q in qs if not q.skipped]
    responses = {q.id: q.answers_local[0] for q in scorable[:9]}
    responses.update({q.id: "我不知道" for q in scorable[9:17]})  # last scorable question has no response
    responses["Fx-ho-11"] = "苹果"  # skipped question: ignored even when right
    responses["Fx-hd-30"] = "王刚"  # blank local question: never scored, even with a right answer
    score = blend_accuracy(responses, qs)
    assert (score.n_scored, score.n_skipped, score.n_missing) == (18, 3, 1)
    assert score.accuracy == pytest.approx(50.0)
    assert "Fx-ho-11" not in score.correct and "Fx-hd-30" not in score.correct


def test_accuracy_helpers():
    assert accuracy([True, False, True, True]) == pytest.approx(75.0)
    assert argmax_accuracy([[0.1, 0.9, 0.0, 0.0], [0.5, 0.2, 0.1, 0.0]], [1, 2]) == pytest.approx(50.0)
    with pytest.raises(DataError, match="zero examples"):
        accuracy([])
    assert mean_spread([2.0, 4.0]) == pytest.approx((3.0, 2**0.5))
    assert mean_spread([7.0]) == (7.0, 0.0)


BASE = {"zh": 50.0, "ko": 60.0}


def test_delta_table_hand_numbers():
    table = delta_table(
        {
            "base": BASE,
            "MIST": {"zh": 55.0, "ko": 58.0},
            "SUR": [{"zh": 52.0, "ko": 64.0}, {"zh": 54.0, "ko": 62.0}],
        },
        base="base",
    )
    assert table.methods == ("MIST", "SUR") and table.langs == ("zh", "ko")
    assert table.delta["MIST"] == {"zh": 5.0, "ko": -2.0} and table.mean["MIST"] == 1.5
    assert table.delta["SUR"] == {"zh": 3.0, "ko": 3.0} and table.mean["SUR"] == 3.0
    assert table.spread["SUR"]["zh"] == pytest.approx(2**0.5) and table.mean_spread["SUR"] == 0.0
    assert table.n_seeds == {"MIST": 1, "SUR": 2}


def test_delta_table_strings():
    table = delta_table({"MIST": {"zh": 55.0, "ko": 58.0}}, base=BASE)
    assert table.to_csv() == "method,zh,ko,mean\nMIST,5.00,-2.00,1.50\n"
    assert (
        table.to_markdown() == "| method | zh | ko | mean |\n|---|---:|---:|---:|\n| MIST | +5.00 | -2.00 | +1.50 |\n"
    )
    seeds = delta_table({"SUR": [{"zh": 52.0, "ko": 64.0}, {"zh": 54.0, "ko": 62.0}]}, base=BASE)
    assert seeds.to_csv().splitlines() == [
        "method,zh,ko,mean,zh_sd,ko_sd,mean_sd,n_seeds",
        "SUR,3.00,3.00,3.00,1.41,1.41,0.00,2",
    ]
    assert "| SUR | +3.00 ± 1.41 | +3.00 ± 1.41 | +3.00 ± 0.00 |" in seeds.to_markdown()


def test_common_languages_keep_the_base_order_and_name_the_methods_lacking_the_rest():
    def runs(scores):
        return {method: [MethodResult(method, s) for s in seeds] for method, seeds in scores.items()}

    gmmlu = runs({"base": [{"zh": 1.0, "ko": 1.0, "es": 1.0}], "EN": [{"ko": 1.0, "es": 1.0}, {"ko": 1.0}]})
    blend = runs({"base": [{"zh": 1.0, "ko": 1.0, "es": 1.0}], "EN": [{"ko": 1.0, "es": 1.0, "fa": 1.0}] * 2})
    langs, missing = common_languages({"gmmlu": gmmlu, "blend": blend}, "base")
    assert langs == ("ko",)  # es: the second EN seed lacks it on Global-MMLU
    assert missing == {"zh": ["EN"], "es": ["EN"], "fa": ["base", "EN"]}  # EN has no Global-MMLU fa
    full = runs({"base": [{"zh": 1.0, "ko": 1.0}], "SUR": [{"ko": 1.0, "zh": 1.0}]})
    assert common_languages({"gmmlu": full, "blend": full}, "base") == (("zh", "ko"), {})


def test_delta_table_missing_language_and_base():
    with pytest.raises(DataError, match=r"no accuracy for language 'ko' \(it has zh\)"):
        delta_table({"MIST": {"zh": 55.0}}, base=BASE)
    with pytest.raises(DataError, match="base 'unaligned' is not among the methods"):
        delta_table({"MIST": BASE}, base="unaligned")


def _write(path: Path, **data) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_results_from_a_different_model_are_rejected(tmp_path):
    base = load_result(
        _write(
            tmp_path / "base.json",
            method="base",
            accuracy=BASE,
            config_hash="abc123",
            base_model="google/gemma-3-12b-it",
            seed=0,
        )
    )
    ok = load_result(
        _write(
            tmp_path / "mist.json",
            method="MIST",
            accuracy={"zh": 51.0, "ko": 61.0},
            provenance={"config_hash": "abc123", "base_model": "google/gemma-3-12b-it"},
        )
    )
    assert delta_table({"MIST": ok}, base=base).mean["MIST"] == 1.0
    other = load_result(
        _write(
            tmp_path / "clo.json",
            method="CLO",
            accuracy=BASE,
            config_hash="ffff0000",
            base_model="google/gemma-3-12b-it",
        )
    )
    with pytest.raises(DataError) as e:
        delta_table({"CLO": other}, base=base)
    msg = str(e.value)
    assert "clo.json" in msg and "config_hash 'ffff0000' differs from the base's 'abc123'" in msg
    wrong_model = MethodResult("SUR", BASE, config_hash="abc123", base_model="google/gemma-3-4b-it")
    with pytest.raises(DataError, match="base_model 'google/gemma-3-4b-it' differs"):
        delta_table({"SUR": wrong_model}, base=base)


def test_load_result_errors(tmp_path):
    with pytest.raises(DataError, match="no such result file"):
        load_result(tmp_path / "none.json")
    with pytest.raises(DataError, match="missing 'accuracy'"):
        load_result(_write(tmp_path / "r.json", method="x"))


@pytest.mark.parametrize(
    ("dx", "dy", "name"),
    [
        (1.0, 0.0, "desirable"),
        (0.5, 2.0, "desirable"),
        (1.0, -0.1, "transfer_only"),
        (0.0, 1.0, "localization_only"),
        (-1.0, 0.0, "localization_only"),
        (-1.0, -1.0, "degraded"),
        (0.0, -0.5, "degraded"),
    ],
)
def test_quadrant(dx, dy, name):
    assert quadrant(dx, dy) == name


def test_plane_points_from_two_tables():
    gmmlu = delta_table({"MIST": {"zh": 55.0, "ko": 58.0}, "SUR": {"zh": 52.0, "ko": 64.0}}, base=BASE)
    blend = delta_table({"MIST": {"zh": 45.0, "ko": 57.0}, "SUR": {"zh": 51.0, "ko": 60.0}}, base=BASE)
    points = plane_points(gmmlu, blend)
    assert [(p.method, p.dx, p.dy, p.quadrant) for p in points] == [
        ("MIST", 1.5, -4.0, "transfer_only"),
        ("SUR", 3.0, 0.5, "desirable"),
    ]
    with pytest.raises(DataError, match="SUR lack"):
        plane_points(gmmlu, delta_table({"MIST": BASE}, base=BASE))


# --- BLEnD's own matcher (blend_match: "blend") ---------------------------------------------------------
@pytest.mark.parametrize(
    ("response", "prompt", "cleaned"),
    [
        ("답변: 김치입니다.", "질문: …\n답변:", "김치입니다"),  # the echoed "word:" of the prompt goes
        ("Answer: Kimchi", "Question: …\nAnswer:", "kimchi"),
        ("Note: Kimchi", "Question: …\nAnswer:", "note: kimchi"),  # not a prompt word: kept
        ("答案：饺子。", "问题：…\n答案：", "答案:饺子"),  # full-width made ASCII; no space after ':': kept
        ("问题：哪个？答案：饺子", "问题：哪个？答案：", "饺子"),  # the whole prompt echoed, then removed
        ("...Paella...", "", "paella"),
    ],
)
def test_blend_clean_response(response, prompt, cleaned):
    assert blend_clean_response(response, prompt) == cleaned


@pytest.mark.parametrize(
    ("response", "local", "en", "lang", "jaxsteer", "blend"),
    [  # where the two matchers agree, and each deliberate difference, computed by hand
        ("한국에서 가장 인기 있는 과일은 사과입니다.", ["사과"], ["apple"], "ko", True, True),
        ("Kimchi", ["김치"], ["kimchi"], "ko", True, True),
        ("15", ["5"], ["5"], "ko", False, True),  # BLEnD: "5" in "15"; jaxsteer: whole numbers only
        ("cocacola", [], ["Cola"], "es", True, False),  # BLEnD does not lower-case the answer's substring
        ("cake made of rice", [], ["rice cake"], "ko", False, True),  # BLEnD: every answer token, any order
        ("Creo que es el futbol", ["fútbol"], [], "es", True, True),  # acute stripped in BLEnD's tokens
        ("ΜΟΥΣΑΚΑΣ, φυσικά", ["μουσακάς"], [], "el", True, True),
        ("قورمه‌سبزی با برنج", ["قورمه سبزی"], [], "fa", True, False),  # ZWNJ vs space: BLEnD splits on spaces
        ("김치찌개를 먹어요", ["김치 찌개"], [], "ko", True, False),  # jaxsteer: Korean spacing ignored; BLEnD
        # needs its Okt tokeniser (김치/찌개/를), which `blend` mode cannot run
        ("anything at all", [""], [], "ko", False, True),  # BLEnD: the empty answer is in every response
        ("apple", ["사과"], ["apple"], "en", True, True),  # English questions: only English answers
        ("사과", ["사과"], ["apple"], "en", True, False),
        ("", ["사과"], ["apple"], "ko", False, False),
    ],
)
def test_blend_exact_match_vs_jaxsteer(response, local, en, lang, jaxsteer, blend):
    assert blend_soft_match(response, local, en) is jaxsteer
    assert blend_exact_match(response, local, en, lang) is blend


def test_blend_accuracy_with_blend_matcher():
    qs = {q.id: q for q in load_blend(DATA, "South_Korea")}
    # Fx-en-01 answers 사과/딸기/귤 (apple, ...); Fx-ed-15 (compulsory education) answer 9; Fx-hd-23 skipped
    picked = [qs[i] for i in ("Fx-en-01", "Fx-en-02", "Fx-ed-15", "Fx-hd-21", "Fx-hd-23")]
    answers = {q.id: q.answers_local[0] for q in picked}
    responses = {
        "Fx-en-01": "답변: 사과",  # both
        "Fx-en-02": "모르겠어요",  # neither
        "Fx-ed-15": f"{answers['Fx-ed-15']}9",  # "99": BLEnD's substring finds "9"; jaxsteer does not
        "Fx-hd-21": "11/03",  # both
        "Fx-hd-23": answers["Fx-hd-23"],  # skipped (idk ≥ 5): never scored
    }
    prompts = {i: "질문: …\n답변:" for i in responses}
    ours = blend_accuracy(responses, picked)
    theirs = blend_accuracy(responses, picked, match="blend", prompts=prompts)
    assert (ours.n_scored, ours.n_skipped) == (theirs.n_scored, theirs.n_skipped) == (4, 1)
    assert ours.accuracy == pytest.approx(50.0) and theirs.accuracy == pytest.approx(75.0)
    assert [k for k, v in theirs.correct.items() if v != ours.correct[k]] == ["Fx-ed-15"]
    with pytest.raises(DataError, match="unknown BLEnD matcher 'lemma'"):
        blend_accuracy(responses, picked, match="lemma")


def test_the_iran_fixture_mixes_persian_and_ascii_digits_as_the_released_file_does():
    """Fx-ed-13's local answers are "۷"/"۶" (released Iran_data.json's An-ar-08 writes Persian digits), other
    numeric answers ASCII: a response in either script is right under the default matcher."""
    qs = {q.id: q for q in load_blend(DATA, "Iran")}
    q = qs["Fx-ed-13"]
    assert q.answers_local == ("۷", "۶") and q.answers_en == ("7", "6")
    responses = {"Fx-ed-13": "۷ سالگی", "Fx-ed-15": "۹ سال"}  # Fx-ed-15's answers are ASCII "9"/"12"
    assert qs["Fx-ed-15"].answers_local[0] == "9"
    result = blend_accuracy(responses, [q, qs["Fx-ed-15"]])
    assert result.correct == {"Fx-ed-13": True, "Fx-ed-15": True}
    assert blend_accuracy({"Fx-ed-13": "17 سال"}, [q]).correct == {"Fx-ed-13": False}


def _seeded(method, seed, zh, ko=60.0, **fields):
    return MethodResult(method, {"zh": zh, "ko": ko}, seed=seed, source=f"{method}_s{seed}", **fields)


def test_delta_pairs_each_seed_with_the_base_of_the_same_seed():
    """The seed draws the test split: a method's seed-1 run is compared with the base's seed-1 run, never with
    the mean of every base seed (base 50 and 30, SUR 52 at seed 0 only: +12 unpaired, +2 paired)."""
    bases = [_seeded("base", 0, 50.0), _seeded("base", 1, 30.0)]
    table = delta_table({"SUR": [_seeded("SUR", 0, 52.0)]}, base=bases)
    assert table.delta["SUR"]["zh"] == 2.0
    table = delta_table({"SUR": [_seeded("SUR", 0, 52.0), _seeded("SUR", 1, 32.0)]}, base=bases)
    assert table.delta["SUR"]["zh"] == 2.0 and table.spread["SUR"]["zh"] == 0.0  # unpaired: +2 ± 14.14
    with pytest.raises(DataError, match=r"SUR_s2 has seed 2, the base results seed\(s\) 0, 1"):
        delta_table({"SUR": [_seeded("SUR", 2, 52.0)]}, base=bases)
    # the demo's seeds are the alignment's: every run shares the evaluation seed and its one base
    shared = delta_table({"MIDALIGN": [_seeded("m0", 0, 40.0), _seeded("m1", 0, 44.0)]}, base=bases[:1])
    assert shared.delta["MIDALIGN"]["zh"] == -8.0 and shared.n_seeds["MIDALIGN"] == 2


def test_a_copy_and_a_base_of_another_model_or_protocol_are_refused():
    prov = {"date": "2026-12-05T09:00:00", "command": "jaxsteer eval"}
    one = dataclasses.replace(_seeded("SUR", 0, 52.0), identity=json.dumps([prov, 1]))
    copy = dataclasses.replace(one, source="copy/SUR_s0")
    with pytest.raises(DataError, match=r"copy/SUR_s0 is the same result as SUR_s0 \(a copy\?\)"):
        delta_table({"SUR": [one, copy]}, base=[_seeded("base", 0, 50.0)])
    mixed = [_seeded("base", 0, 50.0, base_model="/ckpt/m"), _seeded("base", 1, 70.0, base_model="/ckpt/n")]
    with pytest.raises(DataError, match="base_model ./ckpt/n. differs from the base.s ./ckpt/m."):
        delta_table({"SUR": [_seeded("SUR", 0, 52.0)]}, base=mixed)
    protocol = {"gmmlu_subset": "CA", "max_new_tokens": 24}
    base = _seeded("base", 0, 50.0, protocol=protocol)
    other = _seeded("X", 0, 36.0, protocol={**protocol, "gmmlu_subset": "all"})
    with pytest.raises(DataError, match=r"gmmlu_subset='all' but the base's base_s0 has gmmlu_subset='CA'"):
        delta_table({"X": other}, base=[base])
    assert delta_table({"Y": _seeded("Y", 0, 52.0, protocol=dict(protocol))}, base=[base]).mean["Y"] == 1.0


def test_a_language_given_twice_is_refused():
    with pytest.raises(DataError, match="language ko is given twice"):
        delta_table({"SUR": {"zh": 50.0, "ko": 62.0}}, base=BASE, langs=["ko", "ko", "zh"])


def test_an_exact_zero_delta_is_zero_and_picks_no_quadrant_by_rounding_noise():
    """21/95/9 correct of 97 against 17/96/12: the mean Δ is 0 exactly, computed as ±2e-15 before."""
    base = {"a": 100 * 21 / 97, "b": 100 * 95 / 97, "c": 100 * 9 / 97}
    method = {"a": 100 * 17 / 97, "b": 100 * 96 / 97, "c": 100 * 12 / 97}
    gm = delta_table({"M": method}, base=base)
    bl = delta_table({"M": {k: -v for k, v in method.items()}}, base={k: -v for k, v in base.items()})
    assert gm.mean["M"] == 0.0 and bl.mean["M"] == 0.0
    (point,) = plane_points(gm, bl)
    assert point.quadrant == quadrant(0.0, 0.0) == "localization_only"
    tiny = delta_table({"M": {"zh": 50.001, "ko": 60.0}}, base={"zh": 50.0, "ko": 60.004})
    assert "-0.00" not in tiny.to_csv() + tiny.to_markdown() and "+0.00" in tiny.to_markdown()


def test_a_single_seed_row_in_a_table_of_seeds_has_no_spread_and_names_are_escaped():
    table = delta_table(
        {"A|B": {"zh": 55.0, "ko": 58.0}, "SUR": [{"zh": 52.0, "ko": 64.0}, {"zh": 54.0, "ko": 62.0}]}, base=BASE
    )
    assert "| A\\|B | +5.00 ± n/a | -2.00 ± n/a | +1.50 ± n/a |" in table.to_markdown()
    assert "A|B,5.00,-2.00,1.50,,,,1" in table.to_csv()


def test_a_base_model_recorded_as_a_bare_name_by_older_files_is_not_compared():
    """Files written before the model's real path was recorded name it by its config name ("gemma3"): it is
    checked by config hash alone, while two paths (or hub ids) must agree."""
    old = MethodResult("base", BASE, config_hash="h", base_model="gemma3", seed=0)
    new = MethodResult("EN", {"zh": 52.0, "ko": 60.0}, config_hash="h", base_model="/ckpt/gemma-3-12b-it", seed=0)
    assert delta_table({"EN": new}, base=[old]).mean["EN"] == 1.0
    other = dataclasses.replace(new, base_model="google/gemma-3-4b-it")
    with pytest.raises(DataError, match="base_model 'google/gemma-3-4b-it' differs"):
        delta_table({"EN": other}, base=[dataclasses.replace(old, base_model="/ckpt/gemma-3-12b-it")])
