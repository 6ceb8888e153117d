"""Model-side scoring: multiple-choice log-likelihoods and steered short-answer generation.

Multiple choice follows lm-evaluation-harness: the score of option ``c`` is the summed log-likelihood
of its continuation after the context. For single-letter continuations (Global-MMLU's " A" … " D")
that is one forward per question with logits at the last prompt position only; longer
continuations (``continuation_logprobs``) read logits at just the continuation positions.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxsteer.errors import InputError
from jaxsteer.model.decode import generate
from jaxsteer.model.model import Model, forward
from jaxsteer.shapes import longest_first, plan_for
from jaxsteer.sharding import to_host
from jaxsteer.steering.plan import Steering


def single_token_ids(tokenizer, continuations: Sequence[str]) -> tuple[int, ...]:
    """Token id of each continuation (e.g. ``" A"``); each must be exactly one token."""
    ids = []
    for text in continuations:
        toks = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(toks) != 1:
            raise InputError(f"continuation {text!r} is {len(toks)} tokens for this tokenizer; expected exactly 1")
        ids.append(int(toks[0]))
    return tuple(ids)


@functools.cache
def option_logprob_fn(option_ids: tuple[int, ...]):
    """``logits [..., V] → log p(option) [..., K]``; cached so sweeps reuse one compiled tail. Jitted: applied
    to a forward's logits it is one fused program a shape (eagerly, log-softmax and take compile apart)."""
    index = np.asarray(option_ids, np.int32)

    def fn(logits):
        return jnp.take(jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1), index, axis=-1)

    return jax.jit(fn)


@dataclasses.dataclass(frozen=True)
class MCResult:
    logprobs: np.ndarray  # [N, K]
    predictions: np.ndarray  # [N]
    correct: np.ndarray  # [N] bool

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.correct)) if len(self.correct) else float("nan")


def score_multiple_choice(
    model: Model,
    ids: np.ndarray,
    mask: np.ndarray,
    option_ids: Sequence[int],
    answers: Sequence[int] | np.ndarray,
    steering: Steering | None = None,
    batch_size: int = 16,
    progress: bool = True,
    widths=None,
) -> MCResult:
    """``acc`` of single-token options: argmax of log p(option | prompt), one forward per question, longest
    prompts first. ``widths``: the batches' padded widths (a :class:`~jaxsteer.shapes.Widths` planned for
    several lists at once; default: planned for this list, :func:`~jaxsteer.shapes.plan_widths`)."""
    answers = np.asarray(answers)
    if len(ids) != len(answers):
        raise InputError(f"{len(ids)} prompts but {len(answers)} answers")
    if len(ids) == 0:
        raise InputError("no questions to score")
    if np.any((answers < 0) | (answers >= len(option_ids))):
        raise InputError(f"answer index outside 0..{len(option_ids) - 1}")
    fn = option_logprob_fn(tuple(int(i) for i in option_ids))
    out = np.zeros((len(ids), len(option_ids)), np.float32)
    bar = _bar(len(ids), progress, "score MC")
    widths = widths or plan_for(model.config, [mask], batch_size)
    for rows, bi, bm in longest_first(ids, mask, batch_size, widths):
        logits = forward(model, bi, bm, steering=steering, logits_at="last").logits
        out[rows] = to_host(fn(logits))[: len(rows)]
        if bar is not None:
            bar.update(len(rows))
    if bar is not None:
        bar.close()
    pred = out.argmax(-1)
    return MCResult(logprobs=out, predictions=pred, correct=pred == answers)


def continuation_logprobs(
    model: Model,
    contexts: Sequence[Sequence[int]],
    continuations: Sequence[Sequence[int]],
    steering: Steering | None = None,
    batch_size: int = 16,
) -> np.ndarray:
    """Summed log p(continuation | context) for token-id lists (logits only at continuation positions)."""
    if len(contexts) != len(continuations):
        raise InputError(f"{len(contexts)} contexts but {len(continuations)} continuations")
    if any(len(c) == 0 for c in continuations):
        raise InputError("an empty continuation has no log-likelihood")
    seqs = [list(a) + list(b) for a, b in zip(contexts, continuations)]
    width = max(len(s) for s in seqs)
    k = max(len(c) for c in continuations)
    ids = np.zeros((len(seqs), width), np.int32)
    mask = np.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, width - len(s) :] = s
        mask[i, width - len(s) :] = 1
    out = np.zeros(len(seqs), np.float64)
    widths = plan_for(model.config, [mask], batch_size)
    for rows, bi, bm in longest_first(ids, mask, batch_size, widths):
        n, t = len(rows), bi.shape[1]
        index = np.full((bi.shape[0], k), t - 1, np.int32)
        targets = np.zeros((bi.shape[0], k), np.int32)
        valid = np.zeros((bi.shape[0], k), bool)
        for j, row in enumerate(rows):
            cont = continuations[row]
            m = len(cont)
            # logits at position p predict token p+1: the continuation occupies the last m slots
            index[j, :m] = np.arange(t - m - 1, t - 1)
            targets[j, :m] = cont
            valid[j, :m] = True
        logits = forward(model, bi, bm, steering=steering, logits_at=index).logits
        logp = to_host(jax.nn.log_softmax(logits, axis=-1))
        picked = np.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
        out[rows] = np.where(valid, picked, 0.0).sum(-1)[:n]
    return out


def generate_answers(
    model: Model,
    tokenizer,
    prompts: Sequence[str],
    max_new_tokens: int = 32,
    steering: Steering | None = None,
    chat: bool = False,
    batch_size: int = 16,
    progress: bool = True,
    plans=None,
    width: int | None = None,
) -> list[str] | list[list[str]]:
    """Greedy answers to text prompts (left-padded batches, steering by absolute position).

    ``plans`` (dense deltas ``[G, L, D]`` or a sweep ``Grid``) answers every prompt under every plan, one
    compiled generation per batch of prompts for all plans (``steering`` then only gives the scope), and
    returns one list of answers per plan. ``width``: pad prompts to at least this many tokens (one shape
    for several lists: see ``study.evaluate.blend_width``).
    """
    from jaxsteer.tokens import decode_new, encode_batch

    count = None if plans is None else len(getattr(plans, "deltas", plans))
    answers: list[list[str]] = [[] for _ in range(count or 1)]
    if not len(prompts):
        return answers if count else answers[0]
    # one prompt width for the whole list (its longest prompt, coarsely bucketed) and one batch shape:
    # the decode loop compiles once per list, and languages of similar lengths share it
    all_ids, all_mask = encode_batch(tokenizer, list(prompts), chat=chat)
    width = answer_width(all_ids.shape[1], width)
    all_ids = np.pad(all_ids, ((0, 0), (width - all_ids.shape[1], 0)))
    all_mask = np.pad(all_mask, ((0, 0), (width - all_mask.shape[1], 0)))
    bar = _bar(len(prompts) * (count or 1), progress, "generate")
    for lo in range(0, len(prompts), batch_size):
        ids, mask = all_ids[lo : lo + batch_size], all_mask[lo : lo + batch_size]
        n = len(ids)
        if n < batch_size:  # the last prompt repeated: constant batch shape
            ids = np.concatenate([ids, np.repeat(ids[-1:], batch_size - n, axis=0)])
            mask = np.concatenate([mask, np.repeat(mask[-1:], batch_size - n, axis=0)])
        tokens = to_host(generate(model, ids, max_new_tokens, mask, steering=steering, plans=plans))
        for g, rows in enumerate(tokens if count else tokens[None]):
            answers[g] += decode_new(tokenizer, rows, model.config)[:n]
        if bar is not None:
            bar.update(n * (count or 1))
    if bar is not None:
        bar.close()
    return answers if count else answers[0]


def answer_width(longest: int, width: int | None) -> int:
    """The padded prompt width of :func:`generate_answers` for a list whose longest prompt has ``longest``
    tokens: one width for the whole list, coarsely bucketed, so that the decode loop compiles once per list
    and lists of similar lengths share it; a ``width`` given by the caller is already one shape for many
    lists (rounded to 16, not coarsened further)."""
    from jaxsteer.shapes import bucket, coarse_bucket

    return bucket(max(longest, width)) if width else coarse_bucket(longest)


def compile_answers_ahead(
    model: Model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 32, steering=None, chat: bool = False,
    batch_size: int = 16, plans=None, width: int | None = None,
) -> int:  # fmt: skip
    """Start compiling, in the background, the generation a later :func:`generate_answers` with the same
    arguments runs (the prompts give its width; the plans' structure, not their values, its program)."""
    from jaxsteer.model.decode import compile_generate_ahead
    from jaxsteer.tokens import encode_batch

    if not len(prompts):
        return 0
    longest = encode_batch(tokenizer, list(prompts), chat=chat)[0].shape[1]
    return compile_generate_ahead(
        model, batch_size, answer_width(longest, width), max_new_tokens, steering=steering, plans=plans
    )


def _bar(total: int, enabled: bool, desc: str):
    from jaxsteer.progress import bar

    return bar(total, desc, "q", enabled, leave=False)
