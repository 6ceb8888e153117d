"""``jaxsteer eval``: a model (optionally steered by vector files) on Global-MMLU and BLEnD, per language."""

from __future__ import annotations

from jaxsteer.commands._common import add_experiment_args, add_overwrite_arg, add_steer_args, experiment_config


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a model on Global-MMLU and BLEnD (test split), optionally steered")
    add_experiment_args(p)
    p.add_argument(
        "--method",
        help="name of this run in the result files (default: --model-name, else base; with --steer NAME+steered)",
    )
    p.add_argument(
        "--base-model",
        help="identity of the unaligned model the Δ refers to (default: the config's models.base, else this model)",
    )
    add_steer_args(p)
    add_overwrite_arg(p)
    p.add_argument(
        "--blend-mc",
        action="store_true",
        help="also score BLEnD's MCQ file by log-likelihood (a jaxsteer variant, labelled as such)",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    import os

    from jaxsteer.commands._common import check_method_name, claim_results, load_model, parse_steer
    from jaxsteer.model.model import check_new_tokens
    from jaxsteer.outputs import check_output_folder
    from jaxsteer.study.evaluate import eval_file_names, evaluate, write_eval
    from jaxsteer.study.experiment import Benchmarks

    cfg, extra = experiment_config(args)
    check_output_folder(cfg.out)
    model = load_model(cfg)
    check_new_tokens(model.config, 1, cfg.max_new_tokens)
    steering = parse_steer(args.steer, model.config, args.force, languages=cfg.languages)
    method = args.method or (args.model_name or "base") + ("+steered" if steering else "")
    check_method_name(method)
    # the same base identity `jaxsteer run` records, so eval's files compare with run's and with each other
    base_model = args.base_model or (extra.get("models") or {}).get("base")
    planned = eval_file_names(method) + ([f"{method}.blend_mc_ll.json"] if args.blend_mc else [])
    folder = claim_results(cfg.out, model, cfg.seed, args.overwrite, planned)
    result = evaluate(
        model, Benchmarks(cfg), method, (lambda lang: steering) if steering else None, "test", not args.quiet
    )
    mc_scores = blend_mc_scores(model, cfg, steering) if args.blend_mc else None  # all measured before any write
    folder.set_aside_earlier()  # everything measured: an earlier result this replaces goes aside now
    paths = write_eval(result, cfg.out, model, cfg, base_model, extra={"steer": args.steer or []})
    for path in paths:
        print(f"wrote {path}")
    if mc_scores is not None:
        from jaxsteer.results import provenance, write_json
        from jaxsteer.study.blend_mc import BLEND_MC_LL_LABEL

        path = write_json(
            os.path.join(cfg.out, f"{method}.blend_mc_ll.json"),
            {
                "method": method,
                "metric": BLEND_MC_LL_LABEL,
                "accuracy": mc_scores,
                "config_hash": model.config.config_hash(),
                "provenance": provenance(model, seed=cfg.seed),
            },
        )
        paths.append(path)
        print(f"wrote {path} ({BLEND_MC_LL_LABEL})")
    folder.finish(f"eval:{method}", paths)
    return 0


def blend_mc_scores(model, cfg, steering) -> dict[str, float]:
    from jaxsteer.study.blend_mc import blend_mc_loglik_accuracy

    source = cfg.blend_source or cfg.data
    return {
        lang: blend_mc_loglik_accuracy(model, source, lang, steering, cfg.batch_size)["accuracy"]
        for lang in cfg.languages
    }
