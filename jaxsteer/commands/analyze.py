"""``jaxsteer analyze``: how two vector sets relate across depth (cosine, S_PER, norms) and, with a model,
the layer-wise PCA of the same questions in several languages (Global-MMLU vs BLEnD convergence)."""

from __future__ import annotations

import os

from jaxsteer.commands._common import add_experiment_args, add_overwrite_arg, experiment_config

SPER_FILES = ("sper.csv", "sper.png", "sper.svg", "norms.png", "norms.svg")
PCA_FILES = ("pca_convergence.csv", "pca_gmmlu.png", "pca_gmmlu.svg", "pca_blend.png", "pca_blend.svg")


def register(sub) -> None:
    p = sub.add_parser("analyze", help="S_PER / cosine / norms by layer; layer-wise PCA across languages")
    add_experiment_args(p)
    p.add_argument("--a", help="first vector file (e.g. EN)")
    p.add_argument("--b", help="second vector file (e.g. LOC)")
    p.add_argument("--pca", action="store_true", help="layer-wise PCA of Global-MMLU and BLEnD queries (needs --model)")
    p.add_argument("--force", action="store_true", help="compare vector files made for different config hashes")
    add_overwrite_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import numpy as np

    from jaxsteer.errors import ConfigError
    from jaxsteer.outputs import check_plain_outputs, move_aside
    from jaxsteer.results import write_csv
    from jaxsteer.steering import analysis, figures
    from jaxsteer.steering.vectors_io import load_vectors

    cfg, _ = experiment_config(args)
    if not (args.a and args.b) and not args.pca:
        raise ConfigError("nothing to analyse: pass --a and --b vector files, and/or --pca with a model")
    if args.pca and len(cfg.languages) < 2:  # the PCA compares languages: refused before anything is written
        raise ConfigError(f"--pca compares languages: give at least two (got {', '.join(cfg.languages)})")
    if args.pca and cfg.mesh is not None:  # multi-host: the processes are known before the folder is judged
        from jaxsteer.sharding import initialize

        initialize(cfg.mesh)
    planned = (SPER_FILES if args.a and args.b else ()) + (PCA_FILES if args.pca else ())
    earlier = check_plain_outputs(cfg.out, planned, args.overwrite)
    pair = args.a and args.b
    if pair:
        a, b = load_vectors(args.a), load_vectors(args.b)
        if a.vectors.shape != b.vectors.shape:
            raise ConfigError(f"vector files differ in shape: {a.vectors.shape} vs {b.vectors.shape}")
        if a.meta.config_hash != b.meta.config_hash and not args.force:  # same shape, other model: angles mean nothing
            raise ConfigError(
                f"--a was made for {a.meta.model_name} (config {a.meta.config_hash}), --b for {b.meta.model_name} "
                f"(config {b.meta.config_hash}); pass --force to compare them anyway"
            )
    pca = None
    if args.pca:  # every input read and every pass run before an earlier call's files move or a file is written
        from jaxsteer.commands._common import load_model
        from jaxsteer.study.experiment import Benchmarks
        from jaxsteer.study.pca import language_pca

        pca = language_pca(load_model(cfg), Benchmarks(cfg))
    move_aside(cfg.out, earlier)  # every input checked: the earlier call's files go aside just before writing
    if pair:
        cos = analysis.cosine_by_layer(a.vectors, b.vectors)
        sper = analysis.sper_degrees(a.vectors, b.vectors)
        na, nb = analysis.norms_by_layer(a.vectors), analysis.norms_by_layer(b.vectors)
        rows = [
            {
                "layer": i,
                "cosine": float(cos[i]),
                "sper_degrees": float(sper[i]),
                "norm_a": float(na[i]),
                "norm_b": float(nb[i]),
            }
            for i in range(len(cos))
        ]
        write_csv(os.path.join(cfg.out, "sper.csv"), rows)
        figures.plot_sper({f"{a.meta.kind or 'a'} vs {b.meta.kind or 'b'}": sper}, os.path.join(cfg.out, "sper"))
        figures.plot_norms({a.meta.kind or "a": na, b.meta.kind or "b": nb}, os.path.join(cfg.out, "norms"))
        print(f"S_PER by layer (degrees): {np.round(sper, 1).tolist()}")
        print(f"wrote {os.path.join(cfg.out, 'sper.csv')}, sper.png, norms.png")
    if pca is not None:
        from jaxsteer.study.pca import write_language_pca

        write_csv(os.path.join(cfg.out, "pca_convergence.csv"), write_language_pca(pca, cfg.out))
        print(f"wrote {os.path.join(cfg.out, 'pca_convergence.csv')}, pca_gmmlu.png, pca_blend.png")
    return 0
