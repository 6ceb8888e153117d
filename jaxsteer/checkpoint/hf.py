"""Hugging Face Gemma-3 safetensors folders ⇄ jaxsteer params.

Loading streams one tensor at a time into preallocated stacked arrays of the target dtype, so peak
host memory stays near one copy of the model; each stacked array is then placed on its device (or
sharding) and the host copy dropped. Weights keep the checkpoint's ``[out, in]`` layout, so no
transpose is ever materialised. Only safetensors are read; pickled ``.bin`` files are refused.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

from jaxsteer.checkpoint.safetensors_io import SafetensorsFile, write_safetensors
from jaxsteer.config import GemmaConfig, check_decode_layout
from jaxsteer.errors import CheckpointError, ConfigError, OfflineError
from jaxsteer.model.family import family_of
from jaxsteer.model.gemma3 import GEMMA3
from jaxsteer.model.model import Model, resolve_dtype
from jaxsteer.results import commit, temp_dir

PREFIXES = ("model.language_model.", "language_model.model.", "model.")
DROPPED = ("vision_tower.", "multi_modal_projector.", "model.vision_tower.", "model.multi_modal_projector.")
FLOAT_DTYPES = ("BF16", "F16", "F32", "F64")
_LAYER = re.compile(r"layers\.(\d+)\.(.+)\.weight$")
_HF_LAYER_NAMES = GEMMA3.hf_layer_names  # the one family with an HF loader today (jaxsteer.model.family)
_JS_LAYER_NAMES = {v: k for k, v in _HF_LAYER_NAMES.items()}


def resolve_folder(path_or_hub_id: str | os.PathLike) -> str:
    """A local folder, or a hub snapshot when the id is not a path and the hub is reachable."""
    source = os.fspath(path_or_hub_id)
    if os.path.isdir(source):
        return source
    if os.path.exists(source):
        raise CheckpointError(f"{source} is a file; pass the checkpoint folder that holds config.json")
    if source.count("/") != 1 or source.startswith((".", "/")):
        raise CheckpointError(f"no checkpoint folder at {source}")
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(source, allow_patterns=["*.json", "*.safetensors", "tokenizer*", "*.model"])
    except Exception as e:  # offline, gated, or unknown id: all one line for the user
        raise _unfetchable(source, e) from None


def fetch_hub_config(hub_id: str) -> str:
    """The folder holding a hub checkpoint's ``config.json``, fetched alone (or found in the cache): enough to
    check a model's architecture before hours of work, without downloading its weights yet."""
    try:
        from huggingface_hub import hf_hub_download

        return os.path.dirname(hf_hub_download(hub_id, "config.json"))
    except Exception as e:
        raise _unfetchable(hub_id, e) from None


def _unfetchable(source: str, e: Exception) -> OfflineError:
    hint = ""
    if os.path.isdir(source.split("/", 1)[0]):  # "runs/tiny-mst" mistyped reads as a hub id: say so
        hint = f" (if {source!r} was meant as a local path: no such folder)"
    return OfflineError(
        f"cannot fetch {source!r} from the Hugging Face hub ({type(e).__name__}); "
        f"pass a local checkpoint folder instead{hint}"
    )


def check_weight_files(folder: str) -> list[str]:
    """:func:`weight_files` with every file's safetensors header read: a missing, truncated or foreign file is
    one ``CheckpointError`` now, before work that would come first (a tokenizer trained into a run folder)."""
    files = weight_files(folder)
    for path in files:
        with SafetensorsFile(path):
            pass
    return files


def weight_files(folder: str) -> list[str]:
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.isfile(index):
        try:
            with open(index, encoding="utf-8") as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError) as e:
            raise CheckpointError(f"cannot read {index}: {e}") from None
        missing = [s for s in shards if not os.path.isfile(os.path.join(folder, s))]
        if missing:
            raise CheckpointError(f"{folder} lacks shard(s) named in its index: {', '.join(missing[:3])}")
        return [os.path.join(folder, s) for s in shards]
    files = sorted(f for f in os.listdir(folder) if f.endswith(".safetensors"))
    if not files:
        pickled = [f for f in os.listdir(folder) if f.endswith((".bin", ".pt", ".pth", ".ckpt"))]
        hint = f" (found {pickled[0]}: only safetensors are loaded, never pickle)" if pickled else ""
        raise CheckpointError(f"no .safetensors weights in {folder}{hint}")
    return [os.path.join(folder, f) for f in files]


def _target_name(name: str) -> tuple[str, int | None] | None:
    """Map an HF tensor name to (param name, layer) or None for weights we drop."""
    if name.startswith(DROPPED) or name.startswith("lm_head"):
        return None
    for prefix in PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    if name == "embed_tokens.weight":
        return "embed", None
    if name == "norm.weight":
        return "final_norm", None
    m = _LAYER.match(name)
    if m and m.group(2) in _HF_LAYER_NAMES:
        return _HF_LAYER_NAMES[m.group(2)], int(m.group(1))
    return None


def load_params(
    folder: str,
    config: GemmaConfig,
    dtype=jnp.bfloat16,
    vocab_rows: int | None = None,
    sharding: Callable[[str, tuple[int, ...]], jax.sharding.Sharding] | None = None,
) -> dict:
    """Read every tensor of a Gemma-3 checkpoint into the stacked params pytree.

    ``vocab_rows`` keeps only the first rows of the embedding (e.g. 262144 drops the 64 image-token
    rows of multimodal checkpoints); ``sharding(name, shape)`` places each array (e.g. on a mesh). Each
    device's shard is read straight from the memory-mapped files (``jax.make_array_from_callback``), so
    the host holds at most one shard of one stacked parameter at a time, never the model.
    """
    np_dtype = np.dtype(ml_dtypes.bfloat16) if jnp.dtype(dtype) == jnp.bfloat16 else np.dtype(np.float32)
    rows = config.vocab_size if vocab_rows is None else int(vocab_rows)
    expected = {"embed": (config.vocab_size, config.hidden_size), "final_norm": (config.hidden_size,)}
    shapes = family_of(config).layer_shapes(config)
    files = [SafetensorsFile(path) for path in weight_files(folder)]
    try:
        where: dict[tuple[str, int | None], tuple[SafetensorsFile, str]] = {}
        for f in files:
            for name in f.names():
                target = _target_name(name)
                if target is None:
                    continue
                key, layer = target
                if layer is not None and layer >= config.num_layers:
                    raise CheckpointError(f"tensor {name} is for layer {layer} of a {config.num_layers}-layer config")
                want = expected[key] if layer is None else shapes[key]
                if f.shape(name) != want:
                    raise CheckpointError(f"tensor {name} has shape {f.shape(name)}, expected {want} from config.json")
                if f.dtype_name(name) not in FLOAT_DTYPES:  # int8/int4 quantized weights would load as numbers
                    raise CheckpointError(
                        f"tensor {name} is {f.dtype_name(name)}, not floating point (a quantized checkpoint?); "
                        f"jaxsteer loads {', '.join(FLOAT_DTYPES)} weights"
                    )
                where[target] = (f, name)
        needed = {("embed", None), ("final_norm", None)}
        needed |= {(k, i) for k in shapes for i in range(config.num_layers)}
        missing = sorted(needed - set(where), key=lambda t: (t[1] or -1, t[0]))
        if missing:
            names = [hf_name(k, i) for k, i in missing[:3]]
            raise CheckpointError(f"{folder} is missing {len(missing)} tensor(s), e.g. {', '.join(names)}")

        def tensor(key: str, layer: int | None) -> np.ndarray:
            f, name = where[(key, layer)]
            return f.get(name)  # a view of the mapped file: nothing is read until it is sliced

        def block(key: str, index: tuple) -> np.ndarray:
            """The part ``index`` of the stacked array ``key``, in the target dtype."""
            if key == "embed":
                return np.asarray(tensor(key, None)[:rows][index], np_dtype)
            if key == "final_norm":
                return np.asarray(tensor(key, None)[index], np_dtype)
            layers = range(*index[0].indices(config.num_layers))
            return np.stack([np.asarray(tensor(key, i)[index[1:]], np_dtype) for i in layers])

        def place(key: str, shape: tuple[int, ...]):
            where_to = sharding(key, shape) if sharding else jax.sharding.SingleDeviceSharding(jax.devices()[0])
            return jax.make_array_from_callback(shape, where_to, lambda index: block(key, index))

        return {
            "embed": place("embed", (rows, config.hidden_size)),
            "final_norm": place("final_norm", expected["final_norm"]),
            "layers": {k: place(k, (config.num_layers, *s)) for k, s in shapes.items()},
        }
    finally:
        for f in files:
            f.close()


def hf_name(key: str, layer: int | None, prefix: str = "model.") -> str:
    if key == "embed":
        return f"{prefix}embed_tokens.weight"
    if key == "final_norm":
        return f"{prefix}norm.weight"
    return f"{prefix}layers.{layer}.{_JS_LAYER_NAMES[key]}.weight"


def load_tokenizer(folder: str):
    """The checkpoint's tokenizer when it ships one (never with remote code)."""
    if not any(os.path.isfile(os.path.join(folder, f)) for f in ("tokenizer.json", "tokenizer.model")):
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    except Exception as e:  # noqa: BLE001 — transformers/tokenizers raise anything from KeyError to bare Exception
        first = (str(e).strip().splitlines() or [""])[0][:160]
        raise CheckpointError(
            f"{folder}: its tokenizer files cannot be read ({type(e).__name__}{': ' + first if first else ''})"
        ) from None


def load_pretrained(
    path_or_hub_id: str | os.PathLike,
    dtype="bfloat16",
    vocab_rows: int | None = None,
    sharding: Callable | None = None,
    tokenizer: bool = True,
    mesh=None,
    batch_size: int | None = None,
    decode_layout: str = "auto",
) -> Model:
    """Load a Gemma-3 (text or multimodal) checkpoint from a folder or hub id into a ``Model``.

    ``mesh`` (a ``jaxsteer.sharding.MeshSpec`` or a ``jax.sharding.Mesh``) shards the weights by the
    inference partition rules as they stream in; the mesh is checked against the devices, the heads,
    ``batch_size`` and the devices' memory first, before any weight is read. ``decode_layout``: how the
    model's generations decode (:class:`~jaxsteer.model.model.Model`).
    """
    from jaxsteer import sharding as mesh_lib

    check_decode_layout(decode_layout)  # before any weight is read

    target = resolve_dtype(dtype)
    folder = resolve_folder(path_or_hub_id)
    config = GemmaConfig.from_hf(folder)
    if vocab_rows is not None and not 0 < vocab_rows <= config.vocab_size:
        raise ConfigError(f"vocab_rows={vocab_rows} must be in 1..{config.vocab_size}")
    on = None
    if mesh is not None:
        spec = mesh if isinstance(mesh, mesh_lib.MeshSpec) else None
        if spec is not None:
            mesh_lib.initialize(spec)
            mesh_lib.check_inference_mesh(spec, config, jnp.dtype(target).itemsize, batch_size)
        on = mesh_lib.inference_mesh(mesh)
        sharding = sharding or mesh_lib.inference_sharding(on)
    tok = load_tokenizer(folder) if tokenizer else None  # a broken tokenizer is found before minutes of weights
    params = load_params(folder, config, target, vocab_rows, sharding)
    if vocab_rows is not None:
        config = config.replace(vocab_size=int(vocab_rows))
    return Model(
        config=config,
        params=params,
        tokenizer=tok,
        source=os.fspath(path_or_hub_id),
        mesh=on,
        decode_layout=decode_layout,
    )


# Keys whose value is the function of the saved weights: always jaxsteer's (they describe the arrays
# written, e.g. a vocabulary trimmed by ``vocab_rows``). Every other key of the source config is kept.
ARCH_KEYS = (
    "architectures", "model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
    "num_attention_heads", "num_key_value_heads", "head_dim", "query_pre_attn_scalar", "sliding_window",
    "layer_types", "rope_parameters", "rms_norm_eps", "hidden_activation", "tie_word_embeddings",
    "attention_bias", "final_logit_softcapping", "attn_logit_softcapping", "torch_dtype", "dtype",
)  # fmt: skip
# Legacy spellings of what ``rope_parameters``/``layer_types`` now say (two sources of truth would
# let transformers pick either), and remote-code hooks jaxsteer never writes.
DROPPED_KEYS = (
    "rope_theta", "rope_local_base_freq", "rope_scaling", "sliding_window_pattern", "_sliding_window_pattern",
    "auto_map", "_name_or_path", "text_config", "vision_config",
)  # fmt: skip
# Files a client needs besides the weights: every tokenizer file (llama.cpp's Gemma-3 converter reads
# the SentencePiece ``tokenizer.model``; transformers 5 writes only ``tokenizer.json``), the chat
# template and the generation defaults.
TOKENIZER_PATTERNS = (
    "tokenizer*", "special_tokens_map.json", "added_tokens.json", "chat_template*", "*.model", "vocab.json",
    "vocab.txt", "merges.txt", "generation_config.json",
)  # fmt: skip


def source_files(folder: str | os.PathLike) -> list[str]:
    """The tokenizer (and generation) files of a checkpoint folder that ``save_pretrained`` carries over."""
    import fnmatch

    folder = os.fspath(folder)
    names = sorted(n for n in os.listdir(folder) if os.path.isfile(os.path.join(folder, n)))
    return [n for n in names if any(fnmatch.fnmatch(n, p) for p in TOKENIZER_PATTERNS)]


def merged_hf_config(config: GemmaConfig, source: str | os.PathLike | None) -> dict:
    """``config.to_hf_dict()`` with every non-architecture value of ``source``'s config.json kept.

    ``max_position_embeddings`` (1B: 32768), the ``eos_token_id`` list, ``use_cache``, ... come from the
    source; the keys of :data:`ARCH_KEYS` always describe the weights being written. A multimodal source
    contributes its ``text_config``. The result must parse back to ``config`` (else ``CheckpointError``).
    """
    ours = config.to_hf_dict()
    if source is None or not os.path.isfile(os.path.join(os.fspath(source), "config.json")):
        return ours
    path = os.path.join(os.fspath(source), "config.json")
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: cannot read the source config ({e})") from None
    text = dict(raw.get("text_config") or raw) if isinstance(raw, dict) else {}
    merged = {k: v for k, v in text.items() if k not in DROPPED_KEYS and k not in ARCH_KEYS}
    merged.update({k: v for k, v in ours.items() if k in ARCH_KEYS or k not in merged})
    back = GemmaConfig.from_hf(merged)
    if back != config:
        diff = [f.name for f in dataclasses.fields(GemmaConfig) if getattr(back, f.name) != getattr(config, f.name)]
        raise CheckpointError(f"{path} disagrees with the model being saved on {', '.join(diff)}")
    return merged


def save_pretrained(
    model: Model,
    folder: str | os.PathLike,
    dtype=None,
    overwrite: bool = False,
    source: str | os.PathLike | None = None,
    tokenizer_source: str | os.PathLike | None = None,
    copy_tokenizer: bool = True,
) -> str:
    """Write an HF-compatible ``Gemma3ForCausalLM`` folder: config.json, model.safetensors, tokenizer files.

    ``source`` (default: ``model.source`` when it is a local folder) is the checkpoint the model came
    from: its config values other than the architecture are kept (:func:`merged_hf_config`) and its
    tokenizer files are copied byte for byte (:data:`TOKENIZER_PATTERNS`), from ``tokenizer_source``
    when given (a CLA run with its own tokenizer). Without such files, or with ``copy_tokenizer=False``
    (the model's tokenizer is not the source's), the model's tokenizer is saved with
    ``tokenizer.save_pretrained``. The folder appears whole or not at all: it is written beside the
    target and renamed into place.
    """
    folder = os.fspath(folder)
    if os.path.exists(folder) and not overwrite:
        raise CheckpointError(f"{folder} already exists (pass overwrite=True to replace it)")
    if source is None and model.source and os.path.isdir(model.source):
        source = model.source
    for name, given in (("source", source), ("tokenizer_source", tokenizer_source)):
        if given is not None and not os.path.isdir(os.fspath(given)):
            raise CheckpointError(f"{name} {os.fspath(given)!r} is not a folder")
    tok_folder = tokenizer_source if tokenizer_source is not None else source
    copied = source_files(tok_folder) if tok_folder is not None and copy_tokenizer else []  # read before rmtree
    parent = os.path.dirname(os.path.abspath(folder))
    os.makedirs(parent, exist_ok=True)
    out_dtype = model.dtype if dtype is None else resolve_dtype(dtype)
    np_dtype = np.dtype(ml_dtypes.bfloat16) if jnp.dtype(out_dtype) == jnp.bfloat16 else np.dtype(np.float32)
    hf_config = merged_hf_config(model.config, source)
    hf_config["torch_dtype"] = "bfloat16" if np_dtype != np.float32 else "float32"
    tmp = temp_dir(parent)
    try:
        tensors = {hf_name("embed", None): np.asarray(model.params["embed"]).astype(np_dtype)}
        tensors[hf_name("final_norm", None)] = np.asarray(model.params["final_norm"]).astype(np_dtype)
        for key, stacked in model.params["layers"].items():
            host = np.asarray(stacked).astype(np_dtype)
            for i in range(model.config.num_layers):
                tensors[hf_name(key, i)] = host[i]
        write_safetensors(os.path.join(tmp, "model.safetensors"), tensors, {"format": "pt"})
        with open(os.path.join(tmp, "config.json"), "w", encoding="utf-8") as f:
            json.dump(hf_config, f, indent=2)
        for name in copied:
            shutil.copy2(os.path.join(os.fspath(tok_folder), name), os.path.join(tmp, name))
        if not any(n.startswith("tokenizer") for n in copied) and model.tokenizer is not None:
            model.tokenizer.save_pretrained(tmp)
        if os.path.exists(folder):
            shutil.rmtree(folder)
        commit(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder
