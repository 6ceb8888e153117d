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

from jaxsteer import ahead
from jaxsteer.checkpoint.hf import load_pretrained
from jaxsteer.data.files import is_hub_id, read_json
from jaxsteer.errors import ConfigError, JaxsteerError
from jaxsteer.interrupt import Interrupted
from jaxsteer.model.model import Model
from jaxsteer.outputs import MANIFEST, ResultsFolder, model_identity
from jaxsteer.results import provenance, write_csv, write_json, writes_results
from jaxsteer.sharding import initialize
from jaxsteer.steering import analysis, figures
from jaxsteer.steering.vectors_io import VectorSet, load_vectors, save_vectors
from jaxsteer.study import metrics
from jaxsteer.study.compare import write_comparison
from jaxsteer.study.evaluate import (
    EvalResult,
    compile_evaluation_ahead,
    eval_file_names,
    evaluate_many,
    read_eval,
    write_eval,
)
from jaxsteer.study.experiment import Benchmarks, ExperimentConfig, real_data_paths
from jaxsteer.study.surgical import (
    Scorer,
    SurgicalPlan,
    combined_steering,
    compile_extraction_ahead,
    compile_selection_ahead,
    dev2_blend,
    dev2_gmmlu,
    extract_kind,
    select_en,
    select_loc_variants,
)


@dataclasses.dataclass(frozen=True)
class Measures:
    """The model measurements the method is made of. The defaults run the model; tests pass stubs, so
    the method (what is extracted, selected, combined and compared) is checked without a forward pass.

    - ``extract(model, bench, kind, langs, progress) -> {lang: VectorSet}`` (EN or LOC vectors on Dev1)
    - ``evaluate(model, bench, methods, steering_fors, part, progress) -> [EvalResult]``: several methods of one
      model at once (the steered ones share each language's calls, :func:`~jaxsteer.study.evaluate.evaluate_many`)
    - ``score_en`` / ``score_loc``: :class:`~jaxsteer.study.surgical.Scorer` of Dev2 candidates (``score_loc``
      gets SUR's and LOC-only's candidates of a language in one call)
    - ``extract_ahead(model, bench, langs)`` / ``select_ahead(model, bench)`` / ``evaluate_ahead(model, bench,
      steerings, part, lang)``: start compiling every extraction width at once, the selection's programs while
      the vectors are extracted, and the test evaluation's once the first language's plans are chosen
      (:mod:`jaxsteer.ahead`: only where compiling ahead is on)
    """

    extract: Callable = extract_kind
    evaluate: Callable = evaluate_many
    score_en: Scorer = dev2_gmmlu
    score_loc: Scorer = dev2_blend
    # compiles started in the background ahead of the stages that run them (jaxsteer.ahead; off on a CPU)
    extract_ahead: Callable = compile_extraction_ahead
    select_ahead: Callable = compile_selection_ahead
    evaluate_ahead: Callable = compile_evaluation_ahead


@dataclasses.dataclass
class ModelReport:
    name: str
    results: dict[str, EvalResult]
    plans: dict[str, SurgicalPlan]
    sper: dict[str, np.ndarray]


STEERED = ("EN", "LOC", "SUR", "random")


def model_stages(name: str, steered: bool) -> list[str]:
    """The manifest stages of one model, in the order they run (:mod:`jaxsteer.outputs`): a steered model's
    plain evaluation runs after selection, together with its steered ones (they share every call)."""
    if not steered:
        return [f"eval:{name}"]
    return [f"vectors:{name}", f"plans:{name}", f"eval:{name}", *(f"eval:{name}+{which}" for which in STEERED)]


def steer_model(
    model: Model | None,
    name: str,
    bench: Benchmarks,
    out_dir: str,
    progress: bool = True,
    base_model: str | None = None,
    *,
    measures: Measures = Measures(),
    folder: ResultsFolder | None = None,
    write_plain: Callable[[EvalResult], None] | None = None,
) -> ModelReport:
    """Extraction, selection and the steered evaluations of one model; with ``write_plain``, its plain
    evaluation too, in the same calls (handed to ``write_plain`` to be written; in ``results``).

    SUR: EN at its selected layer + LOC at the (layer, γ) selected *with that EN applied*; LOC: LOC alone at
    the (layer, γ) selected without EN; EN: EN alone at SUR's EN layer; random: random directions with the
    EN and LOC vectors' per-layer norms at SUR's layers and γ. With a ``folder``, each stage it lists as
    finished is read back from its files instead of being run (``model`` may then be None), and each stage
    run is recorded there once its files are in place.
    """
    cfg = bench.cfg
    langs = cfg.languages
    done = folder.done if folder is not None else (lambda stage: False)
    if not done(f"vectors:{name}"):  # every extraction width compiles side by side
        ahead.plan(measures.extract_ahead, model, bench, langs)
    if not done(f"plans:{name}"):  # the Dev2 generation compiles while the vectors are extracted
        ahead.plan(measures.select_ahead, model, bench)
    if done(f"vectors:{name}"):
        v_en, v_loc = read_vector_sets(folder.path, folder.files(f"vectors:{name}"))
    else:
        print(f"[{name}] extracting EN and LOC vectors on Dev1 ({', '.join(langs)})", flush=True)
        v_en = measures.extract(model, bench, "EN", langs, progress)
        v_loc = measures.extract(model, bench, "LOC", langs, progress)
        vec_dir = os.path.join(out_dir, "vectors", name)
        paths = [
            save_vectors(os.path.join(vec_dir, f"{kind}_{lang}.safetensors"), vset)
            for kind, sets in (("en", v_en), ("loc", v_loc))
            for lang, vset in sets.items()
        ]
        _finish(folder, f"vectors:{name}", paths)
    key = (lambda lang: "pooled") if cfg.pooled and "pooled" in v_en else (lambda lang: lang)
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

    results = {f"{name}+{w}": read_eval(out_dir, f"{name}+{w}") for w in STEERED if done(f"eval:{name}+{w}")}
    pending = ([None] if write_plain is not None else []) + [w for w in STEERED if f"{name}+{w}" not in results]
    plans_path = os.path.join(out_dir, f"{name}.plans.json")
    if done(f"plans:{name}"):
        plans, loc_only = read_plans(plans_path)
    else:
        print(f"[{name}] selecting layers and γ on Dev2", flush=True)
        plans, loc_only = {}, {}
        for lang in langs:
            en, lo = v_en[key(lang)], v_loc[key(lang)]
            en_layer, en_scores = select_en(model, bench, lang, en, progress, score=measures.score_en)
            # SUR's LOC (EN applied) and LOC-only: both candidate sets decoded in one pass over Dev2
            (sur_layer, sur_gamma, sur_scores), loc_only[lang] = select_loc_variants(
                model, bench, lang, [en, None], en_layer, lo, progress, score=measures.score_loc
            )
            plans[lang] = SurgicalPlan(
                lang, en_layer, cfg.en_gamma, sur_layer, sur_gamma, {**en_scores, **sur_scores}
            )  # fmt: skip
            if lang == langs[0] and pending:  # the test evaluation compiles while the other languages select
                fors = [None if w is None else plan_for(w) for w in pending]
                ahead.plan(_evaluation_ahead, measures, model, bench, fors, lang)
        write_json(
            plans_path,
            {
                "sur": {lang: dataclasses.asdict(p) for lang, p in plans.items()},
                "loc_only": {lang: {"layer": v[0], "gamma": v[1], "selection": v[2]} for lang, v in loc_only.items()},
                "provenance": provenance(model, seed=cfg.seed, command="jaxsteer run (selection)"),
            },
        )
        _finish(folder, f"plans:{name}", [plans_path])
    if pending:
        methods = [name if w is None else f"{name}+{w}" for w in pending]
        print(f"[{name}] evaluating {', '.join(methods)} on test (together, per language)", flush=True)
        fors = [None if w is None else plan_for(w) for w in pending]
        for which, result in zip(pending, measures.evaluate(model, bench, methods, fors, "test", progress)):
            results[result.method] = result
            if which is None:
                write_plain(result)
                continue
            paths = write_eval(result, out_dir, model, cfg, base_model, {"steering": which}, "jaxsteer run")
            _finish(folder, f"eval:{result.method}", paths)
    results = {m: results[m] for m in ([name] if write_plain is not None else []) + [f"{name}+{w}" for w in STEERED]}
    sper = {lang: analysis.sper_degrees(v_en[lang].vectors, v_loc[lang].vectors) for lang in langs}
    return ModelReport(name, results, plans, sper)


def _evaluation_ahead(measures: Measures, model: Model, bench: Benchmarks, fors, lang: str) -> None:
    measures.evaluate_ahead(model, bench, [None if f is None else f(lang) for f in fors], "test", lang)


def _finish(folder: ResultsFolder | None, stage: str, paths) -> None:
    if folder is not None:
        folder.finish(stage, paths)


def read_vector_sets(root: str, files: list[str]) -> tuple[dict[str, VectorSet], dict[str, VectorSet]]:
    """EN and LOC sets ``{lang: VectorSet}`` from the ``vectors/NAME/{en,loc}_{lang}.safetensors`` of a run."""
    sets: dict[str, dict[str, VectorSet]] = {"en": {}, "loc": {}}
    for rel in files:
        kind, lang = os.path.basename(rel).removesuffix(".safetensors").split("_", 1)
        sets[kind][lang] = load_vectors(os.path.join(root, rel))
    return sets["en"], sets["loc"]


def read_plans(path: str) -> tuple[dict[str, SurgicalPlan], dict[str, tuple]]:
    """The SUR plans and LOC-only choices that ``{name}.plans.json`` records."""
    data = read_json(path)
    plans = {lang: SurgicalPlan(**p) for lang, p in data["sur"].items()}
    loc_only = {lang: (v["layer"], v["gamma"], v["selection"]) for lang, v in data["loc_only"].items()}
    return plans, loc_only


def write_plane(out_dir: str, results: dict[str, EvalResult], base: str, langs) -> dict:
    """The comparison of this run's methods (one result file per method and benchmark)."""
    runs = {
        bench: {m: metrics.load_result(os.path.join(out_dir, f"{m}.{bench}.json")) for m in results}
        for bench in ("gmmlu", "blend")
    }
    return write_comparison(out_dir, runs, base, langs, command="jaxsteer run")


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
    resume: bool | None = None,
    overwrite: bool = False,
    redo: str = "the same command with --resume",
) -> dict:
    """Evaluate every model, steer the chosen ones, and draw the comparison (``models`` must hold ``"base"``).

    ``redo``: what the interrupt message tells the user to run (the demo starts over: it has no ``--resume``).

    The folder's ``manifest.json`` (:class:`~jaxsteer.outputs.ResultsFolder`) lists every stage (a model's
    plain evaluation, its vectors, its plans, each steered evaluation, the comparison) once its files are in
    place, and ``complete`` once all are. ``resume=True`` skips the stages it lists (same models, settings
    and seed required); ``resume=False`` (``jaxsteer run``) refuses a folder that holds a run; ``None`` (the
    API, the demo) starts again in a folder this same experiment wrote, forgetting its stages first.
    ``overwrite`` moves another experiment's results aside. A Ctrl-C raises
    :class:`~jaxsteer.interrupt.Interrupted` saying what the manifest lists. ``measures`` replaces the model
    measurements (extraction, evaluation, Dev2 scoring), for tests. In a multi-host job (``mesh.distributed``)
    process 0 alone writes the folder and draws the comparison (``plane`` is None on the other processes).
    """
    out_dir = out_dir or cfg.out
    if "base" not in models:
        raise ConfigError("the experiment needs a model named 'base' (the unaligned reference for Δ)")
    check_contexts(cfg, models)
    if cfg.mesh is not None:
        initialize(cfg.mesh)  # multi-host: the processes are known before the folder is claimed (process 0 writes)
    stages = [stage for name in models for stage in model_stages(name, name in steer)] + ["comparison"]
    methods = [name for name in models] + [f"{name}+{which}" for name in models if name in steer for which in STEERED]
    folder = ResultsFolder.claim(
        out_dir,
        run_writer(cfg, models, steer),
        overwrite=overwrite,
        resume=resume,
        planned_stages=stages,
        planned_files=[f for m in methods for f in eval_file_names(m)],
    )
    for stage in list(folder.record["stages"]) if resume is None else ["comparison"]:
        folder.forget(stage)  # derived files go before the results they are derived from change
    folder.save()  # from here on the folder says which stages are done, whatever happens
    try:
        return _run(cfg, models, steer, out_dir, progress, measures, folder)
    except KeyboardInterrupt:
        raise Interrupted(
            f"{os.path.join(out_dir, MANIFEST)} lists {folder.summary()}; files of the stage that was cut short "
            f"are listed nowhere and are redone by {redo}"
        ) from None
    except JaxsteerError:
        folder.abandon()  # refused before any stage finished: leave no manifest (nor an empty folder)
        raise
    finally:
        ahead.cancel()  # compiles still queued (for stages not reached, or shapes no call used) are not waited for


def _run(cfg, models, steer, out_dir, progress, measures: Measures, folder: ResultsFolder) -> dict:
    bench = Benchmarks(cfg)
    base = models["base"]
    base_id = base.source if isinstance(base, Model) else str(base)
    results: dict[str, EvalResult] = {}
    reports = []
    first = next(iter(models))
    for name, source in models.items():
        pending = [s for s in model_stages(name, name in steer) if not folder.done(s)]
        model = None
        if pending:
            model = (
                source
                if isinstance(source, Model)
                else load_pretrained(
                    source, dtype=cfg.dtype, mesh=cfg.mesh, batch_size=cfg.batch_size, decode_layout=cfg.decode_layout
                )
            )
            if cfg.decode_layout != "auto" and model.decode_layout != cfg.decode_layout:
                model = dataclasses.replace(model, decode_layout=cfg.decode_layout)

        def write_plain(result: EvalResult, model=model, name=name) -> None:
            paths = write_eval(result, out_dir, model, cfg, base_id, command="jaxsteer run")
            # the first model's plain evaluation comes after every split was made (the seed's Dev1/Dev2/test):
            # saved with it, so a resumed run has them whether or not it evaluates anything itself
            paths += save_all_splits(bench, out_dir) if name == first else []
            folder.finish(f"eval:{name}", paths)

        plain_done = folder.done(f"eval:{name}")
        if plain_done:
            results[name] = read_eval(out_dir, name)
        elif name not in steer:
            print(f"[{name}] evaluating the plain model on test", flush=True)
            results[name] = measures.evaluate(model, bench, [name], [None], "test", progress)[0]
            write_plain(results[name])
        if name in steer:
            rep = steer_model(
                model, name, bench, out_dir, progress, base_id, measures=measures, folder=folder,
                write_plain=None if plain_done else write_plain,
            )  # fmt: skip
            results.update(rep.results)
            reports.append(rep)
    if not writes_results():  # the comparison reads the result files back, which process 0 writes and draws
        return {"results": results, "reports": reports, "plane": None, "sper_files": []}
    plane = write_plane(out_dir, results, "base", cfg.languages)
    files = [os.path.join(out_dir, f"delta_{b}.{ext}") for b in ("gmmlu", "blend") for ext in ("csv", "md")]
    files += [os.path.join(out_dir, "plane.csv"), *plane["plane"], plane["record"]]
    sper_files = sper_outputs(out_dir, reports) if reports else []
    files += [os.path.join(out_dir, "sper_by_layer.csv"), *sper_files] if reports else []
    folder.finish("comparison", files)
    return {"results": results, "reports": reports, "plane": plane, "sper_files": sper_files}


def save_all_splits(bench: Benchmarks, out_dir: str) -> list[str]:
    """``splits_{gmmlu,blend}.json``: every split the benchmarks have made."""
    from jaxsteer.data.splits import save_splits

    path = lambda name: os.path.join(out_dir, f"splits_{name}.json")  # noqa: E731
    return [str(save_splits(by_lang, path(name))) for name, by_lang in bench.splits.items() if by_lang]


def check_contexts(cfg: ExperimentConfig, models: dict[str, str | Model]) -> None:
    """From each model's config.json, before any model is loaded: ``max_new_tokens`` against its context, and
    its architecture against the base's (Δ is only defined against the same model: a CLA model of another
    architecture would otherwise be found out after the whole run, by the comparison)."""
    from jaxsteer.config import GemmaConfig
    from jaxsteer.model.model import check_new_tokens

    hashes = {}
    for name, source in models.items():
        if isinstance(source, Model):
            config = source.config
        elif os.path.isfile(os.path.join(str(source), "config.json")):
            config = GemmaConfig.from_hf(str(source))
        elif is_hub_id(str(source)):  # its config.json alone, now: unreachable or mistyped is found out first
            from jaxsteer.checkpoint.hf import fetch_hub_config

            config = GemmaConfig.from_hf(fetch_hub_config(str(source)))
        else:  # found out after the base's whole run otherwise
            raise ConfigError(f"model {name}: no checkpoint folder with a config.json at {source}")
        check_new_tokens(config, 1, cfg.max_new_tokens)
        hashes[name] = (config.config_hash(), config.name)
    base = next(iter(models))
    for name, (digest, arch) in hashes.items():
        if base in hashes and digest != hashes[base][0]:
            raise ConfigError(
                f"model {name} ({arch}, config {digest}) is not the architecture of the base model {base} "
                f"({hashes[base][1]}, config {hashes[base][0]}): Δ is only defined against the same model"
            )


def run_writer(cfg: ExperimentConfig, models: dict[str, str | Model], steer) -> dict:
    """What a run folder records as its writer: the models, which are steered, the settings and the seed."""
    import hashlib
    import json

    settings = dataclasses.asdict(cfg)
    # decode_layout: how, not what — the layouts decode the same tokens in fp32; in bf16 the unrolled layout's
    # fused projections round differently in the last bits (as another GPU would), so a resume may switch it
    for key in ("out", "model", "decode_layout"):
        settings.pop(key)
    settings = real_data_paths(settings)
    blob = json.dumps(settings, sort_keys=True, default=str).encode()
    return {
        "models": {n: model_identity(m.source if isinstance(m, Model) else m) for n, m in models.items()},
        "steer": [n for n in models if n in steer],
        "experiment_hash": hashlib.sha256(blob).hexdigest()[:16],
        "seed": cfg.seed,
    }
