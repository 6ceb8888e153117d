"""The paper's experiment end to end: evaluate, extract, select, steer, compare on the plane.

For the base model and each CLA model named in the config: evaluate it plain; for the models chosen
for steering, extract EN and LOC vectors on Dev1, select layers/γ on Dev2, and evaluate EN-steering,
LOC-steering, SUR and a random-vector control (same norms, same layers and γ as SUR) on the test
split. Then write the per-language Δ tables against the base and the transfer–localization plane.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import numpy as np

from jaxsteer.checkpoint.hf import load_pretrained
from jaxsteer.errors import ConfigError
from jaxsteer.model.model import Model
from jaxsteer.results import provenance, write_csv, write_json
from jaxsteer.steering import analysis, figures
from jaxsteer.steering.vectors_io import save_vectors
from jaxsteer.study import metrics
from jaxsteer.study.compare import write_comparison
from jaxsteer.study.evaluate import EvalResult, evaluate, write_eval
from jaxsteer.study.experiment import Benchmarks, ExperimentConfig
from jaxsteer.study.surgical import (
    Scorer,
    SurgicalPlan,
    combined_steering,
    dev2_blend,
    dev2_gmmlu,
    extract_kind,
    plan_surgical,
    select_loc,
)


@dataclasses.dataclass(frozen=True)
class Measures:
    """The model measurements the method is made of. The defaults run the model; tests pass stubs, so
    the method (what is extracted, selected, combined and compared) is checked without a forward pass.

    - ``extract(model, bench, kind, langs, progress) -> {lang: VectorSet}`` (EN or LOC vectors on Dev1)
    - ``evaluate(model, bench, method, steering_for, part, progress) -> EvalResult``
    - ``score_en`` / ``score_loc``: :class:`~jaxsteer.study.surgical.Scorer` of Dev2 candidates
    """

    extract: Callable = extract_kind
    evaluate: Callable = evaluate
    score_en: Scorer = dev2_gmmlu
    score_loc: Scorer = dev2_blend


@dataclasses.dataclass
class ModelReport:
    name: str
    results: dict[str, EvalResult]
    plans: dict[str, SurgicalPlan]
    sper: dict[str, np.ndarray]


def steer_model(
    model: Model,
    name: str,
    bench: Benchmarks,
    out_dir: str,
    progress: bool = True,
    base_model: str | None = None,
    *,
    measures: Measures = Measures(),
) -> ModelReport:
    """Extraction, selection and the steered evaluations of one model (its plain evaluation excluded).

    SUR: EN at its selected layer + LOC at the (layer, γ) selected *with that EN applied*; LOC: LOC alone at
    the (layer, γ) selected without EN; EN: EN alone at SUR's EN layer; random: random directions with the
    EN and LOC vectors' per-layer norms at SUR's layers and γ.
    """
    cfg = bench.cfg
    langs = cfg.languages
    print(f"[{name}] extracting EN and LOC vectors on Dev1 ({', '.join(langs)})", flush=True)
    v_en = measures.extract(model, bench, "EN", langs, progress)
    v_loc = measures.extract(model, bench, "LOC", langs, progress)
    vec_dir = os.path.join(out_dir, "vectors", name)
    for kind, sets in (("en", v_en), ("loc", v_loc)):
        for lang, vset in sets.items():
            save_vectors(os.path.join(vec_dir, f"{kind}_{lang}.safetensors"), vset)
    key = (lambda lang: "pooled") if cfg.pooled and "pooled" in v_en else (lambda lang: lang)
    print(f"[{name}] selecting layers and γ on Dev2", flush=True)
    plans, loc_only = {}, {}
    for lang in langs:
        plans[lang] = plan_surgical(
            model, bench, lang, v_en[key(lang)], v_loc[key(lang)], progress,
            score_en=measures.score_en, score_loc=measures.score_loc,
        )  # fmt: skip
        layer, gamma, scores = select_loc(
            model, bench, lang, None, plans[lang].en_layer, v_loc[key(lang)], progress, score=measures.score_loc
        )
        loc_only[lang] = (layer, gamma, scores)
    write_json(
        os.path.join(out_dir, f"{name}.plans.json"),
        {
            "sur": {lang: dataclasses.asdict(p) for lang, p in plans.items()},
            "loc_only": {lang: {"layer": v[0], "gamma": v[1], "selection": v[2]} for lang, v in loc_only.items()},
            "provenance": provenance(model, seed=cfg.seed, command="jaxsteer run (selection)"),
        },
    )
    random_en = {lang: analysis.random_like(v_en[key(lang)].vectors, cfg.seed + 1) for lang in langs}
    random_loc = {lang: analysis.random_like(v_loc[key(lang)].vectors, cfg.seed + 2) for lang in langs}

    def plan_for(which):
        def steering_for(lang):
            p = plans[lang]
            if which == "LOC":
                layer, gamma, _ = loc_only[lang]
                return combined_steering(model.config, [(v_loc[key(lang)].vectors, layer, gamma)])
            if which == "random":
                parts = [(random_en[lang], p.en_layer, p.en_gamma), (random_loc[lang], p.loc_layer, p.loc_gamma)]
                return combined_steering(model.config, parts)
            return p.steering(model.config, v_en[key(lang)], v_loc[key(lang)], which.lower())

        return steering_for

    results = {}
    for which in ("EN", "LOC", "SUR", "random"):
        method = f"{name}+{which}"
        print(f"[{name}] evaluating {method} on test", flush=True)
        results[method] = measures.evaluate(model, bench, method, plan_for(which), "test", progress)
        write_eval(results[method], out_dir, model, cfg, base_model, extra={"steering": which})
    sper = {lang: analysis.sper_degrees(v_en[lang].vectors, v_loc[lang].vectors) for lang in langs}
    return ModelReport(name, results, plans, sper)


def write_plane(out_dir: str, results: dict[str, EvalResult], base: str, langs) -> dict:
    """The comparison of this run's methods (one result file per method and benchmark)."""
    runs = {
        bench: {m: metrics.load_result(os.path.join(out_dir, f"{m}.{bench}.json")) for m in results}
        for bench in ("gmmlu", "blend")
    }
    return write_comparison(out_dir, runs, base, langs)


def sper_outputs(out_dir: str, reports: list[ModelReport]) -> list[str]:
    curves = {}
    rows = []
    for rep in reports:
        stacked = np.stack(list(rep.sper.values()))
        curves[rep.name] = np.nanmean(stacked, axis=0)
        for layer, value in enumerate(curves[rep.name]):
            rows.append({"model": rep.name, "layer": layer, "sper_degrees": float(value)})
    write_csv(os.path.join(out_dir, "sper_by_layer.csv"), rows)
    return list(figures.plot_sper(curves, os.path.join(out_dir, "sper_by_layer")))


def run_experiment(
    cfg: ExperimentConfig,
    models: dict[str, str | Model],
    steer: tuple[str, ...] = ("base",),
    out_dir: str | None = None,
    progress: bool = True,
    *,
    measures: Measures = Measures(),
) -> dict:
    """Evaluate every model, steer the chosen ones, and draw the comparison (``models`` must hold ``"base"``).

    ``measures`` replaces the model measurements (extraction, evaluation, Dev2 scoring), for tests.
    """
    out_dir = out_dir or cfg.out
    bench = Benchmarks(cfg)
    if "base" not in models:
        raise ConfigError("the experiment needs a model named 'base' (the unaligned reference for Δ)")
    base = models["base"]
    base_id = base.source if isinstance(base, Model) else str(base)
    results: dict[str, EvalResult] = {}
    reports = []
    for name, source in models.items():
        model = (
            source
            if isinstance(source, Model)
            else load_pretrained(source, dtype=cfg.dtype, mesh=cfg.mesh, batch_size=cfg.batch_size)
        )
        print(f"[{name}] evaluating the plain model on test", flush=True)
        results[name] = measures.evaluate(model, bench, name, None, "test", progress)
        write_eval(results[name], out_dir, model, cfg, base_id)
        if name in steer:
            rep = steer_model(model, name, bench, out_dir, progress, base_id, measures=measures)
            results.update(rep.results)
            reports.append(rep)
    from jaxsteer.data.splits import save_splits

    for bench_name, by_lang in bench.splits.items():
        if by_lang:
            save_splits(by_lang, os.path.join(out_dir, f"splits_{bench_name}.json"))
    plane = write_plane(out_dir, results, "base", cfg.languages)
    sper_files = sper_outputs(out_dir, reports) if reports else []
    return {"results": results, "reports": reports, "plane": plane, "sper_files": sper_files}
