"""The shared-prefix sweep equals one ``forward`` per grid point, and really shares the prefix.

Separate runs use the public API (``Steering.from_layers`` + ``forward``); the sweep runs blocks
``0 … s−1`` once and blocks ``s … L−1`` on ``C·B`` rows per chunk. Values must agree to 1e-6 relative
on a left-padded batch, for chunk sizes that do and do not divide the grid.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_checkpoint import random_model, scan_eqns

import jaxsteer
from jaxsteer.config import tiny
from jaxsteer.errors import InputError
from jaxsteer.model.attention import resolve_impl
from jaxsteer.model.plan_tree import unshared_tree
from jaxsteer.scoring import option_logprob_fn
from jaxsteer.steering import sweep
from jaxsteer.steering.sweep import Grid, layer_gamma_grid, layer_passes, pair_grid, run_grid

jax.config.update("jax_default_matmul_precision", "highest")

CFG = tiny()  # 8 blocks, window 4, global block 5
L, D = CFG.num_layers, CFG.hidden_size
PADS = (0, 3, 6)
T = 11
RTOL = 1e-6


@pytest.fixture(scope="module")
def model():
    return random_model(CFG, seed=3)


@pytest.fixture(scope="module")
def batch():
    rng = np.random.RandomState(0)
    ids = rng.randint(3, CFG.vocab_size, size=(len(PADS), T)).astype(np.int32)
    mask = np.ones_like(ids)
    for row, pad in enumerate(PADS):
        ids[row, :pad] = 0
        mask[row, :pad] = 0
    return ids, mask


def vectors(seed) -> np.ndarray:
    return (0.5 * np.random.RandomState(seed).randn(L, D)).astype(np.float32)


def last_logits(logits):
    """Score function: the logits themselves, ``[C, B, V]`` (a module-level object: one compiled tail)."""
    return logits


def separate(model, batch, plan_layers: dict[int, np.ndarray], gammas: dict[int, float]) -> np.ndarray:
    """One plain ``forward`` with ``Steering.from_layers``: logits at each row's last real token."""
    plan = jaxsteer.Steering.from_layers(CFG, plan_layers, gamma=gammas)
    return np.asarray(jaxsteer.forward(model, *batch, steering=plan, logits_at="last").logits, np.float64)


def rel_err(got, ref) -> float:
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    return float(np.max(np.abs(got - ref)) / np.max(np.abs(ref)))


@pytest.fixture(scope="module")
def plain(model, batch):
    return np.asarray(jaxsteer.forward(model, *batch, logits_at="last").logits, np.float64)


# --- equality with separate runs --------------------------------------------------------------------
@pytest.mark.parametrize("chunk", [4, 9])  # 4 does not divide the 9 grid points (the last chunk has filler)
def test_layer_gamma_grid_equals_separate_runs(model, batch, plain, chunk):
    v = vectors(1)
    grid = layer_gamma_grid(v, [2, 5, 7], [0.0, 1.5, -2.0])
    assert len(grid.labels) == 9 and grid.first_steered_layer == 2
    got = run_grid(model, *batch, grid, last_logits, chunk_size=chunk, progress=False)
    assert got.shape == (9, len(PADS), CFG.vocab_size)
    for point, lab in enumerate(grid.labels):
        ref = separate(model, batch, {lab["layer"]: v[lab["layer"]]}, {lab["layer"]: lab["gamma"]})
        assert rel_err(got[point], ref) <= RTOL, lab
        if lab["gamma"] != 0:  # the comparison is not vacuous: steering moved the logits
            assert rel_err(ref, plain) > 1e-3, lab
        else:
            assert rel_err(got[point], plain) <= RTOL, lab


def test_pair_grid_equals_separate_runs(model, batch):
    v1, v2 = vectors(2), vectors(3)
    grid = pair_grid(v1, [1, 4], [1.0, -1.0], v2, [4, 6], [0.5, 2.0])
    assert len(grid.labels) == 16 and grid.first_steered_layer == 1
    got = run_grid(model, *batch, grid, last_logits, chunk_size=5, progress=False)  # 5 + 5 + 5 + 1
    for point, lab in enumerate(grid.labels):
        l1, g1, l2, g2 = lab["layer1"], lab["gamma1"], lab["layer2"], lab["gamma2"]
        if l1 != l2:
            ref = separate(model, batch, {l1: v1[l1], l2: v2[l2]}, {l1: g1, l2: g2})
        else:  # both vectors at one block: their deltas add up
            ref = separate(model, batch, {l1: np.float32(g1) * v1[l1] + np.float32(g2) * v2[l2]}, {l1: 1.0})
        assert rel_err(got[point], ref) <= RTOL, lab


def test_option_logprob_score_fn_equals_separate_runs(model, batch):
    """The ready-made multiple-choice score (log-softmax picked at option ids) inside the compiled tail."""
    v = vectors(4)
    options = (5, 17, 42, 99)
    grid = layer_gamma_grid(v, [2, 6], [0.5, 3.0])  # s = 2: the prefix compiled above is reused
    got = run_grid(model, *batch, grid, option_logprob_fn(options), chunk_size=8, progress=False)
    assert got.shape == (4, len(PADS), len(options))
    for point, lab in enumerate(grid.labels):
        logits = separate(model, batch, {lab["layer"]: v[lab["layer"]]}, {lab["layer"]: lab["gamma"]})
        ref = np.asarray(jax.nn.log_softmax(logits, axis=-1))[:, list(options)]
        assert rel_err(got[point], ref) <= RTOL, lab


def test_all_zero_grid_equals_the_plain_model(model, batch, plain):
    grid = layer_gamma_grid(vectors(5), [1, 4], [0.0])
    assert grid.first_steered_layer == L  # nothing steered: only the last block runs in the tail
    got = run_grid(model, *batch, grid, last_logits, chunk_size=4, progress=False)
    for point in range(len(grid.labels)):
        assert rel_err(got[point], plain) <= RTOL


# --- the prefix is shared ---------------------------------------------------------------------------
def test_prefix_and_tail_scan_lengths(model, batch):
    """jaxpr of ``_prefix`` scans exactly ``s`` blocks on B rows; ``_tail`` scans ``L − s − 1`` blocks on C·B rows
    and runs the final block on its own, at the read position only (its output is ``[C·B, 1, D]``)."""
    ids, mask = (jnp.asarray(a) for a in batch)
    impl = resolve_impl("auto", model.dtype)
    chunk = 4
    for s in (1, 3, 6):
        prefix = sweep._prefix.trace(model.params, ids, mask, config=CFG, stop=s, impl=impl).jaxpr
        scans = scan_eqns(prefix)
        assert [e.params["length"] for e in scans] == [s]
        h = jnp.zeros((len(PADS), T, D), jnp.float32)
        deltas = jnp.zeros((chunk, L, D), jnp.float32)
        tail = sweep._tail.trace(
            model.params,
            h,
            mask,
            deltas,
            None,
            config=CFG,
            tree=unshared_tree(chunk, s, L),
            impl=impl,
            score_fn=last_logits,
            logits_mode="last",
            scope="all",
        ).jaxpr
        scans = scan_eqns(tail)
        assert [e.params["length"] for e in scans] == [L - s - 1]
        carry = scans[0].outvars[0].aval.shape
        assert carry == (chunk * len(PADS), T, D)  # the tail's residual stream: C grid points × B prompts
        widths = {v.aval.shape for e in tail.eqns for v in e.outvars if getattr(v.aval, "ndim", 0) == 3}
        assert (chunk * len(PADS), 1, D) in widths  # the final block: one position a row


def test_run_grid_runs_the_prefix_once_and_the_tail_per_chunk(model, batch, monkeypatch):
    calls = {"prefix": [], "tail": []}
    real_prefix, real_tail = sweep._prefix, sweep._tail

    def prefix(*args, **kw):
        calls["prefix"].append(kw["stop"])
        return real_prefix(*args, **kw)

    def tail(*args, **kw):
        calls["tail"].append((kw["tree"].start, args[3].shape[0]))
        return real_tail(*args, **kw)

    monkeypatch.setattr(sweep, "_prefix", prefix)
    monkeypatch.setattr(sweep, "_tail", tail)
    grid = layer_gamma_grid(vectors(1), [2, 5, 7], [0.0, 1.5, -2.0])
    run_grid(model, *batch, grid, last_logits, chunk_size=4, progress=False)
    s, g = grid.first_steered_layer, len(grid.labels)
    assert calls["prefix"] == [s]
    assert calls["tail"] == [(s, 4)] * math.ceil(g / 4)
    # one chunk: the γ = 0 points are the plain model (one group); blocks 2–4 run 3 groups, 5–6 five, 7 seven
    assert layer_passes(grid, L) == 2 + 3 * 3 + 5 * 2 + 7 * 1 < s + g * (L - s)
    # chunks of 4 fall differently on the grid: unshared trees (one compiled tail), filler included
    assert layer_passes(grid, L, chunk_size=4) == s + 12 * (L - s)


def test_layer_passes_formula():
    v = vectors(1)
    # two layers × 3 γ: below the second layer its 3 points are still the plain model (one group of 4)
    for layers, s, passes in (([0, 3], 0, 4 * 3 + 6 * 5), ([4, 7], 4, 4 + 4 * 3 + 6 * 1), ([7], 7, 7 + 3 * 1)):
        grid = layer_gamma_grid(v, layers, [1.0, 2.0, 3.0])
        assert grid.first_steered_layer == s
        assert layer_passes(grid, L) == passes <= s + len(grid.labels) * (L - s)
    zero = layer_gamma_grid(v, [2], [0.0])
    assert layer_passes(zero, L) == (L - 1) + 1  # nothing steered: the tail is the last block


def test_grid_labels_and_deltas():
    v, base = vectors(1), vectors(9)
    grid = layer_gamma_grid(v, [2, 5], [0.5, -1.0], base=base)
    assert [(lab["layer"], lab["gamma"]) for lab in grid.labels] == [(2, 0.5), (2, -1.0), (5, 0.5), (5, -1.0)]
    expected = np.array(base)
    expected[5] += np.float32(-1.0) * v[5]
    np.testing.assert_array_equal(grid.deltas[3], expected)
    pg = pair_grid(v, [1], [2.0], base, [1], [3.0])
    np.testing.assert_array_equal(pg.deltas[0, 1], np.float32(2.0) * v[1] + np.float32(3.0) * base[1])
    assert pg.labels == ({"layer1": 1, "gamma1": 2.0, "layer2": 1, "gamma2": 3.0},)


# --- bad grids --------------------------------------------------------------------------------------
def one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert msg and "\n" not in msg
    return msg


def test_bad_grids_are_one_line_input_errors(model, batch):
    v = vectors(1)
    nan = v.copy()
    nan[3, 0] = np.nan
    cases = {
        "NaN delta": (lambda: layer_gamma_grid(nan, [3], [1.0]), "NaN"),
        "NaN gamma": (lambda: layer_gamma_grid(v, [3], [float("nan")]), "NaN"),
        "inf delta": (lambda: Grid(np.full((1, L, D), np.inf, np.float32), ({},)), "NaN or inf"),
        "no layers": (lambda: layer_gamma_grid(v, [], [1.0]), "at least one"),
        "no gammas": (lambda: layer_gamma_grid(v, [1], []), "at least one"),
        "empty grid": (lambda: Grid(np.zeros((0, L, D), np.float32), ()), "empty"),
        "labels mismatch": (lambda: Grid(np.zeros((2, L, D), np.float32), ({},)), "labels"),
        "layer too large": (lambda: layer_gamma_grid(v, [L], [1.0]), "out of range"),
        "negative layer": (lambda: layer_gamma_grid(v, [-1], [1.0]), "out of range"),
        "pair layer out of range": (lambda: pair_grid(v, [1], [1.0], v, [L + 2], [1.0]), "out of range"),
        "wrong width": (
            lambda: run_grid(
                model,
                *batch,
                layer_gamma_grid(np.ones((L, D + 1), np.float32), [1], [1.0]),
                last_logits,
                progress=False,
            ),
            "shape",
        ),
        "wrong depth": (
            lambda: run_grid(
                model,
                *batch,
                layer_gamma_grid(np.ones((L - 1, D), np.float32), [1], [1.0]),
                last_logits,
                progress=False,
            ),
            "shape",
        ),
        "chunk size 0": (
            lambda: run_grid(model, *batch, layer_gamma_grid(v, [1], [1.0]), last_logits, chunk_size=0, progress=False),
            "chunk_size",
        ),
        "bad scope": (
            lambda: run_grid(
                model, *batch, layer_gamma_grid(v, [1], [1.0]), last_logits, scope="generated", progress=False
            ),
            "scope",
        ),
    }
    for name, (call, needle) in cases.items():
        with pytest.raises(InputError) as e:
            call()
        assert needle in one_line(e), name


def test_pair_grid_empty_is_an_input_error():
    v = vectors(1)
    try:
        pair_grid(v, [], [1.0], v, [2], [1.0])
    except InputError:
        return
    except ValueError as e:
        raise AssertionError(f"{type(e).__name__}: {e}") from None
    raise AssertionError("no error for an empty pair grid")


def test_pair_grid_width_mismatch_is_an_input_error():
    try:
        pair_grid(vectors(1), [1], [1.0], np.ones((L, D + 1), np.float32), [2], [1.0])
    except InputError:
        return
    except ValueError as e:
        raise AssertionError(f"{type(e).__name__}: {e}") from None
    raise AssertionError("no error for mismatched vector widths")


def test_grid_read_at_an_index_array_equals_separate_runs(model, batch):
    """``logits_at`` as a numpy ``[B, K]`` array (negative = from the end): the tail's final block runs at
    those positions only and gives the logits a separate forward reads there."""
    v = vectors(6)
    grid = layer_gamma_grid(v, [3], [0.0, 2.5])
    index = np.stack([np.full(len(PADS), T - 1), np.full(len(PADS), -3)], axis=1).astype(np.int32)
    got = run_grid(model, *batch, grid, last_logits, logits_at=index, chunk_size=2, progress=False)
    assert got.shape == (2, len(PADS), 2, CFG.vocab_size)
    for point, lab in enumerate(grid.labels):
        plan = jaxsteer.Steering.from_layers(CFG, {3: v[3]}, gamma=lab["gamma"])
        ref = np.asarray(jaxsteer.forward(model, *batch, steering=plan, logits_at=index).logits, np.float64)
        assert rel_err(got[point], ref) <= RTOL, lab
