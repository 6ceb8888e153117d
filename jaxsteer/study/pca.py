"""The convergence figure: layer-wise PCA of the same kind of query asked in several languages.

Universal questions (Global-MMLU, the same items in every language) are expected to converge across
languages in the middle layers; cultural questions (BLEnD, decontextualised, in each local language)
to stay language-separable deeper. One all-layer pass per batch gives the last-token activations of
every layer; ``analysis.layerwise_pca`` scores the separation of languages per layer.
"""

from __future__ import annotations

import os

import numpy as np

from jaxsteer.data import prompts
from jaxsteer.model.model import Model
from jaxsteer.steering import analysis, figures
from jaxsteer.steering.extract import all_activations
from jaxsteer.study.experiment import Benchmarks
from jaxsteer.tokens import encode_batch


def queries_by_language(bench: Benchmarks, which: str, part: str = "dev1") -> tuple[list[str], list[str]]:
    texts, groups = [], []
    langs = ("en", *bench.cfg.languages) if which == "gmmlu" else bench.cfg.languages
    for lang in langs:
        if which == "gmmlu":
            batch = [prompts.mc_text(q) for q in bench.gmmlu(lang, part)]
        else:
            batch = [bench.blend_prompt(it.decontextualised, lang) for it in bench.blend(lang, part)]
        texts += batch
        groups += [lang] * len(batch)
    return texts, groups


def language_pca(model: Model, bench: Benchmarks) -> dict[str, analysis.LayerPCA]:
    """Per benchmark (``"gmmlu"``, ``"blend"``): the layer-wise PCA of its queries across languages. Computes
    only: every input is read and every pass run before anything is written (:func:`write_language_pca`)."""
    out = {}
    for which in ("gmmlu", "blend"):
        texts, groups = queries_by_language(bench, which)
        ids, mask = encode_batch(model.tokenizer, texts)
        out[which] = analysis.layerwise_pca(all_activations(model, ids, mask, bench.cfg.batch_size, "last"), groups)
    return out


def write_language_pca(results: dict[str, analysis.LayerPCA], out_dir: str, panels: int = 4) -> list[dict]:
    """PCA panels at ``panels`` evenly spaced layers per benchmark (``pca_{which}.png/svg``); returns the rows
    of ``pca_convergence.csv`` (a separation and a convergence score per benchmark and layer)."""
    rows = []
    for which, pca in results.items():
        num_layers = len(pca.separation)
        shown = sorted({int(x) for x in np.linspace(0, num_layers - 1, panels)})
        figures.plot_pca_panels(
            pca, shown, os.path.join(out_dir, f"pca_{which}"), title=f"{which}: last token by layer"
        )
        rows += [
            {
                "benchmark": which,
                "layer": layer,
                "separation": float(pca.separation[layer]),
                "convergence": float(pca.convergence[layer]),
            }
            for layer in range(num_layers)
        ]
    return rows
