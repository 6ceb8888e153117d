"""``jaxsteer plane``: Δ tables and the transfer–localization plane from result files of ``jaxsteer eval``."""

from __future__ import annotations

import glob
import os


def register(sub) -> None:
    p = sub.add_parser("plane", help="Δ tables (CSV, Markdown) and the transfer–localization plane (PNG, SVG)")
    p.add_argument("results", nargs="+", help="folders holding {method}.gmmlu.json / {method}.blend.json")
    p.add_argument("--base", default="base", help="method name of the unaligned reference (default: base)")
    p.add_argument("--out", default="plane", help="output folder")
    p.add_argument("--lang", action="append", help="restrict to these languages")
    p.add_argument("--overwrite", action="store_true", help="move an earlier plane's files in --out to replaced-DATE/")
    p.set_defaults(func=run)


def run(args) -> int:
    from jaxsteer.errors import DataError
    from jaxsteer.outputs import check_plain_outputs, move_aside
    from jaxsteer.study import metrics
    from jaxsteer.study.compare import PLANE_FILES, compare, format_tables, write_comparison

    earlier = check_plain_outputs(args.out, PLANE_FILES, args.overwrite)
    seen = [os.path.realpath(f) for f in args.results]
    if len(set(seen)) < len(seen):  # each result would count twice, with a spread of 0
        raise DataError(f"a results folder is given twice: {' '.join(args.results)}")
    runs: dict[str, dict[str, list]] = {"gmmlu": {}, "blend": {}}
    for folder in args.results:
        if not os.path.isdir(folder):
            raise DataError(f"no results folder at {folder}")
        for bench in runs:
            for path in sorted(glob.glob(os.path.join(folder, f"*.{bench}.json"))):
                result = metrics.load_result(path)
                runs[bench].setdefault(result.method, []).append(result)
    for bench, by_method in runs.items():
        if args.base not in by_method:
            raise DataError(f"no {bench} result for the base method {args.base!r} in {', '.join(args.results)}")
        if len(by_method) < 2:  # nothing to compare: the plane would have no point (refused before any write)
            raise DataError(
                f"no {bench} result of a method besides the base {args.base!r} in {', '.join(args.results)}"
            )
    # methods evaluated on different languages (`jaxsteer eval --lang ko` beside a full base run) are
    # compared where all of them were measured, and the user is told what was left out
    common, missing = metrics.common_languages(runs, args.base)
    left_out = "; ".join(f"{lang} (no result from {', '.join(m)})" for lang, m in missing.items())
    langs = args.lang or common
    if not langs:
        raise DataError(f"no language has a result for every method in {', '.join(args.results)}: {left_out}")
    if missing and not args.lang:
        print(f"comparing on {', '.join(langs)}, the languages every method has; left out: {left_out}")
    compare(runs, args.base, langs)  # every check of the comparison (seeds, protocols, both benchmarks) first
    os.makedirs(args.out, exist_ok=True)
    move_aside(args.out, earlier)
    out = write_comparison(args.out, runs, args.base, langs, command="jaxsteer plane")
    print(format_tables(out["tables"], args.base))
    png, svg = out["plane"]
    print(f"wrote {png}, {svg}, delta_gmmlu.md, delta_blend.md, plane.csv, plane.json in {args.out}")
    return 0
