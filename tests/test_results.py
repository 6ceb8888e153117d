"""Result files: the one figure writer (PNG + SVG, atomic, no pyplot) is the only place that saves a figure."""

from __future__ import annotations

import pathlib

import jaxsteer
from jaxsteer.results import new_figure, write_figure

PACKAGE = pathlib.Path(jaxsteer.__file__).parent
FORBIDDEN = (".savefig(", "import matplotlib.pyplot", "matplotlib.use(")


def test_write_figure_writes_png_and_svg_atomically(tmp_path):
    fig = new_figure((3, 2))
    fig.subplots().plot([0, 1], [1, 0])
    png, svg = write_figure(fig, tmp_path / "sub" / "line.png")  # a suffix is dropped; the folder is made
    assert (png, svg) == (str(tmp_path / "sub" / "line.png"), str(tmp_path / "sub" / "line.svg"))
    assert pathlib.Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "<svg" in pathlib.Path(svg).read_text()
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["line.png", "line.svg"]  # no temporaries


def test_no_module_saves_figures_or_touches_pyplot_but_the_writer():
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.name != "results.py" and any(s in path.read_text(encoding="utf-8") for s in FORBIDDEN)
    ]
    assert offenders == []
