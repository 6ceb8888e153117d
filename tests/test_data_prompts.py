"""Prompt strings: Global-MMLU as lm-evaluation-harness, BLEnD inst-4, chat templating, EN/XX pairs."""

from pathlib import Path

import pytest

from jaxsteer.data.gmmlu import MCQuestion, load_gmmlu
from jaxsteer.data.prompts import apply_chat, blend_prompt, mc_prompt, mc_text, parallel_mc_pairs
from jaxsteer.errors import DataError

DATA = Path(__file__).parent / "fixtures" / "data"

GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<start_of_turn>"
    "{{ 'model' if message['role'] == 'assistant' else message['role'] }}\n"
    "{{ message['content'] | trim }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def _q(question="  What is 7 multiplied by 8?\n", options=("54", "56", "63", "64")):
    return MCQuestion(id="x", lang="en", question=question, options=options, answer=1)


def test_global_mmlu_template_matches_the_harness_string():
    # lm-evaluation-harness global_mmlu doc_to_text:
    # "{{question.strip()}}\nA. {{option_a}}\nB. {{option_b}}\nC. {{option_c}}\nD. {{option_d}}\nAnswer:"
    assert mc_text(_q()) == "What is 7 multiplied by 8?\nA. 54\nB. 56\nC. 63\nD. 64\nAnswer:"
    p = mc_prompt(_q())
    assert p.context == "What is 7 multiplied by 8?\nA. 54\nB. 56\nC. 63\nD. 64\nAnswer:"
    assert p.continuations == (" A", " B", " C", " D") and p.answer == 1


def test_template_is_english_in_every_language():
    q = next(q for q in load_gmmlu(DATA, "ko") if q.id == "high_school_geography/test/0")
    assert mc_prompt(q).context == (
        "지구에서 가장 큰 대양은 무엇입니까?\nA. 대서양\nB. 인도양\nC. 북극해\nD. 태평양\nAnswer:"
    )


class _StubTokenizer:
    def __init__(self):
        self.calls = []

    def apply_chat_template(self, messages, **kwargs):
        self.calls.append((messages, kwargs))
        return "<user>" + messages[0]["content"] + "<model>"


def test_chat_template_drops_the_delimiter():
    tok = _StubTokenizer()
    p = mc_prompt(_q(), chat_template=True, tokenizer=tok)
    assert p.context == "<user>What is 7 multiplied by 8?\nA. 54\nB. 56\nC. 63\nD. 64\nAnswer:<model>"
    assert p.continuations == ("A", "B", "C", "D")
    messages, kwargs = tok.calls[0]
    assert messages == [{"role": "user", "content": mc_text(_q())}]
    assert kwargs == {"tokenize": False, "add_generation_prompt": True}


def test_real_tokenizer_with_gemma_template():
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(WordLevel({"<pad>": 0, "<bos>": 1, "<unk>": 2}, unk_token="<unk>")),
        bos_token="<bos>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    text = apply_chat("Hello?", tok, GEMMA_TEMPLATE)
    assert text == "<bos><start_of_turn>user\nHello?<end_of_turn>\n<start_of_turn>model\n"
    with pytest.raises(DataError, match="cannot apply a chat template"):
        apply_chat("Hello?", tok, True)  # this tokenizer has no template of its own


def test_chat_template_without_tokenizer():
    with pytest.raises(DataError, match="no tokenizer"):
        mc_prompt(_q(), chat_template=True)


def test_blend_prompt_english_and_local():
    q = "What is the most popular fruit in South Korea?"
    assert blend_prompt(q) == (
        "Read the following question and provide a single answer without any explanations.\n\n"
        "Question: What is the most popular fruit in South Korea?\nAnswer:"
    )
    assert blend_prompt("대한민국에서 가장 인기 있는 과일은 무엇인가요?", "ko") == (
        "다음 질문을 읽고 설명 없이 단 하나의 답변만을 제공하시오.\n\n"
        "질문: 대한민국에서 가장 인기 있는 과일은 무엇인가요?\n답변:"
    )
    assert blend_prompt("中国最大的节日是什么？", "zh") == (
        "阅读以下问题并仅提供一个答案，无需任何解释。\n\n问题：中国最大的节日是什么？\n答案："
    )
    assert blend_prompt("x?", "ko", local_instruction=False).startswith("Read the following question")
    assert blend_prompt("x?", "am").startswith("Read the following question")  # no translation: English
    assert blend_prompt("x?", "es", chat_template=True, tokenizer=_StubTokenizer()).startswith("<user>Lee la")


def test_parallel_pairs_share_sample_ids():
    en, fa = load_gmmlu(DATA, "en"), load_gmmlu(DATA, "fa")
    pairs = parallel_mc_pairs(en, fa)
    assert len(pairs) == 17
    assert pairs[0] == (mc_prompt(en[0]).context, mc_prompt(fa[0]).context)
    assert pairs[0][1].startswith("حاصل‌ضرب 7 در 8 چند است؟\nA. 54")
