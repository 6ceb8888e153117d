"""Time of one greedy decode step on whatever device JAX has (the CPU included), per decode layout.

    PYTHONPATH=. python3 bench/decode_step.py [--layers 12] [--width 256] [--batch 32] [--prompt 1024]
        [--layouts unrolled,scan,sliced] [--preset NAME]

A random model of a small Gemma-3-shaped config (11 sliding layers and a global one per 12, window wider than
the sequence) or of a preset; ``step = (t(N + 2) − t(2)) / N`` with N = 64 new tokens, warm calls, mean of two:
prefill and compiles drop out. For layout changes that a CPU shows (copies the decode loop makes, the cache
layout); the GPU figures against the HBM floor are ``bench/forward.py``'s ``gen`` workloads.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--prompt", type=int, default=1024)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--layouts", default="unrolled,scan")
    ap.add_argument("--preset", default="", help="a config preset (1b, 4b, 12b, 27b) instead of the small one")
    args = ap.parse_args(argv)

    import jax

    import jaxsteer
    from jaxsteer.config import preset, tiny

    if args.preset:
        cfg = preset(args.preset)
    else:
        types = tuple("full_attention" if (i + 1) % 12 == 0 else "sliding_attention" for i in range(args.layers))
        cfg = tiny(vocab_size=1024, hidden_size=args.width, intermediate_size=4 * args.width, num_layers=args.layers,
                   num_heads=4, num_kv_heads=2, head_dim=args.width // 4, sliding_window=4096, layer_types=types)  # fmt: skip
    model = jaxsteer.Model.random(cfg, seed=0)
    ids = np.random.default_rng(0).integers(3, cfg.vocab_size, size=(args.batch, args.prompt)).astype(np.int32)
    for layout in args.layouts.split(","):
        run = lambda n, layout=layout: np.asarray(  # noqa: E731
            jaxsteer.generate(model, ids, n, eos_token_id=-1, decode_layout=layout)
        )
        times = {}
        for n in (2, args.new + 2):
            run(n)  # compile
            t = time.perf_counter()
            run(n), run(n)
            times[n] = (time.perf_counter() - t) / 2
        step = (times[args.new + 2] - times[2]) / args.new
        print(json.dumps({"layout": layout, "step_ms": round(1000 * step, 2), "layers": cfg.num_layers,
                          "width": cfg.hidden_size, "batch": args.batch, "prompt": args.prompt, "new": args.new,
                          "device": jax.devices()[0].device_kind, "jax": jax.__version__}), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
