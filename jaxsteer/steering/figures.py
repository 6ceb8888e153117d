"""Figures of the steering analysis: S_PER vs layer, γ × layer heatmaps, PCA panels, vector norms.

Each function takes numbers already computed (:mod:`jaxsteer.steering.analysis`, a sweep table), writes
``<out_base>.png`` and ``<out_base>.svg`` with the package's one figure writer
(:func:`jaxsteer.results.write_figure`: atomic, no pyplot) and returns both paths.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from jaxsteer.errors import InputError
from jaxsteer.results import new_figure, write_figure


def _series(values: Mapping[str, Any] | Any, what: str) -> dict[str, np.ndarray]:
    items = values.items() if isinstance(values, Mapping) else [("", values)]
    out = {str(k): np.asarray(v, dtype=np.float64).reshape(-1) for k, v in items}
    if not out or any(v.size == 0 for v in out.values()):
        raise InputError(f"nothing to plot: {what} is empty")
    return out


def plot_sper(
    angles_by_layer: Mapping[str, Any],
    out_base: str | os.PathLike,
    title: str = "S_PER(EN, LOC) by layer",
    mark_layers: Sequence[int] = (),
) -> tuple[str, str]:
    """S_PER (degrees, [0, 90]) against layer, one line per label, with the 90° (perpendicular) reference.

    ``mark_layers`` draws vertical guides, e.g. the SUR layers (20 and 28 for 12B).
    """
    series = _series(angles_by_layer, "angles_by_layer")
    fig = new_figure((6.4, 3.6))
    ax = fig.subplots()
    for label, angles in series.items():
        ax.plot(np.arange(angles.size), angles, marker="o", markersize=3, label=label or None)
    ax.axhline(90.0, color="grey", linestyle="--", linewidth=1, label="90° (perpendicular)")
    for layer in mark_layers:
        ax.axvline(layer, color="black", linestyle=":", linewidth=0.8)
    ax.set(xlabel="layer (output of block l)", ylabel="S_PER = arccos|cos| (degrees)", title=title, ylim=(0, 95))
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    return write_figure(fig, out_base)


def plot_norms(
    norms_by_label: Mapping[str, Any] | Any, out_base: str | os.PathLike, log: bool = False
) -> tuple[str, str]:
    """Per-layer vector norms (e.g. EN, LOC and the mean residual norm), optionally on a log axis."""
    series = _series(norms_by_label, "norms_by_label")
    fig = new_figure((6.4, 3.6))
    ax = fig.subplots()
    for label, norms in series.items():
        ax.plot(np.arange(norms.size), norms, marker="o", markersize=3, label=label or None)
    ax.set(xlabel="layer (output of block l)", ylabel="‖v‖", title="steering-vector norm by layer")
    if log:
        ax.set_yscale("log")
    if any(series):
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return write_figure(fig, out_base)


def _row(row: Any, metric: str) -> tuple[int, float, float]:
    if isinstance(row, Mapping):
        return int(row["layer"]), float(row["gamma"]), float(row[metric])
    layer, gamma, value = row[:3]
    return int(layer), float(gamma), float(value)


def plot_sweep_heatmap(
    rows: Iterable[Any],
    out_base: str | os.PathLike,
    baseline: float | None = None,
    metric: str = "metric",
    title: str | None = None,
    best: tuple[int, float] | None = None,
) -> tuple[str, str]:
    """Heatmap of a sweep table: layers down, γ across; rows are ``{layer, gamma, <metric>}`` or tuples.

    With ``baseline`` (the unsteered score) cells show ``metric − baseline`` on a diverging scale centred
    at 0, so helpful and harmful settings read at a glance. The ``best`` (layer, γ) cell is outlined
    (default: the first highest cell; ``jaxsteer sweep`` passes the winner of its tie rule).
    """
    try:
        table = [_row(r, metric) for r in rows]
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise InputError(f"sweep rows need layer, gamma and {metric!r}: {e}") from None
    if not table:
        raise InputError("nothing to plot: the sweep table is empty")
    layers = sorted({t[0] for t in table})
    gammas = sorted({t[1] for t in table})
    grid = np.full((len(layers), len(gammas)), np.nan)
    for layer, gamma, value in table:
        grid[layers.index(layer), gammas.index(gamma)] = value
    shown = grid - baseline if baseline is not None else grid
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.patches import Rectangle

    fig = new_figure((1.0 + 0.6 * len(gammas), 1.0 + 0.35 * len(layers)))
    ax = fig.subplots()
    if baseline is not None:
        span = float(np.nanmax(np.abs(shown))) or 1.0
        image = ax.imshow(shown, cmap="RdBu", norm=TwoSlopeNorm(0.0, -span, span), aspect="auto")
    else:
        image = ax.imshow(shown, cmap="viridis", aspect="auto")
    fig.colorbar(image, ax=ax, label=f"{metric} − baseline" if baseline is not None else metric)
    ax.set_xticks(range(len(gammas)), [f"{g:g}" for g in gammas])
    ax.set_yticks(range(len(layers)), [str(x) for x in layers])
    ax.set(xlabel="γ", ylabel="layer", title=title or f"{metric} by layer and γ")
    if grid.size <= 400:
        for (i, j), value in np.ndenumerate(shown):
            if not math.isnan(value):
                level = float(image.norm(value))  # white text on the dark ends of the colour map
                dark = abs(level - 0.5) > 0.35 if baseline is not None else level < 0.45
                text = f"{round(value, 6) + 0.0:.3g}"  # + 0.0: no "-0" or "-5.55e-17" for a zero difference
                ax.text(j, i, text, ha="center", va="center", fontsize=6, color="white" if dark else "black")
    if best is not None and best[0] in layers and float(best[1]) in gammas:
        i, j = layers.index(best[0]), gammas.index(float(best[1]))
    elif np.isfinite(grid).any():
        i, j = np.unravel_index(np.nanargmax(grid), grid.shape)
    else:
        i = None
    if i is not None:
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=2))
    return write_figure(fig, out_base)


def plot_pca_panels(
    pca: Any,
    layers: Sequence[int],
    out_base: str | os.PathLike,
    title: str | None = None,
) -> tuple[str, str]:
    """One scatter panel per chosen layer (first two components, coloured by group) from a ``LayerPCA``.

    Each panel's title carries the convergence score, so the figure reads as the paper's convergence
    figure: groups merging in the middle layers show as overlapping clouds and a score near 1.
    """
    layers = list(layers)
    if not layers:
        raise InputError("no layers chosen for the PCA panels")
    for layer in layers:
        if not 0 <= int(layer) < pca.num_layers:
            raise InputError(f"layer {layer} out of range for a PCA of {pca.num_layers} layers")
    cols = min(4, len(layers))
    nrows = math.ceil(len(layers) / cols)
    fig = new_figure((3.2 * cols, 3.0 * nrows))
    axes = fig.subplots(nrows, cols, squeeze=False)
    for ax in axes.flat[len(layers) :]:
        ax.set_visible(False)
    for ax, layer in zip(axes.flat, layers):
        proj = pca.projections[layer]
        y = proj[:, 1] if proj.shape[1] > 1 else np.zeros(len(proj))
        for g, name in enumerate(pca.group_names):
            sel = pca.groups == g
            ax.scatter(proj[sel, 0], y[sel], s=8, alpha=0.7, label=name)
        ev = pca.explained[layer]
        ax.set_title(f"layer {layer} · conv {pca.convergence[layer]:.2f}", fontsize=9)
        ax.set_xlabel(f"PC1 ({ev[0]:.0%})", fontsize=8)
        ax.set_ylabel(f"PC2 ({ev[1]:.0%})" if len(ev) > 1 else "", fontsize=8)
        ax.tick_params(labelsize=7)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(8, len(labels)), fontsize=8)
    if title:
        fig.suptitle(title)
    return write_figure(fig, out_base)
