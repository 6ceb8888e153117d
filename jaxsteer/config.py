"""Gemma-3 text-decoder configuration: one frozen dataclass, one preset per released size.

The values of the presets are those of the released checkpoints (``config.json`` of
google/gemma-3-{1b,4b,12b,27b}); ``from_hf`` parses any Gemma-3 config through transformers'
``Gemma3TextConfig`` so the legacy keys (``rope_theta``, ``rope_local_base_freq``, ``rope_scaling``,
``sliding_window_pattern``) and the v5 keys (``rope_parameters``, ``layer_types``) both work.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any, ClassVar

from jaxsteer.errors import ConfigError

DECODE_LAYOUTS: tuple[str, ...] = ("auto", "scan", "unrolled", "sliced", "moved")
"""How a generation decodes (``jaxsteer.model.decode.generate``; a model's default in ``Model.decode_layout``)."""


def check_decode_layout(layout: str, error: type[Exception] = ConfigError) -> str:
    """``layout`` if it is one of :data:`DECODE_LAYOUTS`, else one line naming the choices (``error``)."""
    if layout not in DECODE_LAYOUTS:
        raise error(f"decode_layout={layout!r}: expected one of {', '.join(DECODE_LAYOUTS)}")
    return layout


SLIDING = "sliding_attention"
FULL = "full_attention"


@dataclasses.dataclass(frozen=True)
class GemmaConfig:
    """Shape and numerics of a Gemma-3 text decoder.

    ``layer_types[i]`` is ``"sliding_attention"`` (local, window ``sliding_window``, RoPE base
    ``rope_local_base``) or ``"full_attention"`` (global, RoPE base ``rope_global_base`` with positions
    divided by ``rope_global_scaling``).
    """

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    query_pre_attn_scalar: float
    sliding_window: int
    layer_types: tuple[str, ...]
    rope_global_base: float = 1_000_000.0
    rope_local_base: float = 10_000.0
    rope_global_scaling: float = 1.0
    rms_norm_eps: float = 1e-6
    bos_token_id: int = 2
    eos_token_id: int = 1
    pad_token_id: int = 0
    end_of_turn_token_id: int = 106
    family: ClassVar[str] = "gemma3"  # jaxsteer.model.family: which block, weight names and defaults apply
    name: str = dataclasses.field(default="gemma3", compare=False)  # not part of jit cache keys
    # the longest sequence (prompt + generated tokens) the checkpoint was trained for: a bound checked before
    # generating, not a shape, so neither compared, hashed nor a jit cache key (Gemma-3 1B: 32768, others 131072)
    max_position_embeddings: int = dataclasses.field(default=131072, compare=False)

    def __post_init__(self):
        positive = ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads")
        positive += ("num_kv_heads", "head_dim", "sliding_window", "max_position_embeddings")
        for field in positive:
            if int(getattr(self, field)) <= 0:
                raise ConfigError(f"config {field}={getattr(self, field)} must be positive")
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(f"num_heads={self.num_heads} is not a multiple of num_kv_heads={self.num_kv_heads}")
        if self.head_dim % 2:
            raise ConfigError(f"head_dim={self.head_dim} must be even for rotary embeddings")
        if len(self.layer_types) != self.num_layers:
            raise ConfigError(f"layer_types has {len(self.layer_types)} entries for {self.num_layers} layers")
        unknown = set(self.layer_types) - {SLIDING, FULL}
        if unknown:
            raise ConfigError(f"unknown layer type(s) {sorted(unknown)}; expected {SLIDING!r} or {FULL!r}")

    # --- derived -------------------------------------------------------------------------------
    @property
    def is_global(self) -> tuple[bool, ...]:
        return tuple(t == FULL for t in self.layer_types)

    @property
    def global_layers(self) -> tuple[int, ...]:
        return tuple(i for i, g in enumerate(self.is_global) if g)

    @property
    def attn_scale(self) -> float:
        return float(self.query_pre_attn_scalar) ** -0.5

    def replace(self, **changes: Any) -> GemmaConfig:
        if "layer_types" not in changes and "num_layers" in changes:
            changes["layer_types"] = default_layer_types(changes["num_layers"])
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["layer_types"] = list(self.layer_types)
        return d

    def config_hash(self) -> str:
        """Short stable hash of the architecture (not the name): vectors and results carry it."""
        d = self.to_dict()
        d.pop("name")
        d.pop("max_position_embeddings")  # not the architecture: hashes of existing vector files stay valid
        blob = json.dumps(d, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def num_params(self, include_embedding: bool = True) -> int:
        d, f, h, k, hd = self.hidden_size, self.intermediate_size, self.num_heads, self.num_kv_heads, self.head_dim
        per_layer = d * h * hd + 2 * d * k * hd + h * hd * d + 3 * d * f + 4 * d + 2 * hd
        total = self.num_layers * per_layer + d
        return total + (self.vocab_size * d if include_embedding else 0)

    def to_hf_dict(self) -> dict[str, Any]:
        """A transformers-5 ``config.json`` for ``Gemma3ForCausalLM`` with the same function."""
        return {
            "architectures": ["Gemma3ForCausalLM"],
            "model_type": "gemma3_text",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "query_pre_attn_scalar": _whole(self.query_pre_attn_scalar),
            "sliding_window": self.sliding_window,
            "layer_types": list(self.layer_types),
            "rope_parameters": {
                FULL: _rope_params(self.rope_global_base, self.rope_global_scaling),
                SLIDING: _rope_params(self.rope_local_base, 1.0),
            },
            "rms_norm_eps": self.rms_norm_eps,
            "hidden_activation": "gelu_pytorch_tanh",
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "pad_token_id": self.pad_token_id,
            "tie_word_embeddings": True,
            "attention_bias": False,
            "final_logit_softcapping": None,
            "attn_logit_softcapping": None,
            "max_position_embeddings": self.max_position_embeddings,
            "torch_dtype": "float32",
        }

    # --- constructors --------------------------------------------------------------------------
    @classmethod
    def from_hf(cls, source: str | os.PathLike | dict[str, Any]) -> GemmaConfig:
        """Parse a Gemma-3 ``config.json`` (a folder, the file, or the dict); multimodal ones use ``text_config``."""
        raw = _read_config_json(source) if not isinstance(source, dict) else dict(source)
        name = raw.get("_name_or_path") or (str(source) if not isinstance(source, dict) else "gemma3")
        quantized = raw.get("quantization_config")  # top level, also in multimodal configs
        if "text_config" in raw:
            raw = dict(raw["text_config"] or {})
        model_type = raw.get("model_type", "gemma3_text")
        if model_type not in ("gemma3_text", "gemma3"):
            raise ConfigError(f"config model_type {model_type!r} is not Gemma-3 (expected 'gemma3_text')")
        from transformers import Gemma3TextConfig

        fields = {k: v for k, v in raw.items() if k not in ("model_type", "architectures", "transformers_version")}
        try:
            hf = Gemma3TextConfig(**fields)
        except Exception as e:  # transformers raises many types for a bad config
            reason = " ".join(line.strip() for line in str(e).splitlines()[:3] if line.strip())
            raise ConfigError(f"config is not a valid Gemma-3 config: {reason}") from None
        rope = hf.rope_parameters or {}
        full, local = rope.get(FULL) or {}, rope.get(SLIDING) or {}
        scaling = 1.0
        if full.get("rope_type", "default") == "linear":
            scaling = float(full.get("factor", 1.0))
        elif full.get("rope_type", "default") != "default":
            raise ConfigError(f"unsupported global rope_type {full.get('rope_type')!r} (expected default or linear)")
        if hf.final_logit_softcapping or hf.attn_logit_softcapping:
            raise ConfigError("logit soft-capping is set; Gemma-3 checkpoints have none (is this Gemma-2?)")
        # what jaxsteer's forward computes for every released Gemma-3: anything else would load and run silently
        # wrong (an untied head read as the embedding: logits 100 % off)
        unlike = {
            "tie_word_embeddings": (getattr(hf, "tie_word_embeddings", True), True),
            "attention_bias": (getattr(hf, "attention_bias", False), False),
            "hidden_activation": (getattr(hf, "hidden_activation", "gelu_pytorch_tanh"), "gelu_pytorch_tanh"),
            "use_bidirectional_attention": (bool(getattr(hf, "use_bidirectional_attention", False)), False),
            "quantization_config": (quantized or raw.get("quantization_config"), None),
        }
        for key, (value, supported) in unlike.items():
            if value != supported:
                raise ConfigError(f"config {key}={value!r} is not supported (jaxsteer runs Gemma-3 with {supported!r})")
        return cls(
            vocab_size=int(hf.vocab_size),
            hidden_size=int(hf.hidden_size),
            intermediate_size=int(hf.intermediate_size),
            num_layers=int(hf.num_hidden_layers),
            num_heads=int(hf.num_attention_heads),
            num_kv_heads=int(hf.num_key_value_heads),
            head_dim=int(hf.head_dim),
            query_pre_attn_scalar=float(hf.query_pre_attn_scalar),
            sliding_window=int(hf.sliding_window),
            layer_types=tuple(hf.layer_types),
            rope_global_base=float(full.get("rope_theta", 1_000_000.0)),
            rope_local_base=float(local.get("rope_theta", 10_000.0)),
            rope_global_scaling=scaling,
            rms_norm_eps=float(hf.rms_norm_eps),
            bos_token_id=_first(hf.bos_token_id, 2),
            eos_token_id=_first(hf.eos_token_id, 1),
            pad_token_id=_first(hf.pad_token_id, 0),
            name=str(name),
            max_position_embeddings=int(raw.get("max_position_embeddings") or 131072),
        )


def _whole(x: float) -> int | float:
    """Whole numbers as int: transformers 5's strict config rejects ``24.0`` where it expects an int."""
    return int(x) if float(x).is_integer() else float(x)


def _first(value, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, (list, tuple)):
        return int(value[0]) if value else default
    return int(value)


def _rope_params(base: float, factor: float) -> dict[str, Any]:
    if factor == 1.0:
        return {"rope_type": "default", "rope_theta": base}
    return {"rope_type": "linear", "rope_theta": base, "factor": factor}


def _read_config_json(source: str | os.PathLike) -> dict[str, Any]:
    path = os.fspath(source)
    if os.path.isdir(path):
        path = os.path.join(path, "config.json")
    if not os.path.isfile(path):
        raise ConfigError(f"no config.json at {path}")
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:  # the decode error names byte and offset
        raise ConfigError(f"cannot read {path}: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} does not hold a JSON object")
    return raw


def default_layer_types(num_layers: int, pattern: int = 6) -> tuple[str, ...]:
    """Gemma-3's interleaving: every ``pattern``-th layer (1-based) is global."""
    return tuple(FULL if (i + 1) % pattern == 0 else SLIDING for i in range(num_layers))


def _preset(name, layers, d, ff, heads, kv, head_dim, qpas, window, vocab, scaling) -> GemmaConfig:
    return GemmaConfig(
        vocab_size=vocab,
        hidden_size=d,
        intermediate_size=ff,
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=kv,
        head_dim=head_dim,
        query_pre_attn_scalar=qpas,
        sliding_window=window,
        layer_types=default_layer_types(layers),
        rope_global_scaling=scaling,
        name=name,
    )


def gemma3_1b() -> GemmaConfig:
    return _preset("gemma-3-1b", 26, 1152, 6912, 4, 1, 256, 256, 512, 262144, 1.0).replace(
        max_position_embeddings=32768
    )


def gemma3_4b() -> GemmaConfig:
    return _preset("gemma-3-4b", 34, 2560, 10240, 8, 4, 256, 256, 1024, 262208, 8.0)


def gemma3_12b() -> GemmaConfig:
    return _preset("gemma-3-12b", 48, 3840, 15360, 16, 8, 256, 256, 1024, 262208, 8.0)


def gemma3_27b() -> GemmaConfig:
    return _preset("gemma-3-27b", 62, 5376, 21504, 32, 16, 128, 168, 1024, 262208, 8.0)


def tiny(**changes: Any) -> GemmaConfig:
    """A few-kilobyte config with every Gemma-3 feature switched on (GQA, global + local, scaling)."""
    base = GemmaConfig(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=64,
        num_layers=8,
        num_heads=4,
        num_kv_heads=2,
        head_dim=16,
        query_pre_attn_scalar=24,
        sliding_window=4,
        layer_types=default_layer_types(8),
        rope_global_scaling=8.0,
        name="tiny",
    )
    return base.replace(**changes) if changes else base


PRESETS = {"1b": gemma3_1b, "4b": gemma3_4b, "12b": gemma3_12b, "27b": gemma3_27b, "tiny": tiny}


def preset(name: str) -> GemmaConfig:
    key = name.lower().removeprefix("gemma3_").removeprefix("gemma-3-").removeprefix("gemma3-")
    if key not in PRESETS:
        raise ConfigError(f"unknown model preset {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[key]()
