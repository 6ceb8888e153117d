"""The inputs of ``bench/pipeline.py``: a synthetic data root, a tokenizer, the model config and random weights.

Everything here is deterministic from the run spec, so the parent process and each child process (the
jaxsteer runs and the HF baseline) rebuild the same things; only the data root and the tokenizer are written
to disk (by the parent), the weights never are.

* **Global-MMLU** (``global_mmlu/{lang}/test.csv``, the released columns): one parallel question set over
  English and every target language — the same concept sequence rendered with each language's lexicon of
  made-up words in its own script — so EN pairs are translations of each other. Questions run 55–125
  words plus four options of 2–10 words: about 150–250 tokens per prompt after the chat template, like
  MMLU (the CPU smoke run with ``tiny`` uses shorter ones: fewer padded widths, fewer compiles). All rows are annotated culturally agnostic (the CA subset the paper uses) but for one in ten
  extra culturally sensitive rows that the CA filter drops.
* **BLEnD** (``blend/questions/{Country}_questions.csv`` and ``blend/annotations/{Country}_data.json``): the
  released phrasings in ``tests/fixtures/data`` (local-language questions that name the country, so
  jaxsteer's decontextualisation rules apply, and their annotated answers) cycled to the wanted count, each
  repeat with a few made-up local words appended so no two prompts are identical.
* **Weights**: bf16 with a random sign and mantissa and a fixed exponent (|w| in [2⁻⁶, 2⁻⁵), std ≈ 0.024),
  drawn with NumPy from a seed per tensor and chunk (4 M values), in threads; zero norm weights (Gemma's
  norms scale by 1 + w). Both the jaxsteer subset run and the HF baseline build their copy from this, so
  they compute with the same weights.
"""

from __future__ import annotations

import csv
import json
import os
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "data")
LANGS = ("zh", "ko", "es", "id", "el", "fa")  # the languages the BLEnD fixtures cover
GAMMAS = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0)
SUBJECTS = (
    ("abstract_algebra", "STEM"), ("anatomy", "STEM"), ("astronomy", "STEM"), ("college_biology", "STEM"),
    ("college_physics", "STEM"), ("computer_security", "STEM"), ("econometrics", "Social Sciences"),
    ("high_school_psychology", "Social Sciences"), ("sociology", "Social Sciences"), ("philosophy", "Humanities"),
    ("formal_logic", "Humanities"), ("jurisprudence", "Humanities"), ("management", "Business"),
    ("marketing", "Business"), ("nutrition", "Medical"), ("virology", "Medical"), ("global_facts", "Other"),
)  # fmt: skip
_PUNCT = {"zh": ("。", "？"), "fa": (".", "؟"), "el": (".", ";")}
_LATIN = ("b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z")
_SCRIPTS = {
    "en": (_LATIN, ("a", "e", "i", "o", "u")),
    "es": (_LATIN[:12] + ("ll", "ch", "ñ"), ("a", "e", "i", "o", "u", "á", "é", "í", "ó", "ú")),
    "id": (_LATIN + ("ng", "ny"), ("a", "i", "u", "e", "o")),
    "el": (tuple("βγδζθκλμνξπρστφχ"), tuple("αεηιουωάέήίόύώ")),
    "fa": (tuple("بپتجچخدرزژسشفقکگلمنهی"), ("", "ا", "و", "ی")),
}


# --- words and text ----------------------------------------------------------------------------------
def rng_for(seed: int, *names) -> np.random.Generator:
    return np.random.default_rng([seed, *(zlib.crc32(str(n).encode()) for n in names)])


def _word(rng: np.random.Generator, lang: str) -> str:
    if lang == "zh":
        return "".join(chr(int(rng.integers(0x4E00, 0x9FA6))) for _ in range(int(rng.integers(1, 3))))
    if lang == "ko":
        return "".join(chr(int(rng.integers(0xAC00, 0xD7A4))) for _ in range(int(rng.integers(1, 4))))
    onsets, vowels = _SCRIPTS[lang]
    return "".join(onsets[rng.integers(len(onsets))] + vowels[rng.integers(len(vowels))]
                   for _ in range(int(rng.integers(1, 4))))  # fmt: skip


def lexicon(lang: str, size: int, seed: int) -> list[str]:
    rng, words, seen = rng_for(seed, "lexicon", lang), [], set()
    while len(words) < size:
        w = _word(rng, lang)
        if w not in seen:
            seen.add(w)
            words.append(w)
    return words


def _render(concepts: list[list[int]], words: list[str], lang: str, question: bool) -> str:
    """Sentences of concept ids in ``lang``'s words; the last one ends with a question mark when asked."""
    stop, ask = _PUNCT.get(lang, (".", "?"))
    out = []
    for i, sentence in enumerate(concepts):
        end = ask if question and i == len(concepts) - 1 else stop
        out.append(" ".join(words[c] for c in sentence) + end)
    return " ".join(out)


def _concepts(rng: np.random.Generator, n_words: int, vocab: int) -> list[list[int]]:
    ranks = np.arange(vocab)
    p = 1.0 / (ranks + 10.0)  # Zipf-like: frequent function-word-like concepts, a long tail
    ids = rng.choice(vocab, size=n_words, p=p / p.sum()).tolist()
    sentences, at = [], 0
    while at < n_words:
        n = int(rng.integers(8, 19))
        sentences.append(ids[at : at + n])
        at += n
    return sentences


# --- Global-MMLU ---------------------------------------------------------------------------------------
GMMLU_COLUMNS = (
    "sample_id", "subject", "subject_category", "question", "option_a", "option_b", "option_c", "option_d",
    "answer", "required_knowledge", "time_sensitive", "reference", "culture", "region", "country",
    "cultural_sensitivity_label", "is_annotated",
)  # fmt: skip


def write_gmmlu(root: str, langs, rows: int, seed: int, words=(55, 125), vocab: int = 3000) -> list[str]:
    """``rows`` CA questions (+ rows/10 CS ones) per language, parallel over English and ``langs``.

    Questions have ``words[0]..words[1]`` words, options ``words[0]//25..words[1]//12`` (2–10 by default).
    """
    total = rows + rows // 10
    opt_lo, opt_hi = max(1, words[0] // 25), max(2, words[1] // 12)
    plan = []
    for i in range(total):
        rng = rng_for(seed, "gmmlu", i)
        subject, category = SUBJECTS[i % len(SUBJECTS)]
        q = _concepts(rng, int(rng.integers(words[0], words[1] + 1)), vocab)
        opts = [_concepts(rng, int(rng.integers(opt_lo, opt_hi + 1)), vocab) for _ in range(4)]
        plan.append((f"{subject}/test/{i}", subject, category, q, opts, "ABCD"[int(rng.integers(4))], i >= rows))
    texts = []
    for lang in ("en", *langs):
        words = lexicon(lang, vocab, seed)
        folder = os.path.join(root, "global_mmlu", lang)
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "test.csv"), "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(GMMLU_COLUMNS)
            for sid, subject, category, q, opts, answer, sensitive in plan:
                question = _render(q, words, lang, question=True)
                options = [_render(o, words, lang, question=False).rstrip(".。") for o in opts]
                texts.append("\n".join([question, *options]))
                w.writerow([sid, subject, category, question, *options, answer, "['none', 'none', 'none', 'none']",
                            "['No', 'No', 'No', 'No']", *["['-', '-', '-', '-']"] * 4, "CS" if sensitive else "CA",
                            "True"])  # fmt: skip
    return texts


# --- BLEnD ---------------------------------------------------------------------------------------------
def write_blend(root: str, langs, rows: int, seed: int) -> list[str]:
    """``rows`` scored questions per country from the fixture phrasings (see the module docstring)."""
    from jaxsteer.data.blend import load_blend
    from jaxsteer.data.languages import blend_country

    texts = []
    for folder in ("questions", "annotations"):
        os.makedirs(os.path.join(root, "blend", folder), exist_ok=True)
    for lang in langs:
        country = blend_country(lang)
        base = [q for q in load_blend(FIXTURES, country) if not q.skipped]
        local, english = lexicon(lang, 400, seed + 1), lexicon("en", 400, seed + 1)
        rng = rng_for(seed, "blend", lang)
        qrows, annotations = [], {}
        for i in range(rows):
            src = base[i % len(base)]
            question, question_en = src.question, src.question_en
            if i >= len(base):  # a repeat: a few extra words so that every prompt differs
                picks = rng.integers(0, 400, size=int(rng.integers(1, 6)))
                question += " (" + " ".join(local[k] for k in picks) + ")"
                question_en += " (" + " ".join(english[k] for k in picks) + ")"
            qid = f"{src.id}-{i:04d}"
            qrows.append([i, qid, src.topic, src.source, question, question_en])
            texts += [question, question_en]
            annotations[qid] = {
                "question": question,
                "en_question": question_en,
                "annotations": [
                    {"answers": list(a.answers), "en_answers": list(a.en_answers), "count": a.count}
                    for a in src.annotations
                ],
                "idks": {
                    "idk": src.idk_counts.idk,
                    "no-answer": src.idk_counts.no_answer,
                    "not-applicable": src.idk_counts.not_applicable,
                },
            }
            texts += [a for ann in src.annotations for a in ann.answers]
        with open(os.path.join(root, "blend", "questions", f"{country}_questions.csv"), "w", encoding="utf-8",
                  newline="") as f:  # fmt: skip
            w = csv.writer(f)
            w.writerow(["", "ID", "Topic", "Source", "Question", "Translation"])
            w.writerows(qrows)
        with open(os.path.join(root, "blend", "annotations", f"{country}_data.json"), "w", encoding="utf-8") as f:
            json.dump(annotations, f, ensure_ascii=False)
    return texts


def build_world(work: str, langs, gmmlu_rows: int, blend_rows: int, vocab: int, seed: int = 0, words=(55, 125)):
    """Write the data root and train the tokenizer; returns ``(data_root, tokenizer_dir, tokenizer)``."""
    from jaxsteer.cla.data import train_tokenizer
    from jaxsteer.data.prompts import BLEND_INSTRUCTIONS

    root = os.path.join(work, "data")
    texts = write_gmmlu(root, langs, gmmlu_rows, seed, words)
    texts += write_blend(root, langs, blend_rows, seed)
    texts += [f"{i.instruction}\n\n{i.question_prefix}\n{i.answer_label}" for i in BLEND_INSTRUCTIONS.values()]
    texts += ["user model Answer: A B C D"] * 4
    tok = train_tokenizer(texts, vocab)
    tok_dir = os.path.join(work, "tokenizer")
    tok.save_pretrained(tok_dir)
    return root, tok_dir, tok


def load_tokenizer(tok_dir: str):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(tok_dir)


# --- the experiment's settings -------------------------------------------------------------------------
def model_config(name: str, vocab: int):
    """The named preset; ``tiny`` takes the tokenizer's vocabulary (its own 128 rows are too few for it)."""
    from jaxsteer.config import preset

    config = preset(name)
    if name == "tiny":
        return config.replace(vocab_size=vocab)
    if vocab > config.vocab_size:
        raise SystemExit(f"the tokenizer has {vocab} tokens, more than the {name} vocabulary ({config.vocab_size})")
    return config


def experiment_config(spec: dict, out: str, languages=None):
    """configs/experiments/sur_gemma3_12b.yaml's settings on the synthetic data."""
    from jaxsteer.study.experiment import ExperimentConfig

    return ExperimentConfig(
        data=spec["data"],
        languages=tuple(languages or spec["langs"]),
        dev1=spec["dev1"],
        dev2=spec["dev2"],
        chat=True,  # the tokenizer has Gemma's chat template, as the -it checkpoint the paper steers
        batch_size=spec["batch"],
        max_new_tokens=spec["new_tokens"],
        loc_gammas=tuple(spec["gammas"]),
        out=out,
        decode_layout=spec.get("decode_layout", "auto"),
    )


def subset_bench(spec: dict):
    """Benchmarks of one language cut to the subset: the first N test Global-MMLU and Dev2 BLEnD items."""
    from jaxsteer.study.experiment import Benchmarks

    sub = spec["subset"]

    class SubsetBenchmarks(Benchmarks):
        def gmmlu(self, lang, part):
            items = super().gmmlu(lang, part)
            return items[: sub["gmmlu"]] if part == "test" else items

        def blend(self, lang, part):
            items = super().blend(lang, part)
            return items[: sub["blend"]] if part == "dev2" else items

    return SubsetBenchmarks(experiment_config(spec, os.path.join(spec["work"], "subset"), [sub["lang"]]))


# --- weights -------------------------------------------------------------------------------------------
CHUNK = 1 << 22  # 4 M values: every 12B weight matrix splits over the threads
_EXPONENT = np.uint16(121 << 7)  # bf16 exponent field 121: |w| in [2^-6, 2^-5)


def weight_bits(seed: int, name: str, shape, pool: ThreadPoolExecutor) -> np.ndarray:
    """bf16 bit patterns (uint16) of one tensor: random sign and mantissa, fixed exponent."""
    size = int(np.prod(shape))
    out = np.empty(size, np.uint16)

    def fill(lo: int):
        n = min(CHUNK, size - lo)
        raw = rng_for(seed, name, lo).integers(-(2**63), 2**63 - 1, size=(n + 3) // 4, dtype=np.int64, endpoint=True)
        out[lo : lo + n] = (raw.view(np.uint16)[:n] & np.uint16(0x807F)) | _EXPONENT

    list(pool.map(fill, range(0, size, CHUNK)))
    return out.reshape(shape)


def weight_tensors(config):
    """``(jaxsteer key, layer or None, shape, is_norm)`` of every tensor, key by key (one stacked array at a time)."""
    from jaxsteer.model.transformer import layer_shapes

    yield "embed", None, (config.vocab_size, config.hidden_size), False
    yield "final_norm", None, (config.hidden_size,), True
    for key, shape in layer_shapes(config).items():
        for layer in range(config.num_layers):
            yield key, layer, shape, key.endswith("norm")


def host_tensor(seed: int, key: str, layer, shape, is_norm: bool, pool) -> np.ndarray:
    if is_norm:
        return np.zeros(shape, np.uint16)  # bf16 zero: Gemma's norms multiply by 1 + w
    return weight_bits(seed, f"{key}/{layer}", shape, pool)


def random_vector(config, seed: int) -> np.ndarray:
    """A random LOC-like vector set [L, D]: a direction per layer, norm ¼ of an embedding row's (≈ 0.024·√D·√D)."""
    v = rng_for(seed, "vector").standard_normal((config.num_layers, config.hidden_size)).astype(np.float32)
    target = 0.25 * 0.024 * config.hidden_size
    return v * (target / np.linalg.norm(v, axis=1, keepdims=True))
