"""Run a (possibly steered) model on Global-MMLU and BLEnD and write per-language result files.

Global-MMLU is scored like lm-evaluation-harness (``acc``: argmax of the letter log-likelihoods after
the prompt, one forward per question, logits at the last position only). BLEnD short answers are
generated greedily and scored by BLEnD's soft exact match (any annotated answer, local or English, in
the response; the skip rules drop unanswerable questions) — jaxsteer's matcher or BLEnD's own
(``blend_match``, see :mod:`jaxsteer.study.metrics`). The query is the decontextualised local
question by default — the implicit cultural question the paper calls localization.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence

import numpy as np
from jaxtyping import Float

from jaxsteer import ahead
from jaxsteer.data import prompts
from jaxsteer.errors import InputError
from jaxsteer.model.model import Model, batch_shards
from jaxsteer.outputs import model_identity
from jaxsteer.results import provenance, write_csv, write_json
from jaxsteer.scoring import (
    compile_answers_ahead,
    generate_answers,
    option_logprob_fn,
    score_multiple_choice,
    single_token_ids,
)
from jaxsteer.shapes import Widths, balanced_rows, longest_first, plan_for
from jaxsteer.steering.plan import Steering
from jaxsteer.steering.sweep import Grid, run_grid
from jaxsteer.study import metrics
from jaxsteer.study.experiment import Benchmarks, ExperimentConfig, real_data_paths
from jaxsteer.tokens import encode_batch

SteeringFor = Callable[[str], Steering | None]


def _tokenizer(model: Model):
    if model.tokenizer is None:
        raise InputError(f"model {model.source} has no tokenizer (tokenizer.json); evaluation needs one")
    return model.tokenizer


def gmmlu_accuracy(
    model: Model, bench: Benchmarks, lang: str, part: str, steering=None, progress=True, choices_out=None
) -> float:
    """Global-MMLU accuracy (percent) under ``steering``; ``choices_out``: a dict that gets each question's
    :func:`item_choices`."""
    ids, mask, option_ids, answers = gmmlu_inputs(model, bench, lang, part)
    widths = scoring_widths(model, bench, part)
    result = score_multiple_choice(
        model, ids, mask, option_ids, answers, steering, bench.cfg.batch_size, progress, widths=widths
    )
    if choices_out is not None:
        choices_out.update(item_choices(bench.gmmlu(lang, part), result.predictions))
    return 100.0 * result.accuracy


LETTERS = "ABCD"


def item_choices(questions, predictions) -> dict[str, dict[str, str]]:
    """Each question's chosen and correct letter, by question id — a paired test across methods (McNemar, a
    bootstrap over items) needs the items, not only the accuracy."""
    return {
        q.id: {"chosen": LETTERS[int(p)], "answer": LETTERS[q.answer]}
        for q, p in zip(questions, np.asarray(predictions), strict=True)
    }


def gmmlu_inputs(model: Model, bench: Benchmarks, lang: str, part: str):
    """Token arrays, option ids and answers of a language's questions (for sweeps); tokenised once per
    experiment (:func:`scoring_widths` reads every language's lengths first)."""
    tok = _tokenizer(model)

    def tokenise():
        chat = tok if bench.cfg.chat else None
        reqs = [prompts.mc_prompt(q, bool(chat), chat) for q in bench.gmmlu(lang, part)]
        ids, mask = encode_batch(tok, [r.context for r in reqs])
        return ids, mask, single_token_ids(tok, reqs[0].continuations), np.array([r.answer for r in reqs])

    return bench.remember(("gmmlu inputs", lang, part), tokenise, tok)


def scoring_widths(model: Model, bench: Benchmarks, part: str) -> Widths:
    """One plan of padded widths (:func:`~jaxsteer.shapes.plan_widths`) for scoring a Global-MMLU split in
    every language of the experiment, longest prompts first in batches of ``batch_size``: the scoring programs
    compile once a width for all languages, and only as many widths as save more compute than they cost."""
    plan = lambda: plan_for(  # noqa: E731
        model.config, [gmmlu_inputs(model, bench, lang, part)[1] for lang in bench.cfg.languages], bench.cfg.batch_size
    )
    return bench.remember(("gmmlu widths", part, model.config.config_hash()), plan, _tokenizer(model))


def blend_accuracy(
    model: Model, bench: Benchmarks, lang: str, part: str, steering=None, progress=True, responses_out=None
) -> float:
    return blend_accuracies(model, bench, lang, part, steering, progress=progress, responses_out=responses_out)[0]


def blend_texts(bench: Benchmarks, lang: str, part: str, tok) -> tuple[list, list[str]]:
    """A language's BLEnD items of one split and their prompts (the query ``blend_eval`` names)."""
    items = bench.blend(lang, part)
    decontext = bench.cfg.blend_eval == "decontextualised"
    return items, [
        bench.blend_prompt(it.decontextualised if decontext else it.contextualised, lang, tok) for it in items
    ]


def blend_width(bench: Benchmarks, tok) -> int:
    """One prompt width for every BLEnD generation of the experiment (every language, Dev2 and test): the
    decode loop then compiles once for plain/steered evaluation and once for the Dev2 plan grid, instead of
    once per language and width (a 12B decode loop compiles in 7–18 s; the extra padding costs a little
    prefill). Computed once per ``Benchmarks`` and tokenizer."""
    widths = lambda: [  # noqa: E731
        encode_batch(tok, texts)[0].shape[1]
        for lang in bench.cfg.languages
        for part in ("dev2", "test")
        if (texts := blend_texts(bench, lang, part, tok)[1])
    ]
    return bench.remember(("blend width",), lambda: max(widths(), default=1), tok)


def blend_accuracies(
    model: Model,
    bench: Benchmarks,
    lang: str,
    part: str,
    steering=None,
    plans=None,
    progress=True,
    responses_out=None,
    balanced: bool = False,
) -> list[float]:
    """BLEnD accuracy (percent) under ``steering``, or under each of ``plans`` (``[G, L, D]`` deltas or a
    sweep ``Grid``: every plan decoded in the same generation calls). ``responses_out``: a dict that gets the
    responses, or with ``plans`` a list of one dict per plan. ``balanced``: as few calls as ``batch_size``
    allows, of equal rows (:func:`~jaxsteer.shapes.balanced_rows`) — for splits of one size in every
    language (Dev2), where a grid of plans multiplies each filler row."""
    tok, items, texts, rows = _blend_call(model, bench, lang, part, balanced)
    answers = generate_answers(
        model, tok, texts, bench.cfg.max_new_tokens, steering, False, rows, progress, plans=plans,
        width=blend_width(bench, tok),
    )  # fmt: skip
    per_plan = answers if plans is not None else [answers]
    prompts_by_id = {it.question.id: t for it, t in zip(items, texts)}  # BLEnD's matcher strips an echo
    questions = [it.question for it in items]
    scores = []
    for plan_answers in per_plan:
        responses = {it.question.id: a for it, a in zip(items, plan_answers)}
        scores.append(metrics.blend_accuracy(responses, questions, bench.cfg.blend_match, prompts_by_id).accuracy)
    if responses_out is not None:
        sinks = [responses_out] if isinstance(responses_out, dict) else list(responses_out)
        for sink, plan_answers in zip(sinks, per_plan, strict=True):
            sink.update({it.question.id: a for it, a in zip(items, plan_answers)})
    return scores


def _blend_call(model: Model, bench: Benchmarks, lang: str, part: str, balanced: bool):
    """The tokenizer, items, prompts and rows per call of :func:`blend_accuracies`."""
    tok = _tokenizer(model)
    items, texts = blend_texts(bench, lang, part, tok)
    rows = balanced_rows(len(texts), bench.cfg.batch_size, batch_shards(model)) if balanced else bench.cfg.batch_size
    return tok, items, texts, rows


def compile_blend_ahead(
    model: Model, bench: Benchmarks, lang: str, part: str, steering=None, plans=None, balanced: bool = False
) -> int:
    """Start compiling, in the background (:mod:`jaxsteer.ahead`), the generation :func:`blend_accuracies`
    with these arguments will run; the plans' structure, not their values, decides the program."""
    tok, _, texts, rows = _blend_call(model, bench, lang, part, balanced)
    return compile_answers_ahead(
        model, tok, texts, bench.cfg.max_new_tokens, steering, False, rows, plans=plans, width=blend_width(bench, tok)
    )


def compile_gmmlu_ahead(model: Model, bench: Benchmarks, lang: str, part: str, plans: Float[np.ndarray, "G L D"]):
    """Start compiling, in the background, the sweep programs :func:`gmmlu_accuracies` with these plans' structure
    runs at every width of the experiment's plan (:func:`scoring_widths`; every language scores at them)."""
    from jaxsteer.steering.sweep import compile_grid_ahead

    option_ids = gmmlu_inputs(model, bench, lang, part)[2]
    grid, score = _plan_grid(plans), option_logprob_fn(option_ids)
    for width in scoring_widths(model, bench, part).sizes:
        compile_grid_ahead(model, bench.cfg.batch_size, width, grid, score, chunk_size=bench.cfg.chunk_size)


def _plan_grid(plans) -> Grid:
    return Grid(np.asarray(plans, np.float32), tuple({"plan": g} for g in range(len(plans))))


def gmmlu_accuracies(
    model: Model,
    bench: Benchmarks,
    lang: str,
    part: str,
    plans: Float[np.ndarray, "G L D"],
    progress=True,
    choices_out=None,
) -> list[float]:
    """Global-MMLU accuracy (percent) under each plan of ``[G, L, D]`` dense deltas (see
    :func:`gmmlu_grid_logprobs`); ``choices_out``: one dict per plan that gets its :func:`item_choices`."""
    logp = gmmlu_grid_logprobs(model, bench, lang, part, _plan_grid(plans), progress)
    predictions = logp.argmax(-1)
    correct = predictions == gmmlu_inputs(model, bench, lang, part)[3][None]
    if choices_out is not None:
        for sink, plan_predictions in zip(choices_out, predictions, strict=True):
            sink.update(item_choices(bench.gmmlu(lang, part), plan_predictions))
    return [100.0 * float(np.mean(c)) for c in correct]  # as score_multiple_choice's accuracy, to the last bit


def gmmlu_grid_logprobs(
    model: Model, bench: Benchmarks, lang: str, part: str, grid: Grid, progress=True
) -> Float[np.ndarray, "G N K"]:
    """Option log-probabilities of a language's questions under every grid point: per batch of questions
    (longest first, at the experiment's :func:`scoring_widths`), one shared-prefix sweep call
    (:func:`~jaxsteer.steering.sweep.run_grid`) — blocks below the lowest steered layer run once for every
    point."""
    from jaxsteer.progress import bar as progress_bar

    ids, mask, option_ids, _ = gmmlu_inputs(model, bench, lang, part)
    score = option_logprob_fn(option_ids)
    out = np.zeros((len(grid.labels), len(ids), len(option_ids)), np.float32)
    bar = progress_bar(len(ids) * len(grid.labels), "score MC", "q", progress, leave=False)
    for rows, bi, bm in longest_first(ids, mask, bench.cfg.batch_size, scoring_widths(model, bench, part)):
        logp = run_grid(model, bi, bm, grid, score, chunk_size=bench.cfg.chunk_size, progress=False)  # [G, B, K]
        out[:, rows] = logp[:, : len(rows)]
        if bar is not None:
            bar.update(len(rows) * len(grid.labels))
    if bar is not None:
        bar.close()
    return out


@dataclasses.dataclass
class EvalResult:
    method: str
    gmmlu: dict[str, float]
    blend: dict[str, float]
    responses: dict[str, dict[str, str]]
    # items behind each accuracy: {"gmmlu": {lang: n}, "blend": {lang: n scored}} (a binomial s.e. needs them)
    n: dict[str, dict[str, int]] = dataclasses.field(default_factory=lambda: {"gmmlu": {}, "blend": {}})
    # Global-MMLU per question: {lang: {id: {"chosen": letter, "answer": letter}}} (empty: not recorded)
    choices: dict[str, dict[str, dict[str, str]]] = dataclasses.field(default_factory=dict)


def item_counts(bench: Benchmarks, lang: str, part: str) -> dict[str, int]:
    """How many items a language's accuracies are over: Global-MMLU questions, and BLEnD questions scored
    (BLEnD's skip rules depend on the annotations only, so no response is needed to count them)."""
    questions = [it.question for it in bench.blend(lang, part)]
    scored = metrics.blend_accuracy({}, questions, bench.cfg.blend_match).n_scored if questions else 0
    return {"gmmlu": len(bench.gmmlu(lang, part)), "blend": scored}


def evaluate(
    model: Model,
    bench: Benchmarks,
    method: str,
    steering_for: SteeringFor | None = None,
    part: str = "test",
    progress: bool = True,
) -> EvalResult:
    """Accuracies (percent) per language on both benchmarks; ``steering_for(lang)`` steers each language."""
    ahead.plan(compile_single_evaluation_ahead, model, bench, part, steering_for)
    gm, bl, resp, n, choices = {}, {}, {}, {"gmmlu": {}, "blend": {}}, {}
    for lang in bench.cfg.languages:
        steer = steering_for(lang) if steering_for else None
        choices[lang] = {}
        gm[lang] = gmmlu_accuracy(model, bench, lang, part, steer, progress, choices[lang])
        resp[lang] = {}
        bl[lang] = blend_accuracy(model, bench, lang, part, steer, progress, resp[lang])
        for name, count in item_counts(bench, lang, part).items():
            n[name][lang] = count
        if progress:
            print(f"  {method:>18} {lang}: Global-MMLU {gm[lang]:5.1f}  BLEnD {bl[lang]:5.1f}", flush=True)
    return EvalResult(method, gm, bl, resp, n, choices)


def compile_single_evaluation_ahead(model: Model, bench: Benchmarks, part: str, steering_for=None) -> None:
    """Start compiling, in the background, what :func:`evaluate` runs: the Global-MMLU scoring forward at every
    planned width side by side (instead of each at its first batch) and the BLEnD generation, for the first
    language's steering (other languages whose steering has the same structure run the same programs)."""
    from jaxsteer.model.model import compile_forward_ahead

    lang = bench.cfg.languages[0]
    steer = steering_for(lang) if steering_for else None
    for width in scoring_widths(model, bench, part).sizes:
        compile_forward_ahead(model, bench.cfg.batch_size, width, steer, "last")
    compile_blend_ahead(model, bench, lang, part, steering=steer)


def evaluate_many(
    model: Model,
    bench: Benchmarks,
    methods: Sequence[str],
    steering_fors: Sequence[SteeringFor | None],
    part: str = "test",
    progress: bool = True,
) -> list[EvalResult]:
    """:func:`evaluate` for several methods of one model, all of a language's plans in the same calls:
    Global-MMLU by one shared-prefix sweep per batch (blocks below the lowest steered layer run once for every
    plan), BLEnD by one generation per batch decoding every plan (decode is memory-bound: more rows cost little).
    Equal to evaluating each method on its own (``tests/test_study_evaluate.py``). Plans that are not plain
    dense deltas over every position (a ``Steering`` with a position mask or another scope) are evaluated
    one by one."""
    if len(methods) != len(steering_fors):
        raise ValueError(f"{len(methods)} methods but {len(steering_fors)} steering functions")
    langs = bench.cfg.languages
    plans = {lang: [f(lang) if f is not None else None for f in steering_fors] for lang in langs}
    if not all(joint_plans(v) for v in plans.values()):
        return [evaluate(model, bench, m, f, part, progress) for m, f in zip(methods, steering_fors)]
    results = [EvalResult(m, {}, {}, {}) for m in methods]
    for lang in langs:
        deltas = plan_deltas(model.config, plans[lang])
        chosen = [{} for _ in methods]
        gm = gmmlu_accuracies(model, bench, lang, part, deltas, progress, chosen)
        responses = [{} for _ in methods]
        bl = blend_accuracies(model, bench, lang, part, plans=deltas, progress=progress, responses_out=responses)
        counts = item_counts(bench, lang, part)
        for r, g, b, resp, ch in zip(results, gm, bl, responses, chosen):
            r.gmmlu[lang], r.blend[lang], r.responses[lang], r.choices[lang] = g, b, resp, ch
            r.n["gmmlu"][lang], r.n["blend"][lang] = counts["gmmlu"], counts["blend"]
            if progress:
                print(f"  {r.method:>18} {lang}: Global-MMLU {g:5.1f}  BLEnD {b:5.1f}", flush=True)
    return results


def joint_plans(steerings: Sequence[Steering | None]) -> bool:
    """Whether :func:`evaluate_many` evaluates these plans of a language together (several, each plain dense
    deltas over every position)."""
    return len(steerings) > 1 and all(s is None or (s.scope == "all" and s.mask is None) for s in steerings)


def plan_deltas(config, steerings: Sequence[Steering | None]) -> Float[np.ndarray, "G L D"]:
    """The dense deltas of a language's plans, zeros for the plain model (None)."""
    zeros = np.zeros((config.num_layers, config.hidden_size), np.float32)
    return np.stack([zeros if s is None else s.host_deltas() for s in steerings])


def compile_evaluation_ahead(model: Model, bench: Benchmarks, steerings: Sequence[Steering | None], part: str,
                             lang: str) -> None:  # fmt: skip
    """Start compiling, in the background, the programs :func:`evaluate_many` runs for one language's plans
    (the Global-MMLU sweeps at every planned width and the BLEnD generation; other languages whose plans agree
    where these do run the same programs). Nothing when the plans would be evaluated one by one."""
    if not joint_plans(steerings):
        return
    deltas = plan_deltas(model.config, steerings)
    compile_gmmlu_ahead(model, bench, lang, part, deltas)  # in the order the evaluation needs them
    compile_blend_ahead(model, bench, lang, part, plans=deltas)


PROTOCOL_KEYS = (
    "data", "blend_source", "dev1", "dev2", "allow_small", "gmmlu_subset", "gmmlu_split", "chat", "max_new_tokens",
    "blend_eval", "blend_local_instruction", "blend_match",
)  # fmt: skip
"""The settings that decide a result's test items and how they are scored (the seed, which draws the split,
is paired by ``jaxsteer plane`` on its own): two results are comparable only if these agree."""


def protocol_of(cfg: ExperimentConfig) -> dict:
    """:data:`PROTOCOL_KEYS` of ``cfg``; local data paths by their real path, however they are spelled."""
    out = real_data_paths({key: getattr(cfg, key) for key in PROTOCOL_KEYS})
    out["blend_source"] = out["blend_source"] or out["data"]  # "" means the data root
    return out


def write_eval(
    result: EvalResult,
    out_dir: str,
    model: Model,
    cfg: ExperimentConfig,
    base_model: str | None = None,
    extra: dict | None = None,
    command: str = "jaxsteer eval",
) -> list[str]:
    """``{method}.gmmlu.json`` / ``{method}.blend.json`` (the format ``jaxsteer plane`` reads), a CSV, the BLEnD
    responses and the Global-MMLU choices per question (``{method}.gmmlu_items.json``)."""
    prov = provenance(model, seed=cfg.seed, command=command, experiment=dataclasses.asdict(cfg), **(extra or {}))
    common = {
        "method": result.method,
        "config_hash": model.config.config_hash(),
        # a folder however it is spelled (eval's config-relative models.base, steer's, run's): one identity
        "base_model": model_identity(base_model or model.source) or model.config.name,
        "seed": cfg.seed,
        "protocol": protocol_of(cfg),
        "provenance": prov,
    }
    gm_name, bl_name, csv_name, responses_name, items_name = eval_file_names(result.method)
    paths = []
    for bench, scores, name in (("gmmlu", result.gmmlu, gm_name), ("blend", result.blend, bl_name)):
        counts = {"n": result.n[bench]} if result.n.get(bench) else {}
        paths.append(
            write_json(os.path.join(out_dir, name), {**common, "benchmark": bench, "accuracy": scores, **counts})
        )
    rows = [
        {"method": result.method, "lang": lang, "gmmlu": result.gmmlu[lang], "blend": result.blend[lang]}
        for lang in result.gmmlu
    ]
    paths.append(write_csv(os.path.join(out_dir, csv_name), rows))
    paths.append(write_json(os.path.join(out_dir, responses_name), result.responses))
    paths.append(
        write_json(os.path.join(out_dir, items_name), {**common, "benchmark": "gmmlu", "items": result.choices})
    )
    return paths


def eval_file_names(method: str) -> list[str]:
    """The files :func:`write_eval` writes for ``method`` (Global-MMLU, BLEnD, CSV, responses, Global-MMLU items)."""
    return [
        f"{method}.gmmlu.json", f"{method}.blend.json", f"{method}.csv", f"{method}.responses.json",
        f"{method}.gmmlu_items.json",
    ]  # fmt: skip


def read_eval(out_dir: str, method: str) -> EvalResult:
    """The :class:`EvalResult` that :func:`write_eval` wrote (a resumed run reads its finished evaluations)."""
    from jaxsteer.data.files import read_json

    gm_name, bl_name, _, responses_name, items_name = eval_file_names(method)
    gm, bl = (metrics.load_result(os.path.join(out_dir, n)).scores for n in (gm_name, bl_name))
    counts = {
        b: dict(read_json(os.path.join(out_dir, n)).get("n") or {}) for b, n in (("gmmlu", gm_name), ("blend", bl_name))
    }
    items = os.path.join(out_dir, items_name)  # absent from runs made before it was written: not recorded
    choices = read_json(items)["items"] if os.path.exists(items) else {}
    return EvalResult(method, dict(gm), dict(bl), read_json(os.path.join(out_dir, responses_name)), counts, choices)


def __getattr__(name: str):
    """``blend_mc_loglik_accuracy`` and ``BLEND_MC_LL_LABEL`` moved to :mod:`jaxsteer.study.blend_mc`; still
    importable from here."""
    if name in ("blend_mc_loglik_accuracy", "BLEND_MC_LL_LABEL"):
        from jaxsteer.study import blend_mc

        return getattr(blend_mc, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
