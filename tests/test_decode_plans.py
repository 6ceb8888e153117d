"""Many steering plans in one ``generate`` call: every prompt × every plan decodes exactly as a separate
call with that plan (identical tokens), in both decode layouts, with the prefix below the first steered
layer shared; bad grids are refused in one line."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from tiny_checkpoint import left_padded_prompts

import jaxsteer
from jaxsteer.config import tiny
from jaxsteer.errors import InputError
from jaxsteer.steering.plan import Steering
from jaxsteer.steering.sweep import layer_gamma_grid, pair_grid

NEW = 6


@pytest.fixture(scope="module")
def model(model_factory):
    return model_factory(tiny(sliding_window=3), seed=4, norm_std=0.3)


@pytest.fixture(scope="module")
def prompt():
    return left_padded_prompts(3, (3, 6), high=128, padded_row=1, pad=2)


@pytest.fixture(scope="module")
def vectors(model):
    rng = np.random.RandomState(7)
    return 3.0 * rng.randn(model.config.num_layers, model.config.hidden_size).astype(np.float32)


def separate(model, ids, mask, deltas, layout, scope="all"):
    plan = Steering(vectors=jnp.asarray(deltas), gamma=jnp.ones(len(deltas)), scope=scope)
    return np.asarray(jaxsteer.generate(model, ids, NEW, mask, steering=plan, eos_token_id=-1, decode_layout=layout))


@pytest.mark.parametrize("layout", ["unrolled", "scan", "sliced"])
def test_grid_equals_separate_runs(model, prompt, vectors, layout):
    ids, mask = prompt
    grid = pair_grid(vectors, [1], [2.0], vectors, [3, 4], [0.0, 1.0, 3.0])  # first steered layer 1: shared prefix
    together = np.asarray(jaxsteer.generate(model, ids, NEW, mask, plans=grid, eos_token_id=-1, decode_layout=layout))
    assert together.shape == (len(grid.labels), len(ids), NEW)
    for g, deltas in enumerate(grid.deltas):
        np.testing.assert_array_equal(together[g], separate(model, ids, mask, deltas, layout))
    assert len({together[g].tobytes() for g in range(len(grid.labels))}) > 1  # the plans do differ


def test_gamma_sweep_axis_and_scope(model, prompt, vectors, monkeypatch):
    """A ``Steering`` with γ ``[G, L]`` is a grid; its scope applies to every plan. Scope ``generated``
    leaves the prompt unsteered: the plans share the whole prefill (one group on the last block)."""
    from jaxsteer.model import decode

    ids, mask = prompt
    gammas = np.zeros((3, model.config.num_layers), np.float32)
    gammas[:, 2] = [0.0, 1.5, 4.0]
    plan = Steering(vectors=jnp.asarray(vectors), gamma=jnp.asarray(gammas), scope="generated")
    trees, real = [], decode.generate_core
    monkeypatch.setattr(decode, "generate_core", lambda *a, **k: trees.append(k["tree"]) or real(*a, **k))
    together = np.asarray(jaxsteer.generate(model, ids, NEW, mask, steering=plan, eos_token_id=-1))
    assert [(t.start, t.layer_passes()) for t in trees] == [(model.config.num_layers - 1, 1)]
    monkeypatch.undo()
    for g in range(3):
        deltas = gammas[g][:, None] * vectors
        np.testing.assert_array_equal(together[g], separate(model, ids, mask, deltas, "auto", "generated"))
    plain = np.asarray(jaxsteer.generate(model, ids, NEW, mask, eos_token_id=-1))
    np.testing.assert_array_equal(together[0], plain)


def test_layer_zero_grid_and_lengths(model, prompt, vectors):
    """A plan at block 0 leaves nothing to share; lengths come back per plan and prompt."""
    ids, mask = prompt
    grid = layer_gamma_grid(vectors, [0, 5], [1.0])
    tokens, lengths = jaxsteer.generate(model, ids, NEW, mask, plans=grid.deltas, return_lengths=True)
    assert np.asarray(tokens).shape == (2, 3, NEW) and np.asarray(lengths).shape == (2, 3)
    for g, deltas in enumerate(grid.deltas):
        ref, ref_len = jaxsteer.generate(
            model, ids, NEW, mask, steering=Steering(jnp.asarray(deltas), jnp.ones(len(deltas))), return_lengths=True
        )
        np.testing.assert_array_equal(np.asarray(tokens)[g], np.asarray(ref))
        np.testing.assert_array_equal(np.asarray(lengths)[g], np.asarray(ref_len))


def test_bad_grids(model, prompt):
    ids, mask = prompt
    cfg = model.config
    with pytest.raises(InputError, match=r"plans have shape \(2, 3\)"):
        jaxsteer.generate(model, ids, NEW, mask, plans=np.zeros((2, 3)))
    bad = np.zeros((1, cfg.num_layers, cfg.hidden_size), np.float32)
    bad[0, 1, 0] = np.nan
    with pytest.raises(InputError, match="NaN or inf"):
        jaxsteer.generate(model, ids, NEW, mask, plans=bad)


def test_context_bound(model, prompt):
    ids, mask = prompt
    limit = model.config.max_position_embeddings
    with pytest.raises(InputError, match=f"exceeds the model's context: 6 prompt .* > {limit} positions"):
        jaxsteer.generate(model, ids, limit, mask)
    with pytest.raises(InputError, match="at most 131066 new tokens fit"):
        jaxsteer.generate(model, ids, 10**10, mask)


def test_plans_whose_cache_outgrows_the_device_decode_in_equal_chunks(model, prompt, vectors, monkeypatch):
    """With room for 2 plans' KV cache, 5 plans decode in 3 calls of 2 (the last padded): same tokens, one shape.
    The decision is read from free memory once per model and shape in a process, then kept."""
    from jaxsteer import devices
    from jaxsteer.model import decode, decode_memory

    ids, mask = prompt
    grid = layer_gamma_grid(vectors, [2], [0.0, 0.5, 1.0, 2.0, 4.0])
    whole = np.asarray(jaxsteer.generate(model, ids, NEW, mask, plans=grid, eos_token_id=-1, decode_layout="scan"))
    cfg = model.config
    per_plan = len(ids) * (ids.shape[1] + NEW) * cfg.num_layers * cfg.num_kv_heads * cfg.head_dim * 2 * 4
    monkeypatch.setattr(devices, "free_bytes", lambda device: int(2 * per_plan / 0.5) + 1)
    assert decode_memory.plans_per_call(model, len(ids), ids.shape[1] + NEW, 5, unrolled=False) == 2
    chunked = np.asarray(jaxsteer.generate(model, ids, NEW, mask, plans=grid, eos_token_id=-1, decode_layout="scan"))
    np.testing.assert_array_equal(chunked, whole)  # decided once per model and shape: still one call of 5
    monkeypatch.setattr(decode_memory, "_decided", {})  # a new process
    shapes, real = [], decode.generate_core

    def spy(*a, plans=None, **k):
        shapes.append(plans.shape)
        return real(*a, plans=plans, **k)

    monkeypatch.setattr(decode, "generate_core", spy)
    chunked = np.asarray(jaxsteer.generate(model, ids, NEW, mask, plans=grid, eos_token_id=-1, decode_layout="scan"))
    assert [s[0] for s in shapes] == [2, 2, 2]
    np.testing.assert_array_equal(chunked, whole)
    # room for 4 of 5: two balanced calls (3 + 2 padded to 3), not 4 + 1 padded to 4
    monkeypatch.setattr(devices, "free_bytes", lambda device: int(4 * per_plan / 0.5) + 1)
    assert decode_memory.plans_per_call(model, len(ids), ids.shape[1] + NEW, 5, unrolled=False) == 3
    assert (
        decode_memory.plans_per_call(model, len(ids), ids.shape[1] + NEW, 18, unrolled=False) == 4
    )  # 5 calls: 4,4,4,4,2
    monkeypatch.setattr(devices, "free_bytes", lambda device: 0)  # no room at all: still one plan per call
    assert decode_memory.plans_per_call(model, len(ids), ids.shape[1] + NEW, 5, unrolled=True) == 1


def test_plans_per_call_is_the_fewest_any_process_of_a_job_can_take(model, prompt, monkeypatch, job):
    """Each process weighs its own devices' memory; all must decode the same chunks (the same program)."""
    from jax.experimental import multihost_utils

    from jaxsteer.model import decode_memory

    ids, _ = prompt
    asked = []
    monkeypatch.setattr(multihost_utils, "process_allgather", lambda x: asked.append(int(x)) or np.array([5, 2]))
    assert decode_memory.plans_per_call(model, len(ids), ids.shape[1] + NEW, 5, unrolled=False) == 2
    assert asked == [5]  # this process (the CPU reports no memory) could take all five


def test_the_plans_budget_is_taken_before_the_unrolled_copy_exists(model, prompt, vectors, monkeypatch):
    """``plans_per_call`` subtracts the unrolled layout's weight copy from the free memory itself, so it must
    read the memory before the copy is made (after it, the copy would count twice)."""
    from jaxsteer.model import decode, decode_memory

    ids, mask = prompt
    order, budget, copy = [], decode_memory.plans_per_call, decode.split_layers
    monkeypatch.setattr(decode_memory, "_decided", {})
    monkeypatch.setattr(decode_memory, "plans_per_call", lambda *a, **k: order.append("budget") or budget(*a, **k))
    monkeypatch.setattr(decode, "split_layers", lambda *a, **k: order.append("copy") or copy(*a, **k))
    grid = layer_gamma_grid(vectors, [2], [0.0, 1.0])
    jaxsteer.generate(model, ids, NEW, mask, plans=grid, eos_token_id=-1, decode_layout="unrolled")
    assert order == ["budget", "copy"]
