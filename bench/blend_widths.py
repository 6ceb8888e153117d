"""BLEnD prompt lengths of the bench world per language and split, and the one width the experiment pads to.

    PYTHONPATH=. python3 bench/blend_widths.py [--langs zh,ko,es,id,el,fa] [--blend-rows 500]

Builds ``bench/pipeline.py``'s synthetic world (same seed, data and tokenizer), templates every Dev2 and test
BLEnD prompt as the experiment does (``study.evaluate.blend_texts``) and prints each language's longest and
mean prompt in tokens, and ``study.evaluate.blend_width`` — the width every BLEnD generation of the
experiment is padded to. Counts, no model run: where the Dev2 selection's padding goes.
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
    ap.add_argument("--blend-rows", type=int, default=500)
    ap.add_argument("--gmmlu-rows", type=int, default=1000)
    args = ap.parse_args(argv)

    import pipeline as P
    import pipeline_world as world

    from jaxsteer.shapes import bucket
    from jaxsteer.study.evaluate import blend_texts, blend_width
    from jaxsteer.study.experiment import Benchmarks
    from jaxsteer.tokens import encode_batch

    with tempfile.TemporaryDirectory() as work:
        spec = P.make_spec(P.parse_args(["--langs", args.langs, "--gmmlu-rows", str(args.gmmlu_rows),
                                         "--blend-rows", str(args.blend_rows), "--out", work]), work)  # fmt: skip
        root, _, tok = world.build_world(work, spec["langs"], spec["gmmlu_rows"], spec["blend_rows"],
                                         spec["vocab"], spec["seed"])  # fmt: skip
        spec["data"] = root
        bench = Benchmarks(world.experiment_config(spec, os.path.join(work, "x")))
        for part in ("dev2", "test"):
            cells = []
            for lang in spec["langs"]:
                lengths = encode_batch(tok, blend_texts(bench, lang, part, tok)[1])[1].sum(axis=1)
                cells.append(f"{lang} {int(lengths.max())}/{lengths.mean():.1f} (→{bucket(int(lengths.max()))})")
            print(f"{part:>4} max/mean tokens: " + ", ".join(cells))
        print(f"the experiment pads every BLEnD generation to {blend_width(bench, tok)} tokens")


if __name__ == "__main__":
    main()
