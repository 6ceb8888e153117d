"""ExperimentConfig validation and depth scaling; Benchmarks splits, EN pairs and shipped decontextualisations."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
from tiny_checkpoint import FIXTURES, tiny_model  # noqa: F401

from jaxsteer.configfile import build, parse_overrides
from jaxsteer.data import prompts
from jaxsteer.errors import ConfigError, DataError, JaxsteerError
from jaxsteer.study.experiment import PARTS, Benchmarks, ExperimentConfig


def one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert msg and "\n" not in msg
    return msg


def cfg(**kw) -> ExperimentConfig:
    fields = dict(data=FIXTURES, languages=("zh", "ko"), allow_small=True)
    fields.update(kw)
    return ExperimentConfig(**fields)


# --- ExperimentConfig -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "data, needle",
    [
        ({"no_such_key": 1}, "unknown config key no_such_key"),
        ({"read": "first"}, "read"),
        ({"method": "svd"}, "method"),
        ({"normalisation": "l2"}, "normalisation"),
        ({"gmmlu_subset": "XX"}, "gmmlu_subset"),
        ({"blend_eval": "both"}, "blend_eval"),
        ({"blend_match": "lemma"}, "blend_match"),
        ({"batch_size": 0}, "batch_size"),
        ({"chunk_size": -1}, "chunk_size"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"batch_size": "eight"}, "batch_size"),
        ({"dev1": 2.5}, "dev1"),
        ({"allow_small": "yes"}, "allow_small"),
        ({"en_gamma": "strong"}, "en_gamma"),
        ({"loc_gammas": ["a", 1]}, "loc_gammas"),
        ({"languages": ["zh", "ko", "zh"]}, "languages: zh is listed twice"),
        ({"pooled": True, "method": "pca_diff"}, "pooled=true needs method=mean_diff (got method='pca_diff')"),
    ],
)
def test_bad_keys_and_values_raise_config_error(data, needle):
    with pytest.raises(ConfigError) as e:
        build(ExperimentConfig, data)
    assert needle in one_line(e)


def test_overrides_are_parsed_and_coerced():
    c = build(ExperimentConfig, parse_overrides(["loc_gammas=[0, 1.5]", "allow_small=true", "languages=[zh]"]))
    assert c.loc_gammas == (0.0, 1.5) and c.allow_small is True and c.languages == ("zh",)
    assert isinstance(c.loc_gammas[0], float)


def test_unknown_language_is_a_one_line_user_error():
    with pytest.raises(JaxsteerError) as e:
        ExperimentConfig(languages=("zh", "xx"))
    assert "xx" in one_line(e)


def test_unknown_language_is_a_config_error():
    try:
        ExperimentConfig(languages=("xx",))
    except ConfigError:
        return
    except JaxsteerError as e:
        raise AssertionError(f"{type(e).__name__}: {e}") from None


@pytest.mark.parametrize(
    "num_layers, expected",
    [(48, (20, 28)), (26, (11, 15)), (34, (14, 20)), (62, (26, 36)), (12, (5, 7)), (6, (2, 4)), (2, (1, 1))],
)
def test_layers_for_scales_with_depth(num_layers, expected):
    assert ExperimentConfig().layers_for(num_layers) == expected


def test_layers_for_default_is_clamped_for_a_one_layer_model():
    assert ExperimentConfig().layers_for(1) == (0, 0)


def test_layers_for_explicit_and_out_of_range():
    assert ExperimentConfig(en_layer=3, loc_layer=9).layers_for(26) == (3, 9)
    with pytest.raises(ConfigError) as e:
        ExperimentConfig(en_layer=48).layers_for(48)
    assert "en_layer=48" in one_line(e)
    with pytest.raises(ConfigError) as e:
        ExperimentConfig(loc_layer=30).layers_for(26)
    assert "loc_layer=30" in one_line(e)


def test_blank_questions_are_logged_and_never_prompted(caplog):
    with caplog.at_level("WARNING", logger="jaxsteer.study.experiment"):
        items = [it for p in PARTS for it in Benchmarks(cfg()).blend("zh", p)]
    assert "BLEnD China: skipped 1 blank question(s): Fx-hd-30" in caplog.text
    assert "Fx-hd-30" not in {it.question.id for it in items}
    assert all(it.question.question.strip() and it.decontextualised.strip() for it in items)


# --- Benchmarks: splits -----------------------------------------------------------------------------
def ids_of(bench: Benchmarks, kind: str, lang: str) -> dict[str, list[str]]:
    if kind == "gmmlu":
        return {p: [q.id for q in bench.gmmlu(lang, p)] for p in PARTS}
    return {p: [it.question.id for it in bench.blend(lang, p)] for p in PARTS}


@pytest.mark.parametrize("kind", ["gmmlu", "blend"])
def test_splits_are_disjoint_complete_and_reproducible(kind):
    a, b = Benchmarks(cfg()), Benchmarks(cfg())
    for lang in ("zh", "ko"):
        parts = ids_of(a, kind, lang)
        assert parts == ids_of(b, kind, lang)  # a fresh instance with the same seed: the same split
        sets = [set(parts[p]) for p in PARTS]
        assert all(sets) and sum(len(s) for s in sets) == len(set().union(*sets))  # non-empty, disjoint
        if kind == "gmmlu":
            from jaxsteer.data.gmmlu import load_gmmlu

            every = {q.id for q in load_gmmlu(FIXTURES, lang, "test", "CA")}
        else:
            every = {it.question.id for p in PARTS for it in Benchmarks(cfg()).blend(lang, p)}
            assert all(not it.question.skipped for p in PARTS for it in a.blend(lang, p))
        assert set().union(*sets) == every
    other = Benchmarks(cfg(seed=1))
    assert ids_of(other, kind, "zh") != ids_of(a, kind, "zh")  # the seed matters


def test_gmmlu_split_is_shared_across_languages():
    """One split per question id: the same sample ids are in zh's and ko's (and en's) dev1/dev2/test."""
    bench = Benchmarks(cfg())
    zh, ko, en = (ids_of(bench, "gmmlu", lang) for lang in ("zh", "ko", "en"))
    for p in PARTS:
        assert set(zh[p]) == set(ko[p]) == set(en[p])


def test_en_pairs_are_parallel():
    bench = Benchmarks(cfg())
    for lang in ("zh", "ko"):
        for part in ("dev1", "dev2"):
            en = {q.id: prompts.mc_prompt(q).context for q in bench.gmmlu("en", part)}
            xx = {q.id: prompts.mc_prompt(q).context for q in bench.gmmlu(lang, part)}
            pairs = bench.en_pairs(lang, part)
            assert len(pairs) == len(xx) > 0
            by_en = {v: k for k, v in en.items()}
            by_xx = {v: k for k, v in xx.items()}
            for pos, neg in pairs:
                assert by_en[pos] == by_xx[neg]  # same sample id: the English and the XX query of one question
                assert pos != neg
            assert {by_xx[n] for _, n in pairs} == set(xx)


def test_en_split_follows_the_first_language_when_id_sets_differ(tmp_path):
    """English rows without a zh counterpart must not reshuffle the English split: it is zh's split."""
    import csv

    root = tmp_path / "data"
    shutil.copytree(FIXTURES, root)
    path = root / "global_mmlu" / "zh" / "test.csv"
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    ca = [r for r in rows if r["cultural_sensitivity_label"] == "CA"]
    dropped = {r["sample_id"] for r in ca[-3:]}
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(r for r in rows if r["sample_id"] not in dropped)
    bench = Benchmarks(cfg(data=str(root), languages=("zh",)))
    zh, en = ids_of(bench, "gmmlu", "zh"), ids_of(bench, "gmmlu", "en")
    for p in PARTS:
        assert set(en[p]) == set(zh[p]) and not set(en[p]) & dropped
    for part in ("dev1", "dev2"):
        assert len(bench.en_pairs("zh", part)) == len(zh[part])


def test_loc_pairs_are_contextualised_vs_decontextualised():
    bench = Benchmarks(cfg())
    items = bench.blend("zh", "dev1")
    pairs = bench.loc_pairs("zh", "dev1")
    assert len(pairs) == len(items) > 0
    for (pos, neg), it in zip(pairs, items):
        assert pos == prompts.blend_prompt(it.contextualised, "zh")
        assert neg == prompts.blend_prompt(it.decontextualised, "zh")
        assert "中国" in pos and pos != neg


def test_too_few_items_without_allow_small_is_a_data_error():
    with pytest.raises(DataError) as e:
        Benchmarks(cfg(allow_small=False)).gmmlu("zh", "test")
    one_line(e)


# --- shipped decontextualisations -------------------------------------------------------------------
@pytest.fixture()
def data_copy(tmp_path):
    root = tmp_path / "data"
    shutil.copytree(FIXTURES, root)
    return root


def test_blend_items_use_shipped_decontext_file(data_copy):
    base = Benchmarks(cfg(data=str(data_copy)))
    every = [it for p in PARTS for it in base.blend("zh", p)]
    chosen = every[:3]
    rows = [
        {"id": it.question.id, "contextualised": f"SHIPPED-CTX {i}", "decontextualised": f"SHIPPED-DEC {i}"}
        for i, it in enumerate(chosen)
    ]
    folder = data_copy / "blend" / "decontext"
    folder.mkdir()
    (folder / "China.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    # a fresh source path: the shipped-file cache is keyed by (source, country)
    moved = data_copy.parent / "data2"
    data_copy.rename(moved)
    bench = Benchmarks(cfg(data=str(moved)))
    items = {it.question.id: it for p in PARTS for it in bench.blend("zh", p)}
    assert set(items) == {it.question.id for it in every}
    for i, it in enumerate(chosen):
        assert items[it.question.id].contextualised == f"SHIPPED-CTX {i}"
        assert items[it.question.id].decontextualised == f"SHIPPED-DEC {i}"
    for it in every[3:]:  # the others still come from the per-language rules
        assert items[it.question.id].decontextualised == it.decontextualised
    part = next(p for p in PARTS if any(it.question.id == chosen[0].question.id for it in bench.blend("zh", p)))
    pos, neg = next((p, n) for p, n in bench.loc_pairs("zh", part) if "SHIPPED-CTX 0" in p)
    assert neg == prompts.blend_prompt("SHIPPED-DEC 0", "zh")
    # another language is untouched by China.jsonl
    assert all("SHIPPED" not in it.decontextualised for p in PARTS for it in bench.blend("ko", p))


def test_blend_source_overrides_data(data_copy):
    folder = data_copy / "blend" / "decontext"
    folder.mkdir()
    first = Benchmarks(cfg()).blend("zh", "dev1")[0]
    row = {"id": first.question.id, "contextualised": "C", "decontextualised": "D"}
    (folder / "China.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")
    bench = Benchmarks(cfg(blend_source=str(data_copy)))  # GMMLU from FIXTURES, BLEnD from the copy
    got = {it.question.id: it for it in bench.blend("zh", "dev1")}
    assert got[first.question.id].decontextualised == "D"


def test_malformed_decontext_file_is_a_data_error(data_copy):
    folder = data_copy / "blend" / "decontext"
    folder.mkdir()
    (folder / "China.jsonl").write_text('{"id": "x", "contextualised": "a", "decontextualised": "b"}\nnot json\n')
    with pytest.raises(DataError) as e:
        Benchmarks(cfg(data=str(data_copy))).blend("zh", "dev1")
    assert "line 2" in one_line(e)


# --- surgical steering plans ------------------------------------------------------------------------
def test_combined_steering_adds_parts_at_their_layers():
    import numpy as np

    from jaxsteer.config import tiny
    from jaxsteer.steering.vectors_io import VectorSet
    from jaxsteer.study.surgical import SurgicalPlan, combined_steering

    config = tiny()
    rng = np.random.RandomState(0)
    a, b = (rng.randn(config.num_layers, config.hidden_size).astype(np.float32) for _ in range(2))
    plan = combined_steering(config, [(a, 2, 2.0), (b, 5, -1.5), (b, 2, 0.5)])
    deltas = np.asarray(plan.deltas())
    expected = np.zeros_like(a)
    expected[2] = np.float32(2.0) * a[2] + np.float32(0.5) * b[2]
    expected[5] = np.float32(-1.5) * b[5]
    np.testing.assert_allclose(deltas, expected, rtol=1e-6)
    assert plan.steered_layers == (2, 5) and plan.scope == "all"
    sur = SurgicalPlan("zh", en_layer=2, en_gamma=2.0, loc_layer=5, loc_gamma=1.0, selection={})
    v_en, v_loc = VectorSet.from_config(config, a, kind="EN"), VectorSet.from_config(config, b, kind="LOC")
    for which, layers in (("sur", (2, 5)), ("en", (2,)), ("loc", (5,))):
        assert sur.steering(config, v_en, v_loc, which).steered_layers == layers
    np.testing.assert_allclose(np.asarray(sur.steering(config, v_en, v_loc, "loc").deltas())[5], b[5], rtol=1e-6)


def test_fixed_length_tuples_are_coerced_item_by_item():
    @dataclasses.dataclass(frozen=True)
    class Mix:
        mix: tuple[tuple[str, float], ...] = ()
        weights: tuple[float, float, float] = (0.0, 0.0, 0.0)

    got = build(Mix, {"mix": [["fact", 1], ["generic", 0.5]], "weights": [1, 2, 3]})
    assert got.mix == (("fact", 1.0), ("generic", 0.5)) and got.weights == (1.0, 2.0, 3.0)
    with pytest.raises(ConfigError, match="must have 3 items"):
        build(Mix, {"weights": [1, 2]})
    with pytest.raises(ConfigError, match="must be a number"):
        build(Mix, {"mix": [["fact", "lots"]]})


def test_blend_match_reaches_the_scorer(monkeypatch):
    """``blend_match`` picks the matcher of ``evaluate.blend_accuracy``; BLEnD's finds "9" in "19"."""

    from jaxsteer.study import evaluate

    def fake_generate(model, tok, texts, *args, **kwargs):
        return [f"1{it.question.answers_local[0]}" for it in items]  # the answer glued to a digit

    bench = Benchmarks(cfg(languages=("ko",)))
    items = bench.blend("ko", "test")
    numeric = sum(it.question.answers_local[0].isdigit() for it in items)
    assert 0 < numeric < len(items)
    monkeypatch.setattr(evaluate, "generate_answers", fake_generate)
    monkeypatch.setattr(evaluate, "blend_width", lambda bench, tok: 1)  # the fake tokenizer cannot encode
    from jaxsteer.config import tiny
    from jaxsteer.model.model import Model

    model = Model(config=tiny(), params={}, tokenizer=object())  # generation is faked: no weights needed
    ours = evaluate.blend_accuracy(model, bench, "ko", "test", progress=False)
    bench_b = Benchmarks(cfg(languages=("ko",), blend_match="blend"))
    theirs = evaluate.blend_accuracy(model, bench_b, "ko", "test", progress=False)
    assert ours == pytest.approx(100.0 * (len(items) - numeric) / len(items))  # "19" is not the number 9
    assert theirs == pytest.approx(100.0)


@pytest.mark.parametrize(
    "key,value", [("en_gamma", float("inf")), ("loc_gammas", (0.0, float("nan"))), ("sweep_gammas", (float("-inf"),))]
)
def test_a_gamma_that_is_not_finite_is_refused_as_a_gamma(key, value):
    """Not as "steering vectors contain NaN or inf": γ is folded into the vectors only later."""
    with pytest.raises(ConfigError, match=rf"^config key {key}: γ = (inf|nan|-inf) is not a finite number$"):
        ExperimentConfig(**{key: value})


def test_combined_steering_refuses_a_gamma_that_is_not_finite():
    import numpy as np

    from jaxsteer.config import tiny
    from jaxsteer.study.surgical import combined_steering

    config = tiny()
    v = np.ones((config.num_layers, config.hidden_size), np.float32)
    with pytest.raises(JaxsteerError, match=r"^γ = nan at layer 3 is not a finite number$"):
        combined_steering(config, [(v, 2, 1.0), (v, 3, float("nan"))])


def test_blend_generation_uses_one_width_for_every_language(tiny_model, monkeypatch):  # noqa: F811
    """Every BLEnD generation of an experiment (each language, Dev2 and test) has one prompt width — one
    compile of the decode loop — and the extra left padding changes no answer."""
    from jaxsteer import scoring
    from jaxsteer.study import evaluate

    bench = Benchmarks(cfg(languages=("zh", "ko"), max_new_tokens=3, batch_size=8))
    shapes, real = [], scoring.generate

    def spy(model, ids, *args, **kwargs):
        shapes.append(np.shape(ids))
        return real(model, ids, *args, **kwargs)

    monkeypatch.setattr(scoring, "generate", spy)
    for lang in ("zh", "ko"):
        evaluate.blend_accuracy(tiny_model, bench, lang, "test", progress=False)
    assert len(shapes) > 2 and len(set(shapes)) == 1, shapes
    from jaxsteer.tokens import encode_batch

    texts_of = {lang: evaluate.blend_texts(bench, lang, "test", tiny_model.tokenizer)[1] for lang in ("zh", "ko")}
    own = {encode_batch(tiny_model.tokenizer, texts)[0].shape[1] for texts in texts_of.values()}
    assert shapes[0][1] >= max(own)
    _, texts = evaluate.blend_texts(bench, "ko", "test", tiny_model.tokenizer)
    narrow = scoring.generate_answers(tiny_model, tiny_model.tokenizer, texts, 3, batch_size=8, progress=False)
    wide = scoring.generate_answers(tiny_model, tiny_model.tokenizer, texts, 3, batch_size=8, progress=False,
                                    width=shapes[0][1] + 100)  # fmt: skip
    assert narrow == wide


def test_empty_or_out_of_range_settings_are_config_errors():
    for bad, needle in (
        (dict(languages=()), "languages is empty"),
        (dict(seed=2**32), "seed=4294967296 must be in 0"),
        (dict(sweep_gammas=()), "sweep_gammas is empty"),
        (dict(dev2=0), "dev2=0"),
    ):
        with pytest.raises(ConfigError, match=needle):
            ExperimentConfig(**bad)
