"""The paper's steering recipe: EN and LOC vectors from Dev1, layer/γ selection on Dev2, surgical steering.

- EN vector (transfer): mean(h | English query) − mean(h | the same query in XX), Global-MMLU Dev1.
- LOC vector (localization): mean(h | contextualised XX cultural question) − mean(h | decontextualised),
  BLEnD Dev1.
- Selection on Dev2: EN keeps the paper's γ (2) at its layer unless ``select_layers`` sweeps layers
  around it (Global-MMLU accuracy, one shared-prefix sweep call); LOC's γ (and optionally its layer)
  maximises BLEnD accuracy with EN applied — BLEnD is scored by generation, one run per grid point.
- SUR adds both at once: ``h ← h + γ_EN·v_EN`` at block ``l_EN`` and ``h ← h + γ_LOC·v_LOC`` at ``l_LOC``.
Every choice is returned in a ``SurgicalPlan`` and written with the results.
"""

from __future__ import annotations

import dataclasses
import itertools

import jax.numpy as jnp
import numpy as np

from jaxsteer.model.model import Model
from jaxsteer.scoring import option_logprob_fn
from jaxsteer.steering.extract import TokenPairs, extract, normalise, pool
from jaxsteer.steering.plan import Steering
from jaxsteer.steering.sweep import layer_gamma_grid, run_grid
from jaxsteer.steering.vectors_io import VectorSet
from jaxsteer.study.evaluate import blend_accuracy, gmmlu_inputs
from jaxsteer.study.experiment import Benchmarks


def extract_kind(model: Model, bench: Benchmarks, kind: str, langs, progress: bool = True) -> dict[str, VectorSet]:
    """EN or LOC vectors per language (and ``"pooled"`` when the config asks for it) from Dev1 pairs."""
    cfg = bench.cfg
    per_lang, extractions = {}, {}
    for lang in langs:
        pairs = (
            bench.en_pairs(lang, "dev1", model.tokenizer)
            if kind == "EN"
            else bench.loc_pairs(lang, "dev1", model.tokenizer)
        )
        tp = TokenPairs.from_texts(model.tokenizer, [p for p, _ in pairs], [n for _, n in pairs])
        ex = extract(model, tp, cfg.method, cfg.read, cfg.batch_size, progress)
        extractions[lang] = ex
        per_lang[lang] = _as_set(model, ex, kind, (lang,), cfg.normalisation)
    if cfg.pooled and cfg.method == "mean_diff":
        pooled = pool(list(extractions.values()))
        per_lang["pooled"] = _as_set(model, pooled, kind, tuple(langs), cfg.normalisation)
    return per_lang


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


def select_en(model: Model, bench: Benchmarks, lang: str, v_en: VectorSet, progress: bool = True) -> tuple[int, dict]:
    """EN layer on Dev2 Global-MMLU (γ fixed at ``en_gamma``); one compiled sweep over candidate layers."""
    cfg = bench.cfg
    default, _ = cfg.layers_for(model.config.num_layers)
    if not cfg.select_layers:
        return default, {}
    layers = _window(default, cfg.layer_window, model.config.num_layers)
    ids, mask, option_ids, answers = gmmlu_inputs(model, bench, lang, "dev2")
    grid = layer_gamma_grid(v_en.vectors, layers, [cfg.en_gamma])
    logp = run_grid(model, ids, mask, grid, option_logprob_fn(option_ids), chunk_size=cfg.chunk_size, progress=progress)
    acc = (logp.argmax(-1) == answers[None]).mean(-1) * 100
    scores = {f"layer={lab['layer']}": float(a) for lab, a in zip(grid.labels, acc)}
    return int(grid.labels[int(np.argmax(acc))]["layer"]), {"en_dev2_gmmlu": scores}


def select_loc(
    model: Model,
    bench: Benchmarks,
    lang: str,
    v_en: VectorSet | None,
    en_layer: int,
    v_loc: VectorSet,
    progress: bool = True,
) -> tuple[int, float, dict]:
    """LOC layer and γ maximising Dev2 BLEnD accuracy (with EN applied when given); ties → smaller γ."""
    cfg = bench.cfg
    _, default = cfg.layers_for(model.config.num_layers)
    layers = _window(default, cfg.layer_window, model.config.num_layers) if cfg.select_layers else [default]
    scores, best = {}, None
    for layer, gamma in itertools.product(layers, cfg.loc_gammas):
        parts = [(v_loc.vectors, layer, gamma)]
        if v_en is not None:
            parts.append((v_en.vectors, en_layer, cfg.en_gamma))
        acc = blend_accuracy(model, bench, lang, "dev2", combined_steering(model.config, parts), progress=False)
        scores[f"layer={layer},gamma={gamma}"] = acc
        if best is None or acc > best[0] + 1e-9:
            best = (acc, layer, gamma)
        if progress:
            print(f"    LOC {lang} layer {layer} γ={gamma}: Dev2 BLEnD {acc:.1f}", flush=True)
    return best[1], float(best[2]), {"loc_dev2_blend": scores}


def plan_surgical(
    model: Model, bench: Benchmarks, lang: str, v_en: VectorSet, v_loc: VectorSet, progress: bool = True
) -> SurgicalPlan:
    en_layer, en_scores = select_en(model, bench, lang, v_en, progress)
    loc_layer, loc_gamma, loc_scores = select_loc(model, bench, lang, v_en, en_layer, v_loc, progress)
    return SurgicalPlan(lang, en_layer, bench.cfg.en_gamma, loc_layer, loc_gamma, {**en_scores, **loc_scores})
