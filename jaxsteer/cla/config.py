"""The CLA training config: frozen dataclasses that a YAML file (``configs/cla/*.yaml``) fills in.

Sections mirror the YAML: ``model``, ``data``, ``train``, ``lora``, ``optim``, ``midalign``, ``clo``,
``mesh``, ``checkpoint``, ``log``, ``export``. ``--set section.key=value`` overrides one key. Checks that
need only the config run in :func:`validate`; those that need the model or the data (``l_align`` against
the layer count, an empty dataset) run where those are known, with the same one-line ``ConfigError``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any

from jaxsteer import configfile
from jaxsteer.errors import ConfigError
from jaxsteer.sharding import MeshSpec

METHODS = ("mist", "midalign", "clo")
TRAINABLE = ("lora", "full", "attention")
LORA_TARGETS = ("q", "k", "v", "o", "gate", "up", "down")
SCHEDULES = ("inverse_sqrt", "cosine", "constant")
CE_IMPLS = ("fused", "chunked")  # jaxsteer.cla.losses.head_logprob_sums
LAYER_LOOPS = ("auto", "scan", "unrolled")  # jaxsteer.cla.lora.forward_hidden; auto: resolve_layer_loop
EXPORT_DTYPES = ("bfloat16", "float32")  # jaxsteer.cla.lora.DTYPES
MIN_TOKENIZER_VOCAB = 6  # jaxsteer.tokens.SPECIAL_TOKENS: a trained tokenizer holds them and more
REMAT_POLICIES = ("nothing_saveable", "everything_saveable", "dots_saveable", "dots_with_no_batch_dims_saveable")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    path: str | None = None  # HF Gemma-3 folder; None: random init of `preset` (tests, smoke runs)
    preset: str = "tiny"  # jaxsteer.config preset used when path is None
    changes: dict[str, Any] = dataclasses.field(default_factory=dict)  # GemmaConfig fields set on the preset
    init_seed: int = 0
    tokenizer: str | None = None  # folder; None: the model folder's; "train": a BPE trained on the data
    tokenizer_vocab: int = 512  # vocabulary of the trained tokenizer (≤ the model's vocab_size)


@dataclasses.dataclass(frozen=True)
class DataSpec:
    root: str = "tests/fixtures/data"  # data root (jaxsteer/data/files.py layout) or hub ids below
    oasst: str | None = None  # OpenAssistantXX file/root/hub id; None: root
    flores: str | None = None  # FLORES root/hub id; None: root
    flores_split: str = "dev"
    langs: tuple[str, ...] = ("zh", "ko", "es", "id", "el", "fa")
    include_english: bool = True  # MIST/MIDALIGN task data also holds the English originals (once each)
    chat: bool = True  # wrap prompts in the tokenizer's chat template
    max_len: int = 1024  # tokens per sequence; longer responses are cut, over-long prompts dropped
    buckets: tuple[int, ...] = ()  # padded lengths (one compile each); (): powers of two up to max_len
    length_window: int = 1  # sort by length within windows of this many batches (1: plain shuffle)
    texts: str | None = None  # JSONL of {"text": ...}: plain LM on every token, added to the task stream
    task_oasst: bool = True  # the task stream holds OpenAssistantXX (False: only `texts`, e.g. pretraining)


@dataclasses.dataclass(frozen=True)
class TrainSpec:
    trainable: str = "lora"  # lora | full | attention (q,k,v,o projections, CLO's setting)
    batch_size: int = 128  # sequences (pairs for CLO/alignment) per optimizer step, all devices together
    micro_batch: int = 0  # per accumulation micro-step; 0: batch_size (no accumulation)
    compute_dtype: str = "bfloat16"  # matmul dtype; trainable weights stay float32 (master copy)
    remat: str | None = "nothing_saveable"  # jax.checkpoint_policies name for the scanned block; None: off
    ce_chunk: int = 256  # sequence positions per cross-entropy chunk: [B, chunk, V] fp32 at a time
    ce_impl: str = "fused"  # fused: custom VJP, head gradients in the forward pass | chunked: recompute (reference)
    impl: str = "auto"  # attention kernel: auto | xla | cudnn | splash
    # scan: one compiled block over the stacked weights (fast compile); unrolled: each layer its own static slice
    # of the weights and its own gradient buffer (no per-layer weight-slice copies or gradient writes into the
    # stack: a 1B step on an H200 0.160 → 0.120 s; slower to compile); auto: unrolled on GPUs, scan elsewhere
    layer_loop: str = "auto"


@dataclasses.dataclass(frozen=True)
class LoraSpec:
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.1  # on the input features of A (see jaxsteer/cla/lora.py)
    targets: tuple[str, ...] = LORA_TARGETS


@dataclasses.dataclass(frozen=True)
class OptimSpec:
    lr: float = 5e-4
    schedule: str = "inverse_sqrt"  # inverse_sqrt | cosine | constant (all after a linear warmup)
    warmup: float = 0.03  # < 1: fraction of steps; ≥ 1: steps
    min_lr_ratio: float = 0.0  # cosine end value / lr
    weight_decay: float = 0.0  # decoupled (AdamW); never on norm weights
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    clip_norm: float = 1.0  # global gradient norm over the trainable leaves; 0: off


@dataclasses.dataclass(frozen=True)
class MidalignSpec:
    l_align: int | None = None  # block whose output is pooled (0-based, as steering layers); None: L // 2
    tau: float = 0.1
    symmetric: bool = False  # also the EN→XX direction of InfoNCE, averaged
    align_batch: int = 32  # FLORES pairs per alignment step, one micro-step (the negatives are in-batch)


@dataclasses.dataclass(frozen=True)
class CloSpec:
    lam: float = 0.5  # λ·NLL + (1−λ)·DPO
    beta: float = 0.1
    ref_batch: int = 8  # sequences per forward when caching the reference log-probs


@dataclasses.dataclass(frozen=True)
class CheckpointSpec:
    every: int = 100
    keep: int = 3
    async_save: bool = True


@dataclasses.dataclass(frozen=True)
class LogSpec:
    every: int = 1  # metrics JSONL rows (losses are checked for NaN/inf on every step regardless)
    progress: bool = True  # tqdm bar


@dataclasses.dataclass(frozen=True)
class ExportSpec:
    enabled: bool = True  # write OUT/export (LoRA merged) for jaxsteer eval/steer
    dtype: str = "bfloat16"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    method: str = "mist"
    steps: int = 1000
    seed: int = 0
    out: str = "runs/cla"
    model: ModelSpec = ModelSpec()
    data: DataSpec = DataSpec()
    train: TrainSpec = TrainSpec()
    lora: LoraSpec = LoraSpec()
    optim: OptimSpec = OptimSpec()
    midalign: MidalignSpec = MidalignSpec()
    clo: CloSpec = CloSpec()
    mesh: MeshSpec = MeshSpec()
    checkpoint: CheckpointSpec = CheckpointSpec()
    log: LogSpec = LogSpec()
    export: ExportSpec = ExportSpec()

    @property
    def micro_batch(self) -> int:
        return self.train.micro_batch or self.train.batch_size

    @property
    def accum_steps(self) -> int:
        return self.train.batch_size // self.micro_batch

    def to_dict(self) -> dict[str, Any]:
        return configfile.to_dict(self)

    def config_hash(self) -> str:
        """Hash of everything that changes the trajectory (``out`` excluded): resume refuses a mismatch."""
        d = self.to_dict()
        for key in ("out", "log", "checkpoint", "export"):  # where and how often, not what is computed
            d.pop(key)
        # the two cross-entropy implementations compute the same loss (to fp32 rounding); leaving the switch
        # out keeps the hashes of runs started before it existed, so they still resume
        d["train"].pop("ce_impl")
        d["train"].pop("layer_loop")  # the same computation, looped differently
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def resolve_layer_loop(loop: str) -> str:
    """``auto`` → ``unrolled`` on GPUs (measured: the scan's weight-slice copies and stacked gradient writes are a
    fifth of a 1B step on an H200), ``scan`` elsewhere (the CPU compiles it faster; TPUs are not measured)."""
    if loop != "auto":
        return loop
    import jax

    return "unrolled" if jax.default_backend() == "gpu" else "scan"


def load(path: str | os.PathLike | None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """YAML + overrides → a validated :class:`TrainConfig`."""
    return validate(configfile.load(TrainConfig, path, overrides))


def _need(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def validate(cfg: TrainConfig) -> TrainConfig:
    """Every check that needs only the config; the model- and data-dependent ones live beside their inputs."""
    _need(cfg.method in METHODS, f"unknown method {cfg.method!r}; expected one of {', '.join(METHODS)}")
    _need(cfg.steps > 0, f"steps={cfg.steps} must be positive")
    _need(0 <= cfg.seed < 2**32, f"seed={cfg.seed} must be in 0 … 2**32 − 1")
    t = cfg.train
    _need(t.trainable in TRAINABLE, f"train.trainable={t.trainable!r}; expected one of {', '.join(TRAINABLE)}")
    _need(t.batch_size > 0, f"train.batch_size={t.batch_size} must be positive")
    _need(t.micro_batch >= 0, f"train.micro_batch={t.micro_batch} must be ≥ 0")
    _need(
        t.batch_size % cfg.micro_batch == 0,
        f"train.batch_size={t.batch_size} is not a multiple of train.micro_batch={cfg.micro_batch}",
    )
    _need(t.compute_dtype in ("bfloat16", "float32"), f"train.compute_dtype={t.compute_dtype!r}: bfloat16|float32")
    _need(t.remat is None or t.remat in REMAT_POLICIES, f"train.remat={t.remat!r}: one of {REMAT_POLICIES} or null")
    _need(t.ce_chunk > 0, f"train.ce_chunk={t.ce_chunk} must be positive")
    _need(t.ce_impl in CE_IMPLS, f"train.ce_impl={t.ce_impl!r}; expected one of {', '.join(CE_IMPLS)}")
    _need(t.layer_loop in LAYER_LOOPS, f"train.layer_loop={t.layer_loop!r}; expected one of {', '.join(LAYER_LOOPS)}")
    if t.trainable == "lora":
        lo = cfg.lora
        _need(lo.rank > 0, f"lora.rank={lo.rank} must be positive")
        _need(lo.alpha > 0, f"lora.alpha={lo.alpha} must be positive")
        _need(0.0 <= lo.dropout < 1.0, f"lora.dropout={lo.dropout} must be in [0, 1)")
        bad = [x for x in lo.targets if x not in LORA_TARGETS]
        _need(
            not bad and bool(lo.targets), f"lora.targets {list(lo.targets)}: expected a subset of {list(LORA_TARGETS)}"
        )
    o = cfg.optim
    _need(o.lr > 0, f"optim.lr={o.lr} must be positive")
    _need(o.schedule in SCHEDULES, f"optim.schedule={o.schedule!r}; expected one of {', '.join(SCHEDULES)}")
    _need(o.warmup >= 0, f"optim.warmup={o.warmup} must be ≥ 0")
    _need(o.clip_norm >= 0, f"optim.clip_norm={o.clip_norm} must be ≥ 0")
    m = cfg.midalign
    _need(m.tau > 0, f"midalign.tau={m.tau} must be positive")
    _need(m.align_batch > 1, f"midalign.align_batch={m.align_batch} must be ≥ 2 (in-batch negatives)")
    c = cfg.clo
    _need(0.0 <= c.lam <= 1.0, f"clo.lam={c.lam} must be in [0, 1]")
    _need(c.beta > 0, f"clo.beta={c.beta} must be positive")
    _need(c.ref_batch > 0, f"clo.ref_batch={c.ref_batch} must be positive")
    d = cfg.data
    _need(d.max_len >= 8, f"data.max_len={d.max_len} must be ≥ 8")
    _need(all(b > 0 for b in d.buckets), f"data.buckets {list(d.buckets)} must be positive")
    _need(  # rows are cut at max_len: a longer one with no bucket would stop the run at the step that draws it
        not d.buckets or max(d.buckets) >= d.max_len,
        f"data.buckets {list(d.buckets)}: the largest must be ≥ data.max_len={d.max_len}",
    )
    _need(d.length_window >= 1, f"data.length_window={d.length_window} must be ≥ 1")
    _need(bool(d.langs), "data.langs is empty")
    _need(cfg.mesh.fsdp >= 1 and (cfg.mesh.data >= 1 or cfg.mesh.data == -1), "mesh.data/fsdp must be ≥ 1 (data -1)")
    _need(
        cfg.mesh.model == 1, f"mesh.model={cfg.mesh.model}: tensor parallelism is for inference; train with mesh.fsdp"
    )
    _need(cfg.checkpoint.every > 0 and cfg.checkpoint.keep > 0, "checkpoint.every and checkpoint.keep must be ≥ 1")
    _need(cfg.log.every > 0, f"log.every={cfg.log.every} must be ≥ 1")
    # found out after the last step otherwise (export) or as a tokenizers traceback (a negative vocabulary)
    _need(
        cfg.export.dtype in EXPORT_DTYPES,
        f"export.dtype={cfg.export.dtype!r}; expected one of {', '.join(EXPORT_DTYPES)}",
    )
    _need(
        cfg.model.tokenizer != "train" or cfg.model.tokenizer_vocab > MIN_TOKENIZER_VOCAB,
        f"model.tokenizer_vocab={cfg.model.tokenizer_vocab} must be > {MIN_TOKENIZER_VOCAB} (its special tokens) "
        "to train a tokenizer",
    )
    return cfg


def resolve_l_align(cfg: TrainConfig, num_layers: int) -> int:
    """The alignment block: ``midalign.l_align`` or L // 2, checked against the model's layer count."""
    l_align = num_layers // 2 if cfg.midalign.l_align is None else cfg.midalign.l_align
    if not 0 <= l_align < num_layers:
        raise ConfigError(
            f"midalign.l_align={l_align} out of range for a {num_layers}-layer model (0..{num_layers - 1})"
        )
    return l_align


def warmup_steps(cfg: TrainConfig) -> int:
    w = cfg.optim.warmup
    return int(round(w * cfg.steps)) if w < 1 else int(w)


@dataclasses.dataclass(frozen=True)
class StepSpec:
    """Everything static about the compiled step (hashable: it keys the compile cache)."""

    config: Any  # jaxsteer.config.GemmaConfig
    compute_dtype: str = "bfloat16"
    remat: str | None = "nothing_saveable"
    chunk: int = 256
    ce_impl: str = "fused"
    impl: str = "xla"
    layer_loop: str = "scan"
    lora_scale: float = 2.0
    lora_dropout: float = 0.0
    align_stop: int = 1  # blocks 0 … l_align run in the alignment step
    tau: float = 0.1
    symmetric: bool = False
    lam: float = 0.5
    beta: float = 0.1
    seed: int = 0

    @classmethod
    def from_config(cls, cfg: TrainConfig, model_config) -> StepSpec:
        from jaxsteer.model.attention import resolve_impl

        lora = cfg.train.trainable == "lora"
        return cls(
            config=model_config,
            compute_dtype=cfg.train.compute_dtype,
            remat=cfg.train.remat,
            chunk=cfg.train.ce_chunk,
            ce_impl=cfg.train.ce_impl,
            layer_loop=resolve_layer_loop(cfg.train.layer_loop),
            impl=resolve_impl(cfg.train.impl, cfg.train.compute_dtype),
            lora_scale=cfg.lora.alpha / cfg.lora.rank if lora else 0.0,
            lora_dropout=cfg.lora.dropout if lora else 0.0,
            align_stop=resolve_l_align(cfg, model_config.num_layers) + 1 if cfg.method == "midalign" else 1,
            tau=cfg.midalign.tau,
            symmetric=cfg.midalign.symmetric,
            lam=cfg.clo.lam,
            beta=cfg.clo.beta,
            seed=cfg.seed,
        )
