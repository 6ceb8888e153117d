"""How steering directions relate across depth, and how languages converge: numbers only, no plotting.

The paper's claims rest on three measurements, each implemented once here so the CLI, the notebooks and
the figures agree on definitions:

* S_PER: the angle between v_EN and v_LOC at each layer, ``arccos(|cos|)`` in degrees. The absolute value
  makes it sign-invariant (a vector and its negation span the same steering axis), so it lies in
  [0°, 90°]; 90° = perpendicular. The raw cosine is reported too (``cosine_by_layer``).
* Layer-wise PCA of last-token states of the same questions in several languages, with a per-layer
  convergence score (between-language centroid distance over within-language spread).
* ``random_like``: random directions with the same per-layer norms — the control any steering effect
  must beat, since a large enough push in any direction changes outputs.

Everything is float64 numpy on host: these are [L, D] or [L, N, D] arrays of at most a few hundred MB.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxsteer.errors import InputError


def _as_layers(x: Any, name: str) -> np.ndarray:
    """``[L, D]`` float64 from an array or anything with ``.vectors`` (a ``VectorSet``)."""
    arr = np.asarray(getattr(x, "vectors", x), dtype=np.float64)
    if arr.ndim != 2:
        raise InputError(f"{name} must be [layers, width], got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        layer = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
        raise InputError(f"{name} contains NaN or inf at layer {layer}")
    return arr


def norms_by_layer(v: Any) -> np.ndarray:
    """Euclidean norm of each layer's vector, ``[L]``."""
    return np.linalg.norm(_as_layers(v, "v"), axis=1)


NOISE_FLOOR = 1e-5  # relative to the longest vector of a set: shorter is rounding noise, without a direction


def cosine_by_layer(a: Any, b: Any, strict: bool = False) -> np.ndarray:
    """Cosine similarity per layer, ``[L]``.

    A layer where either vector is zero has no direction: its cosine is NaN (so plots show a gap and
    means must use ``nanmean``), or, with ``strict=True``, an ``InputError`` naming the layer. "Zero" includes
    rounding noise: a vector shorter than :data:`NOISE_FLOOR` × its set's longest (a mean difference of pairs
    that look the same to that layer, e.g. beyond a short sliding window, is ~1e-6 of the others, and its
    angle would change with the device mesh's summation order).
    """
    a, b = _as_layers(a, "a"), _as_layers(b, "b")
    if a.shape != b.shape:
        raise InputError(f"vector sets have shapes {a.shape} and {b.shape}; they must match")
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    zero = (na <= NOISE_FLOOR * na.max(initial=0.0)) | (nb <= NOISE_FLOOR * nb.max(initial=0.0))
    if strict and zero.any():
        layer = int(np.flatnonzero(zero)[0])
        which = "a" if na[layer] <= NOISE_FLOOR * na.max() else "b"
        raise InputError(f"{which} has a zero vector at layer {layer}: its angle is undefined")
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.einsum("ld,ld->l", a, b) / (na * nb)
    cos = np.clip(cos, -1.0, 1.0)
    cos[zero] = np.nan
    return cos


def sper_degrees(a: Any, b: Any, strict: bool = False) -> np.ndarray:
    """S_PER per layer: ``degrees(arccos(|cos(a_l, b_l)|))`` in [0, 90]; NaN where a vector is zero."""
    return np.degrees(np.arccos(np.abs(cosine_by_layer(a, b, strict=strict))))


def random_like(v: Any, seed: int = 0) -> np.ndarray:
    """Random Gaussian directions with exactly ``v``'s per-layer norms (zero rows stay zero), float32."""
    arr = _as_layers(v, "v")
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(arr.shape)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    return (noise * np.linalg.norm(arr, axis=1, keepdims=True)).astype(np.float32)


@dataclasses.dataclass(frozen=True, eq=False)
class LayerPCA:
    """Per-layer PCA of ``[L, N, D]`` states and how separable the groups are at each layer.

    Attributes:
      projections: ``[L, N, k]`` coordinates of each row on the layer's top ``k`` components.
      explained: ``[L, k]`` explained-variance ratio of those components.
      separation: ``[L]`` mean pairwise distance between group centroids divided by the mean
        within-group RMS distance to the centroid, in the full ``D``-dim space (not the 2-D view).
        Scale-free, so layers with different residual norms compare; 0 = centroids coincide.
      convergence: ``[L]`` ``1 / (1 + separation)`` in (0, 1]: 1 = the groups (languages) are not
        separated, near 0 = they form distinct clusters.
      groups: ``[N]`` group index of each row into ``group_names``.
    """

    projections: np.ndarray
    explained: np.ndarray
    separation: np.ndarray
    convergence: np.ndarray
    groups: np.ndarray
    group_names: tuple[str, ...]

    @property
    def num_layers(self) -> int:
        return int(self.projections.shape[0])


def _pca(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` projections and explained-variance ratios; signs fixed so each component's largest
    loading is positive (SVD signs are arbitrary, and flipping panels would mislead the eye)."""
    centred = x - x.mean(axis=0, keepdims=True)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    signs = np.sign(vt[np.arange(len(vt)), np.argmax(np.abs(vt), axis=1)])
    signs[signs == 0] = 1.0
    u, vt = u * signs, vt * signs[:, None]
    total = float(np.sum(s**2))
    ratio = (s**2 / total) if total > 0 else np.zeros_like(s)
    proj = np.zeros((x.shape[0], k))
    m = min(k, len(s))
    proj[:, :m] = u[:, :m] * s[:m]
    explained = np.zeros(k)
    explained[:m] = ratio[:m]
    return proj, explained


def _separation(x: np.ndarray, groups: np.ndarray, n_groups: int) -> float:
    centroids = np.stack([x[groups == g].mean(axis=0) for g in range(n_groups)])
    within = np.mean([np.sqrt(np.mean(np.sum((x[groups == g] - centroids[g]) ** 2, axis=1))) for g in range(n_groups)])
    diff = centroids[:, None, :] - centroids[None, :, :]
    dist = np.sqrt(np.sum(diff**2, axis=-1))
    between = dist[np.triu_indices(n_groups, 1)].mean()
    if within == 0:
        return 0.0 if between == 0 else float("inf")
    return float(between / within)


def layerwise_pca(hidden: Any, groups: Sequence[Any], n_components: int = 2) -> LayerPCA:
    """PCA of each layer's ``[N, D]`` rows plus a convergence score per layer.

    ``hidden`` is ``[L, N, D]`` (e.g. last-token block outputs of the same questions asked in several
    languages); ``groups`` labels each of the N rows (e.g. its language). For Global-MMLU's universal
    questions the paper expects convergence to peak in the middle layers; BLEnD's cultural questions
    should stay more separable.
    """
    h = np.asarray(hidden, dtype=np.float64)
    if h.ndim != 3:
        raise InputError(f"hidden must be [layers, rows, width], got shape {h.shape}")
    labels = list(groups)
    if len(labels) != h.shape[1]:
        raise InputError(f"{len(labels)} group labels for {h.shape[1]} rows")
    if not np.all(np.isfinite(h)):
        raise InputError("hidden states contain NaN or inf")
    if n_components < 1:
        raise InputError(f"n_components={n_components} must be at least 1")
    names = tuple(dict.fromkeys(str(g) for g in labels))
    if len(names) < 2:
        raise InputError(f"need at least two groups to measure convergence, got {list(names)}")
    index = {n: i for i, n in enumerate(names)}
    gidx = np.array([index[str(g)] for g in labels])
    projections, explained, separation = [], [], []
    for layer in range(h.shape[0]):
        proj, ratio = _pca(h[layer], n_components)
        projections.append(proj)
        explained.append(ratio)
        separation.append(_separation(h[layer], gidx, len(names)))
    sep = np.asarray(separation)
    return LayerPCA(
        projections=np.stack(projections),
        explained=np.stack(explained),
        separation=sep,
        convergence=1.0 / (1.0 + sep),
        groups=gidx,
        group_names=names,
    )
