"""Δ tables over seeds and languages, result files, comparability, quadrants and the plane's points."""

import dataclasses
import json
from pathlib import Path

import pytest

from jaxsteer.errors import DataError
from jaxsteer.study.delta import (
    MethodResult,
    common_languages,
    delta_table,
    load_result,
    plane_points,
    quadrant,
)

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
