"""Model-side scoring on the tiny checkpoint against brute force.

Brute force = a full forward over ``context + continuation`` with logits at every position and the
log-softmax of position ``p`` scored on token ``p + 1`` — no ``logits_at`` gather, no bucketing, no
filler rows — so a misplaced read index, a padding leak or a filler row that sneaks into the results
shows up as a mismatch.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from tiny_checkpoint import FIXTURES, tiny_model  # noqa: F401

import jaxsteer
from jaxsteer.data import prompts
from jaxsteer.errors import InputError
from jaxsteer.scoring import (
    continuation_logprobs,
    generate_answers,
    option_logprob_fn,
    score_multiple_choice,
    single_token_ids,
)
from jaxsteer.tokens import decode_new, encode_batch

jax.config.update("jax_default_matmul_precision", "highest")

ATOL = 2e-5  # log-probabilities are ~ -log(1500) ≈ -7.3: this is ~3e-6 relative


def one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert msg and "\n" not in msg
    return msg


def real_tokens(ids, mask) -> list[list[int]]:
    return [list(map(int, row[m.astype(bool)])) for row, m in zip(ids, mask)]


def brute_loglik(model, sequences, starts, steering=None) -> list[float]:
    """Σ log p(seq[p] | seq[:p]) for p ≥ start, from one full-logits forward over all sequences (left-padded)."""
    width = max(len(s) for s in sequences)
    ids = np.zeros((len(sequences), width), np.int32)
    mask = np.zeros_like(ids)
    for i, s in enumerate(sequences):
        ids[i, width - len(s) :] = s
        mask[i, width - len(s) :] = 1
    logits = jaxsteer.forward(model, ids, mask, steering=steering).logits  # [B, T, V]: every position
    logp = np.asarray(jax.nn.log_softmax(np.asarray(logits, np.float64), axis=-1))
    out = []
    for i, (s, start) in enumerate(zip(sequences, starts)):
        off = width - len(s)
        out.append(sum(logp[i, off + p - 1, s[p]] for p in range(start, len(s))))
    return out


@pytest.fixture(scope="module")
def mc(tiny_model):  # noqa: F811
    """The Global-MMLU zh test-split prompts of ``jaxsteer eval`` in test_cli (same shapes: shared compiles)."""
    from jaxsteer.study.experiment import Benchmarks, ExperimentConfig

    cfg = ExperimentConfig(data=FIXTURES, languages=("zh",), allow_small=True, batch_size=8, max_new_tokens=2)
    reqs = [prompts.mc_prompt(q) for q in Benchmarks(cfg).gmmlu("zh", "test")]
    tok = tiny_model.tokenizer
    ids, mask = encode_batch(tok, [r.context for r in reqs])
    options = single_token_ids(tok, reqs[0].continuations)
    answers = [r.answer for r in reqs]
    return ids, mask, options, answers


def brute_mc(model, ids, mask, options, steering=None) -> np.ndarray:
    contexts = real_tokens(ids, mask)
    seqs = [c + [o] for c in contexts for o in options]
    starts = [len(c) for c in contexts for _ in options]
    return np.array(brute_loglik(model, seqs, starts, steering)).reshape(len(contexts), len(options))


# --- multiple choice --------------------------------------------------------------------------------
def test_letters_are_single_tokens_of_the_fixture_tokenizer(tiny_model, mc):  # noqa: F811
    tok = tiny_model.tokenizer
    ids, mask, options, _ = mc
    assert len(set(options)) == 4
    assert [tok.decode([o]) for o in options] == [" A", " B", " C", " D"]
    assert mask[:, 0].min() == 0  # the batch really is left-padded (prompts differ in length)


def test_score_multiple_choice_equals_brute_force(tiny_model, mc):  # noqa: F811
    ids, mask, options, answers = mc
    ref = brute_mc(tiny_model, ids, mask, options)
    n = len(ids)
    assert n > 4
    res = score_multiple_choice(tiny_model, ids, mask, options, answers, batch_size=4, progress=False)  # 4 + rest
    assert res.logprobs.shape == (n, 4)
    np.testing.assert_allclose(res.logprobs, ref, atol=ATOL, rtol=0)
    np.testing.assert_array_equal(res.predictions, ref.argmax(-1))
    np.testing.assert_array_equal(res.correct, ref.argmax(-1) == np.asarray(answers))
    assert res.accuracy == pytest.approx(np.mean(ref.argmax(-1) == np.asarray(answers)))
    # the options are not all tied: the comparison distinguishes them
    assert np.min(np.ptp(ref, axis=1)) > 1e-4


def test_score_multiple_choice_single_unpadded_question(tiny_model, mc):  # noqa: F811
    """One question alone, no padding anywhere in the brute force: same numbers as inside the padded batch."""
    ids, mask, options, answers = mc
    shortest = int(np.argmax((mask == 0).sum(1)))
    ctx = real_tokens(ids[shortest : shortest + 1], mask[shortest : shortest + 1])[0]
    seq = np.array([ctx + [options[0]]], np.int32)
    logits = np.asarray(jaxsteer.forward(tiny_model, seq).logits, np.float64)[0, len(ctx) - 1]
    brute = np.asarray(jax.nn.log_softmax(logits))[list(options)]
    res = score_multiple_choice(tiny_model, ids, mask, options, answers, batch_size=4, progress=False)
    np.testing.assert_allclose(res.logprobs[shortest], brute, atol=ATOL, rtol=0)


def test_score_multiple_choice_passes_steering_through(tiny_model, mc):  # noqa: F811
    ids, mask, options, answers = mc
    rng = np.random.RandomState(0)
    cfg = tiny_model.config
    steer = jaxsteer.Steering.from_layers(cfg, {2: rng.randn(cfg.hidden_size)}, gamma=3.0)
    ref = brute_mc(tiny_model, ids, mask, options, steer)
    res = score_multiple_choice(tiny_model, ids, mask, options, answers, steer, batch_size=8, progress=False)
    np.testing.assert_allclose(res.logprobs, ref, atol=ATOL, rtol=0)
    plain = score_multiple_choice(tiny_model, ids, mask, options, answers, batch_size=4, progress=False)
    assert np.max(np.abs(plain.logprobs - res.logprobs)) > 1e-3  # steering did something


def test_option_logprob_fn_is_cached_and_correct():
    fn = option_logprob_fn((1, 3))
    assert option_logprob_fn((1, 3)) is fn  # sweeps reuse one compiled tail
    logits = np.array([[0.0, 1.0, 2.0, 3.0]], np.float32)
    ref = logits - np.log(np.exp(logits).sum())
    np.testing.assert_allclose(np.asarray(fn(logits)), ref[:, [1, 3]], rtol=1e-6)


# --- multi-token continuations ----------------------------------------------------------------------
def test_continuation_logprobs_equals_brute_force_with_left_padding(tiny_model):  # noqa: F811
    rng = np.random.RandomState(1)
    vocab = tiny_model.config.vocab_size
    splits = [(9, 1), (8, 2), (7, 3), (6, 4), (5, 2), (4, 3), (6, 1)]  # context / continuation lengths
    contexts = [[2, *rng.randint(3, vocab, size=c - 1).tolist()] for c, _ in splits]
    conts = [rng.randint(3, vocab, size=k).tolist() for _, k in splits]
    got = continuation_logprobs(tiny_model, contexts, conts, batch_size=3)  # 3 + 3 + 1 (two filler rows)
    # brute force: each item alone, unpadded, full logits (items of equal total length share a forward)
    ref = np.zeros(len(splits))
    for total in sorted({c + k for c, k in splits}):
        rows = [i for i, (c, k) in enumerate(splits) if c + k == total]
        seqs = [contexts[i] + conts[i] for i in rows]
        vals = brute_loglik(tiny_model, seqs, [len(contexts[i]) for i in rows])
        ref[rows] = vals
    np.testing.assert_allclose(got, ref, atol=4 * ATOL, rtol=0)


def test_continuation_logprobs_bad_inputs(tiny_model):  # noqa: F811
    with pytest.raises(InputError) as e:
        continuation_logprobs(tiny_model, [[2, 5]], [[7], [8]])
    one_line(e)
    with pytest.raises(InputError) as e:
        continuation_logprobs(tiny_model, [[2, 5]], [[]])
    assert "empty continuation" in one_line(e)


# --- single-token check and MC input checks ---------------------------------------------------------
def test_single_token_ids_raises_for_a_multi_token_continuation(tiny_model):  # noqa: F811
    tok = tiny_model.tokenizer
    assert len(single_token_ids(tok, [" A", " B", " C", " D"])) == 4
    assert len(tok(" Zebra-quokka xylophone", add_special_tokens=False)["input_ids"]) > 1
    with pytest.raises(InputError) as e:
        single_token_ids(tok, [" A", " Zebra-quokka xylophone"])
    msg = one_line(e)
    assert "Zebra-quokka" in msg and "exactly 1" in msg


def test_score_multiple_choice_bad_inputs(tiny_model, mc):  # noqa: F811
    ids, mask, options, answers = mc
    with pytest.raises(InputError) as e:
        score_multiple_choice(tiny_model, ids, mask, options, answers[:-1], progress=False)
    one_line(e)
    with pytest.raises(InputError) as e:
        score_multiple_choice(tiny_model, ids[:0], mask[:0], options, [], progress=False)
    one_line(e)
    with pytest.raises(InputError) as e:
        score_multiple_choice(tiny_model, ids, mask, options, [4] * len(ids), progress=False)
    assert "answer index" in one_line(e)


# --- generation -------------------------------------------------------------------------------------
def test_generate_answers_equals_greedy_forward_loop(tiny_model):  # noqa: F811
    """Batched, bucketed, KV-cached greedy answers equal a plain argmax loop of full forwards.

    Uses the BLEnD zh test prompts with batch 8 and 2 new tokens, the shapes ``jaxsteer eval`` compiles in
    test_cli, so the decode program is shared across the session.
    """
    from jaxsteer.study.experiment import Benchmarks, ExperimentConfig

    cfg = ExperimentConfig(data=FIXTURES, languages=("zh",), allow_small=True, batch_size=8, max_new_tokens=2)
    texts = [prompts.blend_prompt(it.decontextualised, "zh") for it in Benchmarks(cfg).blend("zh", "test")]
    tok = tiny_model.tokenizer
    got = generate_answers(tiny_model, tok, texts, 2, batch_size=8, progress=False)
    assert len(got) == len(texts)
    ids, mask = encode_batch(tok, texts)
    new = 2
    ids = np.pad(ids, ((0, 0), (new, 0)))  # room for the new tokens: constant width, one compile
    mask = np.pad(mask, ((0, 0), (new, 0)))
    generated = []
    for _ in range(new):
        logits = jaxsteer.forward(tiny_model, ids, mask, logits_at="last").logits
        nxt = np.asarray(logits).argmax(-1).astype(np.int32)
        generated.append(nxt)
        ids = np.concatenate([ids[:, 1:], nxt[:, None]], axis=1)
        mask = np.concatenate([mask[:, 1:], np.ones((len(ids), 1), np.int32)], axis=1)
    ref = decode_new(tok, np.stack(generated, axis=1), tiny_model.config)
    assert got == ref


def test_decode_new_stops_where_generate_stops(tiny_model):  # noqa: F811
    from jaxsteer.model.decode import default_eos_ids

    cfg, tok = tiny_model.config, tiny_model.tokenizer
    assert default_eos_ids(cfg) == (cfg.eos_token_id,)
    row = [50, cfg.end_of_turn_token_id, 51]
    assert decode_new(tok, [row], cfg) == [tok.decode(row, skip_special_tokens=True)]


def test_scoring_a_new_width_compiles_the_forward_and_one_fused_option_program(model_factory):
    """Two programs a new batch shape (the forward, and log-softmax + take jitted together); none again. A
    config of its own (a static argument of every program) keeps other tests' compiles out of the count."""
    from compile_counter import compiles

    from jaxsteer.config import tiny

    model = model_factory(tiny(rms_norm_eps=2.5e-6), seed=4)
    ids = np.full((3, 41), 7, np.int32)
    mask = np.ones_like(ids)
    options = (4, 5, 6)
    with compiles() as n:
        score_multiple_choice(model, ids, mask, options, [0, 1, 2], batch_size=3, progress=False)
    assert n() == 2
    with compiles() as n:
        score_multiple_choice(model, ids + 1, mask, options, [0, 1, 2], batch_size=3, progress=False)
    assert n() == 0
