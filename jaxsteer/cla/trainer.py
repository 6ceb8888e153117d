"""The CLA trainer: AdamW over the trainable leaves, one jitted step per batch kind, and the training loop.

The params tree ``{"base", "lora"}`` has a ``"train"``/``"frozen"`` label per leaf; trainable leaves are
fp32 masters, frozen ones are stored in the compute dtype (:mod:`jaxsteer.cla.lora`). One step = ``A``
accumulation micro-batches (a ``lax.scan``), each loss normalised by the *whole* step's token or pair
count so that the summed micro-gradients equal the full-batch gradient; then global-norm clipping and
AdamW under ``optax.multi_transform`` (frozen leaves: ``set_to_zero``, no optimizer state). Gradients are
taken with respect to the trainable leaves only, so a LoRA run never holds full-size weight gradients.

The loop (:func:`train`): MIST steps are all ``task``; MIDALIGN alternates ``task`` and ``align`` steps
(one optimizer update each, one shared AdamW state); CLO steps are ``clo``. Every step's loss is checked
on the host; NaN/inf stops the run with one line and leaves the last good checkpoint in place. The schedule
and optimizer are :mod:`jaxsteer.cla.optim`; the run's log and loss plot :mod:`jaxsteer.cla.run_log`.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxsteer.sharding as mesh_lib
from jaxsteer.checkpoint.orbax import TrainCheckpointer, abstract_like
from jaxsteer.cla import data as data_lib
from jaxsteer.cla.config import StepSpec, TrainConfig
from jaxsteer.cla.lora import (
    DTYPES,
    combine,
    decay_labels,
    export_merged,
    init_lora,
    lora_shapes,
    split,
    trainable_labels,
)
from jaxsteer.cla.losses import OBJECTIVES, denominators, reference_fn
from jaxsteer.cla.optim import make_optimizer, make_schedule  # noqa: F401 (make_schedule: public here too)
from jaxsteer.cla.run_log import MetricsLog, plot_losses, read_metrics
from jaxsteer.errors import ConfigError, JaxsteerError
from jaxsteer.outputs import MANIFEST, TRAINING_RUN
from jaxsteer.progress import bar as progress_bar
from jaxsteer.results import atomic_write, provenance, write_json

KINDS = {"mist": ("task",), "midalign": ("task", "align"), "clo": ("clo",)}
_STEPS: dict = {}  # compiled steps by their statics
EXAMPLES = {"task": data_lib.task_examples, "align": data_lib.align_examples, "clo": data_lib.clo_examples}


class TrainingDivergedError(JaxsteerError):
    """The loss became NaN or infinite; the run stopped and kept its last good checkpoint."""


class TrainState(flax.struct.PyTreeNode):
    # Int[Array, ""] in a live state. Not annotated so: the class is also the tree of the state's shardings
    # and abstract shapes (``build``), and jax's tree functions rebuild it with any leaf (``None`` included).
    step: Any
    params: dict  # {"base": ..., "lora": ...}
    opt_state: Any


# --- the step ----------------------------------------------------------------------------------------
def make_step(kind: str, spec: StepSpec, optimizer, labels: dict, schedule, mesh=None):
    """``step(state, batch, ref) -> (state, metrics)`` for one batch kind; ``batch`` arrays are ``[A, M, ...]``."""
    objective = OBJECTIVES[kind]
    constrain = mesh_lib.activation_constraint(mesh)
    base_key = jax.random.PRNGKey(spec.seed)

    def step(state: TrainState, batch: dict, ref=None):
        train, frozen = split(state.params, labels)
        den = denominators(kind, batch)
        keys = jax.random.split(jax.random.fold_in(base_key, state.step), batch["ids"].shape[0])

        def micro(t, mb, key):
            return objective(combine(t, frozen), mb, den, spec, key, constrain, ref)

        grad_fn = jax.value_and_grad(micro, has_aux=True)
        if batch["ids"].shape[0] == 1:
            (loss, aux), grads = grad_fn(train, jax.tree.map(lambda x: x[0], batch), keys[0])
        else:

            def accumulate(carry, xs):
                return jax.tree.map(jnp.add, carry, grad_fn(train, *xs)), None

            first = jax.tree.map(lambda x: x[0], (batch, keys))
            zero = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(grad_fn, train, *first))
            ((loss, aux), grads), _ = jax.lax.scan(accumulate, zero, (batch, keys))
        full = combine(grads, jax.tree.map(jnp.zeros_like, frozen))  # never read: set_to_zero ignores them
        updates, opt_state = optimizer.update(full, state.opt_state, state.params)
        metrics = {"loss": loss, **aux, "grad_norm": optax.global_norm(grads), "lr": schedule(state.step)}
        metrics["tokens"] = jnp.sum(batch["mask"]) if "mask" in batch else jnp.asarray(batch["ids"].size)
        new = TrainState(step=state.step + 1, params=optax.apply_updates(state.params, updates), opt_state=opt_state)
        return new, metrics

    return step


# --- building a run ----------------------------------------------------------------------------------
@dataclasses.dataclass
class Setup:
    """What a run builds once: the model config, mesh, shardings, optimizer and compiled steps."""

    cfg: TrainConfig
    model_config: Any
    mesh: Any
    spec: StepSpec
    labels: dict
    optimizer: Any
    schedule: Any
    param_shardings: Any
    state_shardings: Any
    abstract_state: Any
    steps: dict
    load_base: Any  # (dtype, sharding_fn) -> base params
    model_tokenizer: Any = None
    model_folder: str | None = None  # the base checkpoint folder (export copies its config values and tokenizer)


def resolve_model(cfg: TrainConfig):
    """(GemmaConfig, base-params loader, tokenizer or None, folder or None) for ``model.path`` or a random
    ``model.preset``.

    The loader takes ``(dtypes, shardings)`` trees. Random weights (std 0.02, norm weights 0) are drawn with
    NumPy and placed leaf by leaf for small models (no compile; the same values on every host), and with
    ``jax.random`` on the devices for real sizes.
    """
    from jaxsteer.config import GemmaConfig, preset

    m = cfg.model
    if m.path:
        from jaxsteer.checkpoint.hf import check_weight_files, load_pretrained, load_tokenizer, resolve_folder

        folder = resolve_folder(m.path)
        config = GemmaConfig.from_hf(folder)
        check_weight_files(folder)  # missing or corrupt: refused now, before a tokenizer is trained into OUT

        def load(dtypes, shardings):
            load_dtype = jnp.float32 if any(d == jnp.float32 for d in jax.tree.leaves(dtypes)) else jnp.bfloat16

            def sharding(name, shape):
                return shardings[name] if name in ("embed", "final_norm") else shardings["layers"][name]

            params = load_pretrained(folder, dtype=load_dtype, sharding=sharding, tokenizer=False).params
            cast = jax.jit(lambda t: jax.tree.map(lambda x, d: x.astype(d), t, dtypes), out_shardings=shardings)
            return cast(params)

        return config, load, load_tokenizer(folder), folder
    try:
        config = preset(m.preset).replace(**m.changes)
    except TypeError as e:
        raise ConfigError(f"model.changes: {e}") from None

    def init(dtypes, shardings):
        from jaxsteer.model.transformer import init_params

        shapes = jax.eval_shape(lambda: init_params(config, jax.random.PRNGKey(0), jnp.float32))
        if config.num_params() > 50_000_000:  # real sizes (benchmarks): draw on the devices, one compile

            def draw(k):
                return jax.tree.map(lambda x, d: x.astype(d), init_params(config, k, jnp.float32), dtypes)

            return jax.jit(draw, out_shardings=shardings)(jax.random.PRNGKey(m.init_seed))
        rng = np.random.default_rng(m.init_seed)

        def one(path, s, d, sh):
            std = 0.0 if mesh_lib.path_name(path).endswith("norm") else 0.02
            return jax.device_put((std * rng.standard_normal(s.shape, np.float32)).astype(d), sh)

        return jax.tree_util.tree_map_with_path(one, shapes, dtypes, shardings)

    return config, init, None, None


def export_sources(cfg: TrainConfig, setup: Setup, run_dir) -> dict:
    """``save_pretrained`` keywords for ``export/``: the base folder's config values, and the tokenizer files
    of the tokenizer the run used (the base model's, ``model.tokenizer``'s folder, or the trained one)."""
    spec = cfg.model.tokenizer
    if spec is None:
        return {"source": setup.model_folder}
    if spec == "train":
        return {"source": setup.model_folder, "tokenizer_source": os.fspath(Path(run_dir) / "tokenizer")}
    if os.path.isdir(spec):
        return {"source": setup.model_folder, "tokenizer_source": spec}
    return {"source": setup.model_folder, "copy_tokenizer": False}  # a hub tokenizer: saved as loaded


def build(cfg: TrainConfig, mesh=None) -> Setup:
    model_config, load_base, tok, model_folder = resolve_model(cfg)
    mesh = mesh if mesh is not None else mesh_lib.make_mesh(cfg.mesh)
    spec = StepSpec.from_config(cfg, model_config)  # checks l_align against the layer count
    mesh_lib.check_batch(cfg.micro_batch, mesh, "train.micro_batch")
    if cfg.method == "midalign":
        mesh_lib.check_batch(cfg.midalign.align_batch, mesh, "midalign.align_batch")
    from jaxsteer.model.transformer import init_params

    lora_on = cfg.train.trainable == "lora"
    shapes = {
        "base": jax.eval_shape(lambda: init_params(model_config, jax.random.PRNGKey(0), jnp.float32)),
        "lora": lora_shapes(model_config, cfg.lora) if lora_on else {},
    }
    labels = trainable_labels(shapes, cfg.train.trainable)
    cd = DTYPES[cfg.train.compute_dtype]
    shapes = jax.tree.map(
        lambda s, lab: jax.ShapeDtypeStruct(s.shape, jnp.float32 if lab == "train" else cd), shapes, labels
    )
    optimizer = make_optimizer(cfg, labels, decay_labels)
    schedule = make_schedule(cfg)
    psh = mesh_lib.param_shardings(shapes, mesh)
    opt_shapes = jax.eval_shape(optimizer.init, shapes)
    ssh = TrainState(
        step=mesh_lib.replicated(mesh),
        params=psh,
        opt_state=mesh_lib.opt_state_shardings(opt_shapes, psh, mesh),
    )
    abstract = TrainState(step=jax.ShapeDtypeStruct((), jnp.int32), params=shapes, opt_state=opt_shapes)
    # Same statics → the same jitted functions, so a second run in this process (a notebook, the tests)
    # reuses the compiled executables instead of recompiling.
    key = (cfg.method, spec, cfg.train.trainable, cfg.lora, cfg.optim, cfg.steps, mesh)
    if key not in _STEPS:
        _STEPS[key] = {
            kind: jax.jit(
                make_step(kind, spec, optimizer, labels, schedule, mesh), out_shardings=(ssh, None), donate_argnums=(0,)
            )
            for kind in KINDS[cfg.method]
        }
    steps = _STEPS[key]
    return Setup(
        cfg,
        model_config,
        mesh,
        spec,
        labels,
        optimizer,
        schedule,
        psh,
        ssh,
        abstract,
        steps,
        load_base,
        tok,
        model_folder,
    )


def init_state(setup: Setup) -> TrainState:
    """Base weights (loaded or random), fresh LoRA factors, per-label dtypes, and AdamW state — all sharded.

    LoRA's A is drawn with NumPy (:func:`jaxsteer.cla.lora.init_lora`) and B is zero; AdamW's initial
    state is all zeros. Small trees are placed leaf by leaf with ``device_put`` (no compile).
    """
    cfg, psh = setup.cfg, setup.param_shardings
    dtypes = jax.tree.map(lambda s: s.dtype, setup.abstract_state.params)
    base = setup.load_base(dtypes["base"], psh["base"])
    lora = {}
    if cfg.train.trainable == "lora":
        host = init_lora(setup.model_config, cfg.lora, seed=cfg.seed)
        lora = jax.tree.map(lambda x, sh: jax.device_put(x, sh), host, psh["lora"])
    zeros = _zeros(setup.abstract_state.opt_state, setup.state_shardings.opt_state)
    step = jax.device_put(np.zeros((), np.int32), setup.state_shardings.step)
    return TrainState(step=step, params={"base": base, "lora": lora}, opt_state=zeros)


def _zeros(abstract, shardings):
    """Zeros in place: from the host for small trees (no compile), on the devices for large ones."""
    size = sum(np.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(abstract))
    if size < 1 << 28:
        return jax.tree.map(lambda s, sh: jax.device_put(np.zeros(s.shape, s.dtype), sh), abstract, shardings)
    return jax.jit(lambda: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), abstract), out_shardings=shardings)()


def checkpoint_tree(state: TrainState, labels: dict) -> dict:
    """What a checkpoint holds: step, trainable leaves, optimizer state (frozen weights come from the model)."""
    return {"step": state.step, "train": split(state.params, labels)[0], "opt_state": state.opt_state}


def restore_into(state: TrainState, tree: dict, labels: dict) -> TrainState:
    params = combine(tree["train"], split(state.params, labels)[1])
    return TrainState(step=tree["step"], params=params, opt_state=tree["opt_state"])


def cached_reference(
    setup: Setup, state: TrainState, examples: data_lib.Examples, pad_id: int, out: Path, reuse: bool = True
):
    """CLO's ``[n, 2]`` (chosen, rejected) log-probs under the initial model: computed once, kept in the run.

    ``state`` must be the initial one (the frozen reference); a resumed run reads the saved table (``reuse``:
    only when it is this config's, and only if it has one row per example — never a stale table, whose rows
    JAX's gather would clamp silently).
    """
    path = out / "reference_logps.npy"
    table = np.load(path, allow_pickle=False) if reuse and path.exists() else None
    if table is None or table.shape != (len(examples), 2):
        fn, ref_batch = reference_fn(setup.spec), setup.cfg.clo.ref_batch
        table = np.zeros((len(examples), 2), np.float32)
        for start, valid, batch in data_lib.iterate_all(examples, ref_batch, data_lib.buckets(setup.cfg), pad_id):
            seq = np.asarray(fn(state.params, {k: jnp.asarray(v) for k, v in batch.items()}))
            table[start : start + valid] = np.stack([seq[:ref_batch], seq[ref_batch:]], axis=1)[:valid]
        if jax.process_index() == 0:
            buf = io.BytesIO()
            np.save(buf, table)
            atomic_write(path, buf.getvalue())
    return jax.device_put(jnp.asarray(table), mesh_lib.replicated(setup.mesh))


# --- the loop ----------------------------------------------------------------------------------------
OnStep = Callable[[int, dict], None]


def train(cfg: TrainConfig, *, resume: bool = False, mesh=None, on_step: OnStep | None = None) -> dict:
    """Train ``cfg`` into ``cfg.out``: checkpoints, ``metrics.jsonl``, ``loss.png``, and ``export/``.

    ``resume`` continues from the latest checkpoint of ``cfg.out`` (same config required).
    ``on_step(step, row)`` is called after every step (1-based) once its metrics row (the dict that
    ``metrics.jsonl`` holds) is logged and its checkpoint, when due, is saved — for monitoring, or for a
    test that kills the process there (``tests/kill_after_step.py``).
    """
    mesh_lib.initialize(cfg.mesh)
    out = Path(cfg.out)
    if resume and not out.is_dir():  # a mistyped --out would otherwise train from scratch
        raise ConfigError(f"--resume: {out} does not exist, so there is no run to continue")
    if not resume and (out / MANIFEST).is_file():  # another command's results (eval, run, ...): not a run's folder
        raise ConfigError(f"{out} holds results of another jaxsteer command ({MANIFEST}); choose another --out")
    if resume and not any((out / name).exists() for name in TRAINING_RUN):
        raise ConfigError(f"--resume: {out} holds no training run (no checkpoints, metrics.jsonl or run.json)")
    setup = build(cfg, mesh)
    # Orbax creates its folder (and OUT) on construction: open it now only if it exists, otherwise once the
    # inputs are checked, so a refused run leaves no empty OUT/checkpoints behind
    ckpt = checkpointer(cfg) if (out / "checkpoints").is_dir() else None
    try:
        latest = ckpt.latest_step() if ckpt is not None else None
        if latest is not None and not resume:
            raise ConfigError(f"{out} already holds checkpoints (step {latest}); pass --resume or another --out")
        if resume and latest is not None:  # before anything of the run's is read or written (its tokenizer)
            _, _, meta_cfg = ckpt.read_meta(latest)
            if meta_cfg.get("config_hash") != cfg.config_hash():
                raise ConfigError(
                    f"--resume: the config differs from the one that wrote {out} (hash {meta_cfg.get('config_hash')})"
                )
        # what an earlier start of this folder computed (tokenizer, CLO's reference table) is this config's only
        # if its run.json says so: a run stopped before its first checkpoint may be restarted with other settings
        same = (resume and latest is not None) or _recorded_hash(out) == cfg.config_hash()
        if not same and jax.process_index() == 0 and (out / "run.json").is_file():
            # this start's tokenizer and table replace the earlier config's: its run.json must not vouch for them
            # if the start is cut short before its own run.json is written
            (out / "run.json").unlink()
        vocab = setup.model_config.vocab_size
        tokenizer = data_lib.resolve_tokenizer(cfg, setup.model_tokenizer, out, vocab, reuse=same)
        data_lib.check_tokenizer_fits(tokenizer, vocab)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        examples = {k: EXAMPLES[k](cfg, tokenizer) for k in KINDS[cfg.method]}
        pipeline = data_lib.Pipeline(cfg, examples, pad_id)
        state = init_state(setup)
        ckpt = ckpt or checkpointer(cfg)
        ref = cached_reference(setup, state, examples["clo"], pad_id, out, same) if cfg.method == "clo" else None
        start, config_record = 0, {"config": cfg.to_dict(), "config_hash": cfg.config_hash()}
        if resume and latest is not None:
            abstract = abstract_like(checkpoint_tree(setup.abstract_state, setup.labels),
                                     checkpoint_tree(setup.state_shardings, setup.labels))  # fmt: skip
            start, tree, data_pos, _ = ckpt.restore(abstract, latest)
            state = restore_into(state, tree, setup.labels)
            pipeline.restore(data_pos)
        if jax.process_index() == 0:
            record = {**config_record, "provenance": provenance(seed=cfg.seed, command="jaxsteer train")}
            write_json(out / "run.json", record)
        return _loop(setup, state, pipeline, ref, ckpt, tokenizer, out, start, config_record, on_step)
    finally:
        if ckpt is not None:
            ckpt.close()


def _recorded_hash(out: Path) -> str | None:
    """The config hash in ``OUT/run.json`` (written once a run's inputs are ready), or None."""
    try:
        with open(out / "run.json", encoding="utf-8") as f:
            return json.load(f).get("config_hash")
    except (OSError, ValueError, AttributeError):
        return None


def checkpointer(cfg: TrainConfig) -> TrainCheckpointer:
    c = cfg.checkpoint
    return TrainCheckpointer(Path(cfg.out) / "checkpoints", every=c.every, keep=c.keep, async_save=c.async_save)


def _loop(setup, state, pipeline, ref, ckpt, tokenizer, out, start, config_record, on_step) -> dict:
    cfg = setup.cfg
    kinds = KINDS[cfg.method]
    log = MetricsLog(out / "metrics.jsonl", start)
    on_main = cfg.log.progress and jax.process_index() == 0
    bar = progress_bar(cfg.steps, f"train {cfg.method}", "step", on_main, initial=start, dynamic_ncols=True)
    try:
        for s in range(start, cfg.steps):
            kind = kinds[s % len(kinds)]
            batch = mesh_lib.put_batch(pipeline.next(kind), setup.mesh)
            t0 = time.perf_counter()
            state, metrics = setup.steps[kind](state, batch, ref)
            metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
            dt = time.perf_counter() - t0
            step = s + 1
            if not math.isfinite(metrics["loss"]):
                ckpt.wait()  # let a pending save of an earlier (good) step land
                good = ckpt.latest_step()
                raise TrainingDivergedError(
                    f"{kind} loss is {metrics['loss']} at step {step}; stopped "
                    + (f"(last good checkpoint: step {good} in {ckpt.directory})" if good else "(no checkpoint yet)")
                )
            row = {"step": step, "kind": kind, **metrics, "tokens_per_s": metrics["tokens"] / dt, "step_s": dt}
            if step % cfg.log.every == 0 or step == cfg.steps:
                log.write(row)
            if ckpt.due(step, last=step == cfg.steps):
                ckpt.save(step, checkpoint_tree(state, setup.labels), data=pipeline.state(), config=config_record)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{metrics['loss']:.4f}", kind=kind, refresh=False)
            if on_step is not None:
                on_step(step, row)
    finally:
        log.close()
        if bar is not None:
            bar.close()
    ckpt.wait()
    result = {"out": str(out), "steps": cfg.steps, "metrics": str(out / "metrics.jsonl"), "state": state}
    if jax.process_index() == 0 and (rows := read_metrics(out / "metrics.jsonl")):
        result["plots"] = plot_losses(rows, out / "loss")
    if cfg.export.enabled:
        scale = cfg.lora.alpha / cfg.lora.rank if cfg.train.trainable == "lora" else 0.0
        result["export"] = export_merged(
            setup.model_config, state.params, scale, tokenizer, out / "export", cfg.export.dtype,
            **export_sources(cfg, setup, out),
        )  # fmt: skip
    return result
