"""Forward and decode throughput: jaxsteer vs the HF anchor, same GPU, same run.

usage: python bench/forward.py [--no-hf] [--out DIR] [SPEC ...]
  SPEC = fwd:MODEL:B:S (scoring prefill, last-position logits, plain and with two steering layers)
       | gen:MODEL:B:PROMPT:NEW (steered greedy decode)
default: fwd:1b:32:512 fwd:4b:32:512 fwd:12b:32:512 fwd:12b:8:2048 gen:12b:32:256:64 gen:1b:32:256:64
"""

from __future__ import annotations

import json
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (
    PEAK,
    STEER_LAYERS,
    compile_seconds,
    environment,
    flops_per_token,
    models_for,
    pop_option,
    run_anchor,
    timed,
)

from jaxsteer import Steering, forward, generate
from jaxsteer.model.attention import resolve_impl
from jaxsteer.model.transformer import forward_core

DEFAULT = [
    "fwd:1b:32:512",
    "fwd:4b:32:512",
    "fwd:12b:32:512",
    "fwd:12b:8:2048",
    "gen:12b:32:256:64",
    "gen:1b:32:256:64",
]


def steering_for(model, name):
    rng = np.random.default_rng(0)
    l1, l2 = STEER_LAYERS[name]
    d = model.config.hidden_size
    return Steering.from_layers(model.config, {l1: rng.normal(size=d), l2: rng.normal(size=d)}, gamma=2.0)


def bench_forward(model, name, b, s):
    cfg = model.config
    ids = jax.random.randint(jax.random.PRNGKey(1), (b, s), 3, cfg.vocab_size)
    steer = steering_for(model, name)
    impl = resolve_impl("auto", model.dtype)
    kw = dict(config=cfg, return_hidden=False, logits_mode="last", impl=impl)
    compile_s = compile_seconds(forward_core, model.params, ids, None, None, None, None, **kw)
    plain = timed(lambda: jax.block_until_ready(forward(model, ids, logits_at="last").logits))
    steered = timed(lambda: jax.block_until_ready(forward(model, ids, steering=steer, logits_at="last").logits))
    fpt, head = flops_per_token(cfg, s)
    mfu = (b * s * fpt + b * head) / plain / PEAK
    return {
        "kind": "forward",
        "model": name,
        "B": b,
        "S": s,
        "impl": impl,
        "s": plain,
        "tok_s": b * s / plain,
        "mfu": mfu,
        "steered_s": steered,
        "steer_overhead": steered / plain - 1,
        "compile_s": compile_s,
    }


def bench_generate(model, name, b, p, n):
    cfg = model.config
    ids = jax.random.randint(jax.random.PRNGKey(2), (b, p), 3, cfg.vocab_size)
    l1 = STEER_LAYERS[name][0]
    steer = Steering.from_layers(cfg, {l1: np.random.default_rng(0).normal(size=cfg.hidden_size)}, gamma=2.0)
    run = lambda: jax.block_until_ready(generate(model, ids, n, steering=steer, eos_token_id=-1))  # noqa: E731
    t = time.perf_counter()
    run()
    first = time.perf_counter() - t
    dt = timed(run, reps=3, warm=0)
    return {
        "kind": "generate",
        "model": name,
        "B": b,
        "prompt": p,
        "new": n,
        "s": dt,
        "new_tok_s": b * n / dt,
        "first_call_s": first,
    }


def main(argv):
    out = pop_option(argv, "--out", ".")
    use_hf = "--no-hf" not in argv
    specs = [a for a in argv if not a.startswith("--")] or DEFAULT
    hf_fwd, hf_gen = {}, {}
    if use_hf:
        fwd_specs = sorted({f"{m}:{b}:{s}:8" for k, m, b, s, *_ in (x.split(":") for x in specs) if k == "fwd"})
        gen_specs = [f"gen:{x.split(':', 1)[1]}" for x in specs if x.startswith("gen:")]
        for r in run_anchor("hf_anchor.py", fwd_specs, out) if fwd_specs else []:
            hf_fwd[(r["model"], r["B"], r["S"])] = r
        for r in run_anchor("hf_anchor2.py", gen_specs, out) if gen_specs else []:
            hf_gen[(r["model"], r["B"], r["prompt"], r["new"])] = r
    rows = []
    for kind, name, nums, model in models_for(specs):
        if kind == "fwd":
            r = bench_forward(model, name, *nums)
            hf = hf_fwd.get((name, nums[0], nums[1]))
            if hf:
                r["hf_tok_s"], r["hf_mfu"] = hf["prefill_tok_s"], hf["mfu_last_logit"]
                r["hf_steer_overhead"] = hf["steer_overhead"] - 1
                r["speedup"] = r["tok_s"] / hf["prefill_tok_s"]
        else:
            r = bench_generate(model, name, *nums)
            hf = hf_gen.get((name, *nums))
            if hf:
                r["hf_new_tok_s"] = hf["new_tok_s"]
                r["speedup"] = r["new_tok_s"] / hf["new_tok_s"]
        r.update(environment())
        print(json.dumps(r), flush=True)
        rows.append(r)
    with open(os.path.join(out, "forward.json"), "w") as f:
        json.dump(rows, f, indent=1)
    print(f"\n{'bench':24} {'jaxsteer':>12} {'HF':>12} {'ratio':>7} {'MFU':>6} {'steer+%':>8} {'compile s':>9}")
    for r in rows:
        if r["kind"] == "forward":
            tag = f"fwd {r['model']} B={r['B']} S={r['S']}"
            print(
                f"{tag:24} {r['tok_s']:12.0f} {r.get('hf_tok_s', float('nan')):12.0f} {r.get('speedup', float('nan')):7.2f} "
                f"{r['mfu']:6.3f} {100 * r['steer_overhead']:8.2f} {r['compile_s']:9.1f}"
            )
        else:
            tag = f"gen {r['model']} B={r['B']} P={r['prompt']} N={r['new']}"
            print(
                f"{tag:24} {r['new_tok_s']:12.0f} {r.get('hf_new_tok_s', float('nan')):12.0f} "
                f"{r.get('speedup', float('nan')):7.2f}"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
