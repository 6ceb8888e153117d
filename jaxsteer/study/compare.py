"""Result files → the comparison: Δ tables (CSV, Markdown), ``plane.csv`` and the transfer–localization plane.

The one place that turns per-method results into the comparison, shared by ``jaxsteer run``, ``jaxsteer
plane`` and the demo. It needs no model, so ``jaxsteer plane`` never imports JAX.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from jaxsteer.results import atomic_write, provenance, write_csv, write_json
from jaxsteer.study import metrics
from jaxsteer.study.plots import plot_plane

PLANE_TITLE = "Transfer–localization plane (Δ vs base)"
BENCHMARKS = {"gmmlu": "Global-MMLU (transfer)", "blend": "BLEnD (localization)"}


PLANE_FILES: tuple[str, ...] = (
    "delta_gmmlu.csv", "delta_gmmlu.md", "delta_blend.csv", "delta_blend.md", "plane.csv", "plane.png", "plane.svg",
    "plane.json",
)  # fmt: skip
"""What :func:`write_comparison` writes into its folder."""


def compare(runs: dict[str, dict], base: str, langs=None) -> tuple[dict[str, metrics.DeltaTable], list]:
    """The Δ tables of both benchmarks and the plane's points, every check made (nothing written)."""
    tables = {bench: metrics.delta_table(runs[bench], base=base, langs=langs) for bench in BENCHMARKS}
    return tables, metrics.plane_points(tables["gmmlu"], tables["blend"])


def write_comparison(
    out_dir: str, runs: dict[str, dict], base: str, langs=None, title: str = PLANE_TITLE, command: str | None = None
) -> dict:
    """Δ tables (CSV, Markdown) for both benchmarks, ``plane.csv``, the plane (PNG, SVG) and ``plane.json`` (what
    was compared: the result files by method with their seeds, the base, the languages, and who wrote it).

    ``runs[bench][method]`` is a result or a list of results over seeds (mean ± s.d. then). Every check is made
    before the first file is written: a method that lacks a benchmark leaves no half-written comparison.
    """
    tables, points = compare(runs, base, langs)
    for bench, table in tables.items():
        atomic_write(os.path.join(out_dir, f"delta_{bench}.csv"), table.to_csv())
        atomic_write(os.path.join(out_dir, f"delta_{bench}.md"), table.to_markdown())
    png, svg = plot_plane(points, os.path.join(out_dir, "plane"), title=title)
    rows = [
        {
            "method": p.method,
            "delta_gmmlu": p.dx,
            # one result: no spread to report (empty), not a spread of zero — as the Δ tables say "n/a"
            "sd_gmmlu": p.dx_err if tables["gmmlu"].n_seeds[p.method] > 1 else "",
            "delta_blend": p.dy,
            "sd_blend": p.dy_err if tables["blend"].n_seeds[p.method] > 1 else "",
            "quadrant": p.quadrant,
        }
        for p in points
    ]
    write_csv(os.path.join(out_dir, "plane.csv"), rows)
    inputs = {
        bench: {
            method: [{"file": _shown(r.source, out_dir), "seed": r.seed} for r in metrics.results_of(method, value)]
            for method, value in runs[bench].items()
        }
        for bench in BENCHMARKS
    }
    record = {
        "base": base,
        "languages": list(tables["gmmlu"].langs),
        "inputs": inputs,
        "provenance": provenance(command=command, device=False),
    }
    record_path = write_json(os.path.join(out_dir, "plane.json"), record)
    return {"tables": tables, "points": points, "plane": [png, svg], "record": record_path}


def _shown(source: str, out_dir: str) -> str:
    """A result file as ``plane.json`` names it: relative inside the comparison's folder (a run's own results,
    which move with it), else its absolute path."""
    if not source:
        return source
    path, root = os.path.abspath(source), os.path.abspath(out_dir)
    return os.path.relpath(path, root) if path.startswith(root + os.sep) else path


def format_tables(tables: Mapping[str, metrics.DeltaTable], base: str = "base") -> str:
    """Both Δ tables as Markdown, each under a line naming its benchmark (printed by run, plane and demo)."""
    return "\n\n".join(
        f"Δ {BENCHMARKS[bench]}, points vs {base}:\n{tables[bench].to_markdown().rstrip()}" for bench in BENCHMARKS
    )
