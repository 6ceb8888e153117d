"""Padded batch shapes: fixed width rules, balanced rows and the compile-aware width plan."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from jaxsteer.shapes import Widths, batch_needs, bucket, padded_tokens, plan_widths, shape_cost_tokens


def test_coarse_bucket_two_steps_per_octave():
    from jaxsteer.shapes import coarse_bucket

    got = [coarse_bucket(n) for n in (1, 16, 17, 33, 49, 65, 97, 129, 200, 257, 1000)]
    assert got == [16, 16, 32, 48, 64, 96, 128, 192, 256, 384, 1024]
    assert all(coarse_bucket(n) >= n and coarse_bucket(n) % 16 == 0 for n in range(1, 3000))


def test_coarse_bucket_four_steps_per_octave_and_longest_first_batches():
    from jaxsteer.shapes import coarse_bucket, longest_first, scoring_width

    assert [scoring_width(n) for n in (100, 129, 161, 193, 225, 257, 321)] == [112, 160, 192, 224, 256, 320, 384]
    assert all(coarse_bucket(n, per_octave=4) >= n and coarse_bucket(n, per_octave=4) % 16 == 0 for n in range(1, 3000))
    lengths = [3, 9, 5, 9, 1]
    ids = np.zeros((5, 9), np.int32)
    mask = np.zeros((5, 9), np.int32)
    for row, n in enumerate(lengths):
        ids[row, 9 - n :], mask[row, 9 - n :] = row + 10, 1
    got = list(longest_first(ids, mask, 2))
    assert [list(rows) for rows, _, _ in got] == [[1, 3], [2, 0], [4]]
    assert [b.shape[1] for _, b, _ in got] == [16, 16, 16]
    for rows, bi, bm in got:  # each row keeps its own tokens; filler rows (mask of one token) pad the last
        for r, row in enumerate(rows):
            assert bm[r].sum() == lengths[row] and set(bi[r][bm[r] == 1]) == {row + 10}


def test_balanced_rows_split_evenly_in_as_few_calls():
    from jaxsteer.shapes import balanced_rows

    assert [balanced_rows(n, 32) for n in (100, 64, 65, 5, 1, 32, 33)] == [25, 32, 22, 5, 1, 32, 17]
    for n in range(1, 200):
        rows = balanced_rows(n, 32)
        calls = -(-n // rows)
        assert rows <= 32 and calls == -(-n // 32) and calls * rows - n < calls  # fewer than one filler per call


def test_balanced_rows_on_a_mesh_are_a_multiple_of_its_batch_shards():
    """Rows that do not divide the mesh's batch shards would run replicated on every shard."""
    from jaxsteer.shapes import balanced_rows

    assert [balanced_rows(n, 32, 8) for n in (100, 200, 5, 64, 65)] == [32, 32, 8, 32, 24]
    for n in range(1, 300):
        for shards in (1, 2, 4, 8):
            rows = balanced_rows(n, 32, shards)
            assert rows % shards == 0 and rows <= 32 and -(-n // rows) == -(-n // 32)
    # a batch size the shards do not divide: never above it (the user's memory cap), rows run replicated
    assert [balanced_rows(100, 12, 8), balanced_rows(5, 4, 8), balanced_rows(9, 10, 4)] == [12, 3, 9]


def test_plan_widths_trades_padding_against_compiles_by_hand():
    """Three batches need ≤ 112 tokens and one 300 (10 rows each): two widths pad 10·(3·112 + 304) = 6400
    tokens, one width 10·4·304 = 12 160. A compile worth 5000 tokens keeps two widths; 6000 merges them."""
    needs = [100, 97, 112, 300]
    assert plan_widths(needs, 10, 5000) == Widths((112, 304))
    assert plan_widths(needs, 10, 6000) == Widths((304,))
    assert plan_widths(needs, 10, 0) == Widths((112, 304))  # free compiles: every rounded need
    assert plan_widths([], 10, 5000) == Widths(())
    # rows per batch weigh the padding: a full batch at 100 tokens and a one-row batch at 300 keep two widths
    # (100·112 + 304 + 2·5000 = 21 504 < 100·304 + 304 + 5000); the other way round, one
    assert plan_widths([100, 300], [100, 1], 5000) == Widths((112, 304))
    assert plan_widths([100, 300], [1, 100], 5000) == Widths((304,))


def _cost(needs, rows, cost, widths):
    return padded_tokens(needs, rows, widths) + cost * len(widths.sizes)


@pytest.mark.parametrize("seed", range(6))
def test_plan_widths_is_the_optimum_of_every_subset(seed):
    """Brute force over every set of candidate widths that holds the longest batch."""
    rng = np.random.default_rng(seed)
    needs = [int(n) for n in rng.integers(20, 400, size=int(rng.integers(3, 12)))]
    rows, cost = int(rng.integers(1, 40)), float(rng.choice([0, 500, 3000, 20_000, 1e6]))
    candidates = sorted({bucket(n) for n in needs})
    best = min(
        _cost(needs, rows, cost, Widths(tuple(s)))
        for k in range(1, len(candidates) + 1)
        for s in itertools.combinations(candidates, k)
        if s[-1] == candidates[-1]
    )
    plan = plan_widths(needs, rows, cost)
    assert _cost(needs, rows, cost, plan) == pytest.approx(best)
    assert plan.sizes[-1] == candidates[-1] and all(w % 16 == 0 for w in plan.sizes)


def test_widths_take_the_narrowest_that_holds_and_round_what_the_plan_did_not_see():
    widths = Widths((112, 304))
    assert [widths(n) for n in (1, 112, 113, 304, 305, 1000)] == [112, 112, 304, 304, 320, 1008]


def test_batch_needs_are_the_longest_row_of_each_longest_first_batch():
    assert batch_needs([5, 9, 1, 7, 3], 2) == [9, 5, 1]
    assert batch_needs([], 4) == []


def test_shape_cost_falls_with_model_size_and_on_a_cpu():
    from jaxsteer.config import preset, tiny

    costs = [shape_cost_tokens(preset(n), "gpu") for n in ("1b", "4b", "12b", "27b")]
    assert costs == sorted(costs, reverse=True) and 5e4 < costs[2] < 2e5  # 12B: ≈ 9·10⁴ tokens a width
    assert shape_cost_tokens(tiny(), "tpu") == 1 << 22  # compiles dominate a tiny model on an accelerator
    assert 1e4 < shape_cost_tokens(tiny(), "cpu") < 3e4 and shape_cost_tokens(preset("1b"), "cpu") == 1024
    assert shape_cost_tokens(object(), "gpu") == 1 << 22
