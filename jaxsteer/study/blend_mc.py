"""BLEnD's multiple-choice file scored by log-likelihood: a jaxsteer variant, labelled as ours wherever it is
written (BLEnD's own protocol parses a generated JSON answer)."""

from __future__ import annotations

import numpy as np

from jaxsteer.model.model import Model
from jaxsteer.study.evaluate import _tokenizer

BLEND_MC_LL_LABEL = "blend_mc_ll (jaxsteer variant: summed log-likelihood of each choice; not BLEnD's protocol)"


def blend_mc_loglik_accuracy(
    model: Model, source: str, country: str, steering=None, batch_size: int = 16, limit: int | None = None
) -> dict:
    """Accuracy (%) on BLEnD's multiple-choice file by log-likelihood — **our** variant, labelled so.

    BLEnD scores its MCQ by parsing a generated JSON answer; here each choice ``" " + text`` is scored by its
    summed log-likelihood after the prompt and the argmax is the prediction (lm-evaluation-harness style).
    """
    from jaxsteer.data.blend import load_blend_mc
    from jaxsteer.scoring import continuation_logprobs

    tok = _tokenizer(model)
    questions = load_blend_mc(source, country)[:limit]
    contexts, conts, owner = [], [], []
    for qi, q in enumerate(questions):
        ctx = tok(q.prompt, add_special_tokens=False)["input_ids"]
        ctx = [tok.bos_token_id, *ctx] if tok.bos_token_id is not None else ctx
        for choice in q.choices:
            contexts.append(ctx)
            conts.append(tok(" " + choice, add_special_tokens=False)["input_ids"])
            owner.append(qi)
    scores = continuation_logprobs(model, contexts, conts, steering, batch_size)
    correct, start = [], 0
    for q in questions:
        n = len(q.choices)
        correct.append(int(np.argmax(scores[start : start + n])) == q.answer)
        start += n
    return {"metric": BLEND_MC_LL_LABEL, "accuracy": 100.0 * float(np.mean(correct)), "n": len(correct)}
