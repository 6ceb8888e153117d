"""γ sweep and all-layer extraction: jaxsteer vs the HF anchor, same GPU, same run.

usage: python bench/sweep.py [--no-hf] [--out DIR] [--chunk C] [SPEC ...]
  SPEC = sweep:MODEL:B:S:K (K γ values at the model's EN layer, last-position option log-probs)
       | extract:MODEL:B:S (last-token activations of every layer)
default: sweep:12b:32:512:8 extract:12b:32:512 extract:1b:32:512
"""

from __future__ import annotations

import json
import os
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import STEER_LAYERS, environment, models_for, run_anchor, timed

from jaxsteer.model.attention import resolve_impl
from jaxsteer.scoring import option_logprob_fn
from jaxsteer.steering.extract import layer_activations
from jaxsteer.steering.sweep import layer_gamma_grid, layer_passes, run_grid

DEFAULT = ["sweep:12b:32:512:8", "extract:12b:32:512", "extract:1b:32:512"]


def bench_sweep(model, name, b, s, k, chunk):
    cfg = model.config
    ids = np.asarray(jax.random.randint(jax.random.PRNGKey(1), (b, s), 3, cfg.vocab_size))
    mask = np.ones_like(ids)
    vectors = np.random.default_rng(0).normal(size=(cfg.num_layers, cfg.hidden_size)).astype(np.float32)
    grid = layer_gamma_grid(vectors, [STEER_LAYERS[name][0]], [0.5 * i for i in range(k)])
    fn = option_logprob_fn((236776, 236799, 236780, 236796))
    run = lambda: run_grid(model, ids, mask, grid, fn, chunk_size=chunk, progress=False)  # noqa: E731
    dt = timed(run, reps=3, warm=1)
    return {
        "kind": "sweep",
        "model": name,
        "B": b,
        "S": s,
        "K": k,
        "chunk": chunk,
        "s": dt,
        "layer_passes": layer_passes(grid, cfg.num_layers),
        "separate_layer_passes": k * cfg.num_layers,
    }


def bench_extract(model, name, b, s):
    cfg = model.config
    ids = jax.random.randint(jax.random.PRNGKey(1), (b, s), 3, cfg.vocab_size)
    mask = np.ones((b, s), np.int32)
    impl = resolve_impl("auto", model.dtype)
    run = lambda: jax.block_until_ready(  # noqa: E731
        layer_activations(model.params, ids, mask, config=cfg, read="last", impl=impl)
    )
    dt = timed(run)
    return {"kind": "extract", "model": name, "B": b, "S": s, "s": dt, "tok_s": b * s / dt}


def main(argv):
    out, chunk = ".", 8
    for flag in ("--out", "--chunk"):
        if flag in argv:
            i = argv.index(flag)
            value = argv[i + 1]
            del argv[i : i + 2]
            out, chunk = (value, chunk) if flag == "--out" else (out, int(value))
    use_hf = "--no-hf" not in argv
    specs = [a for a in argv if not a.startswith("--")] or DEFAULT
    hf = {}
    if use_hf:
        sweeps = [f"{m}:{b}:{s}:{k}" for kind, m, b, s, k in (x.split(":") for x in specs if x.startswith("sweep:"))]
        extracts = [x for x in specs if x.startswith("extract:")]
        for r in run_anchor("hf_anchor.py", sweeps, out) if sweeps else []:
            hf[("sweep", r["model"], r["B"], r["S"])] = r["sweep_loop_s"]
        for r in run_anchor("hf_anchor2.py", extracts, out) if extracts else []:
            hf[("extract", r["model"], r["B"], r["S"])] = r["s"]
    rows = []
    for kind, name, nums, model in models_for(specs):
        r = bench_sweep(model, name, *nums, chunk) if kind == "sweep" else bench_extract(model, name, *nums)
        ref = hf.get((kind, name, nums[0], nums[1]))
        if ref:
            r["hf_s"], r["speedup"] = ref, ref / r["s"]
        r.update(environment())
        print(json.dumps(r), flush=True)
        rows.append(r)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "sweep.json"), "w") as f:
        json.dump(rows, f, indent=1)
    print(f"\n{'bench':28} {'jaxsteer s':>10} {'HF s':>8} {'ratio':>6}")
    for r in rows:
        tag = f"{r['kind']} {r['model']} B={r['B']} S={r['S']}" + (f" K={r['K']}" if r["kind"] == "sweep" else "")
        print(f"{tag:28} {r['s']:10.3f} {r.get('hf_s', float('nan')):8.3f} {r.get('speedup', float('nan')):6.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
