"""``jaxsteer extract``: EN or LOC vectors for every layer, from the config's data or a pairs file."""

from __future__ import annotations

import io
import json
import os

from jaxsteer.commands._common import add_experiment_args, add_overwrite_arg, experiment_config


def register(sub) -> None:
    p = sub.add_parser("extract", help="extract steering vectors (all layers, one pass per batch)")
    add_experiment_args(p)
    p.add_argument("--kind", choices=["en", "loc"], default="en", help="EN (transfer) or LOC (localization)")
    p.add_argument("--pairs", help='JSONL of {"positive": text, "negative": text} (instead of the data)')
    add_overwrite_arg(p)
    p.set_defaults(func=run)


def read_pairs(path: str) -> tuple[list[str], list[str]]:
    from jaxsteer.data.files import read_text, text_cell
    from jaxsteer.errors import DataError

    if not os.path.isfile(path):
        raise DataError(f"no pairs file at {path}")
    pos, neg = [], []
    for n, line in enumerate(io.StringIO(read_text(path), newline=None), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            pos.append(text_cell(row["positive"], ""))  # a null is "" (then refused as tokenising to nothing)
            neg.append(text_cell(row["negative"], ""))
        except (json.JSONDecodeError, KeyError, TypeError):
            raise DataError(f"{path} line {n}: expected a JSON object with positive and negative") from None
    return pos, neg


def run(args) -> int:
    from jaxsteer.commands._common import claim_results, load_model
    from jaxsteer.outputs import check_output_folder
    from jaxsteer.steering.extract import TokenPairs, extract, normalise
    from jaxsteer.steering.vectors_io import VectorSet, save_vectors
    from jaxsteer.study.experiment import Benchmarks
    from jaxsteer.study.surgical import extract_kind

    cfg, _ = experiment_config(args)
    check_output_folder(cfg.out)
    pairs = read_pairs(args.pairs) if args.pairs else None
    model = load_model(cfg)
    kind = args.kind.upper()
    out_dir = cfg.out
    names = ["pairs"] if pairs else [*cfg.languages, *(["pooled"] if cfg.pooled else [])]
    planned = [f"{args.kind}_{name}.safetensors" for name in names]
    folder = claim_results(out_dir, model, cfg.seed, args.overwrite, planned)
    if pairs:
        pos, neg = pairs
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
        folder.set_aside_earlier()
        path = save_vectors(os.path.join(out_dir, f"{args.kind}_{name}.safetensors"), vset)
        folder.finish(f"vectors:{os.path.basename(path)}", [path])
        norms = vset.vectors.astype("float64") ** 2
        peak = int(norms.sum(-1).argmax())
        print(f"{path}: {vset.num_layers}×{vset.hidden_size}, {vset.meta.num_pairs} pairs, largest at layer {peak}")
    return 0
