"""Shared fixtures: fp32 matmuls at full precision, one left-padded batch, one HF reference checkpoint.

Fixtures are session-scoped and every test reuses the same few shapes, so each (config, shape,
steering structure) is compiled once for the whole run: jaxsteer's jit cache is process-wide.
"""

from __future__ import annotations

import importlib.util
import os
import pkgutil
import types

import jax
import jaxtyping
import numpy as np
import pytest

# Shape/dtype checks of every jaxtyping annotation in the package, with beartype: each function and
# dataclass of ``jaxsteer`` imported from here on is wrapped (``JAXSTEER_TYPECHECK=0`` switches it off).
# Inside ``jax.jit`` the checks run once, at trace time, on the tracers' shapes. The PEP 484 numeric
# tower lets an ``int`` pass for a ``float`` (``query_pre_attn_scalar=24``), as every type checker does.
# Not checked: ``jaxsteer.organism``, the synthetic world's pure-Python text generator (no array
# annotations; ~10⁶ calls and a nested function per generated sentence would triple the demo test's time).
TYPECHECKER = "beartype.beartype(conf=beartype.BeartypeConf(is_pep484_tower=True))"
UNCHECKED = ("organism",)
if os.environ.get("JAXSTEER_TYPECHECK", "1") != "0":
    _package = importlib.util.find_spec("jaxsteer")  # finds the package without importing it
    _checked = [f"jaxsteer.{m.name}" for m in pkgutil.iter_modules(_package.submodule_search_locations)]
    jaxtyping.install_import_hook([m for m in _checked if m.split(".")[1] not in UNCHECKED], TYPECHECKER)

jax.config.update("jax_default_matmul_precision", "highest")
jax.config.update("jax_enable_x64", False)

VOCAB = 128
PADS = (0, 3, 6)  # left padding per row of the shared batch
SEQ = 11


def make_batch(vocab: int = VOCAB, seq: int = SEQ, pads=PADS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Token ids [B, T] (ids ≥ 3, pad id 0) and a left-padding mask; row 2's real tokens repeat row 0's first ones."""
    rng = np.random.RandomState(seed)
    ids = rng.randint(3, vocab, size=(len(pads), seq)).astype(np.int32)
    mask = np.ones_like(ids)
    for row, pad in enumerate(pads):
        ids[row, :pad] = 0
        mask[row, :pad] = 0
    if len(pads) > 2:
        ids[2, pads[2] :] = ids[0, : seq - pads[2]]
    return ids, mask


@pytest.fixture(scope="session")
def batch() -> tuple[np.ndarray, np.ndarray]:
    return make_batch()


@pytest.fixture(scope="session")
def valid(batch) -> np.ndarray:
    return batch[1].astype(bool)


def random_model(config, seed: int = 0, norm_std: float = 0.3):
    """A random fp32 ``Model`` drawn with NumPy (std 0.02; norm weights std ``norm_std``).

    Cheaper than ``Model.random`` on CPU, whose eager ``jax.random`` calls compile one kernel per shape.
    """
    import jax.numpy as jnp

    import jaxsteer
    from jaxsteer.model.transformer import layer_shapes

    rng = np.random.RandomState(seed)

    def draw(name, shape):
        std = norm_std if name.endswith("norm") else 0.02
        return jnp.asarray((std * rng.randn(*shape)).astype(np.float32))

    d = config.hidden_size
    layers = {name: draw(name, (config.num_layers, *shape)) for name, shape in layer_shapes(config).items()}
    params = {"embed": draw("embed", (config.vocab_size, d)), "final_norm": draw("final_norm", (d,)), "layers": layers}
    return jaxsteer.Model(config=config, params=params, source=f"numpy(seed={seed})")


@pytest.fixture(scope="session")
def model_factory():
    return random_model


@pytest.fixture(scope="session")
def js_random():
    """A random jaxsteer model of the tiny config (no torch needed): GQA, window 4, global layer 5, RoPE ×8."""
    from jaxsteer.config import tiny

    return random_model(tiny(), seed=1)


@pytest.fixture(scope="session")
def hf_tiny(tmp_path_factory):
    """The HF reference (TINY_GQA, randomised norms) saved with save_pretrained and loaded by jaxsteer in fp32."""
    pytest.importorskip("torch")
    import hf_reference

    import jaxsteer

    model = hf_reference.build_model(hf_reference.TINY_GQA, seed=0)
    folder = hf_reference.save(model, tmp_path_factory.mktemp("hf") / "tiny-gqa")
    js = jaxsteer.load_pretrained(folder, dtype="float32")
    return types.SimpleNamespace(hf=model, folder=folder, js=js, fields=hf_reference.TINY_GQA)


@pytest.fixture(scope="session")
def hf_tiny_ref(hf_tiny, batch):
    """HF's unsteered outputs on the shared batch."""
    import hf_reference

    return hf_reference.run(hf_tiny.hf, *batch)


@pytest.fixture(scope="session")
def js_tiny_out(hf_tiny, batch):
    """jaxsteer's unsteered outputs (logits and hidden) on the shared batch."""
    import jaxsteer

    return jaxsteer.forward(hf_tiny.js, *batch, return_hidden=True)


@pytest.fixture
def job(monkeypatch):
    """This process as process ``job.index`` (1 unless set) of a two-process ``jax.distributed`` job, for the
    code that leaves result files to process 0; ``job.barriers`` records the names of the barriers reached."""
    from jax.experimental import multihost_utils

    state = types.SimpleNamespace(index=1, barriers=[])
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(jax, "process_index", lambda *args: state.index)
    monkeypatch.setattr(jax, "process_count", lambda *args: 2)
    monkeypatch.setattr(multihost_utils, "sync_global_devices", state.barriers.append)
    return state
