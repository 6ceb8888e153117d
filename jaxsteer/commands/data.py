"""``jaxsteer data check DATA_ROOT``: audit the BLEnD preprocessing on real files before spending GPU hours."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("data", help="inspect datasets (data check: BLEnD loading and decontextualisation)")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    c = actions.add_parser(
        "check",
        help="per country: questions loaded/skipped (and why), decontextualisation coverage, rules, kept cues",
    )
    c.add_argument("data", metavar="DATA_ROOT", help="data root (layout in jaxsteer/data/files.py)")
    c.add_argument("--country", action="append", help="BLEnD country or language code (repeatable; default: all found)")
    c.add_argument("--json", action="store_true", help="print the full report as JSON instead of text")
    c.add_argument("--out", help="also write the full report as JSON to this file")
    c.add_argument("--examples", type=int, default=3, help="examples per finding in the text report (default 3)")
    c.add_argument(
        "--fail-under", type=float, default=None, metavar="PCT", help="exit 1 when a country's coverage is below PCT"
    )
    c.set_defaults(func=run)


def run(args) -> int:
    import sys

    from jaxsteer.data.check import check_blend, format_report
    from jaxsteer.errors import ConfigError
    from jaxsteer.outputs import check_output_file
    from jaxsteer.results import provenance, write_json

    if args.examples < 0:
        raise ConfigError(f"--examples {args.examples}: expected a count >= 0")
    if args.fail_under is not None and not 0 <= args.fail_under <= 100:  # NaN fails too: a gate that never fails
        raise ConfigError(f"--fail-under {args.fail_under}: expected a percentage in 0 … 100")
    if args.out:
        check_output_file(args.out)
    report = check_blend(args.data, args.country)
    report["provenance"] = provenance(command="jaxsteer data check")
    if args.out:
        write_json(args.out, report)
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        print(format_report(report, args.examples), end="")
        if args.out:
            print(f"wrote {args.out}")
    if args.fail_under is None:
        return 0
    low = [
        f"{r['country']} {r['decontext']['coverage_pct']:.1f}%"
        for r in report["countries"]
        if r["decontext"] is not None and r["decontext"]["coverage_pct"] < args.fail_under
    ]
    if low:
        print(f"jaxsteer data check: coverage below {args.fail_under}%: {', '.join(low)}", file=sys.stderr)
        return 1
    return 0
