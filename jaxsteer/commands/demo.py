"""``jaxsteer demo``: the offline main job — the whole pipeline on the model organism of cultural erasure.

Starts from the organism shipped in ``jaxsteer/organism/assets`` (``--retrain`` rebuilds it from the
world's seed with jaxsteer's own trainer) and writes the Δ tables, the transfer–localization plane, the
S_PER plot and a Markdown report to ``--out`` (default ``./jaxsteer-demo``).
"""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the offline end-to-end demo on the model organism")
    p.add_argument("--out", default="jaxsteer-demo", help="output folder (default: ./jaxsteer-demo)")
    p.add_argument("--fast", action="store_true", help="every stage on 2 languages, 1 seed, a few steps (CI)")
    p.add_argument("--seeds", help="comma-separated alignment seeds (default 0,1,2)")
    p.add_argument("--align-steps", type=int, help="MIDALIGN steps per seed (default 40)")
    p.add_argument("--retrain", action="store_true", help="rebuild the shipped organism weights first")
    p.add_argument("--steps", type=int, default=800, help="pretraining steps with --retrain (default 800)")
    p.set_defaults(func=run)


def run(args) -> int:
    import dataclasses
    import os

    from jaxsteer.errors import ConfigError
    from jaxsteer.organism.demo import DemoConfig, run_demo
    from jaxsteer.organism.model import pretrain

    if args.retrain:
        work = os.path.join(args.out, "retrain")
        print(f"rebuilding the organism: world seed 0, {args.steps} pretraining steps (work folder {work})")
        print(f"shipped weights updated in {pretrain(work, steps=args.steps)}")
    cfg = DemoConfig.fast(args.out) if args.fast else DemoConfig(out=args.out)
    changes = {}
    if args.seeds:
        try:
            changes["seeds"] = tuple(int(s) for s in args.seeds.split(",") if s.strip())
        except ValueError:
            raise ConfigError(f"--seeds {args.seeds!r}: expected comma-separated integers") from None
    if args.align_steps is not None:
        if args.align_steps < 1:
            raise ConfigError(f"--align-steps {args.align_steps} must be positive")
        changes["align_steps"] = args.align_steps
    run_demo(dataclasses.replace(cfg, **changes))
    return 0
