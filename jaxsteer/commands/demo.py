"""``jaxsteer demo``: the offline main job — the whole pipeline on the model organism of cultural erasure.

Starts from the organism shipped in ``jaxsteer/organism/assets`` (``--retrain`` rebuilds it from the
world's seed with jaxsteer's own trainer) and writes the Δ tables, the transfer–localization plane, the
S_PER plot and a Markdown report to ``--out`` (default ``./jaxsteer-demo``).
"""

from __future__ import annotations

from jaxsteer.organism.model import PRETRAIN_BATCH, PRETRAIN_LR, PRETRAIN_STEPS


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the offline end-to-end demo on the model organism")
    p.add_argument("--out", default="jaxsteer-demo", help="output folder (default: ./jaxsteer-demo)")
    p.add_argument("--fast", action="store_true", help="every stage on 2 languages, 1 seed, a few steps (CI)")
    p.add_argument("--seeds", help="comma-separated alignment seeds (default 0,1,2)")
    p.add_argument("--align-steps", type=int, help="MIDALIGN steps per seed (default 40)")
    p.add_argument(
        "--model",
        help="organism folder to start from (default: the shipped one); with --retrain, "
        "where the rebuilt organism is written (default: the shipped folder is replaced)",
    )
    p.add_argument("--retrain", action="store_true", help="rebuild the organism weights first")
    p.add_argument(
        "--steps", type=int, default=PRETRAIN_STEPS, help=f"pretraining steps with --retrain (default {PRETRAIN_STEPS})"
    )
    p.add_argument(
        "--batch", type=int, default=PRETRAIN_BATCH, help=f"pretraining batch with --retrain (default {PRETRAIN_BATCH})"
    )
    p.add_argument(
        "--lr", type=float, default=PRETRAIN_LR, help=f"pretraining peak learning rate (default {PRETRAIN_LR:g})"
    )
    p.add_argument("--seed", type=int, default=0, help="pretraining seed with --retrain (default 0)")
    p.add_argument(
        "--world",
        action="append",
        default=[],
        metavar="KNOB=VALUE",
        help="with --retrain: a WorldConfig knob (repeatable), e.g. --world local_entity_names=True",
    )
    p.add_argument("--retrain-only", action="store_true", help="with --retrain: stop after rebuilding the organism")
    p.set_defaults(func=run)


def run(args) -> int:
    import dataclasses
    import os

    from jaxsteer.errors import ConfigError
    from jaxsteer.organism.demo import DemoConfig, run_demo
    from jaxsteer.organism.model import ASSETS, load_organism, pretrain
    from jaxsteer.outputs import check_plain_outputs

    # "--out=~/x" reaches us unexpanded (the shell expands ~ only at a word's start): one folder for every stage
    args.out = os.path.expanduser(args.out) if args.out else args.out
    args.model = os.path.expanduser(args.model) if args.model else args.model
    # the demo owns and rewrites its folder's top level (overwrite): never another command's results or a run's
    check_plain_outputs(args.out, (), overwrite=True)
    seeds = demo_seeds(args.seeds)
    from jaxsteer.commands._common import use_compilation_cache

    use_compilation_cache()
    model = args.model or str(ASSETS)
    if args.retrain:
        if min(args.steps, args.batch) < 1 or not args.lr > 0:
            raise ConfigError("--steps, --batch and --lr must be positive")
        check_retrain_destination(model)
        work = os.path.join(args.out, "retrain")
        print(f"rebuilding the organism: {args.steps} pretraining steps, batch {args.batch} (work folder {work})")
        world = world_config(args.world)
        model = pretrain(work, steps=args.steps, seed=args.seed, batch=args.batch, lr=args.lr, dest=model,
                         world_config=world)  # fmt: skip
        print(f"organism written to {model}")
        if args.retrain_only:
            return 0
    else:
        if args.world:
            raise ConfigError("--world changes the world that --retrain builds; pass it with --retrain")
        load_organism(model)  # a one-line error for a folder without weights, before any work
    cfg = DemoConfig.fast(args.out, model) if args.fast else DemoConfig(out=args.out, model=model)
    changes = {"seeds": seeds} if seeds else {}
    if args.align_steps is not None:
        if args.align_steps < 1:
            raise ConfigError(f"--align-steps {args.align_steps} must be positive")
        changes["align_steps"] = args.align_steps
    run_demo(dataclasses.replace(cfg, **changes))
    return 0


def demo_seeds(text: str | None) -> tuple[int, ...] | None:
    """``--seeds 0,1,2`` → ``(0, 1, 2)``: distinct integers in the seed range, at least one — checked before any
    work (a bad seed failed after the world was written and training had begun; ``0,0`` reported one run as two)."""
    from jaxsteer.errors import ConfigError

    if text is None:
        return None
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise ConfigError(f"--seeds {text!r}: expected comma-separated integers") from None
    if not seeds:
        raise ConfigError(f"--seeds {text!r}: give at least one seed")
    bad = [s for s in seeds if not 0 <= s < 2**32]
    if bad:
        raise ConfigError(f"--seeds: {bad[0]} is not in 0 … 2**32 − 1")
    if len(set(seeds)) < len(seeds):
        raise ConfigError(f"--seeds {text!r}: a seed is given twice (it would count as two runs that agree)")
    return seeds


def check_retrain_destination(model: str) -> None:
    """``--retrain`` replaces the folder it writes the organism to: refuse one that holds anything but an
    organism (its files would be deleted), before hours of pretraining."""
    from pathlib import Path

    from jaxsteer.errors import ConfigError

    dest = Path(model).resolve()
    if not dest.exists():
        return
    if not dest.is_dir():
        raise ConfigError(f"--model {model} is a file; --retrain writes the organism into a folder")
    is_organism = (dest / "world.json").is_file() and (dest / "config.json").is_file()
    if any(dest.iterdir()) and not is_organism:
        raise ConfigError(
            f"--model {model} holds files that are not an organism, and --retrain replaces the whole folder; "
            "choose an empty or new folder"
        )


def world_config(items: list[str]):
    """``KNOB=VALUE`` items (YAML values, as ``--set``) → a ``WorldConfig`` (world seed 0 unless ``seed=``)."""
    from jaxsteer.configfile import build, parse_overrides
    from jaxsteer.organism import WorldConfig
    from jaxsteer.organism.model import WORLD_SEED

    return build(WorldConfig, {"seed": WORLD_SEED, **parse_overrides(items)})
