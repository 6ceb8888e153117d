"""``run_experiment`` on stub models and stub measurements: the method's wiring, not its numbers.

The models are configs with empty params; extraction returns fixed random vectors, the Dev2 scorers
read a table, and evaluation records the plan it is given and scores it by a fixed function of the plan.
So every assertion is about *what* the pipeline extracts, selects, applies and compares — a change to
the recipe (EN applied while LOC is chosen, the random control's layers, the Δ against base) fails here.
"""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest

import jaxsteer
from jaxsteer.config import tiny
from jaxsteer.errors import ConfigError
from jaxsteer.steering.vectors_io import VectorSet, load_vectors
from jaxsteer.study.evaluate import EvalResult
from jaxsteer.study.experiment import ExperimentConfig
from jaxsteer.study.pipeline import Measures, run_experiment

CONFIG = tiny()  # 8 layers; EN window 3 ± 1, LOC window 5 ± 1
LANGS = ("zh", "ko")
BASE_ACC = {"base": 40.0, "cla": 45.0, "other": 30.0}
# Dev2 choices the stub scorers make, per (model, language); EN stays below the LOC window
EN_CHOICE = {("base", "zh"): 2, ("base", "ko"): 3, ("cla", "zh"): 3, ("cla", "ko"): 2}
SUR_LOC = {("base", "zh"): (6, 1.0), ("base", "ko"): (4, 2.0), ("cla", "zh"): (5, 2.0), ("cla", "ko"): (6, 1.0)}
LOC_ONLY = {("base", "zh"): (5, 2.0), ("base", "ko"): (6, 1.0), ("cla", "zh"): (4, 1.0), ("cla", "ko"): (5, 1.0)}


def vector(model, kind, lang) -> np.ndarray:
    seed = sum(map(ord, f"{model}/{kind}/{lang}"))
    return np.random.RandomState(seed).randn(CONFIG.num_layers, CONFIG.hidden_size).astype(np.float32)


def plan_score(deltas: np.ndarray) -> float:
    """A fixed function of the whole plan, so the Δ tables identify which plan was evaluated."""
    weights = np.arange(1, CONFIG.num_layers + 1)[:, None]
    return float(np.round(np.sum(weights * np.abs(deltas)) / 100.0, 4))


class Stubs:
    def __init__(self):
        self.extracted, self.evaluated, self.loc_calls = [], {}, []

    def extract(self, model, bench, kind, langs, progress):
        self.extracted.append((model.source, kind, tuple(langs)))
        return {lang: VectorSet.from_config(CONFIG, vector(model.source, kind, lang), kind=kind) for lang in langs}

    def evaluate(self, model, bench, method, steering_for, part, progress):
        assert part == "test"
        gm, bl = {}, {}
        for lang in bench.cfg.languages:
            steer = steering_for(lang) if steering_for else None
            deltas = None if steer is None else np.asarray(steer.deltas())
            self.evaluated[(method, lang)] = deltas
            extra = 0.0 if deltas is None else plan_score(deltas)
            gm[lang] = BASE_ACC[model.source] + extra
            bl[lang] = BASE_ACC[model.source] - extra / 2
        return EvalResult(method, gm, bl, {lang: {} for lang in gm})

    def score_en(self, model, bench, lang, candidates, *, progress):
        assert [c.layer for c in candidates] == [2, 3, 4]
        return [100.0 if c.layer == EN_CHOICE[(model.source, lang)] else 10.0 for c in candidates]

    def score_loc(self, model, bench, lang, candidates, *, progress):
        with_en = bool(np.abs(np.asarray(candidates[0].steering.deltas())[:4]).sum())  # EN lives below layer 4
        self.loc_calls.append((model.source, lang, with_en, candidates))
        want = (SUR_LOC if with_en else LOC_ONLY)[(model.source, lang)]
        return [80.0 if (c.layer, c.gamma) == want else 0.0 for c in candidates]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("experiment"))
    cfg = ExperimentConfig(
        languages=LANGS, select_layers=True, layer_window=1, en_gamma=2.0, loc_gammas=(0.0, 1.0, 2.0), seed=3, out=out
    )
    models = {name: jaxsteer.Model(config=CONFIG, params={}, source=name) for name in ("base", "cla", "other")}
    stubs = Stubs()
    measures = Measures(stubs.extract, stubs.evaluate, stubs.score_en, stubs.score_loc)
    result = run_experiment(cfg, models, steer=("base", "cla"), out_dir=out, progress=False, measures=measures)
    return out, result, stubs


def read_csv(path) -> dict[str, dict]:
    with open(path, encoding="utf-8", newline="") as f:
        return {r["method"]: r for r in csv.DictReader(f)}


def test_only_the_steered_models_are_extracted_and_steered(run):
    out, result, stubs = run
    assert sorted(stubs.extracted) == sorted(
        (m, kind, LANGS) for m in ("base", "cla") for kind in ("EN", "LOC")
    )  # "other" is evaluated plain only
    methods = {m for m, _ in stubs.evaluated}
    assert methods == {"base", "cla", "other"} | {
        f"{m}+{w}" for m in ("base", "cla") for w in ("EN", "LOC", "SUR", "random")
    }
    for name in ("base", "cla", "other"):
        assert all(stubs.evaluated[(name, lang)] is None for lang in LANGS)  # plain evaluations are unsteered
    for name in ("base", "cla"):
        for kind in ("en", "loc"):
            for lang in LANGS:
                saved = load_vectors(os.path.join(out, "vectors", name, f"{kind}_{lang}.safetensors"))
                np.testing.assert_array_equal(saved.vectors, vector(name, kind.upper(), lang))


def test_selection_runs_loc_with_and_without_en_and_records_both(run):
    out, _, stubs = run
    for name in ("base", "cla"):
        with open(os.path.join(out, f"{name}.plans.json"), encoding="utf-8") as f:
            plans = json.load(f)
        for lang in LANGS:
            sur = plans["sur"][lang]
            assert (sur["en_layer"], sur["en_gamma"]) == (EN_CHOICE[(name, lang)], 2.0)
            assert (sur["loc_layer"], sur["loc_gamma"]) == SUR_LOC[(name, lang)]
            assert set(sur["selection"]) == {"en_dev2_gmmlu", "loc_dev2_blend"}
            only = plans["loc_only"][lang]
            assert (only["layer"], only["gamma"]) == LOC_ONLY[(name, lang)]
        calls = [(lang, with_en, cands) for m, lang, with_en, cands in stubs.loc_calls if m == name]
        assert sorted((lang, with_en) for lang, with_en, _ in calls) == sorted(
            (lang, w) for lang in LANGS for w in (True, False)
        )
        for lang, with_en, cands in calls:
            assert [(c.layer, c.gamma) for c in cands] == [(la, g) for la in (4, 5, 6) for g in (0.0, 1.0, 2.0)]
            en_layer = EN_CHOICE[(name, lang)]
            for c in cands:
                deltas = np.asarray(c.steering.deltas())
                if with_en:  # SUR's LOC is chosen on top of EN at the *selected* EN layer and en_gamma
                    np.testing.assert_allclose(deltas[en_layer], 2.0 * vector(name, "EN", lang)[en_layer], rtol=1e-6)
                else:
                    assert not np.abs(deltas[:4]).any()


def test_each_steered_method_applies_its_plan(run):
    _, _, stubs = run
    for name in ("base", "cla"):
        for lang in LANGS:
            v_en, v_loc = vector(name, "EN", lang), vector(name, "LOC", lang)
            l_en, (l_loc, g_loc) = EN_CHOICE[(name, lang)], SUR_LOC[(name, lang)]
            sur = np.zeros_like(v_en)
            sur[l_en] += 2.0 * v_en[l_en]
            sur[l_loc] += g_loc * v_loc[l_loc]
            np.testing.assert_allclose(stubs.evaluated[(f"{name}+SUR", lang)], sur, rtol=1e-6)
            en = np.zeros_like(v_en)
            en[l_en] = 2.0 * v_en[l_en]
            np.testing.assert_allclose(stubs.evaluated[(f"{name}+EN", lang)], en, rtol=1e-6)
            lo_layer, lo_gamma = LOC_ONLY[(name, lang)]
            loc = np.zeros_like(v_loc)
            loc[lo_layer] = lo_gamma * v_loc[lo_layer]
            np.testing.assert_allclose(stubs.evaluated[(f"{name}+LOC", lang)], loc, rtol=1e-6)
            # the control: SUR's layers and γ, the vectors' per-layer norms, other directions
            rnd = stubs.evaluated[(f"{name}+random", lang)]
            assert set(np.flatnonzero(np.abs(rnd).sum(-1))) == {l_en, l_loc}
            for layer, v, g in ((l_en, v_en, 2.0), (l_loc, v_loc, g_loc)):
                assert np.linalg.norm(rnd[layer]) == pytest.approx(g * np.linalg.norm(v[layer]), rel=1e-5)
                cos = rnd[layer] @ v[layer] / (np.linalg.norm(rnd[layer]) * np.linalg.norm(v[layer]))
                assert abs(cos) < 0.9


def test_delta_tables_are_against_base_for_every_method(run):
    out, result, stubs = run
    for bench, sign in (("gmmlu", 1.0), ("blend", -0.5)):
        table = read_csv(os.path.join(out, f"delta_{bench}.csv"))
        assert set(table) == {m for m, _ in stubs.evaluated} - {"base"}
        for method, row in table.items():
            owner = method.split("+")[0]
            for lang in LANGS:
                deltas = stubs.evaluated[(method, lang)]
                extra = 0.0 if deltas is None else plan_score(deltas)
                want = BASE_ACC[owner] - BASE_ACC["base"] + sign * extra
                assert float(row[lang]) == pytest.approx(want, abs=5e-3), (bench, method, lang)
    assert {p.method for p in result["plane"]["points"]} == set(table)
    for name in result["plane"]["plane"] + result["sper_files"]:
        assert os.path.getsize(name) > 0
    assert [r.name for r in result["reports"]] == ["base", "cla"]


def test_the_experiment_needs_a_base_model(tmp_path):
    with pytest.raises(ConfigError, match="named 'base'"):
        run_experiment(ExperimentConfig(out=str(tmp_path)), {"cla": "x"}, measures=Measures())
