"""Result files → the comparison: Δ tables (CSV, Markdown), ``plane.csv`` and the transfer–localization plane.

The one place that turns per-method results into the comparison, shared by ``jaxsteer run``, ``jaxsteer
plane`` and the demo. It needs no model, so ``jaxsteer plane`` never imports JAX.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from jaxsteer.results import atomic_write, write_csv
from jaxsteer.study import metrics
from jaxsteer.study.plots import plot_plane

PLANE_TITLE = "Transfer–localization plane (Δ vs base)"
BENCHMARKS = {"gmmlu": "Global-MMLU (transfer)", "blend": "BLEnD (localization)"}


PLANE_FILES: tuple[str, ...] = (
    "delta_gmmlu.csv", "delta_gmmlu.md", "delta_blend.csv", "delta_blend.md", "plane.csv", "plane.png", "plane.svg",
)  # fmt: skip
"""What :func:`write_comparison` writes into its folder."""


def write_comparison(out_dir: str, runs: dict[str, dict], base: str, langs=None, title: str = PLANE_TITLE) -> dict:
    """Δ tables (CSV, Markdown) for both benchmarks, ``plane.csv`` and the plane (PNG, SVG).

    ``runs[bench][method]`` is a result or a list of results over seeds (mean ± s.d. then).
    """
    tables = {bench: metrics.delta_table(runs[bench], base=base, langs=langs) for bench in BENCHMARKS}
    for bench, table in tables.items():
        atomic_write(os.path.join(out_dir, f"delta_{bench}.csv"), table.to_csv())
        atomic_write(os.path.join(out_dir, f"delta_{bench}.md"), table.to_markdown())
    points = metrics.plane_points(tables["gmmlu"], tables["blend"])
    png, svg = plot_plane(points, os.path.join(out_dir, "plane"), title=title)
    rows = [
        {
            "method": p.method,
            "delta_gmmlu": p.dx,
            "sd_gmmlu": p.dx_err,
            "delta_blend": p.dy,
            "sd_blend": p.dy_err,
            "quadrant": p.quadrant,
        }
        for p in points
    ]
    write_csv(os.path.join(out_dir, "plane.csv"), rows)
    return {"tables": tables, "points": points, "plane": [png, svg]}


def format_tables(tables: Mapping[str, metrics.DeltaTable], base: str = "base") -> str:
    """Both Δ tables as Markdown, each under a line naming its benchmark (printed by run, plane and demo)."""
    return "\n\n".join(
        f"Δ {BENCHMARKS[bench]}, points vs {base}:\n{tables[bench].to_markdown().rstrip()}" for bench in BENCHMARKS
    )
