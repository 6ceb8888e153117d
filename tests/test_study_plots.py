"""The transfer–localization plane figure."""

from pathlib import Path

import numpy as np
import pytest

from jaxsteer.errors import DataError
from jaxsteer.study.metrics import PlanePoint
from jaxsteer.study.plots import plot_plane


def test_plot_plane_writes_png_and_svg(tmp_path):
    points = [
        PlanePoint("MIST", 2.1, -3.4),
        PlanePoint("SUR", 1.2, 0.8, dx_err=0.3, dy_err=0.5),
        {"method": "LOC-steer", "dx": -0.2, "dy": 1.22},
        ("EN-steer", 0.9, -0.45),
    ]
    png, svg = plot_plane(points, tmp_path / "figs" / "plane", title="Gemma-3 test")
    assert png == tmp_path / "figs" / "plane.png" and svg == tmp_path / "figs" / "plane.svg"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
    text = svg.read_text(encoding="utf-8")
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == [
        "plane.png",
        "plane.svg",
    ]  # no temporaries


def test_plot_plane_rejects_bad_points(tmp_path):
    with pytest.raises(DataError, match="at least one point"):
        plot_plane([], tmp_path / "x")
    with pytest.raises(DataError, match="lacks x/y"):
        plot_plane([{"method": "m"}], tmp_path / "x")


def test_labels_of_crowded_points_do_not_overlap():
    from jaxsteer.study.plots import label_positions

    xlim, ylim, cw, lh = 10.0, 10.0, 0.017, 0.05
    points = [("MIDALIGN+SUR", -3.0, -16.1), ("base+random", -2.9, -14.6), ("MIDALIGN+EN", -2.7, -21.2),
              ("MIDALIGN+random", -4.6, -20.6), ("LM-only", -1.9, -4.6), ("MIDALIGN+LOC", -3.1, -3.3)]  # fmt: skip
    spots = label_positions(points, xlim, ylim, char_w=cw, line_h=lh)
    boxes = [(x0, x0 + len(p[0]) * 2 * xlim * cw, y) for p, (x0, y) in zip(points, spots)]
    for i, (a0, a1, ay) in enumerate(boxes):
        for b0, b1, by in boxes[i + 1 :]:
            assert not (a0 < b1 and b0 < a1 and abs(ay - by) < 2 * ylim * lh), (boxes[i], (b0, b1, by))
    # a lone point keeps the default place: just right of and above it
    ((x0, y0),) = label_positions([("base", 1.0, 2.0)], xlim, ylim)
    assert x0 > 1.0 and y0 == 2.0 + 0.03 * ylim


def test_names_are_literal_text_svgs_repeat_and_log_ticks_keep_their_mathtext(tmp_path, monkeypatch):
    """A method named ``EN$\\alpha$x$\\q$`` crashed the plane after the Δ tables were written; two identical
    runs wrote different SVGs (date, random clip ids); log axes still label ticks 10^k in mathtext."""
    from jaxsteer import results
    from jaxsteer.steering.figures import plot_norms

    points = [PlanePoint("EN$\\alpha$x$\\q$", 1.0, -2.0), PlanePoint("a|b", -1.0, 1.0)]
    first = plot_plane(points, tmp_path / "one" / "plane")
    second = plot_plane(points, tmp_path / "two" / "plane")
    assert [Path(p).read_bytes() for p in first] == [Path(p).read_bytes() for p in second]
    seen = []
    real = results.write_figure

    def spy(fig, out_base, **kw):
        paths = real(fig, out_base, **kw)
        ticks = [t for ax in fig.axes for t in ax.get_yticklabels()]
        ax = fig.axes[0]
        named = [ax.title, ax.xaxis.label, ax.yaxis.label, *ax.get_legend().get_texts()]
        seen.append((ticks, named))
        return paths

    monkeypatch.setattr("jaxsteer.steering.figures.write_figure", spy)
    plot_norms({"EN": np.array([1.0, 10.0, 100.0])}, tmp_path / "norms", log=True)
    ((ticks, texts),) = seen
    assert ticks and all(t.get_parse_math() for t in ticks) and not any(t.get_parse_math() for t in texts)
