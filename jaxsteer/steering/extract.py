"""Contrastive extraction of steering vectors at every layer in one forward pass per batch.

Each batch runs the decoder once and keeps, per layer, only the activation at the read position
(the last real prompt token, or the masked mean over real tokens) — ``[L, B, D]``, never
``[L, B, T, D]``. Difference-of-means vectors are accumulated as streaming sums, so memory is
``O(L·D)`` whatever the number of pairs. The PCA variants need the per-pair activations and keep
them on the host (``N × L × D`` floats: 100 pairs of a 12B model is ~74 MB).

Methods (``v[l]`` is added to block ``l``'s output):
  - ``mean_diff``: ``mean(h⁺) − mean(h⁻)`` (the paper's EN and LOC vectors).
  - ``pca_diff``: first principal component of the centred pair differences ``h⁺ − h⁻`` (repeng).
  - ``pca_center``: first principal component of each pair centred on its own mean (repeng).
  PCA directions are unit vectors scaled by the mean projection of ``h⁺ − h⁻`` onto them, with the
  sign set so that positives project higher *on average*: comparable in size to ``mean_diff``.

Sign convention — differs from repeng: jaxsteer signs a PCA direction ``u`` by the mean projected
difference, ``sign(mean_i (h⁺_i − h⁻_i)·u)``; repeng (``read_representations``) by a majority vote,
flipping ``u`` when more pairs have ``h⁺_i·u < h⁻_i·u`` than ``>``, and returns the unit vector. When a
few pairs differ strongly one way and most pairs weakly the other way, the same pairs give opposite
signs in the two tools (tested: three pairs at −1, one at +10 → jaxsteer +1.75·u, repeng −u). Compare
vectors from the two up to sign, or re-sign with :func:`repeng_sign` before exchanging files.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from jaxsteer import ahead
from jaxsteer.errors import InputError
from jaxsteer.model.attention import resolve_impl
from jaxsteer.model.family import DecoderConfig
from jaxsteer.model.model import Model, batch_shards, check_tokens, on_mesh
from jaxsteer.model.transformer import gather_positions, last_valid_index, prepare, run_layers
from jaxsteer.shapes import balanced_rows, longest_first, plan_for
from jaxsteer.sharding import to_host

METHODS = ("mean_diff", "pca_diff", "pca_center")
READS = ("last", "mean")


@functools.partial(jax.jit, static_argnames=("config", "read", "impl"))
def layer_activations(
    params,
    input_ids: Int[Array, "B T"],
    attention_mask: Int[Array, "B T"],
    *,
    config: DecoderConfig,
    read: str,
    impl: str,
) -> Float[Array, "L B D"]:
    """fp32 output of every block at the read position; only ``[L, B, D]`` is ever stacked."""
    shape = input_ids.shape
    h, ctx = prepare(params, input_ids, attention_mask, config=config)
    if read == "last":  # the final block only at the read position (its other positions feed nothing)
        index = last_valid_index(attention_mask, shape)
        collect = lambda h, kv: gather_positions(h, index)  # noqa: E731
        stop = config.num_layers - 1
        h, acts = run_layers(params["layers"], h, ctx, config=config, stop=stop, collect=collect, impl=impl)
        final, _ = run_layers(params["layers"], h, ctx, config=config, start=stop, queries=index[:, None], impl=impl)
        return jnp.concatenate([acts, final[:, 0][None]], axis=0)
    weights = attention_mask.astype(jnp.float32) / jnp.sum(attention_mask, axis=1, keepdims=True)
    collect = lambda h, kv: jnp.einsum("btd,bt->bd", h, weights)  # noqa: E731
    _, acts = run_layers(params["layers"], h, ctx, config=config, collect=collect, impl=impl)
    return acts


@dataclasses.dataclass(frozen=True)
class TokenPairs:
    """Positive and negative prompts as left-padded token arrays (one row per pair, same order)."""

    pos_ids: np.ndarray
    pos_mask: np.ndarray
    neg_ids: np.ndarray
    neg_mask: np.ndarray

    def __post_init__(self):
        if len(self.pos_ids) == 0:
            raise InputError("empty pair set: no positive/negative prompts to extract from")
        if len(self.pos_ids) != len(self.neg_ids):
            raise InputError(f"mismatched pairs: {len(self.pos_ids)} positive vs {len(self.neg_ids)} negative prompts")
        for side, ids, mask in (("positive", self.pos_ids, self.pos_mask), ("negative", self.neg_ids, self.neg_mask)):
            if np.shape(ids) != np.shape(mask):
                raise InputError(
                    f"{side} attention_mask has shape {np.shape(mask)}, expected {np.shape(ids)} (the ids' shape)"
                )

    @classmethod
    def from_texts(cls, tokenizer, positives: Sequence[str], negatives: Sequence[str], chat: bool = False):
        from jaxsteer.tokens import check_texts, encode_batch

        if len(positives) != len(negatives):
            raise InputError(f"mismatched pairs: {len(positives)} positive vs {len(negatives)} negative texts")
        if not positives:
            raise InputError("empty pair set: no positive/negative texts to extract from")
        for side, texts in (("positive", positives), ("negative", negatives)):
            for i, text in enumerate(check_texts(texts, f"{side} text")):
                # "" is <bos> alone on both sides: a difference of exactly zero, averaged in silently
                if not tokenizer(text, add_special_tokens=False)["input_ids"]:
                    raise InputError(f"pair {i + 1}: the {side} text {text!r} tokenises to nothing")
        pi, pm = encode_batch(tokenizer, list(positives), chat=chat)
        ni, nm = encode_batch(tokenizer, list(negatives), chat=chat)
        return cls(pi, pm, ni, nm)

    def __len__(self) -> int:
        return len(self.pos_ids)

    def both_sides(self) -> tuple[np.ndarray, np.ndarray]:
        """Positives then negatives as one left-padded list ``[2N, T]`` (one batch stream reads both)."""
        width = max(self.pos_ids.shape[1], self.neg_ids.shape[1])
        pad = lambda x: np.pad(np.asarray(x), ((0, 0), (width - x.shape[1], 0)))  # noqa: E731
        return (
            np.concatenate([pad(self.pos_ids), pad(self.neg_ids)]),
            np.concatenate([pad(self.pos_mask), pad(self.neg_mask)]),
        )


@dataclasses.dataclass(frozen=True)
class Extraction:
    """Vectors ``[L, D]`` plus what is needed to describe and normalise them."""

    vectors: np.ndarray
    method: str
    read: str
    num_pairs: int
    mean_norm: np.ndarray  # [L] mean residual norm at the read position (positives and negatives)
    pos_mean: np.ndarray  # [L, D]
    neg_mean: np.ndarray  # [L, D]


def iterate_activations(
    model: Model, ids: np.ndarray, mask: np.ndarray, batch_size: int, read: str, progress=None, widths=None
):
    """Yield ``(rows, acts)``: indices into ``ids`` and their activations ``[L, len(rows), D]`` (numpy fp32),
    longest prompts first in balanced batches of at most ``batch_size`` rows, each padded to ``widths``
    (default: planned for this list alone, :func:`~jaxsteer.shapes.plan_for`) — the all-layer read compiles
    once a width, seconds for a large model."""
    ids, mask = check_tokens(model.config, ids, mask)
    ids, mask = np.asarray(ids), np.asarray(mask)
    rows_per_call = balanced_rows(len(ids), batch_size, batch_shards(model))
    widths = widths or plan_for(model.config, [mask], batch_size, balanced=batch_shards(model))
    for rows, pi, pm in longest_first(ids, mask, rows_per_call, widths):
        run = _activations_call(model, pi, pm, read)
        acts = ahead.call(run)
        if progress is not None:
            progress.update(len(rows))
        yield rows, to_host(acts)[:, : len(rows)].astype(np.float32, copy=False)


def _activations_call(model: Model, ids, mask, read: str) -> functools.partial:
    """The :func:`layer_activations` call reading one padded batch, every argument given."""
    ids, mask = on_mesh(model, ids, mask)
    impl = resolve_impl("auto", model.dtype)
    return functools.partial(layer_activations, model.params, ids, mask, config=model.config, read=read, impl=impl)


def compile_activations_ahead(model: Model, rows: int, width: int, read: str = "last") -> int:
    """Start compiling, in the background (:mod:`jaxsteer.ahead`), the all-layer read of ``rows`` prompts ×
    ``width`` tokens that :func:`iterate_activations` will run."""
    return ahead.start([_activations_call(model, *ahead.placeholder_batch(rows, width), read)])


def all_activations(
    model: Model, ids: np.ndarray, mask: np.ndarray, batch_size: int, read: str, progress=None, widths=None
) -> np.ndarray:
    """:func:`iterate_activations` gathered in the rows' own order: ``[L, N, D]``."""
    cfg = model.config
    out = np.zeros((cfg.num_layers, len(ids), cfg.hidden_size), np.float32)
    for rows, acts in iterate_activations(model, ids, mask, batch_size, read, progress, widths):
        out[:, rows] = acts
    return out


def extract(
    model: Model,
    pairs: TokenPairs,
    method: str = "mean_diff",
    read: str = "last",
    batch_size: int = 16,
    progress: bool = True,
    widths=None,
) -> Extraction:
    """Steering vectors for every layer from contrastive pairs (positive − negative). Positives and negatives
    are read in one stream, longest first (``widths``: as :func:`iterate_activations`)."""
    if method not in METHODS:
        raise InputError(f"extraction method {method!r}: expected one of {', '.join(METHODS)}")
    if read not in READS:
        raise InputError(f"read position {read!r}: expected one of {', '.join(READS)}")
    if batch_size < 1:
        raise InputError(f"batch_size={batch_size} must be positive")
    cfg = model.config
    n = len(pairs)
    if method == "pca_diff" and n < 2:  # one centred difference is zero: its "component" would be any axis
        raise InputError(f"pca_diff needs at least 2 pairs (got {n}); use mean_diff or pca_center")
    ids, mask = pairs.both_sides()
    bar = _progress(2 * n, progress, f"extract {method}")
    if method == "mean_diff":  # streaming sums: O(L·D) memory whatever the number of pairs
        sums = np.zeros((2, cfg.num_layers, cfg.hidden_size))
        norm_sum = np.zeros(cfg.num_layers)
        for rows, acts in iterate_activations(model, ids, mask, batch_size, read, bar, widths):
            for side in (0, 1):
                sums[side] += acts[:, (rows >= n) == side].sum(axis=1, dtype=np.float64)
            norm_sum += np.linalg.norm(acts, axis=-1).sum(axis=1)
        pos_mean, neg_mean = sums / n
        vectors = pos_mean - neg_mean
    else:
        acts = all_activations(model, ids, mask, batch_size, read, bar, widths)
        pos, neg = acts[:, :n], acts[:, n:]
        pos_mean, neg_mean = pos.mean(axis=1, dtype=np.float64), neg.mean(axis=1, dtype=np.float64)
        norm_sum = np.linalg.norm(acts, axis=-1).sum(axis=1, dtype=np.float64)
        vectors = _pca_vectors(pos, neg, method)
    if bar is not None:
        bar.close()
    vectors = vectors.astype(np.float32)
    if not np.all(np.isfinite(vectors)):
        raise InputError("extraction produced NaN/inf vectors (are the activations finite?)")
    return Extraction(
        vectors=vectors,
        method=method,
        read=read,
        num_pairs=n,
        mean_norm=(norm_sum / (2 * n)).astype(np.float32),
        pos_mean=pos_mean.astype(np.float32),
        neg_mean=neg_mean.astype(np.float32),
    )


def _pca_vectors(pos: np.ndarray, neg: np.ndarray, method: str) -> np.ndarray:
    """First principal component per layer, scaled by the mean projected difference, sign: positives higher
    on average (repeng signs by a majority vote over pairs instead: see the module docstring)."""
    diffs = pos - neg  # [L, N, D]
    if method == "pca_diff":
        data = diffs - diffs.mean(axis=1, keepdims=True)
    else:
        center = (pos + neg) / 2
        data = np.concatenate([pos - center, neg - center], axis=1)
    _, sv, vt = np.linalg.svd(data.astype(np.float64), full_matrices=False)
    spread = np.linalg.norm(diffs.astype(np.float64), axis=-1).max(axis=1)  # [L]
    # a layer whose differences are all exactly zero gives a zero vector, as mean_diff does (check_nonzero_at
    # refuses it where it would be used); one whose differences are equal but not zero has no component
    flat = np.flatnonzero((spread > 0) & (sv[:, 0] <= 1e-9 * spread))
    if flat.size:  # no variance to take a component of: SVD would hand back an arbitrary basis vector
        raise InputError(
            f"{method}: the pairs' differences do not vary at layer {int(flat[0])}"
            f"{f' (and {flat.size - 1} more)' if flat.size > 1 else ''}, so it has no principal component; "
            "use mean_diff, or pairs whose differences differ"
        )
    direction = vt[:, 0, :]  # [L, D], unit norm
    scale = np.einsum("lnd,ld->l", diffs, direction) / diffs.shape[1]
    return direction * scale[:, None]  # a negative mean projection flips the sign


def repeng_sign(vectors: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """``vectors`` ``[L, D]`` re-signed by repeng's majority vote over the pairs ``pos``/``neg`` ``[L, N, D]``.

    Per layer: flip when more pairs project the positive lower than the negative than higher (ties: keep).
    """
    vectors = np.asarray(vectors, np.float64)
    lower = np.einsum("lnd,ld->ln", pos, vectors) < np.einsum("lnd,ld->ln", neg, vectors)
    higher = np.einsum("lnd,ld->ln", pos, vectors) > np.einsum("lnd,ld->ln", neg, vectors)
    flip = lower.mean(axis=1) > higher.mean(axis=1)
    return np.where(flip[:, None], -vectors, vectors)


def normalise(extraction: Extraction, mode: str = "none") -> np.ndarray:
    """``"none"`` or ``"unit_mean_norm"``: unit vectors scaled by the mean residual norm at each layer."""
    if mode == "none":
        return extraction.vectors
    if mode != "unit_mean_norm":
        raise InputError(f"normalisation {mode!r}: expected none or unit_mean_norm")
    norms = np.linalg.norm(extraction.vectors, axis=-1, keepdims=True)
    return (extraction.vectors / np.maximum(norms, 1e-12) * extraction.mean_norm[:, None]).astype(np.float32)


def pool(extractions: Sequence[Extraction]) -> Extraction:
    """Pooled-over-languages mean_diff vectors: means weighted by each group's number of pairs."""
    if not extractions:
        raise InputError("nothing to pool: no per-language extractions")
    if any(e.method != "mean_diff" for e in extractions):
        raise InputError("pooling needs mean_diff extractions (PCA directions do not average)")
    w = np.array([e.num_pairs for e in extractions], np.float64)
    pos = sum(wi * e.pos_mean for wi, e in zip(w, extractions)) / w.sum()
    neg = sum(wi * e.neg_mean for wi, e in zip(w, extractions)) / w.sum()
    norm = sum(wi * e.mean_norm for wi, e in zip(w, extractions)) / w.sum()
    return Extraction(
        vectors=(pos - neg).astype(np.float32),
        method="mean_diff",
        read=extractions[0].read,
        num_pairs=int(w.sum()),
        mean_norm=norm.astype(np.float32),
        pos_mean=pos.astype(np.float32),
        neg_mean=neg.astype(np.float32),
    )


def _progress(total: int, enabled: bool, desc: str):
    from jaxsteer.progress import bar

    return bar(total, desc, "prompt", enabled, leave=False)
