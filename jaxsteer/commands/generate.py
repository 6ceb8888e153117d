"""``jaxsteer generate``: steered or plain generation from a checkpoint and a prompt."""

from __future__ import annotations

from jaxsteer.commands._common import add_model_args, add_steer_args


def register(sub) -> None:
    p = sub.add_parser("generate", help="generate text from a checkpoint, optionally steered by a vector file")
    add_model_args(p)
    p.add_argument("--prompt", action="append", required=True, help="prompt text (repeatable: one row each)")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--top-k", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chat", action="store_true", help="wrap prompts in the tokenizer's chat template")
    p.add_argument(
        "--decode-layout",
        default="auto",
        help="auto (a per-layer weight copy where it fits: faster steps), scan (compiles faster), unrolled, sliced, "
        "moved (the weights themselves cut per layer for the call: fast steps without a copy)",
    )
    add_steer_args(p, scope=True)
    p.add_argument(
        "--set",
        action="append",
        metavar="mesh.KEY=VALUE",
        help="a device mesh for the model, as the other commands take it (mesh.data=4,mesh.model=2)",
    )
    p.set_defaults(func=run)


LONG_GENERATION = 256  # new tokens from which the command says what it is doing and how long it took


def run(args) -> int:
    import sys
    import time

    from jaxsteer.commands._common import load_model, parse_steer
    from jaxsteer.errors import InputError
    from jaxsteer.model.decode import generate
    from jaxsteer.model.model import check_new_tokens
    from jaxsteer.tokens import check_texts, decode_new, encode_batch

    prompts = check_texts(args.prompt, "--prompt")
    # any number of prompts: rows that do not divide the batch shards run replicated on each (model.batch_shards)
    args.mesh, args.batch_size = generation_mesh(args.set), None
    model = load_model(args)
    if model.tokenizer is None:
        raise InputError(f"{args.model} has no tokenizer files (tokenizer.json); cannot encode prompts")
    ids, mask = encode_batch(model.tokenizer, prompts, chat=args.chat)
    check_new_tokens(model.config, ids.shape[1], args.max_new_tokens)
    steering = parse_steer(args.steer, model.config, args.force, args.scope)
    long = args.max_new_tokens >= LONG_GENERATION
    if long:  # one compiled loop: no per-token progress to show, so say what runs and, after, how long it took
        print(
            f"generating up to {args.max_new_tokens} new tokens for {len(prompts)} prompt(s) in one compiled "
            "loop (Ctrl-C stops it)…",
            file=sys.stderr,
            flush=True,
        )
    t0 = time.perf_counter()
    tokens = generate(
        model, ids, args.max_new_tokens, mask, steering=steering, temperature=args.temperature, top_k=args.top_k,
        seed=args.seed,
    )  # fmt: skip
    texts = decode_new(model.tokenizer, tokens, model.config)
    if long:
        print(f"generated in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    for prompt, text in zip(prompts, texts):
        print(f"{prompt!r} -> {text!r}")
    return 0


def generation_mesh(items):
    """The ``MeshSpec`` that ``--set mesh.…`` describes (None without one); any other key is refused."""
    from jaxsteer.configfile import build, parse_overrides
    from jaxsteer.errors import ConfigError
    from jaxsteer.sharding import MeshSpec

    data = parse_overrides(items)
    other = sorted(set(data) - {"mesh"})
    if other:
        raise ConfigError(f"--set {other[0]}: generate takes only mesh.data, mesh.fsdp, mesh.model, mesh.distributed")
    mesh = data.get("mesh")
    if mesh is None:
        return None
    if not isinstance(mesh, dict):
        raise ConfigError("--set mesh: give its axes, e.g. mesh.data=4,mesh.model=2")
    return build(MeshSpec, mesh, prefix="mesh.")
