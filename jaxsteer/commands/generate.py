"""``jaxsteer generate``: steered or plain generation from a checkpoint and a prompt."""

from __future__ import annotations

from jaxsteer.commands._common import add_model_args


def register(sub) -> None:
    p = sub.add_parser("generate", help="generate text from a checkpoint, optionally steered by a vector file")
    add_model_args(p)
    p.add_argument("--prompt", action="append", required=True, help="prompt text (repeatable: one row each)")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--top-k", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chat", action="store_true", help="wrap prompts in the tokenizer's chat template")
    p.set_defaults(func=run)


def run(args) -> int:
    from jaxsteer.commands._common import load_model
    from jaxsteer.errors import InputError
    from jaxsteer.model.decode import generate
    from jaxsteer.tokens import decode_new, encode_batch

    model = load_model(args)
    if model.tokenizer is None:
        raise InputError(f"{args.model} has no tokenizer files (tokenizer.json); cannot encode prompts")
    ids, mask = encode_batch(model.tokenizer, args.prompt, chat=args.chat)
    tokens = generate(
        model, ids, args.max_new_tokens, mask, temperature=args.temperature, top_k=args.top_k, seed=args.seed
    )
    for prompt, text in zip(args.prompt, decode_new(model.tokenizer, tokens, model.config)):
        print(f"{prompt!r} -> {text!r}")
    return 0
