"""Prompt strings: Global-MMLU exactly as lm-evaluation-harness builds it, BLEnD's short-answer instruction.

Scores are only comparable with published numbers if the context string is byte-identical to the
harness's, so the Global-MMLU template is a single function with a test pinned to the harness string:
``{question.strip()}\\nA. {a}\\nB. {b}\\nC. {c}\\nD. {d}\\nAnswer:`` (English "Answer:" and letters A–D
in every language), continuations ``" A"`` … ``" D"``. With a chat template the context is the templated
user turn plus the generation prompt and the target delimiter becomes ``""`` (continuations ``"A"`` …).

BLEnD short answers use the BLEnD paper's ``inst-4`` instruction ("Read the following question and
provide a single answer without any explanations.") with its ``Question:``/``Answer:`` frame. The
local-language versions are BLEnD's own translations (``data/prompts/{Country}_prompts.csv``, inst-4)
for zh, ko, es, id, el, fa; other languages fall back to the English instruction.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from jaxsteer.data.gmmlu import LETTERS, MCQuestion, align_parallel
from jaxsteer.errors import DataError

ChatTemplate = bool | str | None
"""``None``/``False``: raw text; ``True``: the tokenizer's own chat template; a string: that Jinja template."""


@dataclasses.dataclass(frozen=True)
class MCPrompt:
    """A multiple-choice request: score ``context + continuations[i]`` for each option."""

    context: str
    continuations: tuple[str, ...]
    answer: int


def mc_text(q: MCQuestion) -> str:
    """lm-evaluation-harness ``global_mmlu`` ``doc_to_text`` for one question (no chat template)."""
    a, b, c, d = q.options
    return f"{q.question.strip()}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer:"


def mc_prompt(q: MCQuestion, chat_template: ChatTemplate = None, tokenizer: Any = None) -> MCPrompt:
    """Context and the four continuations of a Global-MMLU question.

    Without a chat template the harness's target delimiter ``" "`` precedes each letter; with one, the
    context is the templated user turn (generation prompt added) and the delimiter is ``""``.
    """
    text = mc_text(q)
    if not chat_template:
        return MCPrompt(text, tuple(" " + x for x in LETTERS), q.answer)
    return MCPrompt(apply_chat(text, tokenizer, chat_template), LETTERS, q.answer)


def apply_chat(text: str, tokenizer: Any, chat_template: ChatTemplate = True) -> str:
    """``text`` as one user turn through ``tokenizer.apply_chat_template`` with the generation prompt."""
    if not chat_template:
        return text
    if tokenizer is None or not hasattr(tokenizer, "apply_chat_template"):
        raise DataError("a chat template was requested but no tokenizer with apply_chat_template was given")
    kwargs: dict[str, Any] = {"tokenize": False, "add_generation_prompt": True}
    if isinstance(chat_template, str):
        kwargs["chat_template"] = chat_template
    try:
        out = tokenizer.apply_chat_template([{"role": "user", "content": text}], **kwargs)
    except ValueError as e:  # transformers: "Cannot use chat template functions ... no template"
        raise DataError(f"tokenizer cannot apply a chat template: {str(e).splitlines()[0][:160]}") from None
    return str(out)


# --- BLEnD ----------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class BlendInstruction:
    """BLEnD's frame: instruction, blank line, question prefix + question, answer label on its own line."""

    instruction: str
    question_prefix: str  # includes its trailing space where the language uses one
    answer_label: str

    def format(self, question: str) -> str:
        return f"{self.instruction}\n\n{self.question_prefix}{question.strip()}\n{self.answer_label}"


BLEND_INSTRUCTIONS: dict[str, BlendInstruction] = {
    "en": BlendInstruction(
        "Read the following question and provide a single answer without any explanations.",
        "Question: ",
        "Answer:",
    ),
    "zh": BlendInstruction("阅读以下问题并仅提供一个答案，无需任何解释。", "问题：", "答案："),
    "ko": BlendInstruction("다음 질문을 읽고 설명 없이 단 하나의 답변만을 제공하시오.", "질문: ", "답변:"),
    "es": BlendInstruction(
        "Lee la siguiente pregunta y contesta con una sola respuesta sin explicaciones.",
        "Pregunta: ",
        "Respuesta:",
    ),
    "id": BlendInstruction(
        "Bacalah pertanyaan berikut dan berikan satu jawaban tanpa penjelasan apa pun.",
        "Pertanyaan: ",
        "Jawaban:",
    ),
    "el": BlendInstruction(
        "Διάβασε την ακόλουθη ερώτηση και δώσε μία μόνο απάντηση χωρίς καμία εξήγηση.",
        "Ερώτηση: ",
        "Απάντηση:",
    ),
    "fa": BlendInstruction("سوال زیر را بخوانید و یک پاسخ بدون هیچ توضیحی ارائه دهید.", "سوال: ", "جواب:"),
}
"""BLEnD ``inst-4`` per language; missing languages use English (see module docstring)."""


def blend_text(question: str, lang: str = "en", *, local_instruction: bool = True) -> str:
    """BLEnD short-answer prompt text; the instruction is in ``lang`` when BLEnD translated it."""
    key = lang if local_instruction and lang in BLEND_INSTRUCTIONS else "en"
    return BLEND_INSTRUCTIONS[key].format(question)


def blend_prompt(
    question: str,
    lang: str = "en",
    *,
    local_instruction: bool = True,
    chat_template: ChatTemplate = None,
    tokenizer: Any = None,
) -> str:
    """The generation prompt for a BLEnD short-answer question, optionally chat-templated."""
    return apply_chat(blend_text(question, lang, local_instruction=local_instruction), tokenizer, chat_template)


# --- EN/XX pairs ----------------------------------------------------------------------------------
def parallel_mc_pairs(
    en: Sequence[MCQuestion],
    xx: Sequence[MCQuestion],
    *,
    chat_template: ChatTemplate = None,
    tokenizer: Any = None,
    strict: bool = False,
) -> list[tuple[str, str]]:
    """(English context, XX context) of the same ``sample_id``: the contrastive inputs of the EN vector."""
    return [
        (mc_prompt(e, chat_template, tokenizer).context, mc_prompt(x, chat_template, tokenizer).context)
        for e, x in align_parallel(en, xx, strict=strict)
    ]
