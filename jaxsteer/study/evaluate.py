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
from collections.abc import Callable

import numpy as np

from jaxsteer.data import prompts
from jaxsteer.errors import InputError
from jaxsteer.model.model import Model
from jaxsteer.results import provenance, write_csv, write_json
from jaxsteer.scoring import generate_answers, score_multiple_choice, single_token_ids
from jaxsteer.steering.plan import Steering
from jaxsteer.study import metrics
from jaxsteer.study.experiment import Benchmarks, ExperimentConfig
from jaxsteer.tokens import encode_batch

SteeringFor = Callable[[str], Steering | None]


def _tokenizer(model: Model):
    if model.tokenizer is None:
        raise InputError(f"model {model.source} has no tokenizer (tokenizer.json); evaluation needs one")
    return model.tokenizer


def gmmlu_accuracy(model: Model, bench: Benchmarks, lang: str, part: str, steering=None, progress=True) -> float:
    tok = _tokenizer(model)
    cfg = bench.cfg
    questions = bench.gmmlu(lang, part)
    chat = tok if cfg.chat else None
    reqs = [prompts.mc_prompt(q, bool(chat), chat) for q in questions]
    ids, mask = encode_batch(tok, [r.context for r in reqs])
    option_ids = single_token_ids(tok, reqs[0].continuations)
    result = score_multiple_choice(
        model, ids, mask, option_ids, [r.answer for r in reqs], steering, cfg.batch_size, progress
    )
    return 100.0 * result.accuracy


def gmmlu_inputs(model: Model, bench: Benchmarks, lang: str, part: str):
    """Token arrays, option ids and answers of a language's questions (for sweeps)."""
    tok = _tokenizer(model)
    chat = tok if bench.cfg.chat else None
    reqs = [prompts.mc_prompt(q, bool(chat), chat) for q in bench.gmmlu(lang, part)]
    ids, mask = encode_batch(tok, [r.context for r in reqs])
    return ids, mask, single_token_ids(tok, reqs[0].continuations), np.array([r.answer for r in reqs])


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
    from jaxsteer.tokens import encode_batch

    cache = bench.generation_widths
    if id(tok) not in cache:
        widths = [
            encode_batch(tok, texts)[0].shape[1]
            for lang in bench.cfg.languages
            for part in ("dev2", "test")
            if (texts := blend_texts(bench, lang, part, tok)[1])
        ]
        cache[id(tok)] = max(widths, default=1)
    return cache[id(tok)]


def blend_accuracies(
    model: Model, bench: Benchmarks, lang: str, part: str, steering=None, plans=None, progress=True, responses_out=None
) -> list[float]:
    """BLEnD accuracy (percent) under ``steering``, or under each of ``plans`` (``[G, L, D]`` deltas or a
    sweep ``Grid``: every plan decoded in the same generation calls); ``responses_out`` gets the first plan's."""
    tok = _tokenizer(model)
    cfg = bench.cfg
    items, texts = blend_texts(bench, lang, part, tok)
    answers = generate_answers(
        model, tok, texts, cfg.max_new_tokens, steering, False, cfg.batch_size, progress, plans=plans,
        width=blend_width(bench, tok),
    )  # fmt: skip
    per_plan = answers if plans is not None else [answers]
    prompts_by_id = {it.question.id: t for it, t in zip(items, texts)}  # BLEnD's matcher strips an echo
    questions = [it.question for it in items]
    scores = []
    for plan_answers in per_plan:
        responses = {it.question.id: a for it, a in zip(items, plan_answers)}
        scores.append(metrics.blend_accuracy(responses, questions, cfg.blend_match, prompts_by_id).accuracy)
    if responses_out is not None:
        responses_out.update({it.question.id: a for it, a in zip(items, per_plan[0])})
    return scores


@dataclasses.dataclass
class EvalResult:
    method: str
    gmmlu: dict[str, float]
    blend: dict[str, float]
    responses: dict[str, dict[str, str]]


def evaluate(
    model: Model,
    bench: Benchmarks,
    method: str,
    steering_for: SteeringFor | None = None,
    part: str = "test",
    progress: bool = True,
) -> EvalResult:
    """Accuracies (percent) per language on both benchmarks; ``steering_for(lang)`` steers each language."""
    gm, bl, resp = {}, {}, {}
    for lang in bench.cfg.languages:
        steer = steering_for(lang) if steering_for else None
        gm[lang] = gmmlu_accuracy(model, bench, lang, part, steer, progress)
        resp[lang] = {}
        bl[lang] = blend_accuracy(model, bench, lang, part, steer, progress, resp[lang])
        if progress:
            print(f"  {method:>18} {lang}: Global-MMLU {gm[lang]:5.1f}  BLEnD {bl[lang]:5.1f}", flush=True)
    return EvalResult(method, gm, bl, resp)


def write_eval(
    result: EvalResult,
    out_dir: str,
    model: Model,
    cfg: ExperimentConfig,
    base_model: str | None = None,
    extra: dict | None = None,
) -> list[str]:
    """``{method}.gmmlu.json`` / ``{method}.blend.json`` (the format ``jaxsteer plane`` reads), a CSV and the responses."""
    prov = provenance(
        model, seed=cfg.seed, command="jaxsteer eval", experiment=dataclasses.asdict(cfg), **(extra or {})
    )
    common = {
        "method": result.method,
        "config_hash": model.config.config_hash(),
        "base_model": base_model or model.config.name,
        "seed": cfg.seed,
        "provenance": prov,
    }
    gm_name, bl_name, csv_name, responses_name = eval_file_names(result.method)
    paths = []
    for bench, scores, name in (("gmmlu", result.gmmlu, gm_name), ("blend", result.blend, bl_name)):
        paths.append(write_json(os.path.join(out_dir, name), {**common, "benchmark": bench, "accuracy": scores}))
    rows = [
        {"method": result.method, "lang": lang, "gmmlu": result.gmmlu[lang], "blend": result.blend[lang]}
        for lang in result.gmmlu
    ]
    paths.append(write_csv(os.path.join(out_dir, csv_name), rows))
    paths.append(write_json(os.path.join(out_dir, responses_name), result.responses))
    return paths


def eval_file_names(method: str) -> list[str]:
    """The files :func:`write_eval` writes for ``method`` (Global-MMLU, BLEnD, CSV, responses)."""
    return [f"{method}.gmmlu.json", f"{method}.blend.json", f"{method}.csv", f"{method}.responses.json"]


def read_eval(out_dir: str, method: str) -> EvalResult:
    """The :class:`EvalResult` that :func:`write_eval` wrote (a resumed run reads its finished evaluations)."""
    from jaxsteer.data.files import read_json

    gm_name, bl_name, _, responses_name = eval_file_names(method)
    gm, bl = (metrics.load_result(os.path.join(out_dir, n)).scores for n in (gm_name, bl_name))
    return EvalResult(method, dict(gm), dict(bl), read_json(os.path.join(out_dir, responses_name)))


BLEND_MC_LL_LABEL = "blend_mc_ll (jaxsteer variant: summed log-likelihood of each choice; not BLEnD's protocol)"


def blend_mc_loglik_accuracy(
    model: Model, source: str, country: str, steering=None, batch_size: int = 16, limit: int | None = None
) -> dict:
    """Accuracy (%) on BLEnD's multiple-choice file by log-likelihood — **our** variant, labelled so.

    BLEnD scores its MCQ by parsing a generated JSON answer; here each choice ``" " + text`` is scored by its
    summed log-likelihood after the prompt and the argmax is the prediction (lm-evaluation-harness style).
    """
    from jaxsteer.data.blend import load_blend_mc
    from jaxsteer.scoring import continuation_logprobs

    tok = _tokenizer(model)
    questions = load_blend_mc(source, country)[:limit]
    contexts, conts, owner = [], [], []
    for qi, q in enumerate(questions):
        ctx = tok(q.prompt, add_special_tokens=False)["input_ids"]
        ctx = [tok.bos_token_id, *ctx] if tok.bos_token_id is not None else ctx
        for choice in q.choices:
            contexts.append(ctx)
            conts.append(tok(" " + choice, add_special_tokens=False)["input_ids"])
            owner.append(qi)
    scores = continuation_logprobs(model, contexts, conts, steering, batch_size)
    correct, start = [], 0
    for q in questions:
        n = len(q.choices)
        correct.append(int(np.argmax(scores[start : start + n])) == q.answer)
        start += n
    return {"metric": BLEND_MC_LL_LABEL, "accuracy": 100.0 * float(np.mean(correct)), "n": len(correct)}
