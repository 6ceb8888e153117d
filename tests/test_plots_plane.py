"""The transfer–localization plane figure."""

import pytest

from jaxsteer.errors import DataError
from jaxsteer.metrics import PlanePoint
from jaxsteer.plots import plot_plane


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
