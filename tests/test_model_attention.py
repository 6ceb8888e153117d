"""Kernel selection and the Pallas splash kernel (run here in interpret mode) against the einsum reference.

The splash kernel is the TPU program itself; off TPU, Pallas runs it in interpret mode, which executes
the same block loop, masks and online softmax as plain XLA ops. These tests therefore check the
wrapper (layout, padding to whole blocks, segment ids for left padding, GQA grouping, the scale, the
traced local/global switch) and the kernel's arithmetic, not Mosaic's TPU code generation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_checkpoint import random_model, tiny_config

import jaxsteer
from jaxsteer.errors import ConfigError
from jaxsteer.model import attention

needs_splash = pytest.mark.skipif(attention.splash_module() is None, reason="this jax has no Pallas splash kernel")


@pytest.fixture
def backend(monkeypatch):
    """Pretend to run on another backend with a given number of devices."""

    def pretend(name: str, devices: int = 1):
        monkeypatch.setattr(jax, "default_backend", lambda: name)
        monkeypatch.setattr(jax, "device_count", lambda *a: devices)

    return pretend


def test_auto_is_xla_on_cpu():
    assert attention.resolve_impl("auto", jnp.bfloat16) == "xla"
    assert attention.resolve_impl("auto", jnp.float32) == "xla"


@pytest.mark.parametrize("impl", ["xla", "cudnn", "splash"])
def test_explicit_impl_is_kept(impl):
    assert attention.resolve_impl(impl, jnp.float32) == impl


def test_unknown_impl_names_the_choices():
    with pytest.raises(ConfigError, match="'flash'.*auto, xla, cudnn, splash"):
        attention.resolve_impl("flash", jnp.float32)


def test_auto_picks_cudnn_on_gpu_for_16_bit_only(backend):
    backend("gpu")
    assert attention.resolve_impl("auto", jnp.bfloat16) == "cudnn"
    assert attention.resolve_impl("auto", jnp.float32) == "xla"


@needs_splash
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32])
def test_auto_picks_splash_on_one_tpu(backend, dtype):
    backend("tpu")
    assert attention.resolve_impl("auto", dtype) == "splash"


def test_auto_keeps_xla_on_a_tpu_mesh_or_without_the_kernel(backend, monkeypatch):
    backend("tpu", devices=4)  # an unpartitioned Pallas call would gather the batch onto every device
    assert attention.resolve_impl("auto", jnp.bfloat16) == "xla"
    backend("tpu")
    monkeypatch.setattr(attention, "splash_module", lambda: None)
    assert attention.resolve_impl("auto", jnp.bfloat16) == "xla"


def test_splash_without_the_kernel_is_a_config_error(monkeypatch):
    monkeypatch.setattr(attention, "splash_module", lambda: None)
    q = jnp.zeros((1, 3, 2, 4))
    with pytest.raises(ConfigError, match="splash"):
        attention.self_attention(q, q, q, is_global=True, key_valid=None, config=tiny_config(16), impl="splash")


@pytest.mark.parametrize(
    ("t", "expected"), [(1, (128, 128)), (11, (128, 128)), (300, (384, 128)), (700, (768, 256)), (1024, (1024, 512))]
)
def test_splash_blocks_pad_to_the_lane_width_and_tile_it(t, expected):
    assert attention.splash_blocks(t) == expected


def test_splash_segments_put_padding_and_tail_apart():
    valid = jnp.array([[False, False, True, True], [True, True, True, True]])
    seg = np.asarray(attention.splash_segments(valid, 6))
    np.testing.assert_array_equal(seg, [[0, 0, 1, 1, 0, 0], [1, 1, 1, 1, 0, 0]])


def _qkv(b: int, t: int, heads: int, kv_heads: int, dh: int, seed: int = 0):
    ks = jax.random.split(jax.random.PRNGKey(seed), 3)
    return (
        jax.random.normal(ks[0], (b, t, heads, dh)),
        jax.random.normal(ks[1], (b, t, kv_heads, dh)),
        jax.random.normal(ks[2], (b, t, kv_heads, dh)),
    )


@needs_splash
@pytest.mark.parametrize(
    ("t", "window", "heads", "kv_heads", "pads"),
    [
        (11, 4, 4, 2, (0, 3, 10)),  # GQA, one block, a row with a single real token
        (300, 100, 2, 1, (0, 130)),  # MQA, three 128-blocks, the window and the padding cross block edges
    ],
)
def test_splash_equals_xla(t, window, heads, kv_heads, pads):
    """Global and local layers through one traced flag, left padding, T not a multiple of the block."""
    config = tiny_config(16, sliding_window=window, num_heads=heads, num_kv_heads=kv_heads, head_dim=8)
    assert config.attn_scale != config.head_dim**-0.5  # the scale is Gemma's, not 1/sqrt(head_dim)
    q, k, v = _qkv(len(pads), t, heads, kv_heads, config.head_dim)
    valid = jnp.arange(t)[None] >= jnp.asarray(pads)[:, None]

    @jax.jit
    def both(is_global):
        run = lambda impl: attention.self_attention(  # noqa: E731
            q, k, v, is_global=is_global, key_valid=valid, config=config, impl=impl
        )
        return run("xla"), run("splash")

    real = np.asarray(valid)[:, :, None, None]
    for is_global in (True, False):
        ref, got = (np.asarray(x) for x in both(jnp.bool_(is_global)))
        assert np.isfinite(got).all()  # padding query rows too (they see only themselves, then are discarded)
        np.testing.assert_allclose(np.where(real, got, 0), np.where(real, ref, 0), atol=1e-5, rtol=1e-5)
    ref_global, _ = both(jnp.bool_(True))
    ref_local, _ = both(jnp.bool_(False))
    assert not np.allclose(np.asarray(ref_global), np.asarray(ref_local))  # the window did bite


@needs_splash
def test_splash_gradients_equal_xla():
    """The kernel's own backward pass (dq and dk/dv kernels), as training on a TPU would use it."""
    config = tiny_config(16, sliding_window=4, num_heads=4, num_kv_heads=2, head_dim=8)
    q, k, v = _qkv(2, 9, 4, 2, 8, seed=1)
    valid = jnp.arange(9)[None] >= jnp.array([[0], [2]])

    def loss(q, k, v, impl):
        out = attention.self_attention(q, k, v, is_global=False, key_valid=valid, config=config, impl=impl)
        return jnp.sum(jnp.where(valid[:, :, None, None], out, 0.0) ** 2)

    grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)), static_argnums=3)
    for ref, got in zip(grads(q, k, v, "xla"), grads(q, k, v, "splash")):
        np.testing.assert_allclose(np.asarray(got), np.asarray(ref), atol=2e-5, rtol=1e-5)


@needs_splash
def test_model_forward_with_splash_equals_xla(batch, valid):
    """Through the layer scan (per-layer traced flag inside ``lax.scan``), on the shared left-padded batch."""
    model = random_model(tiny_config(128, sliding_window=4))
    ids, mask = batch
    ref = jaxsteer.forward(model, ids, mask, impl="xla").logits
    got = jaxsteer.forward(model, ids, mask, impl="splash").logits
    assert np.isfinite(np.asarray(got)).all()
    real = valid[:, :, None]
    np.testing.assert_allclose(np.where(real, got, 0), np.where(real, ref, 0), atol=1e-5, rtol=1e-5)
