"""``jaxsteer train``: train a cross-lingual alignment baseline (MIST, MIDALIGN, CLO) from a YAML config.

Writes OUT/checkpoints (Orbax), OUT/metrics.jsonl, OUT/loss.png|svg, OUT/run.json and OUT/export (an HF
Gemma-3 folder with LoRA merged, ready for ``jaxsteer eval``/``steer``). ``--resume`` continues the run in
OUT exactly where its latest checkpoint left it.
"""

from __future__ import annotations

from jaxsteer.commands._common import add_config_args, overrides


def register(sub) -> None:
    p = sub.add_parser("train", help="train a CLA baseline (MIST, MIDALIGN, CLO) from a YAML config")
    add_config_args(p)
    p.add_argument("--out", help="run folder (overrides the config's out)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in the run folder")
    p.set_defaults(func=run)


def run(args) -> int:
    from jaxsteer.cla import config as cla_config
    from jaxsteer.cla.trainer import train
    from jaxsteer.outputs import check_output_folder

    cfg = cla_config.load(args.config, overrides(args, out=args.out))
    check_output_folder(cfg.out)
    result = train(cfg, resume=args.resume)
    print(f"trained {cfg.method} for {result['steps']} steps: {result['metrics']}")
    if "export" in result:
        print(f"exported the trained model to {result['export']}")
    return 0
