"""Token inputs: host arrays stay on the host until the compiled call (no copy program per batch shape)."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from compile_counter import compiles

import jaxsteer
from jaxsteer.errors import InputError
from jaxsteer.model.model import check_tokens, ones_mask


def test_host_tokens_stay_numpy_int32(js_random):
    ids, mask = check_tokens(js_random.config, np.ones((2, 5), np.int64), np.ones((2, 5), bool))
    assert isinstance(ids, np.ndarray) and isinstance(mask, np.ndarray)
    assert ids.dtype == mask.dtype == np.int32
    assert isinstance(ones_mask(ids), np.ndarray)


def test_device_tokens_stay_on_the_device(js_random):
    ids, mask = check_tokens(js_random.config, jax.numpy.ones((2, 5), jax.numpy.int32), None)
    assert isinstance(ids, jax.Array) and mask is None
    assert isinstance(ones_mask(ids), jax.Array)


@pytest.mark.parametrize("mask", [np.full((2, 5), 0.5), np.full((2, 5), 2)])
def test_a_mask_of_other_values_is_refused_before_any_cast(js_random, mask):
    with pytest.raises(InputError, match="only 0"):
        check_tokens(js_random.config, np.ones((2, 5), np.int32), mask)


def test_float_ids_are_refused(js_random):
    with pytest.raises(InputError, match="integers"):
        check_tokens(js_random.config, np.ones((2, 5), np.float32))


def test_a_new_batch_width_compiles_only_the_forward_pass(model_factory):
    """``jnp.asarray`` of a host array compiles a copy program per shape: a forward at a width never seen
    before must compile exactly one program (the forward itself), and a second call at it none. (A config of
    its own: other tests' compiles cannot be in the cache.)"""
    from jaxsteer.config import tiny

    model = model_factory(tiny(rms_norm_eps=3.5e-6), seed=5)
    ids = np.full((3, 37), 5, np.int32)
    with compiles() as n:
        jaxsteer.forward(model, ids, np.ones_like(ids), logits_at="last")
    assert n() == 1
    with compiles() as n:
        jaxsteer.forward(model, ids + 1, np.ones_like(ids), logits_at="last")
    assert n() == 0
