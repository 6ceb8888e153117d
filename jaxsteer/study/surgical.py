"""The paper's steering recipe: EN and LOC vectors from Dev1, layer/γ selection on Dev2, surgical steering.

- EN vector (transfer): mean(h | English query) − mean(h | the same query in XX), Global-MMLU Dev1.
- LOC vector (localization): mean(h | contextualised XX cultural question) − mean(h | decontextualised),
  BLEnD Dev1.
- Selection on Dev2: EN keeps the paper's γ (2) at its layer unless ``select_layers`` sweeps layers
  around it (Global-MMLU accuracy, one shared-prefix sweep call); LOC's γ (and optionally its layer)
  maximises BLEnD accuracy with EN applied — BLEnD is scored by generation, one run per grid point.
  The winner follows :mod:`jaxsteer.study.selection`: the highest score; ties → smaller |γ|, then lower layer.
- The measurements are :class:`Scorer` arguments (``dev2_gmmlu``, ``dev2_blend`` by default), so the
  selection logic is tested apart from the model with stub scorers.
- SUR adds both at once: ``h ← h + γ_EN·v_EN`` at block ``l_EN`` and ``h ← h + γ_LOC·v_LOC`` at ``l_LOC``.
Every choice is returned in a ``SurgicalPlan`` and written with the results.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import jax.numpy as jnp
import numpy as np

from jaxsteer.errors import InputError, JaxsteerError
from jaxsteer.model.model import Model, batch_shards
from jaxsteer.shapes import Widths, plan_for
from jaxsteer.steering.extract import TokenPairs, extract, normalise, pool
from jaxsteer.steering.plan import Steering
from jaxsteer.steering.sweep import Grid
from jaxsteer.steering.vectors_io import VectorSet
from jaxsteer.study.evaluate import blend_accuracies, gmmlu_grid_logprobs, gmmlu_inputs
from jaxsteer.study.experiment import Benchmarks, ExperimentConfig
from jaxsteer.study.selection import best_point


def extract_kind(model: Model, bench: Benchmarks, kind: str, langs, progress: bool = True) -> dict[str, VectorSet]:
    """EN or LOC vectors per language (and ``"pooled"`` when the config asks for it) from Dev1 pairs."""
    cfg = bench.cfg
    per_lang, extractions = {}, {}
    widths = extraction_widths(model, bench, kind, langs)
    for lang in langs:
        ex = extract(
            model, dev1_pairs(model, bench, kind, lang), cfg.method, cfg.read, cfg.batch_size, progress, widths
        )
        extractions[lang] = ex
        per_lang[lang] = _as_set(model, ex, kind, (lang,), cfg.normalisation)
    if cfg.pooled:  # mean_diff: the config refuses pooling another method
        pooled = pool(list(extractions.values()))
        per_lang["pooled"] = _as_set(model, pooled, kind, tuple(langs), cfg.normalisation)
    return per_lang


def dev1_pairs(model: Model, bench: Benchmarks, kind: str, lang: str) -> TokenPairs:
    """A language's EN or LOC contrastive pairs on Dev1, tokenised (once per experiment)."""
    tok = model.tokenizer

    def tokenise():
        pairs = (bench.en_pairs if kind == "EN" else bench.loc_pairs)(lang, "dev1", tok)
        return TokenPairs.from_texts(tok, [p for p, _ in pairs], [n for _, n in pairs])

    return bench.remember(("dev1 pairs", kind, lang), tokenise, tok)


def extraction_widths(model: Model, bench: Benchmarks, kind: str, langs) -> Widths:
    """One width plan for reading every EN and LOC pair of ``langs`` (:func:`~jaxsteer.shapes.plan_for`, balanced
    rows as extraction reads them): the all-layer read compiles once a width for both kinds and every language.
    The other kind's pairs join the plan where its data is there (extracting EN alone needs no BLEnD)."""

    def plan():
        masks = [dev1_pairs(model, bench, kind, lang).both_sides()[1] for lang in langs]
        other = "LOC" if kind == "EN" else "EN"
        for lang in langs:
            try:
                masks.append(dev1_pairs(model, bench, other, lang).both_sides()[1])
            except JaxsteerError:  # missing or too small data for the kind not asked for: plan without it
                continue
        return plan_for(model.config, masks, bench.cfg.batch_size, balanced=batch_shards(model))

    key = ("extraction widths", tuple(sorted(langs)), model.config.config_hash(), batch_shards(model))
    return bench.remember(key, plan, model.tokenizer)


def compile_extraction_ahead(model: Model, bench: Benchmarks, langs) -> int:
    """Start compiling, in the background (:mod:`jaxsteer.ahead`), the all-layer reads :func:`extract_kind` will
    run for EN and LOC over ``langs``: every planned width (:func:`extraction_widths`, one plan for both kinds) at
    each list's rows per call — the widths compile side by side instead of each at its first batch."""
    from jaxsteer.shapes import balanced_rows, batch_needs
    from jaxsteer.steering.extract import compile_activations_ahead

    widths = extraction_widths(model, bench, "EN", langs)
    shapes = set()
    for kind in ("EN", "LOC"):
        for lang in langs:
            try:
                mask = dev1_pairs(model, bench, kind, lang).both_sides()[1]
            except JaxsteerError:  # that kind's data is not there: extract_kind will say so
                continue
            rows = balanced_rows(len(mask), bench.cfg.batch_size, batch_shards(model))
            shapes |= {(rows, widths(n)) for n in batch_needs(mask.sum(axis=1), rows)}  # the batches it will read
    return sum(compile_activations_ahead(model, r, w, bench.cfg.read) for r, w in sorted(shapes))


def _as_set(model, ex, kind, langs, normalisation) -> VectorSet:
    return VectorSet.from_config(
        model.config,
        normalise(ex, normalisation),
        method=ex.method,
        read_position=ex.read,
        kind=kind,
        num_pairs=ex.num_pairs,
        languages=langs,
        normalisation=normalisation,
    )


def combined_steering(config, parts: list[tuple[np.ndarray, int, float]], scope: str = "all") -> Steering:
    """One plan from several (vector set [L, D], layer, γ) parts; parts at the same layer add up."""
    dense = np.zeros((config.num_layers, config.hidden_size), np.float32)
    gamma = np.zeros(config.num_layers, np.float32)
    for vectors, layer, g in parts:
        if not math.isfinite(float(g)):  # folded into the vectors below, it would be blamed on them
            raise InputError(f"γ = {float(g)} at layer {layer} is not a finite number")
        dense[layer] += np.float32(g) * np.asarray(vectors, np.float32)[layer]
        gamma[layer] = 1.0
    return Steering(vectors=jnp.asarray(dense), gamma=jnp.asarray(gamma), scope=scope)


@dataclasses.dataclass(frozen=True)
class SurgicalPlan:
    """What SUR applies for one language, and how it was chosen."""

    lang: str
    en_layer: int
    en_gamma: float
    loc_layer: int
    loc_gamma: float
    selection: dict  # Dev2 scores of every candidate

    def steering(self, config, v_en: VectorSet, v_loc: VectorSet, which: str = "sur") -> Steering:
        parts = []
        if which in ("sur", "en"):
            parts.append((v_en.vectors, self.en_layer, self.en_gamma))
        if which in ("sur", "loc"):
            parts.append((v_loc.vectors, self.loc_layer, self.loc_gamma))
        return combined_steering(config, parts)


def _window(center: int, radius: int, num_layers: int) -> list[int]:
    return [layer for layer in range(center - radius, center + radius + 1) if 0 <= layer < num_layers]


def candidate_layers(cfg: ExperimentConfig, num_layers: int, kind: str) -> list[int]:
    """The layers searched for ``kind`` (``"EN"``/``"LOC"``): the default alone, or ±``layer_window``
    around it (clipped to the model) when ``select_layers``."""
    default = cfg.layers_for(num_layers)[0 if kind == "EN" else 1]
    return _window(default, cfg.layer_window, num_layers) if cfg.select_layers else [default]


def default_loc_gamma(cfg: ExperimentConfig) -> float:
    """LOC's γ when nothing is selected (``jaxsteer steer --no-select``): the first grid value > 0."""
    return next((float(g) for g in cfg.loc_gammas if g > 0), 0.0)


# --- scorers: the measurements selection makes (tests inject stubs) ----------------------------------
@dataclasses.dataclass(frozen=True)
class Candidate:
    """One point to score: the (layer, γ) being chosen and the whole plan it is scored under."""

    layer: int
    gamma: float
    steering: Steering
    label: str  # what is applied, for progress lines


@runtime_checkable
class Scorer(Protocol):
    """Dev2 accuracy (percent) of each candidate plan for one language."""

    def __call__(
        self, model: Model, bench: Benchmarks, lang: str, candidates: Sequence[Candidate], *, progress: bool
    ) -> Sequence[float] | np.ndarray: ...


def dev2_gmmlu(
    model: Model, bench: Benchmarks, lang: str, candidates: Sequence[Candidate], *, progress: bool = True
) -> np.ndarray:
    """Global-MMLU Dev2 accuracy of every candidate in one shared-prefix sweep (a grid of their deltas)."""
    deltas = np.stack([c.steering.host_deltas() for c in candidates])
    grid = Grid(deltas, tuple({"layer": c.layer, "gamma": c.gamma} for c in candidates))
    logp = gmmlu_grid_logprobs(model, bench, lang, "dev2", grid, progress)
    return (logp.argmax(-1) == gmmlu_inputs(model, bench, lang, "dev2")[3][None]).mean(-1) * 100


def dev2_blend(
    model: Model, bench: Benchmarks, lang: str, candidates: Sequence[Candidate], *, progress: bool = True
) -> np.ndarray:
    """BLEnD Dev2 accuracy of every candidate: all candidates decoded together, one generation call per
    batch of questions (``generate`` with a grid of plans)."""
    n = len(bench.blend(lang, "dev2"))
    deltas = np.stack([c.steering.host_deltas() for c in candidates])
    scores = blend_accuracies(model, bench, lang, "dev2", plans=deltas, progress=progress, balanced=True)
    scores = np.asarray(scores, np.float64)
    if progress:
        for c, score in zip(candidates, scores):
            print(f"      {c.label}: Dev2 BLEnD {score:.1f}% (n={n} items)", flush=True)
    return scores


# --- selection ---------------------------------------------------------------------------------------
def select_en(
    model: Model,
    bench: Benchmarks,
    lang: str,
    v_en: VectorSet,
    progress: bool = True,
    *,
    score: Scorer = dev2_gmmlu,
) -> tuple[int, dict]:
    """EN layer on Dev2 Global-MMLU (γ fixed at ``en_gamma``): the config's layer unless ``select_layers``,
    then the best of the window by :func:`~jaxsteer.study.selection.best_point` (ties → lower layer)."""
    cfg = bench.cfg
    layers = candidate_layers(cfg, model.config.num_layers, "EN")
    if not cfg.select_layers:
        return layers[0], {}
    cands = [
        Candidate(layer, cfg.en_gamma, combined_steering(model.config, [(v_en.vectors, layer, cfg.en_gamma)]),
                  f"EN layer {layer} γ={cfg.en_gamma:g}")
        for layer in layers
    ]  # fmt: skip
    acc = _scores(score(model, bench, lang, cands, progress=progress), cands)
    best = best_point([(c.layer, c.gamma) for c in cands], acc)
    if progress:
        print(f"    {lang} EN (Dev2 Global-MMLU): chose {best.describe()}", flush=True)
    return best.layer, {"en_dev2_gmmlu": {f"layer={c.layer}": float(a) for c, a in zip(cands, acc)}}


def select_loc(
    model: Model,
    bench: Benchmarks,
    lang: str,
    v_en: VectorSet | None,
    en_layer: int,
    v_loc: VectorSet,
    progress: bool = True,
    *,
    score: Scorer = dev2_blend,
) -> tuple[int, float, dict]:
    """LOC layer and γ maximising Dev2 BLEnD accuracy with EN applied (at ``en_layer``, ``en_gamma``) when
    ``v_en`` is given: every layer of the window × every ``loc_gammas`` value; ties → smaller |γ|, then lower layer."""
    return select_loc_variants(model, bench, lang, [v_en], en_layer, v_loc, progress, score=score)[0]


def select_loc_variants(
    model: Model,
    bench: Benchmarks,
    lang: str,
    v_ens: Sequence[VectorSet | None],
    en_layer: int,
    v_loc: VectorSet,
    progress: bool = True,
    *,
    score: Scorer = dev2_blend,
) -> list[tuple[int, float, dict]]:
    """:func:`select_loc` for each of ``v_ens`` (an EN set applied at ``en_layer``, or None: LOC alone), every
    candidate of every variant scored in **one** scorer call — SUR's LOC and LOC-only are chosen from one
    generation pass over Dev2 (decoding is memory-bound: more plans per call cost little)."""
    variants = loc_variants(model.config, bench.cfg, [None if v is None else v.vectors for v in v_ens], en_layer,
                            v_loc.vectors)  # fmt: skip
    if progress:
        for purpose, _ in variants:
            print(f"    {lang} {purpose}: choosing LOC's layer and γ on Dev2 BLEnD", flush=True)
    every = [c for _, cands in variants for c in cands]
    acc = _scores(score(model, bench, lang, every, progress=progress), every)
    chosen = []
    size = len(variants[0][1])
    for i, ((purpose, cands), v_en) in enumerate(zip(variants, v_ens)):
        part = acc[i * size : (i + 1) * size]
        best = best_point([(c.layer, c.gamma) for c in cands], part)
        if progress:
            at_zero = "the unsteered model" if v_en is None else "EN alone"
            print(f"    {lang} {purpose}: chose LOC {best.describe(at_zero=at_zero)}", flush=True)
        scores = {f"layer={c.layer},gamma={c.gamma}": float(a) for c, a in zip(cands, part)}
        chosen.append((best.layer, best.gamma, {"loc_dev2_blend": scores}))
    return chosen


def loc_variants(config, cfg: ExperimentConfig, en_vectors: Sequence, en_layer: int, loc_vectors) -> list[tuple]:
    """``[(purpose, candidates)]`` of :func:`select_loc_variants`: for each EN vector set (or None: LOC
    alone), every LOC layer of the window × every ``loc_gammas`` value, EN applied at ``en_layer``."""
    grid = list(itertools.product(candidate_layers(cfg, config.num_layers, "LOC"), cfg.loc_gammas))
    variants = []
    for v_en in en_vectors:
        en = [] if v_en is None else [(v_en, en_layer, cfg.en_gamma)]
        # SUR's LOC and LOC-only steering are both chosen on Dev2: every line says which
        purpose = "LOC only" if v_en is None else f"SUR: LOC with EN layer {en_layer} γ={cfg.en_gamma:g} applied"
        cands = [
            Candidate(layer, float(gamma), combined_steering(config, [(loc_vectors, layer, gamma), *en]),
                      f"{'LOC only' if v_en is None else 'SUR'}: LOC layer {layer} γ={gamma:g}")
            for layer, gamma in grid
        ]  # fmt: skip
        variants.append((purpose, cands))
    return variants


def compile_selection_ahead(
    model: Model, bench: Benchmarks, lang: str | None = None, en: Sequence[bool] = (True, False)
) -> int:
    """Start compiling, in the background (:mod:`jaxsteer.ahead`), the Dev2 generation that selects SUR's and
    LOC-only's LOC (:func:`select_loc_variants` with :func:`dev2_blend`) for ``lang`` (default: the first
    language; the others share its shapes) — before the vectors exist: the grid's program depends on which
    plans agree where, which random vectors at the same layers and γ reproduce. ``en``: per variant, whether
    EN is applied (``select_loc_variants``' ``v_ens`` given or None; ``(False,)`` for LOC-only's
    :func:`select_loc`), at the config's EN layer (nothing is compiled ahead with EN when ``select_layers``
    chooses it on Dev2 first)."""
    from jaxsteer.study.evaluate import compile_blend_ahead

    cfg = bench.cfg
    if cfg.select_layers and any(en):  # the EN layer is not known before its selection, and the tree depends on it
        return 0
    shape = (model.config.num_layers, model.config.hidden_size)
    rng = np.random.default_rng(0)
    en_layer = candidate_layers(cfg, model.config.num_layers, "EN")[0]
    like = lambda: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    variants = loc_variants(model.config, cfg, [like() if e else None for e in en], en_layer, like())
    plans = np.stack([c.steering.host_deltas() for _, cands in variants for c in cands])
    return compile_blend_ahead(model, bench, lang or cfg.languages[0], "dev2", plans=plans, balanced=True)


def _scores(values, cands: Sequence[Candidate]) -> np.ndarray:
    values = np.asarray(values, np.float64).reshape(-1)
    if values.size != len(cands):
        raise ValueError(f"the scorer returned {values.size} scores for {len(cands)} candidates")
    return values


def plan_surgical(
    model: Model,
    bench: Benchmarks,
    lang: str,
    v_en: VectorSet,
    v_loc: VectorSet | None,
    progress: bool = True,
    *,
    select: bool = True,
    score_en: Scorer = dev2_gmmlu,
    score_loc: Scorer = dev2_blend,
) -> SurgicalPlan:
    """What SUR applies for ``lang``.

    ``select=False``: the config's layers, ``en_gamma`` and :func:`default_loc_gamma` (no Dev2 run).
    Otherwise EN's layer by :func:`select_en`, then LOC's layer and γ by :func:`select_loc` with that EN
    applied. Without ``v_loc`` the plan is EN-only (LOC γ = 0 at its default layer).
    """
    cfg = bench.cfg
    en_default, loc_default = cfg.layers_for(model.config.num_layers)
    if not select:
        loc_gamma = default_loc_gamma(cfg) if v_loc is not None else 0.0
        return SurgicalPlan(lang, en_default, cfg.en_gamma, loc_default, loc_gamma, {})
    en_layer, en_scores = select_en(model, bench, lang, v_en, progress, score=score_en)
    if v_loc is None:
        return SurgicalPlan(lang, en_layer, cfg.en_gamma, loc_default, 0.0, en_scores)
    loc_layer, loc_gamma, loc_scores = select_loc(model, bench, lang, v_en, en_layer, v_loc, progress, score=score_loc)
    return SurgicalPlan(lang, en_layer, cfg.en_gamma, loc_layer, loc_gamma, {**en_scores, **loc_scores})
