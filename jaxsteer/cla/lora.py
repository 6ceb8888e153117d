"""LoRA beside the base weights, and the trainable-parameter labels that Optax masks read.

The train tree is ``{"base": model params, "lora": {proj: {"a": [L, r, in], "b": [L, out, r]}}}``.
A LoRA projection computes ``W + (α/r)·B·A`` (B zero-initialised, so training starts at the base
model). The model's blocks take plain weights, so LoRA is applied *to the weights*: the trainer's layer
scan builds each layer's effective weights right before running the block (one layer's transient copy,
not the whole model's), and export merges every layer with the same function.

Dropout: PEFT drops the LoRA path's *input activations* per token. With effective weights there is no
per-token input to drop, so ``lora.dropout`` drops the input *features* of ``A`` (columns of A, inverted
scaling, a fresh mask per step and layer, shared by the tokens of the step). Per-token dropout would
need a hook in ``jaxsteer.model.transformer.block``: a ``linear`` argument (default
``layers.linear``) used for the seven projections, through which the trainer could compute
``x Wᵀ + (α/r)·drop(x) Aᵀ Bᵀ``.

:func:`forward_hidden` is the training forward of the tree: embed, then a scan over layers whose body
adds the layer's LoRA delta, casts its matrices to the compute dtype and runs the model's own block
(``run_layers`` on a one-layer slice), optionally rematerialised; a ``stop`` below L is MIDALIGN's
partial forward.

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
from jaxsteer.config import GemmaConfig
from jaxsteer.model.transformer import (
    Params,
    default_positions,
    embed,
    layer_shapes,
    make_context,
    run_layers,
    slice_layers,
)

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


def lora_shapes(config: GemmaConfig, spec: LoraSpec, dtype=jnp.float32) -> Params:
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


def init_lora(config: GemmaConfig, spec: LoraSpec, seed: int = 0) -> Params:
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


def apply_lora(
    layers: Params,
    lora: Params,
    scale: float,
    dropout: float = 0.0,
    key: jax.Array | None = None,
    xp=jnp,
) -> Params:
    """Per-layer weights with their LoRA deltas added (fp32 sum, cast back to the base dtype).

    Works on a single layer (the trainer's scan body) or on stacked ``[L, ...]`` layers (export).
    ``dropout > 0`` with a ``key`` drops input features of ``A`` (see the module docstring).
    """
    if not lora:
        return layers
    out = dict(layers)
    for i, (name, ab) in enumerate(sorted(lora.items())):
        a = ab["a"]
        if dropout > 0.0 and key is not None:
            keep = jax.random.bernoulli(jax.random.fold_in(key, i), 1.0 - dropout, a.shape[:-2] + a.shape[-1:])
            a = a * (keep[..., None, :] / (1.0 - dropout)).astype(a.dtype)
        w = layers[name]
        out[name] = (w.astype(xp.float32) + lora_delta(a, ab["b"], scale, xp)).astype(w.dtype)
    return out


def merge_lora(params: Params, lora: Params, scale: float, xp=jnp) -> Params:
    """The full model's params with every LoRA delta folded into its base weight (for eval and export)."""
    return {**params, "layers": apply_lora(params["layers"], lora, scale, xp=xp)}


def export_merged(
    config: GemmaConfig,
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
    """Output of block ``stop − 1`` (default: the last block), fp32, LoRA applied layer by layer.

    ``stop < L`` is MIDALIGN's partial forward: ``slice_layers`` keeps blocks ``0 … stop−1`` and the
    layers above are never run.
    """
    cfg, cd = spec.config, DTYPES[spec.compute_dtype]
    base, lora = tree["base"], tree["lora"]
    stop = cfg.num_layers if stop is None else stop
    ctx = make_context(cfg, default_positions(mask, ids.shape), mask, None)
    h = constrain(embed({"embed": base["embed"].astype(cd)}, ids, cfg))
    layers, lora = slice_layers(base["layers"], 0, stop), slice_layers(lora, 0, stop)
    flags = jnp.asarray(cfg.is_global[:stop])
    keys = jax.random.split(key if key is not None else jax.random.PRNGKey(0), stop)
    dropout = spec.lora_dropout if key is not None else 0.0

    def body(h, xs):
        p, lo, flag, k = xs
        p = apply_lora(p, lo, spec.lora_scale, dropout, k)
        p = {n: (w.astype(cd) if w.ndim >= 2 else w) for n, w in p.items()}  # matrices in bf16, norms as stored
        h, _ = run_layers(jax.tree.map(lambda w: w[None], p), h, ctx, flag[None], config=cfg, impl=spec.impl)
        return constrain(h), None

    if spec.remat is not None:
        body = jax.checkpoint(body, policy=getattr(jax.checkpoint_policies, spec.remat), prevent_cse=False)
    h, _ = jax.lax.scan(body, h, (layers, lora, flags, keys))
    return h


def head(tree: dict, spec: StepSpec) -> dict:
    base = tree["base"]
    return {"embed": base["embed"].astype(DTYPES[spec.compute_dtype]), "final_norm": base["final_norm"]}
