"""The CLA objectives as pure functions over hidden states and token log-probabilities.

Conventions: ``targets[b, t]`` is the token that position ``t`` predicts (``input_ids[b, t + 1]``) and
``weights[b, t]`` is 1 where that target is a response token (0 on prompt, padding and the last
position), so the same ``[B, T]`` log-probabilities serve every loss. Means take an optional explicit
denominator so that gradient accumulation over micro-batches sums to exactly the full-batch loss.

Every objective reaches the vocabulary head through weighted sums of target log-probs ``S = W·log p``
(:func:`head_logprob_sums`), in sequence chunks so that only ``[B, chunk, V]`` fp32 logits exist at a time —
never ``[B, T, V]``. ``train.ce_impl`` picks how: ``fused`` (:mod:`jaxsteer.cla.fused_ce`, a custom VJP that
produces the head's gradients in the forward pass) or ``chunked`` (:func:`chunked_target_logprobs` under
``jax.checkpoint``: the backward pass recomputes each chunk's logits), kept as the reference.

The last section wires these into the three training objectives over the train tree and a batch
(``task``: MIST, ``align``: MIDALIGN's contrastive step, ``clo``), each returning ``(loss, metrics)``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from jaxsteer.cla import fused_ce
from jaxsteer.cla.lora import DTYPES, forward_hidden
from jaxsteer.model.family import DecoderConfig
from jaxsteer.model.layers import rms_norm
from jaxsteer.model.transformer import unembed


def target_logprobs(logits: Float[Array, "B T V"], targets: Int[Array, "B T"]) -> Float[Array, "B T"]:
    """``log softmax(logits)[b, t, targets[b, t]]`` from materialised logits (the reference for tests)."""
    logits = logits.astype(jnp.float32)
    picked = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    return picked - jax.nn.logsumexp(logits, axis=-1)


def chunked_target_logprobs(
    head: dict,
    h: Float[Array, "B T D"],
    targets: Int[Array, "B T"],
    *,
    config: DecoderConfig,
    chunk: int,
) -> Float[Array, "B T"]:
    """:func:`target_logprobs` of ``unembed(head, h)`` computed ``chunk`` positions at a time.

    ``head`` holds ``embed [V, D]`` and ``final_norm [D]``. Each chunk computes
    ``log p = z[target] − logsumexp(z)`` with ``z = unembed(h_chunk)``; the chunk body is rematerialised
    in the backward pass, so peak memory is one chunk's logits instead of the whole sequence's.
    """
    b, t, d = h.shape
    chunk = min(chunk, t)
    n = -(-t // chunk)
    pad = n * chunk - t
    if pad:  # padded positions compute a harmless log-prob that is sliced off below
        h = jnp.pad(h, ((0, 0), (0, pad), (0, 0)))
        targets = jnp.pad(targets, ((0, 0), (0, pad)))
    hs = h.reshape(b, n, chunk, d).swapaxes(0, 1)  # [n, B, C, D]: the batch axis keeps its sharding
    ts = targets.reshape(b, n, chunk).swapaxes(0, 1)

    @jax.checkpoint
    def one(hc, tc):
        return target_logprobs(unembed(head, hc, config), tc)

    _, out = jax.lax.scan(lambda c, xs: (c, one(*xs)), None, (hs, ts))
    return out.swapaxes(0, 1).reshape(b, n * chunk)[:, :t]


def masked_nll(
    logp: Float[Array, "B T"], weights: Float[Array, "B T"], denom: Float[Array, ""] | None = None
) -> Float[Array, ""]:
    """MIST's causal-LM loss on response tokens: ``−Σ w·log p / Σ w`` (or ``/ denom``).

    Prompt tokens carry weight 0, so they condition the response but are never predicted.
    """
    denom = jnp.maximum(jnp.sum(weights), 1.0) if denom is None else denom
    return -jnp.sum(weights * logp) / denom


def sequence_logprob(logp: Float[Array, "B T"], weights: Float[Array, "B T"]) -> Float[Array, "B"]:
    """``log π(response | prompt) = Σ_t w[t]·log p[t]`` per row."""
    return jnp.sum(weights * logp, axis=-1)


def mean_pool(h: Float[Array, "B T D"], mask: Int[Array, "B T"] | None) -> Float[Array, "B D"]:
    """Mean of ``h`` over the real (``mask = 1``) tokens of each row; padding never enters the mean."""
    if mask is None:
        return jnp.mean(h, axis=1)
    m = mask.astype(h.dtype)[..., None]
    return jnp.sum(h * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1.0)


def info_nce_terms(
    p0: Float[Array, "P D"],
    p1: Float[Array, "P D"],
    tau: float,
    symmetric: bool = False,
    source: Int[Array, "P"] | None = None,
):
    """Per-anchor InfoNCE losses ``[P]`` (summed by :func:`info_nce`); see there for the formula."""
    z0 = p0 / jnp.maximum(jnp.linalg.norm(p0, axis=-1, keepdims=True), 1e-8)
    z1 = p1 / jnp.maximum(jnp.linalg.norm(p1, axis=-1, keepdims=True), 1e-8)
    logits = (z1 @ z0.T) / tau  # logits[i, j] = cos(p0_j, p1_i) / τ: row = anchor p1_i, column = candidate p0_j
    if source is not None:
        logits = jnp.where(false_negatives(source), -jnp.inf, logits)
    diag = jnp.diagonal(logits)
    terms = jax.nn.logsumexp(logits, axis=1) - diag
    if symmetric:  # the other direction: anchor p0_j against candidates p1_i (columns of the same matrix)
        terms = 0.5 * (terms + jax.nn.logsumexp(logits, axis=0) - diag)
    return terms


def false_negatives(source: Int[Array, "P"]) -> Bool[Array, "P P"]:
    """``[i, j]``: pair ``j`` is not pair ``i`` but has the same English sentence (FLORES is parallel: one
    English sentence per language in a batch mixing languages) — not a negative of ``i``, and left out."""
    same = source[:, None] == source[None, :]
    return same & ~jnp.eye(source.shape[0], dtype=bool)


def info_nce(
    p0: Float[Array, "P D"],
    p1: Float[Array, "P D"],
    tau: float = 0.1,
    symmetric: bool = False,
    denom: Float[Array, ""] | None = None,
    source: Int[Array, "P"] | None = None,
) -> Float[Array, ""]:
    """MIDALIGN's contrastive loss with in-batch negatives.

    ``p0`` pools the English side and ``p1`` the target-language side of ``P`` parallel pairs. With
    ``logits[i, j] = cos(p0_j, p1_i) / τ`` each target-language anchor ``p1_i`` must pick its own English
    sentence among all English sentences of the batch::

        L = (1/P) Σ_i [ −log softmax_j(logits[i, :])_i ] = (1/P) Σ_i [ logsumexp_j logits[i, j] − logits[i, i] ]

    ``symmetric`` averages this with the transposed direction (each ``p0_j`` picks among the ``p1``).
    ``source`` (an id per pair's English sentence): columns ``j ≠ i`` of the same sentence are left out of
    row ``i``'s softmax (:func:`false_negatives`) — their logit equals the positive's, so they would cancel it.
    """
    terms = info_nce_terms(p0, p1, tau, symmetric, source)
    return jnp.sum(terms) / (terms.shape[0] if denom is None else denom)


def dpo_terms(
    pi_chosen: Float[Array, "P"],
    pi_rejected: Float[Array, "P"],
    ref_chosen: Float[Array, "P"],
    ref_rejected: Float[Array, "P"],
    beta: float,
) -> Float[Array, "P"]:
    """Per-pair DPO losses ``−log σ(β·[(π_c − ref_c) − (π_r − ref_r)])`` (sequence log-probs)."""
    margin = beta * ((pi_chosen - ref_chosen) - (pi_rejected - ref_rejected))
    return jax.nn.softplus(-margin)  # = −log σ(margin), stable for large |margin|


def dpo_loss(
    pi_chosen: Float[Array, "P"],
    pi_rejected: Float[Array, "P"],
    ref_chosen: Float[Array, "P"],
    ref_rejected: Float[Array, "P"],
    beta: float = 0.1,
    denom: Float[Array, ""] | None = None,
) -> Float[Array, ""]:
    """Direct preference optimisation (Rafailov et al., 2023), mean over pairs::

        L = −(1/P) Σ_n log σ(β·[(log π(y⁺|x) − log π_ref(y⁺|x)) − (log π(y⁻|x) − log π_ref(y⁻|x))])

    Lowering it raises the policy's log-ratio of the chosen response ``y⁺`` above the rejected ``y⁻``;
    at ``π = π_ref`` it equals ``log 2``.
    """
    terms = dpo_terms(pi_chosen, pi_rejected, ref_chosen, ref_rejected, beta)
    return jnp.sum(terms) / (terms.shape[0] if denom is None else denom)


def clo_loss(nll: Float[Array, ""], dpo: Float[Array, ""], lam: float = 0.5) -> Float[Array, ""]:
    """CLO (Lee et al., 2025): ``L = λ·NLL(target-language responses) + (1 − λ)·DPO``.

    Pairs come from each example and its translation: EN prompt → chosen EN reply, rejected XX reply;
    XX prompt → chosen XX reply, rejected EN reply. The NLL term covers the chosen replies of the XX
    prompts only (the target-language responses).
    """
    return lam * nll + (1.0 - lam) * dpo


def head_logprob_sums(
    base: dict,
    h: Float[Array, "B T D"],
    targets: Int[Array, "B T"],
    weights: Float[Array, "K B T"],
    spec,
) -> Float[Array, "K"]:
    """``S[k] = Σ_{b,t} W[k,b,t]·log p(targets[b,t] | h[b,t])`` through the final norm and the tied head.

    ``base`` holds ``embed [V, D]`` (as stored: the fp32 master when it trains) and ``final_norm [D]``.
    ``fused``: the final RMSNorm in plain autodiff, then :func:`jaxsteer.cla.fused_ce.weighted_logprobs`
    (matmuls in the compute dtype); ``chunked``: :func:`chunked_target_logprobs`, then the sums.
    """
    cd = DTYPES[spec.compute_dtype]
    if spec.ce_impl == "fused":
        x = rms_norm(h, base["final_norm"], spec.config.rms_norm_eps)
        return fused_ce.weighted_logprobs(x, base["embed"], targets, weights, chunk=spec.chunk, dtype=cd)
    head_params = {"embed": base["embed"].astype(cd), "final_norm": base["final_norm"]}
    logp = chunked_target_logprobs(head_params, h, targets, config=spec.config, chunk=spec.chunk)
    return jnp.einsum("kbt,bt->k", weights.astype(jnp.float32), logp)


# --- objectives over the train tree: (tree, micro-batch, step-wide denominators) → (loss, metrics) ------
# A micro-batch holds ``ids``, ``targets``, ``weights`` ``[M, T]`` and ``mask`` (omitted for unpadded batches,
# which lets the cuDNN kernel run without a dense mask), plus ``index``/``nll`` ``[M/2]`` for CLO.
def logprob_sums(tree, mb, weights, spec, key, constrain) -> Float[Array, "K"]:
    h = forward_hidden(tree, mb["ids"], mb.get("mask"), spec, key=key, constrain=constrain)
    return head_logprob_sums(tree["base"], h, mb["targets"], weights, spec)


def task_objective(tree, mb, den, spec, key, constrain, ref=None):
    """MIST (and MIDALIGN's task step): response-token NLL (:func:`masked_nll` as one weighted sum)."""
    nll = -logprob_sums(tree, mb, mb["weights"][None], spec, key, constrain)[0] / den["tokens"]
    return nll, {"nll": nll}


def align_objective(tree, mb, den, spec, key, constrain, ref=None):
    """MIDALIGN's alignment step: InfoNCE between mean-pooled block-``l_align`` outputs (partial forward)."""
    h = forward_hidden(tree, mb["ids"], mb.get("mask"), spec, stop=spec.align_stop, key=key, constrain=constrain)
    pooled = mean_pool(h, mb.get("mask"))
    m = pooled.shape[0] // 2
    p0, p1 = pooled[:m], pooled[m:]  # rows are [EN_0..EN_m, XX_0..XX_m]
    source = mb.get("source")
    terms = info_nce_terms(p0, p1, spec.tau, spec.symmetric, source)
    z0 = p0 / jnp.linalg.norm(p0, axis=-1, keepdims=True)
    z1 = p1 / jnp.linalg.norm(p1, axis=-1, keepdims=True)
    sims = z1 @ z0.T
    if source is not None:  # the same English sentence of another language's pair is as right as the own
        sims = jnp.where(false_negatives(source), -jnp.inf, sims)
    hits = jnp.argmax(sims, axis=1) == jnp.arange(m)
    loss = jnp.sum(terms) / den["pairs"]
    return loss, {"info_nce": loss, "align_acc": jnp.sum(hits) / den["pairs"]}


def clo_objective(tree, mb, den, spec, key, constrain, ref=None):
    """CLO: λ·NLL on the target-language chosen replies + (1−λ)·DPO against cached reference log-probs.

    One head pass gives ``M + 1`` sums: each row's sequence log-prob (:func:`sequence_logprob`) and the
    NLL's weighted token sum (:func:`masked_nll`).
    """
    w = mb["weights"]
    m = w.shape[0] // 2  # rows are [chosen_0..chosen_m, rejected_0..rejected_m]
    nll_w = jnp.concatenate([w[:m] * mb["nll"][:, None], jnp.zeros_like(w[m:])])
    sums = logprob_sums(tree, mb, jnp.concatenate([fused_ce.row_weights(w), nll_w[None]]), spec, key, constrain)
    seq = sums[:-1]
    r = ref[mb["index"]]  # [m, 2] reference (chosen, rejected)
    terms = dpo_terms(seq[:m], seq[m:], r[:, 0], r[:, 1], spec.beta)
    dpo = jnp.sum(terms) / den["pairs"]
    nll = -sums[-1] / den["nll_tokens"]
    margin = (seq[:m] - r[:, 0]) - (seq[m:] - r[:, 1])
    acc = jnp.sum(margin > 0) / den["pairs"]
    return clo_loss(nll, dpo, spec.lam), {"nll": nll, "dpo": dpo, "reward_acc": acc}


OBJECTIVES = {"task": task_objective, "align": align_objective, "clo": clo_objective}


def denominators(kind: str, batch: dict) -> dict:
    """Step-wide normalisers from the whole ``[A, M, ...]`` batch (known before any forward)."""
    a, rows = batch["ids"].shape[:2]
    pairs = jnp.asarray(a * (rows // 2 if kind in ("align", "clo") else rows), jnp.float32)
    out = {"pairs": pairs, "tokens": jnp.maximum(jnp.sum(batch.get("weights", jnp.zeros(()))), 1.0)}
    if kind == "clo":
        m = rows // 2
        out["nll_tokens"] = jnp.maximum(jnp.sum(batch["weights"][:, :m] * batch["nll"][..., None]), 1.0)
    return out


@functools.lru_cache(maxsize=8)
def reference_fn(spec):
    """Jitted sequence log-probs ``Σ_t w·log p`` per row, no dropout: what CLO caches from the initial model."""

    def ref(tree, batch):
        return logprob_sums(tree, batch, fused_ce.row_weights(batch["weights"]), spec, None, lambda h: h)

    return jax.jit(ref)
