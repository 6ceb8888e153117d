"""Locally trained tokenizers add ``<bos>`` like Gemma's; jaxsteer's own encoding still has exactly one."""

from __future__ import annotations

import numpy as np
import pytest

from jaxsteer.tokens import BOS, encode_batch, train_bpe_tokenizer

TEXTS = [
    "대한민국에서 가장 인기 있는 과일은 무엇인가요?",
    "What is the most popular fruit?",
    "在中国最受欢迎的水果是什么？",
] * 5


@pytest.fixture(scope="module", params=["bpe", "cla"])
def trained(request, tmp_path_factory):
    """(tokenizer, folder) from each local trainer: ``tokens.train_bpe_tokenizer`` and ``cla.data.train_tokenizer``."""
    folder = tmp_path_factory.mktemp(request.param)
    if request.param == "bpe":
        tok = train_bpe_tokenizer(TEXTS, str(folder), vocab_size=400)
    else:
        from jaxsteer.cla.data import train_tokenizer

        tok = train_tokenizer(TEXTS, 300)
        tok.save_pretrained(str(folder))
    return tok, folder


def test_tokenizer_call_adds_bos_like_gemma(trained):
    tok, folder = trained
    bos = tok.convert_tokens_to_ids(BOS)
    assert bos == tok.bos_token_id == 2  # Gemma's id
    ids = tok("What is the most popular fruit?")["input_ids"]
    assert ids[0] == bos and ids.count(bos) == 1
    assert tok("What is the most popular fruit?", add_special_tokens=False)["input_ids"] == ids[1:]
    pair = tok("What is", "the fruit?")["input_ids"]
    assert pair.count(bos) == 2 and pair[0] == bos
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    # what other tools read: the saved tokenizer.json itself and AutoTokenizer on the folder
    assert Tokenizer.from_file(str(folder / "tokenizer.json")).encode("fruit").ids[0] == bos
    assert AutoTokenizer.from_pretrained(str(folder))("fruit")["input_ids"] == tok("fruit")["input_ids"]


def test_encode_batch_has_exactly_one_bos(trained):
    tok, _ = trained
    texts = ["What is the most popular fruit?", "<bos>What is it?", "가장 인기 있는 과일"]
    ids, mask = encode_batch(tok, texts)
    for row, m, text in zip(ids, mask, texts):
        real = row[m.astype(bool)].tolist()
        assert real[0] == tok.bos_token_id and real.count(tok.bos_token_id) == 1, text
    # the same tokens as the tokenizer's own call (which now adds <bos> itself)
    first = ids[0][mask[0].astype(bool)].tolist()
    assert first == tok(texts[0])["input_ids"]
    no_bos, m = encode_batch(tok, texts[:1], add_bos=False)
    assert tok.bos_token_id not in no_bos[0][m[0].astype(bool)].tolist()
    if tok.chat_template:  # the chat template writes <bos> itself: still one
        chat, m = encode_batch(tok, texts[:1], chat=True)
        assert np.sum(chat[0][m[0].astype(bool)] == tok.bos_token_id) == 1


def test_chat_without_a_template_is_a_one_line_input_error(trained):
    """``jaxsteer generate --chat`` on a tokenizer without a chat template (the fixtures' BPE): one line, not
    transformers' traceback; the CLA tokenizer carries Gemma's template and encodes through it."""
    from jaxsteer.errors import InputError

    tok, _ = trained
    if tok.chat_template is None:
        with pytest.raises(InputError, match="no chat template: drop --chat / set chat: false"):
            encode_batch(tok, ["hi"], chat=True)
    else:
        ids, _ = encode_batch(tok, ["hi"], chat=True)
        assert tok.convert_tokens_to_ids("<start_of_turn>") in ids[0]


def test_texts_that_are_not_utf8_are_one_line_naming_the_text_and_byte():
    from jaxsteer.errors import InputError
    from jaxsteer.tokens import check_texts

    argv_text = b"ab\xb1c".decode("utf-8", "surrogateescape")  # how Python hands over a non-UTF-8 argument
    with pytest.raises(InputError, match=r"^--prompt 2 is not UTF-8: byte 0xb1 at offset 2$"):
        check_texts(["fine", argv_text], "--prompt")
    with pytest.raises(InputError, match=r"^text 1 is not UTF-8: byte 0xff at offset 3$"):
        check_texts([b"abc\xff"])
    with pytest.raises(InputError, match=r"^text 1 holds a lone surrogate U\+D800 at offset 1$"):
        check_texts(["a\ud800"])
    with pytest.raises(InputError, match=r"^text 1 is not text but int$"):
        check_texts([3])
    assert check_texts([b"caf\xc3\xa9", "x"]) == ["café", "x"]
    # one string is not a list of texts (each character would be one row), and none is an error, not max([])
    with pytest.raises(InputError, match=r"^--prompt: expected a list of texts, got one str"):
        check_texts("hello", "--prompt")
    with pytest.raises(InputError, match=r"^no text given: expected at least one$"):
        check_texts([])
