"""The jaxsteer side of ``bench/pipeline.py``, run in child processes (a fresh JAX each: compiles included).

* ``full``: ``run_experiment`` on every language, random bf16 weights built on the device. The stages are
  timed by wrapping the default :class:`~jaxsteer.study.pipeline.Measures` (extraction, evaluation, Dev2
  scorers) and, inside each evaluation, the library's Global-MMLU and BLEnD functions and every ``generate``
  call (blocked on: device time apart from the host's tokenising and matching); what is left of
  the experiment's wall time is writing results and vectors, the plane and the SPER figure.
* ``subset``: the same computations as the naive HF baseline, through the library, on the same weights:
  Global-MMLU scoring of N test items, then the 9-γ LOC selection on N Dev2 BLEnD items (``select_loc``
  with the default ``dev2_blend`` scorer), once cold (with its compiles) and once warm.

Compiles are counted with ``jax.monitoring``: every ``backend_compile_duration`` event is one XLA
compile, attributed (with its seconds) to the stage running when it fires — except those of
``jaxsteer.ahead``'s background threads (compiles started ahead of the stage that runs them, on no stage's
path), which get a row of their own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pipeline_world as world

BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"
CACHE_HIT = "/jax/compilation_cache/cache_hits"
AHEAD_THREADS = "jaxsteer-ahead"  # jaxsteer.ahead's pool: compiles started ahead of the stage that runs them
TRACE_AND_LOWER = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration")


class Clock:
    """Nested named stages: wall time, calls, and the compiles that fired inside each (innermost wins)."""

    def __init__(self, sink=None, echo: str | None = None):
        self.rows: dict[str, dict] = {}
        self.stack: list[str] = []
        self.sink = sink  # called after every stage: partial results survive a timeout
        self.echo = echo  # print a line when a stage directly under this one ends
        self.compiles = 0  # all of them, for the per-call count of the progress lines
        self.cache_hits = 0  # persistent-cache hits also fire a backend-compile event: reported beside the count
        jax.monitoring.register_event_duration_secs_listener(self._on_event)
        jax.monitoring.register_event_listener(self._on_count)

    def row(self, label: str, parent: str | None = None) -> dict:
        if label not in self.rows:
            self.rows[label] = {"stage": label, "parent": parent, "wall_s": 0.0, "inner_s": 0.0, "calls": 0,
                                "compiles": 0, "compile_s": 0.0, "trace_lower_s": 0.0}  # fmt: skip
        return self.rows[label]

    def _on_event(self, event: str, duration: float, **_):
        if threading.current_thread().name.startswith(AHEAD_THREADS):  # not on any stage's path: a row apart
            row = self.row("compiled ahead (background threads)", self.stack[0] if self.stack else None)
        else:
            row = self.row(self.stack[-1] if self.stack else "outside any stage")
        if event == BACKEND_COMPILE:
            self.compiles += 1
            row["compiles"] += 1
            row["compile_s"] += duration
        elif event in TRACE_AND_LOWER:
            row["trace_lower_s"] += duration

    def _on_count(self, event: str, **_):
        if event == CACHE_HIT:
            self.cache_hits += 1

    @property
    def current(self) -> str:
        return self.stack[-1] if self.stack else ""

    @contextlib.contextmanager
    def stage(self, label: str):
        parent = self.current or None
        self.row(label, parent)
        self.stack.append(label)
        t, compiles = time.perf_counter(), self.compiles
        try:
            yield
        finally:
            dt = time.perf_counter() - t
            self.stack.pop()
            row = self.rows[label]
            row["wall_s"] += dt
            row["calls"] += 1
            if parent:
                self.rows[parent]["inner_s"] += dt
            if parent is not None and parent == self.echo:
                print(f"[bench]   {label}: {dt:.1f} s ({self.compiles - compiles} compiles)", flush=True)
            if self.sink:
                self.sink()

    def table(self) -> list[dict]:
        """Rows with ``self_s`` = wall minus nested stages."""
        return [{**r, "self_s": r["wall_s"] - r["inner_s"]} for r in self.rows.values()]


def _arg(args, kwargs, index: int, name: str):
    return kwargs[name] if name in kwargs else args[index]


def timed_measures(clock: Clock):
    """The default Measures, each call inside a named stage of ``clock``."""
    from jaxsteer.study.pipeline import Measures

    default = Measures()

    def extract(*a, **k):
        with clock.stage(f"extract {_arg(a, k, 2, 'kind')}"):
            return default.extract(*a, **k)

    def evaluate(*a, **k):
        methods = _arg(a, k, 2, "methods")
        names = [m.split("+", 1)[1] if "+" in m else "plain" for m in methods]
        which = "plain" if names == ["plain"] else f"together ({', '.join(names)})"
        with clock.stage(f"eval {which}"):
            return default.evaluate(*a, **k)

    def score_en(*a, **k):
        with clock.stage("select EN (Dev2 Global-MMLU sweep)"):
            return default.score_en(*a, **k)

    def score_loc(*a, **k):
        with clock.stage("select LOC (SUR with EN and LOC only, one pass)"):
            return default.score_loc(*a, **k)

    return Measures(extract=extract, evaluate=evaluate, score_en=score_en, score_loc=score_loc)


@contextlib.contextmanager
def benchmark_split(clock: Clock):
    """Time Global-MMLU and BLEnD apart inside each evaluation (the library's functions, patched for the run)."""
    from jaxsteer.study import evaluate as ev

    saved = {}
    pairs = (("gmmlu_accuracy", "Global-MMLU"), ("blend_accuracy", "BLEnD"), ("gmmlu_accuracies", "Global-MMLU"),
             ("blend_accuracies", "BLEnD"))  # fmt: skip
    for name, what in pairs:
        fn = getattr(ev, name, None)
        if fn is None:  # renamed by a refactor: the evaluation is then timed as one stage
            print(f"[bench] jaxsteer.study.evaluate.{name} not found: {what} not timed apart", flush=True)
            continue
        saved[name] = fn

        def wrapped(*a, _fn=fn, _what=what, **k):
            if clock.current.endswith(_what):  # blend_accuracy calls blend_accuracies: one stage
                return _fn(*a, **k)
            with clock.stage(f"{clock.current}: {_what}"):
                return _fn(*a, **k)

        setattr(ev, name, wrapped)
    from jaxsteer import scoring

    generate = scoring.generate

    def timed_generate(*a, **k):  # device time of every generation call (its compiles too), apart from the host's
        with clock.stage(f"{clock.current}: generate"):
            return jax.block_until_ready(generate(*a, **k))

    scoring.generate = timed_generate
    try:
        yield
    finally:
        scoring.generate = generate
        for name, fn in saved.items():
            setattr(ev, name, fn)


@contextlib.contextmanager
def recorded_shapes(payload: dict):
    """The distinct input shapes of the experiment's compiled programs — extraction's all-layer read, the
    Global-MMLU grid scoring and each generation (prompt rows × width, and plans) — into ``payload["shapes"]``:
    how many shapes the padding plan left (each compiles once)."""
    from jaxsteer.model import decode
    from jaxsteer.steering import extract
    from jaxsteer.study import evaluate as ev

    seen: dict[str, set] = {"extraction": set(), "Global-MMLU": set(), "generate": set()}
    patched = ((extract, "layer_activations", "extraction", 1), (ev, "run_grid", "Global-MMLU", 1),
               (decode, "generate_core", "generate", 1))  # fmt: skip
    saved = []
    for module, name, what, arg in patched:
        fn = getattr(module, name)
        saved.append((module, name, fn))

        def wrapped(*a, _fn=fn, _what=what, _arg=arg, **k):
            shape = tuple(a[_arg].shape)
            if _what == "generate" and k.get("plans") is not None:
                shape += (len(k["plans"]),)
            seen[_what].add(shape)
            return _fn(*a, **k)

        if hasattr(fn, "lower"):  # compiles ahead (jaxsteer.ahead) lower the jitted function itself
            wrapped.lower = fn.lower
        setattr(module, name, wrapped)
    try:
        yield
    finally:
        for module, name, fn in saved:
            setattr(module, name, fn)
        payload["shapes"] = {what: sorted(map(list, shapes)) for what, shapes in seen.items()}


# --- models --------------------------------------------------------------------------------------------
def device_model(config, tokenizer, seed: int):
    """Random bf16 weights drawn on the device (jaxsteer's init, std 0.02)."""
    from jaxsteer.model.model import Model
    from jaxsteer.model.transformer import init_params

    params = jax.jit(lambda k: init_params(config, k, jnp.bfloat16))(jax.random.PRNGKey(seed))
    jax.block_until_ready(params)
    return Model(config=config, params=params, tokenizer=tokenizer, source=f"random {config.name}")


def host_model(config, tokenizer, seed: int):
    """The weights the HF baseline uses (pipeline_world.weight_bits), stacked per key and put on the device."""
    from jaxsteer.model.model import Model

    bf16 = np.dtype(ml_dtypes.bfloat16)
    stacked: dict[str, np.ndarray] = {}
    params: dict = {"layers": {}}
    with ThreadPoolExecutor(min(32, os.cpu_count() or 4)) as pool:
        for key, layer, shape, is_norm in world.weight_tensors(config):
            bits = world.host_tensor(seed, key, layer, shape, is_norm, pool)
            if layer is None:
                params[key] = jax.device_put(bits.view(bf16))
                continue
            if key not in stacked:
                stacked[key] = np.empty((config.num_layers, *shape), np.uint16)
            stacked[key][layer] = bits
            if layer == config.num_layers - 1:
                params["layers"][key] = jax.device_put(stacked.pop(key).view(bf16))
    jax.block_until_ready(params)
    return Model(config=config, params=params, tokenizer=tokenizer, source=f"random {config.name} (shared)")


def _environment() -> dict:
    dev = jax.devices()[0]
    return {"jax": jax.__version__, "backend": jax.default_backend(), "device": getattr(dev, "device_kind", str(dev))}


def _writer(path: str, payload: dict, clock: Clock):
    def sink():
        payload["stages"] = clock.table()
        payload["compilation_cache_hits"] = clock.cache_hits
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=1, default=float)
        os.replace(tmp, path)

    return sink


# --- the two runs --------------------------------------------------------------------------------------
def run_full(spec: dict, out_path: str, role: str = "full") -> None:
    from jaxsteer.study.pipeline import run_experiment

    payload: dict = {"part": "full", "environment": _environment(), "done": False}
    clock = Clock(echo="experiment")
    clock.sink = _writer(out_path, payload, clock)
    tok = world.load_tokenizer(spec["tokenizer"])
    config = world.model_config(spec["model"], len(tok))
    with clock.stage("init weights on device (not in total)"):
        model = device_model(config, tok, spec["seed"])
    exp_dir = os.path.join(spec["work"], "experiment")
    cfg = world.experiment_config(spec, exp_dir)
    print(f"[full] run_experiment: {len(cfg.languages)} languages, layers {cfg.layers_for(config.num_layers)}, "
          f"γ grid {len(cfg.loc_gammas)}, batch {cfg.batch_size}, {cfg.max_new_tokens} new tokens, decode layout "
          f"{cfg.decode_layout}", flush=True)  # fmt: skip
    with benchmark_split(clock), recorded_shapes(payload), clock.stage("experiment"):
        result = run_experiment(
            cfg, {"base": model}, ("base",), exp_dir, progress=False, measures=timed_measures(clock)
        )
    payload["accuracy"] = {m: {"gmmlu": r.gmmlu, "blend": r.blend} for m, r in result["results"].items()}
    payload["plans"] = {lang: {"en_layer": p.en_layer, "loc_layer": p.loc_layer, "loc_gamma": p.loc_gamma}
                        for rep in result["reports"] for lang, p in rep.plans.items()}  # fmt: skip
    payload["experiment_dir"] = exp_dir
    payload["done"] = True
    clock.sink()


def run_subset(spec: dict, out_path: str, role: str = "subset") -> None:
    """The subset, cold then warm, in this process. Both ``subset`` and ``rerun`` keep compiled programs in
    one persistent XLA cache under the work folder, as every jaxsteer command does: ``subset`` starts with
    it empty (a first run), ``rerun`` — a new process after it — finds it filled (a rerun or a resume)."""
    import jax

    jax.config.update("jax_compilation_cache_dir", os.path.join(spec["work"], "xla-cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    from jaxsteer import ahead
    from jaxsteer.steering.vectors_io import VectorSet
    from jaxsteer.study.evaluate import gmmlu_accuracy
    from jaxsteer.study.surgical import compile_selection_ahead, select_loc

    sub = spec["subset"]
    payload: dict = {"part": role, "environment": _environment(), "done": False, "runs": {}}
    clock = Clock()
    clock.sink = _writer(out_path, payload, clock)
    tok = world.load_tokenizer(spec["tokenizer"])
    config = world.model_config(spec["model"], len(tok))
    with clock.stage("build shared weights (NumPy → device)"):
        model = host_model(config, tok, spec["seed"])
    bench = world.subset_bench(spec)
    model = dataclasses.replace(model, decode_layout=bench.cfg.decode_layout)
    lang = sub["lang"]
    v_loc = VectorSet.from_config(config, world.random_vector(config, spec["seed"]), kind="LOC", languages=(lang,))
    en_layer, loc_layer = bench.cfg.layers_for(config.num_layers)
    for run in ("cold", "warm"):
        t = time.perf_counter()
        if run == "cold":  # as run_experiment does: the selection's generation compiles while the scoring runs
            ahead.plan(compile_selection_ahead, model, bench, lang, en=(False,))
        with clock.stage(f"{run}: Global-MMLU scoring"):
            acc = gmmlu_accuracy(model, bench, lang, "test", None, False)
        with clock.stage(f"{run}: LOC selection"):
            layer, gamma, scores = select_loc(model, bench, lang, None, en_layer, v_loc, False)
        payload["runs"][run] = {"total_s": time.perf_counter() - t, "gmmlu_accuracy": acc,
                                "loc_dev2_blend": scores["loc_dev2_blend"], "selected": [layer, gamma]}  # fmt: skip
        print(f"[subset] jaxsteer {run}: {payload['runs'][run]['total_s']:.1f} s (Global-MMLU {acc:.1f} %, "
              f"selected LOC layer {layer} γ={gamma:g})", flush=True)  # fmt: skip
    payload["items"] = {"gmmlu": len(bench.gmmlu(lang, "test")), "blend": len(bench.blend(lang, "dev2")),
                        "layer": loc_layer}  # fmt: skip
    payload["done"] = True
    clock.sink()
