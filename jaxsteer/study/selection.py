"""The selection rule: which (layer, γ) point of a scored grid wins, and whether it won by a tie.

One rule for every place that picks a point — the EN layer and the LOC (layer, γ) on Dev2
(:mod:`jaxsteer.study.surgical`) and the best point that ``jaxsteer sweep`` reports:

* the highest score wins;
* points within ``TIE_TOL`` of it are **tied**, and among them the **smaller |γ|** wins (the weaker
  intervention: at a tie with γ = 0, steering is not worth it), then the **lower layer**.

The result, :class:`Best`, keeps every tied point and the number of items behind each score, so a
best point that is a tie at γ = 0 on 5 items says so instead of reading as a finding.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from jaxtyping import Float

from jaxsteer.errors import InputError

TIE_TOL = 1e-9  # accuracies in percent: equal up to float rounding of a mean


@dataclasses.dataclass(frozen=True)
class Best:
    """The winning point of a grid, its score, and the points that tie with it."""

    layer: int
    gamma: float
    score: float
    ties: tuple[tuple[int, float], ...]  # every (layer, γ) within TIE_TOL of the best, the winner included
    n: int | None = None  # items behind each score (summed over languages for a mean)

    @property
    def tie(self) -> bool:
        return len(self.ties) > 1

    @property
    def others(self) -> tuple[tuple[int, float], ...]:
        """The tied points that lost on the tie rule."""
        return tuple(p for p in self.ties if p != (self.layer, self.gamma))

    def to_dict(self) -> dict:
        return {
            "layer": self.layer,
            "gamma": self.gamma,
            "metric": self.score,
            "n": self.n,
            "tie": self.tie,
            "ties": [{"layer": layer, "gamma": gamma} for layer, gamma in self.ties],
        }

    def describe(self, unit: str = "%", at_zero: str = "the unsteered model") -> str:
        """One line: ``layer 3 γ=0.5 → 60.0% (n=10 items); tied with layer 3 γ=1.0 (smaller |γ| wins)``;
        ``at_zero`` says what γ = 0 applies (SUR's LOC at γ = 0 still has EN applied)."""
        text = f"layer {self.layer} γ={self.gamma:g} → {self.score:.1f}{unit}"
        if self.n is not None:
            text += f" (n={self.n} items)"
        if self.tie:
            shown = ", ".join(f"layer {la} γ={g:g}" for la, g in self.others[:6])
            more = f" and {len(self.others) - 6} more" if len(self.others) > 6 else ""
            text += f"; a tie with {len(self.others)} other point(s): {shown}{more} (the smaller |γ|, then the lower layer, wins)"
        if self.gamma == 0:
            text += f"; γ = 0 is {at_zero}: no steered point beats it"
        return text


def best_point(
    points: Sequence[tuple[int, float]],
    scores: Sequence[float] | Float[np.ndarray, " G"],
    n: int | None = None,
    tol: float = TIE_TOL,
) -> Best:
    """The best of ``points`` (``(layer, γ)``) by ``scores``: the highest; ties → smaller |γ|, then lower layer
    (then the negative γ of a ± pair, so the rule is total)."""
    points = [(int(layer), float(gamma)) for layer, gamma in points]
    values = np.asarray(scores, np.float64).reshape(-1)
    if not points or len(points) != values.size:
        raise InputError(f"best_point needs one score per point; got {len(points)} points and {values.size} scores")
    bad = [p for p, s in zip(points, values) if not np.isfinite(s)]
    if bad:
        raise InputError(f"the score of layer {bad[0][0]} γ={bad[0][1]:g} is not finite")
    top = float(values.max())
    ties = tuple(p for p, s in zip(points, values) if s >= top - tol)
    # |γ|: the weaker intervention, whatever its sign (−4 must not beat 0); then the lower layer, then −γ before +γ
    layer, gamma = min(ties, key=lambda p: (abs(p[1]), p[0], p[1]))
    score = float(values[points.index((layer, gamma))])
    return Best(layer, gamma, score, ties, n)


def sweep_table(rows: Iterable[Mapping], metric: str = "gmmlu_accuracy") -> list[dict]:
    """Per (layer, γ), in first-seen order: the mean of ``metric`` over the rows (one per language) and
    ``n``, the items behind it (the sum of the rows' ``n``; ``None`` when a row lacks it)."""
    groups: dict[tuple[int, float], list[Mapping]] = {}
    for r in rows:
        groups.setdefault((int(r["layer"]), float(r["gamma"])), []).append(r)
    table = []
    for (layer, gamma), group in groups.items():
        counts = [r.get("n") for r in group]
        n = None if any(c is None for c in counts) else int(sum(counts))
        table.append({"layer": layer, "gamma": gamma, "metric": float(np.mean([r[metric] for r in group])), "n": n})
    return table


def best_of_table(table: Sequence[Mapping]) -> Best:
    """:func:`best_point` of a :func:`sweep_table` (``n`` is the winner's)."""
    if not table:
        raise InputError("the sweep table is empty")
    best = best_point([(r["layer"], r["gamma"]) for r in table], [r["metric"] for r in table])
    row = next(r for r in table if (r["layer"], r["gamma"]) == (best.layer, best.gamma))
    return dataclasses.replace(best, n=row.get("n"))
