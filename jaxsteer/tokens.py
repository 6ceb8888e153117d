"""Text ⇄ token batches: left-padded encoding (optionally through the chat template) and decoding."""

from __future__ import annotations

import numpy as np


def apply_chat(tokenizer, text: str) -> str:
    messages = [{"role": "user", "content": text}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def encode_batch(tokenizer, texts: list[str], chat: bool = False, add_bos: bool = True, pad_to: int | None = None):
    """Left-padded ``(ids, mask)`` int32 arrays; the chat template already holds ``<bos>``."""
    rows = []
    for text in texts:
        if chat:
            ids = tokenizer(apply_chat(tokenizer, text), add_special_tokens=False)["input_ids"]
        else:
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            bos = tokenizer.bos_token_id
            if add_bos and bos is not None and (not ids or ids[0] != bos):
                ids = [bos, *ids]
        rows.append(ids)
    width = max(max(len(r) for r in rows), pad_to or 0)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = np.full((len(rows), width), pad, np.int32)
    mask = np.zeros((len(rows), width), np.int32)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r) :] = r
            mask[i, width - len(r) :] = 1
    return ids, mask


def decode_new(tokenizer, tokens, config) -> list[str]:
    """Decode generated rows, stopping at the first EOS/pad."""
    out = []
    stop = {config.eos_token_id, config.pad_token_id, config.end_of_turn_token_id}
    for row in np.asarray(tokens).tolist():
        kept = []
        for t in row:
            if t in stop:
                break
            kept.append(t)
        out.append(tokenizer.decode(kept, skip_special_tokens=True))
    return out
