"""The padded widths the experiment would plan for the bench's Global-MMLU prompts, per model size, and the BLEnD
prompt lengths its generations are padded over (no model run).

    PYTHONPATH=. python3 bench/shape_plan.py [--langs zh,ko,es,id,el,fa] [--gmmlu-rows 1000] [--blend-rows 500]
        [--platform gpu]

Builds ``bench/pipeline.py``'s synthetic world (same seed, prompt lengths and tokenizer), tokenises every
language's Global-MMLU test prompts through the chat template as the experiment does, and prints, for each
Gemma-3 size, the widths ``jaxsteer.shapes.plan_widths`` picks for the experiment's longest-first batches of
32 (what a compile is worth: ``shape_cost_tokens`` on ``--platform``) against the fixed four-per-octave rule
the experiment used before (``scoring_width``): widths, padded prompt tokens, and the plan's padding overhead
over the tightest 16-token rounding. A prediction of compiles saved and padding paid, not a measurement.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--langs", default="zh,ko,es,id,el,fa")
    ap.add_argument("--gmmlu-rows", type=int, default=1000)
    ap.add_argument("--blend-rows", type=int, default=500)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--platform", default="gpu", help="gpu, tpu or cpu (what a compile is worth there)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import pipeline_world as world

    from jaxsteer.config import preset
    from jaxsteer.data import prompts
    from jaxsteer.shapes import batch_needs, bucket, padded_tokens, plan_widths, scoring_width, shape_cost_tokens
    from jaxsteer.study.experiment import Benchmarks
    from jaxsteer.tokens import encode_batch

    langs = [x for x in args.langs.split(",") if x]
    with tempfile.TemporaryDirectory(prefix="jaxsteer-shapes-") as work:
        data, tok_dir, tok = world.build_world(work, langs, args.gmmlu_rows, args.blend_rows, 16384, args.seed,
                                               (55, 125))  # fmt: skip
        spec = {"langs": langs, "dev1": 100, "dev2": 100, "batch": args.batch, "new_tokens": 24, "seed": args.seed,
                "gammas": list(world.GAMMAS), "data": data, "tokenizer": tok_dir}  # fmt: skip
        bench = Benchmarks(world.experiment_config(spec, os.path.join(work, "out")))
        needs = []
        for lang in langs:
            texts = [prompts.mc_prompt(q, True, tok).context for q in bench.gmmlu(lang, "test")]
            needs += batch_needs(encode_batch(tok, texts)[1].sum(axis=1), args.batch)
        blend = blend_lengths(bench, langs, tok)
    tight = padded_tokens(needs, args.batch, bucket)
    print(f"{len(needs)} batches of {args.batch} ({', '.join(langs)}); platform {args.platform}")
    old = padded_tokens(needs, args.batch, scoring_width)
    widths = sorted({scoring_width(n) for n in needs})
    print(f"  four per octave      {len(widths)} widths {widths}: {old:,} padded tokens (+{old / tight - 1:.1%})")
    for name in ("1b", "4b", "12b", "27b"):
        cost = shape_cost_tokens(preset(name), args.platform)
        plan = plan_widths(needs, args.batch, cost)
        n = padded_tokens(needs, args.batch, plan)
        print(f"  {name:>4} (a width ≈ {cost:>9,} tokens)  {len(plan.sizes)} widths {list(plan.sizes)}: "
              f"{n:,} padded tokens (+{n / tight - 1:.1%})")  # fmt: skip
    print(blend)


def blend_lengths(bench, langs, tok) -> str:
    """Each language's longest and mean BLEnD prompt (Dev2 and test, templated as the experiment does) and the
    one width every BLEnD generation of the experiment is padded to (``study.evaluate.blend_width``, rounded
    to 16 by ``scoring.answer_width``): where the Dev2 selection's padding goes."""
    from jaxsteer.scoring import answer_width
    from jaxsteer.shapes import bucket
    from jaxsteer.study.evaluate import blend_texts, blend_width
    from jaxsteer.tokens import encode_batch

    lines = ["BLEnD generation, tokens per prompt (max/mean, → the max rounded to 16):"]
    for part in ("dev2", "test"):
        cells = []
        for lang in langs:
            lengths = encode_batch(tok, blend_texts(bench, lang, part, tok)[1])[1].sum(axis=1)
            cells.append(f"{lang} {int(lengths.max())}/{lengths.mean():.1f} (→{bucket(int(lengths.max()))})")
        lines.append(f"  {part:>4}  " + ", ".join(cells))
    width = blend_width(bench, tok)
    lines.append(f"  every BLEnD generation is padded to {answer_width(width, width)} tokens (blend_width {width})")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
