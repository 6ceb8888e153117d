"""``jaxsteer demo``: the offline main job.

Until the model-organism demo lands, this proves the install end to end: it writes a tiny random
Gemma-3 checkpoint as an HF folder, loads it back through ``load_pretrained``, and runs plain and
steered generation through the public API.
"""

from __future__ import annotations

import os


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the offline end-to-end demo")
    p.add_argument("--out", default="jaxsteer-demo", help="output folder (default: ./jaxsteer-demo)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args) -> int:
    import numpy as np

    import jaxsteer
    from jaxsteer.config import tiny
    from jaxsteer.results import provenance, write_json

    folder = os.path.join(args.out, "tiny-gemma3")
    print(f"[1/3] writing a tiny random Gemma-3 checkpoint to {folder}")
    model = jaxsteer.Model.random(tiny(vocab_size=256, hidden_size=64, intermediate_size=128), seed=args.seed)
    jaxsteer.save_pretrained(model, folder, overwrite=True)
    print("[2/3] loading it back with jaxsteer.load_pretrained")
    model = jaxsteer.load_pretrained(folder, dtype="float32")
    rng = np.random.default_rng(args.seed)
    ids = rng.integers(3, model.config.vocab_size, size=(2, 8))
    mask = np.ones_like(ids)
    mask[1, :3] = 0  # a left-padded row
    vector = rng.normal(size=model.config.hidden_size) * 0.5
    steer = jaxsteer.Steering.from_layers(model.config, {3: vector}, gamma=2.0, scope="all")
    print("[3/3] generating 12 tokens, plain and steered at block 3 (γ=2)")
    plain = np.asarray(jaxsteer.generate(model, ids, 12, mask, eos_token_id=-1))
    steered = np.asarray(jaxsteer.generate(model, ids, 12, mask, steering=steer, eos_token_id=-1))
    for row in range(2):
        print(f"  row {row} plain   : {plain[row].tolist()}")
        print(f"  row {row} steered : {steered[row].tolist()}")
    changed = float(np.mean(plain != steered))
    path = write_json(
        os.path.join(args.out, "demo.json"),
        {
            "plain": plain,
            "steered": steered,
            "fraction_changed": changed,
            "provenance": provenance(model, seed=args.seed, command="jaxsteer demo"),
        },
    )
    print(f"steering changed {100 * changed:.0f}% of generated tokens; wrote {path}")
    return 0
