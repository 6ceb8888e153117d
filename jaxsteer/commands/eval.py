"""``jaxsteer eval``: a model (optionally steered by vector files) on Global-MMLU and BLEnD, per language."""

from __future__ import annotations

from jaxsteer.commands._common import add_experiment_args, experiment_config


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a model on Global-MMLU and BLEnD (test split), optionally steered")
    add_experiment_args(p)
    p.add_argument("--method", help="name of this run in the result files (default: --model-name, else base)")
    p.add_argument(
        "--base-model",
        help="identity of the unaligned model the Δ refers to (default: the config's models.base, else this model)",
    )
    p.add_argument(
        "--steer",
        action="append",
        metavar="FILE:LAYER:GAMMA",
        help="add γ·v[layer] from a vector file (repeatable; e.g. en.safetensors:20:2)",
    )
    p.add_argument("--force", action="store_true", help="apply vectors made for another config hash")
    p.add_argument(
        "--blend-mc",
        action="store_true",
        help="also score BLEnD's MCQ file by log-likelihood (a jaxsteer variant, labelled as such)",
    )
    p.set_defaults(func=run)


def parse_steer(items, config, force: bool):
    from jaxsteer.errors import ConfigError
    from jaxsteer.steering.vectors_io import check_compatible, load_vectors
    from jaxsteer.study.surgical import combined_steering

    parts = []
    for item in items or []:
        try:
            path, layer, gamma = item.rsplit(":", 2)
            layer, gamma = int(layer), float(gamma)
        except ValueError:
            raise ConfigError(f"--steer {item!r}: expected FILE:LAYER:GAMMA") from None
        vset = load_vectors(path)
        check_compatible(vset, config, force=force)
        from jaxsteer.steering.plan import check_layer

        check_layer(layer, config.num_layers)
        parts.append((vset.vectors, layer, gamma))
    return combined_steering(config, parts) if parts else None


def run(args) -> int:
    from jaxsteer.commands._common import load_model
    from jaxsteer.study.evaluate import evaluate, write_eval
    from jaxsteer.study.experiment import Benchmarks

    cfg, extra = experiment_config(args)
    model = load_model(cfg)
    steering = parse_steer(args.steer, model.config, args.force)
    method = args.method or args.model_name or "base"
    # the same base identity `jaxsteer run` records, so eval's files compare with run's and with each other
    base_model = args.base_model or (extra.get("models") or {}).get("base")
    result = evaluate(
        model, Benchmarks(cfg), method, (lambda lang: steering) if steering else None, "test", not args.quiet
    )
    for path in write_eval(result, cfg.out, model, cfg, base_model, extra={"steer": args.steer or []}):
        print(f"wrote {path}")
    if args.blend_mc:
        import os

        from jaxsteer.results import provenance, write_json
        from jaxsteer.study.evaluate import BLEND_MC_LL_LABEL, blend_mc_loglik_accuracy

        scores = {
            lang: blend_mc_loglik_accuracy(model, cfg.blend_source or cfg.data, lang, steering, cfg.batch_size)[
                "accuracy"
            ]
            for lang in cfg.languages
        }
        path = write_json(
            os.path.join(cfg.out, f"{method}.blend_mc_ll.json"),
            {
                "method": method,
                "metric": BLEND_MC_LL_LABEL,
                "accuracy": scores,
                "config_hash": model.config.config_hash(),
                "provenance": provenance(model, seed=cfg.seed),
            },
        )
        print(f"wrote {path} ({BLEND_MC_LL_LABEL})")
    return 0
