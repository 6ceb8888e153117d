"""Steering-vector files: safetensors with provenance, GGUF control vectors, lm-evaluation-harness configs.

A vector file must not be applicable to the wrong model or layer: every ``VectorSet`` carries the config
hash, width, depth and layer convention, and ``check_compatible`` refuses a mismatch in one line. Layer
convention ``"block_output"``: row ``l`` is added to the output of decoder block ``l`` (0-based), i.e. HF
``hidden_states[l + 1]`` and a forward hook on ``model.layers[l]``.

GGUF mapping, verified in llama.cpp's source rather than assumed:

* ``common/common.cpp`` ``common_control_vector_load_one``: ``direction.0`` is rejected ("invalid (zero)
  direction tensor layer index") and ``direction.K`` is copied to ``data + n_embd * (K - 1)`` ("layer 1 at [0]").
* ``src/llama-adapter.cpp`` ``llama_adapter_cvec::apply``: ``for il = 1 .. n_layer-1: off = n_embd * (il - 1)``
  fills ``tensors[il]`` — so the buffer offset undoes the ``- 1`` and ``direction.K`` lands in ``tensors[K]``.
* ``src/models/gemma3.cpp``: at the end of loop iteration ``il`` (0-based, after the FFN residual add)
  ``cur = build_cvec(cur, il)`` → ``cvec->apply_to(ctx0, cur, il)`` adds ``tensors[il]``.

Hence ``direction.K`` is added to the output of 0-based block ``K`` = jaxsteer layer ``K`` (identity, no
shift); block 0 cannot be steered from a GGUF file, and a file that holds ``direction.0`` is rejected
*whole* by llama.cpp (it then runs unsteered): :func:`import_gguf` warns about such a file, and
:func:`export_gguf` never writes one. repeng agrees on the mapping: it reads ``hidden_states[layer + 1]``
and hooks ``model.layers[layer]``, then writes ``direction.{layer}`` — with one exception: its default
layers run up to ``n_layers - 1``, and for that last layer ``hidden_states[n_layers]`` is HF's final
entry, which is taken *after the final norm*. repeng's last-layer direction is therefore read from the
normed stream but added (by its hook and by llama.cpp) to the raw block output; jaxsteer reads every
layer, the last included, from the raw block output. (llama.cpp's own ``cvector-generator`` names the
vector read at block ``il`` ``direction.{il+1}``, i.e. applies it one block later; that is the
generator's choice, not the loader's convention.)
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxsteer.checkpoint.safetensors_io import SafetensorsFile, write_safetensors
from jaxsteer.errors import CheckpointError, InputError
from jaxsteer.model.family import DecoderConfig
from jaxsteer.results import commit, temp_file, write_json
from jaxsteer.steering.plan import Steering, check_layer

CONVENTIONS = {"block_output": "vector[l] is added to the output of decoder block l (0-based) = HF hidden_states[l+1]"}
READ_POSITIONS = ("last", "mean", "unknown")
METHODS = ("mean_diff", "pca_diff", "pca_center", "unknown")
NORMALISATIONS = ("none", "unit_mean_norm", "unit", "unknown")
FORMAT = "jaxsteer-vectors"
FORMAT_VERSION = "1"
_CHOICES = dict(
    method=METHODS, read_position=READ_POSITIONS, normalisation=NORMALISATIONS, layer_convention=("block_output",)
)
_JSON_FIELDS = ("languages", "extra")
_INT_FIELDS = ("num_layers", "hidden_size", "num_pairs")


def _version() -> str:
    import jaxsteer  # late: this module may be imported while jaxsteer/__init__ is still running

    return jaxsteer.__version__


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass(frozen=True)
class VectorMeta:
    """Where a vector set comes from and how it must be applied (stored verbatim in every file)."""

    model_name: str
    config_hash: str
    num_layers: int
    hidden_size: int
    method: str = "mean_diff"
    read_position: str = "last"
    kind: str = ""
    num_pairs: int = 0
    languages: Sequence[str] = ()  # any sequence in (JSON gives lists); stored as a tuple
    normalisation: str = "none"
    layer_convention: str = "block_output"
    jaxsteer_version: str = dataclasses.field(default_factory=_version)
    created: str = dataclasses.field(default_factory=_now)
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "languages", tuple(str(x) for x in self.languages))
        set_(self, "extra", dict(self.extra))
        for name in _INT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise InputError(f"vector metadata {name}={value!r} must be a non-negative integer")
            set_(self, name, int(value))
        if self.num_layers == 0 or self.hidden_size == 0:
            raise InputError(f"vector metadata has {self.num_layers} layers of width {self.hidden_size}")
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise InputError(f"vector metadata {name}={getattr(self, name)!r}: expected one of {allowed}")
        try:
            json.dumps(self.extra)
        except (TypeError, ValueError) as e:
            raise InputError(f"vector metadata extra is not JSON-serialisable: {e}") from None

    @classmethod
    def for_config(cls, config: DecoderConfig, **fields: Any) -> VectorMeta:
        return cls(config.name, config.config_hash(), config.num_layers, config.hidden_size, **fields)

    def to_strings(self) -> dict[str, str]:
        """safetensors metadata is ``str → str``: structured fields are JSON, integers decimal."""
        out = {"format": FORMAT, "format_version": FORMAT_VERSION}
        for name, value in dataclasses.asdict(self).items():
            out[name] = json.dumps(value) if name in _JSON_FIELDS else str(value)
        out["layer_convention_doc"] = CONVENTIONS[self.layer_convention]
        return out

    @classmethod
    def from_strings(cls, meta: Mapping[str, str], where: str) -> VectorMeta:
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n != "extra" and n not in meta]
        if missing:
            raise CheckpointError(f"{where} lacks metadata key(s) {', '.join(missing)} (not a jaxsteer vector file?)")
        values: dict[str, Any] = {n: meta[n] for n in names if n in meta}
        try:
            values.update({n: json.loads(values[n]) for n in _JSON_FIELDS if n in values})
            values.update({n: int(values[n]) for n in _INT_FIELDS})
            return cls(**values)
        except (ValueError, TypeError, InputError) as e:
            raise CheckpointError(f"{where}: bad metadata: {str(e).splitlines()[0]}") from None


@dataclasses.dataclass(frozen=True, eq=False)
class VectorSet:
    """Dense ``[L, D]`` float32 vectors (zero rows = layer not steered) plus their :class:`VectorMeta`."""

    vectors: np.ndarray
    meta: VectorMeta

    def __post_init__(self):
        v = np.asarray(self.vectors)
        if v.ndim != 2:
            raise InputError(f"vectors must be a 2-D [layers, width] array, got shape {v.shape}")
        expected = (self.meta.num_layers, self.meta.hidden_size)
        if v.shape != expected:
            raise InputError(f"vectors have shape {v.shape}, the metadata says {expected}")
        if not np.issubdtype(v.dtype, np.floating):
            raise InputError(f"vectors must be floating point, got {v.dtype}")
        v = np.array(v, dtype=np.float32, copy=True)
        bad = ~np.isfinite(v).all(axis=1)
        if bad.any():
            layers = np.flatnonzero(bad)
            what = "NaN" if np.isnan(v[layers[0]]).any() else "inf"
            more = f" (and {len(layers) - 1} more layers)" if len(layers) > 1 else ""
            raise InputError(f"vectors contain {what} at layer {int(layers[0])}{more}")
        v.flags.writeable = False
        object.__setattr__(self, "vectors", v)

    @classmethod
    def from_config(cls, config: DecoderConfig, vectors: Any, **meta_fields: Any) -> VectorSet:
        return cls(np.asarray(vectors), VectorMeta.for_config(config, **meta_fields))

    @property
    def num_layers(self) -> int:
        return self.meta.num_layers

    @property
    def hidden_size(self) -> int:
        return self.meta.hidden_size

    def nonzero_layers(self) -> tuple[int, ...]:
        return tuple(int(i) for i in np.flatnonzero(np.any(self.vectors != 0, axis=1)))

    def replace(self, vectors: Any = None, **meta_changes: Any) -> VectorSet:
        meta = dataclasses.replace(self.meta, **meta_changes) if meta_changes else self.meta
        return VectorSet(self.vectors if vectors is None else np.asarray(vectors), meta)


# --- safetensors ---------------------------------------------------------------------------------
def save_vectors(path: str | os.PathLike, vset: VectorSet) -> str:
    """One tensor ``"vectors"`` [L, D] F32 and the metadata as strings; atomic (temp file + rename)."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_safetensors(path, {"vectors": vset.vectors}, vset.meta.to_strings())
    return path


def load_vectors(path: str | os.PathLike) -> VectorSet:
    """Read a file written by :func:`save_vectors`; any defect is a one-line ``CheckpointError``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"no vector file at {path}")
    with SafetensorsFile(path) as f:
        if f.metadata.get("format") != FORMAT:
            raise CheckpointError(f"{path} is safetensors but not a jaxsteer vector file (no format={FORMAT!r})")
        if "vectors" not in f.names():
            raise CheckpointError(f"{path} has no 'vectors' tensor (found {', '.join(f.names()) or 'none'})")
        array = f.get("vectors")
        if array.dtype != np.float32:
            raise CheckpointError(f"{path}: 'vectors' has dtype {array.dtype}, expected float32")
        array = np.array(array, copy=True)
        meta = VectorMeta.from_strings(f.metadata, path)
    try:
        return VectorSet(array, meta)
    except InputError as e:
        raise CheckpointError(f"{path}: {e}") from None


# --- applying ------------------------------------------------------------------------------------
def check_compatible(vset: VectorSet, config: DecoderConfig, force: bool = False) -> None:
    """Refuse a vector set made for another model; ``force`` skips only the config-hash check."""
    if vset.hidden_size != config.hidden_size:
        raise InputError(f"vector file has width {vset.hidden_size}, the model has {config.hidden_size}")
    if vset.num_layers != config.num_layers:
        raise InputError(f"vector file has {vset.num_layers} layers, the model has {config.num_layers}")
    ours = config.config_hash()
    if not force and vset.meta.config_hash != ours:
        raise InputError(
            f"vector file was made for {vset.meta.model_name} (config {vset.meta.config_hash}), "
            f"the model is {config.name} (config {ours}); pass force=True (CLI: --force) to apply it anyway"
        )


def _layer_gammas(vset: VectorSet, layers, gamma) -> dict[int, float]:
    """``{layer: γ}`` from a mapping (its values are the γs) or a sequence plus one ``gamma``."""
    if isinstance(layers, Mapping):
        if gamma is not None:
            raise InputError("give the gammas either as {layer: gamma} or as gamma=, not both")
        chosen = {layer: float(g) for layer, g in layers.items()}
    else:
        layers = [layers] if isinstance(layers, (int, np.integer)) else layers
        chosen = {layer: 1.0 if gamma is None else float(gamma) for layer in layers}
    if not chosen:
        raise InputError("no layers chosen: pass a list of layers or {layer: gamma}")
    for layer, g in chosen.items():
        check_layer(layer, vset.num_layers)
        if not math.isfinite(g):
            raise InputError(f"gamma {g} for layer {layer} is not finite")
    check_nonzero_at(vset, chosen, "this file")
    return {int(k): v for k, v in chosen.items()}


def check_nonzero_at(vset: VectorSet, layers, source: str) -> None:
    """Refuse steering at a layer where ``vset`` is zero: γ·0 changes nothing, and a run steered "at layer l"
    that was not steered at all is a silent wrong result (an extraction from empty pairs, a GGUF without l)."""
    nonzero = vset.nonzero_layers()
    for layer in layers:
        if int(layer) not in nonzero:
            listed = ", ".join(map(str, nonzero)) or "none"
            raise InputError(f"layer {layer} has a zero vector in {source} (non-zero layers: {listed})")


def to_steering(
    vset: VectorSet,
    config: DecoderConfig,
    layers: Mapping[int, float] | Sequence[int] | int,
    gamma: float | None = None,
    scope: Any = "all",
    force: bool = False,
) -> Steering:
    """A :class:`Steering` plan with the chosen rows; ``layers={20: 2.0}`` or ``layers=[20], gamma=2.0``."""
    check_compatible(vset, config, force=force)
    gammas = _layer_gammas(vset, layers, gamma)
    return Steering.from_layers(config, {k: vset.vectors[k] for k in gammas}, gamma=gammas, scope=scope)


# --- GGUF control vectors (repeng, llama.cpp, EasySteer) -----------------------------------------
def gguf_tensor_name(layer: int) -> str:
    """jaxsteer layer ``l`` ↔ ``direction.l`` (see the module docstring for the llama.cpp source lines)."""
    return f"direction.{int(layer)}"


def export_gguf(
    vset: VectorSet,
    path: str | os.PathLike,
    layers: Sequence[int] | None = None,
    scale: float = 1.0,
    model_hint: str = "gemma3",
) -> str:
    """Write a ``controlvector`` GGUF: ``direction.l = scale · v[l]`` for the chosen (default: non-zero) layers.

    Block 0 has no GGUF slot (llama.cpp rejects ``direction.0``): it is skipped with a warning by
    default and refused when asked for explicitly. ``model_hint`` defaults to llama.cpp's architecture
    name, which is what ``cvector-generator`` writes; llama.cpp ignores all metadata when loading.
    """
    path = os.fspath(path)
    if not math.isfinite(scale):
        raise InputError(f"scale {scale} is not finite")
    if layers is None:
        chosen = list(vset.nonzero_layers())
        if 0 in chosen:
            warnings.warn(
                "layer 0 cannot be stored as a GGUF control vector (llama.cpp rejects direction.0); skipped",
                stacklevel=2,
            )
            chosen.remove(0)
    else:
        chosen = sorted({int(x) for x in _layer_gammas(vset, list(layers), None)})
        if 0 in chosen:
            raise InputError("layer 0 cannot be stored as a GGUF control vector: llama.cpp rejects direction.0")
    if not chosen:
        raise InputError("nothing to export: the vector set has no non-zero layer from 1 on")
    import gguf

    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = temp_file(folder, suffix=".gguf")
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(tmp, "controlvector")
        writer.add_string("controlvector.model_hint", model_hint)
        writer.add_uint32("controlvector.layer_count", len(chosen))  # repeng: number of direction tensors
        writer.add_string("jaxsteer.meta", json.dumps(dataclasses.asdict(vset.meta)))
        writer.add_float32("jaxsteer.scale", float(scale))
        writer.add_string("jaxsteer.layer_mapping", "direction.K = jaxsteer layer K = output of block K (0-based)")
        for layer in chosen:
            row = vset.vectors[layer] if scale == 1.0 else vset.vectors[layer] * np.float32(scale)
            writer.add_tensor(gguf_tensor_name(layer), np.ascontiguousarray(row, dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        commit(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _gguf_value(reader, key: str) -> Any:
    field = reader.get_field(key)
    return None if field is None else field.contents()


def import_gguf(path: str | os.PathLike, config: DecoderConfig, force: bool = False) -> VectorSet:
    """Read a ``controlvector`` GGUF (ours, repeng's or llama.cpp's) into a dense ``[L, D]`` set.

    Values are returned as stored (any export ``scale`` is baked in; it is kept in ``meta.extra``).
    A foreign file carries no config hash: the model's is assumed and ``extra["config_hash_assumed"]``
    says so; width and depth are still checked. A file holding ``direction.0`` (repeng writes it when
    asked for layer 0) is read — jaxsteer can add it after block 0 — with a warning, because llama.cpp
    rejects such a file whole and runs unsteered; ``extra["gguf_direction_0"]`` records it.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"no GGUF file at {path}")
    import gguf

    try:
        reader = gguf.GGUFReader(path)
    except Exception as e:  # the reader raises ValueError, struct.error, IndexError... on bad files
        raise CheckpointError(f"{path} is not a readable GGUF file ({type(e).__name__})") from None
    arch = _gguf_value(reader, "general.architecture")
    if arch != "controlvector":
        raise CheckpointError(f"{path} has GGUF architecture {arch!r}, expected 'controlvector'")
    hint = _gguf_value(reader, "controlvector.model_hint") or ""
    extra: dict[str, Any] = {"gguf_model_hint": hint}
    if _gguf_value(reader, "jaxsteer.scale") is not None:
        extra["gguf_scale"] = float(_gguf_value(reader, "jaxsteer.scale"))
    meta = None
    if (stored := _gguf_value(reader, "jaxsteer.meta")) is not None:
        try:
            fields = json.loads(stored)
            meta = VectorMeta(**{**fields, "extra": {**fields.get("extra", {}), **extra}})
        except (ValueError, TypeError, InputError) as e:
            raise CheckpointError(f"{path}: bad jaxsteer.meta: {str(e).splitlines()[0]}") from None
    rows: dict[int, np.ndarray] = {}
    for tensor in reader.tensors:
        prefix, _, index = tensor.name.partition(".")
        if prefix != "direction":
            continue
        if not index.isdigit():
            raise CheckpointError(f"{path}: tensor {tensor.name!r} is not direction.<layer>")
        data = np.asarray(tensor.data)
        if data.dtype not in (np.float32, np.float16) or data.size != int(tensor.n_elements):
            raise CheckpointError(f"{path}: {tensor.name} is {data.dtype}, expected float32")
        rows[int(index)] = data.reshape(-1).astype(np.float32)
    if not rows:
        raise CheckpointError(f"{path} has no direction.<layer> tensors")
    if 0 in rows:
        warnings.warn(
            f"{path} holds direction.0: llama.cpp rejects this file whole and runs unsteered "
            "(its control vectors start at block 1); jaxsteer applies it after block 0",
            stacklevel=2,
        )
        extra["gguf_direction_0"] = True
    if meta is not None:  # the flag describes this file's tensors, not the set it was exported from
        kept = {k: v for k, v in meta.extra.items() if k != "gguf_direction_0"}
        meta = dataclasses.replace(meta, extra={**kept, **({"gguf_direction_0": True} if 0 in rows else {})})
    widths = sorted({r.size for r in rows.values()})
    if len(widths) > 1:
        raise CheckpointError(f"{path}: direction tensors have different widths {widths}")
    width = widths[0]
    if meta is None:
        extra["config_hash_assumed"] = True
        unknown = dict.fromkeys(("method", "read_position", "normalisation"), "unknown")
        meta = VectorMeta(
            hint or "unknown", config.config_hash(), config.num_layers, width, kind="gguf", extra=extra, **unknown
        )
    if width != meta.hidden_size:
        raise CheckpointError(f"{path}: direction tensors have width {width}, its metadata says {meta.hidden_size}")
    beyond = [k for k in rows if k >= meta.num_layers]
    if beyond:
        raise CheckpointError(f"{path}: {gguf_tensor_name(max(beyond))} is beyond a {meta.num_layers}-layer model")
    dense = np.zeros((meta.num_layers, width), np.float32)
    dense[list(rows)] = np.stack(list(rows.values()))
    vset = VectorSet(dense, meta)
    check_compatible(vset, config, force=force)
    return vset


# --- lm-evaluation-harness `steered` model -------------------------------------------------------
LM_EVAL_CONVERT = """\
import json, torch
from safetensors.torch import load_file
cfg = json.load(open("{json}"))
t = load_file("{tensors}")
torch.save({{hp: {{"action": e["action"], "steering_coefficient": e["steering_coefficient"],
                  "steering_vector": t[e["tensor"]], "bias": None, "head_index": None}}
            for hp, e in cfg["hookpoints"].items()}}, "{pt}")
"""


def export_lm_eval(
    vset: VectorSet,
    path: str | os.PathLike,
    layers: Mapping[int, float] | Sequence[int] | int,
    gamma: float | None = None,
    hook_action: str = "add",
    hookpoint: str = "layers.{layer}",
) -> tuple[str, str]:
    """Write ``<path>.json`` + ``<path>.safetensors`` holding lm-eval's ``steered`` config, without pickle.

    ``lm_eval/models/hf_steered.py`` takes ``steer_path`` = ``.pt``/``.pth`` (read with torch's pickle-based loader, ``weights_only=True``,
    i.e. pickle) ``{hookpoint: {"action", "steering_vector", "steering_coefficient", "bias", "head_index"}}``,
    or ``.csv`` (vectors derived from sparsify/sae_lens SAE decoders only). jaxsteer never writes pickle:
    the JSON holds that dict with the vectors in safetensors, and its ``"convert"`` entry is a torch script
    that writes the ``.pt``. Hookpoints name HF ``model.base_model`` modules hooked on their output:
    ``layers.{l}`` for ``Gemma3ForCausalLM`` (= jaxsteer layer ``l``), ``language_model.layers.{layer}`` for
    ``Gemma3ForConditionalGeneration``. ``"clamp"`` makes the coefficient a target projection, not a γ.
    Caveats: lm-eval casts the vector to the model dtype (bf16: a small γ·v may round away), and older
    versions bound the ``add`` lambda late (every hookpoint got the last vector) — check with two layers.
    """
    if hook_action not in ("add", "clamp"):
        raise InputError(f"hook_action {hook_action!r}: lm-eval knows 'add' and 'clamp'")
    if "{layer}" not in hookpoint:
        raise InputError(f"hookpoint template {hookpoint!r} lacks '{{layer}}'")
    gammas = _layer_gammas(vset, layers, gamma)
    base = os.fspath(path)
    for suffix in (".json", ".safetensors", ".pt"):
        base = base.removesuffix(suffix)
    json_path, st_path, pt_path = base + ".json", base + ".safetensors", base + ".pt"
    tensors, hooks = {}, {}
    for layer, g in sorted(gammas.items()):
        name = hookpoint.format(layer=layer)
        tensors[name] = vset.vectors[layer]
        hooks[name] = dict(action=hook_action, steering_coefficient=g, tensor=name, bias=None, head_index=None)
    os.makedirs(os.path.dirname(os.path.abspath(st_path)), exist_ok=True)
    write_safetensors(st_path, tensors, {"format": "jaxsteer-lm-eval", "config": os.path.basename(json_path)})
    doc = {
        "format": "lm-evaluation-harness steered model config (hf_steered.py), vectors in safetensors",
        "tensors": os.path.basename(st_path),
        "hookpoints": hooks,
        "convert": LM_EVAL_CONVERT.format(json=json_path, tensors=st_path, pt=pt_path),
        "usage": f"lm_eval --model steered --model_args pretrained=<hf model>,steer_path={pt_path}",
        "layer_mapping": "layers.{l} forward-hook output = output of block l = jaxsteer layer l",
        "jaxsteer": dataclasses.asdict(vset.meta),
    }
    write_json(json_path, doc)
    return json_path, st_path
