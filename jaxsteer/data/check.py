"""Audit of the BLEnD preprocessing on a data root, before any model runs (``jaxsteer data check``).

Per country it says how many questions were loaded, which are not scored and why (blank local text,
or BLEnD's annotator rule), and how well the decontextualisation rules cover them: which rule fired how
often, which questions keep a deliberate cue (a language name such as 한국어 or "bahasa Indonesia"),
which have no country mention in the local text (nothing to remove, so the pair is the question and the
question with a locative added), and — the defects — which still name the country or left a function
word without its object. *Coverage* is the share of non-blank questions whose decontextualised form is
clean (no mention left, nothing dangling). Everything is plain data, ready for JSON.

The annotation files are optional here: the decontextualisation audit needs the questions only. Without
``{Country}_data.json`` the report says ``annotated: false``, counts only blank questions as skipped and
leaves ``scored`` unknown (None), since BLEnD's annotator rule cannot be applied.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Sequence
from typing import Any

from jaxsteer.data import blend as blend_data
from jaxsteer.data import decontext
from jaxsteer.data.files import GZIPPED_SUFFIXES, TABLE_SUFFIXES, MissingFileError, PathLike, is_hub_id
from jaxsteer.data.languages import LANGUAGES, blend_country
from jaxsteer.errors import DataError


def default_countries(source: PathLike) -> list[str]:
    """The BLEnD countries of the languages with rules whose question file is present under ``source``."""
    found = []
    for code in decontext.SUPPORTED:
        country = LANGUAGES[code].blend_country
        if country is None:
            continue
        for folder in blend_data.QUESTION_FOLDERS:
            stem = os.path.join(os.fspath(source), folder, f"{country}_questions")
            if any(os.path.isfile(stem + suffix) for suffix in TABLE_SUFFIXES + GZIPPED_SUFFIXES):
                found.append(country)
                break
    return found


def _example(q: blend_data.BlendQuestion, result: decontext.Decontext | None = None, left: str | None = None):
    row: dict[str, Any] = {"id": q.id, "question": q.question}
    if result is not None:
        row["decontextualised"] = result.text
        row["rules"] = list(result.rules)
    if left is not None:
        row["left"] = left
    return row


def check_country(source: PathLike, country: str) -> dict[str, Any]:
    """The audit of one country (see the module docstring); raises ``DataError`` for unreadable files."""
    questions = blend_data.load_blend(source, country, require_annotations=False)
    country = questions[0].country if questions else blend_country(country)
    lang = questions[0].lang if questions else None
    annotated = all(q.annotated for q in questions)
    skipped: dict[str, list[str]] = {}
    for q in questions:
        if q.skip_reason is not None:
            skipped.setdefault(q.skip_reason, []).append(q.id)
    report: dict[str, Any] = {
        "country": country,
        "lang": lang,
        "questions": len(questions),
        "skipped": {reason: len(ids) for reason, ids in skipped.items()},
        "skipped_ids": skipped,
        "annotated": annotated,
        "scored": sum(1 for q in questions if not q.skipped) if annotated else None,
        # in the annotations but not the questions: BLEnD's scorer (which loops over annotations) counts them
        "annotation_only_ids": blend_data.annotation_only_ids(source, country),
    }
    if lang not in decontext.SUPPORTED:
        report["decontext"] = None  # no rules for this language: nothing to audit
        return report
    rules: collections.Counter[str] = collections.Counter()
    kept: dict[str, list[str]] = {}
    unnamed, residual, dangling = [], [], []
    checked = clean = clean_scored = 0
    for q in questions:
        if q.blank:
            continue
        checked += 1
        result = decontext.explain(q.question, lang, country)
        rules.update(result.rules)
        for name in result.kept:
            kept.setdefault(name, []).append(q.id)
        if not result.named:
            unnamed.append({**_example(q), "translation": q.question_en})
        if result.residual is not None:
            residual.append(_example(q, result, result.residual))
        if result.dangling is not None:
            dangling.append(_example(q, result, result.dangling))
        clean += result.clean
        clean_scored += result.clean and not q.skipped
    report["decontext"] = {
        "checked": checked,  # non-blank questions
        "named": checked - len(unnamed),
        "clean": clean,
        "coverage_pct": 100.0 * clean / checked if checked else 0.0,
        "scored_clean": clean_scored if annotated else None,
        "rules": dict(sorted(rules.items(), key=lambda kv: (-kv[1], kv[0]))),
        "kept": kept,
        "kept_counts": {name: len(ids) for name, ids in kept.items()},
        "kept_questions": len({qid for ids in kept.values() for qid in ids}),
        "no_local_mention": unnamed,
        "residual": residual,
        "dangling": dangling,
    }
    return report


def check_blend(source: PathLike, countries: Sequence[str] | None = None) -> dict[str, Any]:
    """The audit of every country in ``countries`` (default: those of :func:`default_countries`)."""
    if is_hub_id(source):
        raise DataError(f"data check reads local files; {source!r} is not a folder (download the files first)")
    if not os.path.isdir(os.fspath(source)):
        raise DataError(f"data root {os.fspath(source)!r} is not a folder")
    chosen = list(countries) if countries else default_countries(source)
    if not chosen:
        raise DataError(
            f"no BLEnD question files under {os.fspath(source)!r} (expected blend/questions/{{Country}}_questions.csv)"
        )
    reports = [check_country(source, c) for c in chosen]
    langs = sorted({r["lang"] for r in reports if r["lang"]})
    audited = [r["decontext"] for r in reports if r["decontext"] is not None]
    checked = sum(d["checked"] for d in audited)
    clean = sum(d["clean"] for d in audited)
    return {
        "data": os.fspath(source),
        "countries": reports,
        "files": check_files(source, langs),
        "totals": {
            "questions": sum(r["questions"] for r in reports),
            "scored": sum(r["scored"] for r in reports) if all(r["annotated"] for r in reports) else None,
            "checked": checked,
            "clean": clean,
            "kept_questions": sum(d["kept_questions"] for d in audited),
            "coverage_pct": 100.0 * clean / checked if checked else 0.0,
            "min_coverage_pct": min((d["coverage_pct"] for d in audited), default=0.0),
        },
    }


def check_files(source: PathLike, langs: Sequence[str]) -> list[dict[str, Any]]:
    """Whether the other datasets an experiment reads are found and parse under ``source``: Global-MMLU test
    and dev of each language (rows, and the culturally agnostic subset the paper scores), FLORES dev pairs
    English → each language (EN extraction), OASST1 and OpenAssistantXX (the alignment baselines). One entry
    each: ``status`` ``ok`` (with ``rows``), ``missing`` or ``error`` (with the loader's one line)."""
    from jaxsteer.data.flores import load_flores_pairs
    from jaxsteer.data.gmmlu import load_gmmlu, select_subset
    from jaxsteer.data.oasst import load_oasst1_pairs, load_oasst_xx

    def entry(dataset: str, lang: str | None, load) -> dict[str, Any]:
        out: dict[str, Any] = {"dataset": dataset, "lang": lang}
        try:
            out.update(status="ok", **load())
        except MissingFileError as e:
            out.update(status="missing", detail=str(e))
        except DataError as e:
            out.update(status="error", detail=str(e))
        except (ValueError, TypeError, KeyError, OverflowError, OSError) as e:  # a loader's unforeseen case:
            out.update(status="error", detail=f"{type(e).__name__}: {e}")  # reported, the audit goes on
        return out

    def gmmlu(lang: str, split: str):
        def load():
            rows = load_gmmlu(source, lang, split, subset="all")
            return {"rows": len(rows), "culturally_agnostic": len(select_subset(rows, "CA"))}

        return load

    entries = []
    for lang in langs:
        for split in ("test", "dev"):
            entries.append(entry(f"Global-MMLU {split}", lang, gmmlu(lang, split)))
        if lang != "en":
            entries.append(entry("FLORES dev en→" + lang, lang, lambda lang=lang: {"rows": len(load_flores_pairs(source, "en", lang))}))  # fmt: skip
    entries.append(entry("OASST1 (en pairs)", None, lambda: {"rows": len(load_oasst1_pairs(source))}))
    entries.append(entry("OpenAssistantXX", None, lambda: {"rows": len(load_oasst_xx(source))}))
    return entries


def format_report(report: dict[str, Any], examples: int = 3) -> str:
    """The audit as text: a table per country, then the reasons, rules, kept cues and defects."""
    head = (
        f"{'country':<12} {'lang':<4} {'questions':>9} {'skipped':>7} {'scored':>6} {'named':>5} {'clean':>5} "
        f"{'kept':>4} {'coverage':>8}"
    )
    lines = [f"BLEnD preprocessing of {report['data']}", head]
    for r in report["countries"]:
        d = r["decontext"] or {}
        cov = f"{d['coverage_pct']:7.1f}%" if d else "   (none)"
        lines.append(
            f"{r['country']:<12} {r['lang'] or '-':<4} {r['questions']:>9} {sum(r['skipped'].values()):>7} "
            f"{_unknown(r['scored']):>6} {d.get('named', '-'):>5} {d.get('clean', '-'):>5} "
            f"{d.get('kept_questions', '-'):>4} {cov:>8}"
        )
    t = report["totals"]
    lines.append(
        f"{'all':<12} {'':<4} {t['questions']:>9} {'':>7} {_unknown(t['scored']):>6} {'':>5} {t['clean']:>5} "
        f"{t['kept_questions']:>4} {t['coverage_pct']:7.1f}%"
    )
    for r in report["countries"]:
        c, d = r["country"], r["decontext"]
        if not r["annotated"]:
            lines.append(
                f"{c}: no annotation file ({c}_data.json): only blank questions counted as skipped, scored unknown"
            )
        for reason, ids in r["skipped_ids"].items():
            lines.append(f"{c}: skipped {len(ids)} ({reason}): {_ids(ids, examples)}")
        if extra := r.get("annotation_only_ids"):
            lines.append(
                f"{c}: {len(extra)} annotated ID(s) not in the questions file (BLEnD's scorer counts them, jaxsteer "
                f"cannot): {_ids(extra, examples)}"
            )
        if d is None:
            lines.append(f"{c}: no decontextualisation rules for language {r['lang']!r}")
            continue
        if d["rules"]:
            lines.append(f"{c}: rules fired: " + ", ".join(f"{k} {v}" for k, v in d["rules"].items()))
        for name, ids in d["kept"].items():
            lines.append(f"{c}: kept on purpose in {len(ids)}, {name}: {_ids(ids, examples)}")
        for row in d["no_local_mention"][:examples]:
            lines.append(
                f"{c}: no country mention in {row['id']} {row['question']!r} (English: {row['translation']!r})"
            )
        for kind in ("residual", "dangling"):
            for row in d[kind][:examples]:
                lines.append(
                    f"{c}: {kind} {row['left']!r} in {row['id']}: {row['question']!r} -> {row['decontextualised']!r}"
                )
            if len(d[kind]) > examples:
                lines.append(f"{c}: … {len(d[kind]) - examples} more {kind} (see --json)")
    if report.get("files"):
        lines.append("other datasets of the experiment (languages of the countries above):")
        for f in report["files"]:
            where = f"{f['dataset']}" + (
                f" [{f['lang']}]" if f["lang"] and not f["dataset"].endswith(f["lang"]) else ""
            )
            if f["status"] == "ok":
                extra = f", {f['culturally_agnostic']} culturally agnostic" if "culturally_agnostic" in f else ""
                lines.append(f"  {where}: ok, {f['rows']} rows{extra}")
            else:
                lines.append(f"  {where}: {f['status']}: {f['detail']}")
    return "\n".join(lines) + "\n"


def _unknown(value: int | None) -> str:
    return "-" if value is None else str(value)


def _ids(ids: Sequence[str], n: int) -> str:
    return ", ".join(ids[:n]) + (f" … (+{len(ids) - n})" if len(ids) > n else "")
