"""The reference: tiny random transformers ``Gemma3ForCausalLM`` models (PyTorch, CPU, fp32, eager).

Import only from HF-dependent test modules (it imports torch). Models get *every* RMSNorm weight
randomised (input/post-attention/pre- and post-feedforward norms, q_norm, k_norm and the final norm):
HF initialises them to zero, which would let a ``w`` vs ``1 + w`` bug pass.

``run`` feeds HF explicit ``position_ids = max(cumsum(mask) - 1, 0)`` (absolute positions under left
padding, jaxsteer's convention) and optionally adds steering deltas with forward hooks on
``model.model.layers[l]``. It records every block's output *after* the hooks itself, because the
``hidden_states`` that transformers 5 returns are captured before user hooks run: with a hook on
layer ``l``, HF's ``hidden_states[l + 1]`` is the unsteered output (later entries do see the change).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import torch
from transformers import Gemma3ForCausalLM, Gemma3TextConfig

# GQA (4 heads / 2 kv), query_pre_attn_scalar 24 ≠ head_dim 16, window 4 < sequence, linear ×8 RoPE on
# global layers, 8 layers without explicit layer_types → global layer 5 only (remainder after six).
TINY_GQA = {
    "vocab_size": 128,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 8,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "query_pre_attn_scalar": 24,
    "sliding_window": 4,
    "rope_parameters": {
        "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1_000_000.0},
        "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
    },
    "max_position_embeddings": 256,
}

# MQA (4 heads / 1 kv), query_pre_attn_scalar 32 ≠ head_dim 8, window 3, explicit layer_types with
# globals off the six-pattern, legacy rope keys (no scaling), different RoPE bases.
TINY_MQA = {
    "vocab_size": 128,
    "hidden_size": 32,
    "intermediate_size": 48,
    "num_hidden_layers": 6,
    "num_attention_heads": 4,
    "num_key_value_heads": 1,
    "head_dim": 8,
    "query_pre_attn_scalar": 32,
    "sliding_window": 3,
    "layer_types": [
        "sliding_attention",
        "full_attention",
        "sliding_attention",
        "sliding_attention",
        "full_attention",
        "sliding_attention",
    ],
    "rope_theta": 500_000.0,
    "rope_local_base_freq": 20_000.0,
    "max_position_embeddings": 256,
}

_NOT_CONFIG_FIELDS = ("architectures", "model_type", "torch_dtype", "dtype", "transformers_version")


def text_config(fields: dict) -> Gemma3TextConfig:
    config = Gemma3TextConfig(**{k: v for k, v in fields.items() if k not in _NOT_CONFIG_FIELDS})
    config._attn_implementation = "eager"
    return config


def build_model(fields: dict, seed: int = 0, norm_std: float = 0.5) -> Gemma3ForCausalLM:
    """A random fp32 eager model whose every norm weight is drawn from N(0, norm_std²)."""
    torch.manual_seed(seed)
    model = Gemma3ForCausalLM(text_config(fields)).to(torch.float32).eval()
    randomised = 0
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.normal_(0.0, norm_std)
                randomised += 1
    expected = 6 * model.config.num_hidden_layers + 1  # 4 block norms + q_norm + k_norm per layer, final norm
    assert randomised == expected, f"randomised {randomised} norm weights, expected {expected}"
    return model


def save(model: Gemma3ForCausalLM, folder: str | os.PathLike, **kwargs) -> str:
    model.save_pretrained(os.fspath(folder), **kwargs)
    return os.fspath(folder)


def load(folder: str | os.PathLike) -> Gemma3ForCausalLM:
    model = Gemma3ForCausalLM.from_pretrained(os.fspath(folder), attn_implementation="eager", dtype=torch.float32)
    return model.eval()


def positions(mask: np.ndarray) -> np.ndarray:
    return np.maximum(np.cumsum(mask, axis=1) - 1, 0)


@dataclasses.dataclass
class Reference:
    logits: np.ndarray  # [B, T, V]
    hidden: np.ndarray  # [L+1, B, T, D]: [0] scaled embeddings, [l+1] output of block l after hooks
    hf_hidden: np.ndarray  # [L+1, B, T, D]: transformers' own hidden_states ([L] is after the final norm)


def run(
    model: Gemma3ForCausalLM,
    input_ids: np.ndarray,
    attention_mask: np.ndarray,
    deltas: dict[int, np.ndarray] | None = None,
    where: np.ndarray | None = None,
) -> Reference:
    """Forward with ``deltas[l]`` (γ·v, shape [D]) added to block ``l``'s output where ``where`` [B, T] is set."""
    deltas = deltas or {}
    recorded: dict[int, torch.Tensor] = {}
    where_t = None if where is None else torch.as_tensor(np.asarray(where, bool))[..., None]

    def make_hook(layer: int):
        delta = None if layer not in deltas else torch.as_tensor(np.asarray(deltas[layer], np.float32))

        def hook(module, args, output):
            hs = output[0] if isinstance(output, tuple) else output
            if delta is not None:
                add = delta if where_t is None else torch.where(where_t, delta, torch.zeros_like(delta))
                hs = hs + add
            recorded[layer + 1] = hs.detach().clone()
            return (hs, *output[1:]) if isinstance(output, tuple) else hs

        return hook

    def embed_hook(module, args, output):
        recorded[0] = output.detach().clone()

    handles = [layer.register_forward_hook(make_hook(i)) for i, layer in enumerate(model.model.layers)]
    handles.append(model.model.embed_tokens.register_forward_hook(embed_hook))
    try:
        with torch.no_grad():
            out = model(
                input_ids=torch.as_tensor(np.asarray(input_ids, np.int64)),
                attention_mask=torch.as_tensor(np.asarray(attention_mask, np.int64)),
                position_ids=torch.as_tensor(positions(np.asarray(attention_mask, np.int64))),
                output_hidden_states=True,
                use_cache=False,
            )
    finally:
        for h in handles:
            h.remove()
    n = len(model.model.layers)
    return Reference(
        logits=out.logits.float().numpy(),
        hidden=np.stack([recorded[i].float().numpy() for i in range(n + 1)]),
        hf_hidden=np.stack([h.float().numpy() for h in out.hidden_states]),
    )


def rel_err(ref, got, valid: np.ndarray | None = None) -> float:
    """max |ref − got| / max |ref| over the real (non-pad) positions ``valid`` [B, T] of ``[..., B, T, *]`` arrays."""
    ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    assert ref.shape == got.shape, (ref.shape, got.shape)
    if valid is not None:
        ref, got = _select(ref, valid), _select(got, valid)
    return float(np.abs(ref - got).max() / np.abs(ref).max())


def _select(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The ``[B, T]`` positions where ``valid`` is set, of an array ``[*lead, B, T, *rest]`` (first matching axes)."""
    valid = np.asarray(valid, bool)
    b, t = valid.shape
    for start in range(x.ndim - 1):
        if x.shape[start : start + 2] == (b, t):
            moved = np.moveaxis(x, (start, start + 1), (0, 1))
            return moved[valid]
    raise AssertionError(f"no [B={b}, T={t}] axes in shape {x.shape}")
