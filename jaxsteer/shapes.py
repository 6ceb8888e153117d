"""Padded batch shapes: how token batches are cut and padded so that compiled programs repeat.

Every new ``[rows, width]`` compiles the model's program again (seconds for a large model on a GPU, for a
scoring program and again for a sweep's tail), and every padded position costs the same compute as a real
token. :func:`plan_widths` weighs the two for a whole workload known in advance — every batch of every
language of an experiment — and picks the set of widths that minimises padded tokens plus compiles;
:func:`bucket` and :func:`coarse_bucket` are the fixed rules for lists not planned ahead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import numpy as np

# A new width costs about as much as this much prefill work, in FLOP-equivalents (2 FLOPs a parameter a
# token). On an accelerator, measured on one H200 (bench/RESULTS.md, session 4): the 12B experiment's
# Global-MMLU programs compiled in ≈ 4 s each (prefix and tail: ≈ 8 s a width) while its five-plan scoring
# ran at ≈ 10⁻⁴ s a prompt token; a plain 12B forward runs at ≈ 28k tokens/s (≈ 2·10¹⁰ FLOPs a token) and
# compiles in ≈ 3 s. Both: one width ≈ 8·10⁴ prompt tokens of a 12B model ≈ 2·10¹⁵. A compile takes seconds
# whatever the model, so the smaller the model, the more padding a saved compile is worth. On a CPU, which
# computes ~10⁴× slower and compiles small programs in under a second (measured on a 2-core CI-class CPU,
# test model: ≈ 0.75 s a width against ≈ 4·10⁻⁵ s a padded token ≈ 2·10⁴ tokens of a 10⁵-parameter model):
# ≈ 4·10⁹.
COMPILE_FLOPS = {"cpu": 4e9}
ACCELERATOR_COMPILE_FLOPS = 2e15
MIN_SHAPE_COST, MAX_SHAPE_COST = 1024, 1 << 22


def bucket(n: int, multiple: int = 16) -> int:
    """Round a length up to a multiple: padded shapes repeat, so compiled functions are reused."""
    return max(multiple, -(-n // multiple) * multiple)


def coarse_bucket(n: int, multiple: int = 16, per_octave: int = 2) -> int:
    """Round a length up to the next of ``per_octave`` steps per octave, each a multiple of ``multiple``
    (two: 16, 32, 48, 64, 96, 128, 192, 256, 384, 512, …; four: …, 128, 160, 192, 224, 256, 320, 384, 448, …).

    For generation, whose compile is costly (a large model's decode loop compiles for tens of seconds) and
    whose prompt padding is cheap (decoding is memory-bound): a few shapes serve every language.
    """
    k = 0
    while True:
        for j in range(per_octave):  # m·2^k·(1 + j/per_octave)
            step = (multiple << k) * (per_octave + j) // per_octave
            if step >= n and step % multiple == 0:
                return step
        k += 1


def scoring_width(n: int) -> int:
    """The padded width of a scoring batch not planned ahead (four widths per octave: ≤ 25 % padding)."""
    return coarse_bucket(n, per_octave=4)


def balanced_rows(n: int, batch_size: int, multiple: int = 1) -> int:
    """Rows per call that split ``n`` prompts into as few calls as ``batch_size`` allows, evenly: 100 prompts
    at 32 → 4 calls of 25, not 3 of 32 and one of 4 real rows beside 28 fillers. For lists of one size across
    languages (Dev2): the shape still repeats. ``multiple``: rows rounded up to a multiple of it (a mesh's
    batch shards, so that every call's rows split over them: 100 at 32 on 8 shards → 4 calls of 32) — where
    ``batch_size`` is one (otherwise rows stay ≤ ``batch_size`` and run replicated)."""
    calls = max(1, -(-n // batch_size))
    even = max(1, -(-n // calls))
    if batch_size % multiple:
        return even
    return -(-even // multiple) * multiple


@dataclasses.dataclass(frozen=True)
class Widths:
    """A planned set of widths (ascending): a batch takes the narrowest that holds it; a batch longer than
    all of them (a list the plan did not see) is rounded up to a multiple of 16."""

    sizes: tuple[int, ...]

    def __call__(self, n: int) -> int:
        for width in self.sizes:
            if width >= n:
                return width
        return bucket(n)


def shape_cost_tokens(config, platform: str | None = None) -> int:
    """What one more compiled width is worth in padded prompt tokens for a model of this config on
    ``platform`` (default: JAX's backend): :data:`COMPILE_FLOPS` ÷ 2 FLOPs per non-embedding parameter, within
    [1024, 4 194 304]. On a GPU or TPU ≈ 9·10⁴ tokens for Gemma-3-12B, ≈ 1.4·10⁶ for 1B; on a CPU ≈ 2·10⁴
    for the test model and the floor for real checkpoints (their compute dwarfs any compile there)."""
    from jaxsteer.devices import platform as backend

    flops = COMPILE_FLOPS.get(platform or backend(), ACCELERATOR_COMPILE_FLOPS)
    count = getattr(config, "num_params", None)
    params = count(include_embedding=False) if count else 0
    cost = flops / (2 * params) if params else MAX_SHAPE_COST
    return int(min(MAX_SHAPE_COST, max(MIN_SHAPE_COST, cost)))


def batch_needs(lengths: Sequence[int] | np.ndarray, batch_size: int) -> list[int]:
    """The width each batch of :func:`longest_first` needs (its longest row) for rows of these lengths."""
    ordered = np.sort(np.asarray(lengths, np.int64))[::-1]
    return [int(ordered[lo]) for lo in range(0, len(ordered), batch_size)]


def plan_widths(needs: Sequence[int], rows: int | Sequence[int], shape_cost: float, multiple: int = 16) -> Widths:
    """The widths (multiples of ``multiple``) for batches needing ``needs`` tokens each, of ``rows`` rows (one
    count for all, or one per batch), that minimise ``Σ rows · width(batch) + shape_cost · number of widths``
    — padded tokens against compiles.

    Exact: the optimal widths are among the batches' own rounded needs, and with them sorted, each width
    serves a contiguous run of needs (the narrowest width holding it), so a dynamic program over the sorted
    distinct needs finds the optimum in O(m²).
    """
    if not len(needs):
        return Widths(())
    weights = np.broadcast_to(np.asarray(rows, np.int64), (len(needs),))
    if weights.min() < 1 or shape_cost < 0:
        raise ValueError(f"plan_widths: rows={rows} must be ≥ 1 and shape_cost={shape_cost} ≥ 0")
    sizes, slot = np.unique([bucket(int(n), multiple) for n in needs], return_inverse=True)
    counts = np.bincount(slot, weights=weights, minlength=len(sizes))  # rows needing each rounded width
    before = np.concatenate([[0], np.cumsum(counts)])  # rows needing at most sizes[j - 1]
    best = np.full(len(sizes) + 1, np.inf)
    best[0], came_from = 0.0, np.zeros(len(sizes) + 1, np.int64)
    for j in range(1, len(sizes) + 1):  # sizes[j - 1] is the widest width so far, serving needs i … j − 1
        for i in range(j):
            cost = best[i] + shape_cost + int(sizes[j - 1]) * (before[j] - before[i])
            if cost < best[j]:
                best[j], came_from[j] = cost, i
    chosen, j = [], len(sizes)
    while j:
        chosen.append(int(sizes[j - 1]))
        j = came_from[j]
    return Widths(tuple(sorted(chosen)))


def plan_for(config, masks: Sequence[np.ndarray], batch_size: int, balanced: int | None = None) -> Widths:
    """:func:`plan_widths` for reading each of several lists of prompts (attention masks ``[N, T]``) longest first
    in batches of ``batch_size`` rows (``balanced``: :func:`balanced_rows` of each list, rows a multiple of
    ``balanced``), for a model of ``config`` on this platform (:func:`shape_cost_tokens`): one plan, so the
    lists share their compiles."""
    needs, rows = [], []
    for m in masks:
        per_call = batch_size if balanced is None else balanced_rows(len(m), batch_size, balanced)
        needs += batch_needs(np.asarray(m).sum(axis=1), per_call)
        rows += [per_call] * (len(needs) - len(rows))
    return plan_widths(needs, rows, shape_cost_tokens(config))


def padded_tokens(needs: Sequence[int], rows: int | Sequence[int], widths) -> int:
    """Prompt positions the batches occupy once padded (``rows`` each, or one count per batch) under a width
    rule."""
    weights = np.broadcast_to(np.asarray(rows, np.int64), (len(needs),))
    return int(sum(int(r) * widths(int(n)) for n, r in zip(needs, weights)))


def longest_first(ids: np.ndarray, mask: np.ndarray, batch_size: int, widths=bucket) -> Iterator:
    """:func:`batches` over the rows sorted by length, longest first (each batch is as narrow as its rows
    allow), yielding ``(row indices into ids, ids, mask)``."""
    order = np.argsort(-np.asarray(mask).sum(axis=1), kind="stable")
    for rows, bi, bm in batches(np.asarray(ids)[order], np.asarray(mask)[order], batch_size, widths):
        yield order[rows], bi, bm


def batches(ids: np.ndarray, mask: np.ndarray, batch_size: int, widths=bucket) -> Iterator:
    """Yield ``(slice, ids, mask)`` with the time axis trimmed and padded to ``widths(needed)`` (:func:`bucket`,
    :func:`coarse_bucket`, or a planned :class:`Widths`) and the rows padded to ``batch_size``."""
    for lo in range(0, len(ids), batch_size):
        bi, bm = ids[lo : lo + batch_size], mask[lo : lo + batch_size]
        keep = bm.any(axis=0)
        bi, bm = bi[:, keep], bm[:, keep]
        width, rows = widths(bi.shape[1]), batch_size
        pi = np.zeros((rows, width), np.int32)
        pm = np.zeros((rows, width), np.int32)
        pi[: len(bi), width - bi.shape[1] :] = bi
        pm[: len(bi), width - bi.shape[1] :] = bm
        pm[len(bi) :, -1] = 1  # filler rows: one dummy token, results dropped
        yield slice(lo, lo + len(bi)), pi, pm
