"""Contrastive extraction against a naive NumPy computation from ``forward(..., return_hidden=True)``.

Convention: the vector of layer ``l`` is read at the output of block ``l`` = ``hidden[l + 1]``. Every
batch here is LEFT-padded with a different amount of padding per row, so a wrong read position or a
pad token that leaks into a sum shows up as a mismatch.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from tiny_checkpoint import random_model, scan_eqns, tiny_model  # noqa: F401

import jaxsteer
from jaxsteer.config import tiny
from jaxsteer.errors import InputError
from jaxsteer.steering import extract as ex
from jaxsteer.steering.extract import TokenPairs, extract, normalise, pool

jax.config.update("jax_default_matmul_precision", "highest")

CFG = tiny()  # 8 blocks (global block 5), GQA, sliding window 4 < prompt lengths
N = 6
BATCH = 4  # does not divide N: the last batch has filler rows that must not count


@pytest.fixture(scope="module")
def model():
    return random_model(CFG, seed=3)


def left_padded(lengths, width, seed, pad_id=0):
    rng = np.random.RandomState(seed)
    ids = np.full((len(lengths), width), pad_id, np.int32)
    mask = np.zeros((len(lengths), width), np.int32)
    for row, n in enumerate(lengths):
        ids[row, width - n :] = rng.randint(3, CFG.vocab_size, size=n)
        mask[row, width - n :] = 1
    return ids, mask


def make_pairs(pad_id=0) -> TokenPairs:
    # every row has its own amount of left padding; row 5 of the positives is row 0 with more padding
    pi, pm = left_padded([12, 5, 9, 3, 7, 12], 12, seed=1, pad_id=pad_id)
    pi[5] = pi[0]
    pi[5, :4], pm[5, :4] = pad_id, 0
    ni, nm = left_padded([4, 10, 6, 10, 2, 8], 12, seed=2, pad_id=pad_id)  # two all-padding columns
    return TokenPairs(pi, pm, ni, nm)


@pytest.fixture(scope="module")
def pairs() -> TokenPairs:
    return make_pairs()


def naive_acts(model, ids, mask, read) -> np.ndarray:
    """``[L, B, D]`` float64 from one ``forward(return_hidden=True)``: hidden[l+1] at the read position."""
    hidden = np.asarray(jaxsteer.forward(model, ids, mask, return_hidden=True, logits_at="none").hidden, np.float64)[1:]
    out = np.zeros((hidden.shape[0], len(ids), hidden.shape[-1]))
    for b in range(len(ids)):
        real = np.flatnonzero(mask[b])
        if read == "last":
            out[:, b] = hidden[:, b, real[-1]]
        else:
            out[:, b] = hidden[:, b, real].mean(axis=1)
    return out


@pytest.fixture(scope="module")
def naive(model, pairs):
    return {
        read: (
            naive_acts(model, pairs.pos_ids, pairs.pos_mask, read),
            naive_acts(model, pairs.neg_ids, pairs.neg_mask, read),
        )
        for read in ("last", "mean")
    }


def assert_close(got, ref, rtol=1e-5):
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    assert got.shape == ref.shape
    err = np.max(np.abs(got - ref)) / max(np.max(np.abs(ref)), 1e-30)
    assert err <= rtol, f"relative error {err:.2e} > {rtol:.0e}"


def one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert msg and "\n" not in msg
    return msg


# --- mean_diff against the naive computation ----------------------------------------------------------
@pytest.mark.parametrize("read", ["last", "mean"])
def test_mean_diff_equals_naive_numpy(model, pairs, naive, read):
    pos, neg = naive[read]
    res = extract(model, pairs, "mean_diff", read, batch_size=BATCH, progress=False)
    assert res.vectors.shape == (CFG.num_layers, CFG.hidden_size) and res.vectors.dtype == np.float32
    assert res.num_pairs == N and res.method == "mean_diff" and res.read == read
    assert_close(res.vectors, pos.mean(1) - neg.mean(1))
    assert_close(res.pos_mean, pos.mean(1))
    assert_close(res.neg_mean, neg.mean(1))
    norms = np.concatenate([np.linalg.norm(pos, axis=-1), np.linalg.norm(neg, axis=-1)], axis=1).mean(1)
    assert_close(res.mean_norm, norms)


def test_read_positions_differ_and_last_reads_the_last_real_token(naive, pairs):
    """Guards the two tests above: 'last' and 'mean' are different numbers on these batches."""
    (pl, _), (pm, _) = naive["last"], naive["mean"]
    assert np.max(np.abs(pl - pm)) > 1e-3 * np.max(np.abs(pl))
    # row 5 is row 0 with its first 4 tokens turned into padding: same last token, shorter context
    assert np.max(np.abs(pl[:, 5] - pl[:, 0])) > 1e-4


@pytest.mark.parametrize("read", ["last", "mean"])
def test_pad_token_ids_never_count(model, pairs, read):
    base = extract(model, pairs, "mean_diff", read, batch_size=BATCH, progress=False)
    rng = np.random.RandomState(9)
    noisy = [a.copy() for a in (pairs.pos_ids, pairs.neg_ids)]
    for ids, mask in zip(noisy, (pairs.pos_mask, pairs.neg_mask)):
        ids[mask == 0] = rng.randint(3, CFG.vocab_size, size=int((mask == 0).sum()))
    other = TokenPairs(noisy[0], pairs.pos_mask, noisy[1], pairs.neg_mask)
    res = extract(model, other, "mean_diff", read, batch_size=BATCH, progress=False)
    assert_close(res.vectors, base.vectors, rtol=1e-6)
    assert_close(res.mean_norm, base.mean_norm, rtol=1e-6)


def test_iterate_activations_longest_first_balanced_and_filler_rows(model, pairs, naive):
    """Rows come longest first in balanced batches (5 rows at ≤ 4 a batch: 3 + 2, one filler row dropped);
    each row's activations equal the naive per-row read, and ``all_activations`` puts them back in order."""
    ids, mask = pairs.pos_ids[:5], pairs.pos_mask[:5]
    got = list(ex.iterate_activations(model, ids, mask, BATCH, "last"))
    assert [list(rows) for rows, _ in got] == [[0, 2, 4], [1, 3]]  # lengths 12, 5, 9, 3, 7
    for rows, acts in got:
        assert_close(acts, naive["last"][0][:, rows])
    assert_close(ex.all_activations(model, ids, mask, BATCH, "last"), naive["last"][0][:, :5])


def test_layer_activations_stacks_only_l_b_d(model, pairs):
    """The scan stacks [L, B, D] per read position, never [L, B, T, D] (for the last-token read: blocks
    0 … L−2 scanned, the final block run on its own at the read position)."""
    from jaxsteer.shapes import batches

    _, ids, mask = next(batches(pairs.pos_ids, pairs.pos_mask, BATCH + 2))
    for read, scanned in (("last", CFG.num_layers - 1), ("mean", CFG.num_layers)):
        traced = ex.layer_activations.trace(model.params, ids, mask, config=CFG, read=read, impl="xla")
        scans = [e for e in scan_eqns(traced.jaxpr) if e.params["length"] == scanned]
        assert scans, "no layer scan found"
        for eqn in scans:
            ys = [v.aval.shape for v in eqn.outvars[eqn.params["num_carry"] :]]
            assert ys == [(scanned, BATCH + 2, CFG.hidden_size)], ys
        assert traced.out_info.shape == (CFG.num_layers, BATCH + 2, CFG.hidden_size)


# --- streaming --------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["mean_diff", "pca_diff"])
def test_streaming_over_batches_equals_one_shot(model, pairs, method):
    """Batches of 4 then 2 (+ 2 filler rows) accumulate to the same vectors as one batch of 6."""
    streamed = extract(model, pairs, method, "last", batch_size=BATCH, progress=False)
    one_shot = extract(model, pairs, method, "last", batch_size=N, progress=False)
    assert_close(streamed.vectors, one_shot.vectors)
    assert_close(streamed.mean_norm, one_shot.mean_norm)


# --- PCA variants -----------------------------------------------------------------------------------
def numpy_pca_direction(pos, neg, method) -> np.ndarray:
    """First right-singular vector per layer of the matrix each method decomposes (sign arbitrary)."""
    out = []
    for p, n in zip(pos, neg):
        if method == "pca_diff":
            d = p - n
            data = d - d.mean(0)
        else:
            c = (p + n) / 2
            data = np.concatenate([p - c, n - c])
        out.append(np.linalg.svd(data)[2][0])
    return np.stack(out)


@pytest.mark.parametrize("read", ["last", "mean"])
@pytest.mark.parametrize("method", ["pca_diff", "pca_center"])
def test_pca_direction_sign_and_scale(model, pairs, naive, method, read):
    pos, neg = naive[read]
    res = extract(model, pairs, method, read, batch_size=BATCH, progress=False)
    v = res.vectors.astype(np.float64)
    norm = np.linalg.norm(v, axis=-1)
    unit = v / norm[:, None]
    ref = numpy_pca_direction(pos, neg, method)
    cos = np.abs(np.sum(unit * ref, axis=-1))
    np.testing.assert_allclose(cos, 1.0, atol=1e-4)
    proj = np.einsum("lnd,ld->ln", pos - neg, unit)  # projected differences on the unit direction
    assert np.all(proj.mean(1) > 0), "positives must project higher than negatives"
    assert np.all(np.einsum("lnd,ld->ln", pos, unit).mean(1) > np.einsum("lnd,ld->ln", neg, unit).mean(1))
    np.testing.assert_allclose(norm, proj.mean(1), rtol=1e-4)  # scale = mean projected difference
    # swapping positives and negatives flips the vector
    swapped = TokenPairs(pairs.neg_ids, pairs.neg_mask, pairs.pos_ids, pairs.pos_mask)
    back = extract(model, swapped, method, read, batch_size=BATCH, progress=False)
    assert_close(back.vectors, -res.vectors, rtol=1e-4)


def test_pca_variants_are_distinguishable(naive):
    """The two PCA matrices (centred differences vs pair-centred points) give different directions here,
    so the test above would notice a swap; neither is the mean difference."""
    pos, neg = naive["last"]
    a, b = numpy_pca_direction(pos, neg, "pca_diff"), numpy_pca_direction(pos, neg, "pca_center")
    md = pos.mean(1) - neg.mean(1)
    md /= np.linalg.norm(md, axis=-1, keepdims=True)
    assert np.min(np.abs(np.sum(a * b, -1))) < 0.99
    assert np.min(np.abs(np.sum(a * md, -1))) < 0.99


# --- pooling and normalisation ----------------------------------------------------------------------
def _subset(pairs, rows):
    return TokenPairs(pairs.pos_ids[rows], pairs.pos_mask[rows], pairs.neg_ids[rows], pairs.neg_mask[rows])


def test_pool_is_the_pair_weighted_mean(model, pairs):
    a = extract(model, _subset(pairs, slice(0, 2)), batch_size=BATCH, progress=False)
    b = extract(model, _subset(pairs, slice(2, 6)), batch_size=BATCH, progress=False)
    whole = extract(model, pairs, batch_size=BATCH, progress=False)
    pooled = pool([a, b])
    assert pooled.num_pairs == 6 and pooled.method == "mean_diff"
    assert_close(pooled.vectors, whole.vectors)
    assert_close(pooled.pos_mean, whole.pos_mean)
    assert_close(pooled.mean_norm, whole.mean_norm)
    unweighted = (a.vectors + b.vectors) / 2  # what an unweighted mean would give: clearly different
    assert np.max(np.abs(unweighted - whole.vectors)) > 1e-3 * np.max(np.abs(whole.vectors))


def test_pool_rejects_pca_and_empty(model, pairs):
    p = extract(model, pairs, "pca_diff", batch_size=BATCH, progress=False)
    with pytest.raises(InputError) as e:
        pool([p])
    one_line(e)
    with pytest.raises(InputError) as e:
        pool([])
    one_line(e)


def test_normalise_unit_mean_norm(model, pairs, naive):
    res = extract(model, pairs, batch_size=BATCH, progress=False)
    assert normalise(res, "none") is res.vectors
    out = normalise(res, "unit_mean_norm")
    assert out.dtype == np.float32
    pos, neg = naive["last"]
    mean_norm = np.concatenate([np.linalg.norm(pos, axis=-1), np.linalg.norm(neg, axis=-1)], axis=1).mean(1)
    np.testing.assert_allclose(np.linalg.norm(out, axis=-1), mean_norm, rtol=1e-5)
    unit = res.vectors / np.linalg.norm(res.vectors, axis=-1, keepdims=True)
    np.testing.assert_allclose(out / np.linalg.norm(out, axis=-1, keepdims=True), unit, atol=1e-6)
    with pytest.raises(InputError) as e:
        normalise(res, "l2")
    assert "unit_mean_norm" in one_line(e)


def test_from_texts_left_pads_with_bos(tiny_model):  # noqa: F811
    tok = tiny_model.tokenizer
    tp = TokenPairs.from_texts(tok, ["Answer: A", "a much longer positive prompt here"], ["B", "C D"])
    assert len(tp) == 2
    for ids, mask in ((tp.pos_ids, tp.pos_mask), (tp.neg_ids, tp.neg_mask)):
        for row_ids, row_mask in zip(ids, mask):
            real = np.flatnonzero(row_mask)
            assert real[-1] == len(row_mask) - 1 and np.all(np.diff(real) == 1)  # left padding
            assert row_ids[real[0]] == tok.bos_token_id
    assert tp.pos_mask[0, 0] == 0  # the short row is padded


# --- bad inputs -------------------------------------------------------------------------------------
def test_bad_inputs_are_one_line_input_errors(model, pairs, tiny_model):  # noqa: F811
    empty = np.zeros((0, 4), np.int32)
    cases = {
        "empty pair set": lambda: TokenPairs(empty, empty, empty, empty),
        "mismatched counts": lambda: TokenPairs(pairs.pos_ids, pairs.pos_mask, pairs.neg_ids[:5], pairs.neg_mask[:5]),
        "empty texts": lambda: TokenPairs.from_texts(tiny_model.tokenizer, [], []),
        "mismatched texts": lambda: TokenPairs.from_texts(tiny_model.tokenizer, ["a", "b"], ["c"]),
        "unknown method": lambda: extract(model, pairs, "mean_difference", progress=False),
        "unknown read": lambda: extract(model, pairs, "mean_diff", "first", progress=False),
        "batch size 0": lambda: extract(model, pairs, batch_size=0, progress=False),
        "mask shape": lambda: extract(
            model, TokenPairs(pairs.pos_ids, pairs.pos_mask[:, 1:], pairs.neg_ids, pairs.neg_mask), progress=False
        ),
        "token out of vocab": lambda: extract(
            model,
            TokenPairs(pairs.pos_ids + CFG.vocab_size, pairs.pos_mask, pairs.neg_ids, pairs.neg_mask),
            progress=False,
        ),
    }
    for name, call in cases.items():
        with pytest.raises(InputError) as e:
            call()
        one_line(e)
        assert "Traceback" not in str(e.value), name
    with pytest.raises(InputError, match="mismatched"):
        cases["mismatched counts"]()
    with pytest.raises(InputError, match="empty"):
        cases["empty pair set"]()
    with pytest.raises(InputError, match="mean_diff"):
        cases["unknown method"]()
    with pytest.raises(InputError, match="last"):
        cases["unknown read"]()


def test_a_row_without_real_tokens_is_refused(model, pairs):
    mask = pairs.neg_mask.copy()
    mask[2] = 0
    with pytest.raises(InputError) as e:
        extract(model, TokenPairs(pairs.pos_ids, pairs.pos_mask, pairs.neg_ids, mask), batch_size=BATCH, progress=False)
    assert "no real token" in one_line(e)


@pytest.mark.parametrize("method", ["pca_diff", "pca_center"])
def test_pca_sign_mean_projection_vs_repeng_majority(method):
    """Three pairs differ by −1 along x, one by +10: the mean difference is +1.75 (jaxsteer keeps +x),
    three of four pairs have the positive lower (repeng flips to −x)."""
    neg = np.tile(np.array([0.0, 1.0, 2.0]), (1, 4, 1))  # [L=1, N=4, D=3]
    pos = neg.copy()
    pos[0, :, 0] += np.array([-1.0, -1.0, -1.0, 10.0])
    v = ex._pca_vectors(pos, neg, method)
    np.testing.assert_allclose(v[0], [1.75, 0.0, 0.0], atol=1e-12)  # mean((h⁺ − h⁻)·x) = 7/4
    r = ex.repeng_sign(v, pos, neg)
    np.testing.assert_allclose(r[0], [-1.75, 0.0, 0.0], atol=1e-12)
    # when most pairs agree with the mean, both conventions agree
    pos[0, :, 0] = neg[0, :, 0] + np.array([1.0, 1.0, 1.0, -2.0])
    v = ex._pca_vectors(pos, neg, method)
    assert v[0, 0] > 0 and np.array_equal(ex.repeng_sign(v, pos, neg), v)


def test_pca_diff_without_variance_is_refused_not_an_arbitrary_axis(model, pairs):
    """One pair (its centred difference is zero) or identical differences: SVD would return any basis vector."""
    one = TokenPairs(pairs.pos_ids[:1], pairs.pos_mask[:1], pairs.neg_ids[:1], pairs.neg_mask[:1])
    with pytest.raises(InputError) as e:
        extract(model, one, "pca_diff", batch_size=BATCH, progress=False)
    assert "pca_diff needs at least 2 pairs (got 1)" in one_line(e)
    assert extract(model, one, "pca_center", batch_size=BATCH, progress=False).vectors.any()  # ±d/2: defined
    neg = np.zeros((2, 3, 4))
    pos = neg + np.array([1.0, 0.0, 0.0, 0.0])  # every pair differs by the same vector: no variance
    pos[1, 1:] += np.array([[0.0, 1.0, 0.0, 0.0], [0.0, -1.0, 0.0, 0.0]])  # layer 1 varies, layer 0 does not
    with pytest.raises(InputError, match=r"do not vary at layer 0,"):
        ex._pca_vectors(pos, neg, "pca_diff")
    np.testing.assert_allclose(np.abs(ex._pca_vectors(pos[1:], neg[1:], "pca_diff")[0]), [0, 0, 0, 0], atol=1e-12)
    same = pos.copy()
    same[0] = neg[0]  # no difference at all at layer 0: a zero vector there, as mean_diff gives, not a refusal
    for method in ("pca_diff", "pca_center"):
        v = ex._pca_vectors(same, neg, method)
        assert not v[0].any() and np.isfinite(v).all()


@pytest.mark.parametrize("side", ["positive", "negative"])
def test_a_pair_side_that_tokenises_to_nothing_is_refused(tiny_model, side):  # noqa: F811
    """ "" is <bos> alone on both sides: its difference is exactly zero and would be averaged in silently."""
    texts = {"positive": ["Answer: A", "Answer: B"], "negative": ["B", "C"]}
    texts[side][1] = ""
    with pytest.raises(InputError, match=rf"^pair 2: the {side} text '' tokenises to nothing$"):
        TokenPairs.from_texts(tiny_model.tokenizer, texts["positive"], texts["negative"])


def test_one_planned_width_for_a_small_model_and_the_vectors_do_not_change(model, monkeypatch):
    """Batches needing 79, 66 and 35 tokens: the plan for a small model (compiles cost more than padding)
    runs them all at one width, 80; 16-token buckets run 80 and 48 — same vectors."""
    from jaxsteer.shapes import bucket

    lengths = [20, 35, 50, 66, 79, 68]
    pos, pos_mask = left_padded(lengths, 79, seed=1)
    neg, neg_mask = left_padded(lengths[::-1], 79, seed=2)
    pairs = TokenPairs(pos, pos_mask, neg, neg_mask)
    seen, real = [], ex.layer_activations
    monkeypatch.setattr(ex, "layer_activations", lambda p, i, m, **k: seen.append(i.shape[1]) or real(p, i, m, **k))
    planned = extract(model, pairs, batch_size=4, progress=False)
    assert set(seen) == {80}
    seen.clear()
    fine = extract(model, pairs, batch_size=4, progress=False, widths=bucket)
    assert set(seen) == {80, 48}
    np.testing.assert_allclose(planned.vectors, fine.vectors, rtol=1e-5, atol=1e-6)
