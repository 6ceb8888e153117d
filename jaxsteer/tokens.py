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

    if isinstance(texts, (str, bytes, bytearray)):  # iterated, one string would be one text per character
        raise InputError(f"{what}: expected a list of texts, got one {type(texts).__name__} (wrap it in a list)")
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
    if not out:
        raise InputError(f"no {what} given: expected at least one")
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


LETTER_CONTINUATIONS = (" A", " B", " C", " D")  # Global-MMLU's continuations: scored as one token each


def with_single_tokens(texts, must_have: tuple[str, ...] = LETTER_CONTINUATIONS) -> list[str]:
    """``texts`` and ``must_have`` repeated often enough that a small BPE trained on them merges each into one
    token (a trained tokenizer that splits " B" cannot score Global-MMLU)."""
    return [*texts, *([" ".join(must_have) * 50] * 20)]


def train_bpe_tokenizer(texts, folder: str, vocab_size: int = 2000, must_have: tuple[str, ...] = LETTER_CONTINUATIONS):
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
    tok.train_from_iterator(with_single_tokens(texts, must_have), trainer)
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
