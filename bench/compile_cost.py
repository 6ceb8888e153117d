"""What a first run pays before its first result: compile time and device memory of the main programs, on
abstract weights of a real config (no weights are made, so the 12B/27B compile on a laptop as on a GPU).

    PYTHONPATH=. python3 bench/compile_cost.py [--out DIR] [--dtype bf16|f32] [--mesh D,F,M] [--threads N] SPEC ...

SPEC (``B`` rows, ``P`` prompt tokens, ``N`` new tokens, ``G`` plans):

* ``fwd:MODEL:B:T`` — the scoring forward (last-position logits);
* ``copy:MODEL`` — the unrolled decode layout's per-layer weight copy (one program, called once a layer);
* ``extract:MODEL:B:T`` — all-layer activations at the last prompt token (steering-vector extraction);
* ``sweep:MODEL:B:T:K`` — a γ sweep of K points at the EN layer, scored on four option letters: the shared
  prefix (blocks below the layer) and the tail (the rest, ``K·B`` rows) as :func:`~jaxsteer.steering.sweep.run_grid`
  compiles them;
* ``gen:MODEL:B:P:N:LAYOUT`` — a steered generate call, LAYOUT ``scan``, ``unrolled``, ``sliced`` or ``moved``;
* ``grid:MODEL:B:P:N:G:LAYOUT`` — one generate call of G plans as the Dev2 selection makes them (G/2
  LOC-only plans, G/2 SUR plans with EN applied; the plan tree shares what they agree on).

Per program it prints tracing + lowering seconds, XLA compile seconds, the optimised HLO's size, and
``memory_analysis()`` per device: arguments, temporaries (what the program allocates beyond its inputs —
a layout that materialises weight slices shows them here), outputs. On a CPU, bf16 matmuls are computed
in fp32 (temporaries include the upcast weights), so ``--dtype`` defaults to f32 there and to bf16 on an
accelerator; compile seconds on a CPU are a proxy for a GPU's, not a measurement of them.

``--mesh D,F,M`` (data, fsdp, model) places the weights by the inference partition rules and splits the
rows over data × fsdp, so the memory printed is one device's share — on a laptop, with
``--cpu-devices N`` (forced host devices), what a 12B needs per chip of an N-chip slice (fp32 figures;
halve the weights and caches for bf16).

``--threads N``: afterwards, with JAX's in-memory caches cleared, the same programs are lowered again and
compiled N at a time in threads (XLA compiles without the GIL): the wall time against the sequential sum says
what compiling a stage's programs together, ahead of their first call, would save on this host.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor

if "--cpu-devices" in sys.argv:  # before jax starts: forced host devices stand in for a slice's chips
    _n = sys.argv[sys.argv.index("--cpu-devices") + 1]
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={_n}"
    os.environ["JAX_PLATFORMS"] = "cpu"

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import environment, pop_option, selection_plans, sweep_plans  # noqa: E402

from jaxsteer.config import preset  # noqa: E402
from jaxsteer.model import decode, decode_memory  # noqa: E402
from jaxsteer.model.attention import resolve_impl  # noqa: E402
from jaxsteer.model.plan_tree import chunked_plans  # noqa: E402
from jaxsteer.model.transformer import forward_core, init_params  # noqa: E402
from jaxsteer.scoring import option_logprob_fn  # noqa: E402
from jaxsteer.sharding import MeshSpec, batch_sharding, inference_spec, make_mesh  # noqa: E402
from jaxsteer.steering import sweep  # noqa: E402
from jaxsteer.steering.extract import layer_activations  # noqa: E402
from jaxsteer.steering.plan import Steering, first_steered_layer  # noqa: E402

GIB = 2**30


def abstract_params(cfg, dtype, mesh=None):
    """Shapes (and, on a mesh, the inference placement) of the weights; nothing is allocated."""
    shapes = jax.eval_shape(lambda: init_params(cfg, jax.random.PRNGKey(0), dtype))
    if mesh is None:
        return shapes

    def placed(path, x):
        name = jax.tree_util.keystr(path, simple=True, separator="/")
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=NamedSharding(mesh, inference_spec(name, x.shape, mesh)))

    return jax.tree_util.tree_map_with_path(placed, shapes)


def lowered_programs(spec: str, dtype, mesh=None):
    """``[(label, jax.stages.Lowered)]`` for one SPEC, timing nothing yet."""
    kind, name, *rest = spec.split(":")
    cfg = preset(name)
    params = abstract_params(cfg, dtype, mesh)
    impl = resolve_impl("auto", dtype)
    rows = None if mesh is None else batch_sharding(mesh, 2, 0)
    ints = lambda b, t: jax.ShapeDtypeStruct((b, t), jnp.int32, sharding=rows)  # noqa: E731
    rows3 = None if mesh is None else batch_sharding(mesh, 3, 0)
    fuse = mesh is None or mesh.shape["model"] == 1  # as decode_memory.fusable
    if kind == "fwd":
        b, t = map(int, rest)
        args = (params, ints(b, t), ints(b, t), None, None, None)
        return [(spec, forward_core.lower(*args, config=cfg, return_hidden=False, logits_mode="last", impl=impl))]
    if kind == "extract":
        b, t = map(int, rest)
        return [(spec, layer_activations.lower(params, ints(b, t), ints(b, t), config=cfg, read="last", impl=impl))]
    if kind == "sweep":
        b, t, k = map(int, rest)
        plans = sweep_plans(cfg, name, k)
        start = min(first_steered_layer(plans), cfg.num_layers - 1)
        part, tree, _ = chunked_plans(plans, k, start)[0]
        prefix = sweep._prefix.lower(params, ints(b, t), ints(b, t), config=cfg, stop=start, impl=impl)
        h = jax.ShapeDtypeStruct((b, t, cfg.hidden_size), jnp.float32, sharding=None if mesh is None else rows3)
        tail = sweep._tail.lower(params, h, ints(b, t), part, None, config=cfg, tree=tree, impl=impl, mesh=mesh,
                                 score_fn=option_logprob_fn((5, 6, 7, 8)), logits_mode="last", scope="all")  # fmt: skip
        return [(spec + " prefix", prefix), (spec + " tail", tail)]
    if kind == "copy":
        return [(spec, decode_memory.layer_copy.lower(params["layers"], np.int32(0), config=cfg, fuse=fuse))]
    if kind not in ("gen", "grid"):
        raise SystemExit(f"{spec}: unknown kind {kind!r} (fwd, copy, extract, sweep, gen, grid)")
    *nums, layout = rest
    if layout not in ("scan", "unrolled", "sliced", "moved"):
        raise SystemExit(f"{spec}: LAYOUT {layout!r}; expected scan, unrolled, sliced or moved")
    b, p, n, *g = map(int, nums)
    split = None
    if layout == "moved":  # the weights themselves per layer (decode_memory.moved_layers): no stacked copy
        params = {**params, "layers": decode_memory.moved_shapes(params["layers"], cfg)}
    if layout == "unrolled":
        copy = decode_memory.layer_copy.lower(params["layers"], np.int32(0), config=cfg, fuse=fuse)
        placed = copy.compile().output_shardings  # on a mesh each copy keeps its layer's placement
        shapes = jax.eval_shape(
            lambda ls: decode_memory.layer_copy(ls, np.int32(0), config=cfg, fuse=fuse), params["layers"]
        )
        layer = jax.tree.map(lambda x, sh: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh), shapes, placed)
        split = (layer,) * cfg.num_layers
    common = dict(config=cfg, max_new_tokens=n, temperature=0.0, top_k=None, eos_ids=(-1,), impl=impl,
                  split_layers=split, slice_weights=layout == "sliced", mesh=mesh)  # fmt: skip
    key = np.int32(0)  # the seed
    if kind == "gen":
        vec = np.random.default_rng(0).normal(size=cfg.hidden_size)
        steer = Steering.from_layers(cfg, {cfg.num_layers // 2: vec}, gamma=2.0)
        return [(spec, decode.generate_core.lower(params, ints(b, p), ints(b, p), steer, key, **common))]
    plans = selection_plans(cfg, name, g[0])
    start = min(first_steered_layer(plans), cfg.num_layers - 1)
    part, tree, _ = chunked_plans(plans, len(plans), start)[0]
    steer = Steering.zeros(cfg)
    return [
        (spec, decode.generate_core.lower(params, ints(b, p), ints(b, p), steer, key, plans=part, tree=tree, **common))
    ]


def measure(label: str, lowered, lower_s: float) -> dict:
    t = time.perf_counter()
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t
    text = compiled.as_text() or ""
    row = {"program": label, "lower_s": lower_s, "compile_s": compile_s,
           "hlo_instructions": len(re.findall(r"^\s+\S+ = ", text, flags=re.M))}  # fmt: skip
    mem = compiled.memory_analysis()
    if mem is not None:
        for field in ("argument", "output", "temp"):
            row[f"{field}_gib"] = getattr(mem, f"{field}_size_in_bytes") / GIB
    return row


def compiled_together(specs: list[str], dtype, mesh, threads: int, rows: list[dict]) -> dict:
    """Every program of ``specs`` compiled again from cold, ``threads`` at a time: wall time vs the sum."""
    jax.clear_caches()
    programs = [lowered for spec in specs for _, lowered in lowered_programs(spec, dtype, mesh)]
    t = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda lowered: lowered.compile(), programs))
    wall = time.perf_counter() - t
    serial = sum(r["compile_s"] for r in rows)
    print(f"{len(programs)} programs compiled {threads} at a time: {wall:.2f} s wall against {serial:.2f} s one "
          f"after another ({serial / wall:.2f}×)", flush=True)  # fmt: skip
    return {"threads": threads, "programs": len(programs), "wall_s": wall, "serial_s": serial}


def main(argv: list[str]) -> None:
    out = pop_option(argv, "--out", "")
    default = "f32" if jax.default_backend() == "cpu" else "bf16"
    dtype = {"bf16": jnp.bfloat16, "f32": jnp.float32}[pop_option(argv, "--dtype", default)]
    pop_option(argv, "--cpu-devices", "")  # read before jax started (top of this file)
    mesh_arg = pop_option(argv, "--mesh", "")
    threads = int(pop_option(argv, "--threads", "0"))
    if not argv:
        raise SystemExit(__doc__)
    mesh = None
    if mesh_arg:
        data, fsdp, model = (int(x) for x in mesh_arg.split(","))
        mesh = make_mesh(MeshSpec(data=data, fsdp=fsdp, model=model))
    env = {**environment(), "dtype": jnp.dtype(dtype).name, "mesh": dict(mesh.shape) if mesh else None}
    print(f"[compile_cost] {env}", flush=True)
    rows = []
    for spec in argv:
        t = time.perf_counter()
        programs = lowered_programs(spec, dtype, mesh)  # tracing and lowering
        lower_s = (time.perf_counter() - t) / len(programs)
        for label, lowered in programs:
            row = measure(label, lowered, lower_s)
            rows.append(row)
            mem = "  ".join(
                f"{k[:-4]} {row[k]:6.2f} GiB" for k in ("argument_gib", "temp_gib", "output_gib") if k in row
            )
            print(f"{label:34s} trace+lower {row['lower_s']:6.2f} s  compile {row['compile_s']:6.2f} s  "
                  f"{row['hlo_instructions']:6d} HLO ops  {mem}", flush=True)  # fmt: skip
    together = compiled_together(argv, dtype, mesh, threads, rows) if threads > 1 else None
    if out:
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "compile_cost.json"), "w", encoding="utf-8") as f:
            json.dump(
                {
                    "environment": env,
                    "command": "bench/compile_cost.py " + " ".join(sys.argv[1:]),
                    "rows": rows,
                    "together": together,
                },
                f,
                indent=1,
            )


if __name__ == "__main__":
    main(sys.argv[1:])
