"""The transfer–localization plane figure, written as PNG and SVG.

Each plotting function takes already-computed numbers (see :mod:`jaxsteer.study.metrics`), writes both
formats with the package's one figure writer (:func:`jaxsteer.results.write_figure`: atomic, no pyplot)
and returns the paths.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

from jaxsteer.errors import DataError
from jaxsteer.results import new_figure, write_figure


def _point(p: Any) -> tuple[str, float, float, float, float]:
    """(label, x, y, x_err, y_err) from a PlanePoint-like object, a mapping, or a tuple."""
    if isinstance(p, Mapping):
        label = p.get("method", p.get("label", ""))
        vals = (p.get("dx", p.get("x")), p.get("dy", p.get("y")), p.get("dx_err", 0.0), p.get("dy_err", 0.0))
    elif isinstance(p, Sequence) and not isinstance(p, str):
        label, *rest = p
        vals = (*rest, 0.0, 0.0)[:4] if len(rest) >= 2 else (None, None, 0.0, 0.0)
    else:
        label = getattr(p, "method", getattr(p, "label", ""))
        vals = (
            getattr(p, "dx", None),
            getattr(p, "dy", None),
            getattr(p, "dx_err", 0.0),
            getattr(p, "dy_err", 0.0),
        )
    if vals[0] is None or vals[1] is None:
        raise DataError(f"plane point {p!r} lacks x/y (expected method, dx, dy[, dx_err, dy_err])")
    x, y, xe, ye = (float(v or 0.0) for v in vals)
    return str(label), x, y, xe, ye


def label_positions(
    points: list[tuple[str, float, float]], xlim: float, ylim: float, *, char_w: float = 0.017, line_h: float = 0.05
) -> list[tuple[float, float]]:
    """Data coordinates (left end, centre line) for each point's label on a ``[-xlim, xlim] × [-ylim, ylim]``
    plane such that no two labels overlap: the first free place among right of the point, left of it, then
    half a line further up or down (nearest first). Top points are placed first. ``char_w``/``line_h`` are a
    character's width and a line's height as fractions of the axis spans (fontsize 9, 6 × 5 inch figure)."""
    cw, lh, gap = 2 * xlim * char_w, 2 * ylim * line_h, 0.015 * 2 * xlim
    placed: list[tuple[float, float, float]] = []
    out: list[tuple[float, float]] = [(0.0, 0.0)] * len(points)
    shifts = [0.0] + [s * k * lh / 2 for k in range(1, 41) for s in (1, -1)]
    for i in sorted(range(len(points)), key=lambda k: (-points[k][2], points[k][1])):
        label, x, y = points[i]
        width = len(label) * cw
        for shift in shifts:
            ly = y + 0.03 * ylim + shift
            free = [x0 for x0 in (x + gap, x - gap - width)
                    if not any(x0 < b1 and b0 < x0 + width and abs(ly - by) < lh for b0, b1, by in placed)]  # fmt: skip
            if free:
                break
        x0 = free[0] if free else x + gap
        placed.append((x0, x0 + width, ly))
        out[i] = (x0, ly)
    return out


def plot_plane(
    points: Iterable[Any],
    out_path_without_ext: str | PathLike,
    title: str = "Transfer–localization plane",
    *,
    xlabel: str = "ΔGMMLU (points)",
    ylabel: str = "ΔBLEnD (points)",
) -> tuple[Path, Path]:
    """Scatter one labelled point per method on the ΔGMMLU × ΔBLEnD plane; write ``.png`` and ``.svg``.

    Quadrant lines are drawn at x = 0 and y = 0 and the desirable quadrant (x > 0, y ≥ 0) is shaded;
    error bars are drawn for points with a non-zero ``dx_err``/``dy_err``. ``points`` are
    :class:`~jaxsteer.study.metrics.PlanePoint` objects, mappings with ``method, dx, dy[, dx_err, dy_err]``
    or tuples ``(method, dx, dy[, dx_err, dy_err])``. Returns (png path, svg path).
    """
    pts = [_point(p) for p in points]
    if not pts:
        raise DataError("plot_plane needs at least one point")
    from matplotlib import colormaps
    from matplotlib.patches import Rectangle

    xs = [abs(x) + xe for _, x, _, xe, _ in pts]
    ys = [abs(y) + ye for _, _, y, _, ye in pts]
    xlim, ylim = max(max(xs) * 1.25, 1.0), max(max(ys) * 1.25, 1.0)
    fig = new_figure((6.0, 5.0), layout=None)
    ax = fig.subplots()
    ax.add_patch(
        Rectangle(
            (0, 0),
            xlim,
            ylim,
            color="tab:green",
            alpha=0.12,
            lw=0,
            zorder=0,
            label="desirable (Δx > 0, Δy ≥ 0)",
        )
    )
    ax.axhline(0.0, color="0.3", lw=0.9, zorder=1)
    ax.axvline(0.0, color="0.3", lw=0.9, zorder=1)
    cmap = colormaps["tab10"]
    labels_dy = 0.03 * ylim
    labels = label_positions([(p[0], p[1], p[2]) for p in pts], xlim, ylim)
    for i, (label, x, y, xe, ye) in enumerate(pts):
        color = cmap(i % 10)
        if xe or ye:
            ax.errorbar(
                x,
                y,
                xerr=xe or None,
                yerr=ye or None,
                fmt="none",
                ecolor=color,
                elinewidth=1,
                capsize=3,
                zorder=2,
            )
        ax.scatter([x], [y], color=color, s=40, zorder=3, edgecolors="black", linewidths=0.5)
        lx, ly = labels[i]
        moved = abs(ly - (y + labels_dy)) > 1e-9
        arrow = {"arrowstyle": "-", "color": "0.6", "lw": 0.6} if moved else None
        ax.annotate(label, (x, y), xytext=(lx, ly), textcoords="data", fontsize=9, zorder=4,
                    va="center", arrowprops=arrow)  # fmt: skip
    ax.set_xlim(-xlim, xlim)
    ax.set_ylim(-ylim, ylim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8, frameon=False)
    ax.grid(True, lw=0.3, alpha=0.5)
    png, svg = write_figure(fig, out_path_without_ext, tight=True)
    return Path(png), Path(svg)
