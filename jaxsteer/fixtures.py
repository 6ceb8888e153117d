"""The tiny Gemma-3 checkpoint of the test fixtures: random fp32 weights and a BPE tokenizer trained on
the fixture texts, written as an HF folder that every command loads (``jaxsteer fixtures build DIR``).

It needs only the runtime install: the weights are drawn with NumPy (no torch, no per-shape
``jax.random`` compiles) and saved by :func:`jaxsteer.save_pretrained`. The test suite builds the same
folder through ``tests/tiny_checkpoint.py``, so the README's offline run and the tests use one model.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np

from jaxsteer.errors import DataError

# The repository's fixture data (tests/fixtures/data), found from the package in a clone or an editable
# install; an installed wheel has no tests/ folder, so the data folder is then passed explicitly.
FIXTURE_DATA = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "data"
NUM_LAYERS = 6
HIDDEN = 32
VOCAB = 1500


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
    from jaxsteer.model.model import Model

    return Model(config=config, params=numpy_params(config, seed, norm_std), tokenizer=tokenizer)


def fixture_texts(data: str | os.PathLike = FIXTURE_DATA) -> list[str]:
    """Every file under ``data`` (sorted paths), the tokenizer's training texts."""
    paths = sorted(glob.glob(os.path.join(data, "**", "*.*"), recursive=True))
    if not paths:
        raise DataError(
            f"no fixture data in {data}: pass the repository's tests/fixtures/data folder (--data in the CLI)"
        )
    texts = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            texts.append(f.read())
    return texts


def build_tiny_folder(root: str | os.PathLike, data: str | os.PathLike = FIXTURE_DATA) -> str:
    """Train the tokenizer (``{root}/tokenizer``), draw the weights, ``save_pretrained`` → ``{root}/tiny``."""
    from jaxsteer.checkpoint.hf import save_pretrained
    from jaxsteer.results import write_json
    from jaxsteer.tokens import train_bpe_tokenizer

    root = os.fspath(root)
    tok = train_bpe_tokenizer(fixture_texts(data), os.path.join(root, "tokenizer"), VOCAB)
    model = random_model(tiny_config(len(tok)), seed=0, tokenizer=tok)
    folder = save_pretrained(model, os.path.join(root, "tiny"), overwrite=True)
    write_json(os.path.join(root, MARKER), {"built_by": "jaxsteer fixtures build", "data": os.fspath(data)})
    return folder


MARKER = "fixtures.json"
"""Written beside ``tiny/`` and ``tokenizer/`` by :func:`build_tiny_folder`: a folder holding it may be rebuilt."""


def fixture_outputs_in_the_way(root: str | os.PathLike) -> list[str]:
    """``tiny``/``tokenizer`` under ``root`` that a fixtures build would replace but did not write (a training
    run's tokenizer, a model): a rebuild of an earlier build is fine, anything else is not ours to replace."""
    root = os.fspath(root)
    if os.path.isfile(os.path.join(root, MARKER)):
        return []
    return [name for name in ("tiny", "tokenizer") if os.path.lexists(os.path.join(root, name))]
