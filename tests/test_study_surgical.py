"""The surgical recipe's selection on stub scorers: which candidates are scored, under which plan, who wins.

No forward pass: the model is a config with empty params and the Dev2 measurements are injected
(``score=`` / ``score_en=`` / ``score_loc=``), so these tests pin the method, not the numbers.
"""

from __future__ import annotations

import numpy as np
import pytest
from tiny_checkpoint import FIXTURES, tiny_model  # noqa: F401

import jaxsteer
from jaxsteer.config import tiny
from jaxsteer.steering.vectors_io import VectorSet
from jaxsteer.study.experiment import Benchmarks, ExperimentConfig
from jaxsteer.study.surgical import default_loc_gamma, plan_surgical, select_en, select_loc

CONFIG = tiny()  # 8 layers: default EN layer round(20/48·8) = 3, LOC layer round(28/48·8) = 5


def bench_of(**fields) -> Benchmarks:
    """A ``Benchmarks`` of these settings; stub scorers never make it load data."""
    return Benchmarks(ExperimentConfig(**fields))


def stub_model():
    return jaxsteer.Model(config=CONFIG, params={}, source="stub")


def vectors(seed: int, kind: str) -> VectorSet:
    v = np.random.RandomState(seed).randn(CONFIG.num_layers, CONFIG.hidden_size).astype(np.float32)
    return VectorSet.from_config(CONFIG, v, kind=kind)


class TableScorer:
    """Scores each candidate from ``table[(layer, γ)]``; records every call's candidates."""

    def __init__(self, table):
        self.table, self.calls = table, []

    def __call__(self, model, bench, lang, candidates, *, progress):
        self.calls.append((lang, list(candidates)))
        return [self.table[(c.layer, c.gamma)] for c in candidates]


def steered(candidate) -> dict[int, np.ndarray]:
    deltas = np.asarray(candidate.steering.deltas())
    return {layer: deltas[layer] for layer in np.flatnonzero(np.abs(deltas).sum(-1))}


# --- EN ----------------------------------------------------------------------------------------------
def test_select_en_without_select_layers_keeps_the_default_and_scores_nothing():
    score = TableScorer({})
    layer, scores = select_en(stub_model(), bench_of(), "zh", vectors(0, "EN"), False, score=score)
    assert (layer, scores, score.calls) == (3, {}, [])
    layer, _ = select_en(stub_model(), bench_of(en_layer=6), "zh", vectors(0, "EN"), False, score=score)
    assert layer == 6


def test_select_en_scores_the_window_at_en_gamma_and_picks_the_best_layer():
    v = vectors(0, "EN")
    table = {(1, 2.5): 10.0, (2, 2.5): 30.0, (3, 2.5): 20.0, (4, 2.5): 30.0, (5, 2.5): 0.0}
    score = TableScorer(table)
    bench = bench_of(select_layers=True, layer_window=2, en_gamma=2.5)
    layer, scores = select_en(stub_model(), bench, "ko", v, False, score=score)
    ((lang, cands),) = score.calls
    assert lang == "ko" and [c.layer for c in cands] == [1, 2, 3, 4, 5]  # default 3 ± 2
    for c in cands:  # each candidate is EN alone at its layer with the config's γ
        (only,) = steered(c).items()
        assert c.gamma == 2.5 and only[0] == c.layer
        np.testing.assert_allclose(only[1], 2.5 * v.vectors[c.layer], rtol=1e-6)
    assert layer == 2  # 2 and 4 tie at 30: the lower layer
    assert scores == {"en_dev2_gmmlu": {f"layer={la}": s for (la, _), s in table.items()}}


def test_select_en_window_is_clipped_to_the_model():
    score = TableScorer({(la, 2.0): float(la) for la in range(8)})
    layer, _ = select_en(stub_model(), bench_of(select_layers=True, layer_window=3, en_layer=6), "zh",
                         vectors(0, "EN"), False, score=score)  # fmt: skip
    assert [c.layer for c in score.calls[0][1]] == [3, 4, 5, 6, 7] and layer == 7


# --- LOC ---------------------------------------------------------------------------------------------
def test_select_loc_tie_goes_to_the_smaller_gamma():
    """The documented rule: at equal Dev2 accuracy the smaller γ wins — whatever the grid's order."""
    gammas = (2.0, 0.0, 3.0, 1.0)
    table = {(5, 2.0): 70.0, (5, 0.0): 40.0, (5, 3.0): 70.0, (5, 1.0): 70.0}
    score = TableScorer(table)
    bench = bench_of(loc_gammas=gammas)
    layer, gamma, scores = select_loc(stub_model(), bench, "zh", None, 3, vectors(1, "LOC"), False, score=score)
    assert (layer, gamma) == (5, 1.0)
    assert scores == {"loc_dev2_blend": {f"layer=5,gamma={g}": table[(5, g)] for g in gammas}}
    # a strictly better larger γ still wins
    table[(5, 3.0)] = 70.5
    assert select_loc(stub_model(), bench, "zh", None, 3, vectors(1, "LOC"), False, score=score)[:2] == (5, 3.0)


def test_select_loc_applies_en_to_every_candidate_and_searches_layers():
    v_en, v_loc = vectors(0, "EN"), vectors(1, "LOC")
    gammas = (0.0, 1.0, 2.0)
    table = {(la, g): 50.0 for la in (4, 5, 6) for g in gammas}
    table[(4, 2.0)] = table[(6, 1.0)] = 55.0  # a tie across layers: the smaller γ wins over the lower layer
    score = TableScorer(table)
    bench = bench_of(select_layers=True, layer_window=1, loc_gammas=gammas, en_gamma=2.0)
    layer, gamma, _ = select_loc(stub_model(), bench, "zh", v_en, 2, v_loc, False, score=score)
    assert (layer, gamma) == (6, 1.0)
    cands = score.calls[0][1]
    assert [(c.layer, c.gamma) for c in cands] == [(la, g) for la in (4, 5, 6) for g in gammas]
    for c in cands:  # SUR's LOC is chosen with EN applied at the EN layer
        layers = steered(c)
        np.testing.assert_allclose(layers[2], 2.0 * v_en.vectors[2], rtol=1e-6)
        if c.gamma:
            np.testing.assert_allclose(layers[c.layer], c.gamma * v_loc.vectors[c.layer], rtol=1e-6)
        assert set(layers) == ({2, c.layer} if c.gamma else {2})
    # LOC alone: nothing but the LOC vector
    score.calls.clear()
    select_loc(stub_model(), bench, "zh", None, 2, v_loc, False, score=score)
    assert all(set(steered(c)) <= {c.layer} for c in score.calls[0][1])


def test_select_loc_progress_says_whether_it_chooses_for_sur_or_loc_alone_and_what_won(capsys):
    """`jaxsteer run` chooses LOC twice per language (for SUR with EN applied, then alone): each block of
    lines names which, and the choice line shows the ties and what γ = 0 applies."""
    table = {(5, 0.0): 40.0, (5, 1.0): 40.0, (5, 2.0): 10.0}
    bench = bench_of(loc_gammas=(0.0, 1.0, 2.0), en_gamma=2.0)
    select_loc(stub_model(), bench, "ko", vectors(0, "EN"), 3, vectors(1, "LOC"), True, score=TableScorer(table))
    select_loc(stub_model(), bench, "ko", None, 3, vectors(1, "LOC"), True, score=TableScorer(table))
    lines = capsys.readouterr().out.splitlines()
    sur, alone = "ko SUR: LOC with EN layer 3 γ=2 applied", "ko LOC only"
    assert [line.strip() for line in lines] == [
        f"{sur}: choosing LOC's layer and γ on Dev2 BLEnD",
        f"{sur}: chose LOC layer 5 γ=0 → 40.0%; a tie with 1 other point(s): layer 5 γ=1 (the smaller |γ|, then the "
        "lower layer, wins); γ = 0 is EN alone: no steered point beats it",
        f"{alone}: choosing LOC's layer and γ on Dev2 BLEnD",
        f"{alone}: chose LOC layer 5 γ=0 → 40.0%; a tie with 1 other point(s): layer 5 γ=1 (the smaller |γ|, then "
        "the lower layer, wins); γ = 0 is the unsteered model: no steered point beats it",
    ]
    en_table = {(layer, 2.0): 30.0 for layer in (2, 3, 4)}
    select_en(stub_model(), bench_of(select_layers=True, layer_window=1), "ko", vectors(0, "EN"), True,
              score=TableScorer(en_table))  # fmt: skip
    assert capsys.readouterr().out.strip().startswith("ko EN (Dev2 Global-MMLU): chose layer 2 γ=2 → 30.0%; a tie")


# --- the plan ----------------------------------------------------------------------------------------
def test_plan_surgical_selects_loc_with_the_selected_en_layer():
    v_en, v_loc = vectors(0, "EN"), vectors(1, "LOC")
    bench = bench_of(select_layers=True, layer_window=1, loc_gammas=(0.0, 1.5), en_gamma=2.0)
    score_en = TableScorer({(2, 2.0): 10.0, (3, 2.0): 20.0, (4, 2.0): 30.0})
    loc_table = {(la, g): 0.0 for la in (4, 5, 6) for g in (0.0, 1.5)}
    loc_table[(6, 1.5)] = 90.0
    score_loc = TableScorer(loc_table)
    plan = plan_surgical(stub_model(), bench, "el", v_en, v_loc, False, score_en=score_en, score_loc=score_loc)
    assert (plan.lang, plan.en_layer, plan.en_gamma, plan.loc_layer, plan.loc_gamma) == ("el", 4, 2.0, 6, 1.5)
    assert set(plan.selection) == {"en_dev2_gmmlu", "loc_dev2_blend"}
    assert plan.selection["loc_dev2_blend"]["layer=6,gamma=1.5"] == 90.0
    # EN was applied at the *selected* layer 4 (not the default 3) while LOC was chosen
    assert all(4 in steered(c) and 3 not in steered(c) for c in score_loc.calls[0][1])
    deltas = np.asarray(plan.steering(CONFIG, v_en, v_loc).deltas())
    np.testing.assert_allclose(deltas[4], 2.0 * v_en.vectors[4], rtol=1e-6)
    np.testing.assert_allclose(deltas[6], 1.5 * v_loc.vectors[6], rtol=1e-6)


def test_plan_surgical_en_only_and_without_selection():
    v_en, v_loc = vectors(0, "EN"), vectors(1, "LOC")
    never = TableScorer({})
    bench = bench_of(loc_gammas=(0.0, 2.5, 0.5), en_gamma=2.0)
    fixed = plan_surgical(stub_model(), bench, "zh", v_en, v_loc, False, select=False, score_en=never,
                          score_loc=never)  # fmt: skip
    assert (fixed.en_layer, fixed.en_gamma, fixed.loc_layer, fixed.loc_gamma, fixed.selection) == (3, 2.0, 5, 2.5, {})
    assert default_loc_gamma(bench.cfg) == 2.5 and default_loc_gamma(bench_of(loc_gammas=(0.0,)).cfg) == 0.0
    fixed_en = plan_surgical(stub_model(), bench, "zh", v_en, None, False, select=False)
    assert fixed_en.loc_gamma == 0.0
    en_only = plan_surgical(stub_model(), bench_of(select_layers=True, layer_window=1), "zh", v_en, None, False,
                            score_en=TableScorer({(2, 2.0): 1.0, (3, 2.0): 0.0, (4, 2.0): 0.0}),
                            score_loc=never)  # fmt: skip
    assert (en_only.en_layer, en_only.loc_layer, en_only.loc_gamma) == (2, 5, 0.0)
    assert never.calls == []
    assert set(en_only.selection) == {"en_dev2_gmmlu"}


def test_a_scorer_returning_the_wrong_count_fails_loudly():
    with pytest.raises(ValueError, match="returned 1 scores for 9 candidates"):
        select_loc(stub_model(), bench_of(), "zh", None, 3, vectors(1, "LOC"), False,
                   score=lambda *a, progress: [1.0])  # fmt: skip


def test_extraction_shares_one_width_plan_and_needs_only_its_own_data(tiny_model, tmp_path):  # noqa: F811
    """EN and LOC read every language's pairs at widths from one plan, with the vectors an unplanned
    extraction gives; extracting EN alone works on a data root without BLEnD (the plan leaves LOC out)."""
    import shutil

    import jaxsteer.steering.extract as ex
    from jaxsteer.steering.extract import extract
    from jaxsteer.study.surgical import dev1_pairs, extract_kind, extraction_widths

    cfg = ExperimentConfig(data=FIXTURES, languages=("zh", "ko"), allow_small=True, batch_size=4, pooled=False)
    bench = Benchmarks(cfg)
    plan = extraction_widths(tiny_model, bench, "EN", cfg.languages)
    assert extraction_widths(tiny_model, bench, "LOC", cfg.languages) is plan  # planned once for both kinds
    for kind in ("EN", "LOC"):
        got = extract_kind(tiny_model, bench, kind, cfg.languages, progress=False)
        for lang in cfg.languages:
            alone = extract(tiny_model, dev1_pairs(tiny_model, bench, kind, lang), batch_size=4, progress=False)
            np.testing.assert_allclose(got[lang].vectors, alone.vectors, rtol=1e-4, atol=1e-5)

    data = tmp_path / "data"
    shutil.copytree(FIXTURES, data, ignore=shutil.ignore_patterns("blend"))
    bench = Benchmarks(ExperimentConfig(data=str(data), languages=("zh",), allow_small=True, batch_size=4))
    widths, real = [], ex.layer_activations
    try:
        ex.layer_activations = lambda p, i, m, **k: widths.append(i.shape[1]) or real(p, i, m, **k)
        assert "zh" in extract_kind(tiny_model, bench, "EN", ("zh",), progress=False)
    finally:
        ex.layer_activations = real
    assert widths and set(widths) <= set(extraction_widths(tiny_model, bench, "EN", ("zh",)).sizes)
