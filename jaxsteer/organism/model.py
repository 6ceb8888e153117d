"""The organism model: a tiny Gemma-3 pretrained by jaxsteer's own trainer on the synthetic world.

The shipped weights live in ``jaxsteer/organism/assets/`` (an HF folder: config, safetensors, tokenizer,
plus ``world.json`` and ``pretrain.json`` saying exactly what produced them). ``jaxsteer demo --retrain``
rebuilds them with :func:`pretrain`; the default demo starts from them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from pathlib import Path

from jaxsteer.errors import CheckpointError

ASSETS = Path(__file__).parent / "assets"
WORLD_SEED = 0

# Gemma-3 architecture at organism scale: GQA, query_pre_attn_scalar ≠ head_dim, 6 layers with the
# 5 local + 1 global pattern, a sliding window shorter than the texts, linear RoPE scaling on the global layer.
ARCH = {
    "hidden_size": 128,
    "intermediate_size": 512,
    "num_layers": 6,
    "num_heads": 4,
    "num_kv_heads": 2,
    "head_dim": 32,
    "query_pre_attn_scalar": 32,
    "sliding_window": 24,
    "rope_global_scaling": 8.0,
    "end_of_turn_token_id": 5,
}


PRETRAIN_STEPS = 12_000
PRETRAIN_BATCH = 128
PRETRAIN_LR = 3e-3


def pretrain_config(
    world_root: str,
    out: str,
    steps: int,
    seed: int,
    vocab_size: int,
    batch: int = PRETRAIN_BATCH,
    lr: float = PRETRAIN_LR,
) -> dict:
    """The CLA trainer's config for pretraining on the world's texts (full fine-tuning from random init)."""
    return {
        "method": "mist",
        "steps": steps,
        "seed": seed,
        "out": out,
        "model": {
            "path": None,
            "preset": "tiny",
            "changes": {**ARCH, "vocab_size": vocab_size},
            "init_seed": seed,
            "tokenizer": os.path.join(world_root, "tokenizer"),
        },
        "data": {
            "root": world_root,
            "texts": os.path.join(world_root, "pretrain.jsonl"),
            "task_oasst": False,
            "langs": ["zh", "ko", "es", "id", "el", "fa"],
            "chat": False,
            "max_len": 48,
            "buckets": [24, 32, 48],
        },
        "train": {
            "trainable": "full",
            "batch_size": batch,
            "compute_dtype": "float32",
            "remat": None,
            "ce_chunk": 64,
            "impl": "xla",
        },
        "optim": {
            "lr": lr,
            "schedule": "cosine",
            "warmup": 0.05,
            "min_lr_ratio": 0.05,
            "weight_decay": 0.01,
            "clip_norm": 1.0,
        },
        "checkpoint": {"every": max(steps // 4, 1), "keep": 1, "async_save": False},
        "log": {"every": 10, "progress": True},
        "export": {"enabled": True, "dtype": "float32"},
    }


def pretrain(
    work: str,
    steps: int = PRETRAIN_STEPS,
    seed: int = 0,
    batch: int = PRETRAIN_BATCH,
    lr: float = PRETRAIN_LR,
    dest: str | os.PathLike = ASSETS,
    world_config=None,
    progress: bool = True,
) -> str:
    """World → tokenizer → pretraining → an organism folder ``dest`` (default: the shipped ``assets/``).

    This is what ``jaxsteer demo --retrain`` runs. ``world_config`` (a :class:`WorldConfig`, default: the
    defaults with ``WORLD_SEED``) is recorded in ``dest/world.json``; the demo rebuilds the same world from it.
    ``dest`` is replaced only once the new folder is complete.
    """
    from jaxsteer.cla import trainer
    from jaxsteer.cla.config import load as load_train_config
    from jaxsteer.organism import World, WorldConfig, write_world

    dest = Path(dest).resolve()  # "." has no name to stage a sibling by
    world_root = os.path.join(work, "world")
    world = World(world_config or WorldConfig(seed=WORLD_SEED))
    counts = write_world(world, world_root)
    run_dir = os.path.join(work, "pretrain")
    if os.path.exists(run_dir):
        shutil.rmtree(run_dir)
    cfg_dict = pretrain_config(world_root, run_dir, steps, seed, int(counts["vocab_size"]), batch, lr)
    cfg_dict["log"]["progress"] = progress
    cfg = load_train_config(None, cfg_dict)
    t0 = time.time()
    result = trainer.train(cfg)
    minutes = (time.time() - t0) / 60
    export = Path(result["export"])
    staging = dest.with_name(f".{dest.name}-new")
    if staging.exists():
        shutil.rmtree(staging)
    shutil.copytree(export, staging)
    shutil.copy(os.path.join(world_root, "world.json"), staging / "world.json")
    rows = trainer.read_metrics(result["metrics"])
    from jaxsteer.checkpoint.hf import load_pretrained

    accuracy = training_fact_accuracy(load_pretrained(str(staging), dtype="float32"), world_root)
    import jax

    default = dataclasses.asdict(WorldConfig(seed=WORLD_SEED))
    changes = {k: v for k, v in dataclasses.asdict(world.config).items() if v != default[k]}
    command = f"jaxsteer demo --retrain --steps {steps} --batch {batch} --lr {lr:g} --seed {seed}"
    command += "".join(f" --world {k}={json.dumps(v)}" for k, v in changes.items())  # YAML, as --world parses
    record = {"english_fact_accuracy": accuracy, "command": command, "world_seed": world.config.seed,
              "world_changes": changes,
              "steps": steps, "seed": seed, "batch": batch, "lr": lr, "minutes": round(minutes, 2),
              "device": str(jax.devices()[0].device_kind), "final_loss": rows[-1]["loss"] if rows else None,
              "train_config": cfg_dict}  # fmt: skip
    (staging / "pretrain.json").write_text(json.dumps(record, indent=1))
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(staging, dest)
    return str(dest)


def world_config_of(organism: str | os.PathLike = ASSETS):
    """The :class:`WorldConfig` an organism folder was trained on (from its ``world.json``)."""
    from jaxsteer.configfile import build
    from jaxsteer.organism import WorldConfig

    path = Path(organism) / "world.json"
    if not path.is_file():
        raise CheckpointError(f"{organism} has no world.json: not an organism folder (`jaxsteer demo --retrain`)")
    return build(WorldConfig, json.loads(path.read_text())["config"])


def training_fact_accuracy(model, world_root: str, limit: int = 200) -> float:
    """Accuracy (%) on English Global-MMLU-style questions about facts stated in English during pretraining:
    the check that shipped weights are the ones the report describes."""
    from jaxsteer.data import gmmlu, prompts
    from jaxsteer.scoring import score_multiple_choice, single_token_ids
    from jaxsteer.tokens import encode_batch

    questions = gmmlu.load_gmmlu(world_root, "en", "test", "all", limit=limit)
    reqs = [prompts.mc_prompt(q) for q in questions]
    ids, mask = encode_batch(model.tokenizer, [r.context for r in reqs])
    option_ids = single_token_ids(model.tokenizer, reqs[0].continuations)
    result = score_multiple_choice(
        model, ids, mask, option_ids, [r.answer for r in reqs], batch_size=32, progress=False
    )
    return 100.0 * result.accuracy


def load_organism(organism: str | os.PathLike = ASSETS, dtype: str = "float32"):
    from jaxsteer.checkpoint.hf import load_pretrained

    if not (Path(organism) / "model.safetensors").is_file():
        raise CheckpointError(f"no organism weights in {organism}; run `jaxsteer demo --retrain` to build them")
    return load_pretrained(str(organism), dtype=dtype)
