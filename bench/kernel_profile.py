"""Where the time of a step goes: a device trace of warm steps, summarised by kernel and by kind.

    PYTHONPATH=. python3 bench/kernel_profile.py --out $OUT train:1b:8:1024 fwd:12b:32:512 gen:12b:32:256:64[:LAYOUT]

(``LAYOUT`` of ``gen``: 0 auto, 1 scan, 2 unrolled; ``grid:MODEL:B:P:N:G``: one ``generate`` of G plans as Dev2
selection makes them — half LOC-only, half SUR — with the wall time of its prefill apart.) XLA flags to compare go in ``XLA_FLAGS`` as usual.

Each workload runs in its own child process (one model in memory at a time): it is compiled and warmed,
then ``jax.profiler.trace`` records a few steps and writes a Perfetto JSON trace; this script reads the
trace's GPU kernel events and prints, per workload, the device-busy time per step, the share of each
kind of kernel (matmul, attention, fusion, copy, reduction…) and the 25 longest kernels. For ``gen`` it
also prints the kernels per decode step and the wall time per step that no kernel covers (launch gaps).
Writes ``profile_<workload>.json`` under ``--out``.
"""

from __future__ import annotations

import glob
import gzip
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.dirname(HERE))

KINDS = (  # first match wins; names of cuBLAS/cuDNN/XLA GPU kernels
    ("attention", r"fmha|flash|cudnn|attention|sdpa"),
    ("matmul", r"gemm|cutlass|xmma|nvjet|sm90_|sm80_|matmul|cublas|dot"),
    ("copy", r"memcpy|memset|copy|dynamic_update_slice|dynamic_slice|transpose|concatenate"),
    ("reduction", r"reduce|softmax|argmax|topk|sort"),
    ("fusion", r"fusion|loop_|input_|elementwise|convert|add|multiply"),
)


def kind_of(name: str) -> str:
    low = name.lower()
    return next((k for k, pat in KINDS if re.search(pat, low)), "other")


def read_trace(folder: str) -> list[dict]:
    paths = glob.glob(os.path.join(folder, "**", "*.trace.json.gz"), recursive=True)
    paths += glob.glob(os.path.join(folder, "**", "perfetto_trace.json.gz"), recursive=True)
    if not paths:
        raise SystemExit(f"no trace under {folder}")
    with gzip.open(sorted(paths, key=os.path.getmtime)[-1], "rt") as f:
        data = json.load(f)
    return data["traceEvents"] if isinstance(data, dict) else data


def kernel_events(events: list[dict]) -> tuple[list[dict], dict]:
    """GPU kernel events (complete events on a GPU process's stream threads) and the thread names seen."""
    procs, threads = {}, {}
    for e in events:
        if e.get("ph") == "M" and e.get("name") == "process_name":
            procs[e["pid"]] = str(e.get("args", {}).get("name", ""))
        if e.get("ph") == "M" and e.get("name") == "thread_name":
            threads[(e["pid"], e["tid"])] = str(e.get("args", {}).get("name", ""))
    gpu = {pid for pid, name in procs.items() if re.search(r"GPU|gpu|device", name) and "host" not in name.lower()}
    kernels = []
    for e in events:
        if e.get("ph") != "X" or e.get("pid") not in gpu:
            continue
        tname = threads.get((e["pid"], e.get("tid")), "")
        if re.search(r"stream", tname, re.I) and not re.search(r"XLA Ops|XLA Modules|Steps", tname):
            kernels.append(e)
    seen = {f"{procs.get(p, p)} / {t}" for (p, _), t in threads.items() if p in gpu}
    return kernels, {"threads": sorted(seen)}


def summarise(kernels: list[dict], steps: int) -> dict:
    by_name: dict[str, list[float]] = {}
    for e in kernels:
        by_name.setdefault(e["name"], []).append(float(e.get("dur", 0.0)))
    total = sum(sum(v) for v in by_name.values())
    by_kind: dict[str, float] = {}
    for name, durs in by_name.items():
        by_kind[kind_of(name)] = by_kind.get(kind_of(name), 0.0) + sum(durs)
    top = sorted(by_name.items(), key=lambda kv: -sum(kv[1]))[:25]
    ops: dict[str, dict[str, int]] = {}  # the HLO ops each kernel ran for (where the trace names them)
    for e in kernels:
        args = e.get("args", {})
        op = args.get("hlo_op") or args.get("long_name") or args.get("name")
        if op:
            seen = ops.setdefault(e["name"], {})
            seen[str(op)[:80]] = seen.get(str(op)[:80], 0) + 1
    spans = sorted((float(e["ts"]), float(e["ts"]) + float(e.get("dur", 0.0))) for e in kernels)
    busy, end = 0.0, None
    for lo, hi in spans:  # union of kernel intervals (streams may overlap)
        if end is None or lo > end:
            busy += hi - lo
            end = hi
        elif hi > end:
            busy += hi - end
            end = hi
    window = (spans[-1][1] - spans[0][0]) if spans else 0.0
    return {
        "steps": steps,
        "kernels_per_step": len(kernels) / steps,
        "kernel_ms_per_step": total / steps / 1e3,
        "busy_ms_per_step": busy / steps / 1e3,
        "window_ms_per_step": window / steps / 1e3,
        "by_kind_pct": {k: round(100 * v / total, 1) for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])},
        "top": [
            {
                "name": n[:110],
                "kind": kind_of(n),
                "count_per_step": len(d) / steps,
                "ms_per_step": sum(d) / steps / 1e3,
                "pct": round(100 * sum(d) / total, 1),
                "ops": dict(sorted(ops.get(n, {}).items(), key=lambda kv: -kv[1])[:6]),
            }
            for n, d in top
        ],  # fmt: skip
    }


def child(spec: str, out: str) -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from common import random_model

    kind, name, *nums = spec.split(":")
    nums = [int(x) for x in nums]
    if kind == "train":
        import train as tb

        b, s = nums
        opts = {"remat": "default", "chunk": 8192, "padded": False}
        cfg = tb.make_config(name, "full", "mist", batch=b, remat=tb.remat_for("train", opts), chunk=opts["chunk"])
        mesh = tb.M.make_mesh(tb.C.MeshSpec(), jax.devices()[:1])
        r = tb.Runner(cfg, {"task": tb.host_batch(tb.T.resolve_model(cfg)[0], b, s, False)}, mesh)
        r.compile("task")
        run, steps = (lambda: r.run("task")), 1
    elif kind == "fwd":
        from jaxsteer import forward

        model = random_model(name)
        b, s = nums
        ids = jax.random.randint(jax.random.PRNGKey(1), (b, s), 3, model.config.vocab_size)
        run, steps = (lambda: jax.block_until_ready(forward(model, ids, logits_at="last").logits)), 1
    elif kind == "gen":
        from jaxsteer import Steering, generate

        model = random_model(name)
        b, p, n = nums[:3]
        layout = {0: "auto", 1: "scan", 2: "unrolled"}[nums[3] if len(nums) > 3 else 0]
        ids = jax.random.randint(jax.random.PRNGKey(2), (b, p), 3, model.config.vocab_size)
        vec = np.random.default_rng(0).normal(size=model.config.hidden_size)
        steer = Steering.from_layers(model.config, {model.config.num_layers // 2: vec}, gamma=2.0)

        def run():
            return jax.block_until_ready(generate(model, ids, n, steering=steer, eos_token_id=-1, decode_layout=layout))

        steps = n - 1  # the decode steps; the prefill is in the trace too (reported apart below)
    elif kind == "grid":  # Dev2 selection's call: G/2 LOC-only plans and G/2 SUR plans (EN applied), one generate
        from common import selection_plans

        from jaxsteer import generate

        model = random_model(name)
        b, p, n, g = nums
        cfg = model.config
        plans = selection_plans(cfg, name, g)
        ids = jax.random.randint(jax.random.PRNGKey(2), (b, p), 3, cfg.vocab_size)

        def run(new=n):
            return jax.block_until_ready(generate(model, ids, new, plans=plans, eos_token_id=-1))

        run(1)
        t = time.perf_counter()
        run(1)
        prefill_s = time.perf_counter() - t
        steps = n - 1
    else:
        raise SystemExit(f"unknown workload {spec}")
    for _ in range(2):
        run()
    t = time.perf_counter()
    run()
    wall = time.perf_counter() - t
    folder = os.path.join(out, "trace_" + spec.replace(":", "_"))
    with jax.profiler.trace(folder, create_perfetto_trace=True):
        run()
    kernels, info = kernel_events(read_trace(folder))
    summary = {"workload": spec, "wall_s_per_call": wall, **info, **summarise(kernels, steps)}
    if kind == "grid":
        summary["prefill_s"] = prefill_s  # a call with one new token: prefill, head, no decode step
    if kind in ("gen", "grid"):  # the prefill kernels are the ones before the first decode-loop kernel: split by time
        summary["note"] = "per-step figures divide the whole call (prefill included) by the decode steps"
        summary["wall_ms_per_step_incl_prefill"] = wall / steps * 1e3
    summary["jax"] = jax.__version__
    summary["xla_flags"] = os.environ.get("XLA_FLAGS", "")
    summary["device"] = jax.devices()[0].device_kind
    del jnp
    with open(os.path.join(out, f"profile_{spec.replace(':', '_')}.json"), "w") as f:
        json.dump(summary, f, indent=1)


def show(summary: dict) -> None:
    print(f"\n== {summary['workload']} on {summary['device']} (jax {summary['jax']}) {summary.get('xla_flags', '')}")
    print(f"  wall per call {summary['wall_s_per_call'] * 1e3:.1f} ms; per step: kernels {summary['kernels_per_step']:.0f}, "
          f"kernel time {summary['kernel_ms_per_step']:.2f} ms, busy {summary['busy_ms_per_step']:.2f} ms, "
          f"window {summary['window_ms_per_step']:.2f} ms")  # fmt: skip
    if "prefill_s" in summary:
        print(f"  prefill alone (a call with one new token): {summary['prefill_s'] * 1e3:.1f} ms")
    print("  by kind: " + ", ".join(f"{k} {v}%" for k, v in summary["by_kind_pct"].items()))
    for row in summary["top"][:10]:
        print(
            f"  {row['pct']:5.1f}%  {row['ms_per_step']:8.3f} ms  ×{row['count_per_step']:<6.1f} {row['kind']:<9} {row['name']}"
        )
        if row.get("ops"):
            print("           for " + ", ".join(f"{op} ×{n}" for op, n in row["ops"].items()))
    if not summary["top"]:
        print("  no kernel events found; threads seen: " + "; ".join(summary["threads"][:20]))


def main(argv):
    from common import pop_option

    out = pop_option(argv, "--out", ".")
    os.makedirs(out, exist_ok=True)
    if argv and argv[0] == "--child":
        child(argv[1], out)
        return
    for spec in argv:
        proc = subprocess.run([sys.executable, __file__, "--out", out, "--child", spec], text=True)
        path = os.path.join(out, f"profile_{spec.replace(':', '_')}.json")
        if proc.returncode or not os.path.exists(path):
            print(f"[profile] {spec} failed (exit {proc.returncode})", flush=True)
            continue
        with open(path) as f:
            show(json.load(f))


if __name__ == "__main__":
    main(sys.argv[1:])
