"""LoRA beside the base weights, and the trainable-parameter labels that Optax masks read.

The train tree is ``{"base": model params, "lora": {proj: {"a": [L, r, in], "b": [L, out, r]}}}``.
A LoRA projection computes ``x Wᵀ + (α/r)·(drop(x) Aᵀ) Bᵀ`` as PEFT does (B zero-initialised, so
training starts at the base model): the training forward (:func:`forward_hidden`) runs the model's own
layer runner with two hooks — ``weights_fn`` casts a layer's matrices to the compute dtype and hands it
its LoRA factors and dropout key, ``proj`` adds the LoRA path beside each targeted projection — so no
``[out, in]`` delta is ever formed in training. Export merges ``W + (α/r)·B·A`` layer by layer
(:func:`merge_lora`).

Dropout (``lora.dropout``) is PEFT's: each element of the LoRA path's *input activations* is dropped
independently (per token and feature, inverted scaling), with a fresh key per step, layer and projection;
the base path ``x Wᵀ`` never sees dropout.

A ``stop`` below L is MIDALIGN's partial forward: the layers above are never run.

Trainable sets (``train.trainable``): ``lora`` (the factors only), ``full`` (every base weight),
``attention`` (the q, k, v, o projections: CLO's setting). Labels are ``"train"``/``"frozen"`` per leaf;
the optimizer applies them with ``optax.multi_transform``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from jaxsteer.cla.config import LoraSpec, StepSpec
from jaxsteer.model.family import DecoderConfig
from jaxsteer.model.layers import linear
from jaxsteer.model.transformer import Params, layer_shapes, prepare, run_layers

DTYPES = {"bfloat16": jnp.bfloat16, "float32": jnp.float32}

PROJ = {
    "q": "q_proj",
    "k": "k_proj",
    "v": "v_proj",
    "o": "o_proj",
    "gate": "gate_proj",
    "up": "up_proj",
    "down": "down_proj",
}
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")


def lora_shapes(config: DecoderConfig, spec: LoraSpec, dtype=jnp.float32) -> Params:
    """``ShapeDtypeStruct``s of the LoRA tree: ``a`` ``[L, r, in]`` and ``b`` ``[L, out, r]`` per target."""
    shapes = layer_shapes(config)
    out = {}
    for short in spec.targets:
        o, n_in = shapes[PROJ[short]]
        out[PROJ[short]] = {
            "a": jax.ShapeDtypeStruct((config.num_layers, spec.rank, n_in), dtype),
            "b": jax.ShapeDtypeStruct((config.num_layers, o, spec.rank), dtype),
        }
    return out


def init_lora(config: DecoderConfig, spec: LoraSpec, seed: int = 0) -> Params:
    """Host (NumPy) factors: A ~ U(±1/√in) (PEFT's kaiming-uniform bound), B = 0; the same on every host."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, ab in lora_shapes(config, spec).items():
        bound = 1.0 / np.sqrt(ab["a"].shape[-1])
        out[name] = {
            "a": rng.uniform(-bound, bound, ab["a"].shape).astype(np.float32),
            "b": np.zeros(ab["b"].shape, np.float32),
        }
    return out


def lora_scale(spec: LoraSpec) -> float:
    return float(spec.alpha) / float(spec.rank)


def lora_delta(
    a: Float[ArrayLike, "*L r I"], b: Float[ArrayLike, "*L O r"], scale: float, xp=jnp
) -> Float[ArrayLike, "*L O I"]:
    """``(α/r)·B·A`` in fp32 (a single layer or a stack; ``xp=numpy`` on the host)."""
    return scale * xp.einsum("...or,...ri->...oi", b.astype(xp.float32), a.astype(xp.float32))


def apply_lora(layers: Params, lora: Params, scale: float, xp=jnp) -> Params:
    """Per-layer weights with their LoRA deltas added (fp32 sum, cast back to the base dtype).

    Works on a single layer or on stacked ``[L, ...]`` layers (export).
    """
    if not lora:
        return layers
    out = dict(layers)
    for name, ab in lora.items():
        w = layers[name]
        out[name] = (w.astype(xp.float32) + lora_delta(ab["a"], ab["b"], scale, xp)).astype(w.dtype)
    return out


def merge_lora(params: Params, lora: Params, scale: float, xp=jnp) -> Params:
    """The full model's params with every LoRA delta folded into its base weight (for eval and export)."""
    return {**params, "layers": apply_lora(params["layers"], lora, scale, xp=xp)}


def export_merged(
    config: DecoderConfig,
    params: Params,
    scale: float,
    tokenizer,
    folder,
    dtype: str = "bfloat16",
    source=None,
    tokenizer_source=None,
    copy_tokenizer: bool = True,
) -> str:
    """The train tree with LoRA merged, written by ``save_pretrained`` as an HF Gemma-3 folder.

    ``source`` is the base model's folder (its config values and tokenizer files are carried over, so
    llama.cpp's converter finds ``tokenizer.model``); ``tokenizer_source`` the run's own tokenizer
    folder when it has one (``copy_tokenizer=False``: neither is the run's tokenizer; it is saved as loaded).

    The merge runs on the host in fp32 (one stacked einsum per projection). With several processes every
    host gathers the (sharded) arrays and process 0 writes.
    """
    import os

    from jaxsteer.checkpoint.hf import save_pretrained
    from jaxsteer.model.model import Model

    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        params = multihost_utils.process_allgather(params, tiled=True)
    host = jax.tree.map(lambda x: np.asarray(x, np.float32), jax.device_get(params))
    merged = merge_lora(host["base"], host["lora"], scale, xp=np)
    if jax.process_index() != 0:
        return os.fspath(folder)
    model = Model(config=config, params=merged, tokenizer=tokenizer, source="jaxsteer train")
    return save_pretrained(
        model,
        folder,
        dtype=dtype,
        overwrite=True,
        source=source,
        tokenizer_source=tokenizer_source,
        copy_tokenizer=copy_tokenizer,
    )


def trainable_labels(tree: dict, trainable: str) -> dict:
    """``"train"``/``"frozen"`` for every leaf of ``{"base": ..., "lora": ...}``."""

    def label(path, _):
        keys = [getattr(k, "key", getattr(k, "name", None)) for k in path]
        if trainable == "lora":
            return "train" if keys[0] == "lora" else "frozen"
        if trainable == "full":
            return "train" if keys[0] == "base" else "frozen"
        return "train" if keys[0] == "base" and len(keys) > 2 and keys[2] in ATTENTION else "frozen"

    return jax.tree_util.tree_map_with_path(label, tree)


def decay_labels(tree: dict) -> dict:
    """Weight decay on matrices only: never on norm weights (zero-centred scales) — True where decayed."""

    def decays(path, _):
        name = str(getattr(path[-1], "key", "")) if path else ""
        parent = str(getattr(path[-2], "key", "")) if len(path) > 1 else ""
        return not (name.endswith("norm") or parent.endswith("norm"))

    return jax.tree_util.tree_map_with_path(decays, tree)


def split(tree, labels):
    """(trainable, frozen): the same tree twice, each with ``None`` where the other one holds the leaf."""
    train = jax.tree.map(lambda x, lab: x if lab == "train" else None, tree, labels)
    frozen = jax.tree.map(lambda x, lab: None if lab == "train" else x, tree, labels)
    return train, frozen


def combine(train, frozen):
    """Inverse of :func:`split`."""
    return jax.tree.map(lambda a, b: b if a is None else a, train, frozen, is_leaf=lambda x: x is None)


# --- the forward of the train tree -----------------------------------------------------------------------
def lora_projection(scale: float, dropout: float):
    """The ``proj`` hook of the layer runner: the base projection plus ``scale·(drop(x) Aᵀ) Bᵀ`` where the
    layer carries LoRA factors for ``name`` (``p["lora"]``; its dropout key in ``p["dropout_key"]``)."""
    names = sorted(PROJ.values())

    def proj(x, p, name):
        y = linear(x, p[name])
        factors = p.get("lora", {}).get(name)
        if factors is None:
            return y
        x = x.astype(y.dtype)
        if dropout > 0.0:
            key = jax.random.fold_in(p["dropout_key"], names.index(name))
            keep = jax.random.bernoulli(key, 1.0 - dropout, x.shape)
            x = jnp.where(keep, x / (1.0 - dropout), 0.0).astype(y.dtype)
        down = jnp.einsum("...i,ri->...r", x, factors["a"].astype(y.dtype))
        return y + scale * jnp.einsum("...r,or->...o", down, factors["b"].astype(y.dtype))

    return proj


def forward_hidden(
    tree: dict,
    ids: Int[Array, "B T"],
    mask: Int[Array, "B T"] | None,
    spec: StepSpec,
    *,
    stop: int | None = None,
    key: jax.Array | None = None,
    constrain=lambda h: h,
) -> Float[Array, "B T D"]:
    """Output of block ``stop − 1`` (default: the last block), fp32, LoRA beside the base projections.

    Matrices run in ``spec.compute_dtype`` (norm weights as stored); ``key`` switches LoRA dropout on.
    """
    cfg, cd = spec.config, DTYPES[spec.compute_dtype]
    base, lora = tree["base"], tree["lora"]
    stop = cfg.num_layers if stop is None else stop
    dropout = spec.lora_dropout if key is not None else 0.0
    keys = jax.random.split(key if key is not None else jax.random.PRNGKey(0), cfg.num_layers)

    def weights_fn(p, extra):
        p = {n: (w.astype(cd) if w.ndim >= 2 else w) for n, w in p.items()}
        return {**p, "lora": extra["lora"], "dropout_key": extra["key"]}

    h, ctx = prepare({"embed": base["embed"].astype(cd)}, ids, mask, config=cfg)
    layers, per_layer = base["layers"], {"lora": lora, "key": keys}
    if spec.layer_loop == "unrolled":  # static per-layer slices: no dynamic-slice copies, one gradient buffer each
        layers, per_layer = (
            tuple(jax.tree.map(lambda a, i=i: a[i], t) for i in range(cfg.num_layers)) for t in (layers, per_layer)
        )
    h, _ = run_layers(
        layers, constrain(h), ctx, config=cfg, stop=stop,
        per_layer=per_layer, weights_fn=weights_fn,
        proj=lora_projection(spec.lora_scale, dropout), constrain=constrain, impl=spec.impl, remat=spec.remat,
        differentiable=True,
    )  # fmt: skip
    return h


def head(tree: dict, spec: StepSpec) -> dict:
    base = tree["base"]
    return {"embed": base["embed"].astype(DTYPES[spec.compute_dtype]), "final_norm": base["final_norm"]}
