"""The BLEnD multiple-choice log-likelihood variant (``jaxsteer.study.blend_mc``)."""

from __future__ import annotations

import numpy as np
from tiny_checkpoint import tiny_model  # noqa: F401


def test_blend_mc_loglik_variant_is_labelled_and_matches_brute_force(tiny_model):  # noqa: F811
    """Our BLEnD-MCQ log-likelihood variant: argmax of per-choice continuation scores, labelled as ours."""
    import os

    from jaxsteer.data.blend import load_blend_mc
    from jaxsteer.scoring import continuation_logprobs
    from jaxsteer.study.blend_mc import BLEND_MC_LL_LABEL, blend_mc_loglik_accuracy

    fixtures = os.path.join(os.path.dirname(__file__), "fixtures", "data")
    out = blend_mc_loglik_accuracy(tiny_model, fixtures, "South_Korea", batch_size=4)
    assert out["metric"] == BLEND_MC_LL_LABEL and "jaxsteer variant" in out["metric"]
    tok = tiny_model.tokenizer
    qs = load_blend_mc(fixtures, "South_Korea")
    hits = 0
    for q in qs:
        ctx = [tok.bos_token_id, *tok(q.prompt, add_special_tokens=False)["input_ids"]]
        conts = [tok(" " + c, add_special_tokens=False)["input_ids"] for c in q.choices]
        s = continuation_logprobs(tiny_model, [ctx] * len(conts), conts, batch_size=4)
        hits += int(np.argmax(s)) == q.answer
    assert out["n"] == len(qs)
    assert abs(out["accuracy"] - 100.0 * hits / len(qs)) < 1e-9


def test_the_variant_stays_importable_from_evaluate():
    from jaxsteer.study import blend_mc, evaluate

    assert evaluate.blend_mc_loglik_accuracy is blend_mc.blend_mc_loglik_accuracy
    assert evaluate.BLEND_MC_LL_LABEL == blend_mc.BLEND_MC_LL_LABEL
