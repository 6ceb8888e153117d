"""``jaxsteer extract``: EN or LOC vectors for every layer, from the config's data or a pairs file."""

from __future__ import annotations

import json
import os

from jaxsteer.commands._common import add_experiment_args, experiment_config


def register(sub) -> None:
    p = sub.add_parser("extract", help="extract steering vectors (all layers, one pass per batch)")
    add_experiment_args(p)
    p.add_argument("--kind", choices=["en", "loc"], default="en", help="EN (transfer) or LOC (localization)")
    p.add_argument("--pairs", help='JSONL of {"positive": text, "negative": text} (instead of the data)')
    p.set_defaults(func=run)


def read_pairs(path: str) -> tuple[list[str], list[str]]:
    from jaxsteer.errors import DataError

    if not os.path.isfile(path):
        raise DataError(f"no pairs file at {path}")
    pos, neg = [], []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                pos.append(str(row["positive"]))
                neg.append(str(row["negative"]))
            except (json.JSONDecodeError, KeyError, TypeError):
                raise DataError(f"{path} line {n}: expected a JSON object with positive and negative") from None
    return pos, neg


def run(args) -> int:
    from jaxsteer.commands._common import load_model
    from jaxsteer.steering.extract import TokenPairs, extract, normalise
    from jaxsteer.steering.vectors_io import VectorSet, save_vectors
    from jaxsteer.study.experiment import Benchmarks
    from jaxsteer.study.surgical import extract_kind

    cfg, _ = experiment_config(args)
    model = load_model(cfg)
    kind = args.kind.upper()
    out_dir = cfg.out
    if args.pairs:
        pos, neg = read_pairs(args.pairs)
        ex = extract(
            model,
            TokenPairs.from_texts(model.tokenizer, pos, neg, cfg.chat),
            cfg.method,
            cfg.read,
            cfg.batch_size,
            not args.quiet,
        )
        vset = VectorSet.from_config(
            model.config,
            normalise(ex, cfg.normalisation),
            method=ex.method,
            read_position=ex.read,
            kind=kind,
            num_pairs=ex.num_pairs,
            normalisation=cfg.normalisation,
            extra={"pairs_file": os.path.abspath(args.pairs)},
        )
        sets = {"pairs": vset}
    else:
        sets = extract_kind(model, Benchmarks(cfg), kind, cfg.languages, not args.quiet)
    for name, vset in sets.items():
        path = save_vectors(os.path.join(out_dir, f"{args.kind}_{name}.safetensors"), vset)
        norms = vset.vectors.astype("float64") ** 2
        peak = int(norms.sum(-1).argmax())
        print(f"{path}: {vset.num_layers}×{vset.hidden_size}, {vset.meta.num_pairs} pairs, largest at layer {peak}")
    return 0
