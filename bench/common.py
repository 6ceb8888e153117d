"""Shared pieces of the GPU benchmarks: configs, FLOP counts, timing, and running the HF anchor.

Each benchmark runs the HF anchor (``bench/anchors/``, a copy of ``../shared/bench``) in a
subprocess first — JAX preallocates most of the GPU, so the two never share a process — and then
jaxsteer on the same card, and prints both with their ratio.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxsteer.config import preset
from jaxsteer.model.model import Model
from jaxsteer.model.transformer import init_params

PEAK = 790e12  # H100 SXM dense bf16, the figure the anchors use
STEER_LAYERS = {"1b": (13, 20), "4b": (14, 20), "12b": (20, 28), "27b": (26, 36), "tiny": (2, 5)}
HERE = os.path.dirname(os.path.abspath(__file__))


def flops_per_token(cfg, seq: int) -> tuple[float, float]:
    """Forward FLOPs per token of the blocks (causal attention at mean context S/2) and of the head."""
    d, L, H, KV, hd, F, V = (
        cfg.hidden_size,
        cfg.num_layers,
        cfg.num_heads,
        cfg.num_kv_heads,
        cfg.head_dim,
        cfg.intermediate_size,
        cfg.vocab_size,
    )
    per_layer = d * H * hd * 2 + d * KV * hd * 2 + 3 * d * F
    attn = 2 * 2 * H * hd * (seq / 2)
    return 2 * per_layer * L + attn * L, 2 * d * V


def final_block_skipped_flops(cfg, seq: int) -> float:
    """FLOPs a last-position forward no longer runs: the final block's queries, attention, ``o_proj`` and MLP
    at the other ``seq − 1`` positions (its keys and values are still computed everywhere)."""
    d, h, hd, f = cfg.hidden_size, cfg.num_heads, cfg.head_dim, cfg.intermediate_size
    per_position = 2 * (2 * d * h * hd + 3 * d * f) + 2 * 2 * h * hd * (seq / 2)
    return (seq - 1) * per_position


def selection_plans(cfg, name: str, g: int) -> np.ndarray:
    """The Dev2 selection's grid: plans 0…G/2−1 LOC-only (γ = 0, 0.5, …), the rest SUR (EN at its layer)."""
    en, loc = STEER_LAYERS[name]
    rng = np.random.default_rng(0)
    v_en, v_loc = rng.normal(size=cfg.hidden_size), rng.normal(size=cfg.hidden_size)
    plans = np.zeros((g, cfg.num_layers, cfg.hidden_size), np.float32)
    for i in range(g):
        plans[i, loc] = 0.5 * (i % (g // 2)) * v_loc
        plans[i, en] = 2.0 * v_en if i >= g // 2 else 0.0
    return plans


def sweep_plans(cfg, name: str, k: int) -> np.ndarray:
    """A γ sweep of ``k`` points (0, 1, …) of one random vector at the model's EN layer, as dense plans."""
    en = STEER_LAYERS[name][0]
    plans = np.zeros((k, cfg.num_layers, cfg.hidden_size), np.float32)
    plans[:, en] = np.arange(k, dtype=np.float32)[:, None] * np.random.default_rng(0).normal(size=cfg.hidden_size)
    return plans


def random_model(name: str, dtype=jnp.bfloat16, seed: int = 0) -> Model:
    cfg = preset(name)
    params = jax.jit(lambda k: init_params(cfg, k, dtype))(jax.random.PRNGKey(seed))
    jax.block_until_ready(params)
    return Model(config=cfg, params=params, source=f"random {name}")


def models_for(specs: list[str]):
    """Yield ``(kind, name, numbers, model)`` per ``KIND:MODEL:N:...`` spec, keeping one model in memory at a time."""
    held: dict[str, Model] = {}
    for spec in specs:
        kind, name, *nums = spec.split(":")
        if name not in held:
            held.clear()
            held[name] = random_model(name)
        yield kind, name, [int(x) for x in nums], held[name]


def timed(fn, reps: int = 8, warm: int = 2) -> float:
    """Median wall time of ``fn()`` (which must block until its result is ready)."""
    for _ in range(warm):
        fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def compile_seconds(jitted, *args, **kwargs) -> float:
    t = time.perf_counter()
    jitted.lower(*args, **kwargs).compile()
    return time.perf_counter() - t


def run_anchor(script: str, specs: list[str], out_dir: str) -> list[dict]:
    """Run an HF anchor script in a subprocess; returns its JSON rows ([] when torch/GPU is missing)."""
    path = os.path.join(HERE, "anchors", script)
    if not os.path.exists(path):
        print(f"[anchor] {path} missing: copy ../shared/bench/*.py into bench/anchors/", flush=True)
        return []
    os.makedirs(out_dir, exist_ok=True)  # the anchors write into it and do not make it
    proc = subprocess.run([sys.executable, path, *specs, "--out", out_dir], capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"[anchor] {script} failed:\n{proc.stderr[-3000:]}", flush=True)
        return []
    name = os.path.splitext(script)[0] + ".json"
    with open(os.path.join(out_dir, name)) as f:
        return json.load(f)


def pop_option(argv: list[str], flag: str, default: str) -> str:
    """The value after ``flag`` in ``argv`` (both removed from it), or ``default``."""
    if flag not in argv:
        return default
    i = argv.index(flag)
    value = argv[i + 1]
    del argv[i : i + 2]
    return value


def environment() -> dict:
    dev = jax.devices()[0]
    return {
        "jax": jax.__version__,
        "device": getattr(dev, "device_kind", str(dev)),
        "backend": jax.default_backend(),
        "date": time.strftime("%Y-%m-%d"),
    }
