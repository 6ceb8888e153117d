"""``jaxsteer fixtures build DIR``: the tiny random checkpoint of the test fixtures, for offline runs.

``configs/experiments/fixtures_tiny.yaml`` reads ``runs/tiny``, so ``jaxsteer fixtures build runs`` then
``jaxsteer run --config configs/experiments/fixtures_tiny.yaml`` runs the whole pipeline without a hub.
"""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("fixtures", help="build the tiny random checkpoint of the test fixtures (offline runs)")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = actions.add_parser(
        "build", help="write DIR/tiny (random fp32 Gemma-3, 6 layers) and DIR/tokenizer (BPE on the fixture texts)"
    )
    b.add_argument("dir", metavar="DIR", help="output folder (e.g. runs: fixtures_tiny.yaml reads runs/tiny)")
    b.add_argument("--data", help="fixture data folder (default: the repository's tests/fixtures/data)")
    b.add_argument(
        "--overwrite", action="store_true", help="move DIR/tiny and DIR/tokenizer not built here to DIR/replaced-DATE/"
    )
    b.set_defaults(func=run)


def run(args) -> int:
    from jaxsteer.errors import ConfigError
    from jaxsteer.fixtures import FIXTURE_DATA, HIDDEN, NUM_LAYERS, build_tiny_folder, fixture_outputs_in_the_way
    from jaxsteer.outputs import check_output_folder, finish_interrupted_move, move_aside

    folder = check_output_folder(args.dir, "DIR")
    finish_interrupted_move(folder)
    in_the_way = fixture_outputs_in_the_way(args.dir)
    if in_the_way and not args.overwrite:
        raise ConfigError(
            f"{args.dir} already holds {' and '.join(in_the_way)} not written by `jaxsteer fixtures build` (a "
            "training run's tokenizer?); choose another DIR or pass --overwrite to move them to replaced-DATE/"
        )
    if in_the_way:
        move_aside(folder, in_the_way)
    data = args.data or FIXTURE_DATA
    folder = build_tiny_folder(args.dir, data)
    print(f"wrote {folder}: a random Gemma-3 ({NUM_LAYERS} layers, d={HIDDEN}) with a tokenizer trained on {data}")
    return 0
