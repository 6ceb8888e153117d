"""CLA training throughput: the jitted train step vs the HF anchor, the MIDALIGN partial scan, and scaling.

usage: python bench/train.py [--no-hf] [--out DIR] [--remat POLICY|none] [--chunk C] [--padded] [SPEC ...]
  SPEC = train:MODEL:B:S          full fine-tuning step: AdamW, bf16 compute, fp32 master weights and moments
       | align:MODEL:B:S          MIDALIGN (LoRA r=8 on all projections, l_align = L/2): the alignment step
                                  (B/2 pairs = B rows, blocks 0..l_align) vs the task step (B rows, all blocks)
       | scale:MODEL:B:S[:MODE]   the MODE step (lora | full; default lora) with B rows per device on 1, 2, 4, …
                                  jax.device_count() devices (lora: data-parallel; full: fsdp over all)
default: train:1b:8:1024 align:12b:8:1024 scale:4b:8:1024
remat default: none for train (the 1B fits), nothing_saveable for align and scale
CPU smoke test: python3 bench/train.py --no-hf train:tiny:2:32 align:tiny:2:32 scale:tiny:2:32

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
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import PEAK, compile_seconds, environment, flops_per_token, run_anchor, timed

import jaxsteer.sharding as M
from jaxsteer.cla import config as C
from jaxsteer.cla import trainer as T

DEFAULT = ["train:1b:8:1024", "align:12b:8:1024", "scale:4b:8:1024"]


REMAT = {"train": None, "align": "nothing_saveable", "scale": "nothing_saveable"}  # what fits an 80 GB card


def remat_for(kind, opts):
    value = opts["remat"]
    return REMAT[kind] if value == "default" else (None if value in ("none", "None") else value)


def make_config(model, trainable, method, *, batch, remat, chunk, l_align=None, align_batch=2) -> C.TrainConfig:
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

    def compile(self, kind):
        return compile_seconds(self.setup.steps[kind], self.state, self.batches[kind], None)

    def run(self, kind):
        self.state, metrics = self.setup.steps[kind](self.state, self.batches[kind], None)
        return float(metrics["loss"])

    def close(self):
        self.state = self.batches = None


def train_flops(model_cfg, rows, seq):
    fpt, head = flops_per_token(model_cfg, seq)
    return 3 * (fpt + head) * rows * seq


def bench_train(name, b, s, opts):
    cfg = make_config(name, "full", "mist", batch=b, remat=remat_for("train", opts), chunk=opts["chunk"])
    mesh = M.make_mesh(C.MeshSpec(), jax.devices()[:1])
    r = Runner(cfg, {"task": host_batch(T.resolve_model(cfg)[0], b, s, opts["padded"])}, mesh)
    compile_s = r.compile("task")
    dt = timed(lambda: r.run("task"), reps=5, warm=2)
    model_cfg = r.setup.model_config
    r.close()
    return {"kind": "train_full_adamw", "model": name, "B": b, "S": s, "remat": cfg.train.remat, "chunk": opts["chunk"],
            "step_s": dt, "tok_s": b * s / dt, "mfu": train_flops(model_cfg, b, s) / dt / PEAK, "compile_s": compile_s}  # fmt: skip


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
    opts = {"out": ".", "remat": "default", "chunk": 256, "padded": False}
    for flag in ("--out", "--remat", "--chunk"):
        if flag in argv:
            i = argv.index(flag)
            opts[flag[2:]] = argv[i + 1] if flag != "--chunk" else int(argv[i + 1])
            del argv[i : i + 2]
    opts["padded"] = "--padded" in argv
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
            r = bench_train(name, b, s, opts)
            anchor = hf.get((name, b, s))
            if anchor:
                r["hf_tok_s"], r["hf_mfu"], r["speedup"] = anchor["tok_s"], anchor["mfu"], r["tok_s"] / anchor["tok_s"]
        elif kind == "align":
            r = bench_align(name, b, s, opts)
        elif kind == "scale":
            r = bench_scale(name, b, s, opts, *(rest[2:3] or ["lora"]))
        else:
            raise SystemExit(f"unknown spec kind {kind!r} in {spec!r}")
        r["wall_s"] = time.perf_counter() - t0
        r.update(environment())
        print(json.dumps(r), flush=True)
        results.append(r)
    with open(os.path.join(opts["out"], "train.json"), "w") as f:
        json.dump(results, f, indent=1)
    print()
    for r in results:
        if r["kind"] == "train_full_adamw":
            print(f"full FT {r['model']} B={r['B']} S={r['S']}: {r['tok_s']:.0f} tok/s, MFU {r['mfu']:.3f}, "
                  f"HF {r.get('hf_tok_s', float('nan')):.0f} tok/s (MFU {r.get('hf_mfu', float('nan')):.3f}), "
                  f"ratio {r.get('speedup', float('nan')):.2f}, compile {r['compile_s']:.1f} s")  # fmt: skip
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
