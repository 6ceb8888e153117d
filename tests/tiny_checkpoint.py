"""The session's tiny Gemma-3 checkpoint (built by :mod:`jaxsteer.fixtures`, as ``jaxsteer fixtures build``).

Test modules import the session fixtures from here (``from tiny_checkpoint import tiny_folder  # noqa: F401``).
pytest registers an imported fixture once per importing module, so the folder and the loaded model are
memoised at module level: the whole session builds exactly one checkpoint and loads it once.
"""

from __future__ import annotations

import os

import jax
import pytest

from jaxsteer.fixtures import build_tiny_folder, random_model, tiny_config

jax.config.update("jax_default_matmul_precision", "highest")

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "data")
__all__ = ["FIXTURES", "random_model", "tiny_config"]  # re-exported for the test modules

_CACHE: dict[str, object] = {}


def get_tiny_folder(tmp_path_factory) -> str:
    if "folder" not in _CACHE:
        _CACHE["folder"] = build_tiny_folder(str(tmp_path_factory.mktemp("tiny_checkpoint")), FIXTURES)
    return _CACHE["folder"]


def get_tiny_model(tmp_path_factory):
    if "model" not in _CACHE:
        import jaxsteer

        _CACHE["model"] = jaxsteer.load_pretrained(get_tiny_folder(tmp_path_factory), dtype="float32")
    return _CACHE["model"]


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory) -> str:
    """Path of the tiny checkpoint folder (config.json, model.safetensors, tokenizer files)."""
    return get_tiny_folder(tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """The tiny checkpoint loaded in fp32 (with its tokenizer)."""
    return get_tiny_model(tmp_path_factory)


def scan_eqns(jaxpr) -> list:
    """Every ``scan`` equation of a (closed) jaxpr, looking inside nested jit/pjit/cond/scan bodies."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "scan":
            found.append(eqn)
        for value in eqn.params.values():
            for sub in value if isinstance(value, (list, tuple)) else (value,):
                if hasattr(sub, "eqns") or hasattr(getattr(sub, "jaxpr", None), "eqns"):
                    found += scan_eqns(sub)
    return found


def left_padded_prompts(seed: int, shape: tuple[int, int], high: int, padded_row: int, pad: int):
    """Random token ids ``[B, T]`` in ``3 … high−1`` with row ``padded_row`` left-padded by ``pad`` (its mask 0)."""
    import numpy as np

    rng = np.random.RandomState(seed)
    ids = rng.randint(3, high, size=shape).astype(np.int32)
    mask = np.ones_like(ids)
    ids[padded_row, :pad], mask[padded_row, :pad] = 0, 0
    return ids, mask
