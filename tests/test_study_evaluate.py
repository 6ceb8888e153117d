"""``evaluate_many``: several methods of one model in shared calls give what separate evaluations give."""

from __future__ import annotations

import numpy as np
import pytest
from tiny_checkpoint import FIXTURES, tiny_model  # noqa: F401

from jaxsteer.study import evaluate
from jaxsteer.study.experiment import Benchmarks, ExperimentConfig
from jaxsteer.study.surgical import combined_steering


def test_methods_evaluated_together_equal_each_evaluated_alone(tiny_model, monkeypatch):  # noqa: F811
    cfg = ExperimentConfig(data=FIXTURES, languages=("zh", "ko"), allow_small=True, max_new_tokens=4, batch_size=4)
    bench = Benchmarks(cfg)
    config = tiny_model.config
    rng = np.random.RandomState(0)
    v1 = 6.0 * rng.randn(config.num_layers, config.hidden_size).astype(np.float32)
    v2 = 6.0 * rng.randn(config.num_layers, config.hidden_size).astype(np.float32)
    fors = [
        None,
        lambda lang: combined_steering(config, [(v1, 1, 2.0 if lang == "zh" else 1.0)]),
        lambda lang: combined_steering(config, [(v1, 1, 2.0), (v2, 3, 1.5)]),
    ]
    methods = ["plain", "one", "two"]
    calls = []

    def counted(module, name):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, **k: calls.append(name) or real(*a, **k))

    counted(evaluate, "run_grid")
    counted(evaluate, "generate_answers")
    together = evaluate.evaluate_many(tiny_model, bench, methods, fors, "test", progress=False)
    shared = len(calls)
    alone = [evaluate.evaluate(tiny_model, bench, m, f, "test", progress=False) for m, f in zip(methods, fors)]
    for t, a in zip(together, alone):
        assert (t.method, t.gmmlu, t.blend, t.responses) == (a.method, a.gmmlu, a.blend, a.responses)
        assert t.choices == a.choices and set(t.choices) == set(cfg.languages)
    # the plans really differ (a mix-up of plans would show), and each language's plans shared their calls
    assert together[0].responses != together[1].responses != together[2].responses
    n_gmmlu = sum(-(-len(bench.gmmlu(lang, "test")) // cfg.batch_size) for lang in cfg.languages)
    n_blend = len(cfg.languages)  # one generate_answers call per language decodes all three plans
    assert shared == n_gmmlu + n_blend


def test_one_method_or_masked_plans_are_evaluated_one_by_one(tiny_model):  # noqa: F811
    import jaxsteer

    cfg = ExperimentConfig(data=FIXTURES, languages=("ko",), allow_small=True, max_new_tokens=3, batch_size=4)
    bench = Benchmarks(cfg)
    config = tiny_model.config
    vec = np.random.RandomState(1).randn(config.hidden_size)
    prompt_only = lambda lang: jaxsteer.Steering.from_layers(config, {2: vec}, gamma=3.0, scope="prompt")  # noqa: E731
    both = evaluate.evaluate_many(tiny_model, bench, ["a", "b"], [None, prompt_only], "test", progress=False)
    alone = evaluate.evaluate(tiny_model, bench, "b", prompt_only, "test", progress=False)
    assert (both[1].gmmlu, both[1].blend, both[1].responses) == (alone.gmmlu, alone.blend, alone.responses)


def test_dev2_plan_grids_decode_in_even_calls_without_filler_prompts(tiny_model, monkeypatch):  # noqa: F811
    from jaxsteer import scoring
    from jaxsteer.shapes import balanced_rows
    from jaxsteer.study.surgical import Candidate, dev2_blend

    cfg = ExperimentConfig(data=FIXTURES, languages=("ko",), allow_small=True, max_new_tokens=2, batch_size=5)
    bench = Benchmarks(cfg)
    n = len(bench.blend("ko", "dev2"))  # 8: two calls of 4 rows, not 5 + 3 real rows beside 2 fillers
    assert n % cfg.batch_size  # a last call of fewer rows would need filler prompts
    shapes, real = [], scoring.generate
    monkeypatch.setattr(
        scoring, "generate", lambda m, ids, *a, **k: shapes.append(np.shape(ids)) or real(m, ids, *a, **k)
    )
    config = tiny_model.config
    cands = [Candidate(1, g, combined_steering(config, [(np.ones((config.num_layers, config.hidden_size)), 1, g)]), "")
             for g in (0.0, 1.0)]  # fmt: skip
    dev2_blend(tiny_model, bench, "ko", cands, progress=False)
    rows = balanced_rows(n, cfg.batch_size)
    assert rows < cfg.batch_size and {s[0] for s in shapes} == {rows} and len(shapes) * rows - n < len(shapes)
    assert len(shapes) == -(-n // cfg.batch_size)


def test_scoring_widths_are_planned_once_for_every_language(tiny_model, monkeypatch):  # noqa: F811
    """The tiny model's compiles cost more than any padding: one width serves every Global-MMLU batch of both
    languages. With free compiles every batch gets its own rounded width — and the accuracies do not move."""
    from jaxsteer import shapes
    from jaxsteer.shapes import bucket

    cfg = ExperimentConfig(data=FIXTURES, languages=("zh", "ko"), allow_small=True, batch_size=2)
    config = tiny_model.config
    plans = np.stack([np.zeros((config.num_layers, config.hidden_size), np.float32)] * 2)
    plans[1, 2] = 4.0 * np.random.RandomState(3).randn(config.hidden_size)
    widths, real = [], evaluate.run_grid
    monkeypatch.setattr(
        evaluate, "run_grid", lambda m, ids, *a, **k: widths.append(ids.shape[1]) or real(m, ids, *a, **k)
    )

    bench = Benchmarks(cfg)
    lengths = [evaluate.gmmlu_inputs(tiny_model, bench, lang, "test")[1].sum(axis=1) for lang in cfg.languages]
    planned = {lang: evaluate.gmmlu_accuracies(tiny_model, bench, lang, "test", plans, False) for lang in cfg.languages}
    assert set(widths) == {bucket(int(max(n.max() for n in lengths)))}

    widths.clear()
    monkeypatch.setattr(shapes, "shape_cost_tokens", lambda config: 0)
    bench = Benchmarks(cfg)
    free = {lang: evaluate.gmmlu_accuracies(tiny_model, bench, lang, "test", plans, False) for lang in cfg.languages}
    needs = [n for ls in lengths for n in shapes.batch_needs(ls, cfg.batch_size)]
    assert sorted(widths) == sorted(bucket(n) for n in needs) and len(set(widths)) > 1
    assert free == planned


def test_the_base_model_is_recorded_as_one_identity_however_its_folder_is_spelled(tmp_path, monkeypatch):
    """eval records the config's models.base (relative), steer and run other spellings: plane compares
    results only with the same base_model, so a folder is recorded by its real path."""
    import json
    import os

    import jaxsteer
    from jaxsteer.config import tiny
    from jaxsteer.study.evaluate import EvalResult, write_eval
    from jaxsteer.study.experiment import ExperimentConfig

    (tmp_path / "runs" / "tiny").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    model = jaxsteer.Model(config=tiny(), params={}, source="runs/tiny")
    result = EvalResult("base", {"zh": 50.0}, {"zh": 40.0}, {"zh": {}})
    recorded = set()
    for i, spelling in enumerate(("runs/tiny", "./runs/tiny", str(tmp_path / "runs" / "tiny"))):
        out = tmp_path / f"out{i}"
        out.mkdir()
        write_eval(result, str(out), model, ExperimentConfig(out=str(out)), spelling)
        recorded.add(json.loads((out / "base.gmmlu.json").read_text())["base_model"])
    assert recorded == {os.path.realpath(tmp_path / "runs" / "tiny")}


def test_each_questions_choice_is_recorded_and_agrees_with_the_accuracy(tiny_model, tmp_path):  # noqa: F811
    """``{method}.gmmlu_items.json``: the chosen and correct letter of every Global-MMLU question, whose share of
    agreements is the recorded accuracy — what a paired test across methods needs; a resume reads it back."""
    import json

    cfg = ExperimentConfig(data=FIXTURES, languages=("zh", "ko"), allow_small=True, max_new_tokens=2, batch_size=4)
    bench = Benchmarks(cfg)
    vec = 6.0 * np.random.RandomState(2).randn(tiny_model.config.num_layers, tiny_model.config.hidden_size)
    steered = lambda lang: combined_steering(tiny_model.config, [(vec.astype(np.float32), 1, 3.0)])  # noqa: E731
    plain, moved = evaluate.evaluate_many(tiny_model, bench, ["plain", "moved"], [None, steered], progress=False)
    for result in (plain, moved):
        for lang in cfg.languages:
            items = result.choices[lang]
            questions = bench.gmmlu(lang, "test")
            assert list(items) == [q.id for q in questions]
            assert [v["answer"] for v in items.values()] == ["ABCD"[q.answer] for q in questions]
            hits = sum(v["chosen"] == v["answer"] for v in items.values())
            assert 100.0 * hits / len(items) == pytest.approx(result.gmmlu[lang], abs=1e-12)
    assert plain.choices != moved.choices  # a steering that moves answers shows in the items
    evaluate.write_eval(moved, str(tmp_path), tiny_model, cfg)
    written = json.loads((tmp_path / "moved.gmmlu_items.json").read_text())
    assert written["items"] == moved.choices and written["method"] == "moved" and "provenance" in written
    assert evaluate.read_eval(str(tmp_path), "moved").choices == moved.choices
    (tmp_path / "moved.gmmlu_items.json").unlink()  # a result folder written before the file existed
    assert evaluate.read_eval(str(tmp_path), "moved").choices == {}
