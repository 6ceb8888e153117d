"""Steering analysis (S_PER, norms, layer-wise PCA convergence, random controls) and its figures."""

from __future__ import annotations

import os

import numpy as np
import pytest

from jaxsteer.errors import InputError
from jaxsteer.steering import figures
from jaxsteer.steering.analysis import cosine_by_layer, layerwise_pca, norms_by_layer, random_like, sper_degrees

ANGLES = np.array([0.0, 30.0, 60.0, 90.0, 150.0])


def angle_pairs(dim: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Layer l holds a and b at ANGLES[l] in a random plane, with unrelated norms."""
    rng = np.random.default_rng(seed)
    a, b = [], []
    for theta in np.radians(ANGLES):
        q, _ = np.linalg.qr(rng.standard_normal((dim, 2)))
        e1, e2 = q[:, 0], q[:, 1]
        a.append(3.0 * e1)
        b.append(0.5 * (np.cos(theta) * e1 + np.sin(theta) * e2))
    return np.array(a, np.float32), np.array(b, np.float32)


def test_sper_and_cosine_on_known_angles():
    a, b = angle_pairs()
    np.testing.assert_allclose(sper_degrees(a, b), [0.0, 30.0, 60.0, 90.0, 30.0], atol=1e-3)
    np.testing.assert_allclose(cosine_by_layer(a, b), np.cos(np.radians(ANGLES)), atol=1e-6)
    np.testing.assert_allclose(sper_degrees(a, -b), sper_degrees(a, b), atol=1e-9)  # sign-invariant
    np.testing.assert_allclose(norms_by_layer(a), 3.0, rtol=1e-6)


def test_zero_vectors_give_nan_or_strict_error():
    a, b = angle_pairs()
    b[2] = 0.0
    s = sper_degrees(a, b)
    assert np.isnan(s[2]) and np.isfinite(np.delete(s, 2)).all()
    with pytest.raises(InputError) as e:
        sper_degrees(a, b, strict=True)
    assert str(e.value) == "b has a zero vector at layer 2: its angle is undefined"
    with pytest.raises(InputError, match="shapes"):
        cosine_by_layer(a, b[:3])
    # rounding noise is no direction either: a LOC vector of norm ~1e-6 beside others of ~1 (its angle moved
    # from 67° to 77° with the device mesh); a short but real vector (1e-3 of the longest) keeps its angle
    noisy = b.copy()
    noisy[2] = 1e-6 * b[1]
    assert np.isnan(sper_degrees(a, noisy)[2])
    noisy[2] = 1e-3 * a[2]
    assert sper_degrees(a, noisy)[2] == pytest.approx(0.0, abs=1e-3)
    a[1, 0] = np.nan
    with pytest.raises(InputError, match="NaN or inf at layer 1"):
        sper_degrees(a, b)


def test_random_like_keeps_norms():
    rng = np.random.default_rng(0)
    v = rng.standard_normal((6, 64)) * np.arange(1, 7)[:, None]
    v[4] = 0.0
    r = random_like(v, seed=1)
    assert r.dtype == np.float32 and r.shape == v.shape
    np.testing.assert_allclose(norms_by_layer(r), norms_by_layer(v), rtol=1e-6)
    assert not r[4].any()
    np.testing.assert_array_equal(r, random_like(v, seed=1))
    assert not np.allclose(r, random_like(v, seed=2))
    assert np.nanmax(np.abs(cosine_by_layer(r, v))) < 0.6  # a different direction, not a copy


def synthetic_hidden(seed: int = 0) -> tuple[np.ndarray, list[str], list[float]]:
    """3 languages × 40 questions; language offsets of different sizes per layer (layer 3 rescaled ×50)."""
    rng = np.random.default_rng(seed)
    langs, n_q, dim = ["en", "ko", "zh"], 40, 24
    offsets = [8.0, 0.0, 1.5, 8.0]
    questions = rng.standard_normal((n_q, dim)) * 2.0
    directions = rng.standard_normal((len(langs), dim))
    layers = []
    for layer, off in enumerate(offsets):
        rows = [questions + off * directions[i] + 0.3 * rng.standard_normal((n_q, dim)) for i in range(len(langs))]
        layers.append(np.concatenate(rows) * (50.0 if layer == 3 else 1.0))
    groups = [lang for lang in langs for _ in range(n_q)]
    return np.stack(layers), groups, offsets


def test_layerwise_pca_orders_layers_by_convergence():
    hidden, groups, _ = synthetic_hidden()
    pca = layerwise_pca(hidden, groups)
    assert pca.projections.shape == (4, 120, 2) and pca.explained.shape == (4, 2)
    assert pca.group_names == ("en", "ko", "zh") and pca.num_layers == 4
    assert np.all(pca.explained.sum(axis=1) <= 1.0 + 1e-9)
    conv = pca.convergence
    assert conv[1] > conv[2] > conv[0]  # merged > slightly apart > separated
    assert conv[2] > conv[3]
    assert abs(conv[0] - conv[3]) < 0.05  # scale-free: ×50 residual norm, same geometry
    assert conv[1] > 0.8 and conv[0] < 0.4
    np.testing.assert_allclose(pca.convergence, 1 / (1 + pca.separation))
    with pytest.raises(InputError, match="group labels"):
        layerwise_pca(hidden, groups[:-1])
    with pytest.raises(InputError, match="two groups"):
        layerwise_pca(hidden, ["en"] * 120)


def _check_written(paths):
    png, svg = paths
    assert png.endswith(".png") and svg.endswith(".svg")
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(svg, encoding="utf-8") as f:
        assert "<svg" in f.read()
    assert os.path.getsize(png) > 1000 and os.path.getsize(svg) > 1000
    assert not [p for p in os.listdir(os.path.dirname(png)) if p.startswith(".tmp")]


def test_figures_write_png_and_svg(tmp_path):
    a, b = angle_pairs()
    _check_written(figures.plot_sper({"EN vs LOC": sper_degrees(a, b)}, tmp_path / "sper", mark_layers=[2]))
    _check_written(figures.plot_norms({"EN": norms_by_layer(a), "LOC": norms_by_layer(b)}, tmp_path / "norms.png"))
    rows = [{"layer": la, "gamma": g, "acc": 0.5 + 0.01 * la - 0.02 * (g - 2) ** 2} for la in (4, 6) for g in (0, 1, 2)]
    _check_written(figures.plot_sweep_heatmap(rows, tmp_path / "sweep", baseline=0.5, metric="acc"))
    _check_written(figures.plot_sweep_heatmap([(4, 0.0, 0.3), (4, 1.0, 0.4)], tmp_path / "sub" / "sweep2"))
    hidden, groups, _ = synthetic_hidden()
    _check_written(figures.plot_pca_panels(layerwise_pca(hidden, groups), [0, 1, 2], tmp_path / "pca"))
    with pytest.raises(InputError, match="out of range"):
        figures.plot_pca_panels(layerwise_pca(hidden, groups), [9], tmp_path / "pca2")
    with pytest.raises(InputError, match="empty"):
        figures.plot_sweep_heatmap([], tmp_path / "empty")
