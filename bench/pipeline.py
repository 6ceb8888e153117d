"""The paper's whole experiment end to end at real scale, stage by stage, and beside it the naive HF pipeline.

    PYTHONPATH=. python3 bench/pipeline.py --model 12b --langs zh,ko,es,id,el,fa --gmmlu-rows 1000 \\
        --blend-rows 500 --out $OUT [--hf-subset zh:100:200] [--parts full,subset,hf] [--skip-hf] \\
        [--decode-layout auto|scan]
    PYTHONPATH=. python3 bench/pipeline.py --model tiny --gmmlu-rows 60 --blend-rows 40 --langs zh,ko --out /tmp/p

What runs (each part in its own child process, one after the other, so every JAX run compiles from cold
and JAX and PyTorch never share the GPU):

1. here: a synthetic data root in the released Global-MMLU/BLEnD schemas and a BPE tokenizer with Gemma's
   special tokens and chat template (``pipeline_world``); prompt lengths are printed;
2. ``full``: ``jaxsteer.study.pipeline.run_experiment`` with configs/experiments/sur_gemma3_12b.yaml's
   settings (Dev1/Dev2 100, γ grid of 9, batch 32, 24 new tokens, chat template) on random bf16 weights of
   the named config built on the device — wall time, XLA compiles and compile seconds per stage;
3. ``subset``: jaxsteer on one language's subset (N test Global-MMLU items scored, 9-γ LOC selection on
   M Dev2 BLEnD items), cold then warm, on weights shared with the baseline;
4. ``hf``: the same subset the naive way (HF ``generate`` with a forward hook, one γ at a time), same weights.

Prints a stage table, the goals of issue 10 and the HF/jaxsteer ratio; writes ``pipeline.json`` (and the
experiment's Δ tables and plans) under ``--out``. ``--parts`` picks parts (a 12B full run and the subset
comparison may not fit one 10-minute call together: run ``--parts full`` and ``--parts subset,hf``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.dirname(HERE))

import pipeline_world as world  # noqa: E402

GOAL_TOTAL_S, GOAL_SELECTION, GOAL_RATIO = 480.0, 0.15, 5.0
GROUPS = (("plain eval (models not steered)", "eval plain"), ("extraction", "extract"), ("Dev2 selection", "select"),
          ("test evals (plain, EN, LOC, SUR, random together)", "eval "))  # fmt: skip


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="12b", help="config preset: 12b, 4b, 1b or tiny (default 12b)")
    ap.add_argument("--langs", default=",".join(world.LANGS), help="comma-separated, of " + ",".join(world.LANGS))
    ap.add_argument("--gmmlu-rows", type=int, default=1000, help="culturally agnostic questions per language")
    ap.add_argument("--blend-rows", type=int, default=500, help="BLEnD questions per country")
    ap.add_argument("--dev1", type=int, default=100)
    ap.add_argument("--dev2", type=int, default=100)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=24)
    ap.add_argument("--vocab", type=int, default=0, help="tokenizer size (default 16384; tiny 8192)")
    ap.add_argument("--question-words", default="", help="MIN:MAX words per Global-MMLU question (55:125; tiny 8:24)")
    ap.add_argument("--hf-subset", default="", help="LANG:BLEND:GMMLU (default first language:100:200)")
    ap.add_argument("--parts", default="full,subset,hf", help="any of full, subset, hf")
    ap.add_argument("--skip-hf", action="store_true", help="same as leaving hf (and subset) out of --parts")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--decode-layout", default="auto", choices=("auto", "scan", "unrolled", "sliced", "moved"),
                    help="the experiment's decode_layout (scan: the fast-compiling layout for a one-off run)")  # fmt: skip
    ap.add_argument("--work", default="", help="scratch folder (default: a temporary one, removed)")
    ap.add_argument("--out", help="folder for pipeline.json and the experiment's tables (required)")
    ap.add_argument("--child", choices=("full", "subset", "rerun", "hf"), help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def make_spec(args, work: str) -> dict:
    langs = [x.strip() for x in args.langs.split(",") if x.strip()]
    unknown = [x for x in langs if x not in world.LANGS]
    if unknown or not langs:
        raise SystemExit(f"--langs: {','.join(unknown) or 'none given'}; expected some of {','.join(world.LANGS)}")
    # Dev1 + Dev2 + a test part must fit the smaller benchmark (smoke runs shrink them)
    fit = min(args.gmmlu_rows, args.blend_rows) // 3
    dev1, dev2 = min(args.dev1, fit), min(args.dev2, fit)
    if (dev1, dev2) != (args.dev1, args.dev2):
        print(f"[bench] {min(args.gmmlu_rows, args.blend_rows)} rows: Dev1/Dev2 shrunk to {dev1}/{dev2}", flush=True)
    try:
        lang, blend, gmmlu = (args.hf_subset or f"{langs[0]}:100:200").split(":")
        subset = {"lang": lang, "blend": min(int(blend), dev2), "gmmlu": int(gmmlu)}
    except ValueError:
        raise SystemExit(f"--hf-subset {args.hf_subset!r}: expected LANG:BLEND:GMMLU, e.g. zh:100:200") from None
    if lang not in langs:
        raise SystemExit(f"--hf-subset language {lang} is not in --langs")
    from jaxsteer.config import PRESETS

    if args.model not in PRESETS:
        raise SystemExit(f"--model {args.model}: expected one of {', '.join(PRESETS)}")
    parts = [p for p in args.parts.split(",") if p]
    if args.skip_hf:
        parts = [p for p in parts if p not in ("subset", "hf")]
    if any(p not in ("full", "subset", "hf") for p in parts):
        raise SystemExit(f"--parts {args.parts}: expected any of full, subset, hf")
    return {
        "model": args.model, "langs": langs, "gmmlu_rows": args.gmmlu_rows, "blend_rows": args.blend_rows,
        "dev1": dev1, "dev2": dev2, "batch": args.batch, "new_tokens": args.new_tokens, "gammas": list(world.GAMMAS),
        "seed": args.seed, "work": work, "parts": parts,
        "vocab": args.vocab or (8192 if args.model == "tiny" else 16384),
        "question_words": [int(x) for x in (args.question_words or ("8:24" if args.model == "tiny" else "55:125")).split(":")],
        "subset": subset, "decode_layout": args.decode_layout,
    }  # fmt: skip


# --- the parent ------------------------------------------------------------------------------------------
def prompt_lengths(spec: dict, tok) -> dict:
    """Tokens per templated prompt (test part), per language and benchmark: what the model actually sees."""
    import numpy as np

    from jaxsteer.data import prompts
    from jaxsteer.study.experiment import Benchmarks

    bench = Benchmarks(world.experiment_config(spec, os.path.join(spec["work"], "lengths")))
    out = {}
    for lang in spec["langs"]:
        gm = [prompts.mc_prompt(q, True, tok).context for q in bench.gmmlu(lang, "test")]
        bl = [bench.blend_prompt(it.decontextualised, lang, tok) for it in bench.blend(lang, "test")]
        stats = {}
        for name, texts in (("gmmlu", gm), ("blend", bl)):
            n = np.array([len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts])
            stats[name] = {"items": len(n), "mean": float(n.mean()), "p90": float(np.percentile(n, 90)),
                           "max": int(n.max())}  # fmt: skip
        out[lang] = stats
    return out


def run_child(role: str, spec_path: str, out: str) -> dict | None:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (os.path.dirname(HERE), env.get("PYTHONPATH", "")) if p)
    if role == "hf":
        env["JAX_PLATFORMS"] = "cpu"  # jaxsteer is imported for prompts and scoring only: keep JAX off the GPU
    print(f"\n[bench] --- {role} ---", flush=True)
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", role, "--spec", spec_path], env=env)
    path = os.path.join(out, "parts", f"{role}.json")
    result = None
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            result = json.load(f)
    if proc.returncode != 0:
        print(f"[bench] {role} exited with {proc.returncode} after {time.perf_counter() - t:.0f} s", flush=True)
    if result is not None:
        result["process_s"] = time.perf_counter() - t
        result["returncode"] = proc.returncode
    return result


def save(out: str, report: dict) -> None:
    os.makedirs(out, exist_ok=True)
    tmp = os.path.join(out, ".pipeline.json.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1, default=float)
    os.replace(tmp, os.path.join(out, "pipeline.json"))


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.child:
        with open(args.spec, encoding="utf-8") as f:
            spec = json.load(f)
        out_path = os.path.join(spec["out"], "parts", f"{args.child}.json")  # written as it goes: survives a timeout
        os.makedirs(os.path.dirname(out_path), exist_ok=True)
        if args.child == "hf":
            from pipeline_hf import run_hf

            run_hf(spec, out_path)
        else:
            import pipeline_jax

            (pipeline_jax.run_full if args.child == "full" else pipeline_jax.run_subset)(spec, out_path, args.child)
        return
    if not args.out:
        raise SystemExit("--out is required")
    spec = make_spec(args, "")
    work = spec["work"] = args.work or tempfile.mkdtemp(prefix="jaxsteer-pipeline-")
    os.makedirs(work, exist_ok=True)
    spec["out"] = os.path.abspath(args.out)
    report: dict = {"command": " ".join(sys.argv), "spec": spec, "date": time.strftime("%Y-%m-%d %H:%M")}
    t = time.perf_counter()
    spec["data"], spec["tokenizer"], tok = world.build_world(
        work, spec["langs"], spec["gmmlu_rows"], spec["blend_rows"], spec["vocab"], spec["seed"], spec["question_words"]
    )
    report["world_s"] = time.perf_counter() - t
    report["prompt_tokens"] = prompt_lengths(spec, tok)
    print_world(spec, report, len(tok))
    spec_path = os.path.join(work, "spec.json")
    with open(spec_path, "w", encoding="utf-8") as f:
        json.dump(spec, f)
    try:
        for role in ("full", "subset", "rerun", "hf"):
            if role in spec["parts"] or (role == "rerun" and "subset" in spec["parts"]):
                report[role] = run_child(role, spec_path, spec["out"])
                save(args.out, report)
            if role == "full" and report.get("full"):
                print_full(report)  # now: the later parts may not fit the caller's time limit
                if report["full"].get("experiment_dir"):
                    keep_experiment_tables(report["full"]["experiment_dir"], os.path.join(args.out, "experiment"))
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print_subset(report)
    print_goals(report)
    save(args.out, report)


def keep_experiment_tables(src: str, dst: str) -> None:
    """The experiment's small outputs (Δ tables, plane, plans); vectors and responses stay behind."""
    os.makedirs(dst, exist_ok=True)
    for name in sorted(os.listdir(src)):
        if name.endswith((".md", ".csv", ".plans.json", ".png")):
            shutil.copy2(os.path.join(src, name), os.path.join(dst, name))


# --- printing --------------------------------------------------------------------------------------------
def print_world(spec: dict, report: dict, vocab: int) -> None:
    print(f"[bench] model {spec['model']}, languages {','.join(spec['langs'])}: {spec['gmmlu_rows']} Global-MMLU CA "
          f"rows and {spec['blend_rows']} BLEnD questions each (Dev1 {spec['dev1']}, Dev2 {spec['dev2']}), "
          f"tokenizer {vocab} tokens; built in {report['world_s']:.1f} s", flush=True)  # fmt: skip
    print(
        "[bench] tokens per test prompt (chat template):  Global-MMLU mean / p90 / max   BLEnD mean / max", flush=True
    )
    for lang, s in report["prompt_tokens"].items():
        g, b = s["gmmlu"], s["blend"]
        print(f"[bench]   {lang}: {g['items']:5d} items  {g['mean']:6.1f} / {g['p90']:5.0f} / {g['max']:4d}      "
              f"{b['items']:4d} items  {b['mean']:5.1f} / {b['max']:3d}", flush=True)  # fmt: skip


def _short(stage: str, parent: str | None, has_parts: bool) -> str:
    """A nested stage as ``  └ part`` under its parent's line; a stage with parts as ``… (own time)``."""
    name = stage
    if parent and parent != "experiment" and stage.startswith(parent + ": "):
        name = "  " * stage.count(": ") + "└ " + stage[len(parent) + 2 :]
    if len(name) > 40:
        name = name[:39] + "…"
    return name + (" (own)" if has_parts else "")


def _line(name: str, wall: float, calls, compiles, compile_s, share=None) -> str:
    pct = f"{100 * share:5.1f} %" if share is not None else ""
    return f"  {name:<44} {wall:9.1f} {pct:>8} {calls!s:>6} {compiles!s:>9} {compile_s:10.1f}"


HEADER = f"  {'stage':<44} {'wall s':>9} {'share':>8} {'calls':>6} {'compiles':>9} {'compile s':>10}"


def print_full(report: dict) -> None:
    """Each timed stage's own time (an evaluation's Global-MMLU and BLEnD parts apart), then the groups."""
    full = report["full"]
    rows = {r["stage"]: r for r in full.get("stages", [])}
    in_experiment = [r for r in rows.values() if r["parent"] is not None]
    top = [r for r in in_experiment if r["parent"] == "experiment"]
    # unfinished (a timeout): the experiment's own row has no time yet, its finished stages have
    total = rows["experiment"]["wall_s"] if full.get("done") else sum(r["wall_s"] for r in top)
    share = lambda s: s / total if total else None  # noqa: E731
    env = full["environment"]
    print("\n" + "=" * len(HEADER))
    print(
        f"whole experiment (run_experiment{'' if full.get('done') else ', UNFINISHED'}) — {env['device']}, jax {env['jax']}"
    )
    print(HEADER)
    for r in rows.values():
        if r["stage"] == "experiment":
            print(
                _line(
                    "rest: writing results/vectors, plane",
                    r["self_s"],
                    1,
                    r["compiles"],
                    r["compile_s"],
                    share(r["self_s"]),
                )
            )
        else:  # a stage with parts: its own time, then each part
            print(
                _line(
                    _short(r["stage"], r["parent"], bool(r["inner_s"])),
                    r["self_s"],
                    r["calls"],
                    r["compiles"],
                    r["compile_s"],
                    share(r["self_s"]) if r in in_experiment else None,
                )
            )
    print("  " + "-" * (len(HEADER) - 2))
    for label, prefix in GROUPS:
        picked = [
            r for r in top if r["stage"].startswith(prefix) and not (prefix == "eval " and r["stage"] == "eval plain")
        ]
        names = {r["stage"] for r in picked}
        nested = picked + [r for r in in_experiment if r["parent"] in names]
        wall = sum(r["wall_s"] for r in picked)
        print(_line(label, wall, sum(r["calls"] for r in picked), sum(r["compiles"] for r in nested),
                    sum(r["compile_s"] for r in nested), share(wall)))  # fmt: skip
    counted = in_experiment + [rows["experiment"]] if "experiment" in rows else in_experiment
    compiles, compile_s = sum(r["compiles"] for r in counted), sum(r["compile_s"] for r in counted)
    print(_line("TOTAL run_experiment", total, "", compiles, compile_s, 1.0 if total else None))
    if full.get("compilation_cache_hits"):
        print(f"  ({full['compilation_cache_hits']} of the compiles were persistent compilation-cache hits)")
    for what, shapes in full.get("shapes", {}).items():  # rows × width (× plans): one compile each
        print(f"  {what} shapes: " + ", ".join("×".join(map(str, s)) for s in shapes))
    selection = sum(r["wall_s"] for r in top if r["stage"].startswith("select"))
    report["summary"] = {"experiment_s": total, "selection_s": selection, "compiles": compiles, "compile_s": compile_s}
    sys.stdout.flush()


def print_subset(report: dict) -> None:
    sub, hf, header = report.get("subset"), report.get("hf"), HEADER
    if sub or hf:
        print("\n" + "=" * len(header), flush=True)
    if sub:
        print(f"\nsubset ({report['spec']['subset']['lang']}: {sub.get('items', {}).get('gmmlu')} Global-MMLU test items "
              f"scored + {len(report['spec']['gammas'])}-γ LOC selection on {sub.get('items', {}).get('blend')} "
              f"Dev2 BLEnD items, layer {sub.get('items', {}).get('layer')})")  # fmt: skip
        print(header)
        for r in sub.get("stages", []):
            print(_line(r["stage"], r["self_s"], r["calls"], r["compiles"], r["compile_s"]))
        for run, v in sub.get("runs", {}).items():
            print(f"  jaxsteer {run}: {v['total_s']:.1f} s, Global-MMLU {v['gmmlu_accuracy']:.1f} %, "
                  f"Dev2 BLEnD by γ {_accs(v['loc_dev2_blend'])}")  # fmt: skip
    if hf:
        if not hf.get("done"):
            print(f"  HF naive: UNFINISHED, {json.dumps(hf)[:600]}")
            return
        print(f"  HF naive ({hf['device']}, torch {hf['torch']}, transformers {hf['transformers']}): "
              f"{hf['total_s']:.1f} s = Global-MMLU {hf['gmmlu_s']:.1f} s + LOC selection {hf['loc_selection_s']:.1f} s "
              f"(model build {hf['build_s']:.1f} s, {hf['mean_generated_tokens']:.1f} new tokens per generate), "
              f"Global-MMLU {hf['gmmlu_accuracy']:.1f} %, Dev2 BLEnD by γ {_accs(hf['loc_dev2_blend'])}")  # fmt: skip


def _accs(scores: dict) -> str:
    return " ".join(f"{v:.0f}" for v in scores.values())


def print_goals(report: dict) -> None:
    spec, summary = report["spec"], report.get("summary")
    real = (
        spec["model"] == "12b" and len(spec["langs"]) == 6 and spec["gmmlu_rows"] >= 1000 and spec["blend_rows"] >= 500
    )
    print("\ngoals (issue 10, one H200" + ("" if real else "; this run is NOT the goal's setting") + "):")
    if summary:
        total, sel = summary["experiment_s"], summary["selection_s"]
        print(
            f"  whole experiment {total:.1f} s (goal ≤ {GOAL_TOTAL_S:.0f} s): {'met' if total <= GOAL_TOTAL_S else 'NOT met'}"
        )
        share = sel / total if total else float("nan")
        print(f"  selection {sel:.1f} s = {100 * share:.1f} % (goal ≤ {100 * GOAL_SELECTION:.0f} %): "
              f"{'met' if share <= GOAL_SELECTION else 'NOT met'}")  # fmt: skip
        print(f"  XLA compiles in the experiment: {summary['compiles']} ({summary['compile_s']:.1f} s)")
    sub, hf = report.get("subset") or {}, report.get("hf") or {}
    cold, warm = sub.get("runs", {}).get("cold"), sub.get("runs", {}).get("warm")
    if cold and hf.get("done"):
        ratio = hf["total_s"] / cold["total_s"]
        report["ratio_cold"] = ratio
        print(f"  HF naive / jaxsteer on the subset: {hf['total_s']:.1f} / {cold['total_s']:.1f} s = {ratio:.2f}× "
              f"with jaxsteer's compiles (goal ≥ {GOAL_RATIO:.0f}×): {'met' if ratio >= GOAL_RATIO else 'NOT met'}")  # fmt: skip
        rerun = ((report.get("rerun") or {}).get("runs") or {}).get("cold")
        if rerun:
            report["ratio_rerun"] = hf["total_s"] / rerun["total_s"]
            print(f"  same, jaxsteer in a new process whose persistent XLA cache the first run filled (what a rerun or "
                  f"--resume gets): {hf['total_s']:.1f} / {rerun['total_s']:.1f} s = {report['ratio_rerun']:.2f}× "
                  f"(goal ≥ {GOAL_RATIO:.0f}×): {'met' if report['ratio_rerun'] >= GOAL_RATIO else 'NOT met'}")  # fmt: skip
        if warm:
            report["ratio_warm"] = hf["total_s"] / warm["total_s"]
            print(f"  same, jaxsteer warm (compiled): {hf['total_s']:.1f} / {warm['total_s']:.1f} s = "
                  f"{report['ratio_warm']:.2f}×")  # fmt: skip
    sys.stdout.flush()


if __name__ == "__main__":
    main()
