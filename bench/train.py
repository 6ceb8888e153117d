"""CLA training throughput: the jitted train step vs the HF anchor, the MIDALIGN partial scan, and scaling.

usage: python bench/train.py [--no-hf] [--out DIR] [--remat POLICY|none] [--chunk C] [--padded]
                             [--ce fused,chunked] [--loop auto|scan|unrolled] [--no-breakdown] [SPEC ...]
  SPEC = train:MODEL:B:S          full fine-tuning step: AdamW, bf16 compute, fp32 master weights and moments,
                                  once per --ce implementation of the cross-entropy (train.ce_impl), side by side
       | align:MODEL:B:S          MIDALIGN (LoRA r=8 on all projections, l_align = L/2): the alignment step
                                  (B/2 pairs = B rows, blocks 0..l_align) vs the task step (B rows, all blocks)
       | scale:MODEL:B:S[:MODE]   the MODE step (lora | full; default lora) with B rows per device on 1, 2, 4, …
                                  jax.device_count() devices (lora: data-parallel; full: fsdp over all)
default: train:1b:8:1024 align:12b:8:1024 scale:4b:8:1024
remat default: none for train (the 1B fits), nothing_saveable for align and scale
CPU smoke test: python3 bench/train.py --no-hf train:tiny:2:32 align:tiny:2:32 scale:tiny:2:32

Breakdown of a train spec (skip with --no-breakdown): the same step with the head replaced by a cheap loss
on the last hidden state (``nohead``: blocks, embedding and AdamW only), so ``step − nohead`` is the head's
share of each implementation; and the head alone (final norm + cross-entropy, forward and both gradients,
on random activations) per implementation, with its MFU against the head's useful ``3·2·D·V`` FLOPs/token.

The HF anchor (``hf_anchor2.py train:MODEL:B:S``: PyTorch AdamW fused, fp32 master weights, bf16 autocast,
sdpa) runs first in a subprocess on the same card. MFU counts the anchor's useful FLOPs,
``6·N·tokens + 12·H·Dh·(S/2)·L·tokens`` (N = block and head parameters), so rematerialisation and the
chunked cross-entropy's recomputed head are overhead, not credit. Batches are unpadded (no attention mask,
the cuDNN kernel's fast path) unless ``--padded``.
"""

from __future__ import annotations

import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import PEAK, compile_seconds, environment, flops_per_token, run_anchor, timed

import jaxsteer.sharding as M
from jaxsteer.cla import config as C
from jaxsteer.cla import losses as L
from jaxsteer.cla import trainer as T
from jaxsteer.cla.lora import forward_hidden

DEFAULT = ["train:1b:8:1024", "align:12b:8:1024", "scale:4b:8:1024"]


REMAT = {"train": None, "align": "nothing_saveable", "scale": "nothing_saveable"}  # what fits an 80 GB card


def remat_for(kind, opts):
    value = opts["remat"]
    return REMAT[kind] if value == "default" else (None if value in ("none", "None") else value)


def make_config(
    model, trainable, method, *, batch, remat, chunk, l_align=None, align_batch=2, ce_impl="fused", layer_loop="scan"
) -> C.TrainConfig:
    data = {
        "method": method,
        "steps": 1000,
        "out": "/tmp/jaxsteer-bench",
        "model": {"preset": model},
        "train": {
            "trainable": trainable,
            "batch_size": batch,
            "compute_dtype": "bfloat16",
            "remat": remat,
            "ce_chunk": chunk,
            "ce_impl": ce_impl,
            "layer_loop": layer_loop,
            "impl": "auto",
        },  # fmt: skip
        "lora": {"rank": 8, "alpha": 16.0, "dropout": 0.1},
        "optim": {"lr": 1e-5, "schedule": "constant", "warmup": 0, "weight_decay": 0.0},
        "midalign": {"l_align": l_align, "align_batch": align_batch},
    }
    return C.validate(C.configfile.build(C.TrainConfig, data))


def host_batch(cfg_model, rows, seq, padded, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, cfg_model.vocab_size, size=(1, rows, seq)).astype(np.int32)
    batch = {"ids": ids, "targets": np.roll(ids, -1, -1), "weights": np.ones(ids.shape, np.float32)}
    if padded:
        batch["mask"] = np.ones_like(ids)
    return batch


class Runner:
    """A built setup, its state and one batch per kind: ``run(kind)`` does one step and waits for it."""

    def __init__(self, cfg, batches, mesh=None):
        self.setup = T.build(cfg, mesh)
        self.state = T.init_state(self.setup)
        self.batches = {k: M.put_batch(b, self.setup.mesh) for k, b in batches.items()}
        self.steps = dict(self.setup.steps)  # a copy: the trainer's dict is its compile cache

    def add_step(self, kind, objective, like):
        """A step of ``objective`` on ``like``'s batch, built as the trainer builds its own."""
        s = self.setup
        T.OBJECTIVES[kind] = objective  # make_step looks the objective up by kind
        try:
            step = T.make_step(kind, s.spec, s.optimizer, s.labels, s.schedule, s.mesh)
        finally:
            del T.OBJECTIVES[kind]
        self.steps[kind] = jax.jit(step, out_shardings=(s.state_shardings, None), donate_argnums=(0,))
        self.batches[kind] = self.batches[like]

    def compile(self, kind):
        return compile_seconds(self.steps[kind], self.state, self.batches[kind], None)

    def run(self, kind):
        self.state, metrics = self.steps[kind](self.state, self.batches[kind], None)
        return float(metrics["loss"])

    def close(self):
        self.state = self.batches = None


def train_flops(model_cfg, rows, seq):
    fpt, head = flops_per_token(model_cfg, seq)
    return 3 * (fpt + head) * rows * seq


def no_head_objective(tree, mb, den, spec, key, constrain, ref=None):
    """The task step without the vocabulary head: a cheap loss on the last hidden state (same blocks, AdamW)."""
    h = forward_hidden(tree, mb["ids"], mb.get("mask"), spec, key=key, constrain=constrain)
    loss = jnp.sum(mb["weights"][..., None] * jnp.square(h)) * (1e-6 / den["tokens"])
    return loss, {"nll": loss}


def bench_train(name, b, s, opts, ce_impl, breakdown=False):
    cfg = make_config(name, "full", "mist", batch=b, remat=remat_for("train", opts), chunk=opts["chunk"],
                      ce_impl=ce_impl, layer_loop=opts["loop"])  # fmt: skip
    mesh = M.make_mesh(C.MeshSpec(), jax.devices()[:1])
    r = Runner(cfg, {"task": host_batch(T.resolve_model(cfg)[0], b, s, opts["padded"])}, mesh)
    compile_s = r.compile("task")
    dt = timed(lambda: r.run("task"), reps=5, warm=2)
    model_cfg = r.setup.model_config
    out = {"kind": "train_full_adamw", "model": name, "B": b, "S": s, "remat": cfg.train.remat, "chunk": opts["chunk"],
           "ce_impl": ce_impl, "layer_loop": C.resolve_layer_loop(opts["loop"]), "step_s": dt, "tok_s": b * s / dt, "mfu": train_flops(model_cfg, b, s) / dt / PEAK,
           "compile_s": compile_s}  # fmt: skip
    if breakdown:  # the head-free step shares this runner's state and batch
        r.add_step("nohead", no_head_objective, like="task")
        r.compile("nohead")
        out["nohead_step_s"] = timed(lambda: r.run("nohead"), reps=5, warm=2)
    r.close()
    return out


def bench_head(name, b, s, opts, ce_impl):
    """The head alone, as in the full fine-tuning step: final norm + cross-entropy, value and the gradients
    w.r.t. the activations and the fp32 master embedding, on random inputs."""
    model_cfg = T.resolve_model(make_config(name, "full", "mist", batch=b, remat=None, chunk=opts["chunk"]))[0]
    spec = C.StepSpec(config=model_cfg, compute_dtype="bfloat16", remat=None, chunk=opts["chunk"], ce_impl=ce_impl)
    d, v = model_cfg.hidden_size, model_cfg.vocab_size
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    base = {"embed": 0.02 * jax.random.normal(k1, (v, d), jnp.float32), "final_norm": jnp.zeros((d,), jnp.float32)}
    h = jax.random.normal(k2, (b, s, d), jnp.float32)
    targets = jax.random.randint(k3, (b, s), 0, v)
    weights = jnp.ones((1, b, s), jnp.float32)

    @jax.jit
    def step(base, h):
        loss = lambda base, h: -L.head_logprob_sums(base, h, targets, weights, spec)[0] / (b * s)  # noqa: E731
        return jax.value_and_grad(loss, argnums=(0, 1))(base, h)

    compile_s = compile_seconds(step, base, h)
    dt = timed(lambda: jax.block_until_ready(step(base, h)), reps=5, warm=2)
    return {"head_only_s": dt, "head_only_mfu": 3 * 2 * d * v * b * s / dt / PEAK, "head_compile_s": compile_s}


def bench_align(name, b, s, opts):
    model_cfg = T.resolve_model(make_config(name, "lora", "mist", batch=b, remat=None, chunk=64))[0]
    l_align = model_cfg.num_layers // 2
    cfg = make_config(name, "lora", "midalign", batch=b, remat=remat_for("align", opts), chunk=opts["chunk"], l_align=l_align,
                      align_batch=max(b // 2, 2))  # fmt: skip
    mesh = M.make_mesh(C.MeshSpec(), jax.devices()[:1])
    batches = {
        "task": host_batch(model_cfg, b, s, opts["padded"]),
        "align": host_batch(model_cfg, 2 * max(b // 2, 2), s, opts["padded"], 1),
    }
    r = Runner(cfg, batches, mesh)
    compile_s = r.compile("task") + r.compile("align")
    task = timed(lambda: r.run("task"), reps=5, warm=2)
    align = timed(lambda: r.run("align"), reps=5, warm=2)
    r.close()
    return {"kind": "midalign_align_vs_task", "model": name, "B": b, "S": s, "l_align": l_align, "L": model_cfg.num_layers,
            "task_s": task, "align_s": align, "ratio": align / task,
            "expected_ratio": (l_align + 1) / model_cfg.num_layers, "compile_s": compile_s}  # fmt: skip


def bench_scale(name, b, s, opts, mode="lora"):
    counts, n = [], 1
    while n <= jax.device_count():
        counts.append(n)
        n *= 2
    rows = []
    for n in counts:
        spec = C.MeshSpec(data=n, fsdp=1) if mode == "lora" else C.MeshSpec(data=1, fsdp=n)
        mesh = M.make_mesh(spec, jax.devices()[:n])
        cfg = make_config(name, mode, "mist", batch=b * n, remat=remat_for("scale", opts), chunk=opts["chunk"])
        r = Runner(cfg, {"task": host_batch(T.resolve_model(cfg)[0], b * n, s, opts["padded"])}, mesh)
        r.compile("task")
        dt = timed(lambda r=r: r.run("task"), reps=5, warm=2)
        model_cfg = r.setup.model_config
        r.close()
        rows.append(
            {
                "devices": n,
                "step_s": dt,
                "tok_s": b * n * s / dt,
                "mfu": train_flops(model_cfg, b * n, s) / dt / PEAK / n,
            }
        )
    for row in rows:
        row["per_device_efficiency"] = row["tok_s"] / (row["devices"] * rows[0]["tok_s"])
    return {"kind": "scaling", "model": name, "mode": mode, "B_per_device": b, "S": s, "runs": rows}


def main(argv):
    opts = {"out": ".", "remat": "default", "chunk": 256, "padded": False, "ce": "fused,chunked", "loop": "auto"}
    for flag in ("--out", "--remat", "--chunk", "--ce", "--loop"):
        if flag in argv:
            i = argv.index(flag)
            opts[flag[2:]] = argv[i + 1] if flag != "--chunk" else int(argv[i + 1])
            del argv[i : i + 2]
    opts["padded"] = "--padded" in argv
    breakdown = "--no-breakdown" not in argv
    impls = opts["ce"].split(",")
    if bad := [x for x in impls if x not in C.CE_IMPLS]:
        raise SystemExit(f"--ce {opts['ce']}: unknown {bad}; expected a comma list of {', '.join(C.CE_IMPLS)}")
    use_hf = "--no-hf" not in argv
    specs = [a for a in argv if not a.startswith("--")] or DEFAULT
    hf = {}
    train_specs = [x for x in specs if x.startswith("train:")]
    if use_hf and train_specs:
        for row in run_anchor("hf_anchor2.py", train_specs, opts["out"]):
            hf[(row["model"], row["B"], row["S"])] = row
    results = []
    for spec in specs:
        kind, name, *rest = spec.split(":")
        b, s = int(rest[0]), int(rest[1])
        t0 = time.perf_counter()
        if kind == "train":
            rows = [bench_train(name, b, s, opts, impl, breakdown=breakdown and i == 0) for i, impl in enumerate(impls)]
            anchor = hf.get((name, b, s))
            for r in rows:
                if anchor:
                    r["hf_tok_s"], r["hf_mfu"] = anchor["tok_s"], anchor["mfu"]
                    r["speedup"] = r["tok_s"] / anchor["tok_s"]
                if breakdown:  # the head-free step is the same computation whatever the cross-entropy
                    r["nohead_step_s"] = rows[0]["nohead_step_s"]
                    r["head_share"] = (r["step_s"] - r["nohead_step_s"]) / r["step_s"]
                    r.update(bench_head(name, b, s, opts, r["ce_impl"]))
        elif kind == "align":
            rows = [bench_align(name, b, s, opts)]
        elif kind == "scale":
            rows = [bench_scale(name, b, s, opts, *(rest[2:3] or ["lora"]))]
        else:
            raise SystemExit(f"unknown spec kind {kind!r} in {spec!r}")
        for r in rows:
            r["wall_s"] = time.perf_counter() - t0
            r.update(environment())
            print(json.dumps(r), flush=True)
            results.append(r)
    os.makedirs(opts["out"], exist_ok=True)
    with open(os.path.join(opts["out"], "train.json"), "w") as f:
        json.dump(results, f, indent=1)
    print()
    for r in results:
        if r["kind"] == "train_full_adamw":
            print(f"full FT {r['model']} B={r['B']} S={r['S']} ce={r['ce_impl']}: {r['tok_s']:.0f} tok/s, MFU {r['mfu']:.3f}, "
                  f"HF {r.get('hf_tok_s', float('nan')):.0f} tok/s (MFU {r.get('hf_mfu', float('nan')):.3f}), "
                  f"ratio {r.get('speedup', float('nan')):.2f}, compile {r['compile_s']:.1f} s")  # fmt: skip
            if "head_share" in r:
                print(f"  breakdown: step {r['step_s'] * 1e3:.1f} ms = head-free step {r['nohead_step_s'] * 1e3:.1f} ms "
                      f"+ head {(r['step_s'] - r['nohead_step_s']) * 1e3:.1f} ms ({100 * r['head_share']:.1f} %); "
                      f"head alone {r['head_only_s'] * 1e3:.1f} ms, MFU {r['head_only_mfu']:.3f}")  # fmt: skip
        elif r["kind"] == "midalign_align_vs_task":
            print(f"MIDALIGN {r['model']}: align step {r['align_s'] * 1e3:.1f} ms vs task step {r['task_s'] * 1e3:.1f} ms "
                  f"= {r['ratio']:.3f} (blocks (l_align+1)/L = {r['expected_ratio']:.3f})")  # fmt: skip
        else:
            for run in r["runs"]:
                print(f"scale {r['model']} {r['mode']} B/dev={r['B_per_device']} S={r['S']} devices={run['devices']}: "
                      f"{run['tok_s']:.0f} tok/s, per-device efficiency {run['per_device_efficiency']:.3f}, "
                      f"MFU/dev {run['mfu']:.3f}")  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
