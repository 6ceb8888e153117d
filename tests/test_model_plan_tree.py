"""The prefix tree of a grid of steering plans: segments spelled out for the selection grid of surgical
steering, identical plans merged, and running the tree equals running every plan on its own (fp32)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_checkpoint import left_padded_prompts, random_model, scan_eqns

from jaxsteer.config import tiny
from jaxsteer.model.plan_tree import Segment, chunked_plans, plan_tree, run_plan_tree, unshared_tree
from jaxsteer.model.transformer import default_positions, prepare, run_layers

jax.config.update("jax_default_matmul_precision", "highest")

CFG = tiny()  # 8 blocks
L, D = CFG.num_layers, CFG.hidden_size
EN, LOC = 2, 5


def selection_grid(seed: int = 0) -> np.ndarray:
    """LOC-only γ ∈ {0, 1, 2} at block 5, then the same with EN (γ 2) at block 2 — SUR's candidates."""
    rng = np.random.RandomState(seed)
    v_en, v_loc = rng.randn(D).astype(np.float32), rng.randn(D).astype(np.float32)
    plans = np.zeros((6, L, D), np.float32)
    for i, gamma in enumerate((0.0, 1.0, 2.0)):
        plans[i, LOC] = plans[3 + i, LOC] = gamma * v_loc
        plans[3 + i, EN] = 2.0 * v_en
    return plans


def test_the_selection_grid_runs_two_groups_between_the_en_and_loc_blocks():
    tree = plan_tree(selection_grid(), EN)
    assert tree.segments == (
        Segment(EN, LOC, groups=(0, 0, 0, 1, 1, 1), parents=(0, 0)),
        Segment(LOC, L, groups=(0, 1, 2, 3, 4, 5), parents=(0, 0, 0, 1, 1, 1)),
    )
    assert tree.segments[0].representatives == (0, 3)
    assert tree.layer_passes() == 2 * (LOC - EN) + 6 * (L - LOC) < 6 * (L - EN)


def test_identical_plans_run_once_and_groups_number_by_first_appearance():
    plans = selection_grid()
    grid = np.stack([plans[4], plans[0], plans[4], plans[0]])  # SUR γ 1, plain, SUR γ 1, plain
    tree = plan_tree(grid, 0)
    assert tree.segments == (
        Segment(0, EN, groups=(0, 0, 0, 0), parents=(0,)),
        Segment(EN, L, groups=(0, 1, 0, 1), parents=(0, 0)),
    )
    assert unshared_tree(4, EN, L).layer_passes() == 4 * (L - EN)


def test_plans_that_differ_below_the_start_are_refused():
    with pytest.raises(ValueError, match="differ below block 3"):
        plan_tree(selection_grid(), 3)
    with pytest.raises(ValueError, match="outside"):
        plan_tree(selection_grid(), L)


def test_chunks_share_a_tree_only_when_every_chunk_has_the_same_one():
    plans = selection_grid()
    same = chunked_plans(np.concatenate([plans[:3], plans[:3]]), 3, EN)  # two identical chunks
    assert [keep for _, _, keep in same] == [3, 3] and same[0][1] == same[1][1] == plan_tree(plans[:3], EN)
    mixed = chunked_plans(plans, 4, EN)  # [4 plans | 2 plans + 2 zero fillers]: different trees
    assert [keep for _, _, keep in mixed] == [4, 2]
    assert all(tree == unshared_tree(4, EN, L) for _, tree, _ in mixed)
    np.testing.assert_array_equal(mixed[1][0][:2], plans[4:])
    np.testing.assert_array_equal(mixed[1][0][2:], 0)


@pytest.fixture(scope="module")
def model():
    return random_model(CFG, seed=5, norm_std=0.3)


@pytest.fixture(scope="module")
def prompts():
    ids, mask = left_padded_prompts(2, (3, 7), high=100, padded_row=2, pad=3)
    return jnp.asarray(ids), jnp.asarray(mask)


def run_tree(model, ids, mask, plans, tree):
    h, ctx = prepare(model.params, ids, mask, config=CFG, steer_mask=jnp.ones(ids.shape, bool))
    kv = lambda h, kv: kv  # noqa: E731
    h, _ = run_layers(model.params["layers"], h, ctx, config=CFG, stop=tree.start)
    return run_plan_tree(
        model.params["layers"], h, tree, jnp.asarray(plans), positions=default_positions(mask, ids.shape),
        attention_mask=mask, steer_mask=jnp.ones(ids.shape, bool), config=CFG, collect=kv,
    )  # fmt: skip


def test_running_the_tree_equals_every_plan_alone(model, prompts):
    ids, mask = prompts
    plans = selection_grid(seed=1)
    plans = np.concatenate([plans, plans[4:5]])  # a duplicate too
    tree = plan_tree(plans, EN)
    out, kept = run_tree(model, ids, mask, plans, tree)
    b = len(ids)
    assert out.shape == (len(plans) * b, 7, D) and [k[0].shape[:2] for k in kept] == [
        (LOC - EN, len(plans) * b),
        (L - LOC, len(plans) * b),
    ]
    keys = jnp.concatenate([k[0] for k in kept])  # blocks EN … L−1 on every plan row
    for g, deltas in enumerate(plans):
        h, ctx = prepare(model.params, ids, mask, config=CFG, steer_mask=jnp.ones(ids.shape, bool))
        alone, own = run_layers(
            model.params["layers"], h, ctx, config=CFG, deltas=jnp.asarray(deltas)[:, None], collect=lambda h, kv: kv
        )
        rows = np.arange(b) * len(plans) + g  # prompt-major: row b·G + g is prompt b under plan g
        np.testing.assert_allclose(out[rows], alone, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(keys[:, rows], own[0][EN:], rtol=1e-5, atol=1e-5)
    assert not np.allclose(out[:: len(plans)], out[3 :: len(plans)])  # EN does change the residual stream


def test_each_segment_scans_its_blocks_on_one_row_block_per_group(model, prompts):
    ids, mask = prompts
    plans = selection_grid()
    tree = plan_tree(plans, EN)
    jaxpr = jax.make_jaxpr(lambda p: run_tree(model, ids, mask, p, tree))(jnp.asarray(plans))
    scans = scan_eqns(jaxpr.jaxpr)
    b = len(ids)
    assert [(e.params["length"], e.outvars[0].aval.shape[0]) for e in scans] == [
        (EN, b),  # the shared prefix
        (LOC - EN, 2 * b),  # LOC-only and SUR rows
        (L - LOC, 6 * b),  # every plan
    ]


def test_a_segment_reads_its_layers_from_the_whole_stack_without_copying_them():
    """A scan over blocks 2…7 reads each layer by index from the stack (inference); slicing ``[2:8]`` first
    held a copy of those layers' weights — what a plan-tree prefill paid per segment. ``differentiable=True``
    (training) keeps the slice, whose gradient is a pad rather than a full-size sum every step."""
    from jaxsteer.model.transformer import init_params, make_context

    cfg = tiny(hidden_size=128, intermediate_size=512, head_dim=32)
    layers = jax.eval_shape(lambda: init_params(cfg, jax.random.PRNGKey(0)))["layers"]
    h = jax.ShapeDtypeStruct((1, 4, cfg.hidden_size), jnp.float32)

    def temp_bytes(differentiable):
        def run(layers, h):
            ctx = make_context(cfg, jnp.broadcast_to(jnp.arange(4), (1, 4)), None, None)
            return run_layers(layers, h, ctx, config=cfg, start=2, differentiable=differentiable)[0]

        return jax.jit(run).lower(layers, h).compile().memory_analysis().temp_size_in_bytes

    layer = sum(np.prod(a.shape[1:]) * 4 for a in jax.tree.leaves(layers))  # one layer's weights, fp32
    # by index: at most the step's own layer (a CPU copies a dynamic slice); sliced: all six at once
    assert temp_bytes(False) < 1.5 * layer and temp_bytes(True) >= 6 * layer
