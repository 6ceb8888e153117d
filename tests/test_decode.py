"""``generate`` (prefill + compiled decode loop over a KV cache) against greedy decoding by full forwards.

The reference appends ``argmax(forward(..., logits_at="last"))`` one token at a time with the mask
extended. To compile the reference once, the sequence lives in a right-padded buffer of the final
length: the not-yet-generated slots are masked and, being later in time, cannot affect earlier ones.
Steered references use explicit position masks (one compile, and independent of the library's scope
logic). The window (3) is shorter than prompt + new tokens (6 + 8), and prompts are left-padded.
"""

from __future__ import annotations

import numpy as np
import pytest

import jaxsteer
from jaxsteer.config import tiny
from jaxsteer.errors import InputError
from jaxsteer.steering.plan import Steering

NEW = 8
NO_EOS = -1  # no token has this id: rows never stop, as in the full-forward reference
PROMPT_PADS = (0, 2, 4)


@pytest.fixture(scope="module")
def model(model_factory):
    return model_factory(tiny(sliding_window=3), seed=2, norm_std=0.3)


@pytest.fixture(scope="module")
def prompt():
    rng = np.random.RandomState(1)
    ids = rng.randint(3, 128, size=(len(PROMPT_PADS), 6)).astype(np.int32)
    mask = np.ones_like(ids)
    for row, pad in enumerate(PROMPT_PADS):
        ids[row, :pad], mask[row, :pad] = 0, 0
    return ids, mask


@pytest.fixture(scope="module")
def vectors(model):
    rng = np.random.RandomState(5)
    return {2: rng.randn(model.config.hidden_size).astype(np.float32), 5: rng.randn(model.config.hidden_size)}


def greedy_reference(model, ids, mask, steer_where=None, steer_plan=None, new: int = NEW) -> np.ndarray:
    """Greedy tokens by repeated full forwards.

    ``steer_where(prompt_mask, new)`` gives the explicit [B, T + new] mask of steered buffer slots, and
    ``steer_plan(mask)`` the plan: the reference never relies on the library's scope logic.
    """
    b, t = ids.shape
    seq = np.concatenate([ids, np.zeros((b, new), ids.dtype)], axis=1)
    seq_mask = np.concatenate([mask, np.zeros((b, new), mask.dtype)], axis=1)
    steering = None if steer_where is None else steer_plan(steer_where(mask, new))
    out = []
    for step in range(new):
        logits = jaxsteer.forward(model, seq, seq_mask, steering=steering, logits_at="last").logits
        nxt = np.asarray(logits).argmax(-1)
        seq[:, t + step], seq_mask[:, t + step] = nxt, 1
        out.append(nxt)
    return np.stack(out, axis=1)


def _plan(model, vectors, scope):
    return Steering.from_layers(model.config, vectors, gamma={2: 3.0, 5: -3.0}, scope=scope)


def _where(scope):
    """Which slots of the [B, T + new] buffer a scope steers, from the prompt mask alone."""

    def where(mask, new):
        b, t = mask.shape
        index = np.broadcast_to(np.arange(t + new), (b, t + new))
        if scope == "all":
            return np.ones((b, t + new), bool)
        if scope == "prompt":
            return index < t
        if scope == "generated":
            return index >= t
        full = np.concatenate([mask, np.ones((b, new), mask.dtype)], axis=1)
        return np.maximum(np.cumsum(full, axis=1) - 1, 0) >= scope  # absolute position ≥ start

    return where


@pytest.fixture(scope="module")
def greedy(model, prompt):
    tokens = np.asarray(jaxsteer.generate(model, prompt[0], NEW, prompt[1], eos_token_id=NO_EOS))
    return tokens


def test_greedy_matches_full_forwards(model, prompt, greedy):
    assert greedy.shape == (len(PROMPT_PADS), NEW) and greedy.dtype == np.int32
    np.testing.assert_array_equal(greedy, greedy_reference(model, *prompt))


@pytest.mark.parametrize("scope", ["all", "prompt", "generated", 5], ids=["all", "prompt", "generated", "start5"])
def test_steered_greedy_matches_full_forwards(scope, model, prompt, vectors, greedy):
    tokens = jaxsteer.generate(
        model, prompt[0], NEW, prompt[1], steering=_plan(model, vectors, scope), eos_token_id=NO_EOS
    )
    tokens = np.asarray(tokens)
    reference = greedy_reference(model, *prompt, _where(scope), lambda where: _plan(model, vectors, where))
    np.testing.assert_array_equal(tokens, reference)
    assert not np.array_equal(tokens, greedy)  # the steering changed the generation
    if scope == "generated":  # the first new token comes from the unsteered prompt
        np.testing.assert_array_equal(tokens[:, 0], greedy[:, 0])


def test_eos_stops_a_row_and_pads_after(model, prompt, greedy):
    eos = int(greedy[0, 2])  # a token the model really emits
    tokens, lengths = jaxsteer.generate(model, prompt[0], NEW, prompt[1], eos_token_id=eos, return_lengths=True)
    tokens, lengths = np.asarray(tokens), np.asarray(lengths)
    expected, expected_lengths = greedy.copy(), np.full(len(greedy), NEW)
    for row in range(len(greedy)):
        hits = np.flatnonzero(greedy[row] == eos)
        if hits.size:
            expected[row, hits[0] + 1 :] = model.config.pad_token_id
            expected_lengths[row] = hits[0] + 1
    assert expected_lengths[0] <= 3 < NEW
    np.testing.assert_array_equal(tokens, expected)
    np.testing.assert_array_equal(lengths, expected_lengths)


def test_sampling_is_seeded(model, prompt):
    def sample(seed):
        out = jaxsteer.generate(model, prompt[0], NEW, prompt[1], temperature=1.0, seed=seed, eos_token_id=NO_EOS)
        return np.asarray(out)

    first = sample(0)
    np.testing.assert_array_equal(first, sample(0))
    assert not np.array_equal(first, sample(1))
    assert first.min() >= 0 and first.max() < model.config.vocab_size
    big = sample(2**31 + 5)  # past int32: still a seed (the key is made in the program, as PRNGKey(seed))
    np.testing.assert_array_equal(big, sample(2**31 + 5))
    with pytest.raises(InputError, match="seed=4294967296 must be in"):
        sample(2**32)


def test_top_k_one_is_greedy(model, prompt, greedy):
    tokens = jaxsteer.generate(model, prompt[0], NEW, prompt[1], temperature=1.0, top_k=1, seed=3, eos_token_id=NO_EOS)
    np.testing.assert_array_equal(np.asarray(tokens), greedy)
