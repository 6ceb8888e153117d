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
    p.set_defaults(func=run)


def run(args) -> int:
    from jaxsteer.errors import DataError
    from jaxsteer.outputs import check_output_folder
    from jaxsteer.study import metrics
    from jaxsteer.study.pipeline import write_comparison

    check_output_folder(args.out)
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
    out = write_comparison(args.out, runs, args.base, args.lang)
    for bench, table in out["tables"].items():
        print(f"Δ {bench} (points vs {args.base}):\n{table.to_markdown()}")
    png, svg = out["plane"]
    print(f"wrote {png}, {svg}, delta_gmmlu.md, delta_blend.md, plane.csv in {args.out}")
    return 0
