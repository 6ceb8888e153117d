"""Forward and decode throughput: jaxsteer vs the HF anchor, same GPU, same run.

usage: python bench/forward.py [--no-hf] [--out DIR] [SPEC ...]
  SPEC = fwd:MODEL:B:S (scoring prefill, last-position logits, plain and with two steering layers)
       | gen:MODEL:B:PROMPT:NEW[:LAYOUT] (steered greedy decode; LAYOUT 0 auto, 1 scan, 2 unrolled, 3 sliced, 4 moved) with its
         step time ((t(NEW) − t(1)) / (NEW − 1)) against the HBM floor: weights + mean KV cache bytes a step
         ÷ the bandwidth measured on this card in the same run
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
    final_block_skipped_flops,
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
    # FLOPs executed: the HF anchor's nominal count less the final block's positions jaxsteer skips
    mfu = (b * s * fpt + b * head - b * final_block_skipped_flops(cfg, s)) / plain / PEAK
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


LAYOUTS = ("auto", "scan", "unrolled", "sliced", "moved")


def bench_generate(model, name, b, p, n, layout=0):
    cfg = model.config
    ids = jax.random.randint(jax.random.PRNGKey(2), (b, p), 3, cfg.vocab_size)
    l1 = STEER_LAYERS[name][0]
    steer = Steering.from_layers(cfg, {l1: np.random.default_rng(0).normal(size=cfg.hidden_size)}, gamma=2.0)

    def run(new):
        kw = dict(steering=steer, eos_token_id=-1, decode_layout=LAYOUTS[layout])
        return lambda: jax.block_until_ready(generate(model, ids, new, **kw))

    t = time.perf_counter()
    run(n)()
    first = time.perf_counter() - t
    dt = timed(run(n), reps=3, warm=0)
    prefill = timed(run(1), reps=3, warm=1)
    step = (dt - prefill) / (n - 1)
    floor_bytes = decode_bytes(model, b, p + n // 2)
    bandwidth = hbm_bandwidth()
    return {
        "kind": "generate",
        "model": name,
        "B": b,
        "prompt": p,
        "new": n,
        "layout": LAYOUTS[layout],
        "s": dt,
        "new_tok_s": b * n / dt,
        "first_call_s": first,
        "prefill_s": prefill,
        "step_ms": 1e3 * step,
        "floor_ms": 1e3 * floor_bytes / bandwidth,
        "over_floor": step * bandwidth / floor_bytes,
        "bandwidth_tb_s": bandwidth / 1e12,
    }


def decode_bytes(model, b: int, visible: int) -> float:
    """Bytes one decode step must read: every weight once (the head reads the embedding) and each layer's
    KV cache over the positions it sees (``visible``, or the window on sliding layers)."""
    cfg = model.config
    weights = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(model.params))
    seen = sum(visible if g else min(visible, cfg.sliding_window) for g in cfg.is_global)
    kv = 2 * b * cfg.num_kv_heads * cfg.head_dim * seen * jax.numpy.dtype(model.dtype).itemsize
    return weights + kv


def hbm_bandwidth(gib: int = 4) -> float:
    """Read bandwidth in bytes/s: the best of a sum over ``gib`` GiB of bf16 and a copy of it (read + write)."""
    x = jax.numpy.ones((gib << 29,), jax.numpy.bfloat16)
    read = jax.jit(lambda a: jax.numpy.sum(a, dtype=jax.numpy.float32))
    copy = jax.jit(lambda a: a * 2)
    t_read = timed(lambda: jax.block_until_ready(read(x)), reps=5)
    t_copy = timed(lambda: jax.block_until_ready(copy(x)), reps=5)
    del x
    return max((gib << 30) / t_read, 2 * (gib << 30) / t_copy)


def main(argv):
    out = pop_option(argv, "--out", ".")
    use_hf = "--no-hf" not in argv
    specs = [a for a in argv if not a.startswith("--")] or DEFAULT
    hf_fwd, hf_gen = {}, {}
    if use_hf:
        fwd_specs = sorted({f"{m}:{b}:{s}:8" for k, m, b, s, *_ in (x.split(":") for x in specs) if k == "fwd"})
        gen_specs = sorted({":".join(x.split(":")[:5]) for x in specs if x.startswith("gen:")})  # no layout
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
            hf = hf_gen.get((name, *nums[:4]))
            if hf:
                r["hf_new_tok_s"] = hf["new_tok_s"]
                r["speedup"] = r["new_tok_s"] / hf["new_tok_s"]
        r.update(environment())
        print(json.dumps(r), flush=True)
        rows.append(r)
    os.makedirs(out, exist_ok=True)
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
            tag = f"gen {r['model']} B={r['B']} P={r['prompt']} N={r['new']} {r['layout']}"
            print(
                f"{tag:24} {r['new_tok_s']:12.0f} {r.get('hf_new_tok_s', float('nan')):12.0f} "
                f"{r.get('speedup', float('nan')):7.2f}   step {r['step_ms']:.2f} ms, floor {r['floor_ms']:.2f} ms "
                f"({r['over_floor']:.2f}×; {r['bandwidth_tb_s']:.2f} TB/s measured), prefill {r['prefill_s']:.3f} s"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
