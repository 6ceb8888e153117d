"""Result files → Δ: per-method accuracies against the base, over seeds and languages, and the plane's points.

Conventions (PAPER.md "Evaluation"): accuracy in percent; Δ = accuracy(method) − accuracy(unaligned base) in
percentage points, per language, then averaged over languages. Each seed's result is compared with the base
of the same seed (the seed draws the test split); with several seeds a cell is the mean over seeds and the
spread their sample standard deviation. Results must come from the same model, and be scored on the same
items the same way (their ``protocol``); a result given twice is refused. Pure Python/NumPy: every number
can be checked by hand from the result files.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxsteer.data.files import read_text
from jaxsteer.errors import DataError

QUADRANTS: tuple[str, ...] = ("desirable", "transfer_only", "localization_only", "degraded")
"""Quadrant names: desirable (Δx > 0, Δy ≥ 0), transfer_only (Δx > 0, Δy < 0: cultural erasure),
localization_only (Δx ≤ 0, Δy ≥ 0), degraded (Δx ≤ 0, Δy < 0)."""


def mean_spread(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value) over seeds."""
    if len(values) == 0:
        raise DataError("cannot average zero values")
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


# --- results and Δ -------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class MethodResult:
    """Per-language accuracy (%) of one method and one seed, with the provenance that makes Δ valid."""

    method: str
    scores: Mapping[str, float]
    config_hash: str | None = None
    base_model: str | None = None  # the unaligned model the method starts from
    seed: int | None = None
    source: str = ""
    protocol: Mapping[str, Any] | None = None  # what decides the items and their scoring (seed aside)
    identity: str | None = None  # provenance and scores: equal for a file and its copy, never for two runs


def load_result(path: str | os.PathLike) -> MethodResult:
    """A result JSON: ``method``, ``accuracy`` ({lang: %}; ``scores`` also accepted), ``config_hash``,
    ``base_model`` and ``seed``, at top level or under ``provenance``."""
    if not os.path.isfile(path):
        raise DataError(f"no such result file {str(path)!r}")
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: invalid JSON at line {e.lineno} ({e.msg})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object with method and accuracy")
    prov = data.get("provenance") or {}
    scores = data.get("accuracy", data.get("scores"))
    if not isinstance(scores, dict) or not scores:
        raise DataError(f"{path}: missing 'accuracy' (an object language -> accuracy in percent)")
    method = data.get("method") or prov.get("method")
    if not method:
        raise DataError(f"{path}: missing 'method'")
    seed = data.get("seed", prov.get("seed"))
    try:
        values = {str(k): float(v) for k, v in scores.items()}
    except (TypeError, ValueError):
        raise DataError(f"{path}: 'accuracy' values must be numbers (percent)") from None
    protocol = data.get("protocol")
    if protocol is not None and not isinstance(protocol, dict):
        raise DataError(f"{path}: 'protocol' must be an object of settings")
    identity = json.dumps([prov, values], sort_keys=True, default=str) if prov else None
    return MethodResult(
        method=str(method),
        scores=values,
        config_hash=data.get("config_hash", prov.get("config_hash")),
        base_model=data.get("base_model", prov.get("base_model")),
        seed=int(seed) if seed is not None else None,
        source=str(path),
        protocol=protocol,
        identity=identity,
    )


def check_comparable(result: MethodResult, base: MethodResult) -> None:
    """Raise ``DataError`` when ``result`` was not produced from the same model/config as ``base``, or on other
    items or scoring (its ``protocol``: data, splits, subset, generation and matching settings)."""
    name = result.source or result.method
    for field in ("config_hash", "base_model"):
        mine, theirs = getattr(result, field), getattr(base, field)
        if field == "base_model" and not ("/" in str(mine) and "/" in str(theirs)):
            continue  # a bare model name (files written before the model's path was recorded) identifies nothing
        if mine is not None and theirs is not None and mine != theirs:
            raise DataError(
                f"{name}: {field} {mine!r} differs from the base's {theirs!r} ({base.source or base.method}); "
                "Δ is only defined against the same model"
            )
    if result.protocol is not None and base.protocol is not None:
        keys = sorted(set(result.protocol) | set(base.protocol))
        differ = [k for k in keys if result.protocol.get(k) != base.protocol.get(k)]
        if differ:
            k = differ[0]
            raise DataError(
                f"{name}: {k}={result.protocol.get(k)!r} but the base's {base.source or base.method} has "
                f"{k}={base.protocol.get(k)!r}; Δ is only defined on the same items, scored the same way"
            )


def _refuse_copies(name: str, runs: Sequence[MethodResult]) -> None:
    """The same result twice (a folder and its copy given together) would count as two seeds agreeing."""
    seen: dict[str, MethodResult] = {}
    for r in runs:
        if r.identity is not None and r.identity in seen:
            raise DataError(
                f"{r.source or name} is the same result as {seen[r.identity].source} (a copy?): "
                "it would count twice, as two seeds that agree"
            )
        if r.identity is not None:
            seen[r.identity] = r


def _paired_base(result: MethodResult, base_runs: Sequence[MethodResult]) -> list[MethodResult]:
    """The base results ``result`` is compared with (their accuracies averaged): the base of its own seed (the
    seed draws the test split); all base results when no seed is recorded."""
    seeds = sorted({b.seed for b in base_runs if b.seed is not None})
    if result.seed is not None and result.seed in seeds:
        paired = [b for b in base_runs if b.seed == result.seed]
    elif not seeds:
        paired = list(base_runs)
    elif result.seed is None and len(seeds) == 1:
        paired = [b for b in base_runs if b.seed == seeds[0]]
    else:
        has = f"seed {result.seed}" if result.seed is not None else "no seed"
        raise DataError(
            f"{result.source or result.method} has {has}, the base results seed(s) {', '.join(map(str, seeds))}: "
            "Δ pairs each seed with the base of the same seed (evaluate the base with it)"
        )
    return paired


def _settled(value: float) -> float:
    """Δ rounded far below any reported digit: an exact zero computed as 2e-15 must not pick a quadrant."""
    return round(float(value), 9) + 0.0


@dataclasses.dataclass(frozen=True)
class DeltaTable:
    """Δ (points) per method and language, their mean over languages, and the spread over seeds."""

    langs: tuple[str, ...]
    delta: Mapping[str, Mapping[str, float]]  # method -> lang -> mean Δ over seeds
    mean: Mapping[str, float]  # method -> mean over seeds of the language-averaged Δ
    spread: Mapping[str, Mapping[str, float]]  # method -> lang -> std over seeds
    mean_spread: Mapping[str, float]
    n_seeds: Mapping[str, int]

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(self.delta)

    def _with_sd(self) -> bool:
        return any(n > 1 for n in self.n_seeds.values())

    def to_csv(self, precision: int = 2) -> str:
        """CSV text: method, one column per language, mean (and ``*_sd`` columns with several seeds)."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        header = ["method", *self.langs, "mean"]
        sd = self._with_sd()
        writer.writerow(header + ([f"{c}_sd" for c in header[1:]] + ["n_seeds"] if sd else []))
        for m in self.methods:
            row = [
                m,
                *(_fixed(self.delta[m][lang], precision) for lang in self.langs),
                _fixed(self.mean[m], precision),
            ]
            if sd:
                one = self.n_seeds[m] < 2  # no spread to report: not a spread of zero
                row += ["" if one else _fixed(self.spread[m][lang], precision) for lang in self.langs]
                row += ["" if one else _fixed(self.mean_spread[m], precision), str(self.n_seeds[m])]
            writer.writerow(row)
        return out.getvalue()

    def to_markdown(self, precision: int = 2) -> str:
        """Markdown table with signed cells (``+1.23``, or ``+1.23 ± 0.40`` with several seeds)."""
        sd = self._with_sd()

        def cell(value: float, spread: float, seeds: int) -> str:
            signed = _fixed(value, precision, "+")
            if not sd:
                return signed
            return signed + (" ± n/a" if seeds < 2 else f" ± {_fixed(spread, precision)}")

        lines = [
            "| method | " + " | ".join((*self.langs, "mean")) + " |",
            "|---|" + "---:|" * (len(self.langs) + 1),
        ]
        for m in self.methods:
            cells = [cell(self.delta[m][lang], self.spread[m][lang], self.n_seeds[m]) for lang in self.langs]
            cells.append(cell(self.mean[m], self.mean_spread[m], self.n_seeds[m]))
            lines.append(f"| {_md(m)} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def _fixed(value: float, precision: int, sign: str = "") -> str:
    """``value`` with ``precision`` decimals, never ``-0.00`` (a Δ that rounds to zero is zero)."""
    return f"{round(float(value), precision) + 0.0:{sign}.{precision}f}"


def _md(text: str) -> str:
    """A Markdown table cell: ``|`` would end it."""
    return str(text).replace("|", "\\|")


ResultLike = MethodResult | Mapping[str, float]


def delta_table(
    results_by_method: Mapping[str, ResultLike | Sequence[ResultLike]],
    base: str | ResultLike | Sequence[ResultLike] = "base",
    langs: Sequence[str] | None = None,
) -> DeltaTable:
    """Δ of every method against ``base`` (a key of ``results_by_method``, or the base result(s) itself).

    A method's value is one result or a list of results over seeds; a plain mapping lang → accuracy is a
    result without provenance. Languages default to the base's; every method must cover all of them.
    Results whose ``config_hash``/``base_model`` differ from the base's raise ``DataError``.
    """
    if isinstance(base, str):
        if base not in results_by_method:
            raise DataError(f"base {base!r} is not among the methods {', '.join(results_by_method)}")
        base_runs = _runs(base, results_by_method[base])
        methods = {k: v for k, v in results_by_method.items() if k != base}
    else:
        base_runs = _runs("base", base)
        methods = dict(results_by_method)
    langs = tuple(langs) if langs is not None else tuple(base_runs[0].scores)
    twice = sorted({lang for lang in langs if langs.count(lang) > 1})
    if twice:  # it would weigh double in the mean over languages
        raise DataError(f"language {twice[0]} is given twice")
    _refuse_copies("base", base_runs)
    for r in base_runs[1:]:  # the bases of several seeds: one model, one protocol
        check_comparable(r, base_runs[0])
    delta, mean, spread, mean_sd, n_seeds = {}, {}, {}, {}, {}
    for name, value in methods.items():
        runs = _runs(name, value)
        _refuse_copies(name, runs)
        per_seed = []
        for r in runs:
            paired = _paired_base(r, base_runs)
            check_comparable(r, paired[0])
            per_seed.append(
                {lang: _score(r, lang) - float(np.mean([_score(b, lang) for b in paired])) for lang in langs}
            )
        delta[name], spread[name] = {}, {}
        for lang in langs:
            d, sd = mean_spread([d[lang] for d in per_seed])
            delta[name][lang], spread[name][lang] = _settled(d), sd
        d, sd = mean_spread([float(np.mean([d[lang] for lang in langs])) for d in per_seed])
        mean[name], mean_sd[name] = _settled(d), sd
        n_seeds[name] = len(runs)
    return DeltaTable(langs, delta, mean, spread, mean_sd, n_seeds)


def common_languages(
    runs: Mapping[str, Mapping[str, Sequence[MethodResult]]], base: str
) -> tuple[tuple[str, ...], dict[str, list[str]]]:
    """The languages every result of ``runs[bench][method]`` has, in the base's order, and for each language
    some result lacks, the methods lacking it (``{"zh": ["EN"]}``): the comparison a folder supports when
    methods were evaluated on different languages (``jaxsteer eval --lang ko`` beside a full base run)."""
    order: list[str] = []
    for bench in runs.values():
        for result in [*bench.get(base, ()), *(r for rs in bench.values() for r in rs)]:
            order += [lang for lang in result.scores if lang not in order]
    missing: dict[str, list[str]] = {}
    for bench in runs.values():
        for method, results in bench.items():
            for lang in order:
                if any(lang not in r.scores for r in results) and method not in missing.get(lang, []):
                    missing.setdefault(lang, []).append(method)
    return tuple(lang for lang in order if lang not in missing), missing


def results_of(name: str, value: Any) -> list[MethodResult]:
    """A method's results (one, or a list over seeds) as :class:`MethodResult` objects."""
    return _runs(name, value)


def _runs(name: str, value: Any) -> list[MethodResult]:
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if not items:
        raise DataError(f"method {name!r} has no results")
    return [v if isinstance(v, MethodResult) else MethodResult(name, dict(v)) for v in items]


def _score(result: MethodResult, lang: str) -> float:
    if lang not in result.scores:
        raise DataError(
            f"{result.source or result.method}: no accuracy for language {lang!r} (it has {', '.join(result.scores)}); "
            "compare on the languages every result has (leave --lang out) or evaluate it on that language"
        )
    value = float(result.scores[lang])
    if not math.isfinite(value):
        raise DataError(f"{result.source or result.method}: accuracy for {lang!r} is {value}")
    return value


# --- the plane ----------------------------------------------------------------------------------
def quadrant(dx: float, dy: float) -> str:
    """Quadrant of a point (see :data:`QUADRANTS`); the desirable one is Δx > 0 and Δy ≥ 0."""
    if dx > 0:
        return "desirable" if dy >= 0 else "transfer_only"
    return "localization_only" if dy >= 0 else "degraded"


@dataclasses.dataclass(frozen=True)
class PlanePoint:
    """One method on the plane: x = ΔGMMLU, y = ΔBLEnD (points), with spreads over seeds."""

    method: str
    dx: float
    dy: float
    dx_err: float = 0.0
    dy_err: float = 0.0

    @property
    def quadrant(self) -> str:
        return quadrant(self.dx, self.dy)


def plane_points(gmmlu: DeltaTable, blend: DeltaTable) -> list[PlanePoint]:
    """Points of the methods present in both tables (language-averaged Δ), in ``gmmlu``'s order."""
    missing = [m for m in gmmlu.methods if m not in blend.mean] + [m for m in blend.methods if m not in gmmlu.mean]
    if missing:
        raise DataError(f"method(s) {', '.join(missing)} lack a GMMLU or a BLEnD result")
    return [
        PlanePoint(m, gmmlu.mean[m], blend.mean[m], gmmlu.mean_spread[m], blend.mean_spread[m]) for m in gmmlu.methods
    ]
