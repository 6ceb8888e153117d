"""``jaxsteer run``: the paper's whole experiment from one config (see ``configs/experiments/``)."""

from __future__ import annotations

from jaxsteer.commands._common import add_experiment_args, add_overwrite_arg, experiment_config, use_compilation_cache


def register(sub) -> None:
    p = sub.add_parser("run", help="evaluate base and CLA models, steer (EN, LOC, SUR), draw the plane")
    add_experiment_args(p, model_name=False)
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out, skipping the stages its manifest.json lists as finished",
    )
    add_overwrite_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import os

    from jaxsteer.commands._common import check_method_name
    from jaxsteer.errors import ConfigError
    from jaxsteer.outputs import check_output_folder
    from jaxsteer.study.compare import format_tables
    from jaxsteer.study.pipeline import run_experiment

    if args.resume and args.overwrite:
        raise ConfigError("--resume continues the run in --out and --overwrite starts it again: pass one of them")
    cfg, extra = experiment_config(args, ("models", "steer"))
    check_output_folder(cfg.out)
    models = dict(extra.get("models") or {})
    if not models and cfg.model:
        models = {"base": cfg.model}
    if "base" not in models:
        raise ConfigError("config needs `models:` with a 'base' entry (or `model:` for the base alone)")
    for name in models:  # a model's name starts its result files: NAME.gmmlu.json, NAME+SUR.gmmlu.json
        check_method_name(name, "models:", plain=True)
    steer = tuple(extra.get("steer") or ("base",))
    unknown = [s for s in steer if s not in models]
    if unknown:
        raise ConfigError(f"steer lists {unknown[0]!r}, which is not among models {', '.join(models)}")
    use_compilation_cache()
    out = run_experiment(
        cfg, models, steer, cfg.out, progress=not args.quiet, resume=args.resume, overwrite=args.overwrite
    )
    if out["plane"] is not None:  # None on the processes but 0 of a multi-host run
        print(format_tables(out["plane"]["tables"]))
    print(f"results in {os.path.join(cfg.out, '')} (delta_*.md, plane.png, sper_by_layer.png)")
    return 0
