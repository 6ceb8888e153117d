"""One tiny Gemma-3 checkpoint folder (random fp32 weights + a BPE tokenizer trained on the fixtures).

Test modules import the session fixtures from here (``from tiny_checkpoint import tiny_folder  # noqa: F401``).
pytest registers an imported fixture once per importing module, so the folder and the loaded model are
memoised at module level: the whole session builds exactly one checkpoint and loads it once.
"""

from __future__ import annotations

import glob
import os

import jax
import numpy as np
import pytest

jax.config.update("jax_default_matmul_precision", "highest")

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "data")
NUM_LAYERS = 6
HIDDEN = 32
VOCAB = 1500

_CACHE: dict[str, object] = {}


def tiny_config(vocab_size: int, **changes):
    """The checkpoint's architecture: 6 blocks (global block 5), GQA, a 16-token window."""
    from jaxsteer.config import tiny

    fields = dict(vocab_size=vocab_size, hidden_size=HIDDEN, intermediate_size=64, num_layers=NUM_LAYERS)
    fields.update(sliding_window=16, name="tiny-fixture")
    fields.update(changes)
    return tiny(**fields)


def numpy_params(config, seed: int = 0, norm_std: float = 0.3) -> dict:
    """Random fp32 params drawn with NumPy (std 0.02, norm weights ``norm_std``): no per-shape jax.random compiles."""
    import jax.numpy as jnp

    from jaxsteer.model.transformer import layer_shapes

    rng = np.random.RandomState(seed)

    def draw(name, shape):
        std = norm_std if name.endswith("norm") else 0.02
        return jnp.asarray((std * rng.randn(*shape)).astype(np.float32))

    layers = {name: draw(name, (config.num_layers, *shape)) for name, shape in layer_shapes(config).items()}
    return {
        "embed": draw("embed", (config.vocab_size, config.hidden_size)),
        "final_norm": draw("final_norm", (config.hidden_size,)),
        "layers": layers,
    }


def random_model(config, seed: int = 0, norm_std: float = 0.3, tokenizer=None):
    import jaxsteer

    return jaxsteer.Model(config=config, params=numpy_params(config, seed, norm_std), tokenizer=tokenizer)


def fixture_texts() -> list[str]:
    paths = sorted(glob.glob(os.path.join(FIXTURES, "**", "*.*"), recursive=True))
    return [open(p, encoding="utf-8").read() for p in paths]


def build_tiny_folder(root: str) -> str:
    """Train the tokenizer, draw the weights, ``save_pretrained`` → ``{root}/tiny`` (with tokenizer files)."""
    import jaxsteer
    from jaxsteer.tokens import train_bpe_tokenizer

    tok = train_bpe_tokenizer(fixture_texts(), os.path.join(root, "tokenizer"), VOCAB)
    model = random_model(tiny_config(len(tok)), seed=0, tokenizer=tok)
    return jaxsteer.save_pretrained(model, os.path.join(root, "tiny"), overwrite=True)


def get_tiny_folder(tmp_path_factory) -> str:
    if "folder" not in _CACHE:
        _CACHE["folder"] = build_tiny_folder(str(tmp_path_factory.mktemp("tiny_checkpoint")))
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
