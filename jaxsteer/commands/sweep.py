"""``jaxsteer sweep``: accuracy over layers × γ for a vector file — Global-MMLU by log-likelihood (one
shared-prefix call per chunk of grid points) or BLEnD by greedy generation (``--bench blend``: every grid
point decoded in the same generation call per batch of questions).

Prints the best point by the library's selection rule (:mod:`jaxsteer.study.selection`: ties → smaller |γ|,
then lower layer) with the items behind it and the points it ties with; ``sweep.json`` records the same.
"""

from __future__ import annotations

import os

from jaxsteer.commands._common import add_experiment_args, add_overwrite_arg, experiment_config


def register(sub) -> None:
    p = sub.add_parser("sweep", help="sweep layers × γ of one vector on Dev2 (shared-prefix, batched)")
    add_experiment_args(p)
    p.add_argument("--vectors", required=True, help="vector file (.safetensors) from jaxsteer extract")
    p.add_argument("--layers", help="comma-separated layers (default: the config's sweep_layers or all)")
    p.add_argument("--gammas", help="comma-separated γ values (default: the config's sweep_gammas)")
    p.add_argument("--part", default="dev2", choices=["dev1", "dev2", "test"])
    p.add_argument("--bench", default="gmmlu", choices=["gmmlu", "blend"], help="benchmark scored (default gmmlu)")
    p.add_argument("--force", action="store_true", help="apply a vector made for another config hash")
    add_overwrite_arg(p)
    p.set_defaults(func=run)


def _numbers(text, cast):
    from jaxsteer.errors import ConfigError

    try:
        values = [cast(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"cannot parse {text!r} as a comma-separated list") from None
    if not values:
        raise ConfigError(f"{text!r} names no value: give a comma-separated list")
    return values


SWEEP_FILES = ("sweep.csv", "sweep.json", "sweep_heatmap.png", "sweep_heatmap.svg")


def run(args) -> int:
    from jaxsteer.commands._common import claim_results, load_model, note_other_languages
    from jaxsteer.outputs import check_output_folder
    from jaxsteer.results import provenance, write_csv, write_json
    from jaxsteer.steering.figures import plot_sweep_heatmap
    from jaxsteer.steering.sweep import layer_gamma_grid, layer_passes
    from jaxsteer.steering.vectors_io import check_compatible, check_nonzero_at, load_vectors
    from jaxsteer.study.evaluate import blend_accuracies, gmmlu_grid_logprobs, gmmlu_inputs
    from jaxsteer.study.experiment import Benchmarks, check_gamma
    from jaxsteer.study.selection import best_of_table, sweep_table

    cfg, _ = experiment_config(args)
    check_output_folder(cfg.out)
    gammas = [check_gamma(g, "--gammas") for g in _numbers(args.gammas, float)] if args.gammas else None
    model = load_model(cfg)
    vset = load_vectors(args.vectors)
    check_compatible(vset, model.config, force=args.force)
    note_other_languages(vset, args.vectors, cfg.languages)
    layers = _numbers(args.layers, int) if args.layers else list(cfg.sweep_layers or range(model.config.num_layers))
    gammas = gammas or list(cfg.sweep_gammas)
    grid = layer_gamma_grid(vset.vectors, layers, gammas)
    if any(g != 0 for g in gammas):
        check_nonzero_at(vset, layers, args.vectors)
    folder = claim_results(cfg.out, model, cfg.seed, args.overwrite, SWEEP_FILES)
    bench = Benchmarks(cfg)
    rows = []
    metric = f"{args.bench}_accuracy"
    for lang in cfg.languages:
        if args.bench == "blend":
            acc = blend_accuracies(model, bench, lang, args.part, plans=grid, progress=not args.quiet)
            n = len(bench.blend(lang, args.part))
        else:
            answers = gmmlu_inputs(model, bench, lang, args.part)[3]
            logp = gmmlu_grid_logprobs(model, bench, lang, args.part, grid, progress=not args.quiet)
            acc = (logp.argmax(-1) == answers[None]).mean(-1) * 100
            n = len(answers)
        rows += [{"lang": lang, **lab, metric: float(a), "n": n} for lab, a in zip(grid.labels, acc)]
    table = sweep_table(rows, metric)
    best = best_of_table(table)
    folder.set_aside_earlier()
    paths = [write_csv(os.path.join(cfg.out, "sweep.csv"), rows)]
    paths += [
        write_json(
            os.path.join(cfg.out, "sweep.json"),
            {
                "rows": rows,
                "mean": table,
                "best": best.to_dict(),
                "layer_passes": layer_passes(grid, model.config.num_layers, cfg.chunk_size),
                "vectors": os.path.abspath(args.vectors),
                "part": args.part,
                "bench": args.bench,
                "provenance": provenance(model, seed=cfg.seed, command="jaxsteer sweep"),
            },
        )
    ]
    baseline = next((r["metric"] for r in table if r["gamma"] == 0.0), None)
    paths += plot_sweep_heatmap(
        [(r["layer"], r["gamma"], r["metric"]) for r in table],
        os.path.join(cfg.out, "sweep_heatmap"),
        baseline=baseline,
        metric={"gmmlu": "Global-MMLU acc (%)", "blend": "BLEnD acc (%)"}[args.bench],
        best=(best.layer, best.gamma),
    )
    folder.finish("sweep", paths)
    print(f"best (mean over {', '.join(cfg.languages)}): {best.describe()}")
    print(f"wrote {os.path.join(cfg.out, 'sweep.csv')}, sweep.json, sweep_heatmap.png")
    return 0
