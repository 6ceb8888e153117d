"""Pretrain organism variants side by side (one process each, sharing one GPU), then run the demo on each.

    python3 bench/organism.py --out $OUT base:6000:128:3e-3 lr1:6000:128:1e-3 s40:6000:128:3e-3:shared_fraction=0.4

A variant is ``name:steps:batch:lr[:knob=value,...]`` with ``WorldConfig`` knobs. For each variant this
writes ``<out>/<name>.tar.gz`` (the organism folder, the pretraining metrics, the demo's report and
``demo.json``) and prints the report. What the shipped organism was built with is in its ``pretrain.json``.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path


def parse_variant(spec: str) -> dict:
    name, steps, batch, lr, *rest = spec.split(":")
    knobs = {}
    for item in ",".join(rest).split(","):
        if item:
            key, value = item.split("=", 1)
            knobs[key] = ast.literal_eval(value)
    return {"name": name, "steps": int(steps), "batch": int(batch), "lr": float(lr), "knobs": knobs}


def run_variant(spec: str, out: str, work: str, demo_args: list[str]) -> None:
    """Child process: pretrain one variant into ``work/<name>/organism``, then the demo from it."""
    from jaxsteer.organism import WorldConfig
    from jaxsteer.organism.demo import DemoConfig, run_demo
    from jaxsteer.organism.model import pretrain

    v = parse_variant(spec)
    root = os.path.join(work, v["name"])
    organism = os.path.join(root, "organism")
    t0 = time.time()
    pretrain(os.path.join(root, "retrain"), steps=v["steps"], batch=v["batch"], lr=v["lr"], dest=organism,
             world_config=WorldConfig(**v["knobs"]), progress=False)  # fmt: skip
    print(f"[{v['name']}] pretrained in {time.time() - t0:.0f} s", flush=True)
    changes = {}
    if demo_args:
        changes = {k: ast.literal_eval(x) for k, x in (a.split("=", 1) for a in demo_args)}
    cfg = dataclasses.replace(DemoConfig(out=os.path.join(root, "demo"), model=organism, progress=False), **changes)
    run_demo(cfg)
    print(f"[{v['name']}] done in {time.time() - t0:.0f} s", flush=True)


def pack(name: str, out: str, work: str) -> str:
    root = os.path.join(work, name)
    path = os.path.join(out, f"{name}.tar.gz")
    with tarfile.open(path, "w:gz") as tar:
        for rel in ("organism", "retrain/pretrain/metrics.jsonl", "demo/report.md", "demo/demo.json",
                    "demo/plane.png", "demo/sper_by_layer.png", "log.txt"):  # fmt: skip
            if os.path.exists(os.path.join(root, rel)):
                tar.add(os.path.join(root, rel), arcname=f"{name}/{rel}")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variants", nargs="*")
    ap.add_argument("--out", required=True)
    ap.add_argument("--work", default="/tmp/organism-bench")
    ap.add_argument("--timeout", type=float, default=540, help="seconds per variant")
    ap.add_argument("--demo", nargs="*", default=[], help="DemoConfig overrides key=value")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        run_variant(args.child, args.out, args.work, args.demo)
        return
    if not args.variants:
        ap.error("give at least one variant name:steps:batch:lr[:knob=value,...]")
    os.makedirs(args.out, exist_ok=True)
    env = dict(os.environ, XLA_PYTHON_CLIENT_MEM_FRACTION=f"{0.9 / len(args.variants):.2f}", PYTHONUNBUFFERED="1")
    procs = {}
    for spec in args.variants:
        name = parse_variant(spec)["name"]
        os.makedirs(os.path.join(args.work, name), exist_ok=True)
        log = open(os.path.join(args.work, name, "log.txt"), "w")  # noqa: SIM115 (closed after the child exits)
        cmd = [sys.executable, __file__, "--out", args.out, "--work", args.work, "--child", spec]
        if args.demo:
            cmd += ["--demo", *args.demo]
        procs[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log)
    deadline = time.time() + args.timeout
    for name, (proc, log) in procs.items():
        try:
            proc.wait(timeout=max(deadline - time.time(), 1))
        except subprocess.TimeoutExpired:
            proc.kill()
            print(f"[{name}] killed at the time limit")
        log.close()
        tail = Path(args.work, name, "log.txt").read_text().splitlines()[-45:]
        print(f"===== {name} (rc {proc.returncode})\n" + "\n".join(tail), flush=True)
        report = os.path.join(args.work, name, "demo", "report.md")
        if os.path.exists(report):
            print(Path(report).read_text())
        print(f"packed {pack(name, args.out, args.work)}", flush=True)


if __name__ == "__main__":
    main()
