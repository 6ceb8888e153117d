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
        self.extracted, self.evaluated, self.loc_calls, self.eval_calls = [], {}, [], []

    def extract(self, model, bench, kind, langs, progress):
        self.extracted.append((model.source, kind, tuple(langs)))
        return {lang: VectorSet.from_config(CONFIG, vector(model.source, kind, lang), kind=kind) for lang in langs}

    def evaluate(self, model, bench, methods, steering_fors, part, progress):
        self.eval_calls.append(tuple(methods))
        return [self.evaluate_one(model, bench, m, f, part) for m, f in zip(methods, steering_fors)]

    def evaluate_one(self, model, bench, method, steering_for, part):
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
        with_en = [bool(np.abs(np.asarray(c.steering.deltas())[:4]).sum()) for c in candidates]  # EN is below layer 4
        self.loc_calls.append((model.source, lang, with_en, candidates))
        want = {True: SUR_LOC[(model.source, lang)], False: LOC_ONLY[(model.source, lang)]}
        return [80.0 if (c.layer, c.gamma) == want[w] else 0.0 for c, w in zip(candidates, with_en)]


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
    # a steered model's plain evaluation and its four steered ones in one call (they share each language's calls)
    assert stubs.eval_calls == [
        ("base", *(f"base+{w}" for w in ("EN", "LOC", "SUR", "random"))),
        ("cla", *(f"cla+{w}" for w in ("EN", "LOC", "SUR", "random"))), ("other",),
    ]  # fmt: skip
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
        # one Dev2 scoring call per language holds SUR's candidates (EN applied), then LOC-only's
        calls = [(lang, with_en, cands) for m, lang, with_en, cands in stubs.loc_calls if m == name]
        assert sorted(lang for lang, _, _ in calls) == sorted(LANGS)
        grid = [(la, g) for la in (4, 5, 6) for g in (0.0, 1.0, 2.0)]
        for lang, with_en, cands in calls:
            assert [(c.layer, c.gamma) for c in cands] == grid + grid
            assert with_en == [True] * len(grid) + [False] * len(grid)
            en_layer = EN_CHOICE[(name, lang)]
            for c, applied in zip(cands, with_en):
                deltas = np.asarray(c.steering.deltas())
                if applied:  # SUR's LOC is chosen on top of EN at the *selected* EN layer and en_gamma
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


# --- the run folder: manifest, interrupt, resume, another seed ---------------------------------------------
class Interrupting(Stubs):
    """Stubs whose ``evaluate`` is cut short (Ctrl-C) at its ``at``-th call, or fails with a user error."""

    def __init__(self, at: int, error: Exception | None = None):
        super().__init__()
        self.at, self.calls, self.error = at, 0, error

    def evaluate(self, model, bench, methods, steering_fors, part, progress):
        self.calls += 1
        if self.calls == self.at:
            raise self.error or KeyboardInterrupt
        return super().evaluate(model, bench, methods, steering_fors, part, progress)


class NoData(Stubs):
    def extract(self, *args):
        from jaxsteer.errors import DataError

        raise DataError("no data")


def experiment(out, stubs, seed=3, **kwargs):
    cfg = ExperimentConfig(
        languages=LANGS, select_layers=True, layer_window=1, en_gamma=2.0, loc_gammas=(0.0, 1.0, 2.0), seed=seed
    )
    models = {name: jaxsteer.Model(config=CONFIG, params={}, source=name) for name in ("base", "cla", "other")}
    measures = Measures(stubs.extract, stubs.evaluate, stubs.score_en, stubs.score_loc)
    return run_experiment(cfg, models, ("base", "cla"), str(out), progress=False, measures=measures, **kwargs)


def manifest(out) -> dict:
    with open(os.path.join(out, "manifest.json"), encoding="utf-8") as f:
        return json.load(f)


def listed(out) -> set[str]:
    return {f for stage in manifest(out)["stages"].values() for f in stage["files"]}


def on_disk(out) -> set[str]:
    found = {os.path.relpath(os.path.join(d, f), out) for d, _, fs in os.walk(out) for f in fs}
    return {f for f in found if not f.startswith("replaced-")} - {"manifest.json"}


def results_of(out) -> dict:
    """Every result and table of a run folder without provenance (dates, versions)."""
    found = {}
    for name in sorted(on_disk(out)):
        if name.endswith(".json"):
            with open(os.path.join(out, name), encoding="utf-8") as f:
                data = json.load(f)
            if isinstance(data, dict):
                data.pop("provenance", None)
            found[name] = data
        elif name.endswith((".csv", ".md")):
            with open(os.path.join(out, name), encoding="utf-8") as f:
                found[name] = f.read()
        elif name.endswith(".safetensors"):
            found[name] = load_vectors(os.path.join(out, name)).vectors.tolist()
    return found


def test_a_complete_run_lists_every_stage_and_every_file(run):
    out, _, _ = run
    record = manifest(out)
    models = ("base", "cla", "other")
    steered = [f"{m}+{w}" for m in ("base", "cla") for w in ("EN", "LOC", "SUR", "random")]
    assert record["complete"] is True and record["planned"] == list(record["stages"])
    assert set(record["stages"]) == {f"eval:{m}" for m in (*models, *steered)} | {
        f"{kind}:{m}" for kind in ("vectors", "plans") for m in ("base", "cla")
    } | {"comparison"}
    assert record["writer"]["seed"] == 3 and record["writer"]["steer"] == ["base", "cla"]
    assert listed(out) == on_disk(out)  # nothing unlisted, nothing listed that is missing


def test_an_interrupted_run_says_what_it_lists_and_resume_finishes_it_identically(run, tmp_path):
    from jaxsteer.interrupt import Interrupted

    whole, _, _ = run
    out = tmp_path / "run"
    cut = Interrupting(at=2)  # base and its steered methods done (one call); cut during cla's evaluation
    with pytest.raises(Interrupted) as e:
        experiment(out, cut)
    done = ["vectors:base", "plans:base", "eval:base", *(f"eval:base+{w}" for w in ("EN", "LOC", "SUR", "random"))]
    done += ["vectors:cla", "plans:cla"]
    assert str(e.value) == (
        f"{out}/manifest.json lists 9 of 16 stage(s) finished ({', '.join(done)}); files of the stage that "
        "was cut short are listed nowhere and are redone by the same command with --resume"
    )
    record = manifest(out)
    assert list(record["stages"]) == done and record["complete"] is False
    assert all(os.path.isfile(os.path.join(out, f)) for f in listed(out))
    assert not os.path.exists(out / "delta_gmmlu.csv")  # no comparison of a part of the run
    with pytest.raises(ConfigError, match="an incomplete run of these settings.*--resume"):
        experiment(out, Stubs(), resume=False)
    with pytest.raises(ConfigError, match="--resume: .* was started by .*seed 3.*not by this run"):
        experiment(out, Stubs(), seed=4, resume=True)
    rest = Stubs()
    experiment(out, rest, resume=True)
    assert not [s for s in rest.extracted if s[0] == "base"]  # finished stages are read back, not run
    assert ("base", "zh") not in rest.evaluated and ("base+LOC", "zh") in {k for k in cut.evaluated}
    assert rest.eval_calls == [("cla", *(f"cla+{w}" for w in ("EN", "LOC", "SUR", "random"))), ("other",)]
    assert manifest(out)["complete"] is True and listed(out) == on_disk(out)
    assert results_of(out) == results_of(whole)


def test_another_seed_over_a_complete_run_never_mixes_the_two(tmp_path):
    """Seed 4 into seed 3's folder: refused; with overwrite, seed 3's files go aside before any is replaced,
    so a cut-short seed-4 run leaves only seed-4 files (no Δ table of seed 3 beside base files of seed 4)."""
    out = tmp_path / "run"
    experiment(out, Stubs())
    with pytest.raises(ConfigError, match=r"holds results of .*seed 3; this is .*seed 4.*--overwrite"):
        experiment(out, Stubs(), seed=4, resume=False)
    with pytest.raises(KeyboardInterrupt):
        experiment(out, Interrupting(at=2), seed=4, resume=False, overwrite=True)
    assert manifest(out)["writer"]["seed"] == 4
    steered_base = [
        "vectors:base",
        "plans:base",
        "eval:base",
        *(f"eval:base+{w}" for w in ("EN", "LOC", "SUR", "random")),
    ]
    assert list(manifest(out)["stages"]) == [*steered_base, "vectors:cla", "plans:cla"]
    assert on_disk(out) >= listed(out) and not {f for f in on_disk(out) if f.startswith("delta_")}
    with open(os.path.join(out, "base.gmmlu.json"), encoding="utf-8") as f:
        assert json.load(f)["seed"] == 4
    aside = [n for n in os.listdir(out) if n.startswith("replaced-")]
    assert len(aside) == 1 and os.path.isfile(os.path.join(out, aside[0], "delta_gmmlu.csv"))


def test_the_api_starts_again_in_its_own_folder_and_a_refusal_leaves_nothing(tmp_path):
    from jaxsteer.errors import DataError

    out = tmp_path / "run"
    experiment(out, Stubs())
    with pytest.raises(KeyboardInterrupt):
        experiment(out, Interrupting(at=1))  # resume=None: the same experiment starts again...
    # ...forgetting what it had first: only what the new run made before the cut is there
    assert list(manifest(out)["stages"]) == ["vectors:base", "plans:base"] and on_disk(out) == listed(out)
    fresh = tmp_path / "a" / "fresh"
    with pytest.raises(DataError):
        experiment(fresh, NoData(), resume=False)  # refused at the first stage
    assert not os.path.exists(tmp_path / "a")


def test_other_processes_of_a_job_run_every_stage_write_nothing_and_leave_the_comparison(tmp_path, job):
    job.index = 0
    zero = experiment(tmp_path / "zero", Stubs())
    job.index = 1  # the comparison reads result files back: process 1, which writes none, must not draw it
    one = experiment(tmp_path / "one", Stubs())
    assert one["results"] == zero["results"] and one["plane"] is None and zero["plane"] is not None
    found = [f for _, _, fs in os.walk(tmp_path / "one") for f in fs]
    assert found == [] and os.listdir(tmp_path / "zero")
    assert len(job.barriers) == 2  # each run's folder was read by every process before process 0 wrote to it


def test_the_configs_decode_layout_reaches_every_measure(tmp_path):
    seen = set()
    stubs = Stubs()

    def spy(fn):
        def wrapped(model, *a, **k):
            seen.add(model.decode_layout)
            return fn(model, *a, **k)

        return wrapped

    cfg = ExperimentConfig(languages=LANGS, loc_gammas=(0.0, 1.0), out=str(tmp_path), decode_layout="scan")
    measures = Measures(*(spy(f) for f in (stubs.extract, stubs.evaluate, stubs.score_en, stubs.score_loc)))
    models = {"base": jaxsteer.Model(config=CONFIG, params={}, source="base")}
    run_experiment(cfg, models, steer=("base",), out_dir=str(tmp_path), progress=False, measures=measures)
    assert seen == {"scan"}
    with pytest.raises(ConfigError, match="config key decode_layout='fast': expected one of auto, scan"):
        ExperimentConfig(decode_layout="fast")


def test_a_run_folder_resumes_under_another_decode_layout():
    """decode_layout is how, not what: a run started with one layout resumes with another."""
    from jaxsteer.study.pipeline import run_writer

    models = {"base": "some/folder"}
    auto, scan = (run_writer(ExperimentConfig(decode_layout=d), models, ("base",)) for d in ("auto", "scan"))
    assert auto == scan
    assert run_writer(ExperimentConfig(seed=1), models, ("base",)) != auto


def test_a_model_of_another_architecture_is_refused_before_any_work(tmp_path):
    """Found out after the whole run by the comparison before: now from the config.json-level configs."""
    other = jaxsteer.Model(config=tiny(num_layers=4), params={}, source="other")
    models = {"base": jaxsteer.Model(config=CONFIG, params={}, source="base"), "other": other}
    stubs = Stubs()
    measures = Measures(stubs.extract, stubs.evaluate, stubs.score_en, stubs.score_loc)
    with pytest.raises(ConfigError, match="model other .* is not the architecture of the base model base"):
        run_experiment(ExperimentConfig(languages=LANGS, out=str(tmp_path / "r")), models, ("base",),
                       out_dir=str(tmp_path / "r"), progress=False, measures=measures)  # fmt: skip
    assert not stubs.extracted and not (tmp_path / "r").exists()


def test_a_missing_model_folder_is_refused_before_the_base_runs(tmp_path):
    stubs = Stubs()
    measures = Measures(stubs.extract, stubs.evaluate, stubs.score_en, stubs.score_loc)
    models = {"base": jaxsteer.Model(config=CONFIG, params={}, source="base"), "cla": str(tmp_path / "no_export")}
    with pytest.raises(ConfigError, match="model cla: no checkpoint folder with a config.json"):
        run_experiment(ExperimentConfig(languages=LANGS, out=str(tmp_path / "r")), models, ("base",),
                       out_dir=str(tmp_path / "r"), progress=False, measures=measures)  # fmt: skip
    assert not stubs.extracted


def test_a_hub_model_that_cannot_be_fetched_is_refused_before_the_base_runs(tmp_path, monkeypatch):
    """``runs/tiny-mst`` (a typo beside a local ``runs/``) reads as a hub id: its config.json is fetched before
    any work, and the one-line error names the other reading."""
    import huggingface_hub

    from jaxsteer.errors import OfflineError

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path)
    stubs = Stubs()
    measures = Measures(stubs.extract, stubs.evaluate, stubs.score_en, stubs.score_loc)
    models = {"base": jaxsteer.Model(config=CONFIG, params={}, source="base"), "cla": "runs/tiny-mst"}
    with pytest.raises(OfflineError, match=r"'runs/tiny-mst'.*\(ConnectionError\).*meant as a local path: no such"):
        run_experiment(ExperimentConfig(languages=LANGS, out=str(tmp_path / "r")), models, ("base",),
                       out_dir=str(tmp_path / "r"), progress=False, measures=measures)  # fmt: skip
    assert not stubs.extracted and not (tmp_path / "r").exists()
