"""Text ⇄ token batches: left-padded encoding (optionally through the chat template) and decoding."""

from __future__ import annotations

import numpy as np

# Gemma's special tokens at Gemma's ids where Gemma fixes them (pad 0, eos 1, bos 2, unk 3); the locally
# trained tokenizers (fixtures, the organism) use them, with Gemma's chat template.
PAD, EOS, BOS, UNK, START_OF_TURN, END_OF_TURN = (
    "<pad>",
    "<eos>",
    "<bos>",
    "<unk>",
    "<start_of_turn>",
    "<end_of_turn>",
)
SPECIAL_TOKENS: tuple[str, ...] = (PAD, EOS, BOS, UNK, START_OF_TURN, END_OF_TURN)
SPLIT_PATTERN = r" ?[^\s\p{P}]+| ?\p{P}|\s"
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] | trim + '\\n\\n' -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{%- endif -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else '') }}"
    "{{ message['content'] | trim }}{{ '<end_of_turn>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}"
)


def bos_post_processor(bos_id: int):
    """Gemma's post-processor: ``tokenizer(text)`` starts with ``<bos>`` (and a pair with one per side).

    jaxsteer itself encodes with ``add_special_tokens=False`` and adds ``<bos>`` once (:func:`encode_batch`);
    the processor is for other tools run on a locally trained tokenizer (lm-evaluation-harness, vLLM,
    transformers pipelines), which rely on the tokenizer to add it, as Gemma's does.
    """
    from tokenizers import processors

    return processors.TemplateProcessing(
        single=f"{BOS}:0 $A:0", pair=f"{BOS}:0 $A:0 {BOS}:1 $B:1", special_tokens=[(BOS, int(bos_id))]
    )


def apply_chat(tokenizer, text: str) -> str:
    """``text`` as one user turn with the generation prompt, through the tokenizer's own chat template."""
    if getattr(tokenizer, "chat_template", None) is None:
        from jaxsteer.errors import InputError

        # transformers' own error is a multi-line ValueError from deep inside; say which setting to change
        raise InputError(
            "the tokenizer has no chat template: drop --chat / set chat: false, or use an instruct checkpoint"
        )
    messages = [{"role": "user", "content": text}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def check_texts(texts, what: str = "text") -> list[str]:
    """``texts`` as ``str``, bytes decoded as UTF-8; anything else is a one-line ``InputError`` naming the text.

    A command-line argument with bytes that are not UTF-8 reaches Python as lone surrogates (PEP 383), which
    the tokenizer rejects with a bare ``TypeError``; here it is ``--prompt 2 is not UTF-8: byte 0xb1 at offset 4``.
    """
    from jaxsteer.errors import InputError

    out = []
    for i, text in enumerate(texts, 1):
        if isinstance(text, (bytes, bytearray)):
            try:
                text = bytes(text).decode("utf-8")
            except UnicodeDecodeError as e:
                raise InputError(f"{what} {i} is not UTF-8: byte 0x{text[e.start]:02x} at offset {e.start}") from None
        if not isinstance(text, str):
            raise InputError(f"{what} {i} is not text but {type(text).__name__}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            char = ord(text[e.start])
            offset = len(text[: e.start].encode("utf-8", "surrogateescape"))
            if 0xDC80 <= char <= 0xDCFF:  # a byte the OS gave that was not UTF-8, kept as a surrogate escape
                raise InputError(f"{what} {i} is not UTF-8: byte 0x{char - 0xDC00:02x} at offset {offset}") from None
            raise InputError(f"{what} {i} holds a lone surrogate U+{char:04X} at offset {offset}") from None
        out.append(text)
    return out


def encode_batch(tokenizer, texts: list[str], chat: bool = False, add_bos: bool = True, pad_to: int | None = None):
    """Left-padded ``(ids, mask)`` int32 arrays; the chat template already holds ``<bos>``."""
    rows = []
    for text in check_texts(texts):
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
    from jaxsteer.model.decode import default_eos_ids
    from jaxsteer.sharding import to_host  # generated tokens may be sharded over several processes

    out = []
    stop = {config.pad_token_id, *default_eos_ids(config)}
    for row in to_host(tokens).tolist():
        kept = []
        for t in row:
            if t in stop:
                break
            kept.append(t)
        out.append(tokenizer.decode(kept, skip_special_tokens=True))
    return out


def train_bpe_tokenizer(
    texts, folder: str, vocab_size: int = 2000, must_have: tuple[str, ...] = (" A", " B", " C", " D")
):
    """A small byte-level BPE tokenizer trained locally (tests, fixtures, offline experiments).

    Special tokens follow Gemma's ids where they matter: ``<pad>`` 0, ``<eos>`` 1, ``<bos>`` 2,
    ``<unk>`` 3, and ``tokenizer(text)`` adds ``<bos>`` as Gemma's tokenizer does (:func:`bos_post_processor`).
    ``must_have`` strings are repeated in the training text so each becomes one token (Global-MMLU's
    letter continuations). Returns a ``PreTrainedTokenizerFast`` saved to ``folder``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, EOS, BOS, UNK],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    boost = [" ".join(must_have) * 50] * 20
    tok.train_from_iterator([*texts, *boost], trainer)
    tok.post_processor = bos_post_processor(tok.token_to_id(BOS))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        eos_token=EOS,
        bos_token=BOS,
        unk_token=UNK,
        padding_side="left",
    )
    fast.save_pretrained(folder)
    return fast


def bucket(n: int, multiple: int = 16) -> int:
    """Round a length up to a multiple: padded shapes repeat, so compiled functions are reused."""
    return max(multiple, -(-n // multiple) * multiple)


def coarse_bucket(n: int, multiple: int = 16, per_octave: int = 2) -> int:
    """Round a length up to the next of ``per_octave`` steps per octave, each a multiple of ``multiple``
    (two: 16, 32, 48, 64, 96, 128, 192, 256, 384, 512, …; four: …, 128, 160, 192, 224, 256, 320, 384, 448, …).

    For generation, whose compile is costly (a large model's decode loop compiles for tens of seconds) and
    whose prompt padding is cheap (decoding is memory-bound): a few shapes serve every language. Scoring,
    whose padding costs compute, takes four steps (≤ 25 % padding; sorted rows pad less).
    """
    k = 0
    while True:
        for j in range(per_octave):  # m·2^k·(1 + j/per_octave)
            step = (multiple << k) * (per_octave + j) // per_octave
            if step >= n and step % multiple == 0:
                return step
        k += 1


def balanced_rows(n: int, batch_size: int) -> int:
    """Rows per call that split ``n`` prompts into as few calls as ``batch_size`` allows, evenly: 100 prompts
    at 32 → 4 calls of 25, not 3 of 32 and one of 4 real rows beside 28 fillers. For lists of one size across
    languages (Dev2): the shape still repeats."""
    calls = max(1, -(-n // batch_size))
    return max(1, -(-n // calls))


def scoring_width(n: int) -> int:
    """The padded width of a scoring batch (prefill-bound: four widths per octave)."""
    return coarse_bucket(n, per_octave=4)


def longest_first(ids: np.ndarray, mask: np.ndarray, batch_size: int, widths=bucket):
    """:func:`batches` over the rows sorted by length, longest first (each batch is as narrow as its rows
    allow), yielding ``(row indices into ids, ids, mask)``."""
    order = np.argsort(-np.asarray(mask).sum(axis=1), kind="stable")
    for rows, bi, bm in batches(np.asarray(ids)[order], np.asarray(mask)[order], batch_size, widths):
        yield order[rows], bi, bm


def batches(ids: np.ndarray, mask: np.ndarray, batch_size: int, widths=bucket):
    """Yield ``(slice, ids, mask)`` with the time axis trimmed and bucketed (``widths``: :func:`bucket`, or
    :func:`coarse_bucket` where a new shape's compile costs more than the padding) and the rows padded to
    ``batch_size``."""
    for lo in range(0, len(ids), batch_size):
        bi, bm = ids[lo : lo + batch_size], mask[lo : lo + batch_size]
        keep = bm.any(axis=0)
        bi, bm = bi[:, keep], bm[:, keep]
        width, rows = widths(bi.shape[1]), batch_size
        pi = np.zeros((rows, width), np.int32)
        pm = np.zeros((rows, width), np.int32)
        pi[: len(bi), width - bi.shape[1] :] = bi
        pm[: len(bi), width - bi.shape[1] :] = bm
        pm[len(bi) :, -1] = 1  # filler rows: one dummy token, results dropped
        yield slice(lo, lo + len(bi)), pi, pm
